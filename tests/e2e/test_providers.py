"""Many providers behind one server: runs routed by model name to two scripted upstreams (on
their own ports, serving different models), projects' own upstream keys (set with the CLI,
seen upstream, never shown), ``/v1/models``, unknown models refused at creation, options in
each family's form, and a failing provider marked unhealthy."""

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from runstep.services.keys import create_key
from runstep.services.upstream_keys import new_secret
from runstep.store import tables
from runstep.store.db import Database
from tests.conformance import spec_available
from tests.conftest import BACKENDS, RunningServer, _fresh_database
from tests.support.asyncio_bridge import run_sync
from tests.support.processes import WorkerProcess
from tests.support.runs import Scripted, ServerSpec, own_servers, scripted
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.server import free_port
from tests.support.upstream_script import Script
from tests.support.validating_client import validate_body

SHARED_KEY = "sk-alpha-shared-key-5f1e0c"  # the operator's key for provider alpha
OWN_ALPHA_KEY = "sk-own-alpha-key-of-project-a-93c1"  # project A's own key for alpha
OWN_GAMMA_KEY = "sk-own-gamma-key-of-project-a-7d2b"  # project A's own key for gamma
SECRETS = (SHARED_KEY, OWN_ALPHA_KEY, OWN_GAMMA_KEY)
ALPHA_MODELS = ["gpt-4o", "gpt-4.1", "text-embedding-3-small"]
BETA_MODELS = ["llama3.1:8b", "qwen2.5:7b"]


def providers_toml(alpha: ScriptedUpstream, beta: ScriptedUpstream) -> str:
    return f"""
[[providers]]
name = "alpha"
base_url = "{alpha.base_url}"
api_key_env = "ALPHA_SHARED_KEY"
models = ["gpt-4.1", "gpt-*", "o[0-9]*"]
max_retries = 0
timeout_seconds = 5

[[providers]]
name = "beta"
base_url = "{beta.base_url}"
models = ["llama3.1:8b", "ollama/*"]
max_retries = 0
timeout_seconds = 5

[[providers]]
name = "gamma"
base_url = "{beta.base_url}"
models = ["claude-sonnet-4", "claude-*"]
require_project_key = true
list_models = false
max_retries = 0
"""


