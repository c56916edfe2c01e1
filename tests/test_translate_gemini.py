"""Gemini translator: golden pairs for every recorded fixture, split-byte replays, request shape, front door.

Regenerate the golden files with ``LLMPROXY_REGEN_GOLDEN=1 pytest tests/test_translate_gemini.py`` and
review the diff by hand.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import orjson
import pytest

from conftest import check_golden, from_upstream, to_client
from llmproxy.errors import ProxyError
from llmproxy.mock import gemini as mock_gemini
from llmproxy.sse import Event, JSONArrayFramer, SSEFramer, events
from llmproxy.translate import Meta
from llmproxy.translate import gemini as g

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
GOLDEN = Path(__file__).parent / "golden" / "gemini"
META = Meta(id="chatcmpl-gem1", created=1700000000, model="gemini-test")
golden = partial(check_golden, "gemini")
# HTTP status each error fixture was recorded with (from its name).
ERROR_STATUS = {"error-400-api-key-invalid.json": 400, "error-400-array-wrapped.json": 400,
                "error-429-resource-exhausted.json": 429, "error-429-retry-info.json": 429}


def fixture_names(prefix: str = "", suffix: str = "") -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix))


STREAMS = fixture_names(suffix=".sse") + fixture_names("stream-no-alt-sse") + fixture_names(suffix=".chunks.jsonl")


def stream_bytes(name: str) -> tuple[bytes, type]:
    """The fixture's wire bytes and decoder; Vertex chunk lists are framed as Gemini SSE."""
    raw = (FIXTURES / name).read_bytes()
    if name.endswith(".chunks.jsonl"):
        return b"".join(b"data: " + line + b"\r\n\r\n" for line in raw.splitlines() if line.strip()), SSEFramer
    return raw, (JSONArrayFramer if name.endswith(".json") else SSEFramer)


def decode(pieces: list[bytes], framer: type) -> list[Event]:
    return events(framer(), pieces)


def translate(events: list[Event]) -> bytes:
    """Hub chunks as JSONL bytes; a raised ProxyError becomes a last ``{"error": …}`` line."""
    lines = []
    try:
        for chunk in from_upstream(g, events, META):
            lines.append(orjson.dumps(chunk))
    except ProxyError as exc:
        lines.append(orjson.dumps({"error": {"status": exc.status, "message": exc.message}}))
    return b"\n".join(lines) + b"\n"


def as_json(obj) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n"


def error_dict(exc: ProxyError) -> dict:
    return {"status": exc.status, "message": exc.message, "type": exc.type, "code": exc.code,
            "retry_after": exc.retry_after}


# ----------------------------------------------------------------------------- golden pairs


def test_every_fixture_has_a_golden_test():
    covered = set(STREAMS) | set(fixture_names("nonstream-")) | set(ERROR_STATUS) | set(fixture_names("request-"))
    assert covered == {p.name for p in FIXTURES.iterdir()}


@pytest.mark.parametrize("name", STREAMS)
def test_stream_golden(name):
    raw, dec = stream_bytes(name)
    golden(name.rsplit(".", 2 if name.endswith(".chunks.jsonl") else 1)[0] + ".jsonl",
                 translate(decode([raw], dec)))


