"""Incremental stream decoders (SSE, NDJSON, JSON array) and SSE encoders.

Every decoder works on bytes: ``decode(chunk)`` returns the events completed by
this chunk, ``flush()`` the one left at EOF.  Framing happens on bytes and UTF-8
is only decoded by the JSON parser afterwards, so a network split inside a
multi-byte character cannot corrupt text.
"""
from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """One decoded stream event: the SSE ``event:`` name (or None) and its data bytes."""

    name: str | None
    data: bytes


class SSEDecoder:
    """Server-sent events: ``\\n``, ``\\r\\n`` or ``\\r`` line ends, multi-line data, comments."""

    __slots__ = ("_buf", "_name", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._name: str | None = None
        self._data: list[bytes] = []

    def decode(self, chunk: bytes) -> list[Event]:
        buf = self._buf + chunk if self._buf else chunk
        out: list[Event] = []
        if b"\r" not in buf:  # "\n" line ends only (every provider here): split, no scanning loop
            end = buf.rfind(b"\n") + 1
            self._buf = buf[end:]
            if end:
                line = self._line
                for ln in buf[: end - 1].split(b"\n"):
                    line(ln, out)
            return out
        start = 0
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, nl if nl >= 0 else n)
            if cr >= 0:
                # "\r" at the very end may be the first half of "\r\n": wait for more.
                if cr == n - 1:
                    break
                end, nxt = cr, cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
            elif nl >= 0:
                end, nxt = nl, nl + 1
            else:
                break
            self._line(buf[start:end], out)
            start = nxt
        self._buf = buf[start:]
        return out

    def flush(self) -> list[Event]:
        out: list[Event] = []
        if self._buf:
            self._line(self._buf.rstrip(b"\r"), out)
            self._buf = b""
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[Event]) -> None:
        if not line:
            if self._data:
                out.append(Event(self._name, b"\n".join(self._data)))
            self._name = None
            self._data = []
            return
        if line[0] == 0x3A:  # ":" comment
            return
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._name = value.decode("utf-8", "replace")


class NDJSONDecoder:
    """Newline-delimited JSON: one object a line, blank lines skipped, last line may lack ``\\n``."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def decode(self, chunk: bytes) -> list[Event]:
        buf = self._buf + chunk if self._buf else chunk
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        return [Event(None, line) for line in lines if line.strip()]

    def flush(self) -> list[Event]:
        line, self._buf = self._buf, b""
        return [Event(None, line)] if line.strip() else []


class JSONArrayDecoder:
    """A JSON array streamed element by element (Gemini without ``alt=sse``): ``[{…}\\n,\\n{…}]``."""

    __slots__ = ("_buf", "_depth", "_in_str", "_esc", "_start", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._depth = 0  # depth inside the outer array's elements
        self._in_str = False
        self._esc = False
        self._start = -1
        self._pos = 0

    def decode(self, chunk: bytes) -> list[Event]:
        self._buf += chunk
        buf = self._buf
        out: list[Event] = []
        i = self._pos
        depth, in_str, esc, start = self._depth, self._in_str, self._esc, self._start
        n = len(buf)
        while i < n:
            c = buf[i]
            if in_str:
                if esc:
                    esc = False
                elif c == 0x5C:  # backslash
                    esc = True
                elif c == 0x22:
                    in_str = False
            elif c == 0x22:
                in_str = True
            elif c in (0x7B, 0x5B):  # { [
                depth += 1
                if depth == 2 and start < 0:
                    start = i
            elif c in (0x7D, 0x5D):  # } ]
                depth -= 1
                if depth == 1 and start >= 0:
                    out.append(Event(None, buf[start : i + 1]))
                    start = -1
            i += 1
        # Drop consumed bytes so the buffer stays small.
        keep = start if start >= 0 else i
        self._buf = buf[keep:]
        self._pos = i - keep
        self._start = 0 if start >= 0 else -1
        self._depth, self._in_str, self._esc = depth, in_str, esc
        return out

    def flush(self) -> list[Event]:
        self._buf = b""
        return []


class SSEFramer:
    """Cuts raw SSE bytes into whole events, terminator included, for relaying them untouched."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        out: list[bytes] = []
        start = 0
        crlf = b"\r" in buf
        while True:
            end = buf.find(b"\n\n", start)
            if end >= 0:
                end += 2
            if crlf:
                for sep in (b"\r\n\r\n", b"\r\r"):
                    e = buf.find(sep, start, end if end >= 0 else len(buf))
                    if e >= 0 and (end < 0 or e + len(sep) <= end):
                        end = e + len(sep)
            if end < 0:
                break
            out.append(buf[start:end])
            start = end
        self._buf = buf[start:]
        return out

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest


class LineFramer:
    """Cuts raw NDJSON bytes into whole lines, newline included, for relaying them untouched."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        end = buf.rfind(b"\n") + 1
        self._buf = buf[end:]
        return buf[:end].splitlines(keepends=True) if end else []

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest


def parse_event(raw: bytes) -> Event | None:
    """Decode one raw event cut by ``SSEFramer``."""
    d = SSEDecoder()
    events = d.decode(raw) + d.flush()
    return events[0] if events else None


def sse_event(data: bytes, name: str | None = None) -> bytes:
    """Encode one SSE event (``event:`` line only when named)."""
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


DECODERS = {"sse": SSEDecoder, "ndjson": NDJSONDecoder, "json-array": JSONArrayDecoder}
