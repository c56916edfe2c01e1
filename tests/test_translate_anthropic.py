"""Anthropic Messages translator: golden pairs for every recorded fixture, splits, requests, front door.

Regenerate the golden files with ``LLMPROXY_REGEN_GOLDEN=1 pytest tests/test_translate_anthropic.py``
(then read the diff: a golden file that encodes a bug is worse than none).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import anthropic
import orjson
import pytest
from aiohttp import web

from conftest import check_golden, from_upstream, to_client
from llmproxy.errors import ProxyError
from llmproxy.sse import Event, SSEFramer, events
from llmproxy.translate import Meta
from llmproxy.translate import anthropic as A

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
META = Meta("msg_test", 1700000000, "claude-test")

STREAMS = sorted(p.name for p in FIXTURES.iterdir() if p.suffix == ".sse" or p.name.endswith(".chunks.jsonl"))
NONSTREAMS = sorted(p.name for p in FIXTURES.glob("nonstream-*.json"))
REQUESTS = sorted(p.name for p in FIXTURES.glob("request-*.json"))
ERRORS = sorted(p.name for p in FIXTURES.glob("error-*.json"))


def test_every_fixture_has_a_golden_test() -> None:
    covered = set(STREAMS) | set(NONSTREAMS) | set(REQUESTS) | set(ERRORS)
    assert covered == {p.name for p in FIXTURES.iterdir()}


# ---------------------------------------------------------------- helpers


golden = partial(check_golden, "anthropic")


def pretty(obj: object) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n"


def sse_bytes(name: str) -> bytes:
    """The fixture as SSE bytes; a data-only ``.chunks.jsonl`` gets its ``event:`` lines back."""
    raw = (FIXTURES / name).read_bytes()
    if not name.endswith(".chunks.jsonl"):
        return raw
    lines = [line for line in raw.splitlines() if line.strip()]
    return b"".join(b"event: " + orjson.loads(line)["type"].encode() + b"\ndata: " + line + b"\n\n" for line in lines)


def decode(pieces: list[bytes]) -> list[Event]:
    return events(SSEFramer(), pieces)


def hub_stream(events: list[Event]) -> list[dict]:
    """Hub chunks from upstream events; a raised ProxyError becomes a final ``{"raised": …}`` line."""
    out: list[dict] = []
    try:
        for chunk in from_upstream(A, events, META):
            out.append(chunk)
    except ProxyError as err:
        out.append({"raised": {"status": err.status, "message": err.message}})
    return out


def client_stream(chunks: list[dict]) -> bytes:
    return b"".join(to_client(A.ToClient(META), chunks))


def jsonl(items: list[dict]) -> bytes:
    return b"".join(orjson.dumps(i) + b"\n" for i in items)


# ---------------------------------------------------------------- streams: Anthropic -> hub -> Anthropic


@pytest.mark.parametrize("name", STREAMS)
async def test_stream_golden(name: str) -> None:
    raw = sse_bytes(name)
    chunks = hub_stream(decode([raw]))
    golden(f"{name}.jsonl", jsonl(chunks))
    # 1 byte at a time through the decoder: identical hub output
    assert hub_stream(decode([raw[i : i + 1] for i in range(len(raw))])) == chunks
    if "raised" not in chunks[-1]:
        golden(f"{name}.client.sse", client_stream(chunks))


def _event_spans(raw: bytes) -> list[int]:
    """Byte offsets where the events of ``raw`` end (after their blank line)."""
    ends, pos = [], 0
    while (cut := raw.find(b"\n\n", pos)) >= 0:
        pos = cut + 2
        ends.append(pos)
    return ends if ends and ends[-1] == len(raw) else ends + [len(raw)]


@pytest.mark.parametrize("name", STREAMS)
def test_stream_split_at_every_byte(name: str) -> None:
    """Two pieces, cut at every byte boundary: the decoded events (hence the pure translation) match.

    Small files are re-decoded whole for each cut. The 22 KB Japanese file would take seconds that
    way, so each cut is checked on the window of the events around it: the decoder holds no state
    across an event boundary, so this covers the same cut.
    """
    raw = sse_bytes(name)
    if len(raw) <= 6000:
        whole = decode([raw])
        for i in range(1, len(raw)):
            assert decode([raw[:i], raw[i:]]) == whole, i
        return
    ends = [0] + _event_spans(raw)
    for e in range(1, len(ends)):
        lo, hi = ends[max(e - 2, 0)], ends[min(e + 1, len(ends) - 1)]
        window = raw[lo:hi]
        whole = decode([window])
        for i in range(ends[e - 1] + 1, ends[e]):
            assert decode([window[: i - lo], window[i - lo :]]) == whole, i


async def test_stream_truncated_before_message_stop_raises() -> None:
    raw = sse_bytes("stream-text.sse")
    cut = raw.index(b"event: message_stop")
    chunks = hub_stream(decode([raw[:cut]]))
    assert chunks[-1] == {"raised": {"status": 502, "message": "Anthropic stream ended before message_stop"}}


async def test_stream_only_empty_partial_json_becomes_empty_object() -> None:
    chunks = hub_stream(decode([sse_bytes("stream-parallel-tool-use-empty-args.sse")]))
    args = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert [a["function"]["arguments"] for a in args] == ["", "{}", "", "{}"]
    assert [a["index"] for a in args] == [0, 0, 1, 1]
    assert args[0]["id"] == "toolu_01LtHJmixrs9NcWQkK8hu8hj"


async def test_stream_usage_counts_cache_and_iterations() -> None:
    chunks = hub_stream(decode([sse_bytes("stream-cache-read-unknown-block.sse")]))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello! 👋"  # the compaction block is ignored
    usage = chunks[-1]["usage"]
    # compaction step 100 + 55096 cache read (83 out), then the answer 181 in / 8 out
    assert usage["prompt_tokens"] == 100 + 55096 + 181
    assert usage["prompt_tokens_details"]["cached_tokens"] == 55096
    assert usage["completion_tokens"] == 83 + 8


async def test_stream_error_event_is_overloaded_529() -> None:
    chunks = hub_stream(decode([sse_bytes("stream-error-event-docs.sse")]))
    assert chunks == [{"raised": {"status": 529, "message": "Overloaded"}}]


# ---------------------------------------------------------------- non-stream and errors


@pytest.mark.parametrize("name", NONSTREAMS)
def test_nonstream_golden(name: str) -> None:
    hub = A.response_from_upstream(orjson.loads((FIXTURES / name).read_bytes()), META)
    golden(name, pretty(hub))
    golden(name.replace(".json", ".client.json"), pretty(A.response_to_client(hub, META)))


def test_nonstream_cache_usage_adds_cache_to_prompt() -> None:
    hub = A.response_from_upstream(orjson.loads((FIXTURES / "nonstream-cache-usage.json").read_bytes()), META)
    assert hub["usage"]["prompt_tokens"] == 3 + 418 + 1111
    assert hub["usage"]["prompt_tokens_details"] == {"cached_tokens": 1111, "cache_write_tokens": 418}
    back = A.response_to_client(hub, META)["usage"]
    assert back == {"input_tokens": 3, "cache_creation_input_tokens": 418, "cache_read_input_tokens": 1111, "output_tokens": 33}


ERROR_STATUS = {"error-shape-docs.json": 404}


@pytest.mark.parametrize("name", ERRORS)
def test_error_golden(name: str) -> None:
    body = (FIXTURES / name).read_bytes()
    status = ERROR_STATUS.get(name) or int(name.split("-")[1])
    err = A.error_from_upstream(status, body)
    golden(name, pretty({"status": err.status, "message": err.message, "type": err.type}))
    assert err.message == orjson.loads(body)["error"]["message"]
    # a generic status (none, as in a stream, or a bare 500) is replaced by the one the type names
    assert A.error_from_upstream(200, body).status == status
    assert A.error_from_upstream(500, body).status == status


def test_error_non_json_body_keeps_text() -> None:
    err = A.error_from_upstream(502, b"<html>Bad Gateway</html>")
    assert (err.status, err.message) == (502, "<html>Bad Gateway</html>")


# ---------------------------------------------------------------- hub request -> Anthropic


def to_upstream(**hub) -> dict:
    path, body = A.request_to_upstream({"messages": [{"role": "user", "content": "hi"}], **hub}, "claude-x", False)
    assert path == "/v1/messages"
    return body


def test_request_minimal_defaults() -> None:
    assert to_upstream() == {"model": "claude-x", "max_tokens": A.DEFAULT_MAX_TOKENS,
                             "messages": [{"role": "user", "content": "hi"}]}
    assert A.request_to_upstream({"messages": [{"role": "user", "content": "hi"}]}, "m", True)[1]["stream"] is True


def test_request_system_and_developer_messages_go_top_level() -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert to_upstream(messages=msgs)["system"] == "Be brief."
    msgs = [{"role": "system", "content": [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
            {"role": "developer", "content": "B"}, {"role": "user", "content": "again"}]
    body = to_upstream(messages=msgs)
    assert body["system"] == [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                              {"type": "text", "text": "B"}]
    assert body["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                                {"role": "user", "content": "again"}]


def test_request_same_role_turns_merge() -> None:
    msgs = [{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "d"}]
    assert to_upstream(messages=msgs)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    ]


def test_request_images() -> None:
    parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
             {"type": "text", "text": "Describe"}]
    assert to_upstream(messages=[{"role": "user", "content": parts}])["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "Describe"},
    ]
    with pytest.raises(ProxyError) as e:
        to_upstream(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///x"}}]}])
    assert e.value.status == 400 and e.value.param == "messages[0].content[0].image_url"


def test_request_tools_and_tool_choice() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                                               "strict": True}},
             {"type": "function", "function": {"name": "ping"}}]
    body = to_upstream(tools=tools)
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body
    assert to_upstream(tools=tools, tool_choice="auto")["tool_choice"] == {"type": "auto"}
    assert to_upstream(tools=tools, tool_choice="none")["tool_choice"] == {"type": "none"}
    assert to_upstream(tools=tools, tool_choice="required")["tool_choice"] == {"type": "any"}
    named = {"type": "function", "function": {"name": "ping"}}
    assert to_upstream(tools=tools, tool_choice=named)["tool_choice"] == {"type": "tool", "name": "ping"}
    assert to_upstream(tools=tools, parallel_tool_calls=False)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert to_upstream(tools=tools, tool_choice="required", parallel_tool_calls=False)["tool_choice"] == {
        "type": "any", "disable_parallel_tool_use": True}
    assert "tool_choice" not in to_upstream(tool_choice="auto")  # no tools: nothing to choose


def test_request_tool_calls_and_results() -> None:
    msgs = [
        {"role": "user", "content": "Two names"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "names", "arguments": ""}},
            {"id": "call.2", "type": "function", "function": {"name": "names", "arguments": "{\"n\": 2}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Charles"},
        {"role": "tool", "tool_call_id": "call.2", "content": [{"type": "text", "text": "Sammy"}]},
        {"role": "user", "content": "thanks"},
    ]
    assert to_upstream(messages=msgs)["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "names", "input": {}},
            {"type": "tool_use", "id": "call_2", "name": "names", "input": {"n": 2}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "Charles"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "Sammy"},
            {"type": "text", "text": "thanks"}]},
    ]
    # a user text that came first still ends up after the tool results
    msgs[2:] = [{"role": "user", "content": "note"}, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]
    assert [b["type"] for b in to_upstream(messages=msgs)["messages"][2]["content"]] == ["tool_result", "text"]
    with pytest.raises(ProxyError) as e:
        to_upstream(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{x"}}]}])
    assert e.value.param == "messages[0].tool_calls[0].function.arguments"


def test_request_thinking_blocks_go_back_first() -> None:
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "redacted_thinking", "data": "opaque"}]
    msgs = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": "Let me check.", "reasoning_content": "hmm", "thinking_blocks": blocks,
             "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"}]
    assert to_upstream(messages=msgs, reasoning_effort="low")["messages"][1]["content"] == [
        *blocks, {"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]


def test_request_prefill_loses_trailing_whitespace() -> None:
    msgs = [{"role": "user", "content": "code"}, {"role": "assistant", "content": "```python\n  "}]
    assert to_upstream(messages=msgs)["messages"][-1] == {"role": "assistant", "content": "```python"}
    msgs[-1]["content"] = "  \n"
    assert to_upstream(messages=msgs)["messages"] == [{"role": "user", "content": "code"}]


def test_request_parameters() -> None:
    body = to_upstream(max_tokens=100, max_completion_tokens=200, temperature=1.7, top_p=0.9, stop="END",
                       seed=7, user="u-1", frequency_penalty=0.5, stream_options={"include_usage": True})
    assert body == {"model": "claude-x", "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}],
                    "temperature": 1.0, "top_p": 0.9, "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}}
    assert to_upstream(max_tokens=50, temperature=-1)["temperature"] == 0.0
    assert to_upstream(stop=["a", "", "b"])["stop_sequences"] == ["a", "b"]
    with pytest.raises(ProxyError):
        to_upstream(n=2)
    with pytest.raises(ProxyError):
        to_upstream(max_tokens="many")


def test_request_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = to_upstream(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert to_upstream(response_format={"type": "json_object"})["system"] == A.JSON_OBJECT_INSTRUCTION
    assert "system" not in to_upstream(response_format={"type": "text"})


def test_request_reasoning_effort() -> None:
    body = to_upstream(reasoning_effort="medium", temperature=0.2, top_p=0.5)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": A.THINKING_BUDGET["medium"]}
    assert body["max_tokens"] == A.DEFAULT_MAX_TOKENS + A.THINKING_BUDGET["medium"]
    assert "temperature" not in body and "top_p" not in body
    assert to_upstream(reasoning_effort="high", max_tokens=5000)["thinking"]["budget_tokens"] == 4999
    assert "thinking" not in to_upstream(reasoning_effort="none")
    with pytest.raises(ProxyError) as e:
        to_upstream(reasoning_effort="low", max_tokens=1000)
    assert e.value.param == "max_tokens"
    with pytest.raises(ProxyError):
        to_upstream(reasoning_effort="extreme")


def test_request_rejects_what_anthropic_cannot_take() -> None:
    for bad in ([{"role": "function", "content": "x"}], [{"role": "system", "content": "only system"}],
                [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]):
        with pytest.raises(ProxyError) as e:
            A.request_to_upstream({"messages": bad}, "m", False)
        assert e.value.status == 400


# ---------------------------------------------------------------- front door: Anthropic request -> hub


@pytest.mark.parametrize("name", REQUESTS)
def test_request_from_client_golden(name: str) -> None:
    original = orjson.loads((FIXTURES / name).read_bytes())
    hub = A.request_from_client(original)
    golden(name, pretty(hub))
    # and back: hub -> Anthropic gives the original request again (content strings as blocks)
    _, again = A.request_to_upstream(hub, original["model"], original.get("stream", False))

    def blocks(body: dict) -> list:
        return [{**m, "content": [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else m["content"]}
                for m in body["messages"]]

    assert blocks(again) == blocks(original)
    for key in ("model", "max_tokens", "temperature", "stream"):
        assert again.get(key) == original.get(key)
    assert [t["name"] for t in again.get("tools", [])] == [t["name"] for t in original.get("tools", [])]


def test_request_from_client_fields() -> None:
    body = {
        "model": "claude-x", "max_tokens": 9000, "stream": True, "temperature": 0.3, "top_p": 0.8, "top_k": 5,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Be careful."}],
        "messages": [
            {"role": "system", "content": "Extra rule."},
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}},
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "redacted_thinking", "data": "d"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": [
                    {"type": "text", "text": "line1"}, {"type": "text", "text": "line2"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
                {"type": "text", "text": "go on"}]},
        ],
        "tools": [{"name": "read", "description": "Read a file", "input_schema": {"type": "object"},
                   "defer_loading": True, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["###"],
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        "metadata": {"user_id": "u"}, "context_management": {"edits": []}, "cache_control": {"type": "ephemeral"},
    }
    assert A.request_from_client(body) == {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "You are Claude Code.\n\nBe careful.\n\nExtra rule."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                                         {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "Checking.",
             "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                 {"type": "redacted_thinking", "data": "d"}],
             "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "line1\nline2"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                                         {"type": "text", "text": "go on"}]},
        ],
        "max_completion_tokens": 9000, "temperature": 0.3, "top_p": 0.8, "stop": ["###"],
        "reasoning_effort": "medium",
        "response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}},
        "stream": True, "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {"name": "read", "description": "Read a file",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": "required", "parallel_tool_calls": False,
    }


def test_request_from_client_choices_and_errors() -> None:
    base = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    for choice, want in (({"type": "auto"}, "auto"), ({"type": "none"}, "none"),
                         ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}})):
        assert A.request_from_client({**base, "tool_choice": choice})["tool_choice"] == want
    assert A.request_from_client({**base, "thinking": {"type": "adaptive"}})["reasoning_effort"] == "medium"
    assert A.request_from_client({**base, "thinking": {"type": "enabled", "budget_tokens": 1024}})["reasoning_effort"] == "low"
    assert "reasoning_effort" not in A.request_from_client({**base, "thinking": {"type": "disabled"}})
    for bad, param in (({"messages": "x"}, "messages"), ({"temperature": "hot"}, "temperature"),
                       ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
                       ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
                       ({"messages": [{"role": "user", "content": [{"type": "search_result"}]}]}, "messages[0].content[0]")):
        with pytest.raises(ProxyError) as e:
            A.request_from_client({**base, **bad})
        assert (e.value.status, e.value.param) == (400, param)


# ---------------------------------------------------------------- front door: hub -> Anthropic client


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    from llmproxy.translate.common import hub_chunk, hub_usage_chunk

    return hub_usage_chunk(META, usage) if usage else hub_chunk(META, delta or {}, finish)


HUB_USAGE = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
             "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
             "completion_tokens_details": {"reasoning_tokens": 4}}
SCRIPTED = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "Think"}), chunk({"reasoning_content": "ing."}),
    chunk({"thinking_blocks": [{"type": "thinking", "thinking": "Thinking.", "signature": "SIG"}]}),
    chunk({"content": "Hel"}), chunk({"content": "lo"}),
    chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call:b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}),
    chunk({}, "tool_calls"),
    chunk(usage=HUB_USAGE),
]


def parse_client_stream(data: bytes) -> list[tuple[str, dict]]:
    events = decode([data])
    assert all(e.name == orjson.loads(e.data)["type"] for e in events)
    return [(e.name, orjson.loads(e.data)) for e in events]


async def test_stream_to_client_grammar() -> None:
    events = parse_client_stream(client_stream(SCRIPTED))
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    open_index = None
    starts = []
    for name, data in events:  # every block closed before the next opens, fresh consecutive indexes
        if name == "content_block_start":
            assert open_index is None
            open_index = data["index"]
            starts.append((data["index"], data["content_block"]["type"]))
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "tool_use")]
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert {"type": "signature_delta", "signature": "SIG"} in deltas
    assert events[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                             "usage": {"input_tokens": 15, "cache_creation_input_tokens": 5,
                                       "cache_read_input_tokens": 10, "output_tokens": 12}}
    tool_b = [d for n, d in events if n == "content_block_start"][3]["content_block"]
    assert tool_b == {"type": "tool_use", "id": "call_b", "name": "g", "input": {}}


async def test_stream_to_client_message_delta_waits_for_usage_and_empty_stream() -> None:
    events = parse_client_stream(client_stream([chunk({"content": "x"}), chunk({}, "length"), chunk(usage=HUB_USAGE)]))
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2][1]["usage"]["output_tokens"] == 12
    events = parse_client_stream(client_stream([]))
    assert [n for n, _ in events] == ["message_start", "message_delta", "message_stop"]


async def test_stream_to_client_refuses_interleaved_tool_fragments() -> None:
    chunks = [chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]}),
              chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})]
    with pytest.raises(ProxyError):
        client_stream(chunks)


def test_error_body_and_stream_error() -> None:
    assert orjson.loads(A.error_body(ProxyError(529, "Overloaded"))) == {
        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert orjson.loads(A.error_body(ProxyError(500, "boom")))["error"]["type"] == "api_error"
    assert orjson.loads(A.error_body(ProxyError(502, "bad gateway")))["error"]["type"] == "api_error"
    assert orjson.loads(A.error_body(ProxyError(422, "no")))["error"]["type"] == "invalid_request_error"
    data = A.stream_error(ProxyError(429, "slow down"))
    assert data.startswith(b"event: error\ndata: ") and data.endswith(b"\n\n")
    assert parse_client_stream(data)[0][1]["error"] == {"type": "rate_limit_error", "message": "slow down"}


# ---------------------------------------------------------------- the official SDK reads what we write


@pytest.fixture
async def sdk_server():
    """A tiny Anthropic look-alike on 127.0.0.1 port 0 answering from a scripted hub answer."""
    served: dict = {}

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        served["request"] = A.request_from_client(body)
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(A.response_to_client(served["response"], META)),
                                content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        for event in to_client(A.ToClient(META), served["chunks"]):
            await resp.write(event)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key="test", max_retries=0)
    yield client, served
    await client.close()
    await runner.cleanup()


async def test_sdk_parses_scripted_stream(sdk_server) -> None:
    client, served = sdk_server
    served["chunks"] = SCRIPTED
    async with client.messages.stream(model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        message = await s.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert (message.content[0].thinking, message.content[0].signature) == ("Thinking.", "SIG")
    assert message.content[1].text == "Hello"
    assert (message.content[2].name, message.content[2].input) == ("f", {"x": 1})
    assert (message.content[3].id, message.content[3].input) == ("call_b", {})
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (15, 12)
    assert message.usage.cache_read_input_tokens == 10


@pytest.mark.parametrize("name", ["stream-thinking.sse", "stream-tool-use-docs.sse", "stream-redacted-thinking.sse"])
async def test_sdk_parses_round_tripped_fixture(sdk_server, name: str) -> None:
    """Anthropic fixture -> hub -> our Anthropic stream -> SDK: the same content comes out."""
    client, served = sdk_server
    served["chunks"] = hub_stream(decode([sse_bytes(name)]))
    async with client.messages.stream(model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        message = await s.get_final_message()
    original = [e for e in parse_client_stream(sse_bytes(name)) if e[0] == "content_block_start"]
    assert [b.type for b in message.content] == [d["content_block"]["type"] for _, d in original]
    if name == "stream-thinking.sse":
        assert message.content[0].signature.startswith("EuYDCmMIDBgCKkC05Zda")
        assert message.content[1].text.endswith('play' 'ful take on "pelican"')
    if name == "stream-tool-use-docs.sse":
        assert message.content[1].input == {"location": "San Francisco, CA", "unit": "fahrenheit"}
        assert message.stop_reason == "tool_use"


async def test_sdk_parses_nonstream(sdk_server) -> None:
    client, served = sdk_server
    served["response"] = A.response_from_upstream(
        orjson.loads((FIXTURES / "nonstream-text-and-tool-use.json").read_bytes()), META)
    message = await client.messages.create(
        model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
        tools=[{"name": "updateIssueList", "input_schema": {"type": "object"}}])
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[1].id == "toolu_01LRmxn9vGM1d2DZSDBowdZ1" and message.content[1].input == {}
    assert message.stop_reason == "tool_use" and message.usage.input_tokens == 602
    assert served["request"]["tools"][0]["function"]["name"] == "updateIssueList"
