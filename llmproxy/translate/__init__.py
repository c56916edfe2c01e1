"""Pure translators, one module per wire format; ``BACKENDS`` maps a backend ``api`` to its module.

The hub format is OpenAI Chat Completions.  A backend module provides::

    STREAM_DECODER: str                                   # key of llmproxy.sse.FRAMERS
    request_to_upstream(hub, model, stream) -> (path, body)
    response_from_upstream(body, meta) -> hub response dict
    FromUpstream(meta)                                    # one stream's reader, event by event:
        .event(event) -> [hub chunk dicts]                #   each event with data (often one chunk, maybe none)
        .done                                             #   the backend's own end was seen: nothing after it is read
        .end() -> [hub chunk dicts]                       #   the stream is over: its last chunks (ProxyError if it was cut short)
    error_from_upstream(status, body_bytes) -> ProxyError

and, where llmproxy relays the format byte for byte (``relay.py``)::

    relay_tap(frame, seen) -> Tap | None                  # what one event tells the relay (usage, an error, garbage)
    RELAY_SHAPE(run) -> match | None                      # SSE: a run of whole events all of the ordinary shape
    relay_marks(run) -> [offsets]                         #   where in such a run relay_tap has something to read

and a front-door module (``client`` halves)::

    request_from_client(body) -> hub request; response_to_client(hub, meta) -> its answer
    ToClient(meta)                                        # one stream's writer:
        .chunk(hub chunk) -> bytes                        #   what this chunk makes for the client (b"" for nothing yet)
        .chunks([hub chunks]) -> bytes                    #   a batch's: the chunks' bytes joined (common.StreamWriter)
        .end() -> bytes                                   #   the closing events, after the last chunk
    error_body(err) -> bytes; stream_error(err) -> bytes  # an error before / after the first byte

Both are plain objects, a reader called once per event and a writer once per upstream read's batch
of chunks: the translated path drives them from one loop (``translated._pieces``) with no generator
between them.

No I/O, clock or random ids inside: everything variable arrives in ``meta`` (``translate/meta.py``).
"""
from __future__ import annotations

from . import anthropic, gemini, ollama, openai, responses
from .meta import Meta

__all__ = ["BACKENDS", "Meta", "anthropic", "gemini", "ollama", "openai", "responses"]

BACKENDS = {"openai": openai, "anthropic": anthropic, "gemini": gemini, "ollama": ollama}
