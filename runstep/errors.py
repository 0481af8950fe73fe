"""The one exception tree of Runstep, mapped once to the OpenAI error envelope.

APIError                       any error a client should see
├── InvalidRequest        400  invalid_request_error
├── Unauthenticated       401  invalid_request_error (code invalid_api_key)
├── NotFound              404  invalid_request_error
├── RequestTimeout        408  invalid_request_error (code request_timeout; closes the connection)
├── Conflict              409  invalid_request_error
├── PayloadTooLarge       413  invalid_request_error
├── RateLimited           429  rate_limit_exceeded (optional Retry-After)
├── InternalError         500  server_error
└── Unavailable           503  server_error
"""

from typing import Any


class APIError(Exception):
    """An error rendered to the client as ``{"error": {message, type, param, code}}``."""

    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        """The OpenAI error envelope for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class Unauthenticated(APIError):
    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"

    @classmethod
    def object(cls, kind: str, object_id: str) -> "NotFound":
        """The hosted API's wording: ``No thread found with id 'thread_x'.``"""
        return cls(f"No {kind} found with id '{object_id}'.")


class RequestTimeout(APIError):
    """The request did not arrive in time; the connection is closed after the answer."""

    status_code = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers["Connection"] = "close"


class Conflict(APIError):
    status_code = 409
    error_type = "invalid_request_error"


class PayloadTooLarge(APIError):
    status_code = 413
    error_type = "invalid_request_error"


class RateLimited(APIError):
    status_code = 429
    error_type = "rate_limit_exceeded"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)


class InternalError(APIError):
    status_code = 500
    error_type = "server_error"


class Unavailable(APIError):
    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"
