"""Validate JSON returned by the server against the official OpenAI OpenAPI schemas.

``validate(obj, "RunObject")`` checks ``obj`` against ``#/components/schemas/RunObject`` of
``../shared/openapi/openai-openapi.yaml`` (relative to the repository root) and raises
``AssertionError`` listing every violation. ``validate_event(name, data)`` does the same for one
Assistants SSE event, using the event table of the spec's ``AssistantStreamEvent``.

Schema names checked against the spec file (2.3.0):

- objects: ``AssistantObject``, ``ThreadObject``, ``MessageObject``, ``RunObject``,
  ``RunStepObject``, ``RunStepDeltaObject``, ``MessageDeltaObject``, ``OpenAIFile``,
  ``VectorStoreObject``, ``VectorStoreFileObject``, ``VectorStoreFileBatchObject``.
- lists: ``ListAssistantsResponse``, ``ListMessagesResponse``, ``ListRunsResponse``,
  ``ListRunStepsResponse``, ``ListFilesResponse``, ``ListVectorStoresResponse``,
  ``ListVectorStoreFilesResponse``. There is no ``ListThreadsResponse`` (nor a list-threads
  endpoint). ``first_id``/``last_id`` are typed ``string``, so an empty page with ``null`` fails.
- deletions: ``DeleteAssistantResponse``, ``DeleteThreadResponse``, ``DeleteMessageResponse``,
  ``DeleteFileResponse``, ``DeleteVectorStoreResponse``, ``DeleteVectorStoreFileResponse``.
- errors: ``ErrorResponse`` (``{"error": Error}``) and ``Error`` (the four inner keys).
- stream events: ``ThreadStreamEvent``, ``RunStreamEvent``, ``RunStepStreamEvent``,
  ``MessageStreamEvent``, ``ErrorEvent``, ``DoneEvent`` (all under ``AssistantStreamEvent``).

Before validating with JSON Schema 2020-12, the components are translated: OpenAPI 3.0
``nullable: true`` (also the ``allOf: [{$ref}, {nullable: true}]`` idiom) becomes a null-accepting
schema, boolean ``exclusiveMinimum``/``exclusiveMaximum`` become numbers, draft 2019-09
``$recursiveRef: "#"`` becomes a ``$ref`` to its component, schemas with ``properties`` but no
``type`` (``OpenAIFile``, several list responses) get ``type: object``, and annotation-only
keywords (``description``, ``title``, ``example(s)``, ``discriminator``, ``deprecated``, ``x-*``)
are dropped. ``format`` is not asserted. The result is cached per process and on disk in
``.cache/openapi-components.json`` (keyed by the YAML file's mtime and size).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

__all__ = [
    "CACHE_PATH", "SPEC_PATH", "requires_spec", "spec_available", "validate", "validate_event",
]

REPO_ROOT: Final[Path] = Path(__file__).resolve().parents[1]
SPEC_PATH: Final[Path] = REPO_ROOT.parent / "shared" / "openapi" / "openai-openapi.yaml"
CACHE_PATH: Final[Path] = REPO_ROOT / ".cache" / "openapi-components.json"

_CACHE_FORMAT: Final = 3  # bump whenever the translation below changes
_BASE_URI: Final = "https://runstep.invalid/openai-openapi.json"
_MAX_MESSAGE: Final = 300

_SCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
_SCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_VALUES: Final = frozenset(
    {"items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else",
     "unevaluatedItems", "unevaluatedProperties"}
)
_ANNOTATIONS: Final = frozenset(
    {"description", "title", "example", "examples", "discriminator", "deprecated",
     "externalDocs", "xml"}
)
_DROPPED: Final = _ANNOTATIONS | {"nullable", "$recursiveAnchor"}
_COMPOSITES: Final = frozenset({"$ref", "allOf", "anyOf", "oneOf", "not", "const", "if"})


def spec_available() -> bool:
    """Whether the shared OpenAPI spec file is present beside the repository."""
    return SPEC_PATH.is_file()


requires_spec = pytest.mark.skipif(
    not spec_available(), reason="../shared/openapi/openai-openapi.yaml is absent"
)


# --- OpenAPI 3.0 -> JSON Schema 2020-12 translation -------------------------------------------


def _is_nullable_marker(schema: object) -> bool:
    """True for an ``allOf`` member such as ``{nullable: true}`` that only adds nullability."""
    if not isinstance(schema, dict) or schema.get("nullable") is not True:
        return False
    return all(key == "nullable" or key in _ANNOTATIONS or key.startswith("x-") for key in schema)


def _with_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` widened to also accept ``null``."""
    kind = schema.get("type")
    if kind is None or _COMPOSITES & schema.keys():
        return {"anyOf": [schema, {"type": "null"}]} if schema else schema
    kinds = [kind] if isinstance(kind, str) else list(kind)
    widened = {**schema, "type": kinds if "null" in kinds else [*kinds, "null"]}
    if "enum" in widened and None not in widened["enum"]:
        widened["enum"] = [*widened["enum"], None]
    return widened


