"""``python -m bench [NAME ...] [--quick] [--results DIR]``: run benchmarks, write
``bench/results/<name>.json``, then the plots (``bench.plots``) of whatever results are there;
a full run into ``bench/results/`` also copies its plots to ``bench/plots/`` (the README's)."""

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import (
    api_latency,
    code_interpreter,
    distributed,
    file_search,
    plots,
    runs,
    soak,
    streams,
)
from bench.common import RESULTS_DIR, Benchmark, RunOptions, write_result

BENCHMARKS: dict[str, Benchmark] = {
    "api_latency": api_latency.run,
    "runs": runs.run,
    "distributed": distributed.run,
    "streams": streams.run,
    "file_search": file_search.run,
    "code_interpreter": code_interpreter.run,
    "soak": soak.run,
}
#: What runs when no name is given: all but the soak, which takes 20 minutes on its own.
DEFAULT_BENCHMARKS = [name for name in BENCHMARKS if name != "soak"]


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run benchmarks; each writes bench/results/NAME.json.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} "
                             f"(default: all but soak)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations, for a smoke run")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help=f"where results and plots go (default: {RESULTS_DIR})")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    return args


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def run_benchmark(name: str, options: RunOptions) -> float:
    """Run one benchmark and write its result file; returns its runtime in seconds."""
    started = time.perf_counter()
    payload = BENCHMARKS[name](options)
    elapsed = time.perf_counter() - started
    path = write_result(name, {"quick": options.quick, "duration_seconds": round(elapsed, 3),
                               **payload}, options.results_dir)
    options.console.print(f"[green]{name}[/green]: {elapsed:.1f}s -> {path}")
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    console = Console()
    with _progress(console) as progress:
        options = RunOptions(quick=args.quick, progress=progress, console=console,
                             results_dir=args.results)
        total = sum(run_benchmark(name, options) for name in args.names or DEFAULT_BENCHMARKS)
    console.print(f"total: {total:.1f}s")
    try:
        made = plots.render(args.results)
    except ImportError as exc:  # matplotlib: pip install -e '.[bench]'
        console.print(f"[yellow]no plots: {exc}[/yellow]")
        return 0
    for path, full in made:
        console.print(f"plot: {path}{'' if full else ' (of quick results)'}")
    if args.results.resolve() == RESULTS_DIR.resolve():
        for path in plots.publish(made):
            console.print(f"published: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
