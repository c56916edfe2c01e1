"""What both halves of the Anthropic translator use: its error types, ids and 400s."""
from __future__ import annotations

import re
from typing import Any

from ...errors import ProxyError
from ..common import synth_tool_call_id

ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def _bad(where: str, what: str) -> ProxyError:
    return ProxyError(400, f"{where}: {what}", param=where)


def _tool_id(raw: Any, meta_id: str, k: int) -> str:
    """A tool_use id matching ``^[A-Za-z0-9_-]+$``; synthesised from the response id when missing."""
    return _UNSAFE_ID.sub("_", raw) if isinstance(raw, str) and raw else synth_tool_call_id(meta_id, k)
