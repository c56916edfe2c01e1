"""Ollama native API translator: golden fixtures, split streams, requests, errors, front door, official SDK.

Regenerate the golden files with ``LLMPROXY_REGEN_GOLDEN=1`` (then read them by hand before committing).
"""
from __future__ import annotations

import base64
from functools import partial
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from conftest import check_golden, from_upstream, to_client
from llmproxy.errors import ProxyError
from llmproxy.sse import FRAMERS, events
from llmproxy.translate import Meta
from llmproxy.translate import ollama as ol

FIXTURES = Path(__file__).parent / "fixtures" / "ollama"
META = Meta(id="chatcmpl-ol1", created=1751920939, model="llama3.2")
golden = partial(check_golden, "ollama")

# HTTP status each recorded error body came with (error-docs.json is the documented generic 500 body).
ERROR_STATUS = {"error-502-upstream.json": 502, "error-docs.json": 500}


def _fixture_names(pattern: str) -> list[str]:
    return sorted(p.name for p in FIXTURES.glob(pattern))


def _events(data: bytes, pieces: list[bytes] | None = None) -> list:
    return events(FRAMERS[ol.STREAM_DECODER](), pieces if pieces is not None else [data])


def _run_stream(events) -> list[dict]:
    """Hub chunks of a stream, and a final {"error": {...}} record if the translator raised."""
    out: list[dict] = []
    try:
        for chunk in from_upstream(ol, events, META):
            out.append(chunk)
    except ProxyError as e:
        out.append({"error": {"status": e.status, "message": e.message}})
    return out


def _jsonl(chunks: list[dict]) -> bytes:
    return b"".join(orjson.dumps(c) + b"\n" for c in chunks)


# ------------------------------------------------------------------ golden fixtures


def test_every_fixture_has_a_golden_test():
    covered = set(_fixture_names("nonstream-*.json")) | set(_fixture_names("stream-*.ndjson")) | set(ERROR_STATUS)
    assert covered == {p.name for p in FIXTURES.iterdir()}


@pytest.mark.parametrize("name", _fixture_names("nonstream-*.json"))
def test_golden_nonstream(name):
    hub = ol.response_from_upstream(orjson.loads((FIXTURES / name).read_bytes()), META)
    golden(name, orjson.dumps(hub, option=orjson.OPT_INDENT_2) + b"\n")


@pytest.mark.parametrize("name", _fixture_names("stream-*.ndjson"))
def test_golden_stream(name):
    chunks = _run_stream(_events((FIXTURES / name).read_bytes()))
    golden(name.replace(".ndjson", ".jsonl"), _jsonl(chunks))


@pytest.mark.parametrize("name", sorted(ERROR_STATUS))
def test_golden_error(name):
    err = ol.error_from_upstream(ERROR_STATUS[name], (FIXTURES / name).read_bytes())
    record = {"status": err.status, "message": err.message, "type": err.type}
    golden(name, orjson.dumps(record, option=orjson.OPT_INDENT_2) + b"\n")


@pytest.mark.parametrize("name", _fixture_names("stream-*.ndjson"))
def test_stream_split_at_every_byte(name):
    data = (FIXTURES / name).read_bytes()
    want = _jsonl(_run_stream(_events(data)))
    for cut in range(1, len(data)):
        assert _jsonl(_run_stream(_events(data, [data[:cut], data[cut:]]))) == want, cut
    one_by_one = [data[i : i + 1] for i in range(len(data))]
    assert _jsonl(_run_stream(_events(data, one_by_one))) == want


def test_golden_facts():
    """Spot checks of what the golden files must say (so a regenerated golden cannot hide a bug)."""
    hub = ol.response_from_upstream(orjson.loads((FIXTURES / "nonstream-thinking-tool-call-cloud.json").read_bytes()), META)
    choice = hub["choices"][0]
    assert choice["finish_reason"] == "tool_calls"  # no done_reason at all, tool call present
    assert choice["message"]["content"] is None
    assert choice["message"]["reasoning_content"].startswith("The user wants")
    assert choice["message"]["tool_calls"] == [
        {"id": "call_chatcmpl-ol1_0", "type": "function", "function": {"name": "search", "arguments": '{"query":"ollama bash lib"}'}}
    ]
    assert hub["usage"]["prompt_tokens"] == 129 and hub["usage"]["completion_tokens"] == 47
    hub = ol.response_from_upstream(orjson.loads((FIXTURES / "nonstream-tool-call.json").read_bytes()), META)
    assert hub["choices"][0]["finish_reason"] == "tool_calls"  # done_reason "stop" + tool_calls
    hub = ol.response_from_upstream(orjson.loads((FIXTURES / "nonstream-after-tool-result-docs.json").read_bytes()), META)
    assert hub["choices"][0]["message"] == {"role": "assistant", "content": "The current temperature in Toronto is 11°C."}
    assert hub["usage"]["total_tokens"] == 105


