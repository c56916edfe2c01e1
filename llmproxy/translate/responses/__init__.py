"""OpenAI Responses (``POST /v1/responses``) <-> hub (OpenAI Chat Completions).

``request``: a Responses request -> the hub request (every backend that does not relay it).
``client``: hub answer / hub chunks -> the Response object / its typed event stream; errors.
``upstream``: what a relay (``responses: relay``) reads on the side of the untouched stream.
``shared``: tool names across namespaces, and llmproxy's reasoning state in ``encrypted_content``.
"""
from __future__ import annotations

from .client import (
    Events,
    ToClient,
    check_request,
    error_body,
    event_bytes,
    failed_events,
    response_to_client,
    stream_error,
    usage_of_hub,
)
from .request import dropped, input_items, portable, request_from_client
from .upstream import STREAM_DECODER, error_from_upstream, relay_tap, usage_of_answer, usage_to_hub

__all__ = [
    "STREAM_DECODER",
    "Events",
    "ToClient",
    "check_request",
    "dropped",
    "error_body",
    "error_from_upstream",
    "event_bytes",
    "failed_events",
    "input_items",
    "portable",
    "relay_tap",
    "request_from_client",
    "response_to_client",
    "stream_error",
    "usage_of_answer",
    "usage_of_hub",
    "usage_to_hub",
]
