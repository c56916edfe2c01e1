"""Google Gemini (Generative Language API) backends: hub (OpenAI Chat Completions) <-> ``generateContent``.

``upstream``: hub request -> Gemini request, Gemini answer / stream / error -> hub, embeddings.
``schema``: JSON Schema -> the OpenAPI subset Gemini takes for tool parameters (``clean_schema``).
llmproxy has no Gemini front door; the Gemini client half that ``llmproxy mock`` speaks is
``llmproxy/mock/gemini.py``.
"""
from __future__ import annotations

from .schema import clean_schema
from .upstream import (
    STREAM_DECODER,
    FromUpstream,
    embeddings_from_upstream,
    embeddings_to_upstream,
    error_from_upstream,
    request_to_upstream,
    response_from_upstream,
)

__all__ = [
    "STREAM_DECODER",
    "FromUpstream",
    "clean_schema",
    "embeddings_from_upstream",
    "embeddings_to_upstream",
    "error_from_upstream",
    "request_to_upstream",
    "response_from_upstream",
]