def _fix_exclusive_bounds(schema: dict[str, Any]) -> None:
    """Turn OpenAPI 3.0 boolean ``exclusiveMinimum``/``exclusiveMaximum`` into 2020-12 numbers."""
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        flag = schema.get(exclusive)
        if not isinstance(flag, bool):
            continue
        del schema[exclusive]
        if flag and bound in schema:
            schema[exclusive] = schema.pop(bound)


def _translate(schema: object, home: str) -> object:
    """Translate one OpenAPI 3.x schema (recursively) into plain JSON Schema 2020-12.

    ``home`` is the ``$ref`` of the enclosing component, the target of ``$recursiveRef: "#"``.
    """
    if not isinstance(schema, dict):
        return schema  # boolean schemas
    nullable = schema.get("nullable") is True
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED or key.startswith("x-"):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _translate(sub, home) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            if key == "allOf" and any(_is_nullable_marker(sub) for sub in value):
                nullable = True
                value = [sub for sub in value if not _is_nullable_marker(sub)]
            out[key] = [_translate(sub, home) for sub in value]
        elif key in _SCHEMA_VALUES:
            out[key] = _translate(value, home)
        elif key == "$recursiveRef" and value == "#":
            out["$ref"] = home  # draft 2019-09 self-reference (CompoundFilter)
        elif key == "required" and isinstance(value, list):
            out[key] = list(dict.fromkeys(value))  # ContainerResource repeats names
        else:
            out[key] = value
    _fix_exclusive_bounds(out)
    if "properties" in out and "type" not in out and not _COMPOSITES & out.keys():
        out["type"] = "object"  # e.g. OpenAIFile, ListMessagesResponse: else `null` would pass
    return _with_null(out) if nullable else out


# --- loading and caching ------------------------------------------------------------------------


def _parse_components(spec_path: Path) -> dict[str, Any]:
    """Parse the YAML (C loader when available) and translate ``components.schemas``."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path.open("rb") as stream:
        document = yaml.load(stream, Loader=loader)
    # YAML turns some example values into dates: make everything plain JSON first.
    schemas = json.loads(json.dumps(document["components"]["schemas"], default=str))
    return {
        "schemas": {
            name: _translate(schema, f"#/components/schemas/{name}")
            for name, schema in schemas.items()
        }
    }


def _cache_key(spec_path: Path) -> dict[str, int]:
    """Identify one version of the spec file (and of the translation)."""
    stat = spec_path.stat()
    return {"format": _CACHE_FORMAT, "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}


def _load_components(spec_path: Path, cache_path: Path) -> dict[str, Any]:
    """Return the translated ``components`` document, through the on-disk cache."""
    key = _cache_key(spec_path)
    try:
        cached = json.loads(cache_path.read_text(encoding="utf-8"))
        if isinstance(cached, dict) and cached.get("key") == key:
            return dict(cached["components"])
    except (OSError, ValueError, KeyError):
        pass
    components = _parse_components(spec_path)
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"key": key, "components": components}), encoding="utf-8")
        os.replace(partial, cache_path)
    except OSError:
        pass  # a read-only checkout still validates, only more slowly
    return components


@functools.cache
def _components() -> dict[str, Any]:
    """The translated components of ``SPEC_PATH``, loaded once per process."""
    return _load_components(SPEC_PATH, CACHE_PATH)


@functools.cache
def _registry() -> Registry[Any]:
    """A registry holding the components document under ``_BASE_URI``."""
    resource = DRAFT202012.create_resource({"components": _components()})
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)
    return registry


@functools.cache
def _validator(pointer: str) -> Draft202012Validator:
    """A validator for the schema at JSON pointer ``pointer`` in the components document."""
    return Draft202012Validator({"$ref": f"{_BASE_URI}#{pointer}"}, registry=_registry())


# --- validation ---------------------------------------------------------------------------------


def _shorten(text: str) -> str:
    """Cut long messages (they embed the offending instance) to a readable length."""
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _is_tag_mismatch(error: ValidationError) -> bool:
    """Whether ``error`` says the instance is of another kind (wrong ``type``/``object`` tag)."""
    path = list(error.relative_path)
    if error.validator in ("enum", "const") and path in (["type"], ["object"]):
        return True
    return error.validator == "type" and not path


def _closest(error: ValidationError) -> list[ValidationError]:
    """The errors of the anyOf/oneOf branch that ``error``'s instance most likely meant."""
    branches: dict[object, list[ValidationError]] = {}
    for sub in error.context or []:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    return min(
        branches.values(),
        key=lambda errs: (any(map(_is_tag_mismatch, errs)), len(errs)),
    )


