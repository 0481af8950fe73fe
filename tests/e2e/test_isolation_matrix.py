"""The tenant isolation matrix, generated from the app's route table, on both stores.

Every route and method is classified in ``MATRIX``; a route the table does not classify fails
``test_every_route_is_in_the_matrix``, so a new route cannot be forgotten. Then, for project
A's live objects (``tests/support/tenant.World``) and project B's key:

- an object route (an id in the path) aimed at A's object answers B 404, with a body that would
  be valid for A, so that only the tenant check can refuse it;
- a collection route (list, create) lists none of A's objects to B, and a create naming one of
  A's objects in its body answers 404;
- a public route (health, metrics, the inspector's static page) shows none of A's ids;
- and no request of B changes anything stored for A or for B (compared row by row)."""

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from runstep.app import create_app
from runstep.config import Settings
from runstep.protocol.runs import FILE_SEARCH_CONTENT
from tests.conftest import RunningServer
from tests.support.runs import scripted
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.tenant import Snapshot, World, engine_for, world
from tests.support.upstream_script import Script, ToolCall
from tests.support.validating_client import client as validating_client
from tests.support.validating_client import validate_body


@dataclass(frozen=True)
class Case:
    """How a route is tried by B: ``kind`` is ``object`` (404 expected), ``collection`` (200,
    none of A's ids; 404 when ``body`` names A's objects) or ``public``. ``body`` may name
    A's objects as ``{"$": "file_id"}``; ``ids`` picks other objects of A for the path."""

    kind: str
    body: Any = None
    ids: dict[str, str] = field(default_factory=dict)
    upload: bool = False


WAITING = {"thread_id": "waiting_thread_id", "run_id": "waiting_run_id"}
RENAME = {"name": "stolen"}
TAG = {"metadata": {"owner": "b"}}

