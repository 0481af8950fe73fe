"""Fixtures for provider tests: one scripted upstream for the folder, reset per test."""

from collections.abc import Iterator

import pytest

from tests.support.scripted_upstream import ScriptedUpstream


@pytest.fixture(scope="package")
def running_upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(running_upstream: ScriptedUpstream) -> ScriptedUpstream:
    """The scripted upstream with no queued scripts and an empty request log."""
    running_upstream.reset()
    return running_upstream
