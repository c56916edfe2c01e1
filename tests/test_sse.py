"""SSEFramer against a line-by-line reading of the SSE rules, on awkward streams cut every way:
the frames' fields mean what the rules say, and their raw bytes joined are the stream exactly."""
from __future__ import annotations

import random

import pytest

from llmproxy.sse import Event, LineFramer, SSEFrame, SSEFramer, around


def reference(raw: bytes) -> list[Event]:
    """The WHATWG event-stream rules, read line by line: the meaning the decoder must keep."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    events, name, data = [], None, []
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines + [b""]:  # EOF dispatches what is begun
        if not line:
            if data:  # (an empty event type is no type: the event is dispatched under the default one)
                events.append(Event(name or None, b"\n".join(data)))
            name, data = None, []
            continue
        if line[:1] == b":":
            continue
        field, sep, value = line.partition(b":")
        value = value[1:] if sep and value[:1] == b" " else value
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    return events


STREAMS = {
    "data only": b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n',
    "named": b'event: message_start\ndata: {"x":1}\n\nevent: ping\ndata: {}\n\n',
    "crlf": b'event: a\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n',
    "cr": b"data: 1\r\rdata: 2\r\r",
    "multi-line data": b"data: one\ndata: two\n\nevent: e\ndata: a\ndata: b\n\n",
    "comments, ids, no space": b": keep-alive\n\nid: 7\ndata:tight\n\n:c\nevent:e\ndata: x\nretry: 5\n\n",
    "blank lines between": b"\n\n\ndata: a\n\n\n\ndata: b\n\n\n",
    "name without data": b"event: ping\n\ndata: after\n\n",
    "empty data": b"data:\n\ndata: \n\n",
    "no end at EOF": b"data: a\n\nevent: last\ndata: b",
    "no blank line at EOF": b"data: a\n\ndata: b\n",
    "mixed endings": b"data: a\n\nevent: b\r\ndata: c\n\ndata: d\r\n\r\ndata: e\n\n",
    "utf-8 split": "data: héllo ✓\n\nevent: ünï\ndata: 🙂\n\n".encode(),
}


def decode(pieces: list[bytes]) -> list[Event]:
    """The events the framer's frames carry; and the frames' raw bytes must rebuild the stream."""
    framer = SSEFramer()
    frames = [f for p in pieces for f in framer.feed(p)] + framer.flush()
    assert b"".join(f.raw for f in frames) == b"".join(pieces), "a relay would change the bytes"
    # The relay's reading: each read's whole events as one run (cut), cut into frames only when needed (split)
    runs = SSEFramer()
    again = [f for p in pieces for f in SSEFramer.split(runs.cut(p))] + runs.flush()
    assert b"".join(f.raw for f in again) == b"".join(pieces), "cut + split would change the bytes"
    events = [Event(f.name, f.data) for f in frames if f.data is not None]
    assert [Event(f.name, f.data) for f in again if f.data is not None] == events
    # A translator's reading: each read's events parsed, with no frames (a run of the common shape in two regex calls)
    reader = SSEFramer()
    assert [Event(*e) for p in pieces for e in reader.read(p)] + reader.read_rest() == events
    return events


@pytest.mark.parametrize("name", STREAMS)
def test_whole_and_cut_at_every_byte(name: str) -> None:
    raw = STREAMS[name]
    want = reference(raw)
    assert want, "a stream with no events tests nothing"
    assert decode([raw]) == want
    for i in range(len(raw) + 1):
        assert decode([raw[:i], raw[i:]]) == want, f"cut at {i}"
    assert decode([raw[i : i + 1] for i in range(len(raw))]) == want


def test_all_streams_joined_cut_at_random() -> None:
    raw = b"".join(STREAMS[k] for k in STREAMS if not k.startswith("no "))
    want = reference(raw)
    rnd = random.Random(7)
    for _ in range(300):
        cuts = sorted(rnd.sample(range(1, len(raw)), rnd.randint(1, 12)))
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
        assert decode(pieces) == want


def test_random_streams_of_awkward_pieces_read_as_the_rules_say() -> None:
    """Streams made at random of the pieces a field line is built from (so the quick reading of the common
    ``event: …\\ndata: …\\n\\n`` shape meets its near misses: no space, two spaces, ``\\r``, a second line, a comment)."""
    tokens = [b"event", b"data", b"id", b":", b": ", b"  ", b"x", b"{}", "é".encode(), b"\r", b"\n", b"\r\n", b"\n\n"]
    rnd = random.Random(11)
    for _ in range(500):
        raw = b"".join(rnd.choice(tokens) for _ in range(rnd.randint(1, 24))) + b"\n\n"
        want = reference(raw)
        assert decode([raw]) == want, raw
        cut = rnd.randint(0, len(raw))
        assert decode([raw[:cut], raw[cut:]]) == want, (raw, cut)


def test_around_cuts_out_exactly_the_marked_events() -> None:
    """A run of events with marks at random offsets: the marked events come out as frames of one event each, in
    order, everything else as bytes, and the pieces rebuild the run."""
    rnd = random.Random(5)
    for _ in range(300):
        events = [b"data: {" + b"x" * rnd.randint(0, 9) + b"}\n\n" for _ in range(rnd.randint(1, 8))]
        run = b"".join(events)
        starts = [sum(map(len, events[:i])) for i in range(len(events))]
        marks = [rnd.randrange(len(run)) for _ in range(rnd.randint(1, 4))]
        marks = [m for m in marks if run[m:m + 1] != b"\n"]  # (a mark points into an event's text, never its blank line)
        pieces = around(run, marks)
        assert b"".join(p if isinstance(p, bytes) else p.raw for p in pieces) == run
        framed = [p.raw for p in pieces if not isinstance(p, bytes)]
        want = sorted({max(i for i, s in enumerate(starts) if s <= m) for m in marks})
        assert framed == [events[i] for i in want], (run, marks)


def test_the_two_readings_of_a_blank_line_after_lf_agree() -> None:
    """``\n`` then ``\r\n`` is a line end and a blank line: two events, as the rules say."""
    assert decode([b"data: a\n\r\ndata: b\n\n"]) == [Event(None, b"a"), Event(None, b"b")]


def test_a_huge_unterminated_event_is_framed_in_linear_time() -> None:
    """8 MB of one event arriving in 8 KB reads: each read must not rescan what came before."""
    framer = SSEFramer()
    piece = b"x" * 8192
    assert framer.feed(b"data: ") == []
    for _ in range(1024):
        assert framer.feed(piece) == []
    assert framer._scan >= 8 * 1024 * 1024 - 1  # the search resumes at the end, not at the start
    (frame,) = framer.feed(b"\n\n")
    assert len(frame.data) == 8 * 1024 * 1024


def test_ndjson_lines_keep_their_bytes() -> None:
    raw = b'{"a":1}\n\n{"b":2}\r\n{"c":3}'
    for i in range(len(raw) + 1):
        framer = LineFramer()
        frames = framer.feed(raw[:i]) + framer.feed(raw[i:]) + framer.flush()
        assert b"".join(f.raw for f in frames) == raw
        assert [f.data for f in frames if f.data] == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


@pytest.mark.parametrize("raw", [
    b'data: {"a":1}\n\n', b"event: message_start\ndata: {}\n\n", b"data: \n\n", b"event: \ndata: x\n\n", b"data:x\n\n",
    b"event:e\ndata: y\n\n", b"data: a\ndata: b\n\n", b": keep-alive\n\n", b": c\ndata: x\n\n", b"event: e\n\n",
    b"data: x\r\n\r\n", b"event: e\r\ndata: x\r\n\r\n", b"data: x", b"event: e\ndata: x\n", b"id: 1\ndata: x\n\n",
    b"data: [DONE]\n\n", b"event: caf\xc3\xa9\ndata: \xff\n\n", b"data:  two spaces\n\n",
])
def test_frame_fields_agree_with_the_rules(raw):
    """One frame's fields, as ``reference`` reads the same bytes: an event it dispatches has that name and data; one it
    does not (no data line) has no data."""
    f = SSEFrame(raw)
    events = reference(raw)
    assert len(events) <= 1
    assert (f.name, f.data) == (events[0].name, events[0].data) if events else f.data is None
