"""The host's side of a session's directory (/mnt/data in the sandbox): placing input files and
collecting the files an execution wrote.

The sandboxed code controls that directory, so everything here is written against a hostile
tree: files are opened relative to a directory descriptor with ``O_NOFOLLOW`` (a symlink planted
at ``/mnt/data/data.csv`` pointing at a host path is replaced, never followed), inputs are
written to a fresh name and renamed into place, only regular files are read, the walk never
follows symlinked directories, and every count and size is capped.
"""

import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

MAX_ENTRIES = 100_000


class InputFile(NamedTuple):
    """A file to place at ``/mnt/data/<name>`` before the code runs."""

    name: str
    content: bytes


class OutputFile(NamedTuple):
    """A file under /mnt/data that an execution created or changed (``name`` is relative to
    /mnt/data, e.g. ``plot.png`` or ``out/table.csv``)."""

    name: str
    content: bytes


def check_name(name: str) -> str:
    """An input file's name must be a plain file name: no directories, no NUL, at most 255
    bytes."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\0" in name
        or len(name.encode("utf-8", "surrogateescape")) > 255
    ):
        raise ValueError(f"invalid input file name for /mnt/data: {name!r}")
    return name


def write_inputs(directory: Path, files: Iterable[InputFile], owner: int | None) -> list[str]:
    """Write ``files`` into ``directory`` (each through a fresh temporary name, then renamed
    over whatever is there); returns notes about files that could not be placed."""
    notes: list[str] = []
    dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for item in files:
            temporary = f".runstep-input-{secrets.token_hex(8)}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(temporary, flags, 0o644, dir_fd=dirfd)
            try:
                view = memoryview(item.content)
                while view:
                    view = view[os.write(fd, view) :]
                if owner is not None:
                    os.fchown(fd, owner, owner)
            finally:
                os.close(fd)
            try:
                os.rename(temporary, item.name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            except OSError as exc:
                os.unlink(temporary, dir_fd=dirfd)
                notes.append(f"could not place input file /mnt/data/{item.name}: {exc.strerror}")
    finally:
        os.close(dirfd)
    return notes


Signature = tuple[int, int, int]  # size, mtime_ns, inode


@dataclass
class Scan:
    """Regular files under the directory (relative path -> signature) and their total size."""

    files: dict[str, Signature] = field(default_factory=dict)
    total_bytes: int = 0
    entries: int = 0
    complete: bool = True


def _walk(directory: Path) -> Iterable[tuple[str, str, int, os.stat_result]]:
    """(relative path, name, dir fd, lstat) of every regular file; stops after MAX_ENTRIES."""
    for dirpath, _dirs, names, dirfd in os.fwalk(directory, follow_symlinks=False):
        relative = os.path.relpath(dirpath, directory)
        for name in names:
            try:
                info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                path = name if relative == "." else f"{relative}/{name}"
                yield path, name, dirfd, info


def scan(directory: Path) -> Scan:
    result = Scan()
    for path, _name, _dirfd, info in _walk(directory):
        result.entries += 1
        if result.entries > MAX_ENTRIES:
            result.complete = False
            break
        result.files[path] = (info.st_size, info.st_mtime_ns, info.st_ino)
        result.total_bytes += info.st_size
    return result


def _read(name: str, dirfd: int, limit: int) -> bytes | None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dirfd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return None if size > limit else b"".join(chunks)
    finally:
        os.close(fd)


def collect(
    directory: Path, before: Scan, max_files: int, max_file_bytes: int, max_total_bytes: int
) -> tuple[list[OutputFile], Scan, int]:
    """Files created or changed since ``before`` (at most ``max_files`` and ``max_total_bytes``
    together, sorted by path), the new scan, and how many more changed files were left out."""
    after = Scan()
    changed: list[OutputFile] = []
    left_out = 0
    budget = max_total_bytes
    for path, name, dirfd, info in _walk(directory):
        after.entries += 1
        if after.entries > MAX_ENTRIES:
            after.complete = False
            break
        signature = (info.st_size, info.st_mtime_ns, info.st_ino)
        after.files[path] = signature
        after.total_bytes += info.st_size
        if before.files.get(path) == signature:
            continue
        if len(changed) >= max_files or info.st_size > budget:
            left_out += 1
            continue
        content = _read(name, dirfd, min(max_file_bytes, budget))
        if content is None:
            left_out += 1
        else:
            changed.append(OutputFile(path, content))
            budget -= len(content)
    changed.sort(key=lambda item: item.name)
    return changed, after, left_out


def slot_prefix(slot: int) -> str:
    """How the directories of the sessions holding ``slot`` begin (``s<slot>-``)."""
    return f"s{slot}-"


def slot_of(directory: Path) -> int | None:
    """The slot a session directory was made for, from its name; None if not one of ours."""
    head, dash, _rest = directory.name.partition("-")
    return int(head[1:]) if dash and head[:1] == "s" and head[1:].isdigit() else None


def remove_tree(directory: Path) -> None:
    """Delete a session's directory, whatever modes the code left on it (call it once the
    sandbox is gone: nothing changes the tree any more)."""
    if not directory.exists():
        return
    if os.geteuid() != 0:  # root ignores modes; others make every directory enterable first
        os.chmod(directory, 0o700)
        for dirpath, dirs, _files in os.walk(directory):
            for name in dirs:
                path = os.path.join(dirpath, name)
                try:
                    if stat.S_ISDIR(os.lstat(path).st_mode):  # never chmod through a symlink
                        os.chmod(path, 0o700)
                except OSError:
                    pass
    shutil.rmtree(directory, ignore_errors=True)


def names(files: Sequence[InputFile]) -> list[str]:
    return [check_name(item.name) for item in files]
