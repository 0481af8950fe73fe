"""The run, step and message status machines: one table each, enforced in one place."""

from collections.abc import Mapping

RUN_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "queued": frozenset({"in_progress", "cancelling", "expired", "failed"}),
    "in_progress": frozenset(
        {"requires_action", "completed", "incomplete", "failed", "cancelling", "expired"}
    ),
    "requires_action": frozenset({"queued", "cancelling", "expired"}),
    "cancelling": frozenset({"cancelled", "expired", "failed"}),
    "cancelled": frozenset(),
    "failed": frozenset(),
    "completed": frozenset(),
    "incomplete": frozenset(),
    "expired": frozenset(),
}
RUN_TERMINAL = frozenset(status for status, nexts in RUN_TRANSITIONS.items() if not nexts)
# A stream ends after any of these run statuses (the client continues with a new stream).
STREAM_END = RUN_TERMINAL | {"requires_action"}

STEP_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "in_progress": frozenset({"completed", "failed", "cancelled", "expired"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
    "expired": frozenset(),
}

MESSAGE_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "in_progress": frozenset({"completed", "incomplete"}),
    "completed": frozenset(),
    "incomplete": frozenset(),
}

# The timestamp each status sets on runs and steps.
STAMPS = {
    "in_progress": "started_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "cancelled": "cancelled_at",
    "expired": "expired_at",
    "incomplete": "incomplete_at",
}


class InvalidTransition(Exception):
    """A code path tried a move the status machine does not allow: a bug, never user input."""


def check(table: Mapping[str, frozenset[str]], current: str, target: str) -> None:
    """Raise ``InvalidTransition`` unless ``current -> target`` is in ``table``."""
    if target not in table.get(current, frozenset()):
        raise InvalidTransition(f"{current} -> {target} is not allowed")
