"""Metrics (Prometheus) and structured logs carrying the request and run ids, with secrets
scrubbed from every line."""

import contextvars
import json
import logging
import re
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

RUNS_BY_STATUS = Gauge("runstep_runs", "Runs in the store by status", ["status"])
QUEUE_DEPTH = Gauge("runstep_queue_depth", "Runs waiting for a worker")
OLDEST_LEASE = Gauge("runstep_oldest_lease_seconds", "Age of the oldest live run lease")
ACTIVE_STREAMS = Gauge("runstep_active_streams", "Open SSE streams in this process")
ACTIVE_RUNS = Gauge("runstep_executing_runs", "Runs this process is executing")
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
MODEL_FIRST_TOKEN = Histogram(
    "runstep_model_first_token_seconds",
    "Time from model request to first delta",
    buckets=FIRST_TOKEN_BUCKETS,
)
MODEL_TURN = Histogram(
    "runstep_model_turn_seconds", "Duration of one model turn", buckets=TURN_BUCKETS
)
ERRORS = Counter("runstep_errors", "Errors by kind", ["kind"])
RUNS_FINISHED = Counter("runstep_runs_finished", "Runs this process ended, by status", ["status"])
REJECTED = Counter("runstep_rejected_requests", "Requests refused for overload", ["reason"])
PROVIDER_REQUESTS = Counter(
    "runstep_provider_requests", "Model turns sent to each provider", ["provider"]
)
PROVIDER_ERRORS = Counter(
    "runstep_provider_errors",
    "Model turns a provider failed, by kind (rate_limit, server, invalid)",
    ["provider", "kind"],
)
PROVIDER_FIRST_TOKEN = Histogram(
    "runstep_provider_first_token_seconds",
    "Time from model request to first delta, per provider",
    ["provider"],
    buckets=FIRST_TOKEN_BUCKETS,
)
PROVIDER_TURN = Histogram(
    "runstep_provider_turn_seconds",
    "Duration of one model turn, per provider (successful turns)",
    ["provider"],
    buckets=TURN_BUCKETS,
)
PROVIDER_HEALTHY = Gauge(
    "runstep_provider_healthy",
    "1 while a provider is healthy, 0 after repeated failures in a row",
    ["provider"],
)


def render() -> tuple[bytes, str]:
    """The metrics page body and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the current request and run ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", request_id), ("run_id", run_id)):
            if (value := var.get()) is not None:
                entry[name] = value
        exception = record.exc_text or (record.exc_info and self.formatException(record.exc_info))
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines, with the request and run ids when there are any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [value for var in (request_id, run_id) if (value := var.get()) is not None]
        return f"{line} [{' '.join(ids)}]" if ids else line


# Key-like tokens: OpenAI-style (``sk-...``, our own ``sk-rs-...`` too), Google API keys, and
# whatever follows ``Bearer``.
SECRET_LIKE = re.compile(r"sk-[A-Za-z0-9_\-]{8,}|AIza[A-Za-z0-9_\-]{20,}|(?i:bearer\s+)\S{8,}")
REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8


class SecretFilter(logging.Filter):
    """Redacts secrets from a record before any formatter sees it: the configured ones
    (upstream keys, API keys, the sealing secret) and anything key-like, in the message, its
    arguments, the exception and the stack."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        known = {secret for secret in secrets if secret and len(secret) >= MIN_SECRET_LENGTH}
        self.secrets = sorted(known, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return SECRET_LIKE.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: keep the template alone
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def configure_logging(json_logs: bool, secrets: Iterable[str | None] = ()) -> None:
    """Log to stderr, one line per record (JSON or text), secrets redacted."""
    handler = logging.StreamHandler()
    handler.addFilter(SecretFilter(secrets))
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for chatty in ("httpx", "httpx2"):  # one INFO line per upstream request
        logging.getLogger(chatty).setLevel(logging.WARNING)
