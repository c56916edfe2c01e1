"""OpenAI Responses (``POST /v1/responses``) <-> hub (OpenAI Chat Completions).

``upstream``: what a relay (``responses: relay``) reads on the side of the untouched stream.
``client``: the front door's shapes: checking a request, errors in OpenAI's shape.
"""
from __future__ import annotations

from .client import check_request, error_body, stream_error
from .upstream import STREAM_DECODER, error_from_upstream, relay_tap, usage_of_answer, usage_to_hub

__all__ = [
    "STREAM_DECODER",
    "check_request",
    "error_body",
    "error_from_upstream",
    "relay_tap",
    "stream_error",
    "usage_of_answer",
    "usage_to_hub",
]
