"""Pure translators, one module per wire format; ``BACKENDS`` maps a backend ``api`` to its module.

The hub format is OpenAI Chat Completions.  A backend module provides::

    STREAM_DECODER: str                                   # key of llmproxy.sse.FRAMERS
    request_to_upstream(hub, model, stream) -> (path, body)
    response_from_upstream(body, meta) -> hub response dict
    stream_from_upstream(events, meta) -> async iterator of hub chunk dicts
    error_from_upstream(status, body_bytes) -> ProxyError

No I/O, clock or random ids inside: everything variable arrives in ``meta`` (``translate/meta.py``).
"""
from __future__ import annotations

from . import anthropic, gemini, ollama, openai, responses
from .meta import Meta

__all__ = ["BACKENDS", "Meta", "anthropic", "gemini", "ollama", "openai", "responses"]

BACKENDS = {"openai": openai, "anthropic": anthropic, "gemini": gemini, "ollama": ollama}