@pytest.mark.parametrize("name", STREAMS)
def test_stream_split_everywhere(name):
    raw, dec = stream_bytes(name)
    whole = decode([raw], dec)
    expected = translate(whole)
    for cut in range(1, len(raw)):
        events = decode([raw[:cut], raw[cut:]], dec)
        assert events == whole, f"split at byte {cut}"
    assert translate(decode([raw[i : i + 1] for i in range(len(raw))], dec)) == expected
    # Every split gives the same events; translate a spread of them end to end too.
    for cut in range(1, len(raw), max(1, len(raw) // 50)):
        assert translate(decode([raw[:cut], raw[cut:]], dec)) == expected


@pytest.mark.parametrize("name", fixture_names("nonstream-"))
def test_nonstream_golden(name):
    body = orjson.loads((FIXTURES / name).read_bytes())
    golden(name, as_json(g.response_from_upstream(body, META)))


@pytest.mark.parametrize("name", sorted(ERROR_STATUS))
def test_error_golden(name):
    err = g.error_from_upstream(ERROR_STATUS[name], (FIXTURES / name).read_bytes())
    golden(name, as_json(error_dict(err)))


@pytest.mark.parametrize("name", fixture_names("request-"))
def test_request_fixture_golden(name):
    """Recorded Gemini requests -> hub (front door) -> Gemini again (backend)."""
    hub = mock_gemini.request_from_client(orjson.loads((FIXTURES / name).read_bytes()))
    path, body = g.request_to_upstream(hub, "gemini-2.5-flash", False)
    golden(name, as_json({"hub": hub, "path": path, "body": body}))


# ----------------------------------------------------------------------------- stream specifics


def test_golden_content_by_hand():
    """The facts the golden files must encode, asserted directly so a regenerated golden cannot hide a bug."""
    def chunks(name):
        return [orjson.loads(line) for line in (GOLDEN / name).read_bytes().splitlines()]

    fc = chunks("stream-function-call.jsonl")
    assert fc[1]["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "id": "call_chatcmpl-gem1_0", "type": "function",
                                                          "function": {"name": "get_capital", "arguments": '{"country":"France"}'}}]
    assert fc[2]["choices"][0]["finish_reason"] == "tool_calls"
    assert fc[3]["usage"]["prompt_tokens"] == 52 and fc[3]["usage"]["completion_tokens"] == 5

    sig = chunks("stream-function-call-thought-signature.jsonl")
    call = sig[1]["choices"][0]["delta"]["tool_calls"][0]
    assert call["extra_content"]["google"]["thought_signature"].startswith("EpwICpkIAXLI2nxl")
    assert len(sig) == 4 and sig[2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    assert sig[3]["usage"]["completion_tokens"] == 212 and sig[3]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 202

    usage = chunks("stream-usage-every-chunk.jsonl")[-1]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 133
    assert sum(1 for c in chunks("stream-usage-every-chunk.jsonl") if "usage" in c) == 1
    text = chunks("stream-text.jsonl")
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in text if c["choices"]) == "The capital of France is Paris.\n"
    assert text[-1]["usage"]["prompt_tokens"] == 13  # the last snapshot wins (15, 15, 13)

    thinking = chunks("stream-thinking.jsonl")
    assert thinking[1]["choices"][0]["delta"]["reasoning_content"].startswith("**Clarifying User Goals**")
    assert thinking[-2]["choices"][0]["finish_reason"] == "stop"
    assert thinking[-1]["usage"]["completion_tokens"] == 469 + 787

    vertex = chunks("vertex-stream-partial-args.jsonl")
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in vertex if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert [c.get("id") for c in calls] == ["call_chatcmpl-gem1_0", None, "call_chatcmpl-gem1_1", None]
    assert [c["function"]["arguments"] for c in calls] == ["", '{"location":"Boston"}', "", '{"location":"San Francisco"}']
    assert vertex[-2]["choices"][0]["finish_reason"] == "tool_calls"

    arr = chunks("stream-no-alt-sse-json-array.jsonl")
    assert arr[1]["choices"][0]["delta"]["reasoning_content"].startswith("**Generating Pelican Names**")
    assert arr[2]["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "pelican_name_generator", "arguments": "{}"}
    assert arr[-1]["usage"] == {"prompt_tokens": 32, "completion_tokens": 54, "total_tokens": 86,
                                "prompt_tokens_details": {"cached_tokens": 0},
                                "completion_tokens_details": {"reasoning_tokens": 42}}


def test_stream_eof_without_finish_reason_is_502():
    raw = (FIXTURES / "stream-text.sse").read_bytes()
    events = decode([raw], SSEFramer)[:2]
    out = []
    with pytest.raises(ProxyError) as exc:
        for chunk in from_upstream(g, events, META):
            out.append(chunk)
    assert exc.value.status == 502 and "finishReason" in exc.value.message
    assert [c["choices"][0]["delta"] for c in out] == [{"role": "assistant", "content": ""}, {"content": "The"},
                                                       {"content": " capital of France"}]


def test_empty_stream_is_502():
    with pytest.raises(ProxyError) as exc:
        for _ in from_upstream(g, [], META):
            pass
    assert exc.value.status == 502


def test_array_wrapped_error_inside_json_array_stream():
    events = decode([(FIXTURES / "error-400-array-wrapped.json").read_bytes()], JSONArrayFramer)
    with pytest.raises(ProxyError) as exc:
        for _ in from_upstream(g, events, META):
            pass
    assert exc.value.status == 400 and exc.value.message == "API key not valid. Please pass a valid API key."


def test_error_element_after_chunks_in_json_array_stream():
    raw = (b'[{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"}}]}\n,\n'
           b'{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}\n]')
    out = []
    with pytest.raises(ProxyError) as exc:
        for chunk in from_upstream(g, decode([raw], JSONArrayFramer), META):
            out.append(chunk)
    assert (exc.value.status, exc.value.message) == (503, "The model is overloaded.")
    assert out[-1]["choices"][0]["delta"] == {"content": "Hi"}


def test_stream_prompt_blocked_and_safety():
    blocked = [Event(None, b'{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}')]
    out = list(from_upstream(g, blocked, META))
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert out[1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "content_filter"}
    assert out[2]["usage"]["prompt_tokens"] == 7
    for reason, want in [("SAFETY", "content_filter"), ("IMAGE_SAFETY", "content_filter"), ("SPII", "content_filter"),
                         ("MAX_TOKENS", "length"), ("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop")]:
        ev = [Event(None, orjson.dumps({"candidates": [{"content": {}, "finishReason": reason}]}))]
        out = list(from_upstream(g, ev, META))
        assert out[-1]["choices"][0]["finish_reason"] == want and len(out) == 2  # no usage reported -> no usage chunk


def test_stream_two_candidates_and_parallel_calls():
    ev = [Event(None, orjson.dumps({"candidates": [
        {"index": 0, "content": {"parts": [{"functionCall": {"name": "a", "args": {"x": 1}}},
                                           {"functionCall": {"name": "b"}}]}, "finishReason": "STOP"},
        {"index": 1, "content": {"parts": [{"text": "two"}]}, "finishReason": "STOP"}]}))]
    out = list(from_upstream(g, ev, META))
    deltas = [(c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in out]
    assert deltas[1][1]["tool_calls"][0]["id"] == "call_chatcmpl-gem1_0"
    assert deltas[2][1]["tool_calls"][0] == {"index": 1, "id": "call_chatcmpl-gem1_1", "type": "function",
                                             "function": {"name": "b", "arguments": "{}"}}
    assert deltas[3] == (1, {"role": "assistant", "content": ""}, None)
    assert deltas[-2:] == [(0, {}, "tool_calls"), (1, {}, "stop")]


def test_partial_args_nested_paths_and_eof_close():
    fc = [{"functionCall": {"name": "f", "willContinue": True}},
          {"functionCall": {"partialArgs": [{"jsonPath": "$.a.b", "stringValue": "he", "willContinue": True}], "willContinue": True}},
          {"functionCall": {"partialArgs": [{"jsonPath": "$.a.b", "stringValue": "llo"},
                                            {"jsonPath": "$.n", "numberValue": 3}, {"jsonPath": "$.l[0]", "boolValue": True},
                                            {"jsonPath": "$['q k']", "nullValue": None}, {"jsonPath": "bogus", "stringValue": "x"}],
                            "willContinue": True}}]
    ev = [Event(None, orjson.dumps({"candidates": [{"content": {"parts": [p]}}]})) for p in fc]
    ev.append(Event(None, b'{"candidates":[{"content":{"parts":[]},"finishReason":"STOP"}]}'))
    out = list(from_upstream(g, ev, META))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in out if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert orjson.loads(calls[1]["function"]["arguments"]) == {"a": {"b": "hello"}, "n": 3, "l": [True], "q k": None}
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"


# ----------------------------------------------------------------------------- non-stream specifics


def test_nonstream_shapes():
    fc = g.response_from_upstream(orjson.loads((FIXTURES / "nonstream-function-call.json").read_bytes()), META)
    msg = fc["choices"][0]["message"]
    assert msg["content"] is None and fc["choices"][0]["finish_reason"] == "tool_calls"
    assert msg["tool_calls"][0]["function"] == {"name": "get_capital", "arguments": '{"country":"France"}'}
    assert msg["tool_calls"][0]["extra_content"]["google"]["thought_signature"].startswith("CpYEAXLI")
    assert fc["usage"]["completion_tokens"] == 15 + 124 and fc["usage"]["total_tokens"] == 196
    blocked = g.response_from_upstream(orjson.loads((FIXTURES / "nonstream-prompt-blocked-vertex.json").read_bytes()), META)
    assert blocked["choices"] == [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter"}]
    safety = g.response_from_upstream(orjson.loads((FIXTURES / "nonstream-safety-blocked.json").read_bytes()), META)
    assert safety["choices"][0]["finish_reason"] == "content_filter" and safety["usage"]["prompt_tokens"] == 14
    cached = g.response_from_upstream({"candidates": [{"content": {"parts": [{"text": "t", "thought": True}, {"text": "a"}]}}],
                                       "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60,
                                                         "toolUsePromptTokenCount": 5, "candidatesTokenCount": 3}}, META)
    assert cached["choices"][0]["message"] == {"role": "assistant", "content": "a", "reasoning_content": "t"}
    assert cached["usage"]["prompt_tokens"] == 105 and cached["usage"]["prompt_tokens_details"]["cached_tokens"] == 60


# ----------------------------------------------------------------------------- errors


def test_error_statuses():
    e = g.error_from_upstream(429, (FIXTURES / "error-429-retry-info.json").read_bytes())
    assert (e.status, e.retry_after, e.type) == (429, 34.4, "rate_limit_error")
    e = g.error_from_upstream(400, (FIXTURES / "error-400-api-key-invalid.json").read_bytes())
    assert (e.status, e.message, e.code) == (400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
    for rpc, status in [("UNAVAILABLE", 503), ("DEADLINE_EXCEEDED", 504), ("NOT_FOUND", 404), ("INTERNAL", 500),
                        ("PERMISSION_DENIED", 403), ("FAILED_PRECONDITION", 400)]:
        body = orjson.dumps({"error": {"message": "m", "status": rpc}})
        assert g.error_from_upstream(status, body).status == status
        assert g.error_from_upstream(200, body).status == status  # inside a 200 stream: from the rpc status
    e = g.error_from_upstream(502, b"<html>Bad Gateway</html>")
    assert e.status == 502 and "Bad Gateway" in e.message


# ----------------------------------------------------------------------------- request translation


def up(hub, model="gemini-2.5-flash", stream=False):
    return g.request_to_upstream(hub, model, stream)


def test_paths_and_model_names():
    hub = {"messages": [{"role": "user", "content": "hi"}]}
    assert up(hub)[0] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert up(hub, stream=True)[0] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert up(hub, "models/gemini-2.0-flash-001")[0] == "/v1beta/models/gemini-2.0-flash-001:generateContent"
    assert up(hub, "tunedModels/my_model-1")[0] == "/v1beta/tunedModels/my_model-1:generateContent"
    assert g.embeddings_to_upstream({"input": "x"}, "models/text-embedding-004")[0] == \
        "/v1beta/models/text-embedding-004:batchEmbedContents"


@pytest.mark.parametrize("model", [
    "../files", "gemini/../../v1/files", "a/../b", "gemini%2F..%2Ffiles", "gemini-pro:streamGenerateContent",
    "gemini?key=stolen", "gemini#frag", "gemini pro", "gemini\n", "gemini\r\nHost: evil", "gemini\x00", "",
    "models/", "models/../x", "models/a/b", "tunedModels/a:b", "corpora/x", "/gemini", "gemini/", ".hidden",
    "..", "gemini\\..\\x", "ｇｅｍｉｎｉ", "gemini\u2028", "a" * 129, None, 5,
])
def test_hostile_model_names_rejected(model):
    with pytest.raises(ProxyError) as exc:
        up({"messages": [{"role": "user", "content": "hi"}]}, model)
    assert exc.value.status == 400 and exc.value.param == "model" and "model" in exc.value.message
    if isinstance(model, str) and model:
        assert repr(model)[:20] in exc.value.message
    with pytest.raises(ProxyError):
        g.embeddings_to_upstream({"input": "x"}, model)


def test_system_roles_and_merging():
    _, body = up({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": None},  # empty turn dropped
        {"role": "assistant", "content": "d"},
        {"role": "user", "content": ""},
        {"role": "user", "content": "e"},
    ]})
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                                {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
                                {"role": "user", "parts": [{"text": "e"}]}]
    assert "generationConfig" not in body and "tools" not in body


def test_images():
    _, body = up({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.JPG?size=2#x", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/image"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/doc.pdf"}},
        {"type": "text", "text": "What is this?"}]}]})
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=2#x"}},
        {"fileData": {"mimeType": "image/*", "fileUri": "https://example.com/image"}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}},
        {"text": "What is this?"}]
    for bad in ["file:///etc/passwd", "javascript:alert(1)", "data:,nomime", ""]:
        with pytest.raises(ProxyError) as exc:
            up({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": bad}}]}]})
        assert exc.value.status == 400
    with pytest.raises(ProxyError):
        up({"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]})


def test_tools_and_tool_choice():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
        "properties": {"city": {"type": "string", "title": "City", "examples": ["Paris"]},
                       "unit": {"enum": ["c", "f"], "default": "c"}},
        "required": ["city"]}}},
             {"type": "function", "function": {"name": "now"}}]
    _, body = up({"messages": [{"role": "user", "content": "hi"}], "tools": tools})
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather.", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"], "type": "string"}},
            "required": ["city"]}},
        {"name": "now"}]}]
    assert "toolConfig" not in body
    for choice, want in [("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
                         ({"type": "function", "function": {"name": "now"}}, {"mode": "ANY", "allowedFunctionNames": ["now"]})]:
        _, body = up({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": choice})
        assert body["toolConfig"] == {"functionCallingConfig": want}
    with pytest.raises(ProxyError):
        up({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "sometimes"})
    with pytest.raises(ProxyError):
        up({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "web_search"}]})


def test_schema_cleaning():
    schema = {
        "$defs": {"Pt": {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0}},
                         "additionalProperties": False},
                  "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "type": "object",
        "properties": {
            "pt": {"$ref": "#/$defs/Pt", "description": "A point"},
            "node": {"$ref": "#/$defs/Node"},
            "maybe": {"anyOf": [{"type": "string", "format": "email"}, {"type": "null"}], "default": None},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 1, "maximum": 9}]},
            "tags": {"type": "array", "items": {"type": "string", "const": "a"}, "minItems": 1},
            "when": {"type": ["string", "null"], "format": "date-time"},
            "n": {"type": "integer", "enum": [1, 2, None]},
            "free": {},
            "list": {"type": "array"},
            "both": {"allOf": [{"$ref": "#/$defs/Pt"}, {"properties": {"y": {"type": "number"}}, "required": ["y"]}]},
            "weird": {"type": 7, "properties": "nope", "required": "x"},
        },
        "required": ["pt", "missing"],
    }
    assert g.clean_schema(schema) == {"type": "object", "properties": {
        "pt": {"type": "object", "properties": {"x": {"type": "number"}}, "description": "A point"},
        "node": {"type": "object", "properties": {"next": {"type": "object"}}},
        "maybe": {"type": "string", "nullable": True},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1, "maximum": 9}]},
        "tags": {"type": "array", "minItems": 1, "items": {"enum": ["a"], "type": "string"}},
        "when": {"type": "string", "format": "date-time", "nullable": True},
        "n": {"type": "integer", "description": "Allowed values: 1, 2", "nullable": True},
        "free": {"type": "string"},
        "list": {"type": "array", "items": {"type": "string"}},
        "both": {"type": "object", "properties": {"y": {"type": "number"}, "x": {"type": "number"}}, "required": ["y"]},
        "weird": {"type": "object"},
    }, "required": ["pt"]}
    for junk in [None, True, [], "x", {"$ref": "#"}, {"$ref": "http://x"}, {"type": ["null"]}, {"anyOf": "x"}]:
        out = g.clean_schema(junk)  # never raises
        assert isinstance(out, dict)
    deep: dict = {}
    node = deep
    for _ in range(500):
        node["items"] = {"type": "array"}
        node = node["items"]
    assert isinstance(g.clean_schema(deep), dict)


