"""Framers: upstream body bytes cut into events, each event's raw bytes kept with its parsed form.

One framer per stream format (``FRAMERS``): ``feed(chunk)`` returns the frames this chunk
completed, ``flush()`` what is left at the end of the body.  A frame's ``raw`` is its bytes exactly
as they came (a relay writes them on untouched); its ``name`` and ``data`` are parsed only when
someone reads them.  A translator, which never writes the raw bytes, asks ``read(chunk)`` and
``read_rest()`` instead: the events with data, as (name, data) pairs, with no frame made where
the bytes have the shape every provider sends.  Framing happens on bytes and UTF-8 is decoded only by the JSON parser
afterwards, so a network split inside a multi-byte character cannot corrupt text.  Every framer
looks at each byte a bounded number of times: a huge event that arrives in many reads costs
linear time, not a rescan per read; past ``max_event`` bytes it is ``EventTooLarge``.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Protocol, Union


class EventTooLarge(ValueError):
    """One event grew past the framer's ``max_event`` bytes before it ended."""


class Event(NamedTuple):
    """A parsed event on its own: what a translator reads, as a (name, data) pair it unpacks (a framer's
    ``read`` may hand it a plain tuple of the two)."""

    name: str | None
    data: bytes | None


# One event of an optional ``event:`` line and one ``data:`` line, nothing else (in bytes without "\r"),
# fields as the general reading finds them (one space after the colon dropped); a run of such events, and
# the fields of each event of a run
_SIMPLE = re.compile(rb"(?:event: ?(.*)\n)?data: ?(.*)\n\n").fullmatch
_SIMPLE_RUN = re.compile(rb"(?:(?:event: ?.*\n)?data: ?.*\n\n)+").fullmatch
_FIELDS = re.compile(rb"(?:event: ?(.*)\n)?data: ?(.*)\n\n").findall


class _Names(dict):
    """Event names decoded once (Anthropic's are there from the start); an empty name is no name, as the
    SSE standard says (the event is dispatched under the default type)."""

    def __missing__(self, name: bytes) -> str | None:
        return name.decode("utf-8", "replace") or None


_NAMES = _Names({n.encode(): n for n in ("message_start", "content_block_start", "content_block_delta",
                                         "content_block_stop", "message_delta", "message_stop", "ping", "error")})
_NAMES[b""] = None


class SSEFrame:
    """One server-sent event: its raw bytes (terminator included) and, on first read, its fields."""

    __slots__ = ("raw", "_name", "_data", "_parsed")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._parsed = False

    @property
    def name(self) -> str | None:
        """The ``event:`` field, or None."""
        if not self._parsed:
            self._parse()
        return self._name

    @property
    def data(self) -> bytes | None:
        """The ``data:`` lines joined by ``\\n``; None when the event has no data line (nothing to dispatch)."""
        if not self._parsed:
            self._parse()
        return self._data

    def _parse(self) -> None:
        self._parsed = True
        raw = self.raw
        if raw.find(b"\r") < 0:
            simple = _SIMPLE(raw)  # the shape every provider sends: two C calls
            if simple is not None:
                name, self._data = simple.groups()
                self._name = None if name is None else _NAMES[name]
                return
        else:
            raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        name: str | None = None
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if not line:
                if data:
                    break  # the blank line that ends the event
                continue
            if line[0] == 0x3A:  # ":" comment
                continue
            field, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = _NAMES[value]
        self._name = name
        self._data = (data[0] if len(data) == 1 else b"\n".join(data)) if data else None

    def __repr__(self) -> str:
        return f"SSEFrame({self.raw!r})"


def _parsed(frames: list) -> list[Event]:
    """The events of ``frames`` that have data, without their raw bytes."""
    return [Event(f.name, f.data) for f in frames if f.data is not None]


class _Reads:
    """What a translator reads of a stream: each event with data, parsed, without its raw bytes."""

    __slots__ = ()

    def read(self, chunk: bytes) -> list[Event]:
        """The events with data this chunk completed."""
        return _parsed(self.feed(chunk))  # type: ignore[attr-defined]

    def read_rest(self) -> list[Event]:
        """The events with data left at the end of the body."""
        return _parsed(self.flush())  # type: ignore[attr-defined]


