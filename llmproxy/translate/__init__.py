"""Pure translators, one module per wire format; ``BACKENDS`` maps a backend ``api`` to its module.

The hub format is OpenAI Chat Completions.  A backend module provides::

    STREAM_DECODER: str                                   # key of llmproxy.sse.FRAMERS
    request_to_upstream(hub, model, stream) -> (path, body)
    response_from_upstream(body, meta) -> hub response dict
    stream_from_upstream(events, meta) -> async iterator of hub chunk dicts
    error_from_upstream(status, body_bytes) -> ProxyError

No I/O, clock or random ids inside: everything variable arrives in ``meta``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Meta:
    """What a translator may not invent itself: the response id, creation time and model name."""

    id: str
    created: int
    model: str


from . import anthropic, gemini, ollama, openai  # noqa: E402  (the modules import Meta from here)

BACKENDS = {"openai": openai, "anthropic": anthropic, "gemini": gemini, "ollama": ollama}
