"""The ``runstep`` command: serve, migrate, and manage API keys."""

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from runstep.config import Settings
from runstep.errors import APIError
from runstep.inspector.terminal import runs_app, stores_app, threads_app
from runstep.observability import configure_logging
from runstep.providers.upstreams import ConfigError, load_upstreams
from runstep.services import keys as key_service
from runstep.services import upstream_keys
from runstep.store import migrate as migrations
from runstep.store.db import Database

app = typer.Typer(
    help="Runstep: a self-hosted OpenAI Assistants API v2 server.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Issue, list and revoke API keys (each key is its own project); set projects' own "
    "upstream keys."
)
app.add_typer(keys_app, name="keys")
sandbox_app = typer.Typer(help="The code_interpreter sandbox: its Python environment, a check.")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(runs_app, name="runs")
app.add_typer(threads_app, name="threads")
app.add_typer(stores_app, name="vector-stores")
console = Console()
T = TypeVar("T")


def _with_database(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``action`` against a migrated database, then close it."""

    async def main() -> T:
        db = Database(settings.resolved_database_url)
        try:
            await migrations.upgrade(db.engine)
            return await action(db)
        finally:
            await db.close()

    return asyncio.run(main())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also execute runs in this process.")
    ] = True,
) -> None:
    """Start the HTTP server (API under /v1)."""
    from runstep.api.connections import guarded_protocol
    from runstep.app import create_app

    settings = Settings.from_env(host=host, port=port, run_worker=worker)
    _configure_logging(settings)
    _check_providers(settings)
    if not key_service.is_loopback(host) and not settings.api_keys:
        if settings.is_sqlite:
            _with_database(settings, lambda db: asyncio.sleep(0))
        if _count_keys(settings) == 0:
            console.print(
                f"[red]Refusing to bind {host} without API keys.[/red] Set RUNSTEP_API_KEYS "
                "or run `runstep keys create --name NAME`."
            )
            raise typer.Exit(code=2)
    console.print(f"Runstep on http://{host}:{port}/v1 (database: {_safe_url(settings)})")
    console.print(f"Run inspector: http://{host}:{port}/inspector")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        http=guarded_protocol(settings),
        log_config=None,
        access_log=False,
    )


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Runs executed at once (RUNSTEP_WORKER_CONCURRENCY).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this worker's Prometheus metrics (model turns) on this port."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Execute runs without serving the API; start several to scale out (PostgreSQL)."""
    from prometheus_client import start_http_server

    from runstep.app import run_worker_process

    settings = Settings.from_env(worker_concurrency=concurrency)
    _configure_logging(settings)
    _check_providers(settings)
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker_process(settings, stop)

    asyncio.run(main())


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.json_logs, _secrets(settings))


def _secrets(settings: Settings) -> list[str | None]:
    """What the logs must never show: API keys, upstream keys and headers, the secret."""
    secrets = [*settings.api_keys, settings.upstream_api_key]
    secrets += (settings.secret_key or "").split(",")
    try:
        upstreams = load_upstreams(settings)
    except ConfigError:
        upstreams = []  # _check_providers says why and stops
    for upstream in upstreams:
        secrets += [upstream.api_key, *upstream.headers.values()]
    return secrets


def _check_providers(settings: Settings) -> None:
    """Refuse to start on a providers file or secret that cannot be used, saying why."""
    try:
        load_upstreams(settings)
        upstream_keys.Sealer(settings.secret_key)
    except (ConfigError, upstream_keys.SecretMissing) as exc:
        console.print(f"[red]Cannot start:[/red] {exc}")
        raise typer.Exit(code=2) from None


def _count_keys(settings: Settings) -> int:
    async def count() -> int:
        db = Database(settings.resolved_database_url)
        try:
            return await key_service.active_key_count(db)
        finally:
            await db.close()

    return asyncio.run(count())


def _safe_url(settings: Settings) -> str:
    from sqlalchemy import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run from several machines at once)."""
    settings = Settings.from_env()
    with console.status(f"Migrating {_safe_url(settings)} to {migrations.head_revision()}…"):
        _with_database(settings, lambda db: asyncio.sleep(0))
    console.print(f"Database at revision {migrations.head_revision()}: {_safe_url(settings)}")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key.")],
    project: Annotated[
        str | None, typer.Option(help="Add the key to this existing project.")
    ] = None,
) -> None:
    """Issue a key. It is shown once; only its hash is stored."""
    issued = _with_database(
        Settings.from_env(), lambda db: key_service.create_key(db, name, project)
    )
    console.print(f"key id:  {issued.id}\nproject: {issued.project_id}")
    typer.echo(issued.key)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List stored keys (never their secrets)."""
    rows = _with_database(Settings.from_env(), key_service.list_keys)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "project", "name", "ends with", "created", "revoked")
    for row in rows:
        revoked = _when(row["revoked_at"]) if row["revoked_at"] else ""
        table.add_row(
            row["id"],
            row["project_id"],
            row["name"],
            "…" + row["hint"],
            _when(row["created_at"]),
            revoked,
        )
    console.print(table)


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (key_...).")]) -> None:
    """Revoke a stored key; requests with it fail from then on."""
    _with_database(Settings.from_env(), lambda db: key_service.revoke_key(db, key_id))
    console.print(f"revoked {key_id}")


