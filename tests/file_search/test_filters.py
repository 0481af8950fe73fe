"""Attribute filters (``filters.matches``): comparison and compound semantics."""

import pytest

from runstep.tools.file_search.filters import matches

ATTRIBUTES = {
    "author": "Ada",
    "year": 2021,
    "rating": 4.5,
    "draft": False,
    "date": "2024-03-01",
    "one": 1,
}


def eq(key, value, kind="eq"):  # type: ignore[no-untyped-def]
    return {"type": kind, "key": key, "value": value}


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        (eq("author", "Ada"), True),
        (eq("author", "ada"), False),  # case-sensitive
        (eq("year", 2021), True),
        (eq("year", 2021.0), True),  # numbers by value
        (eq("year", "2021"), False),  # a string is not a number
        (eq("draft", False), True),
        (eq("draft", 0), False),  # a boolean is not a number
        (eq("one", True), False),
        (eq("one", 1), True),
        (eq("author", "Bob", "ne"), True),
        (eq("author", "Ada", "ne"), False),
        (eq("year", 2020, "gt"), True),
        (eq("year", 2021, "gt"), False),
        (eq("year", 2021, "gte"), True),
        (eq("rating", 5, "lt"), True),
        (eq("rating", 4.5, "lte"), True),
        (eq("rating", 4.4, "lte"), False),
        (eq("date", "2024-01-01", "gt"), True),  # strings order lexicographically
        (eq("date", "2024-12-31", "lt"), True),
        (eq("year", "2020", "gt"), False),  # number against string: no order
        (eq("draft", False, "gte"), False),  # booleans have no order
        (eq("author", ["Ada", "Bob"], "in"), True),
        (eq("author", ["Bob"], "in"), False),
        (eq("year", [2020, 2021.0], "in"), True),
        (eq("author", "Ada", "in"), True),  # a scalar is a one-element array
        (eq("author", ["Bob"], "nin"), True),
        (eq("author", ["Ada"], "nin"), False),
        (eq("author", ["Ada"]), False),  # eq with an array never equals a scalar
        (eq("author", ["Ada"], "ne"), True),
        (eq("year", [2021], "gt"), False),
        (eq("year", float("nan"), "lt"), False),
    ],
)
def test_comparisons(filter_: dict, expected: bool) -> None:
    assert matches(filter_, ATTRIBUTES) is expected


def test_type_defaults_to_eq() -> None:
    assert matches({"key": "author", "value": "Ada"}, ATTRIBUTES)
    assert not matches({"key": "author", "value": "Bob"}, ATTRIBUTES)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("eq", False),
        ("gt", False),
        ("gte", False),
        ("lt", False),
        ("lte", False),
        ("in", False),
        ("ne", True),
        ("nin", True),
    ],
)
def test_missing_attribute_matches_only_negative_operators(kind: str, expected: bool) -> None:
    value = ["x"] if kind in ("in", "nin") else "x"
    assert matches(eq("missing", value, kind), ATTRIBUTES) is expected
    assert matches(eq("author", value, kind), None) is expected
    assert matches(eq("author", value, kind), {"author": None}) is expected


def test_compound_and_or_nested() -> None:
    ada_recent = {
        "type": "and",
        "filters": [eq("author", "Ada"), eq("year", 2020, "gte")],
    }
    assert matches(ada_recent, ATTRIBUTES)
    assert not matches(
        {**ada_recent, "filters": [*ada_recent["filters"], eq("draft", True)]}, ATTRIBUTES
    )
    either = {"type": "or", "filters": [eq("author", "Bob"), ada_recent]}
    assert matches(either, ATTRIBUTES)
    neither = {"type": "or", "filters": [eq("author", "Bob"), eq("year", 1999)]}
    assert not matches(neither, ATTRIBUTES)
    assert matches(
        {"type": "and", "filters": [either, {"type": "or", "filters": [neither, eq("one", 1)]}]},
        ATTRIBUTES,
    )


def test_empty_compounds() -> None:
    assert matches({"type": "and", "filters": []}, ATTRIBUTES)
    assert not matches({"type": "or", "filters": []}, ATTRIBUTES)


def test_model_dump_shape_is_accepted() -> None:
    """What the request models produce (``model_dump(mode="json")``) works as is."""
    from runstep.protocol.vector_stores import SearchRequest

    request = SearchRequest.model_validate(
        {
            "query": "q",
            "filters": {
                "type": "and",
                "filters": [
                    {"key": "author", "value": "Ada"},
                    {"type": "in", "key": "year", "value": [2020, 2021]},
                ],
            },
        }
    )
    assert request.filters is not None
    assert matches(request.filters.model_dump(mode="json"), ATTRIBUTES)


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "xor", "key": "a", "value": 1},
        {"type": "eq", "value": 1},
        {"type": "and"},
        {"type": "or", "filters": "nope"},
        "not a filter",
    ],
)
def test_invalid_filters_raise(bad: object) -> None:
    with pytest.raises(ValueError):
        matches(bad, ATTRIBUTES)  # type: ignore[arg-type]
