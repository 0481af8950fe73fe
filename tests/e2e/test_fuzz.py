"""Property-based fuzzing of every endpoint of a real server, on both stores.

Requests are generated (schemathesis, on hypothesis) from two descriptions of the API: the
server's own OpenAPI document (what FastAPI derives from the routes; valid and invalid
requests) and the official spec's request schemas (valid requests as the hosted API describes
them). Path parameters are random, name a live object of the tenant (``tests/support/tenant``),
or are nasty strings; one string of the query or body may be swapped for a nasty one (NUL,
unpaired surrogates, line separators, SQL, very long). Every answer must be:

- below 500;
- valid against the official spec when it is JSON (objects, lists, error envelopes), and for an
  event stream every event;
- when refused (4xx), the tenant's rows exactly as before (compared in the database).

Examples per operation and mode: ``RUNSTEP_FUZZ_EXAMPLES`` (default 6: the suite stays fast;
raise it for a deeper run). Generation is derandomized, so a failure reproduces."""

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.core import NOT_SET
from schemathesis.core.errors import OperationNotFound
from schemathesis.generation.modes import GenerationMode

from runstep.app import create_app
from runstep.config import Settings
from tests.conformance import CACHE_PATH, SPEC_PATH, spec_available, validate_event
from tests.conftest import RunningServer
from tests.support.runs import parse_sse
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.tenant import Snapshot, World, engine_for, settle, world
from tests.support.validating_client import validate_body

EXAMPLES = int(os.environ.get("RUNSTEP_FUZZ_EXAMPLES", "6"))
HEADERS = {"OpenAI-Beta": "assistants=v2"}
NASTY = [
    "",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "\u2028\u2029\x85",
    "😀" * 3,
    "\r\n\r\nevent: done",
    "' OR 1=1 --",
    "../../etc/passwd",
    "%00%2F",
    "\\u0000",
    "null",
    "a" * 5000,
]
# A URL carries UTF-8 bytes: an unpaired surrogate has no form there (JSON escapes it).
NASTY_IN_URL = [value for value in NASTY if not any(0xD800 <= ord(c) <= 0xDFFF for c in value)]
ID_FIELDS = {"assistant_id", "file_id", "vector_store_id"}


def _own_spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


OWN = _own_spec()
OPERATIONS = [
    (method.upper(), path)
    for path, methods in OWN["paths"].items()
    for method in methods
    if method in ("get", "post", "delete")
]
# Deletions last, so the objects the other operations aim at live while they run.
OPERATIONS.sort(key=lambda operation: operation[0] == "DELETE")


@functools.cache
def official_spec() -> dict[str, Any]:
    """The official spec as JSON, cached beside the conformance cache (parsing the YAML takes
    seconds)."""
    cache = CACHE_PATH.with_name("openai-openapi.json")
    stat = SPEC_PATH.stat()
    key = f"{stat.st_mtime_ns}-{stat.st_size}"
    try:
        cached = json.loads(cache.read_text())
        if cached["key"] == key:
            return dict(cached["spec"])
    except (OSError, ValueError, KeyError):
        pass
    with SPEC_PATH.open("rb") as stream:
        raw = yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    spec = json.loads(json.dumps(raw, default=str))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "spec": spec}))
    return spec


@functools.cache
def schemas() -> dict[str, Any]:
    """schemathesis schemas: ``own`` (paths under /v1) and ``official`` (paths without it),
    the latter kept to the operations this server has."""
    loaded = {"own": schemathesis.openapi.from_dict(OWN)}
    if spec_available():
        spec = official_spec()
        ours = {path.removeprefix("/v1") for _, path in OPERATIONS}
        spec = {**spec, "paths": {p: v for p, v in spec["paths"].items() if p in ours}}
        loaded["official"] = schemathesis.openapi.from_dict(spec)
    return loaded


def _operation(source: str, method: str, path: str) -> Any | None:
    schema = schemas().get(source)
    if schema is None:
        return None
    path = path if source == "own" else path.removeprefix("/v1")
    try:
        return schema[path][method]
    except (KeyError, OperationNotFound):
        return None


@pytest.fixture(scope="module")
def tenant(server: RunningServer, upstream: ScriptedUpstream) -> World:
    return world(server, upstream)


@pytest.fixture(scope="module")
def engine(server: RunningServer) -> Iterator[Any]:
    with engine_for(server.database_url) as made:
        yield made


# --- generation -------------------------------------------------------------------------------


def _path_parameters(operation: Any, tenant: World) -> st.SearchStrategy[dict[str, str] | None]:
    names = [parameter.name for parameter in operation.path_parameters]
    if not names:
        return st.just(None)
    live = {name: tenant.ids.get(name, "x") for name in names}
    nasty = st.sampled_from(NASTY_IN_URL).map(lambda value: dict.fromkeys(names, value))
    return st.one_of(st.just(None), st.just(live), nasty)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The paths of the string leaves (and dict keys, marked ``("key", k)``) of a JSON value."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*path, ("key", key))
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))