@dataclass
class Providers:
    """A server routing to ``alpha`` and ``beta``, and what its CLI needs."""

    server: RunningServer
    alpha: ScriptedUpstream
    beta: ScriptedUpstream
    env: dict[str, str]

    def tenant(self) -> tuple[str, str]:
        """(API key, project id) of a new project."""

        async def issue() -> tuple[str, str]:
            database = Database(self.server.database_url)
            try:
                issued = await create_key(database, "test")
                return issued.key, issued.project_id
            finally:
                await database.close()

        return run_sync(issue())

    def cli(self, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> str:
        """``runstep ARGS`` against this server's database and providers file."""
        done = subprocess.run(
            [sys.executable, "-m", "runstep", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env, **(env or {})},
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def log(self) -> str:
        return self.server.process.log_path.read_text()


@pytest.fixture(scope="session")
def scripted_pair() -> Iterator[tuple[ScriptedUpstream, ScriptedUpstream]]:
    with ScriptedUpstream() as alpha, ScriptedUpstream() as beta:
        alpha.serve_models(ALPHA_MODELS)
        beta.serve_models(BETA_MODELS)
        yield alpha, beta


@pytest.fixture(scope="session")
def provider_servers(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ScriptedUpstream,
    scripted_pair: tuple[ScriptedUpstream, ScriptedUpstream],
) -> Iterator[dict[str, Providers]]:
    alpha, beta = scripted_pair
    config = tmp_path_factory.mktemp("providers") / "providers.toml"
    config.write_text(providers_toml(alpha, beta))
    env = {
        "RUNSTEP_CONFIG": str(config),
        "RUNSTEP_UPSTREAM_BASE_URL": "",
        "RUNSTEP_UPSTREAM_API_KEY": "",
        "ALPHA_SHARED_KEY": SHARED_KEY,
        "RUNSTEP_SECRET_KEY": new_secret(),
    }
    specs = {f"providers-{b}": ServerSpec(b, env=env) for b in BACKENDS}
    with own_servers(specs, request, tmp_path_factory, upstream) as started:
        yield {
            name: Providers(
                running,
                alpha,
                beta,
                {
                    **env,
                    "RUNSTEP_DATABASE_URL": running.database_url,
                    "RUNSTEP_DATA_DIR": str(running.process.log_path.parent),
                },
            )
            for name, running in started.items()
        }


@pytest.fixture(params=BACKENDS)
def providers(request: pytest.FixtureRequest, provider_servers: dict[str, Providers]) -> Providers:
    return provider_servers[f"providers-{request.param}"]


class Recorded:
    """An official client whose every JSON response is validated and kept."""

    def __init__(self, server: RunningServer, key: str) -> None:
        self.bodies: list[str] = []

        def keep(response: Any) -> None:
            if "application/json" in response.headers.get("content-type", ""):
                response.read()
                self.bodies.append(response.text)
                if spec_available():
                    validate_body(response.json())

        http = openai.DefaultHttpxClient(event_hooks={"response": [keep]})
        self.client = openai.OpenAI(
            base_url=server.base_url, api_key=key, http_client=http, max_retries=0
        )


@pytest.fixture
def recorded() -> Iterator[Callable[[Providers, str], Recorded]]:
    """Opens ``Recorded`` clients (for a server and a key), closed after the test."""
    made: list[Recorded] = []

    def open_client(providers: Providers, key: str) -> Recorded:
        made.append(Recorded(providers.server, key))
        return made[-1]

    yield open_client
    for client in made:
        client.client.close()


Open = Callable[[Providers, str], Recorded]


def run_once(
    client: openai.OpenAI, script: Scripted, model: str, **options: Any
) -> openai.types.beta.threads.Run:
    """A completed (or failed) run of ``model`` on a thread saying the script's marker."""
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": script.say("Hi")}])
    return client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50, **options
    )


def both(providers: Providers, *scripts: Script) -> tuple[Scripted, Scripted]:
    """The same scripts under one name on both upstreams: whichever gets the run answers, and
    ``Scripted.requests`` tells which did."""
    on_alpha = scripted(providers.alpha, *scripts)
    providers.beta.register(on_alpha.name, *scripts)
    return on_alpha, Scripted(providers.beta, on_alpha.name)


# --- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "target", "sent_as"),
    [
        ("gpt-4.1", "alpha", "gpt-4.1"),  # an exact name
        ("gpt-4o-mini", "alpha", "gpt-4o-mini"),  # a glob
        ("llama3.1:8b", "beta", "llama3.1:8b"),
        ("ollama/qwen2.5:7b", "beta", "qwen2.5:7b"),  # the prefix is stripped
    ],
)
def test_runs_go_to_the_upstream_serving_their_model(
    providers: Providers, model: str, target: str, sent_as: str, recorded: Open
) -> None:
    key, _ = providers.tenant()
    on_alpha, on_beta = both(providers, Script(text=["routed"]))
    run = run_once(recorded(providers, key).client, on_alpha, model)
    assert run.status == "completed" and run.model == model
    reached, missed = (on_alpha, on_beta) if target == "alpha" else (on_beta, on_alpha)
    [request] = reached.requests
    assert request.body["model"] == sent_as and not missed.requests
    expected = f"Bearer {SHARED_KEY}" if target == "alpha" else "Bearer runstep-no-key"
    assert request.headers["authorization"] == expected


def test_options_take_each_familys_form(providers: Providers, recorded: Open) -> None:
    key, _ = providers.tenant()
    client = recorded(providers, key).client
    on_alpha, on_beta = both(providers, Script(text=["ok"]))
    for model in ("o3-mini", "llama3.1:8b"):
        run = run_once(client, on_alpha, model, reasoning_effort="low", max_completion_tokens=300)
        assert run.status == "completed"
    [reasoning] = on_alpha.bodies
    assert reasoning["reasoning_effort"] == "low" and reasoning["max_completion_tokens"] == 300
    [llama] = on_beta.bodies
    assert "reasoning_effort" not in llama and "max_completion_tokens" not in llama
    assert llama["max_tokens"] == 300


