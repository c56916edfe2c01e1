"""The small family of errors llmproxy answers with; each front door renders them in its own shape."""
from __future__ import annotations

# OpenAI error "type" for each status we produce; front doors map these to their own names.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "server_error",
    501: "not_implemented_error",
    502: "upstream_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class ProxyError(Exception):
    """An error with an HTTP status, a message that says what to do, and optional param/code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or error_type(status)
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.headers = headers  # more response headers (x-ratelimit-* of a 429)

    def __repr__(self) -> str:
        return f"ProxyError({self.status}, {self.message!r}, type={self.type!r})"


def error_type(status: int) -> str:
    """The OpenAI-style error type for an HTTP status."""
    if status in _TYPES:
        return _TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def bad_request(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, param=param)


# orjson reads JSON nested up to 1,024 levels deep but writes fewer than 255: a body nested deeper
# cannot be sent on (found where bodies are written, so it costs nothing on the way).
MAX_DEPTH = 254


def too_deep() -> ProxyError:
    """The 400 for a request body nested deeper than llmproxy can send on."""
    return bad_request(f"request body nests arrays and objects {MAX_DEPTH + 1} or more levels deep; the limit is {MAX_DEPTH}")