class SSEFramer(_Reads):
    """Server-sent events: ``\\n``, ``\\r\\n`` or ``\\r`` line ends; an event ends at a blank line.

    Cuts between events only, so the frames' raw bytes joined are the body exactly (the last,
    unterminated piece comes from ``flush``).
    """

    __slots__ = ("_buf", "_scan", "_cr", "_max")

    def __init__(self, max_event: int = 0) -> None:
        self._buf = b""
        self._scan = 0  # where the search for the next blank line resumes in _buf
        self._cr = False  # a "\r" was seen: line ends need the careful scanner from now on
        self._max = max_event  # bytes one unfinished event may reach (0: no cap)

    def feed(self, chunk: bytes) -> list[SSEFrame]:
        buf = self._joined(chunk)
        if self._cr:
            return self._feed_cr(buf)
        # "\n" line ends only (every provider here): a blank line is "\n\n".
        out: list[SSEFrame] = []
        start = 0
        end = buf.find(b"\n\n", self._scan)
        while end >= 0:
            end += 2
            out.append(SSEFrame(buf[start:end]))
            start = end
            end = buf.find(b"\n\n", start)
        self._keep(buf[start:] if start else buf)
        return out

    def cut(self, chunk: bytes) -> bytes:
        """What ``feed`` would return, as one run of bytes: the events this chunk completed, not cut apart
        (b"" when none).  A relay checks the run whole and cuts out only the events it must read (``around``)."""
        buf = self._joined(chunk)
        if self._cr:
            return b"".join([f.raw for f in self._feed_cr(buf)])
        end = buf.rfind(b"\n\n", self._scan) + 2  # (the last blank line: every event before it is whole)
        if end < 2:
            self._keep(buf)
            return b""
        self._keep(buf[end:])
        return buf[:end]

    def read(self, chunk: bytes) -> list[Event]:
        """The events with data this chunk completed; a run of the shape every provider sends is read by two
        regex calls (``_SIMPLE_RUN``, ``_FIELDS``), with no frame made."""
        run = self.cut(chunk)
        if not run:
            return []
        if not self._cr and _SIMPLE_RUN(run) is not None:  # (no "\r" seen: "." is any byte but "\n")
            return [(_NAMES[name], data) for name, data in _FIELDS(run)]  # (plain pairs: a NamedTuple costs 3x more)
        return _parsed(self.split(run))

    def _joined(self, chunk: bytes) -> bytes:
        """What is left of the last read with this one; the first "\r" seen turns the careful scanner on for good."""
        if not self._cr and b"\r" in chunk:
            self._cr, self._scan = True, 0  # the scan restarts at a line start
        return self._buf + chunk if self._buf else chunk

    def _keep(self, rest: bytes) -> None:
        """The unfinished event, for the next read (a "\n" at its end may pair with the next read's)."""
        self._buf, self._scan = rest, max(0, len(rest) - 1)
        if self._max and len(rest) > self._max:
            raise EventTooLarge(self._max)

    @staticmethod
    def split(run: bytes) -> list[SSEFrame]:
        """A run of whole events (``cut``) as frames, as ``feed`` would have made them."""
        f = SSEFramer()
        return f.feed(run) + f.flush()

    def _feed_cr(self, buf: bytes) -> list[SSEFrame]:
        out: list[SSEFrame] = []
        start = 0  # the current event's first byte
        pos = self._scan  # the start of the line being looked at (always a line start)
        n = len(buf)
        while pos < n:
            nl = buf.find(b"\n", pos)
            cr = buf.find(b"\r", pos, nl if nl >= 0 else n)
            if cr >= 0:
                if cr == n - 1:
                    break  # "\r" at the very end may be the first half of "\r\n": wait for more
                eol, nxt = cr, cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            elif nl >= 0:
                eol, nxt = nl, nl + 1
            else:
                break
            if eol == pos:  # a blank line: the event ends with it
                out.append(SSEFrame(buf[start:nxt]))
                start = nxt
            pos = nxt
        self._buf = buf[start:]
        self._scan = pos - start
        if self._max and len(self._buf) > self._max:
            raise EventTooLarge(self._max)
        return out

    def flush(self) -> list[SSEFrame]:
        rest, self._buf, self._scan = self._buf, b"", 0
        return [SSEFrame(rest)] if rest else []