def test_an_upstream_refusing_an_option_fails_the_run_quoting_it(
    providers: Providers, recorded: Open
) -> None:
    key, _ = providers.tenant()
    refusal = "Unsupported parameter: 'response_format' is not supported with this model."
    script = scripted(providers.alpha, Script(status=400, error={"message": refusal}))
    schema = {"name": "n", "schema": {"type": "object"}, "strict": True}
    run = run_once(
        recorded(providers, key).client,
        script,
        "gpt-4.1",
        response_format={"type": "json_schema", "json_schema": schema},
    )
    assert run.status == "failed" and run.last_error is not None
    assert run.last_error.code == "invalid_prompt"
    assert run.last_error.message == f"The upstream model refused the request: {refusal}"
    [sent] = script.bodies
    assert sent["response_format"] == {"type": "json_schema", "json_schema": schema}


# --- unknown models -----------------------------------------------------------------------------


def _refused(error: openai.BadRequestError, model: str) -> None:
    assert error.status_code == 400
    assert error.body == {
        "message": f"The requested model '{model}' does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_unknown_models_are_refused_at_creation_naming_them(
    providers: Providers, recorded: Open
) -> None:
    key, _ = providers.tenant()
    client = recorded(providers, key).client
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.assistants.create(model="mistral-large-latest")
    _refused(caught.value, "mistral-large-latest")

    assistant = client.beta.assistants.create(model="gpt-4.1")
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.assistants.update(assistant.id, model="ollama")  # no "ollama/" prefix
    _refused(caught.value, "ollama")
    thread = client.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.runs.create(thread.id, assistant_id=assistant.id, model="gemini-2")
    _refused(caught.value, "gemini-2")
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.create_and_run(assistant_id=assistant.id, model="claude-sonnet-4")
    _refused(caught.value, "claude-sonnet-4")  # gamma takes only projects' own keys

    assert client.beta.assistants.retrieve(assistant.id).model == "gpt-4.1"
    assert client.beta.threads.runs.list(thread.id).data == []
    assert len(client.beta.assistants.list().data) == 1


# --- projects' own keys -------------------------------------------------------------------------


def test_a_projects_own_key_goes_upstream_and_is_never_shown(
    providers: Providers, recorded: Open
) -> None:
    key_a, project_a = providers.tenant()
    key_b, _ = providers.tenant()
    said = providers.cli("keys", "set-upstream", project_a, "alpha", stdin=OWN_ALPHA_KEY + "\n")
    providers.cli(
        "keys",
        "set-upstream",
        project_a,
        "gamma",
        "--from-env",
        "GAMMA_KEY",
        env={"GAMMA_KEY": OWN_GAMMA_KEY},
    )
    a, b = recorded(providers, key_a), recorded(providers, key_b)

    on_alpha = scripted(providers.alpha, Script(text=["billed"]))
    assert run_once(a.client, on_alpha, "gpt-4.1").status == "completed"
    assert run_once(b.client, on_alpha, "gpt-4.1").status == "completed"
    sent = [request.headers["authorization"] for request in on_alpha.requests]
    assert sent == [f"Bearer {OWN_ALPHA_KEY}", f"Bearer {SHARED_KEY}"]

    on_gamma = scripted(providers.beta, Script(text=["own key only"]))
    assert run_once(a.client, on_gamma, "claude-sonnet-4").status == "completed"
    assert on_gamma.requests[0].headers["authorization"] == f"Bearer {OWN_GAMMA_KEY}"
    assert "claude-sonnet-4" in [m.id for m in a.client.models.list()]
    assert "claude-sonnet-4" not in [m.id for m in b.client.models.list()]

    # an upstream echoing the key in its refusal: the run's error shows it masked
    echo = scripted(
        providers.alpha,
        Script(status=401, error={"message": f"Incorrect API key provided: {OWN_ALPHA_KEY}."}),
    )
    failed = run_once(a.client, echo, "gpt-4o")
    assert failed.status == "failed" and failed.last_error is not None
    assert failed.last_error.message.endswith("Incorrect API key provided: ***.")

    listed = providers.cli("keys", "list-upstream", "--json", "--project", project_a)
    assert [(row["project_id"], row["provider"]) for row in json.loads(listed)] == [
        (project_a, "alpha"),
        (project_a, "gamma"),
    ]
    for path in ("/health", "/metrics"):
        a.bodies.append(httpx.get(providers.server.process.url + path).text)
    sealed = run_sync(_sealed_keys(providers.server.database_url))
    seen = "\n".join([*a.bodies, *b.bodies, said, listed, providers.log(), *sealed])
    for secret in SECRETS:
        assert secret not in seen
    assert len(sealed) == 2 and all(value.startswith("v1.") for value in sealed)


