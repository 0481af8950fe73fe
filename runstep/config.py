"""Settings from ``RUNSTEP_*`` environment variables, built once and passed down."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

from runstep.store.db import DEFAULT_POOL_SIZE


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("runstep", appauthor=False))


def _split_keys(raw: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in raw.split(",") if key.strip())


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one Runstep process."""

    data_dir: Path = field(default_factory=_default_data_dir)
    database_url: str | None = None
    database_pool_size: int = DEFAULT_POOL_SIZE
    api_keys: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    run_expiry_seconds: int = 600
    poll_after_ms: int = 200
    upstream_base_url: str | None = None
    upstream_api_key: str | None = field(default=None, repr=False)
    upstream_timeout_seconds: float = 60.0
    upstream_max_retries: int = 3
    upstream_retry_base_seconds: float = 0.5
    # providers.toml: many upstreams routed by model name (runstep/providers/upstreams.py)
    config_path: Path | None = None
    # encrypts projects' own upstream keys at rest (runstep/services/upstream_keys.py)
    secret_key: str | None = field(default=None, repr=False)
    worker_concurrency: int = 64
    run_worker: bool = True
    lease_seconds: float = 30.0
    run_max_claims: int = 5
    delta_flush_seconds: float = 0.1
    worker_poll_seconds: float = 1.0
    sweep_seconds: float = 5.0
    stream_ping_seconds: float = 15.0
    context_window_tokens: int = 128_000
    shutdown_seconds: float = 30.0
    requests_per_minute: int = 6000
    max_streams: int = 4096
    max_streams_per_key: int = 1024
    # what a client may send and how slowly (runstep/api/guard.py, runstep/api/connections.py)
    max_body_bytes: int = 32 * 1024 * 1024
    body_timeout_seconds: float = 60.0
    header_timeout_seconds: float = 20.0
    send_timeout_seconds: float = 60.0
    json_logs: bool = False
    event_retention_seconds: int = 3600
    max_file_bytes: int = 512 * 1024 * 1024
    # code_interpreter sandbox (runstep/tools/code_interpreter); paths default under data_dir
    code_interpreter_python: Path | None = None
    code_interpreter_work_dir: Path | None = None
    code_interpreter_bwrap: str = "bwrap"
    code_interpreter_idle_seconds: float = 3600.0
    code_interpreter_wall_seconds: float = 60.0
    code_interpreter_cpu_seconds: float = 60.0
    code_interpreter_memory_mb: int = 2048
    code_interpreter_max_processes: int = 64
    code_interpreter_max_output_bytes: int = 8 * 1024 * 1024
    code_interpreter_max_log_bytes: int = 64 * 1024
    code_interpreter_max_file_bytes: int = 256 * 1024 * 1024
    code_interpreter_max_dir_bytes: int = 1024 * 1024 * 1024
    code_interpreter_tmp_mb: int = 256
    code_interpreter_max_sessions: int = 32
    code_interpreter_uid_base: int = 1_500_000_000
    file_search_wait_seconds: float = 60.0

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: the configured one, or a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'runstep.sqlite3'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Read ``RUNSTEP_*`` variables; keyword overrides (from CLI flags) win."""
        env = os.environ if env is None else env
        settings = cls()
        readers: dict[str, tuple[str, type]] = {
            "RUNSTEP_DATA_DIR": ("data_dir", Path),
            "RUNSTEP_DATABASE_URL": ("database_url", str),
            "RUNSTEP_DATABASE_POOL_SIZE": ("database_pool_size", int),
            "RUNSTEP_RUN_EXPIRY_SECONDS": ("run_expiry_seconds", int),
            "RUNSTEP_POLL_AFTER_MS": ("poll_after_ms", int),
            "RUNSTEP_UPSTREAM_BASE_URL": ("upstream_base_url", str),
            "RUNSTEP_UPSTREAM_API_KEY": ("upstream_api_key", str),
            "RUNSTEP_UPSTREAM_TIMEOUT_SECONDS": ("upstream_timeout_seconds", float),
            "RUNSTEP_UPSTREAM_MAX_RETRIES": ("upstream_max_retries", int),
            "RUNSTEP_UPSTREAM_RETRY_BASE_SECONDS": ("upstream_retry_base_seconds", float),
            "RUNSTEP_CONFIG": ("config_path", Path),
            "RUNSTEP_SECRET_KEY": ("secret_key", str),
            "RUNSTEP_WORKER_CONCURRENCY": ("worker_concurrency", int),
            "RUNSTEP_LEASE_SECONDS": ("lease_seconds", float),
            "RUNSTEP_RUN_MAX_CLAIMS": ("run_max_claims", int),
            "RUNSTEP_DELTA_FLUSH_SECONDS": ("delta_flush_seconds", float),
            "RUNSTEP_WORKER_POLL_SECONDS": ("worker_poll_seconds", float),
            "RUNSTEP_SWEEP_SECONDS": ("sweep_seconds", float),
            "RUNSTEP_STREAM_PING_SECONDS": ("stream_ping_seconds", float),
            "RUNSTEP_CONTEXT_WINDOW_TOKENS": ("context_window_tokens", int),
            "RUNSTEP_SHUTDOWN_SECONDS": ("shutdown_seconds", float),
            "RUNSTEP_REQUESTS_PER_MINUTE": ("requests_per_minute", int),
            "RUNSTEP_MAX_STREAMS": ("max_streams", int),
            "RUNSTEP_MAX_STREAMS_PER_KEY": ("max_streams_per_key", int),
            "RUNSTEP_MAX_BODY_BYTES": ("max_body_bytes", int),
            "RUNSTEP_BODY_TIMEOUT_SECONDS": ("body_timeout_seconds", float),
            "RUNSTEP_HEADER_TIMEOUT_SECONDS": ("header_timeout_seconds", float),
            "RUNSTEP_SEND_TIMEOUT_SECONDS": ("send_timeout_seconds", float),
            "RUNSTEP_EVENT_RETENTION_SECONDS": ("event_retention_seconds", int),
            "RUNSTEP_MAX_FILE_BYTES": ("max_file_bytes", int),
            "RUNSTEP_CODE_INTERPRETER_PYTHON": ("code_interpreter_python", Path),
            "RUNSTEP_CODE_INTERPRETER_WORK_DIR": ("code_interpreter_work_dir", Path),
            "RUNSTEP_CODE_INTERPRETER_BWRAP": ("code_interpreter_bwrap", str),
            "RUNSTEP_CODE_INTERPRETER_IDLE_SECONDS": ("code_interpreter_idle_seconds", float),
            "RUNSTEP_CODE_INTERPRETER_WALL_SECONDS": ("code_interpreter_wall_seconds", float),
            "RUNSTEP_CODE_INTERPRETER_CPU_SECONDS": ("code_interpreter_cpu_seconds", float),
            "RUNSTEP_CODE_INTERPRETER_MEMORY_MB": ("code_interpreter_memory_mb", int),
            "RUNSTEP_CODE_INTERPRETER_MAX_PROCESSES": ("code_interpreter_max_processes", int),
            "RUNSTEP_CODE_INTERPRETER_MAX_OUTPUT_BYTES": ("code_interpreter_max_output_bytes", int),
            "RUNSTEP_CODE_INTERPRETER_MAX_LOG_BYTES": ("code_interpreter_max_log_bytes", int),
            "RUNSTEP_CODE_INTERPRETER_MAX_FILE_BYTES": ("code_interpreter_max_file_bytes", int),
            "RUNSTEP_CODE_INTERPRETER_MAX_DIR_BYTES": ("code_interpreter_max_dir_bytes", int),
            "RUNSTEP_CODE_INTERPRETER_TMP_MB": ("code_interpreter_tmp_mb", int),
            "RUNSTEP_CODE_INTERPRETER_MAX_SESSIONS": ("code_interpreter_max_sessions", int),
            "RUNSTEP_CODE_INTERPRETER_UID_BASE": ("code_interpreter_uid_base", int),
            "RUNSTEP_FILE_SEARCH_WAIT_SECONDS": ("file_search_wait_seconds", float),
        }
        values: dict[str, object] = {}
        for variable, (name, kind) in readers.items():
            if env.get(variable):
                values[name] = kind(env[variable])
        if env.get("RUNSTEP_LOG_FORMAT"):
            values["json_logs"] = env["RUNSTEP_LOG_FORMAT"].lower() == "json"
        if env.get("RUNSTEP_API_KEYS"):
            values["api_keys"] = _split_keys(env["RUNSTEP_API_KEYS"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(settings, **values)  # type: ignore[arg-type]