MATRIX: dict[tuple[str, str], Case] = {
    # no tenant data at all
    ("GET", "/health"): Case("public"),
    ("GET", "/v1/health"): Case("public"),
    ("GET", "/metrics"): Case("public"),
    ("GET", "/openapi.json"): Case("public"),
    ("GET", "/docs"): Case("public"),
    ("GET", "/docs/oauth2-redirect"): Case("public"),
    ("GET", "/redoc"): Case("public"),
    ("GET", "/inspector"): Case("public"),
    ("GET", "/inspector/"): Case("public"),
    ("GET", "/inspector/assistants"): Case("public"),
    ("GET", "/inspector/threads/{thread_id}"): Case("public"),
    ("GET", "/inspector/runs/{run_id}"): Case("public"),
    ("GET", "/inspector/static/{name}"): Case("public"),
    # the model catalog is the operator's; per-project providers: tests/e2e/test_providers.py
    ("GET", "/v1/models"): Case("collection"),
    ("GET", "/v1/models/{model:path}"): Case("public"),
    # collections: lists and creates
    ("GET", "/v1/assistants"): Case("collection"),
    ("GET", "/v1/files"): Case("collection"),
    ("GET", "/v1/vector_stores"): Case("collection"),
    ("GET", "/inspector/api/session"): Case("collection"),
    ("GET", "/inspector/api/assistants"): Case("collection"),
    ("GET", "/inspector/api/threads"): Case("collection"),
    ("POST", "/v1/files"): Case("collection", upload=True),
    (
        "POST",
        "/v1/assistants",
    ): Case(
        "collection",
        {
            "model": "gpt-4o",
            "tool_resources": {
                "file_search": {"vector_stores": [{"file_ids": [{"$": "file_id"}]}]}
            },
        },
    ),
    ("POST", "/v1/threads"): Case(
        "collection",
        {
            "messages": [
                {
                    "role": "user",
                    "content": "x",
                    "attachments": [
                        {"file_id": {"$": "file_id"}, "tools": [{"type": "file_search"}]}
                    ],
                }
            ]
        },
    ),
    ("POST", "/v1/threads/runs"): Case("collection", {"assistant_id": {"$": "assistant_id"}}),
    ("POST", "/v1/vector_stores"): Case("collection", {"file_ids": [{"$": "file_id"}]}),
    # A's objects
    ("GET", "/v1/assistants/{assistant_id}"): Case("object"),
    ("POST", "/v1/assistants/{assistant_id}"): Case("object", RENAME),
    ("DELETE", "/v1/assistants/{assistant_id}"): Case("object"),
    ("GET", "/v1/threads/{thread_id}"): Case("object"),
    ("POST", "/v1/threads/{thread_id}"): Case("object", TAG),
    ("DELETE", "/v1/threads/{thread_id}"): Case("object"),
    ("GET", "/v1/threads/{thread_id}/messages"): Case("object"),
    ("POST", "/v1/threads/{thread_id}/messages"): Case("object", {"role": "user", "content": "x"}),
    ("GET", "/v1/threads/{thread_id}/messages/{message_id}"): Case("object"),
    ("POST", "/v1/threads/{thread_id}/messages/{message_id}"): Case("object", TAG),
    ("DELETE", "/v1/threads/{thread_id}/messages/{message_id}"): Case("object"),
    ("GET", "/v1/threads/{thread_id}/runs"): Case("object"),
    ("POST", "/v1/threads/{thread_id}/runs"): Case(
        "object", {"assistant_id": {"$": "assistant_id"}, "stream": True}
    ),
    ("GET", "/v1/threads/{thread_id}/runs/{run_id}"): Case("object"),
    ("POST", "/v1/threads/{thread_id}/runs/{run_id}"): Case("object", TAG),
    ("POST", "/v1/threads/{thread_id}/runs/{run_id}/cancel"): Case("object", ids=WAITING),
    ("POST", "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"): Case(
        "object",
        {"tool_outputs": [{"tool_call_id": {"$": "tool_call_id"}, "output": "x"}]},
        ids=WAITING,
    ),
    ("GET", "/v1/threads/{thread_id}/runs/{run_id}/steps"): Case("object"),
    ("GET", "/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}"): Case("object"),
    ("GET", "/v1/files/{file_id}"): Case("object"),
    ("DELETE", "/v1/files/{file_id}"): Case("object"),
    ("GET", "/v1/files/{file_id}/content"): Case("object"),
    ("GET", "/v1/vector_stores/{vector_store_id}"): Case("object"),
    ("POST", "/v1/vector_stores/{vector_store_id}"): Case("object", RENAME),
    ("DELETE", "/v1/vector_stores/{vector_store_id}"): Case("object"),
    ("POST", "/v1/vector_stores/{vector_store_id}/search"): Case("object", {"query": "cat"}),
    ("POST", "/v1/vector_stores/{vector_store_id}/files"): Case(
        "object", {"file_id": {"$": "file_id"}}
    ),
    ("GET", "/v1/vector_stores/{vector_store_id}/files"): Case("object"),
    ("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): Case("object"),
    ("POST", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): Case(
        "object", {"attributes": {"owner": "b"}}
    ),
    ("DELETE", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): Case("object"),
    ("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}/content"): Case("object"),
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches"): Case(
        "object", {"file_ids": [{"$": "file_id"}]}
    ),
    ("GET", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}"): Case("object"),
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel"): Case("object"),
    ("GET", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files"): Case("object"),
    ("GET", "/inspector/api/threads/{thread_id}"): Case("object"),
    ("GET", "/inspector/api/threads/{thread_id}/runs"): Case("object"),
    ("GET", "/inspector/api/runs/{run_id}"): Case("object"),
    ("GET", "/inspector/api/runs/{run_id}/steps/{step_id}"): Case("object"),
    ("GET", "/inspector/api/runs/{run_id}/events"): Case("object"),
}


def route_table() -> list[tuple[str, str]]:
    """Every (method, path) the app serves, HEAD aside."""
    app = create_app(Settings())
    try:  # FastAPI with lazily included routers
        from fastapi.routing import iter_route_contexts

        routes: Any = iter_route_contexts(app.routes)
    except ImportError:
        routes = app.routes
    return sorted(
        {
            (method, route.path)
            for route in routes
            for method in route.methods or ()
            if method != "HEAD"
        }
    )


ROUTES = route_table()
PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")
ASSET = "inspector.js"


def test_every_route_is_in_the_matrix() -> None:
    missing = [route for route in ROUTES if route not in MATRIX]
    assert not missing, f"classify these routes in MATRIX (tenant isolation): {missing}"
    stale = [route for route in MATRIX if route not in ROUTES]
    assert not stale, f"MATRIX names routes the app no longer has: {stale}"


@dataclass(frozen=True)
class Tenants:
    a: World
    b_key: str
    b_project: str
    engine: Any

    def snapshots(self) -> tuple[Snapshot, Snapshot]:
        return Snapshot.of(self.engine, self.a.project_id), Snapshot.of(self.engine, self.b_project)


@pytest.fixture(scope="module")
def tenants(server: RunningServer, upstream: ScriptedUpstream) -> Iterator[Tenants]:
    a = world(server, upstream)
    b_key, b_project = server.new_tenant()
    with engine_for(server.database_url) as engine:
        yield Tenants(a, b_key, b_project, engine)


def _fill(value: Any, ids: dict[str, str]) -> Any:
    """``{"$": name}`` placeholders replaced by A's ids."""
    if isinstance(value, dict):
        return (
            ids[value["$"]] if set(value) == {"$"} else {k: _fill(v, ids) for k, v in value.items()}
        )
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    return value


def _url(server: RunningServer, path: str, case: Case, ids: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return ASSET if name == "name" else ids[case.ids.get(name, name)]

    return server.process.url + PARAMETER.sub(fill, path)


def _request(server: RunningServer, tenants: Tenants, method: str, path: str) -> httpx.Response:
    case = MATRIX[(method, path)]
    headers = {"Authorization": f"Bearer {tenants.b_key}", "OpenAI-Beta": "assistants=v2"}
    url = _url(server, path, case, tenants.a.ids)
    if case.upload:
        files = {"file": ("b.txt", io.BytesIO(b"B's own file"), "text/plain")}
        return httpx.post(url, headers=headers, files=files, data={"purpose": "assistants"})
    body = _fill(case.body, tenants.a.ids)
    return httpx.request(method, url, headers=headers, json=body, timeout=30)


def _a_ids(tenants: Tenants) -> list[str]:
    return [value for name, value in tenants.a.ids.items() if name != "model"]


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_another_projects_key_gets_404_and_changes_nothing(
    server: RunningServer, tenants: Tenants, method: str, path: str
) -> None:
    case = MATRIX.get((method, path))
    if case is None:
        pytest.fail("not classified: see test_every_route_is_in_the_matrix")
    a_before, b_before = tenants.snapshots()
    response = _request(server, tenants, method, path)
    a_after, b_after = tenants.snapshots()

    refused = case.kind == "object" or (case.kind == "collection" and case.body is not None)
    if refused:
        assert response.status_code == 404, response.text
        validate_body(response.json())
        assert not b_before.changes(b_after), b_before.changes(b_after)
    else:
        assert response.status_code == 200, response.text
        assert not any(object_id in response.text for object_id in _a_ids(tenants)), response.text
    assert not a_before.changes(a_after), a_before.changes(a_after)


# --- execution: a run of B's naming A's vector store finds nothing of A's ----------------------


def test_a_run_searching_another_projects_store_finds_nothing(
    server: RunningServer, tenants: Tenants, upstream: ScriptedUpstream
) -> None:
    """Tool resources are stored as given, but every search is scoped to the run's project."""
    model = scripted(
        upstream,
        Script(tool_calls=[ToolCall("file_search", {"queries": ["who feeds the cat?"]})]),
        Script(text=["nothing found"]),
    )
    store_id = tenants.a.ids["vector_store_id"]
    with validating_client(server.base_url, tenants.b_key) as b:
        assistant = b.beta.assistants.create(
            model="gpt-4o",
            tools=[{"type": "file_search"}],
            tool_resources={"file_search": {"vector_store_ids": [store_id]}},
        )
        thread = b.beta.threads.create(messages=[{"role": "user", "content": model.say("cat?")}])
        run = b.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, include=[FILE_SEARCH_CONTENT]
        )
        steps = b.beta.threads.runs.steps.list(
            run.id, thread_id=thread.id, include=[FILE_SEARCH_CONTENT]
        )
    assert run.status == "completed", run.last_error
    searches = [
        call
        for step in steps.data
        if step.type == "tool_calls"
        for call in step.step_details.tool_calls  # type: ignore[union-attr]
    ]
    assert searches and all(not call.file_search.results for call in searches)  # type: ignore[union-attr]
    assert "lighthouse" not in str(model.bodies)  # A's passage never reached B's model


def test_bodies_naming_another_projects_objects_in_own_containers_are_404(
    server: RunningServer, tenants: Tenants
) -> None:
    ids = tenants.a.ids
    with validating_client(server.base_url, tenants.b_key) as b:
        thread = b.beta.threads.create()
        store = b.vector_stores.create(name="b")
        attempts = [
            lambda: b.beta.threads.messages.create(
                thread.id,
                role="user",
                content="x",
                attachments=[{"file_id": ids["file_id"], "tools": [{"type": "code_interpreter"}]}],
            ),
            lambda: b.beta.threads.runs.create(thread.id, assistant_id=ids["assistant_id"]),
            lambda: b.vector_stores.files.create(vector_store_id=store.id, file_id=ids["file_id"]),
            lambda: b.vector_stores.file_batches.create(store.id, file_ids=[ids["file_id"]]),
        ]
        before = tenants.snapshots()
        for attempt in attempts:
            with pytest.raises(openai.NotFoundError):
                attempt()
        after = tenants.snapshots()
    assert not before[0].changes(after[0]) and not before[1].changes(after[1])
