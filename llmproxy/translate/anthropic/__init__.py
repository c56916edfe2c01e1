"""Anthropic Messages (``POST /v1/messages``) <-> hub (OpenAI Chat Completions), both directions.

``upstream``: hub request -> Anthropic, Anthropic answer / stream / error -> hub (Anthropic backends).
``client``: Anthropic client request -> hub, hub -> Anthropic answer / stream / error (the Anthropic
front door for other backends, and ``llmproxy mock``).  ``shared``: what both halves use.
"""
from __future__ import annotations

from .client import ToClient, check_request, error_body, request_from_client, response_to_client, stream_error
from .upstream import (
    DEFAULT_MAX_TOKENS,
    JSON_OBJECT_INSTRUCTION,
    RELAY_SHAPE,
    FromUpstream,
    STREAM_DECODER,
    THINKING_BUDGET,
    counts_to_hub_usage,
    error_from_upstream,
    relay_marks,
    relay_tap,
    request_to_upstream,
    response_from_upstream,
    usage_counts,
    usage_of_answer,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_OBJECT_INSTRUCTION",
    "STREAM_DECODER",
    "THINKING_BUDGET",
    "check_request",
    "counts_to_hub_usage",
    "error_body",
    "error_from_upstream",
    "RELAY_SHAPE",
    "relay_marks",
    "relay_tap",
    "request_from_client",
    "request_to_upstream",
    "response_from_upstream",
    "response_to_client",
    "stream_error",
    "FromUpstream",
    "ToClient",
    "usage_counts",
    "usage_of_answer",
]
