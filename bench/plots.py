"""PNG plots of the results: ``python -m bench.plots [--results DIR] [--publish]``.

* ``latency.png`` (``runs``): time to first token and total time, p50 and p99, versus
  concurrency, for each scenario: Runstep, the upstream called directly, the floor.
* ``throughput.png`` (``runs``, ``distributed``): completed runs per second versus
  concurrency: text runs for the upstream directly, the floor, Runstep embedded and
  distributed (1 and 2 workers), with what limited each Runstep topology at its peak; and
  Runstep's runs per second for each scenario.
* ``streams.png`` (``streams``): inter-token latency added (p99) and memory per stream versus
  streams held, Runstep and the floor, with the goals; and the event relay's deltas per
  second.

``python -m bench`` writes them next to the results after every run; a full run (not
``--quick``) into ``bench/results/`` also copies them to ``bench/plots/``, the folder the
README shows (``--publish`` does that for plots of non-quick results).
"""

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import PLOTS_DIR, RESULTS_DIR

COLORS = {"runstep": "tab:blue", "direct": "tab:gray", "floor": "tab:green",
          "api_1_worker": "tab:orange", "api_2_workers": "tab:red", "embedded": "tab:blue",
          "text": "tab:blue", "function": "tab:purple", "file_search": "tab:brown"}
LABELS = {"runstep": "Runstep (embedded, SQLite)", "direct": "upstream directly",
          "floor": "floor (FastAPI relay)", "embedded": "Runstep embedded (SQLite)",
          "api_1_worker": "Runstep PostgreSQL: API + 1 worker",
          "api_2_workers": "Runstep PostgreSQL: API + 2 workers"}


