"""The run, step and message status machines, pinned pair by pair against the hosted lifecycle
(spec-notes §3 for the status enums, §5 for stream ends, §6 for the lifecycle)."""

import itertools
from collections.abc import Mapping

import pytest

from runstep.api.sse import STREAM_END_EVENTS
from runstep.runs import states
from runstep.runs.recorder import MESSAGE_END, STEP_END

Table = Mapping[str, frozenset[str]]

# The status enums of RunObject, RunStepObject and MessageObject.
RUN_STATUSES = {
    "queued", "in_progress", "requires_action", "cancelling",
    "cancelled", "failed", "completed", "incomplete", "expired",
}  # fmt: skip
STEP_STATUSES = {"in_progress", "cancelled", "failed", "completed", "expired"}
MESSAGE_STATUSES = {"in_progress", "incomplete", "completed"}
MESSAGE_REASONS = {"content_filter", "max_tokens", "run_cancelled", "run_expired", "run_failed"}

RUN_TERMINAL = {"cancelled", "failed", "completed", "incomplete", "expired"}
# queued → in_progress → (requires_action ⇄ queued after submit) → completed | incomplete |
# failed | cancelled (via cancelling) | expired. Besides: a queued run can be cancelled or
# expire before a worker takes it, or fail when it cannot start; a cancelling run still ends
# expired or failed if that happens first.
RUN_ALLOWED = {
    ("queued", "in_progress"),
    ("queued", "cancelling"),
    ("queued", "expired"),
    ("queued", "failed"),
    ("in_progress", "requires_action"),
    ("in_progress", "completed"),
    ("in_progress", "incomplete"),
    ("in_progress", "failed"),
    ("in_progress", "cancelling"),
    ("in_progress", "expired"),
    ("requires_action", "queued"),
    ("requires_action", "cancelling"),
    ("requires_action", "expired"),
    ("cancelling", "cancelled"),
    ("cancelling", "expired"),
    ("cancelling", "failed"),
}
STEP_ALLOWED = {("in_progress", end) for end in ("completed", "failed", "cancelled", "expired")}
MESSAGE_ALLOWED = {("in_progress", "completed"), ("in_progress", "incomplete")}


def _allowed_by_check(table: Table, statuses: set[str]) -> set[tuple[str, str]]:
    """Every pair ``check`` lets through; any other pair must raise ``InvalidTransition``."""
    allowed = set()
    for current, target in itertools.product(sorted(statuses), repeat=2):
        try:
            states.check(table, current, target)
        except states.InvalidTransition as refused:
            assert f"{current} -> {target}" in str(refused)
        else:
            allowed.add((current, target))
    return allowed


def _reachable(table: Table, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in table[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


@pytest.mark.parametrize(
    ("table", "statuses", "expected"),
    [
        (states.RUN_TRANSITIONS, RUN_STATUSES, RUN_ALLOWED),
        (states.STEP_TRANSITIONS, STEP_STATUSES, STEP_ALLOWED),
        (states.MESSAGE_TRANSITIONS, MESSAGE_STATUSES, MESSAGE_ALLOWED),
    ],
    ids=["run", "step", "message"],
)
def test_every_status_pair_is_either_allowed_or_refused_exactly_as_pinned(
    table: Table, statuses: set[str], expected: set[tuple[str, str]]
) -> None:
    assert set(table) == statuses  # exactly the spec's enum: no extra, none missing
    assert _allowed_by_check(table, statuses) == expected


def test_a_status_outside_the_table_moves_nowhere() -> None:
    for table in (states.RUN_TRANSITIONS, states.STEP_TRANSITIONS, states.MESSAGE_TRANSITIONS):
        with pytest.raises(states.InvalidTransition):
            states.check(table, "paused", "completed")
        with pytest.raises(states.InvalidTransition):
            states.check(table, "in_progress", "paused")


def test_terminal_run_statuses_are_those_without_exits() -> None:
    assert states.RUN_TERMINAL == RUN_TERMINAL
    assert all(not states.RUN_TRANSITIONS[status] for status in RUN_TERMINAL)
    assert all(states.RUN_TRANSITIONS[status] for status in RUN_STATUSES - RUN_TERMINAL)


def test_every_run_status_is_reachable_and_every_live_run_can_end() -> None:
    assert _reachable(states.RUN_TRANSITIONS, "queued") == RUN_STATUSES
    for status in RUN_STATUSES - RUN_TERMINAL:
        assert _reachable(states.RUN_TRANSITIONS, status) & RUN_TERMINAL, status


def test_a_run_is_cancelled_only_through_cancelling() -> None:
    before = {s for s, targets in states.RUN_TRANSITIONS.items() if "cancelled" in targets}
    assert before == {"cancelling"}


@pytest.mark.parametrize(
    "path",
    [
        ["queued", "in_progress", "completed"],
        ["queued", "in_progress", "requires_action", "queued", "in_progress", "completed"],
        ["queued", "in_progress", "incomplete"],
        ["queued", "in_progress", "failed"],
        ["queued", "cancelling", "cancelled"],
        ["queued", "in_progress", "cancelling", "cancelled"],
        ["queued", "in_progress", "requires_action", "cancelling", "cancelled"],
        ["queued", "in_progress", "requires_action", "expired"],
        ["queued", "in_progress", "expired"],
    ],
    ids=lambda path: "-".join(path),
)
def test_the_hosted_lifecycle_paths_are_walkable(path: list[str]) -> None:
    for current, target in itertools.pairwise(path):
        states.check(states.RUN_TRANSITIONS, current, target)


def test_a_stream_ends_on_a_terminal_run_or_on_requires_action() -> None:
    waits_or_ended = RUN_TERMINAL | {"requires_action"}
    assert waits_or_ended == states.STREAM_END
    assert {f"thread.run.{status}" for status in states.STREAM_END} == STREAM_END_EVENTS


def test_a_run_ending_closes_its_open_step_and_message_to_match() -> None:
    # Steps expire/cancel/fail with their run; messages end incomplete with the run's reason.
    assert STEP_END == {"cancelled": "cancelled", "failed": "failed", "expired": "expired"}
    assert MESSAGE_END == {
        "cancelled": "run_cancelled",
        "failed": "run_failed",
        "expired": "run_expired",
    }
    for run_status in RUN_TERMINAL:
        step_end = STEP_END.get(run_status, "completed")
        states.check(states.STEP_TRANSITIONS, "in_progress", step_end)
    assert set(MESSAGE_END.values()) <= MESSAGE_REASONS
