"""log.bodies: a request's and its response's bodies for the log, each capped, secrets taken out.

Collected only when ``log.bodies`` is on: ``serve`` then gives the request a ``Bodies`` (else
None, and none of this runs), ``read_json`` hands it the request's bytes, ``stream_out`` the bytes
it writes to the client (a stream's events as relayed, up to the cap) and ``serve`` a whole answer
or error body.  ``finish`` makes the row's ``bodies``: the log writer stores them in the table
``bodies`` in the same transaction as the row.

Every configured secret (``headers.secrets_of``) and each credential the request presented
(``Authorization`` and the other key headers, whatever their value) is replaced by ``***``,
before the cut, so a secret across the cut is not kept in part either.
"""
from __future__ import annotations

from typing import Awaitable, Callable, Mapping

from .headers import MIN_SECRET, redact

# headers whose value is a credential (the whole value, and its token after a scheme such as "Bearer")
KEY_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key")


def presented(headers: Mapping[str, str]) -> list[str]:
    """The credentials a request carries in its headers, whole and without their scheme."""
    out = []
    for name in KEY_HEADERS:
        v = (headers.get(name) or "").strip()
        if v:
            out.append(v)
            scheme, _, token = v.partition(" ")
            if token.strip() and scheme.isalpha():
                out.append(token.strip())
    return [s for s in out if len(s) >= MIN_SECRET]


class Bodies:
    """What one request's bodies were, as far as the cap (plus room for a secret across it) reaches."""

    __slots__ = ("cap", "room", "secrets", "request", "response", "parts", "size")

    def __init__(self, cap: int, secrets: tuple[str, ...], headers: Mapping[str, str]) -> None:
        self.secrets = tuple(sorted({*secrets, *presented(headers)}, key=len, reverse=True))  # longest first, as redact wants
        self.cap = cap
        self.room = cap + (len(self.secrets[0]) if self.secrets else 0)  # bytes kept before redacting, then cut to ``cap``
        self.request: bytes | None = None
        self.response: bytes | None = None  # a whole answer (or error); a stream's bytes are in ``parts``
        self.parts: list[bytes] = []
        self.size = 0  # bytes of the stream, all of them (``parts`` holds the first ``room``)

    def add(self, data: bytes) -> None:
        """Bytes written to the client."""
        if self.size < self.room:
            self.parts.append(bytes(data[: self.room - self.size]))
        self.size += len(data)

    def tee(self, write: Callable[[bytes], Awaitable[None]]) -> Callable[[bytes], Awaitable[None]]:
        """``write``, keeping what it writes."""

        async def written(data: bytes) -> None:
            self.add(data)
            await write(data)

        return written

    def _text(self, raw: bytes | None, size: int) -> tuple[str | None, bool]:
        """``raw`` (the first bytes of ``size``) as text, secrets out, cut to ``cap``: (text, cut)."""
        if raw is None:
            return None, False
        text = redact(raw[: self.room].decode("utf-8", "replace"), self.secrets)
        data = text.encode("utf-8")
        if len(data) <= self.cap and size <= self.room:
            return text, False
        return data[: self.cap].decode("utf-8", "ignore"), True

    def finish(self) -> tuple[str | None, str | None, bool]:
        """(request, response, truncated) for the log row."""
        req, cut_req = self._text(self.request, len(self.request or b""))
        if self.parts or self.size:
            resp, cut_resp = self._text(b"".join(self.parts), self.size)
        else:
            resp, cut_resp = self._text(self.response, len(self.response or b""))
        return req, resp, cut_req or cut_resp
