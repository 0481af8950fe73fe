"""Smoke tests of the harness (``python -m bench``) and of the streamed-run benchmarks it runs
(``runs``, ``distributed``, ``streams``): tiny plans run end to end through ``bench.__main__``
(real servers, the floor, the scripted upstream, PostgreSQL), their results and plots are
written to a folder of the test's own (never ``bench/results`` or ``bench/plots``), and the
pure helpers behave. No timing is asserted."""

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rich.console import Console

import bench.__main__ as harness
from bench import distributed, plots, runs, streams
from bench.common import PLOTS_DIR
from bench.load import bottleneck
from bench.streams import Held, window_gaps


def _main(argv: list[str]) -> int:
    # asyncio on a thread of its own, away from pytest-asyncio's event loop
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(harness.main, argv).result()


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The harness prints to a buffer (the test's output stays readable)."""
    output = io.StringIO()
    monkeypatch.setattr(harness, "Console", lambda: Console(file=output, width=200))
    return output


def _result(folder: Path, name: str) -> dict:
    document = json.loads((folder / f"{name}.json").read_text())
    assert document["benchmark"] == name and document["quick"] is True
    assert document["machine"]["cpu_count"] and document["machine"]["git_commit"]
    return document


def test_runs_and_streams_through_the_harness(tmp_path: Path, quiet: io.StringIO,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "quick_plan", runs.tiny_plan)
    monkeypatch.setattr(streams, "quick_plan", streams.tiny_plan)
    published = {path: path.stat().st_mtime for path in PLOTS_DIR.glob("*.png")}

    assert _main(["runs", "streams", "--quick", "--results", str(tmp_path)]) == 0

    measured = _result(tmp_path, "runs")
    assert set(measured["scenarios"]) == set(runs.SCENARIOS)
    for key, scenario in measured["scenarios"].items():
        assert len(scenario["chat_request_bodies"]) == runs.SCENARIOS[key].turns
        for level in scenario["levels"].values():
            modes = {"direct", "runstep"} | ({"floor"} if key == "text" else set())
            assert modes <= set(level)
            for mode in modes:
                assert level[mode]["not_completed"] == 0, (key, mode, level[mode]["errors"])
                assert level[mode]["total"]["n"] == 4
            assert level["runstep"]["cpu"]["server"]["rss_mib"] > 0
            assert "text" in level["runstep"]["bottleneck"]
            assert set(level["added"]["runstep"]) == {"ttft_p50_ms", "ttft_p99_ms",
                                                      "total_p50_ms", "total_p99_ms"}

    held = _result(tmp_path, "streams")
    for name in streams.TARGETS:
        target = held["targets"][name]
        assert target["idle_rss_mib"] > 0
        assert target["relay"][name]["median_deltas_per_second"] > 0
        (step,) = target["held"]
        assert step["streams_opened"] == step["streams_holding"] == 4
        assert step["errors"] == {}
        assert step["inter_token"]["n"] >= 1
    assert "direct" in held["targets"]["runstep"]["relay"]

    for plot in ("latency.png", "throughput.png", "streams.png"):
        assert (tmp_path / plot).stat().st_size > 10_000
    assert "Streams held" in quiet.getvalue() and "published" not in quiet.getvalue()
    assert {path: path.stat().st_mtime for path in PLOTS_DIR.glob("*.png")} == published


def test_distributed_through_the_harness(tmp_path: Path, quiet: io.StringIO,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "QUICK_LEVELS", (1, 2))
    monkeypatch.setattr(distributed, "QUICK_RUNS", 4)

    assert _main(["distributed", "--quick", "--results", str(tmp_path)]) == 0

    measured = _result(tmp_path, "distributed")
    assert set(measured["topologies"]) == {"embedded", "api_1_worker", "api_2_workers"}
    for key, topology in measured["topologies"].items():
        for level in topology["levels"].values():
            assert level["not_completed"] == 0, (key, level["errors"])
        seen = measured["saturation"][key]
        assert seen["peak_at_concurrency"] in (1, 2)
        assert "text" in seen["bottleneck_at_peak"]
    assert (tmp_path / "throughput.png").exists()


def test_window_gaps() -> None:
    steady, late, quiet_stream, gone = Held(), Held(), Held(), Held()
    steady.arrivals = [0.0, 1.0, 2.0, 3.0]
    late.arrivals = [0.0, 1.0, 2.5]
    quiet_stream.arrivals = [0.0]
    gone.arrivals, gone.ended = [0.0], 0.5
    gaps, stalled = window_gaps([steady, late, quiet_stream, gone], 1.5, 3.0)
    assert sorted(gaps) == [1.0, 1.0, 1.5]
    assert stalled == 1  # quiet_stream: holding, nothing in the window; gone had ended


def test_bottleneck_names_a_pinned_process_or_the_machine() -> None:
    def usage(busy: float, **cores: float) -> dict:
        return {"wall_seconds": 10.0, "machine_busy_fraction": busy, "other_processes_cores": 0.0,
                **{name: {"cores": value} for name, value in cores.items()}}

    pinned = bottleneck(usage(0.6, server=0.97, upstream=0.1, client=0.2))
    assert pinned["limit"] == "server" and "server at 0.97 cores" in pinned["text"]
    machine = bottleneck(usage(0.95, api=0.7, worker_1=0.6, postgres=0.3,
                               postgres_background=0.2))
    assert machine["limit"] == "machine"
    assert machine["cores_by_process"]["postgres"] == pytest.approx(0.5)
    idle = bottleneck(usage(0.2, server=0.3))
    assert idle["limit"] is None and "latency-bound" in idle["text"]
    assert bottleneck({**usage(0.95, server=1.0), "wall_seconds": 0.1})["limit"] is None


def test_plots_of_nothing_are_none(tmp_path: Path) -> None:
    assert plots.render(tmp_path) == []
