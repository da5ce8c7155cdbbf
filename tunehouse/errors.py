"""The one exception type of tunehouse, rendered once (in api/errors.py) as OpenAI's error envelope.

Every layer raises these; nothing below the API knows about HTTP beyond the status number carried here.
"""

from __future__ import annotations


class TunehouseError(Exception):
    """An error a client should see: HTTP status plus OpenAI's `{message, type, param, code}`."""

    status_code: int = 500
    error_type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def to_dict(self) -> dict:
        return {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}


class InvalidRequest(TunehouseError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(TunehouseError):
    status_code = 401
    error_type = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_api_key")


class PermissionDenied(TunehouseError):
    status_code = 403
    error_type = "invalid_request_error"


class NotFound(TunehouseError):
    status_code = 404
    error_type = "invalid_request_error"


class MethodNotAllowed(TunehouseError):
    status_code = 405
    error_type = "invalid_request_error"


class PayloadTooLarge(TunehouseError):
    status_code = 413
    error_type = "invalid_request_error"


class RateLimited(TunehouseError):
    status_code = 429
    error_type = "rate_limit_exceeded"


class ServerError(TunehouseError):
    status_code = 500
    error_type = "server_error"