def around(run: bytes, marks: list[int]) -> list[bytes | SSEFrame]:
    """``run`` (whole events, ``\n`` line ends) with each event holding one of the ``marks`` (byte offsets) as a
    frame of its own, in order, and the bytes between them left as they are."""
    out: list[bytes | SSEFrame] = []
    pos = 0
    for m in sorted(marks):
        if m < pos:
            continue  # (that event is already out)
        start = run.rfind(b"\n\n", pos, m) + 2
        if start < pos + 2:
            start = pos
        end = run.find(b"\n\n", m) + 2
        if start > pos:
            out.append(run[pos:start])
        out.append(SSEFrame(run[start:end]))
        pos = end
    if pos < len(run):
        out.append(run[pos:])
    return out


class Line:
    """One NDJSON line: raw bytes (newline included) and, as ``data``, the line without it."""

    __slots__ = ("raw",)
    name = None

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @property
    def data(self) -> bytes | None:
        """The line's JSON text; None for a blank line."""
        line = self.raw.strip()
        return line or None

    def __repr__(self) -> str:
        return f"Line({self.raw!r})"


class LineFramer(_Reads):
    """Newline-delimited JSON: one object a line; the last line may lack its ``\\n``."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_event: int = 0) -> None:
        self._buf = b""
        self._max = max_event  # bytes one unfinished line may reach (0: no cap)

    def feed(self, chunk: bytes) -> list[Line]:
        end = chunk.rfind(b"\n") + 1
        if not end:
            self._buf += chunk
            if self._max and len(self._buf) > self._max:
                raise EventTooLarge(self._max)
            return []
        buf = self._buf + chunk[:end] if self._buf else chunk[:end]
        self._buf = chunk[end:]
        return [Line(raw) for raw in buf.splitlines(keepends=True)]

    def flush(self) -> list[Line]:
        rest, self._buf = self._buf, b""
        return [Line(rest)] if rest else []


class JSONArrayFramer(_Reads):
    """A JSON array streamed element by element (Gemini without ``alt=sse``): ``[{…}\\n,\\n{…}]``.

    Its frames are the elements (``data``); the brackets and commas between them are dropped, so
    this framer serves translation, never a byte-for-byte relay.
    """

    __slots__ = ("_buf", "_depth", "_in_str", "_esc", "_start", "_pos", "_max")

    def __init__(self, max_event: int = 0) -> None:
        self._max = max_event  # bytes one unfinished element may reach (0: no cap)
        self._buf = b""
        self._depth = 0  # depth inside the outer array's elements
        self._in_str = False
        self._esc = False
        self._start = -1
        self._pos = 0

    def feed(self, chunk: bytes) -> list[Event]:
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
        if self._max and len(self._buf) > self._max:
            raise EventTooLarge(self._max)
        return out

    def flush(self) -> list[Event]:
        self._buf = b""
        return []


Frame = Union[SSEFrame, Line, Event]


class Framer(Protocol):
    def feed(self, chunk: bytes) -> list[Frame]: ...
    def flush(self) -> list[Frame]: ...
    def read(self, chunk: bytes) -> list[Event]: ...
    def read_rest(self) -> list[Event]: ...


FRAMERS: dict[str, type[SSEFramer] | type[LineFramer] | type[JSONArrayFramer]] = {
    "sse": SSEFramer, "ndjson": LineFramer, "json-array": JSONArrayFramer,
}


def events(framer: Framer, pieces: list[bytes]) -> list[Event]:
    """The events with data in ``pieces``, flushed at the end: a whole body framed and parsed at once."""
    out = [e for p in pieces for e in framer.read(p)] + framer.read_rest()
    return [Event(*e) for e in out]


def sse_event(data: bytes, name: str | None = None) -> bytes:
    """Encode one SSE event (``event:`` line only when named)."""
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\n" + b"data: " + data + b"\n\n"