def test_stream_facts():
    chunks = _run_stream(_events((FIXTURES / "stream-text-tail.ndjson").read_bytes()))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c.get("choices")) == " these times of day."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 10
    assert chunks[-1]["usage"]["completion_tokens"] == 239
    chunks = _run_stream(_events((FIXTURES / "stream-tool-call-docs.ndjson").read_bytes()))
    assert chunks[1]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_chatcmpl-ol1_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}}
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    chunks = _run_stream(_events((FIXTURES / "stream-error-midstream-docs.ndjson").read_bytes()))
    assert chunks[-1] == {"error": {"status": 502, "message": "an error was encountered while running the model"}}
    chunks = _run_stream(_events((FIXTURES / "stream-tool-call-blog-excerpt.ndjson").read_bytes()))
    assert chunks[-1]["error"]["status"] == 502  # the excerpt has no done:true line: a truncated stream


def test_stream_variants():
    lines = [
        {"model": "m", "message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_up", "function": {"index": 0, "name": "a", "arguments": {}}},
            {"function": {"name": "b", "arguments": {"x": [1]}}}]}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "length"},
    ]
    chunks = _run_stream(_events(b"".join(orjson.dumps(x) + b"\n" for x in lines)))
    assert chunks[1]["choices"][0]["delta"] == {"reasoning_content": "hmm"}
    assert chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"] == "call_up"
    assert chunks[3]["choices"][0]["delta"]["tool_calls"][0] == {
        "index": 1, "id": "call_chatcmpl-ol1_1", "type": "function", "function": {"name": "b", "arguments": '{"x":[1]}'}}
    assert chunks[4]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[5]["usage"]["prompt_tokens"] == 0 and chunks[5]["usage"]["completion_tokens"] == 0
    chunks = _run_stream(_events(orjson.dumps(lines[2]) + b"\n"))
    assert chunks[1]["choices"][0]["finish_reason"] == "length"
    for reason in ("load", "unload", None):
        final = {"done": True, "done_reason": reason, "message": {"role": "assistant", "content": ""}}
        chunks = _run_stream(_events(orjson.dumps(final)))
        assert chunks[1]["choices"][0]["finish_reason"] == "stop"
    chunks = _run_stream(_events(b'{"error":"boom"}\n'))
    assert chunks == [{"error": {"status": 502, "message": "boom"}}]  # nothing emitted before the error


# ------------------------------------------------------------------ hub -> Ollama requests


def _up(hub, stream=False):
    path, body = ol.request_to_upstream(hub, "llama3.2:3b", stream)
    assert path == "/api/chat"
    return body


def _raises(fn, *args, status=400) -> ProxyError:
    with pytest.raises(ProxyError) as info:
        fn(*args)
    assert info.value.status == status
    return info.value


def test_request_basic_and_stream_always_sent():
    hub = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    assert _up(hub) == {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    assert _up(hub, stream=True)["stream"] is True


def test_request_system_developer_and_turns():
    body = _up({"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": None, "reasoning_content": "thought"},
        {"role": "system", "content": "late"},
    ]})
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "a\nb"},
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},  # same-role runs stay separate: Ollama allows them
        {"role": "assistant", "content": "", "thinking": "thought"},
        {"role": "system", "content": "late"},
    ]


