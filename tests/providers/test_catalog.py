"""The catalog: which models a project may use (checked at creation) and what /v1/models
lists: configured names, the upstreams' own listings mapped back through the routes, cached,
with failures tolerated."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from runstep.errors import InvalidRequest, NotFound
from runstep.providers.base import ProviderError
from runstep.providers.catalog import Catalog
from runstep.providers.router import Router
from runstep.providers.upstreams import Upstream
from tests.providers.test_router import Fake, Keys


@dataclass
class Lister(Fake):
    """A provider whose upstream lists ``listed`` (or fails), recording the keys it used."""

    listed: list[str] = field(default_factory=list)
    broken: bool = False
    asked: list[str | None] = field(default_factory=list)

    async def list_models(self, api_key: str | None = None) -> list[dict[str, Any]]:
        self.asked.append(api_key)
        if self.broken:
            raise ProviderError("server", "The connection to the upstream model failed.")
        return [{"id": i, "created": 1, "owned_by": "upstream-org"} for i in self.listed]


GPT = Upstream(name="gpt", base_url="http://gpt/v1", models=("gpt-4.1", "gpt-*"))
OLLAMA = Upstream(name="ollama", base_url="http://ollama/v1", models=("ollama/*",))
CLAUDE = Upstream(
    name="claude", base_url="http://c/v1", models=("claude-*",), require_project_key=True
)
TEAM = Upstream(name="team", base_url="http://t/v1", models=("team-model",), projects=("proj_t",))


def catalog(keys: Keys | None = None) -> tuple[Catalog, dict[str, Lister]]:
    listers = {
        "gpt": Lister("gpt", listed=["gpt-4o", "gpt-4.1", "dall-e-3"]),
        "ollama": Lister("ollama", listed=["llama3.1:8b"]),
        "claude": Lister("claude", listed=["claude-sonnet-4"]),
        "team": Lister("team"),
    }
    upstreams = [GPT, OLLAMA, CLAUDE, TEAM]
    return Catalog(Router([(u, listers[u.name]) for u in upstreams], keys), keys), listers


async def ids(models: Catalog, project_id: str) -> list[str]:
    return [model["id"] for model in await models.models(project_id)]


async def test_the_list_holds_configured_names_and_what_upstreams_list_that_route_back() -> None:
    models, _ = catalog(Keys())
    listed = await models.models("proj_a")
    assert [m["id"] for m in listed] == ["gpt-4.1", "gpt-4o", "ollama/llama3.1:8b"]
    assert listed[0] == {"id": "gpt-4.1", "object": "model", "created": 0, "owned_by": "gpt"}
    assert listed[1] == {
        "id": "gpt-4o",
        "object": "model",
        "created": 1,
        "owned_by": "upstream-org",
    }


async def test_the_list_is_scoped_to_the_projects_own_keys_and_allowed_upstreams() -> None:
    keys = Keys({("proj_k", "claude"): "sk-claude-own"})
    models, listers = catalog(keys)
    assert "claude-sonnet-4" in await ids(models, "proj_k")
    assert listers["claude"].asked == ["sk-claude-own"]  # listed as the project's key sees it
    assert "claude-sonnet-4" not in await ids(models, "proj_other")
    assert "team-model" in await ids(models, "proj_t")
    assert "team-model" not in await ids(models, "proj_other")


async def test_listings_are_cached_per_key_and_failures_are_tolerated() -> None:
    models, listers = catalog(Keys())
    listers["ollama"].broken = True
    assert await ids(models, "proj_a") == ["gpt-4.1", "gpt-4o"]
    await ids(models, "proj_b")
    assert listers["gpt"].asked == [None] and listers["ollama"].asked == [None]


async def test_access_refuses_unknown_and_unavailable_models_naming_them() -> None:
    models, _ = catalog(Keys())
    access = await models.access("proj_a")
    access.check("gpt-4o")
    access.check("ollama/anything")
    for model in ("claude-sonnet-4", "team-model", "mistral-large"):
        with pytest.raises(InvalidRequest) as caught:
            access.check(model)
        error = caught.value.body()["error"]
        assert error == {
            "message": f"The requested model '{model}' does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }


async def test_retrieving_a_model_finds_what_a_run_could_use() -> None:
    models, _ = catalog(Keys())
    assert (await models.model("proj_a", "gpt-4o"))["owned_by"] == "upstream-org"
    # routed by a glob but not listed: still usable, so it exists
    assert await models.model("proj_a", "gpt-5") == {
        "id": "gpt-5",
        "object": "model",
        "created": 0,
        "owned_by": "gpt",
    }
    with pytest.raises(NotFound):
        await models.model("proj_a", "claude-sonnet-4")
