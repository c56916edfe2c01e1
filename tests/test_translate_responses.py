"""The Responses translator: what a relay reads of a recorded OpenAI stream, at every split.

Regenerate the golden files with ``LLMPROXY_REGEN_GOLDEN=1 pytest tests/test_translate_responses.py``
(then read the diff: a golden file that encodes a bug is worse than none).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import sse_wire
from llmproxy.sse import SSEFramer
from llmproxy.translate import responses as R

FIXTURES = Path(__file__).parent / "fixtures" / "responses"
RELAY_STREAMS = sorted(p.name for p in FIXTURES.iterdir() if p.name.startswith("stream-"))


def wire(name: str) -> bytes:
    return sse_wire(f"responses/{name}")


def tapped(pieces: list[bytes]) -> tuple[bytes, list, dict]:
    """The frames' bytes joined, what the tap said of each, and its ``seen`` dict."""
    framer, seen, out, taps = SSEFramer(), {}, [], []
    for piece in pieces:
        for f in framer.feed(piece):
            out.append(f.raw)
            t = R.relay_tap(f, seen)
            if t is not None:
                taps.append((t.usage, t.error and (t.error.status, t.error.code, t.error.message)))
    for f in framer.flush():
        out.append(f.raw)
    return b"".join(out), taps, seen


@pytest.mark.parametrize("name", RELAY_STREAMS)
def test_relay_tap_at_every_split(name: str) -> None:
    raw = wire(name)
    whole = tapped([raw])
    assert whole[0] == raw
    for i in range(1, len(raw)):
        assert tapped([raw[:i], raw[i:]]) == whole, i


def test_relay_tap_reads_usage_id_and_in_band_errors() -> None:
    _, taps, seen = tapped([wire("stream-reasoning-function-call.sse")])
    [(usage, err)] = taps
    assert err is None and seen["id"] == "resp_0050471a34b36ae60068c97b94a480819587a9d70cf2979b33"
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["completion_tokens_details"]) == (53, 469, {"reasoning_tokens": 448})
    _, taps, seen = tapped([wire("stream-error-insufficient-quota.chunks.jsonl")])
    assert [e for _, e in taps] == [(429, "insufficient_quota", taps[0][1][2])] * 2  # the error event, then response.failed
    assert taps[0][1][2].startswith("You exceeded your current quota") and "id" not in seen
    # a text delta that mentions the event names is not mistaken for them
    raw = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"response.completed \\"type\\":\\"error\\""}\n\n'
    assert tapped([raw])[1] == []


def test_usage_to_hub_counts_cache_and_reasoning() -> None:
    usage = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 10},
             "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 130}
    assert R.usage_to_hub(usage) == {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
                                     "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 10},
                                     "completion_tokens_details": {"reasoning_tokens": 12}}
    assert R.usage_to_hub(None) is None and R.usage_of_answer({"usage": None}) is None