def test_request_images():
    body = _up({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "low"}},
    ]}]})
    assert body["messages"] == [{"role": "user", "content": "what is this?", "images": ["iVBORw0KGgo=", "/9j/4AAQ"]}]
    err = _raises(_up, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
    assert "inline images" in err.message and err.param == "messages[0].content[0].image_url"
    _raises(_up, {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})


def test_request_tools_and_tool_results():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}}}]
    hub = {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "11°C"}]},
    ], "tools": tools}
    body = _up(hub)
    assert body["tools"] == tools
    assert body["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
        {"id": "call_2", "function": {"name": "get_time", "arguments": {}}}]}
    assert body["messages"][2] == {"role": "tool", "content": "noon", "tool_name": "get_time", "tool_call_id": "call_2"}
    assert body["messages"][3] == {"role": "tool", "content": "11°C", "tool_name": "get_weather", "tool_call_id": "call_1"}
    for choice in ("auto", "required", {"type": "function", "function": {"name": "get_weather"}}):
        assert _up({**hub, "tool_choice": choice})["tools"] == tools
    assert "tools" not in _up({**hub, "tool_choice": "none"})
    bad = {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]}
    err = _raises(_up, bad)
    assert err.param == "messages[0].tool_calls[0].function.arguments"
    bad["messages"][0]["tool_calls"][0]["function"]["arguments"] = "[1]"
    _raises(_up, bad)
    _raises(_up, {"messages": [], "tools": [{"type": "custom", "custom": {"name": "x"}}]})


def test_request_format_options_think():
    base = {"messages": [{"role": "user", "content": "x"}]}
    assert _up({**base, "response_format": {"type": "json_object"}})["format"] == "json"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    rf = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": True}}
    assert _up({**base, "response_format": rf})["format"] == schema
    assert "format" not in _up({**base, "response_format": {"type": "text"}})
    body = _up({**base, "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END", "seed": 7,
                "presence_penalty": 0.1, "frequency_penalty": 0.3, "parallel_tool_calls": False, "user": "u"})
    assert body["options"] == {"num_predict": 50, "temperature": 0.2, "top_p": 0.9, "stop": ["END"], "seed": 7,
                               "presence_penalty": 0.1, "frequency_penalty": 0.3}
    assert set(body) == {"model", "messages", "stream", "options"}
    assert _up({**base, "max_tokens": 50, "max_completion_tokens": 80, "stop": ["a", "b"]})["options"] == {
        "num_predict": 80, "stop": ["a", "b"]}
    for effort, think in (("low", "low"), ("medium", "medium"), ("high", "high"), ("none", False), ("minimal", False)):
        assert _up({**base, "reasoning_effort": effort})["think"] == think
    _raises(_up, {**base, "reasoning_effort": "extreme"})
    _raises(_up, {**base, "n": 2})


# ------------------------------------------------------------------ errors and embeddings


def test_error_bodies():
    err = ol.error_from_upstream(404, b'{"error":"model \'nope\' not found"}')
    assert (err.status, err.message, err.type) == (404, "model 'nope' not found", "not_found_error")
    err = ol.error_from_upstream(400, b'{"error":"\\"m\\" does not support thinking"}')
    assert (err.status, err.message) == (400, '"m" does not support thinking')
    assert ol.error_from_upstream(500, b"Internal Server Error\n").message == "Internal Server Error"
    assert ol.error_from_upstream(503, b"").message == "Ollama answered HTTP 503 with an empty body"


def test_embeddings():
    assert ol.embeddings_to_upstream({"input": "hi", "model": "x"}, "nomic") == ("/api/embed", {"model": "nomic", "input": "hi"})
    assert ol.embeddings_to_upstream({"input": ["a", "b"], "dimensions": 8}, "nomic")[1] == {
        "model": "nomic", "input": ["a", "b"], "dimensions": 8}
    _raises(ol.embeddings_to_upstream, {"input": [[1, 2]]}, "nomic")
    out = ol.embeddings_from_upstream({"model": "nomic", "embeddings": [[0.1, 0.2], [0.3, 0.4]], "prompt_eval_count": 6}, META)
    assert out["object"] == "list" and out["model"] == "llama3.2"
    assert out["data"][1] == {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]}
    assert out["usage"]["prompt_tokens"] == 6 and out["usage"]["total_tokens"] == 6


# ------------------------------------------------------------------ front door: Ollama client -> hub

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 8).decode()
GIF = base64.b64encode(b"GIF89a" + b"\0" * 8).decode()
WEBP = base64.b64encode(b"RIFF\0\0\0\0WEBPVP8 ").decode()


