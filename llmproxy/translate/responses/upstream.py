"""The Responses API as a backend speaks it: what a relay (``responses: relay``) reads on the side.

The body and the answer pass untouched (``llmproxy.relay``); this half only finds, by a byte check,
the few events that matter: ``response.completed`` / ``response.incomplete`` carry the usage (and the
response id, kept in the relay's ``seen`` dict), ``error`` and ``response.failed`` are in-band errors.
"""
from __future__ import annotations

from typing import Any

from ...errors import ProxyError
from ...usage import Usage, hub_usage
from ..common import Tap, frame_json, sse_garbage
from ..openai import error_from_upstream  # the Responses API answers errors in OpenAI's shape

__all__ = ["STREAM_DECODER", "error_from_upstream", "relay_tap", "status_of_code", "usage_of_answer", "usage_to_hub"]

STREAM_DECODER = "sse"

# The status an in-band error's code stands for (the stream itself said 200).
_CODE_STATUS = {"rate_limit_exceeded": 429, "insufficient_quota": 429, "server_error": 500, "vector_store_timeout": 504,
                "context_length_exceeded": 400, "invalid_prompt": 400}


def usage_to_hub(usage: Any) -> dict | None:
    """A Response's ``usage`` (input/output tokens with their details) -> the hub's usage dict."""
    if not isinstance(usage, dict):
        return None
    inp = usage.get("input_tokens_details") or {}
    out = usage.get("output_tokens_details") or {}
    return hub_usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0),
                     cached=int(inp.get("cached_tokens") or 0), cache_write=int(inp.get("cache_write_tokens") or 0),
                     reasoning=int(out.get("reasoning_tokens") or 0))


def usage_of_answer(body: Any) -> dict | None:
    """The hub usage of a whole Response object; None when it has none."""
    return usage_to_hub(body.get("usage")) if isinstance(body, dict) else None


def status_of_code(code: Any, default: int = 502) -> int:
    return _CODE_STATUS.get(code, default) if isinstance(code, str) else default


def relay_tap(frame: Any, seen: dict) -> Tap | None:
    """The final event's usage (and ``seen["id"]``), and ``error`` / ``response.failed`` as in-band errors.

    Every other event costs two or three byte searches; only a candidate is parsed, then its
    ``type`` decides (a text delta that merely mentions "response.completed" is passed over).
    An event that is not UTF-8, or whose data is not JSON, is garbage: the relay ends there.
    """
    bad = sse_garbage(frame)
    if bad is not None:
        return bad
    raw = frame.raw
    if b"response.completed" in raw or b"response.incomplete" in raw:
        event = frame_json(frame)
        if isinstance(event, dict) and event.get("type") in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            seen["id"] = response.get("id")
            usage = usage_of_answer(response)
            return Tap(usage=Usage.from_hub(usage)) if usage else None
    elif b"response.failed" in raw or b"event: error\n" in raw or b'"type":"error"' in raw or b'"type": "error"' in raw:
        event = frame_json(frame)
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "response.failed":
            err = (event.get("response") or {}).get("error") or {}
            return Tap(error=_error(err, "the backend's response failed"))
        if kind == "error":
            err = event.get("error") if isinstance(event.get("error"), dict) else event  # nested, as OpenAI sends it, or flat, as documented
            return Tap(error=_error(err, "the backend sent an error event"))
    return None


def _error(err: dict, fallback: str) -> ProxyError:
    code = err.get("code") if isinstance(err.get("code"), str) else None
    kind = err.get("type") if isinstance(err.get("type"), str) else None
    return ProxyError(status_of_code(code or kind), str(err.get("message") or fallback), type=kind, code=code, param=err.get("param"))