async def _sealed_keys(url: str) -> list[str]:
    database = Database(url)
    try:
        async with database.read() as conn:
            return list((await conn.execute(sa.select(tables.upstream_keys.c.sealed))).scalars())
    finally:
        await database.close()


# --- /v1/models ---------------------------------------------------------------------------------


def test_models_lists_configured_and_upstream_models_that_route_back(
    providers: Providers, recorded: Open
) -> None:
    key, _ = providers.tenant()
    client = recorded(providers, key).client
    listed = client.models.list()
    assert [model.id for model in listed] == [
        "gpt-4.1",  # configured for alpha
        "gpt-4o",  # alpha's own list (text-embedding-3-small routes nowhere)
        "llama3.1:8b",  # configured for beta, and listed by it
        "ollama/llama3.1:8b",  # beta's own list under its prefix
        "ollama/qwen2.5:7b",
    ]
    gpt_4o = client.models.retrieve("gpt-4o")
    assert (gpt_4o.object, gpt_4o.created, gpt_4o.owned_by) == (
        "model",
        1700000000,
        "runstep-tests",
    )
    assert client.models.retrieve("ollama/qwen2.5:7b").id == "ollama/qwen2.5:7b"
    assert client.models.retrieve("gpt-5").owned_by == "alpha"  # routed by a glob: usable
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("mistral-large-latest")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


# --- health -------------------------------------------------------------------------------------


def test_a_provider_failing_repeatedly_is_unhealthy_until_it_answers(
    provider_servers: dict[str, Providers], recorded: Open
) -> None:
    providers = provider_servers["providers-sqlite"]
    key, _ = providers.tenant()
    client = recorded(providers, key).client
    health = providers.server.process.url + "/health"
    down = scripted(providers.beta, *[Script(status=503)] * 3, Script(text=["up"]))
    for _ in range(3):
        run = run_once(client, down, "llama3.1:8b")
        assert run.status == "failed" and run.last_error is not None
        assert run.last_error.code == "server_error"
    seen = httpx.get(health).json()
    assert seen["status"] == "degraded"
    assert seen["providers"]["beta"]["status"] == "unhealthy"
    assert seen["providers"]["beta"]["failures_in_a_row"] == 3
    assert seen["providers"]["alpha"]["status"] == "healthy"
    metrics = httpx.get(providers.server.process.url + "/metrics").text
    assert 'runstep_provider_errors_total{kind="server",provider="beta"} 3.0' in metrics
    assert 'runstep_provider_healthy{provider="beta"} 0.0' in metrics

    assert run_once(client, down, "llama3.1:8b").status == "completed"
    seen = httpx.get(health).json()
    assert seen["status"] == "ok" and seen["providers"]["beta"]["status"] == "healthy"
    assert (
        'runstep_provider_turn_seconds_count{provider="beta"}'
        in httpx.get(providers.server.process.url + "/metrics").text
    )


def test_a_server_refuses_to_start_on_an_unusable_providers_file(tmp_path: Path) -> None:
    config = tmp_path / "providers.toml"
    config.write_text('[[providers]]\nname = "x"\nbase_url = "http://127.0.0.1:9/v1"\n')
    done = subprocess.run(
        [sys.executable, "-m", "runstep", "serve", "--port", "9"],
        capture_output=True,
        text=True,
        env={**os.environ, "RUNSTEP_CONFIG": str(config), "RUNSTEP_DATA_DIR": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{config}: provider 'x': 'models' is required" in " ".join(done.stdout.split())


def test_a_worker_serves_its_provider_metrics_when_asked(
    request: pytest.FixtureRequest, tmp_path: Path, scripted_pair: tuple[ScriptedUpstream, ...]
) -> None:
    port = free_port()
    env = {
        "RUNSTEP_DATA_DIR": str(tmp_path),
        "RUNSTEP_DATABASE_URL": _fresh_database("sqlite", tmp_path, request),
        "RUNSTEP_UPSTREAM_BASE_URL": scripted_pair[0].base_url,
    }
    worker = WorkerProcess(env, tmp_path / "worker.log", ("--metrics-port", str(port))).start()
    try:
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        worker.stop()
    assert 'runstep_provider_healthy{provider="default"} 1.0' in metrics
