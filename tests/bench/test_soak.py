"""Smoke test of the soak benchmark (``python -m bench soak``): its checker flags lost,
duplicated and out-of-order records on synthetic runs, and a tiny soak (a few seconds of
traffic, a worker killed twice) runs every scenario end to end in the distributed topology and
checks every run it made. No timing is asserted, nor the product's verdict (that is what the
soak itself reports)."""

import copy
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rich.console import Console
from rich.progress import Progress

from bench import soak
from bench.common import RunOptions

RUN_ID, THREAD_ID, STEP_ID, MESSAGE_ID = "run_1", "thread_1", "step_1", "msg_1"
ANSWER = soak.answer_text("text")


def _text_run() -> dict[str, Any]:
    """The records of a completed text run, as check_run reads them."""
    message = {"id": MESSAGE_ID, "role": "assistant", "status": "completed",
               "content": [{"type": "text", "text": {"value": "".join(ANSWER),
                                                     "annotations": []}}]}
    step = {"id": STEP_ID, "type": "message_creation", "status": "completed",
            "step_details": {"type": "message_creation",
                             "message_creation": {"message_id": MESSAGE_ID}}}
    names: list[tuple[str, dict[str, Any]]] = [
        ("thread.run.created", {"id": RUN_ID}), ("thread.run.queued", {"id": RUN_ID}),
        ("thread.run.in_progress", {"id": RUN_ID}),
        ("thread.run.step.created", {"id": STEP_ID}),
        ("thread.run.step.in_progress", {"id": STEP_ID}),
        ("thread.message.created", {"id": MESSAGE_ID}),
        ("thread.message.in_progress", {"id": MESSAGE_ID}),
        *[("thread.message.delta", {"id": MESSAGE_ID, "delta": {"content": [
            {"index": 0, "type": "text", "text": {"value": piece}}]}}) for piece in ANSWER],
        ("thread.message.completed", {"id": MESSAGE_ID}),
        ("thread.run.step.completed", {"id": STEP_ID}),
        ("thread.run.completed", {"id": RUN_ID}),
    ]
    events = [soak.Event(seq, name, data) for seq, (name, data) in enumerate(names, start=1)]
    run = {"id": RUN_ID, "thread_id": THREAD_ID, "status": "completed", "lease_owner": None,
           "last_seq": len(events), "data": {"assistant_id": "asst_text"}}
    user = {"id": "msg_user", "role": "user", "status": "completed", "content": []}
    return {"run": run, "steps": [step], "messages": [message],
            "thread_messages": [user, message], "events": events}


def _categories(records: dict[str, Any]) -> set[str]:
    found = soak.check_run(records["run"], records["steps"], records["messages"],
                           records["thread_messages"], records["events"], soak.expected("text"))
    return {category for category, _ in found}


def _renumbered(events: list[soak.Event]) -> list[soak.Event]:
    return [soak.Event(seq, e.name, e.data) for seq, e in enumerate(events, start=1)]


def test_check_run_passes_a_correct_run_and_flags_each_fault() -> None:
    good = _text_run()
    assert _categories(good) == set()

    twice = copy.deepcopy(good)  # a second message_creation step for the same turn
    twice["steps"].append({**twice["steps"][0], "id": "step_2"})
    assert "duplicated" in _categories(twice)

    gap = copy.deepcopy(good)  # seq 5 lost
    del gap["events"][4]
    assert "lost" in _categories(gap)

    ended_twice = copy.deepcopy(good)
    ended_twice["events"] = _renumbered(
        [*ended_twice["events"], soak.Event(0, "thread.run.completed", {"id": RUN_ID})])
    ended_twice["run"]["last_seq"] = len(ended_twice["events"])
    assert "duplicated" in _categories(ended_twice)

    repeated = copy.deepcopy(good)  # a delta replayed after a resume: text doubled in the log
    events = repeated["events"]
    events.insert(8, events[7])
    repeated["events"] = _renumbered(events)
    repeated["run"]["last_seq"] = len(repeated["events"])
    assert "mismatch" in _categories(repeated)

    stuck = copy.deepcopy(good)
    stuck["run"].update(status="in_progress", lease_owner="worker:x")
    assert "stuck" in _categories(stuck)

    leased = copy.deepcopy(good)
    leased["run"]["lease_owner"] = "worker:x"
    assert _categories(leased) == {"lease"}

    missing = copy.deepcopy(good)  # the answer never recorded
    missing["messages"], missing["thread_messages"] = [], missing["thread_messages"][:1]
    assert "lost" in _categories(missing)


def test_memory_trend() -> None:
    flat = soak.trend([(t, 100.0 + (t % 2)) for t in range(0, 600, 5)], warmup=60)
    assert flat is not None and flat["flat"] and flat["max_mib"] == 101.0
    growing = soak.trend([(t, 100.0 + t / 10) for t in range(0, 600, 5)], warmup=60)
    assert growing is not None and not growing["flat"]
    assert round(growing["slope_mib_per_hour"]) == 360


def test_a_tiny_soak_runs_every_scenario_and_checks_every_run() -> None:
    plan = soak.Plan(seconds=10.0, kill_every=4.0, clients=4, sample_every=1.0,
                     memory_warmup=2.0, drain_seconds=60.0, run_deadline=60.0,
                     settings={"RUNSTEP_LEASE_SECONDS": "3", "RUNSTEP_SWEEP_SECONDS": "0.5"},
                     keep_on_problems=False)
    console = Console(file=io.StringIO(), width=160)
    options = RunOptions(quick=True, progress=Progress(console=console, disable=True),
                         console=console)
    # asyncio on a thread of its own, away from pytest-asyncio's event loop
    with ThreadPoolExecutor(max_workers=1) as executor:
        payload = executor.submit(soak.measure, plan, options).result()

    json.dumps(payload)  # what write_result stores
    assert len(payload["kills"]) == 2
    assert all(kill["returncode"] == -9 for kill in payload["kills"])
    assert set(payload["throughput"]["scenarios"]) == {f"{k}/{m}" for k, m in soak.MIX}
    verification = payload["verification"]
    assert verification["runs_in_database"] > 0
    assert verification["runs_checked"] == verification["runs_in_database"]
    assert verification["client_runs"] == payload["throughput"]["client_runs"]
    assert set(verification["runs_by_kind_and_status"]) == set(soak.KINDS)
    assert payload["samples"] and payload["memory"]["api"] is not None
    assert payload["after_stop"]["sandbox_processes_left"] == 0
    assert "Runs by scenario" in console.file.getvalue()
