"""Ollama native API (``/api/chat``, ``/api/generate``, ``/api/embed``) <-> hub (OpenAI Chat Completions).

``upstream``, the backend direction: ``request_to_upstream`` / ``response_from_upstream`` /
``FromUpstream`` / ``error_from_upstream`` / ``embeddings_*``.  ``client``, the front-door
direction (Ollama clients, the mock): ``request_from_client`` / ``response_to_client`` /
``ToClient`` / ``error_body`` / ``stream_error`` and the ``/api/generate`` variants
``request_from_generate`` / ``response_to_generate`` / ``ToGenerate``.
"""
from __future__ import annotations

from .client import (
    ToClient,
    ToGenerate,
    check_chat,
    check_generate,
    error_body,
    request_from_client,
    request_from_generate,
    response_to_client,
    response_to_generate,
    stream_error,
)
from .upstream import (
    OPTION_PARAMS,
    STREAM_DECODER,
    FromUpstream,
    embeddings_from_upstream,
    embeddings_to_upstream,
    error_from_upstream,
    options_to_upstream,
    relay_tap,
    request_to_upstream,
    response_from_upstream,
    usage_from,
    usage_of_answer,
)

__all__ = [
    "OPTION_PARAMS",
    "STREAM_DECODER",
    "FromUpstream",
    "ToClient",
    "ToGenerate",
    "check_chat",
    "check_generate",
    "embeddings_from_upstream",
    "embeddings_to_upstream",
    "error_body",
    "error_from_upstream",
    "options_to_upstream",
    "relay_tap",
    "request_from_client",
    "request_from_generate",
    "request_to_upstream",
    "response_from_upstream",
    "response_to_client",
    "response_to_generate",
    "stream_error",
    "usage_from",
    "usage_of_answer",
]