def _replace(value: Any, path: tuple[Any, ...], new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(head, tuple):  # rename a key
        return {(new if key == head[1] else key): item for key, item in value.items()}
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


def _aim(body: Any, tenant: World) -> Any:
    """Point the body's id fields at the tenant's objects, so requests get past the lookups."""
    if isinstance(body, dict):
        return {
            key: tenant.ids[key]
            if key in ID_FIELDS and isinstance(item, str)
            else _aim(item, tenant)
            for key, item in body.items()
        }
    if isinstance(body, list):
        return [_aim(item, tenant) for item in body]
    return body


def _spoil(data: st.DataObject, case: Any, tenant: World) -> None:
    """Maybe aim the body at live objects; maybe swap one query or body string for a nasty one."""
    body = getattr(case, "body", None)
    if isinstance(body, (dict, list)) and data.draw(st.booleans(), label="aim"):
        case.body = body = _aim(body, tenant)
    choice = data.draw(st.sampled_from(["none", "query", "body"]), label="spoil")
    if choice == "query" and case.query:
        name = data.draw(st.sampled_from(sorted(case.query)), label="query name")
        case.query = {**case.query, name: data.draw(st.sampled_from(NASTY_IN_URL))}
    elif choice == "body" and isinstance(body, (dict, list)):
        leaves = list(_leaves(body))
        if leaves:
            leaf = data.draw(st.sampled_from(leaves), label="leaf")
            case.body = _replace(body, leaf, data.draw(st.sampled_from(NASTY), label="nasty"))


# --- checks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status_code: int
    content_type: str
    text: str


def _content(case: Any) -> tuple[bytes | None, dict[str, str]]:
    """The body to send and its content type: raw bytes as they are, JSON as text with every
    non-ASCII character escaped (so unpaired surrogates travel as the escapes a client sends)."""
    if case.body is NOT_SET:
        return None, {}
    kind = {"content-type": case.media_type or "application/json"}
    if isinstance(case.body, bytes):
        return bytes(case.body), kind
    text = json.dumps(case.body, default=lambda raw: bytes(raw).decode("latin-1"))
    return text.encode(), kind


def _send(http: httpx.Client, case: Any, base_url: str, headers: dict[str, str]) -> Answer:
    """JSON and raw bodies sent as ``_content`` makes them; other media (multipart) as
    schemathesis serializes them."""
    if case.body is NOT_SET or isinstance(case.body, bytes) or "json" in (case.media_type or ""):
        content, kind = _content(case)
        response = http.request(
            case.method,
            base_url + case.formatted_path,
            params=case.query,
            content=content,
            headers={**headers, **kind},
        )
        return Answer(response.status_code, response.headers.get("content-type", ""), response.text)
    sent = case.call(base_url=base_url, headers=headers, timeout=30)
    content_type = " ".join(sent.headers.get("content-type", []))
    return Answer(sent.status_code, content_type, sent.content.decode("utf-8", "replace"))


def _describe(case: Any, response: Answer) -> str:
    body = getattr(case, "body", None)
    shown = json.dumps(body, ensure_ascii=True, default=str)[:600] if body is not None else "-"
    return (
        f"{case.method} {case.formatted_path} query={case.query} body={shown}\n"
        f"-> {response.status_code} {response.text[:600]}"
    )


def _check_answer(case: Any, response: Answer) -> None:
    status, context = response.status_code, _describe(case, response)
    assert status < 500, context
    content_type = response.content_type
    if "application/json" in content_type:
        try:
            validate_body(json.loads(response.text))
        except AssertionError as error:
            raise AssertionError(f"{error}\n{context}") from None
    elif "text/event-stream" in content_type:
        frames = parse_sse(response.text)
        assert frames and frames[-1].event == "done", context
        for frame in frames[:-1]:
            validate_event(frame.event, frame.json())


def _fuzz(
    server: RunningServer, tenant: World, engine: Any, operation: Any, mode: GenerationMode
) -> None:
    base_url = server.process.url if operation.path.startswith("/v1") else server.base_url
    headers = {**HEADERS, "Authorization": f"Bearer {tenant.key}"}
    cases = _path_parameters(operation, tenant).flatmap(
        lambda fixed: operation.as_strategy(generation_mode=mode, path_parameters=fixed)
    )

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def examples(data: st.DataObject) -> None:
        case = data.draw(cases, label="case")
        _spoil(data, case, tenant)
        before = Snapshot.of(engine, tenant.project_id)
        response = _send(http, case, base_url, headers)
        _check_answer(case, response)
        if response.status_code >= 400:
            changed = before.changes(Snapshot.of(engine, tenant.project_id))
            assert not changed, f"a refused request changed {changed}\n{_describe(case, response)}"
        elif case.method != "GET":
            settle(engine, tenant.project_id)

    with httpx.Client(timeout=30) as http:
        examples()


def _has_input(operation: Any) -> bool:
    return bool(list(operation.query) or list(operation.body))


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_get_a_valid_answer_and_refusals_change_nothing(
    server: RunningServer, tenant: World, engine: Any, method: str, path: str
) -> None:
    own = _operation("own", method, path)
    assert own is not None
    _fuzz(server, tenant, engine, own, GenerationMode.POSITIVE)
    if _has_input(own):
        with contextlib.suppress(Unsatisfiable):  # nothing in the input can be made invalid
            _fuzz(server, tenant, engine, own, GenerationMode.NEGATIVE)
    official = _operation("official", method, path)
    if official is not None:
        _fuzz(server, tenant, engine, official, GenerationMode.POSITIVE)
