"""Process trees from /proc: a session's processes, for CPU accounting and clean-up."""

import os


def children(pid: int) -> list[int]:
    """The live children of ``pid`` (of all its threads)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int, limit: int = 100_000) -> list[int]:
    """The live descendants of ``pid`` (at most ``limit``), parents before their children."""
    found, stack = [], [pid]
    while stack and len(found) < limit:
        for child in children(stack.pop()):
            found.append(child)
            stack.append(child)
    return found
