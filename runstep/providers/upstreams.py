"""The configured upstreams: ``providers.toml`` (``RUNSTEP_CONFIG``), or the single upstream of
``RUNSTEP_UPSTREAM_*``, or none (then the local stand-in answers).

An upstream serves model patterns: exact names (``gpt-4.1``) and globs (``gpt-*``). A pattern
``PREFIX/*`` routes every model under ``PREFIX/`` and sends the name without the prefix
(``ollama/llama3.1:8b`` goes out as ``llama3.1:8b``) unless the upstream sets
``strip_prefix = false``.
"""

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from runstep.config import Settings

TokenLimitParam = Literal["auto", "max_completion_tokens", "max_tokens"]
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SINGLE_NAME = "default"  # the upstream of RUNSTEP_UPSTREAM_BASE_URL


class ConfigError(Exception):
    """The providers configuration cannot be used; the message says where and why."""


def has_wildcard(text: str) -> bool:
    return any(char in text for char in "*?[")


@dataclass(frozen=True)
class ModelPattern:
    """One entry of an upstream's ``models``."""

    text: str
    strip: bool = True

    @property
    def exact(self) -> bool:
        return not has_wildcard(self.text)

    @property
    def prefix(self) -> str | None:
        """``PREFIX/`` for a stripping ``PREFIX/*`` pattern, else None."""
        head = self.text[:-1]
        if self.strip and self.text.endswith("/*") and not has_wildcard(head):
            return head
        return None

    def matches(self, model: str) -> bool:
        return model == self.text if self.exact else fnmatchcase(model, self.text)

    def upstream_model(self, model: str) -> str:
        """The name sent upstream for ``model`` (which this pattern matches)."""
        prefix = self.prefix
        return model[len(prefix) :] if prefix else model

    def public_names(self, upstream_model: str) -> list[str]:
        """The names under which an upstream's own model id can be asked for here."""
        prefix = self.prefix
        if prefix:
            return [prefix + upstream_model]
        return [upstream_model] if self.matches(upstream_model) else []


@dataclass(frozen=True)
class Upstream:
    """One OpenAI-compatible Chat Completions endpoint and the models it serves."""

    name: str
    base_url: str
    models: tuple[str, ...] = ("*",)
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout_seconds: float = 60.0
    max_retries: int = 3
    strip_prefix: bool = True
    require_project_key: bool = False  # only projects with their own key may use it
    projects: tuple[str, ...] | None = None  # only these projects may use it
    list_models: bool = True  # ask the upstream's GET /models for GET /v1/models
    token_limit_param: TokenLimitParam = "auto"  # auto: by model family
    reasoning_models: tuple[str, ...] | None = None  # None: the built-in families

    @property
    def patterns(self) -> list[ModelPattern]:
        return [ModelPattern(text, self.strip_prefix) for text in self.models]

    def open_to(self, project_id: str, own_key: bool) -> bool:
        """Whether ``project_id`` (holding its own key for this upstream or not) may use it."""
        if self.projects is not None and project_id not in self.projects:
            return False
        return own_key or not self.require_project_key


def load_upstreams(settings: Settings, env: Mapping[str, str] | None = None) -> list[Upstream]:
    """The upstreams this process routes to; empty when none is configured."""
    env = os.environ if env is None else env
    if settings.config_path is not None:
        if settings.upstream_base_url:
            raise ConfigError(
                "Both RUNSTEP_CONFIG and RUNSTEP_UPSTREAM_BASE_URL are set: configure the "
                "upstreams in one place (the providers file, or the single-upstream variables)."
            )
        return read_config(settings.config_path, env)
    if settings.upstream_base_url:
        return [
            Upstream(
                name=SINGLE_NAME,
                base_url=settings.upstream_base_url,
                api_key=settings.upstream_api_key,
                timeout_seconds=settings.upstream_timeout_seconds,
                max_retries=settings.upstream_max_retries,
            )
        ]
    return []