def test_tool_calls_results_and_signatures():
    sig = {"google": {"thought_signature": "SIG=="}}
    _, body = up({"messages": [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}, "extra_content": sig},
            {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 30}'},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "weather", "arguments": "{}"}},
                                             {"type": "function", "function": {"name": "time", "arguments": "{}"}}]},
        {"role": "tool", "content": [{"type": "text", "text": "[1, 2]"}]},  # no id: matched by order
        {"role": "tool", "content": "late"},
        {"role": "user", "content": "thanks"},
    ]})
    assert body["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "SIG=="},
        {"functionCall": {"name": "time", "args": {}}}]}
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "time", "response": {"result": "12:00"}}},
        {"functionResponse": {"name": "weather", "response": {"temp": 30}}}]}
    assert body["contents"][4] == {"role": "user", "parts": [
        {"functionResponse": {"name": "weather", "response": {"result": "[1, 2]"}}},
        {"functionResponse": {"name": "time", "response": {"result": "late"}}},
        {"text": "thanks"}]}
    _, body = up({"messages": [  # an empty assistant message between call and result keeps the order match
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "assistant", "content": None},
        {"role": "tool", "content": "1"}]})
    assert body["contents"][2]["parts"] == [{"functionResponse": {"name": "f", "response": {"result": "1"}}}]
    with pytest.raises(ProxyError) as exc:
        up({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}]})
    assert "nope" in exc.value.message
    with pytest.raises(ProxyError):
        up({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]})


