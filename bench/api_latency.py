"""Sequential request latency of the CRUD API over real HTTP, on SQLite and on PostgreSQL.

One keep-alive ``httpx.Client`` per operation talks to a real ``runstep serve`` process. Each
operation runs in its own project (its own static API key), so seeded rows never mix.
``GET /health`` (one database ping, no auth) is the floor each operation's p50 is compared to.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from rich.table import Table

from bench.common import STORES, RunOptions, Store, running_server, summarize
from tests.support.server import ServerProcess

WARMUP = 50
N_FULL = 1000
N_QUICK = 100
SEEDED = 100
PAGE = 20
FLOOR = "health"
ASSISTANT_BODY = {"model": "gpt-4o-mini", "name": "bench", "instructions": "Be brief."}
MESSAGE_BODY = {"role": "user", "content": "Hello from the latency benchmark."}

Request = Callable[[], httpx.Response]


@dataclass(frozen=True)
class Operation:
    """A named request; ``prepare`` seeds what it needs and returns the request to time."""

    name: str
    label: str
    prepare: Callable[[httpx.Client], Request]
    authenticated: bool = True


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url} -> "
                           f"{response.status_code}: {response.text[:500]}")
    return response


def _new_thread(client: httpx.Client) -> str:
    thread_id: str = _ok(client.post("/v1/threads", json={})).json()["id"]
    return thread_id


def _full_page(request: Request) -> Request:
    """Check once that the list returns a full page, so it is timed doing real work."""
    count = len(_ok(request()).json()["data"])
    if count != PAGE:
        raise RuntimeError(f"expected a page of {PAGE}, got {count}")
    return request


def _prepare_health(client: httpx.Client) -> Request:
    return lambda: client.get("/health")


def _prepare_create_assistant(client: httpx.Client) -> Request:
    return lambda: client.post("/v1/assistants", json=ASSISTANT_BODY)


def _prepare_create_message(client: httpx.Client) -> Request:
    path = f"/v1/threads/{_new_thread(client)}/messages"
    return lambda: client.post(path, json=MESSAGE_BODY)


def _prepare_list_assistants(client: httpx.Client) -> Request:
    for _ in range(SEEDED):
        _ok(client.post("/v1/assistants", json=ASSISTANT_BODY))
    return _full_page(lambda: client.get("/v1/assistants", params={"limit": PAGE}))


def _prepare_list_messages(client: httpx.Client) -> Request:
    path = f"/v1/threads/{_new_thread(client)}/messages"
    for _ in range(SEEDED):
        _ok(client.post(path, json=MESSAGE_BODY))
    return _full_page(lambda: client.get(path, params={"limit": PAGE}))


OPERATIONS = (
    Operation(FLOOR, "GET /health (floor)", _prepare_health, authenticated=False),
    Operation("create_assistant", "create assistant", _prepare_create_assistant),
    Operation("create_message", "create message", _prepare_create_message),
    Operation("list_assistants", "list assistants", _prepare_list_assistants),
    Operation("list_messages", "list messages", _prepare_list_messages),
)


def _api_key(operation: Operation) -> str:
    return f"sk-bench-{operation.name.replace('_', '-')}"


def _client(server: ServerProcess, operation: Operation) -> httpx.Client:
    headers = {"OpenAI-Beta": "assistants=v2"}
    if operation.authenticated:
        headers["Authorization"] = f"Bearer {_api_key(operation)}"
    return httpx.Client(base_url=server.url, headers=headers, timeout=30.0)


def _time_requests(request: Request, warmup: int, n: int, tick: Callable[[], None]) -> list[float]:
    """Run ``warmup`` untimed then ``n`` timed requests, one after another."""
    samples: list[float] = []
    for index in range(warmup + n):
        started = time.perf_counter()
        response = request()
        elapsed = time.perf_counter() - started
        _ok(response)
        if index >= warmup:
            samples.append(elapsed)
        tick()
    return samples


def _measure(
    store: Store, server: ServerProcess, operation: Operation, n: int, options: RunOptions
) -> list[float]:
    """Seed, warm up and time one operation on its own keep-alive client."""
    progress = options.progress
    task = progress.add_task(f"{store}: {operation.label}", total=WARMUP + n)
    try:
        with _client(server, operation) as client:
            request = operation.prepare(client)
            return _time_requests(request, WARMUP, n, lambda: progress.advance(task))
    finally:
        progress.remove_task(task)


def _measure_store(store: Store, n: int, options: RunOptions) -> dict[str, dict[str, Any]]:
    keys = [_api_key(op) for op in OPERATIONS if op.authenticated]
    results: dict[str, dict[str, Any]] = {}
    with running_server(store, keys) as server:
        for operation in OPERATIONS:
            results[operation.name] = summarize(_measure(store, server, operation, n, options))
    floor = results[FLOOR]["p50_ms"]
    for summary in results.values():
        summary["p50_ratio_to_floor"] = summary["p50_ms"] / floor
    return results


def _table(results: dict[str, dict[str, dict[str, Any]]], n: int) -> Table:
    table = Table("store", "operation", "p50 ms", "p99 ms", "mean ms", "p50 / floor",
                  title=f"API latency: sequential, keep-alive, n={n} after {WARMUP} warm-up; "
                        f"lists: limit {PAGE} of {SEEDED}")
    for store, operations in results.items():
        for operation in OPERATIONS:
            s = operations[operation.name]
            table.add_row(store, operation.label, f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}",
                          f"{s['mean_ms']:.2f}", f"{s['p50_ratio_to_floor']:.2f}x")
        table.add_section()
    return table


def run(options: RunOptions) -> dict[str, Any]:
    """Measure every operation on every store; print a table; return the result payload."""
    n = N_QUICK if options.quick else N_FULL
    results = {store: _measure_store(store, n, options) for store in STORES}
    options.console.print(_table(results, n))
    return {
        "parameters": {"warmup": WARMUP, "n": n, "seeded": SEEDED, "page_limit": PAGE,
                       "floor": "GET /health", "client": "httpx.Client, keep-alive, sequential",
                       "operations": {op.name: op.label for op in OPERATIONS}},
        "results": results,
    }
