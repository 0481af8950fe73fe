"""Every failure rendered once as the OpenAI error envelope with the right status."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from runstep.errors import APIError, InternalError, InvalidRequest, Unavailable
from runstep.store.db import DATABASE_DOWN

log = logging.getLogger("runstep.api")
JSON_INVALID = (
    "We could not parse the JSON body of your request. The API expects a JSON payload, "
    "but what was sent was not valid JSON."
)


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


def _param(loc: tuple[Any, ...], body: Any) -> str:
    """``("body", "tools", 0, "function", "name")`` → ``tools[0].function.name``.

    Union branch tags that pydantic inserts into ``loc`` are skipped by walking the input."""
    if loc[:1] != ("body",):
        return ".".join(str(key) for key in loc[1:])
    path, current, last = "", body, len(loc) - 1
    for position, key in enumerate(loc[1:], start=1):
        if (
            isinstance(current, dict)
            and isinstance(key, str)
            and (key in current or position == last)
        ):
            current = current.get(key)
            path = f"{path}.{key}" if path else key
        elif isinstance(current, list) and isinstance(key, int) and key < len(current):
            current = current[key]
            path = f"{path}[{key}]"
    return path


def _message(error: dict[str, Any], param: str) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param.rsplit('.', 1)[-1]}"
    if kind == "missing":
        return f"Missing required parameter: '{param}'."
    if kind == "json_invalid":
        return JSON_INVALID
    if kind == "string_too_long":
        return (
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{ctx.get('max_length')}, but got a string with length {len(error['input'])} instead."
        )
    if kind == "too_long":
        return (
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{ctx.get('max_length')}, but got an array with length {ctx.get('actual_length')} "
            "instead."
        )
    if kind == "string_pattern_mismatch":
        return (
            f"Invalid '{param}': string does not match pattern. Expected a string that matches "
            f"the pattern '{ctx.get('pattern')}'."
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"Invalid '{param}': {message}." if param else f"Invalid request: {message}."


def validation_error(exc: RequestValidationError) -> InvalidRequest:
    """The first problem of a validation failure, worded as the hosted API words it."""
    errors = exc.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    param = _param(tuple(first["loc"]), getattr(exc, "body", None)) or None
    return InvalidRequest(_message(first, param or ""), param=param)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the error envelope."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        error = InvalidRequest(f"Invalid URL ({request.method} {request.url.path})")
        if exc.status_code not in (404, 405):
            error = InvalidRequest(str(exc.detail))
        error.status_code = exc.status_code
        return error_response(error)

    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return error_response(Unavailable("The database is unreachable; retry shortly."))

    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, _database_down)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(
            InternalError(
                "The server had an error while processing your request. Sorry about that!"
            )
        )