def test_generation_config():
    _, body = up({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "max_completion_tokens": 20,
                  "temperature": 0.2, "top_p": 0.9, "stop": "END", "seed": 7, "n": 2, "presence_penalty": 0.1,
                  "frequency_penalty": 0.3, "response_format": {"type": "json_object"}, "reasoning_effort": "low",
                  "parallel_tool_calls": False, "user": "u1", "stream_options": {"include_usage": True}})
    assert body["generationConfig"] == {
        "maxOutputTokens": 20, "temperature": 0.2, "topP": 0.9, "seed": 7, "candidateCount": 2,
        "presencePenalty": 0.1, "frequencyPenalty": 0.3, "stopSequences": ["END"],
        "responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    _, body = up({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stop": ["a", "b"],
                  "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
                  "reasoning_effort": "none"})
    assert body["generationConfig"] == {"maxOutputTokens": 5, "stopSequences": ["a", "b"],
                                        "responseMimeType": "application/json", "responseJsonSchema": schema,
                                        "thinkingConfig": {"thinkingBudget": 0}}
    for effort, budget in [("minimal", 1024), ("medium", 8192), ("high", 24576)]:
        assert up({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort})[1][
            "generationConfig"]["thinkingConfig"] == {"thinkingBudget": budget, "includeThoughts": True}
    with pytest.raises(ProxyError):
        up({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"})


def test_bad_request_shapes():
    for hub in [{}, {"messages": []}, {"messages": "hi"}, {"messages": [1]}, {"messages": [{"role": "robot", "content": "x"}]},
                {"messages": [{"role": "system", "content": "only system"}]},
                {"messages": [{"role": "user", "content": 5}]}]:
        with pytest.raises(ProxyError) as exc:
            up(hub)
        assert exc.value.status == 400


# ----------------------------------------------------------------------------- embeddings


def test_embeddings():
    path, body = g.embeddings_to_upstream({"input": ["a", "b"], "dimensions": 256}, "text-embedding-004")
    assert path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert body == {"requests": [
        {"model": "models/text-embedding-004", "outputDimensionality": 256, "content": {"parts": [{"text": "a"}]}},
        {"model": "models/text-embedding-004", "outputDimensionality": 256, "content": {"parts": [{"text": "b"}]}}]}
    assert g.embeddings_to_upstream({"input": "one"}, "gemini-embedding-001")[1] == {
        "requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "one"}]}}]}
    for bad in [{"input": []}, {"input": [[1, 2]]}, {"input": "x", "dimensions": 0}, {}]:
        with pytest.raises(ProxyError):
            g.embeddings_to_upstream(bad, "text-embedding-004")
    out = g.embeddings_from_upstream({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3]}]}, META)
    assert out == {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
                                              {"object": "embedding", "index": 1, "embedding": [0.3]}],
                   "model": "gemini-test", "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                                                     "prompt_tokens_details": {"cached_tokens": 0},
                                                     "completion_tokens_details": {"reasoning_tokens": 0}}}


