"""Smoke test of the code_interpreter benchmark (``python -m bench code_interpreter``): a tiny
plan runs every phase end to end (real sandboxes, then a real server and scripted upstream),
leaves no sandbox behind, and its payload is what ``write_result`` can store. No timing is
asserted."""

import io
import json
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.progress import Progress

from bench import code_interpreter
from bench.common import RunOptions

TINY = code_interpreter.Plan(executions=5, warmup_executions=1, new_sessions=2,
                             import_sessions=1, capacity_bound=3, pandas_sessions=1, runs=1,
                             warmup_runs=0)


def test_a_tiny_plan_runs_every_phase() -> None:
    console = Console(file=io.StringIO(), width=160)
    options = RunOptions(quick=True, progress=Progress(console=console, disable=True),
                         console=console)
    # asyncio on a thread of its own, away from pytest-asyncio's event loop
    with ThreadPoolExecutor(max_workers=1) as executor:
        payload = executor.submit(code_interpreter.measure, TINY, options).result()

    json.dumps(payload)  # what write_result stores
    engine = payload["engine"]
    assert engine["failed_executions"] == {}
    assert engine["warm_session"]["execution"]["n"] == 5
    assert engine["new_session"]["first_execution"]["n"] == 2
    assert engine["new_session"]["import_numpy_pandas_pyplot"]["n"] == 1

    capacity = engine["capacity"]
    assert capacity["sessions_started"] == capacity["sessions_holding_state"] == 3
    assert capacity["sandbox_processes_left"] == 0
    bare, loaded = capacity["memory"]["bare"], capacity["memory"]["numpy_pandas_pyplot"]
    assert bare["sessions"] == 3 and loaded["sessions"] == 1
    assert 0 < bare["uss_mib"]["mean"] <= bare["pss_mib"]["mean"] <= bare["rss_mib"]["mean"]
    assert loaded["pss_mib"]["mean"] > bare["pss_mib"]["mean"]
    assert all(value["sessions"] for value in capacity["extrapolated_sessions"].values())

    for mode in code_interpreter.RUN_MODES:
        assert payload["runs"][mode]["total"]["n"] == 1
    assert "total_p50_ms" in payload["runs"]["added_code_new_session"]
    assert set(payload["targets"]) == set(code_interpreter.TARGETS_MS)
    assert "Sandbox.execute latency" in console.file.getvalue()