def _load(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subtitle(*documents: dict[str, Any]) -> str:
    machine = documents[0]["machine"]
    cpus = machine.get("cpu_available") or machine.get("cpu_count")
    memory = (machine.get("memory_bytes") or 0) / 2**30
    quick = " (quick run)" if any(d.get("quick") for d in documents) else ""
    return (f"{cpus} cores, {memory:.0f} GiB, {machine.get('timestamp', '')[:10]}, "
            f"commit {str(machine.get('git_commit'))[:8]}{quick}")


def _levels_axis(ax: Any, levels: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(levels))
    ax.set_xticklabels([str(level) for level in levels])
    ax.set_xlabel("concurrent clients")
    ax.grid(True, which="major", alpha=0.3)


def latency_plot(runs: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    scenarios = runs["scenarios"]
    fig, axes = plt.subplots(2, len(scenarios), figsize=(5.2 * len(scenarios), 8.5),
                             squeeze=False)
    for column, (key, scenario) in enumerate(scenarios.items()):
        levels = [int(c) for c in scenario["levels"]]
        for row, metric in enumerate(("ttft", "total")):
            ax = axes[row][column]
            for mode in ("direct", "floor", "runstep"):
                if not all(mode in level for level in scenario["levels"].values()):
                    continue
                for p, style in (("p50_ms", "-"), ("p99_ms", "--")):
                    values = [(level[mode][metric] or {}).get(p)
                              for level in scenario["levels"].values()]
                    ax.plot(levels, values, style, marker="o" if p == "p50_ms" else "s",
                            markersize=4, color=COLORS[mode],
                            label=f"{LABELS[mode]} {p[:3]}")
            _levels_axis(ax, levels)
            ax.set_yscale("log")
            ax.set_ylabel("ms")
            what = "time to first token" if metric == "ttft" else "total time per run"
            ax.set_title(f"{key}: {what}", fontsize=10)
            if row == 0 and column == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Streamed runs: latency percentiles versus concurrency\n" + _subtitle(runs),
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def throughput_plot(runs: dict[str, Any] | None, distributed: dict[str, Any] | None,
                    path: Path) -> Path:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    all_levels: set[int] = set()
    if runs is not None and "text" in runs["scenarios"]:
        text = runs["scenarios"]["text"]["levels"]
        levels = [int(c) for c in text]
        all_levels.update(levels)
        modes = ("direct", "floor") if distributed is not None else ("direct", "floor", "runstep")
        for mode in modes:
            if all(mode in level for level in text.values()):
                left.plot(levels, [level[mode]["per_second"] for level in text.values()],
                          "--" if mode != "runstep" else "-", marker="o", color=COLORS[mode],
                          label=LABELS[mode])
    if distributed is not None:
        for key, topology in distributed["topologies"].items():
            levels = [int(c) for c in topology["levels"]]
            all_levels.update(levels)
            rates = [level["per_second"] for level in topology["levels"].values()]
            left.plot(levels, rates, "-", marker="o", color=COLORS[key], label=LABELS[key])
            seen = distributed.get("saturation", {}).get(key)
            if seen:
                limit = seen["bottleneck_at_peak"]["limit"] or "latency"
                left.annotate(f"limit: {limit}", (seen["peak_at_concurrency"],
                                                  seen["peak_runs_per_second"]),
                              textcoords="offset points", xytext=(-10, 6), fontsize=7,
                              color=COLORS[key])
    if all_levels:
        _levels_axis(left, sorted(all_levels))
    left.set_yscale("log")
    left.set_ylabel("completed runs per second")
    left.set_title("Text runs (20 chunks); dashed: bounded by the load generator from 16-64 on",
                   fontsize=9)
    left.legend(fontsize=7)
    if runs is not None:
        levels: list[int] = []
        for key, scenario in runs["scenarios"].items():
            levels = [int(c) for c in scenario["levels"]]
            right.plot(levels, [level["runstep"]["per_second"]
                                for level in scenario["levels"].values()],
                       "-", marker="o", color=COLORS.get(key, "black"), label=key)
        _levels_axis(right, levels)
        right.set_ylabel("completed runs per second")
        right.set_title("Runstep embedded (SQLite), by scenario", fontsize=10)
        right.legend(fontsize=8)
    sources = [d for d in (runs, distributed) if d is not None]
    fig.suptitle("Throughput versus concurrency\n" + _subtitle(*sources), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def streams_plot(streams: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    goals = streams["parameters"]["goals"]
    fig, (latency, memory, relay) = plt.subplots(1, 3, figsize=(15, 4.8))
    for name, result in streams["targets"].items():
        steps = result["held"]
        opened = [step["streams_opened"] for step in steps]
        color = COLORS.get(name, "black")
        p99 = [step["added_inter_token_p99_ms"] for step in steps]
        per_stream = [step["kib_per_stream"] for step in steps]
        latency.plot(opened, p99, "-o", color=color, label=f"{LABELS.get(name, name)} p99")
        latency.plot(opened, [step["added_inter_token_p50_ms"] for step in steps], ":o",
                     color=color, markersize=3, label=f"{LABELS.get(name, name)} p50")
        memory.plot(opened, per_stream, "-o", color=color, label=LABELS.get(name, name))
        for step, y_latency, y_memory in zip(steps, p99, per_stream, strict=True):
            if step["streams_holding"] < step["streams_opened"]:  # the rest never started
                note = f"{step['streams_holding']:,} held"
                for ax, y in ((latency, y_latency), (memory, y_memory)):
                    if y is not None:
                        ax.annotate(note, (step["streams_opened"], y), fontsize=7, color=color,
                                    textcoords="offset points", xytext=(-40, 4))
    latency.axhline(goals["added_inter_token_p99_ms"], color="black", linestyle="--",
                    linewidth=0.8, label="goal (p99)")
    latency.set_xlabel("streams opened (one token a second each)")
    latency.set_ylabel("ms added to the 1 s between tokens")
    latency.set_title("Inter-token latency added", fontsize=10)
    latency.legend(fontsize=7)
    latency.grid(True, alpha=0.3)
    memory.axhline(goals["kib_per_stream"], color="black", linestyle="--", linewidth=0.8,
                   label="goal")
    memory.set_xlabel("streams opened")
    memory.set_ylabel("KiB of resident memory per stream")
    memory.set_title("Memory per stream held ((RSS - idle) / streams held)", fontsize=10)
    memory.legend(fontsize=7)
    memory.grid(True, alpha=0.3)
    bars: dict[str, float] = {}
    for result in streams["targets"].values():
        for mode, relayed in result["relay"].items():
            bars[mode] = relayed["median_deltas_per_second"]
    names = list(bars)
    relay.bar(names, [bars[n] for n in names], color=[COLORS.get(n, "black") for n in names])
    for index, name in enumerate(names):
        relay.text(index, bars[name], f"{bars[name]:,.0f}", ha="center", va="bottom",
                   fontsize=8)
    relay.set_ylabel("deltas per second, one run")
    relay.set_title(f"Event relay ({streams['parameters']['relay_chunks']:,} chunks)",
                    fontsize=10)
    fig.suptitle("Streams held and event relay\n" + _subtitle(streams), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(directory: Path = RESULTS_DIR) -> list[tuple[Path, bool]]:
    """Every plot whose results are in ``directory``, written there; each with whether all
    the results it shows are of full (not ``--quick``) runs."""
    runs, distributed, streams = (_load(directory, name)
                                  for name in ("runs", "distributed", "streams"))
    made: list[tuple[Path, bool]] = []
    if runs is not None:
        made.append((latency_plot(runs, directory / "latency.png"), not runs.get("quick")))
    if runs is not None or distributed is not None:
        sources = [d for d in (runs, distributed) if d is not None]
        made.append((throughput_plot(runs, distributed, directory / "throughput.png"),
                     not any(d.get("quick") for d in sources)))
    if streams is not None:
        made.append((streams_plot(streams, directory / "streams.png"), not streams.get("quick")))
    return made


def publish(made: list[tuple[Path, bool]], folder: Path = PLOTS_DIR) -> list[Path]:
    """Copy the plots of full runs to ``folder`` (the README's)."""
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for path, full in made:
        if full:
            copied.append(Path(shutil.copy2(path, folder / path.name)))
    return copied


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--publish", action="store_true",
                        help=f"copy plots of full runs to {PLOTS_DIR}")
    args = parser.parse_args(argv)
    made = render(args.results)
    for path, full in made:
        print(f"{path}{'' if full else ' (quick results)'}")
    if args.publish:
        for path in publish(made):
            print(f"published {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