# ----------------------------------------------------------------------------- front door (llmproxy mock)


def test_request_from_client_round_trip():
    gemini_req = {
        "contents": [
            {"role": "user", "parts": [{"text": "Look:"}, {"inlineData": {"mimeType": "image/png", "data": "AAA="}}]},
            {"role": "model", "parts": [{"text": "hmm", "thought": True}, {"functionCall": {"name": "f", "args": {"a": 1}},
                                                                         "thoughtSignature": "S1"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": "ok"}}}]},
        ],
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "tools": [{"functionDeclarations": [{"name": "f", "description": "F", "parameters": {
            "type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
        "generationConfig": {"maxOutputTokens": 9, "temperature": 0.5, "stopSequences": ["x"], "responseMimeType": "application/json",
                             "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True}},
        "model": "gemini-test",
    }
    hub = mock_gemini.request_from_client(gemini_req)
    assert hub["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}}]},
        {"role": "assistant", "content": None, "reasoning_content": "hmm", "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'},
             "extra_content": {"google": {"thought_signature": "S1"}}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "ok"}]
    assert hub["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert hub["tools"][0]["function"]["parameters"] == {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert (hub["model"], hub["max_completion_tokens"], hub["reasoning_effort"]) == ("gemini-test", 9, "medium")
    _, back = g.request_to_upstream(hub, "gemini-test", False)
    assert back["contents"][0] == gemini_req["contents"][0]
    assert back["contents"][1]["parts"] == [gemini_req["contents"][1]["parts"][1]]  # thoughts are not sent back
    assert back["contents"][2] == gemini_req["contents"][2]
    assert back["systemInstruction"] == gemini_req["systemInstruction"]
    for bad in [{"contents": "x"}, {"contents": []}, {"contents": [{"role": "user", "parts": "x"}]},
                {"contents": [{"role": "user", "parts": [{"video": 1}]}]}, {"contents": [{"parts": []}], "tools": {}}]:
        with pytest.raises(ProxyError) as exc:
            mock_gemini.request_from_client(bad)
        assert exc.value.status == 400


def test_response_to_client_round_trip():
    for name in fixture_names("nonstream-"):
        body = orjson.loads((FIXTURES / name).read_bytes())
        hub = g.response_from_upstream(body, META)
        again = g.response_from_upstream(mock_gemini.response_to_client(hub, META), META)
        assert again == hub, name
    out = mock_gemini.response_to_client(g.response_from_upstream(orjson.loads((FIXTURES / "nonstream-function-call.json").read_bytes()), META), META)
    assert out["candidates"][0]["finishReason"] == "STOP"
    assert out["usageMetadata"] == {"promptTokenCount": 57, "candidatesTokenCount": 15, "totalTokenCount": 196,
                                    "thoughtsTokenCount": 124}


@pytest.mark.parametrize("name", STREAMS)
def test_stream_to_client_round_trip(name):
    """Hub chunks -> Gemini SSE bytes -> decoded again gives the same text, reasoning, calls, finish and usage."""
    raw, dec = stream_bytes(name)
    hub = [orjson.loads(line) for line in (translate(decode([raw], dec))).splitlines()]
    wire = list(to_client(mock_gemini.ToClient(META), hub))
    assert all(w.startswith(b"data: {") and w.endswith(b"}\r\n\r\n") for w in wire)
    again = [orjson.loads(line) for line in (translate(decode([b"".join(wire)], SSEFramer))).splitlines()]

    def summary(chunks):
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        thoughts = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"])
        calls: dict = {}
        for c in chunks:
            for tc in (c["choices"][0]["delta"].get("tool_calls") or []) if c["choices"] else []:
                entry = calls.setdefault(tc["index"], {"args": ""})
                entry.update({k: tc[k] for k in ("id", "extra_content") if k in tc})
                entry["name"] = tc["function"].get("name") or entry.get("name")
                entry["args"] += tc["function"].get("arguments") or ""
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
        return text, thoughts, calls, finish, [c["usage"] for c in chunks if "usage" in c]

    assert summary(again) == summary(hub)


def test_error_body_and_stream_error_round_trip():
    err = ProxyError(429, "slow down", retry_after=34.4)
    body = mock_gemini.error_body(err)
    assert orjson.loads(body) == {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
                                            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                         "retryDelay": "34.4s"}]}}
    back = g.error_from_upstream(429, body)
    assert (back.status, back.message, back.retry_after) == (429, "slow down", 34.4)
    event = mock_gemini.stream_error(ProxyError(503, "overloaded"))
    assert event.startswith(b"data: ") and event.endswith(b"\r\n\r\n")
    (ev,) = decode([event], SSEFramer)
    assert orjson.loads(ev.data)["error"]["status"] == "UNAVAILABLE"
