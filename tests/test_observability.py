"""The log scrubber: no secret reaches a log line, whatever carries it (message, arguments,
exception, stack), in both log formats; and the CLI hands it every configured secret."""

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstep.cli import _secrets
from runstep.config import Settings
from runstep.observability import JsonFormatter, SecretFilter, TextFormatter

UPSTREAM_KEY = "azure-3f9d8c7b6a5e4d3c2b1a"  # configured: redacted although not key-like
OWN_KEY = "sk-proj-Abc123def456ghi789"  # key-like: redacted although not configured


@pytest.fixture(params=["text", "json"])
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretFilter([UPSTREAM_KEY, None, "short"]))
    handler.setFormatter(JsonFormatter() if request.param == "json" else TextFormatter())
    logger = logging.getLogger(f"test.scrubber.{request.param}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_secrets_are_redacted_wherever_they_appear(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.warning("upstream refused key %s", UPSTREAM_KEY)
    logger.warning(f"calling with Authorization: Bearer {OWN_KEY}")
    try:
        raise RuntimeError(f"401 from upstream: Incorrect API key provided: {OWN_KEY}")
    except RuntimeError:
        logger.exception("model call failed for %s", {"api_key": UPSTREAM_KEY})
    logger.warning(f"stack of a call with {OWN_KEY}", stack_info=True)
    logger.warning("%s %s", "arguments that do not fit")  # the template alone, no raise
    text = stream.getvalue()
    assert UPSTREAM_KEY not in text and OWN_KEY not in text
    assert text.count("[redacted]") >= 4
    assert "RuntimeError" in text and "model call failed" in text and "Traceback" in text
    assert "%s %s" in text


def test_ordinary_text_is_left_alone() -> None:
    scrubber = SecretFilter(["short", "sk-configured-secret-1"])
    text = "run_abc123 asst_Xyz file-9f skipped short-lived task-list bearer"
    assert scrubber.redact(text) == text


def test_the_cli_names_every_configured_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "providers.toml"
    config.write_text(
        '[[providers]]\nname = "a"\nbase_url = "http://127.0.0.1:1/v1"\n'
        'api_key_env = "A_KEY"\nmodels = ["*"]\n'
        "[providers.headers]\n"
        '"api-key" = "header-secret-value"\n'
    )
    monkeypatch.setenv("A_KEY", UPSTREAM_KEY)
    settings = Settings(
        api_keys=("static-key-one",), secret_key="old-secret,new-secret", config_path=config
    )
    secrets = set(_secrets(settings))
    expected = {"static-key-one", "old-secret", "new-secret", UPSTREAM_KEY, "header-secret-value"}
    assert expected <= secrets