def test_request_from_client():
    hub = ol.request_from_client({
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "look", "images": [PNG, JPEG, GIF, WEBP, "AAAA"]},
            {"role": "assistant", "content": "", "thinking": "t", "tool_calls": [
                {"function": {"name": "a", "arguments": {"x": 1}}},
                {"function": {"name": "b", "arguments": {}}},
                {"id": "up_id", "function": {"name": "a", "arguments": {"x": 2}}}]},
            {"role": "tool", "tool_name": "b", "content": "B"},
            {"role": "tool", "content": "A1"},
            {"role": "tool", "tool_name": "a", "tool_call_id": "up_id", "content": "A2"},
        ],
        "tools": [{"type": "function", "function": {"name": "a"}}],
        "format": "json",
        "options": {"num_predict": 10, "temperature": 0, "top_p": 0.5, "top_k": 40, "stop": ["x"], "seed": 1, "num_ctx": 4096},
        "think": "high",
        "keep_alive": "5m",
    })
    assert hub["stream"] is True and hub["stream_options"] == {"include_usage": True}
    assert hub["model"] == "llama3.2" and hub["response_format"] == {"type": "json_object"}
    assert (hub["max_tokens"], hub["temperature"], hub["top_p"], hub["stop"], hub["seed"]) == (10, 0, 0.5, ["x"], 1)
    assert "top_k" not in hub and hub["reasoning_effort"] == "high"
    assert hub["tools"] == [{"type": "function", "function": {"name": "a"}}]
    m = hub["messages"]
    assert m[0] == {"role": "system", "content": "sys"}
    mimes = [p["image_url"]["url"].split(";")[0] for p in m[1]["content"][1:]]
    assert m[1]["content"][0] == {"type": "text", "text": "look"}
    assert mimes == ["data:image/png", "data:image/jpeg", "data:image/gif", "data:image/webp", "data:image/png"]
    assert m[1]["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    assert m[2] == {"role": "assistant", "content": None, "reasoning_content": "t", "tool_calls": [
        {"id": "call_2_0", "type": "function", "function": {"name": "a", "arguments": '{"x":1}'}},
        {"id": "call_2_1", "type": "function", "function": {"name": "b", "arguments": "{}"}},
        {"id": "up_id", "type": "function", "function": {"name": "a", "arguments": '{"x":2}'}}]}
    assert [x["tool_call_id"] for x in m[3:]] == ["call_2_1", "call_2_0", "up_id"]  # by name, then by order, then by id


def test_request_from_client_defaults_and_errors():
    hub = ol.request_from_client({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False,
                                  "format": {"type": "object"}, "think": False, "options": {"num_predict": -1}})
    assert hub == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False,
                   "response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}},
                   "reasoning_effort": "none"}
    assert ol.request_from_client({"model": "m", "messages": [], "think": True})["reasoning_effort"] == "medium"
    for body, param in (
        ({"messages": []}, "model"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"model": "m", "messages": [{"role": "bot", "content": ""}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": "", "images": [1]}]}, "messages[0].images"),
        ({"model": "m", "messages": [], "stream": "yes"}, "stream"),
        ({"model": "m", "messages": [], "options": {"temperature": "hot"}}, "options.temperature"),
        ({"model": "m", "messages": [], "options": {"num_predict": True}}, "options.num_predict"),
        ({"model": "m", "messages": [], "format": "xml"}, "format"),
        ({"model": "m", "messages": [], "think": "very"}, "think"),
        ({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]},
         "messages[0].tool_calls[0].function.arguments"),
    ):
        err = _raises(ol.request_from_client, body)
        assert err.param == param, body


def test_request_from_generate():
    hub = ol.request_from_generate({"model": "m", "prompt": "why?", "system": "sys", "images": [JPEG],
                                    "stream": False, "options": {"temperature": 1}, "raw": True})
    assert hub == {"model": "m", "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "why?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}}]}],
        "stream": False, "temperature": 1}
    assert ol.request_from_generate({"model": "m", "prompt": "p"})["messages"] == [{"role": "user", "content": "p"}]
    _raises(ol.request_from_generate, {"model": "m", "prompt": "def f(", "suffix": "return x"})


# ------------------------------------------------------------------ front door: hub -> Ollama client

HUB_TOOL_RESPONSE = {
    "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "reasoning_content": "need weather",
        "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}}]}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
}


