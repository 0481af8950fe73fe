"""The router: model names to upstreams (exact names first, then globs in order, prefixes
stripped), the project's own key, and each provider's health and metrics."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from prometheus_client import REGISTRY

from runstep.providers.base import ChatRequest, Finish, ProviderError, ProviderEvent, TextDelta
from runstep.providers.router import UNHEALTHY_AFTER, Health, KeyUnavailable, Router
from runstep.providers.upstreams import Upstream
from tests.providers.helpers import chat, collect, user


@dataclass
class Fake:
    """A provider that records what it was sent and fails while ``failures`` lasts."""

    name: str
    failures: list[ProviderError] = field(default_factory=list)
    sent: list[ChatRequest] = field(default_factory=list)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        self.sent.append(request)
        if self.failures:
            raise self.failures.pop(0)
        yield TextDelta(self.name)
        yield Finish("stop")

    async def aclose(self) -> None:
        pass


@dataclass
class Keys:
    stored: dict[tuple[str, str], str] = field(default_factory=dict)
    broken: bool = False

    async def key(self, project_id: str, provider: str) -> str | None:
        if self.broken:
            raise KeyUnavailable("The project's own key for provider 'x' cannot be read.")
        return self.stored.get((project_id, provider))

    async def providers(self, project_id: str) -> frozenset[str]:
        return frozenset(p for (project, p) in self.stored if project == project_id)


def router(*upstreams: Upstream, keys: Keys | None = None) -> tuple[Router, dict[str, Fake]]:
    fakes = {upstream.name: Fake(upstream.name) for upstream in upstreams}
    return Router([(u, fakes[u.name]) for u in upstreams], keys), fakes


def upstream(name: str, *models: str, **options: object) -> Upstream:
    return Upstream(name=name, base_url=f"http://{name}/v1", models=models, **options)  # type: ignore[arg-type]


ALPHA = upstream("r-alpha", "gpt-*", "*")
BETA = upstream("r-beta", "gpt-4.1", "ollama/*")


def test_exact_names_win_over_globs_and_globs_go_in_configured_order() -> None:
    routes, _ = router(ALPHA, BETA)
    assert routes.route("gpt-4.1").upstream.name == "r-beta"  # type: ignore[union-attr]
    assert routes.route("gpt-4o").upstream.name == "r-alpha"  # type: ignore[union-attr]
    # "*" of r-alpha comes before "ollama/*" of r-beta
    assert routes.route("ollama/llama3").upstream.name == "r-alpha"  # type: ignore[union-attr]
    only_beta, _ = router(BETA)
    assert only_beta.route("claude-3") is None


async def test_a_turn_goes_to_its_upstream_with_the_prefix_stripped() -> None:
    routes, fakes = router(upstream("p-gpt", "gpt-*"), upstream("p-local", "ollama/*"))
    events = await collect(routes, chat(user("Hi"), model="ollama/llama3.1:8b"))
    assert events[0] == TextDelta("p-local")
    [sent] = fakes["p-local"].sent
    assert sent.model == "llama3.1:8b" and not fakes["p-gpt"].sent


async def test_an_unrouted_model_fails_the_turn_naming_it() -> None:
    routes, _ = router(upstream("n-gpt", "gpt-*"))
    with pytest.raises(ProviderError) as caught:
        await collect(routes, chat(user("Hi"), model="claude-3"))
    assert caught.value.kind == "invalid"
    assert caught.value.message == "No configured provider serves the model 'claude-3'."


async def test_a_project_with_its_own_key_sends_it_and_others_send_none() -> None:
    keys = Keys({("proj_a", "k-gpt"): "sk-own-a"})
    routes, fakes = router(upstream("k-gpt", "gpt-*"), keys=keys)
    await collect(routes, chat(user("Hi"), model="gpt-4o", project_id="proj_a"))
    await collect(routes, chat(user("Hi"), model="gpt-4o", project_id="proj_b"))
    assert [sent.api_key for sent in fakes["k-gpt"].sent] == ["sk-own-a", None]
    assert "sk-own-a" not in repr(fakes["k-gpt"].sent[0])


async def test_an_unreadable_project_key_fails_the_turn_rather_than_use_the_shared_key() -> None:
    routes, fakes = router(upstream("b-gpt", "gpt-*"), keys=Keys(broken=True))
    with pytest.raises(ProviderError, match="cannot be read") as caught:
        await collect(routes, chat(user("Hi"), model="gpt-4o", project_id="proj_a"))
    assert caught.value.kind == "server" and not fakes["b-gpt"].sent


async def test_an_upstream_for_own_keys_refuses_projects_without_one() -> None:
    keys = Keys({("proj_a", "o-claude"): "sk-own-a"})
    routes, fakes = router(upstream("o-claude", "claude-*", require_project_key=True), keys=keys)
    await collect(routes, chat(user("Hi"), model="claude-4", project_id="proj_a"))
    with pytest.raises(ProviderError, match="takes only projects' own keys"):
        await collect(routes, chat(user("Hi"), model="claude-4", project_id="proj_b"))
    assert len(fakes["o-claude"].sent) == 1


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_repeated_failures_mark_a_provider_unhealthy_until_it_answers() -> None:
    routes, fakes = router(upstream("h-gpt", "gpt-*"), upstream("h-other", "*"))
    fakes["h-gpt"].failures = [ProviderError("server", "down")] * UNHEALTHY_AFTER
    for _ in range(UNHEALTHY_AFTER):
        with pytest.raises(ProviderError):
            await collect(routes, chat(user("Hi"), model="gpt-4o"))
    health = routes.health["h-gpt"].wire()
    assert health["status"] == "unhealthy" and health["failures_in_a_row"] == UNHEALTHY_AFTER
    assert health["last_error"] == "server"
    assert routes.health["h-other"].healthy
    assert metric("runstep_provider_healthy", provider="h-gpt") == 0
    assert metric("runstep_provider_errors_total", provider="h-gpt", kind="server") == 3

    await collect(routes, chat(user("Hi"), model="gpt-4o"))
    assert routes.health["h-gpt"].wire()["status"] == "healthy"
    assert metric("runstep_provider_healthy", provider="h-gpt") == 1
    assert metric("runstep_provider_requests_total", provider="h-gpt") == UNHEALTHY_AFTER + 1
    assert metric("runstep_provider_turn_seconds_count", provider="h-gpt") == 1


async def test_refusals_are_counted_but_do_not_make_a_provider_unhealthy() -> None:
    routes, fakes = router(upstream("i-gpt", "gpt-*"))
    fakes["i-gpt"].failures = [ProviderError("invalid", "bad option")] * (UNHEALTHY_AFTER + 1)
    for _ in range(UNHEALTHY_AFTER + 1):
        with pytest.raises(ProviderError):
            await collect(routes, chat(user("Hi"), model="gpt-4o"))
    assert routes.health["i-gpt"].healthy
    assert metric("runstep_provider_errors_total", provider="i-gpt", kind="invalid") == 4


@dataclass
class Log:
    records: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    async def record(self, provider: str, health: Health) -> None:
        self.records.append((provider, health.wire()))


async def test_health_is_written_when_it_changes_not_for_every_success() -> None:
    log = Log()
    fake = Fake("w-gpt")
    routes = Router([(upstream("w-gpt", "gpt-*"), fake)], health_log=log)
    await collect(routes, chat(user("Hi"), model="gpt-4o"))  # healthy already: nothing written
    fake.failures = [ProviderError("server", "down")]
    with pytest.raises(ProviderError):
        await collect(routes, chat(user("Hi"), model="gpt-4o"))
    for _ in range(2):
        await collect(routes, chat(user("Hi"), model="gpt-4o"))
    assert [(name, wire["failures_in_a_row"]) for name, wire in log.records] == [
        ("w-gpt", 1),
        ("w-gpt", 0),
    ]
