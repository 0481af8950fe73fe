"""Open mode on loopback, refusing to expose an unprotected server, and the keys CLI."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess


def _runstep(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNSTEP_DATA_DIR": str(data_dir)}
    env.pop("RUNSTEP_API_KEYS", None)
    env.pop("RUNSTEP_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "runstep", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def keyless_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(env={"RUNSTEP_DATA_DIR": str(tmp_path)}, log_path=tmp_path / "log")
    yield server.start()
    server.stop()


def test_without_keys_any_token_shares_one_project_and_startup_says_so(
    keyless_server: ServerProcess,
) -> None:
    created = httpx.post(
        f"{keyless_server.base_url}/assistants",
        json={"model": "m"},
        headers={"Authorization": "Bearer anything"},
    )
    assert created.status_code == 200
    listed = httpx.get(
        f"{keyless_server.base_url}/assistants", headers={"Authorization": "Bearer something-else"}
    )
    assert [a["id"] for a in listed.json()["data"]] == [created.json()["id"]]
    assert "No API keys configured" in keyless_server.log_path.read_text()


def test_refuses_to_bind_a_public_address_without_keys(tmp_path: Path) -> None:
    result = _runstep(tmp_path, "serve", "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2
    assert "Refusing to bind 0.0.0.0 without API keys" in result.stdout


def test_stored_keys_are_shown_once_listed_without_secret_and_revocable(tmp_path: Path) -> None:
    created = _runstep(tmp_path, "keys", "create", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    key_id = next(w for w in created.stdout.split() if w.startswith("key_"))
    listing = _runstep(tmp_path, "keys", "list", "--json")
    assert key not in listing.stdout
    [row] = json.loads(listing.stdout)
    assert (row["id"], row["name"], row["hint"], row["revoked_at"]) == (
        key_id,
        "ci",
        key[-4:],
        None,
    )

    server = ServerProcess(env={"RUNSTEP_DATA_DIR": str(tmp_path)}, log_path=tmp_path / "log")
    server.start()
    try:
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{server.base_url}/assistants", headers=headers).status_code == 200
        wrong = httpx.get(f"{server.base_url}/assistants", headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        assert _runstep(tmp_path, "keys", "revoke", key_id).returncode == 0
        assert httpx.get(f"{server.base_url}/assistants", headers=headers).status_code == 401
    finally:
        server.stop()
    assert _runstep(tmp_path, "keys", "revoke", key_id).returncode != 0


def test_a_second_key_can_join_an_existing_project(tmp_path: Path) -> None:
    first = _runstep(tmp_path, "keys", "create", "--name", "a").stdout
    project = next(w for w in first.split() if w.startswith("proj_"))
    second = _runstep(tmp_path, "keys", "create", "--name", "b", "--project", project)
    assert second.returncode == 0 and project in second.stdout
    assert _runstep(tmp_path, "keys", "create", "--name", "c", "--project", "proj_x").returncode