@keys_app.command("set-upstream")
def keys_set_upstream(
    project: Annotated[str, typer.Argument(help="The project id (proj_...).")],
    provider: Annotated[str, typer.Argument(help="The provider's name in the providers file.")],
    from_env: Annotated[
        str | None,
        typer.Option(help="Read the key from this environment variable instead of stdin."),
    ] = None,
) -> None:
    """Give a project its own key for one upstream provider: its runs there bill to it.

    The key is read from stdin (or --from-env VAR), sealed with RUNSTEP_SECRET_KEY, and never
    shown again. Running it again replaces the key."""
    settings = Settings.from_env()
    _known_provider(settings, provider)
    try:
        sealer = upstream_keys.Sealer(settings.secret_key)
        if not sealer.ready:
            raise upstream_keys.SecretMissing(upstream_keys.NO_SECRET)
    except upstream_keys.SecretMissing as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from None
    secret = _read_secret(from_env)

    async def store(db: Database) -> None:
        await key_service.check_project(db, project, settings.api_keys)
        await upstream_keys.set_key(db, sealer, project, provider, secret)

    _refusing(lambda: _with_database(settings, store))
    console.print(f"project {project} now uses its own key for provider {provider}")


@keys_app.command("unset-upstream")
def keys_unset_upstream(
    project: Annotated[str, typer.Argument(help="The project id (proj_...).")],
    provider: Annotated[str, typer.Argument(help="The provider's name.")],
) -> None:
    """Remove a project's own key for a provider (its runs there use the shared key again)."""
    settings = Settings.from_env()
    _refusing(
        lambda: _with_database(settings, lambda db: upstream_keys.delete_key(db, project, provider))
    )
    console.print(f"removed the key of project {project} for provider {provider}")


@keys_app.command("list-upstream")
def keys_list_upstream(
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Which projects hold their own key for which providers (never the keys)."""
    rows = _with_database(Settings.from_env(), lambda db: upstream_keys.list_keys(db, project))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("project", "provider", "set", "updated")
    for row in rows:
        table.add_row(
            row["project_id"], row["provider"], _when(row["created_at"]), _when(row["updated_at"])
        )
    console.print(table)


@keys_app.command("new-secret")
def keys_new_secret() -> None:
    """Print a fresh value for RUNSTEP_SECRET_KEY (it seals projects' upstream keys)."""
    typer.echo(upstream_keys.new_secret())


def _refusing(action: Callable[[], T]) -> T:
    """``action()``, with a refusal (unknown project, empty key...) said in one line."""
    try:
        return action()
    except APIError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(code=1) from None


def _known_provider(settings: Settings, provider: str) -> None:
    try:
        names = [upstream.name for upstream in load_upstreams(settings)]
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from None
    if provider not in names:
        known = ", ".join(names) if names else "none (set RUNSTEP_CONFIG)"
        console.print(f"[red]No provider named '{provider}'.[/red] Configured: {known}.")
        raise typer.Exit(code=2)


def _read_secret(variable: str | None) -> str:
    """The key from ``variable``, or stdin (a prompt that does not echo on a terminal)."""
    if variable is not None:
        value = os.environ.get(variable, "")
        if not value:
            console.print(f"[red]{variable} is not set.[/red]")
            raise typer.Exit(code=2)
        return value.strip()
    if sys.stdin.isatty():
        return str(typer.prompt("Upstream key", hide_input=True)).strip()
    return sys.stdin.read().strip()


@sandbox_app.command("setup")
def sandbox_setup(
    path: Annotated[
        Path | None,
        typer.Option(help="Create the environment here (default: where the settings expect it)."),
    ] = None,
    python: Annotated[
        str | None, typer.Option(help="Base interpreter (default: the one running Runstep).")
    ] = None,
    package: Annotated[
        list[str] | None, typer.Option(help="Also install this package (repeatable).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing when done.")] = False,
) -> None:
    """Create the code interpreter's own Python environment (numpy, pandas, matplotlib)."""
    from runstep.tools.code_interpreter import environment
    from runstep.tools.code_interpreter.config import SandboxConfig

    if path is None:
        path = environment.environment_dir(SandboxConfig.from_settings(Settings.from_env()).python)
    packages = [*environment.PACKAGES, *(package or [])]
    environment.setup(path.absolute(), python, packages, say=console.print, quiet=quiet)


@sandbox_app.command("check")
def sandbox_check() -> None:
    """Run a line of Python in the sandbox, as the server would."""
    from runstep.tools.code_interpreter import Sandbox, SandboxError

    async def main() -> str:
        sandbox = Sandbox.from_settings(Settings.from_env())
        try:
            code = "import numpy, pandas, matplotlib; print('sandbox ok, numpy', numpy.__version__)"
            execution = await sandbox.execute("check", code)
            return execution.logs
        finally:
            await sandbox.close()

    try:
        console.print(asyncio.run(main()).strip())
    except SandboxError as exc:
        console.print(f"[red]sandbox unavailable:[/red] {exc}")
        raise typer.Exit(code=1) from exc
