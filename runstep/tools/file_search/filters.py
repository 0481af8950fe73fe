"""Attribute filters of ``POST /vector_stores/{id}/search`` (and file_search), evaluated in Python.

A filter is the JSON form of the spec's ``ComparisonFilter`` or ``CompoundFilter``:

- ``{"type": "eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin", "key": str, "value": ...}``
  (``type`` defaults to ``eq``; ``value`` is a string, number, boolean or array);
- ``{"type": "and"|"or", "filters": [filter, ...]}``, nested freely.

`matches` tells whether a vector-store file's ``attributes`` (string, number or boolean values)
pass a filter. Semantics:

- Equality (``eq``, ``ne``, ``in``, ``nin``) is type-aware: strings equal strings exactly
  (case-sensitive), numbers equal numbers by value (``1 == 1.0``), booleans equal booleans only
  (``true`` is not ``1``, ``"1"`` is not ``1``).
- Order (``gt``, ``gte``, ``lt``, ``lte``) compares two numbers by value, or two strings
  lexicographically by code point (so ISO-8601 dates order correctly). Any other pair (a boolean,
  a number against a string, an array) does not match.
- ``in`` / ``nin`` take an array (a scalar counts as a one-element array); ``eq`` / ``ne`` with an
  array compare the attribute with the array itself, which never equals a scalar.
- A missing attribute (or ``null``) matches only the negative operators ``ne`` and ``nin``: "not
  equal to X" holds for a file that has no value at all.
- ``and`` needs every sub-filter (an empty list matches), ``or`` needs one (an empty list
  does not).

A structurally invalid filter (unknown ``type``, no ``key``, ``filters`` not a list) raises
`ValueError`; the request models normally reject those before they get here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["COMPARISON_TYPES", "COMPOUND_TYPES", "matches"]

COMPARISON_TYPES = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"})
COMPOUND_TYPES = frozenset({"and", "or"})


def matches(filter: Mapping[str, Any], attributes: Mapping[str, Any] | None) -> bool:
    """Whether ``attributes`` pass ``filter`` (see the module docstring for the semantics)."""
    if not isinstance(filter, Mapping):
        raise ValueError(f"A filter must be an object, got {type(filter).__name__}.")
    attributes = attributes or {}
    kind = filter.get("type") or "eq"
    if kind in COMPOUND_TYPES:
        parts = filter.get("filters")
        if not isinstance(parts, list):
            raise ValueError(f"A '{kind}' filter needs a 'filters' array.")
        if kind == "and":
            return all(matches(part, attributes) for part in parts)
        return any(matches(part, attributes) for part in parts)
    if kind not in COMPARISON_TYPES:
        raise ValueError(f"Unknown filter type {kind!r}.")
    key = filter.get("key")
    if not isinstance(key, str):
        raise ValueError(f"A '{kind}' filter needs a string 'key'.")
    expected = filter.get("value")
    actual = attributes.get(key)
    if actual is None:
        return kind in ("ne", "nin")
    if kind == "eq":
        return _equal(actual, expected)
    if kind == "ne":
        return not _equal(actual, expected)
    if kind in ("in", "nin"):
        options = expected if isinstance(expected, list) else [expected]
        found = any(_equal(actual, option) for option in options)
        return found if kind == "in" else not found
    order = _compare(actual, expected)
    if order is None:
        return False
    return {"gt": order > 0, "gte": order >= 0, "lt": order < 0, "lte": order <= 0}[kind]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return left == right  # NaN equals nothing
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return False


def _compare(left: Any, right: Any) -> int | None:
    """-1, 0 or 1 for two numbers or two strings; None for any other pair (or a NaN)."""
    if _is_number(left) and _is_number(right):
        if math.isnan(left) or math.isnan(right):
            return None
    elif not (isinstance(left, str) and isinstance(right, str)):
        return None
    return (left > right) - (left < right)