def read_config(path: Path, env: Mapping[str, str]) -> list[Upstream]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"Cannot read the providers file {path}: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from None
    try:
        return parse_config(data, env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


FIELDS = {
    "name",
    "base_url",
    "api_key",
    "api_key_env",
    "headers",
    "timeout_seconds",
    "max_retries",
    "models",
    "strip_prefix",
    "require_project_key",
    "projects",
    "list_models",
    "token_limit_param",
    "reasoning_models",
}


def parse_config(data: Mapping[str, Any], env: Mapping[str, str]) -> list[Upstream]:
    """The upstreams of a parsed providers file (``[[providers]]`` tables)."""
    unknown = set(data) - {"providers"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; expected [[providers]].")
    tables = data.get("providers")
    if not isinstance(tables, list) or not tables:
        raise ConfigError("no providers: add at least one [[providers]] table.")
    upstreams: list[Upstream] = []
    for position, table in enumerate(tables):
        if not isinstance(table, dict):
            raise ConfigError(f"providers[{position}] must be a table.")
        upstreams.append(_upstream(table, env, f"providers[{position}]"))
    _check_unique(upstreams)
    return upstreams


def _upstream(table: dict[str, Any], env: Mapping[str, str], where: str) -> Upstream:
    unknown = set(table) - FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(FIELDS)}.")
    name = _get(table, "name", str, where)
    if name is None or not NAME.match(name):
        raise ConfigError(f"{where}: 'name' is required: letters, digits, '_', '-', '.' only.")
    where = f"provider '{name}'"
    base_url = _get(table, "base_url", str, where)
    if base_url is None or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: 'base_url' is required, an http:// or https:// URL.")
    models = _strings(table, "models", where)
    if not models:
        raise ConfigError(f"{where}: 'models' is required: exact names and globs it serves.")
    projects = _strings(table, "projects", where)
    reasoning = _strings(table, "reasoning_models", where)
    return Upstream(
        name=name,
        base_url=base_url,
        models=tuple(models),
        api_key=_api_key(table, env, where),
        headers=_headers(table, where),
        strip_prefix=_flag(table, "strip_prefix", True, where),
        require_project_key=_flag(table, "require_project_key", False, where),
        projects=tuple(projects) if projects is not None else None,
        list_models=_flag(table, "list_models", True, where),
        reasoning_models=tuple(reasoning) if reasoning is not None else None,
        **_limits(table, where),
    )


def _headers(table: dict[str, Any], where: str) -> dict[str, str]:
    headers = table.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}: 'headers' must be a table of strings.")
    return dict(headers)


def _limits(table: dict[str, Any], where: str) -> dict[str, Any]:
    """``timeout_seconds``, ``max_retries`` and ``token_limit_param``, checked."""
    timeout = _get(table, "timeout_seconds", (int, float), where)
    retries = _get(table, "max_retries", int, where)
    if (timeout is not None and timeout <= 0) or (retries is not None and retries < 0):
        raise ConfigError(f"{where}: 'timeout_seconds' must be > 0 and 'max_retries' >= 0.")
    limit = _get(table, "token_limit_param", str, where) or "auto"
    if limit not in ("auto", "max_completion_tokens", "max_tokens"):
        raise ConfigError(
            f"{where}: 'token_limit_param' is one of auto, max_completion_tokens, max_tokens."
        )
    return {
        "timeout_seconds": float(timeout if timeout is not None else 60.0),
        "max_retries": retries if retries is not None else 3,
        "token_limit_param": limit,
    }


def _api_key(table: dict[str, Any], env: Mapping[str, str], where: str) -> str | None:
    """The literal ``api_key``, or the value of the variable ``api_key_env`` names."""
    key = _get(table, "api_key", str, where)
    variable = _get(table, "api_key_env", str, where)
    if key is not None and variable is not None:
        raise ConfigError(f"{where}: set 'api_key' or 'api_key_env', not both.")
    if variable is None:
        return key or None
    if not env.get(variable):
        raise ConfigError(f"{where}: 'api_key_env' names {variable}, which is not set.")
    return env[variable]


def _get(table: dict[str, Any], key: str, kind: Any, where: str) -> Any:
    value = table.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ConfigError(f"{where}: '{key}' has the wrong type ({type(value).__name__}).")
    return value


def _flag(table: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be true or false.")
    return value


def _strings(table: dict[str, Any], key: str, where: str) -> list[str] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of non-empty strings.")
    return list(value)


def _check_unique(upstreams: list[Upstream]) -> None:
    names: set[str] = set()
    exact: dict[str, str] = {}
    for upstream in upstreams:
        if upstream.name in names:
            raise ConfigError(f"two providers are named '{upstream.name}'.")
        names.add(upstream.name)
        for pattern in upstream.patterns:
            if pattern.exact and pattern.text in exact:
                raise ConfigError(
                    f"the model '{pattern.text}' is listed by both '{exact[pattern.text]}' "
                    f"and '{upstream.name}'."
                )
            if pattern.exact:
                exact[pattern.text] = upstream.name