def _describe(errors: Iterable[ValidationError], depth: int = 1) -> list[str]:
    """One line per error (path and message); failed anyOf/oneOf show their closest branch."""
    lines = []
    for error in sorted(errors, key=lambda e: (e.json_path, e.message)):
        pad = "  " * depth
        if error.validator in ("anyOf", "oneOf") and error.context:
            lines.append(f"{pad}{error.json_path}: matches no {error.validator} branch; closest:")
            lines.extend(_describe(_closest(error), depth + 1))
        else:
            lines.append(f"{pad}{error.json_path}: {_shorten(error.message)}")
    return lines


def _check(obj: object, pointer: str, label: str) -> None:
    """Raise ``AssertionError`` listing every error of ``obj`` against the schema at ``pointer``."""
    errors = list(_validator(pointer).iter_errors(obj))
    if errors:
        count = f"{len(errors)} error" + ("s" if len(errors) > 1 else "")
        details = "\n".join(_describe(errors))
        raise AssertionError(f"{label} does not conform ({count}):\n{details}")


def validate(obj: object, schema_name: str) -> None:
    """Assert that ``obj`` conforms to ``#/components/schemas/<schema_name>`` of the spec."""
    if schema_name not in _components()["schemas"]:
        raise LookupError(f"no schema {schema_name!r} in {SPEC_PATH.name}")
    _check(obj, f"/components/schemas/{schema_name}", schema_name)


@functools.cache
def _event_table() -> dict[str, tuple[str, str]]:
    """Map each event name of ``AssistantStreamEvent`` to (pointer of its data, label)."""
    schemas = _components()["schemas"]
    table: dict[str, tuple[str, str]] = {}
    for group_ref in schemas["AssistantStreamEvent"]["oneOf"]:
        group = group_ref["$ref"].rsplit("/", 1)[-1]
        base = f"/components/schemas/{group}"
        variants = schemas[group].get("oneOf")
        members = (
            [(f"{base}/oneOf/{i}", v) for i, v in enumerate(variants)]
            if variants else [(base, schemas[group])]
        )
        for pointer, member in members:
            data = member["properties"]["data"]
            label = data["$ref"].rsplit("/", 1)[-1] if "$ref" in data else f"{group}.data"
            for name in member["properties"]["event"]["enum"]:
                table[name] = (f"{pointer}/properties/data", label)
    return table


def validate_event(event_name: str, data: object) -> None:
    """Assert that ``data`` is valid for the Assistants SSE event ``event_name``.

    ``thread.created`` -> ThreadObject, ``thread.run.*`` -> RunObject, ``thread.run.step.delta``
    -> RunStepDeltaObject, ``thread.run.step.*`` -> RunStepObject, ``thread.message.delta`` ->
    MessageDeltaObject, ``thread.message.*`` -> MessageObject, ``error`` -> Error, ``done`` ->
    ``"[DONE]"``. Unknown event names fail. For ``error`` the spec says a bare ``Error``, but
    openai-python only raises for the wrapped ``{"error": Error}`` form, so data with an
    ``error`` key is checked against ``ErrorResponse`` instead.
    """
    table = _event_table()
    if event_name not in table:
        known = ", ".join(sorted(table))
        raise AssertionError(f"unknown Assistants stream event {event_name!r}; known: {known}")
    if event_name == "error" and isinstance(data, dict) and "error" in data:
        _check(data, "/components/schemas/ErrorResponse", "event 'error' data (ErrorResponse)")
        return
    pointer, label = table[event_name]
    _check(data, pointer, f"event {event_name!r} data ({label})")