def test_response_to_client():
    out = ol.response_to_client(HUB_TOOL_RESPONSE, META)
    assert out == {
        "model": "llama3.2", "created_at": "2025-07-07T20:42:19Z",
        "message": {"role": "assistant", "content": "", "thinking": "need weather", "tool_calls": [
            {"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}}]},
        "done": True, "done_reason": "stop", "total_duration": 0, "load_duration": 0, "prompt_eval_count": 12,
        "prompt_eval_duration": 0, "eval_count": 5, "eval_duration": 0,
    }
    hub = {"choices": [{"message": {"role": "assistant", "content": "abc"}, "finish_reason": "length"}],
           "usage": {"prompt_tokens": 1, "completion_tokens": 2}, "durations_ns": {"total_duration": 99, "eval_duration": 9}}
    gen = ol.response_to_generate(hub, META)
    assert gen["response"] == "abc" and "message" not in gen and gen["done_reason"] == "length"
    assert (gen["total_duration"], gen["eval_duration"], gen["load_duration"]) == (99, 9, 0)


@pytest.mark.parametrize("name", _fixture_names("nonstream-*.json"))
def test_nonstream_round_trip(name):
    """Ollama answer -> hub -> Ollama answer keeps message, reason and counts."""
    orig = orjson.loads((FIXTURES / name).read_bytes())
    back = ol.response_to_client(ol.response_from_upstream(orig, META), META)
    want_calls = [tc["function"] for tc in orig["message"].get("tool_calls", [])]
    assert [{"name": tc["function"]["name"], "arguments": tc["function"]["arguments"]}
            for tc in back["message"].get("tool_calls", [])] == want_calls
    for key in ("content", "thinking"):
        assert back["message"].get(key) == orig["message"].get(key)
    assert back["done_reason"] == orig.get("done_reason", "stop")
    assert (back["prompt_eval_count"], back["eval_count"]) == (orig["prompt_eval_count"], orig["eval_count"])


def _encode(chunks, writer=ol.ToClient) -> list[dict]:
    """The NDJSON objects a writer makes of ``chunks``: each piece whole lines, each line one object."""
    pieces = list(to_client(writer(META), chunks))
    assert all(piece.endswith(b"\n") for piece in pieces)
    lines = b"".join(pieces).split(b"\n")[:-1]
    assert all(lines)
    return [orjson.loads(line) for line in lines]


def _c(delta, finish=None):
    return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


HUB_TOOL_STREAM = [
    _c({"role": "assistant", "content": ""}),
    _c({"reasoning_content": "think"}),
    _c({"content": "Let me check."}),
    _c({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
    _c({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    _c({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
    _c({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Tokyo"}'}}]}),
    _c({}, "tool_calls"),
    {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
     "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}},
]


def test_stream_to_client():
    lines = _encode(HUB_TOOL_STREAM)
    assert [x["message"] for x in lines[:-1]] == [
        {"role": "assistant", "content": "", "thinking": "think"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}},
            {"id": "call_b", "function": {"index": 1, "name": "get_time", "arguments": {}}}]},
    ]
    assert all(x["done"] is False and x["created_at"] == "2025-07-07T20:42:19Z" and x["model"] == "llama3.2"
               for x in lines[:-1])
    assert lines[-1] == {"model": "llama3.2", "created_at": "2025-07-07T20:42:19Z",
                         "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                         "total_duration": 0, "load_duration": 0, "prompt_eval_count": 20, "prompt_eval_duration": 0,
                         "eval_count": 7, "eval_duration": 0}
    gen = _encode(HUB_TOOL_STREAM, ol.ToGenerate)
    assert [x.get("response") for x in gen] == ["", "Let me check.", "", ""]
    assert gen[0]["thinking"] == "think" and gen[-1]["prompt_eval_count"] == 20
    bad = [_c({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a":'}}]}), _c({}, "tool_calls")]
    with pytest.raises(ProxyError) as info:
        _encode(bad)
    assert info.value.status == 502


@pytest.mark.parametrize("name", ["stream-text-tail.ndjson", "stream-tool-call-docs.ndjson"])
def test_stream_round_trip(name):
    """Ollama stream -> hub -> Ollama stream: same text, tool calls, reason and counts."""
    orig = [orjson.loads(e.data) for e in _events((FIXTURES / name).read_bytes())]
    back = _encode(_run_stream(_events((FIXTURES / name).read_bytes())))
    assert "".join(x["message"]["content"] for x in back) == "".join(x["message"]["content"] for x in orig)
    calls = lambda xs: [tc["function"]["arguments"] for x in xs for tc in x["message"].get("tool_calls", [])]  # noqa: E731
    assert calls(back) == calls(orig)
    for key in ("done", "done_reason", "prompt_eval_count", "eval_count"):
        assert back[-1][key] == orig[-1][key]


def test_error_encoding():
    err = ProxyError(404, "model 'x' not found")
    assert ol.error_body(err) == b'{"error":"model \'x\' not found"}'
    assert ol.stream_error(err) == b'{"error":"model \'x\' not found"}\n'


# ------------------------------------------------------------------ the official ollama SDK reads our output

HUB_TEXT_RESPONSE = {
    "id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello there."}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
HUB_TEXT_STREAM = [_c({"role": "assistant", "content": ""}), _c({"content": "Hel"}), _c({"content": "lo."}), _c({}, "stop"),
                   {"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}]


SEEN = web.AppKey("seen", list)


async def _serve(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    generate = request.path == "/api/generate"
    try:
        hub = (ol.request_from_generate if generate else ol.request_from_client)(body)
    except ProxyError as e:
        return web.Response(status=e.status, body=ol.error_body(e), content_type="application/json")
    request.app[SEEN].append(hub)
    wants_tools = bool(hub.get("tools"))
    if not hub["stream"]:
        hub_resp = HUB_TOOL_RESPONSE if wants_tools else HUB_TEXT_RESPONSE
        encode = ol.response_to_generate if generate else ol.response_to_client
        return web.Response(body=orjson.dumps(encode(hub_resp, META)), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    chunks = HUB_TOOL_STREAM if wants_tools else HUB_TEXT_STREAM
    for piece in to_client((ol.ToGenerate if generate else ol.ToClient)(META), chunks):
        await resp.write(piece)
    if body.get("options", {}).get("seed") == 666:  # a mid-stream failure after the answer
        await resp.write(ol.stream_error(ProxyError(502, "backend went away")))
    await resp.write_eof()
    return resp


@pytest.fixture
async def sdk(aiohttp_server):
    ollama = pytest.importorskip("ollama")
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/api/chat", _serve)
    app.router.add_post("/api/generate", _serve)
    server = await aiohttp_server(app, host="127.0.0.1", port=0)
    client = ollama.AsyncClient(host=f"http://127.0.0.1:{server.port}")
    yield ollama, client, app[SEEN]
    await client._client.aclose()  # the SDK has no public close; an unclosed httpx client warns


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


async def test_sdk_chat(sdk):
    ollama, client, seen = sdk
    r = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert r.message.content == "Hello there." and r.done and r.done_reason == "stop"
    assert (r.prompt_eval_count, r.eval_count) == (3, 2)
    parts = [p async for p in await client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True)]
    assert "".join(p.message.content for p in parts) == "Hello." and parts[-1].done and parts[-1].eval_count == 2
    assert [h["stream"] for h in seen] == [False, True]  # the SDK always sends stream explicitly


async def test_sdk_tools(sdk):
    ollama, client, seen = sdk
    messages = [{"role": "user", "content": "weather in Tokyo?"}]
    r = await client.chat(model="llama3.2", messages=messages, tools=TOOLS, stream=False, think=True)
    assert r.message.thinking == "need weather"
    call = r.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Tokyo"}
    parts = [p async for p in await client.chat(model="llama3.2", messages=messages, tools=TOOLS, stream=True)]
    calls = [tc for p in parts for tc in (p.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Tokyo"}), ("get_time", {})]
    assert parts[-1].done and parts[-1].prompt_eval_count == 20
    # the tool loop continues: the SDK sends tool_name only (no id); the front door pairs it with the call
    messages += [r.message, {"role": "tool", "tool_name": "get_weather", "content": "11°C"}]
    await client.chat(model="llama3.2", messages=messages, tools=TOOLS, stream=False)
    hub = seen[-1]
    assert hub["messages"][1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}
    assert hub["messages"][2]["tool_call_id"] == hub["messages"][1]["tool_calls"][0]["id"]


async def test_sdk_generate_and_errors(sdk):
    ollama, client, seen = sdk
    r = await client.generate(model="llama3.2", prompt="hi", system="sys", stream=False)
    assert r.response == "Hello there." and r.done and r.eval_count == 2
    parts = [p async for p in await client.generate(model="llama3.2", prompt="hi", stream=True)]
    assert "".join(p.response for p in parts) == "Hello." and parts[-1].done_reason == "stop"
    assert seen[0]["messages"][0] == {"role": "system", "content": "sys"}
    with pytest.raises(ollama.ResponseError) as info:
        await client.generate(model="llama3.2", prompt="x", suffix="y", stream=False)
    assert info.value.status_code == 400 and info.value.error.startswith("suffix:")
    with pytest.raises(ollama.ResponseError) as info:
        async for _ in await client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}],
                                         options={"seed": 666}, stream=True):
            pass
    assert info.value.error == "backend went away"
