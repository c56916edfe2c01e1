"""The Responses translator: what a relay reads of a recorded OpenAI stream (at every split); golden
Responses streams and answers made from every other provider's recorded traffic (through its own
translator to the hub), re-split at every byte; requests to the hub; the SDK reading what we write.

Regenerate the golden files with ``LLMPROXY_REGEN_GOLDEN=1 pytest tests/test_translate_responses.py``
(then read the diff: a golden file that encodes a bug is worse than none).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import openai
import orjson
import pytest
from aiohttp import web

from conftest import check_golden, fixture_bytes, from_upstream, sse_wire, to_client
from llmproxy.errors import ProxyError
from llmproxy.sse import FRAMERS, SSEFramer, events
from llmproxy.translate import Meta
from llmproxy.translate import anthropic as A
from llmproxy.translate import gemini as G
from llmproxy.translate import ollama as OL
from llmproxy.translate import openai as O
from llmproxy.translate import responses as R
from llmproxy.translate.common import hub_chunk, synth_tool_call_id
from llmproxy.translate.responses.shared import decode_state, encode_state

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
    assert (usage.prompt, usage.completion, usage.reasoning) == (53, 469, 448)
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


# ================================================================== the translator: hub -> Responses, Responses -> hub


golden = partial(check_golden, "responses")
META = Meta("resp_test", 1700000000, "model-test")
REQUEST = {"model": "m", "input": "hi", "tools": [
    {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}},
    {"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    {"type": "namespace", "name": "agents", "description": "Sub-agents.", "tools": [{"type": "function", "name": "spawn", "parameters": {}}]},
    {"type": "web_search"}]}
BACKENDS = {"openai": O, "anthropic": A, "gemini": G, "ollama": OL}
# Recorded streams of every other provider, read by its own translator: what the Responses door gets from the hub.
HUB_STREAMS = ["openai/stream-text-usage.sse", "openai/stream-tool-call-usage.sse", "anthropic/stream-thinking.sse",
               "anthropic/stream-tool-use-docs.sse", "anthropic/stream-redacted-thinking.sse",
               "anthropic/stream-parallel-tool-use-empty-args.sse", "anthropic/stream-max-tokens-japanese.sse",
               "gemini/stream-function-call-thought-signature.sse", "gemini/stream-thinking.sse",
               "ollama/stream-tool-call-docs.ndjson", "ollama/stream-text-tail.ndjson"]
HUB_ANSWERS = ["openai/nonstream-tool-call.json", "anthropic/nonstream-text-and-tool-use.json", "anthropic/nonstream-cache-usage.json",
               "gemini/nonstream-function-call.json", "ollama/nonstream-thinking-tool-call-cloud.json"]
REQUESTS = sorted(p.name for p in FIXTURES.glob("request-*.json"))


def pretty(obj: object) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n"


def golden_name(fixture: str, suffix: str) -> str:
    return fixture.replace("/", "-").rsplit(".", 1)[0] + suffix


def hub_chunks(fixture: str, pieces: list[bytes] | None = None) -> list[dict]:
    mod = BACKENDS[fixture.split("/")[0]]
    framed = events(FRAMERS[mod.STREAM_DECODER](), pieces or [fixture_bytes(fixture)])
    return list(from_upstream(mod, framed, META))


def responses_events(chunks: list[dict], request: dict = REQUEST) -> list[dict]:
    writer = R.Events(META, request)
    return [e for c in chunks for e in writer.chunk(c)] + writer.end()


def sse_of(evs: list[dict]) -> bytes:
    return b"".join(R.event_bytes(e) for e in evs)


@pytest.mark.parametrize("fixture", HUB_STREAMS)
async def test_stream_golden(fixture: str) -> None:
    chunks = hub_chunks(fixture)
    evs = responses_events(chunks)
    golden(golden_name(fixture, ".events.sse"), sse_of(evs))
    assert b"".join(to_client(R.ToClient(META, REQUEST), chunks)) == sse_of(evs)
    check_grammar(evs)


@pytest.mark.parametrize("fixture", [f for f in HUB_STREAMS if len(fixture_bytes(f)) <= 6000])
async def test_stream_split_at_every_byte(fixture: str) -> None:
    """The upstream bytes cut in two at every boundary: the same Responses stream comes out."""
    raw = fixture_bytes(fixture)
    whole = responses_events(hub_chunks(fixture))
    for i in range(1, len(raw)):
        assert responses_events(hub_chunks(fixture, [raw[:i], raw[i:]])) == whole, i


def check_grammar(evs: list[dict]) -> None:
    """The order the SDK's stream helper and Codex rely on: numbered events, one item open at a time, each closed."""
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert [e["type"] for e in evs[:2]] == ["response.created", "response.in_progress"]
    assert evs[-1]["type"] in ("response.completed", "response.incomplete")
    open_item, done = None, []
    for e in evs[2:-1]:
        if e["type"] == "response.output_item.added":
            assert open_item is None and e["output_index"] == len(done)
            open_item = e["item"]
        elif e["type"] == "response.output_item.done":
            assert e["item"]["id"] == open_item["id"] and e["item"]["type"] == open_item["type"]
            done.append(e["item"])
            open_item = None
        else:
            assert open_item is not None and e["item_id"] == open_item["id"] and e["output_index"] == len(done), e
    assert open_item is None and evs[-1]["response"]["output"] == done


@pytest.mark.parametrize("fixture", HUB_ANSWERS)
def test_nonstream_golden(fixture: str) -> None:
    mod = BACKENDS[fixture.split("/")[0]]
    hub = mod.response_from_upstream(orjson.loads(fixture_bytes(fixture)), META)
    golden(golden_name(fixture, ".response.json"), pretty(R.response_to_client(hub, META, REQUEST)))


async def test_nonstream_is_what_the_stream_ends_with() -> None:
    hub = A.response_from_upstream(orjson.loads(fixture_bytes("anthropic/nonstream-text-and-tool-use.json")), META)
    message = hub["choices"][0]["message"]
    chunks = [hub_chunk(META, {"role": "assistant", "content": message["content"]}),
              hub_chunk(META, {"tool_calls": [{"index": 0, **message["tool_calls"][0]}]}),
              hub_chunk(META, {}, "tool_calls"), hub_chunk(META, None, usage=hub["usage"])]
    assert responses_events(chunks)[-1]["response"] == R.response_to_client(hub, META, REQUEST)


# ---------------------------------------------------------------- scripted hub chunks: every kind of item


HUB_USAGE = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
             "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5}, "completion_tokens_details": {"reasoning_tokens": 4}}
SCRIPTED = [
    hub_chunk(META, {"role": "assistant", "content": ""}),
    hub_chunk(META, {"reasoning_content": "Think"}), hub_chunk(META, {"reasoning_content": "ing."}),
    hub_chunk(META, {"thinking_blocks": [{"type": "thinking", "thinking": "Thinking.", "signature": "SIG"}]}),
    hub_chunk(META, {"thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}]}),
    hub_chunk(META, {"content": "Hel"}), hub_chunk(META, {"content": "lo"}),
    hub_chunk(META, {"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
    hub_chunk(META, {"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
    hub_chunk(META, {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
    hub_chunk(META, {"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "extra_content": {"google": {"thought_signature": "GSIG"}},
                                     "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\\n\"}"}}]}),
    hub_chunk(META, {"tool_calls": [{"index": 2, "type": "function", "function": {"name": "agents__spawn", "arguments": "{}"}}]}),
    hub_chunk(META, {}, "tool_calls"),
    hub_chunk(META, None, usage=HUB_USAGE),
]


async def test_scripted_stream_every_item_kind() -> None:
    evs = responses_events(SCRIPTED)
    check_grammar(evs)
    golden("scripted.events.sse", sse_of(evs))
    final = evs[-1]["response"]
    kinds = [(o["type"], o["id"]) for o in final["output"]]
    assert kinds == [("reasoning", "rs_test_0"), ("reasoning", "rs_test_1"), ("message", "msg_test_2"), ("function_call", "fc_test_3"),
                     ("reasoning", "rs_test_4"), ("custom_tool_call", "ctc_test_5"), ("function_call", "fc_test_6")]
    thinking, redacted, message, weather, signature, patch, spawn = final["output"]
    assert thinking["summary"] == [{"type": "summary_text", "text": "Thinking."}]
    assert decode_state(thinking["encrypted_content"]) == {"thinking_blocks": [{"type": "thinking", "thinking": "Thinking.", "signature": "SIG"}]}
    assert redacted["summary"] == [] and decode_state(redacted["encrypted_content"])["thinking_blocks"][0]["data"] == "opaque"
    assert message["content"][0]["text"] == "Hello" and message["status"] == "completed"
    assert (weather["call_id"], weather["name"], weather["arguments"]) == ("call_a", "get_weather", '{"location":"Paris"}')
    assert decode_state(signature["encrypted_content"]) == {"tool_extra": {"call_b": {"google": {"thought_signature": "GSIG"}}}}
    assert (patch["call_id"], patch["name"], patch["input"]) == ("call_b", "apply_patch", "*** Begin Patch\n")
    assert (spawn["name"], spawn["namespace"], spawn["call_id"]) == ("spawn", "agents", synth_tool_call_id(META.id, 2))
    assert final["usage"] == {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
                              "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 42}
    assert final["tools"] == REQUEST["tools"] and final["status"] == "completed"


async def test_stream_cut_short_is_incomplete_and_empty_stream_completes() -> None:
    evs = responses_events([hub_chunk(META, {"content": "x"}), hub_chunk(META, {}, "length")])
    assert evs[-1]["type"] == "response.incomplete"
    assert evs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert evs[-1]["response"]["output"][0]["status"] == "incomplete"
    evs = responses_events([])
    assert [e["type"] for e in evs] == ["response.created", "response.in_progress", "response.completed"]
    assert evs[-1]["response"]["output"] == [] and evs[-1]["response"]["usage"] is None


async def test_stream_refuses_interleaved_tool_fragments() -> None:
    chunks = [hub_chunk(META, {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]}),
              hub_chunk(META, {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
              hub_chunk(META, {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})]
    with pytest.raises(ProxyError):
        responses_events(chunks)


def test_failed_events() -> None:
    response = {"id": "resp_test", "object": "response", "status": "in_progress", "output": []}
    item = {"id": "msg_test_0", "type": "message"}
    error, failed = R.failed_events(response, [item], 7, ProxyError(502, "backend 'x' broke off the response"))
    assert error == {"type": "error", "sequence_number": 8, "error": {"message": "backend 'x' broke off the response",
                                                                     "type": "upstream_error", "param": None, "code": None}}
    assert failed["type"] == "response.failed" and failed["sequence_number"] == 9
    assert failed["response"]["error"] == {"code": "server_error", "message": "backend 'x' broke off the response"}
    assert failed["response"]["output"] == [item] and failed["response"]["status"] == "failed"
    assert R.failed_events(response, [], 0, ProxyError(429, "slow"))[1]["response"]["error"]["code"] == "rate_limit_exceeded"


# ---------------------------------------------------------------- Responses request -> hub


@pytest.mark.parametrize("name", REQUESTS)
def test_request_golden(name: str) -> None:
    golden(name, pretty(R.request_from_client(orjson.loads((FIXTURES / name).read_bytes()))))


def hub_of(**body) -> dict:  # noqa: ANN003
    return R.request_from_client({"model": "m", **body})


def test_request_instructions_developer_and_parts() -> None:
    hub = hub_of(instructions="Be brief.", input=[
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rules."}]},
        {"role": "system", "content": "More rules."},
        {"role": "user", "content": [{"type": "input_text", "text": "Look:"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "high"},
                                     {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "only text"}]}])
    assert hub["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "system", "content": "Rules."}, {"role": "system", "content": "More rules."},
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "high"}},
                                     {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}}]},
        {"role": "user", "content": "only text"}]
    assert hub_of(input="hi", stream=True)["messages"] == [{"role": "user", "content": "hi"}]
    assert hub_of(input="hi", stream=True)["stream_options"] == {"include_usage": True}


def test_request_a_turn_of_items_is_one_assistant_message() -> None:
    """Codex sends the model's items back as they came: reasoning, commentary, calls; then the outputs."""
    ours = R.response_to_client({"choices": [{"message": {"role": "assistant", "content": None, "thinking_blocks": [
        {"type": "thinking", "thinking": "hmm", "signature": "SIG"}]}, "finish_reason": "stop"}]}, META, REQUEST)["output"][0]
    hub = hub_of(input=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
        ours,
        {"type": "reasoning", "id": "rs_openai", "summary": [], "encrypted_content": "gAAAAABo-openai-only"},
        {"type": "message", "role": "assistant", "id": "msg_1", "content": [{"type": "output_text", "text": "Looking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call", "call_id": "call_3", "name": "spawn", "namespace": "agents", "arguments": ""},
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "Done"},
                                                                          {"type": "input_image", "image_url": "https://x/shot.png"}]},
        {"type": "function_call_output", "call_id": "call_3", "output": "spawned"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Fixed."}]}])
    assert hub["messages"] == [
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": "Looking.", "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "SIG"}],
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}},
                        {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\"}"}},
                        {"id": "call_3", "type": "function", "function": {"name": "agents__spawn", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Done"},
        {"role": "tool", "tool_call_id": "call_3", "content": "spawned"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/shot.png"}}]},
        {"role": "assistant", "content": "Fixed."}]


def test_request_gemini_signature_goes_back_with_its_call() -> None:
    state = encode_state({"tool_extra": {"call_g": {"google": {"thought_signature": "GSIG"}}}})
    hub = hub_of(input=[{"role": "user", "content": "q"}, {"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": state},
                        {"type": "function_call", "call_id": "call_g", "name": "f", "arguments": "{}"},
                        {"type": "function_call_output", "call_id": "call_g", "output": "ok"}])
    assert hub["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_g", "type": "function", "function": {"name": "f", "arguments": "{}"}, "extra_content": {"google": {"thought_signature": "GSIG"}}}]}


def test_request_history_comes_first() -> None:
    history = [{"type": "message", "role": "user", "content": "first"},
               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "one"}]}]
    hub = R.request_from_client({"model": "m", "instructions": "New rules.", "input": "second"}, history)
    assert hub["messages"] == [{"role": "system", "content": "New rules."}, {"role": "user", "content": "first"},
                               {"role": "assistant", "content": "one"}, {"role": "user", "content": "second"}]


def test_request_tools_and_choices() -> None:
    hub = hub_of(input="x", tools=REQUEST["tools"], tool_choice={"type": "custom", "name": "apply_patch"}, parallel_tool_calls=False)
    names = [t["function"]["name"] for t in hub["tools"]]
    assert names == ["get_weather", "apply_patch", "agents__spawn"]  # web_search: hosted, dropped
    patch = hub["tools"][1]["function"]
    assert patch["parameters"]["required"] == ["input"] and "lark grammar:\nstart: /.+/" in patch["description"]
    assert hub["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}} and hub["parallel_tool_calls"] is False
    assert hub_of(input="x", tools=REQUEST["tools"], tool_choice={"type": "web_search"})["tool_choice"] == "auto"
    assert hub_of(input="x", tools=REQUEST["tools"], tool_choice={"type": "allowed_tools", "mode": "required", "tools": []})["tool_choice"] == "required"
    only_hosted = hub_of(input="x", tools=[{"type": "web_search"}], tool_choice="required", parallel_tool_calls=True)
    assert "tools" not in only_hosted and "tool_choice" not in only_hosted and "parallel_tool_calls" not in only_hosted
    assert R.dropped({"tools": REQUEST["tools"] + [{"type": "tool_search", "execution": "client"}],
                      "input": [{"type": "web_search_call"}, {"type": "web_search_call"}, {"type": "tool_search_output"}]}) == [
        "tools tool_search, web_search", "items tool_search_output, web_search_call×2"]
    assert R.dropped({"tools": [REQUEST["tools"][0]], "input": "hi"}) == []


def test_request_parameters() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}
    hub = hub_of(input="x", max_output_tokens=300, temperature=0.3, top_p=0.9, user="u1", reasoning={"effort": "high", "summary": "auto"},
                 text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}, "verbosity": "low"},
                 store=False, include=["reasoning.encrypted_content"], prompt_cache_key="k", metadata={"a": "b"},
                 service_tier="flex", truncation="auto")
    assert hub == {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 300, "temperature": 0.3,
                   "top_p": 0.9, "user": "u1", "reasoning_effort": "high",
                   "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}}
    assert hub_of(input="x", text={"format": {"type": "json_object"}})["response_format"] == {"type": "json_object"}
    assert "response_format" not in hub_of(input="x", text={"format": {"type": "text"}})


@pytest.mark.parametrize("body, param", [
    ({"background": True}, "background"), ({"conversation": "conv_1"}, "conversation"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"type": "message", "role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0]"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
    ({"input": [{"type": "mystery_item"}]}, "input[0].type"),
    ({"input": ["just a string"]}, "input[0]"),
    ({"input": "x", "tools": [{"type": "function"}]}, "tools[0]"),
    ({"input": "x", "tools": [REQUEST["tools"][0]], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
])
def test_request_refusals_name_the_field(body: dict, param: str) -> None:
    with pytest.raises(ProxyError) as e:
        hub_of(**body)
    assert (e.value.status, e.value.param) == (400, param)


def test_codex_request() -> None:
    """What Codex CLI sends (recorded): what crosses is in the golden file; what is left out, the row's note says."""
    body = orjson.loads((FIXTURES / "request-codex-tool-loop.json").read_bytes())
    assert R.dropped(body) == ["tools tool_search, web_search"]
    hub = R.request_from_client(body)
    assert [m["role"] for m in hub["messages"]] == ["system", "system", "user", "user", "assistant", "tool"]
    assert not {"store", "include", "prompt_cache_key", "client_metadata", "text"} & set(hub)
    assert (hub["parallel_tool_calls"], hub["tool_choice"], hub["reasoning_effort"]) == (True, "auto", "medium")


def test_portable_drops_only_our_reasoning() -> None:
    ours = {"type": "reasoning", "encrypted_content": encode_state({"thinking_blocks": []}), "summary": []}
    theirs = {"type": "reasoning", "encrypted_content": "gAAAA", "summary": []}
    assert R.portable([ours, theirs, {"type": "message"}]) == [theirs, {"type": "message"}]
    assert R.input_items({"input": "hi"}) == [{"type": "message", "role": "user", "content": "hi"}]


# ---------------------------------------------------------------- the official SDK reads what we write


@pytest.fixture
async def sdk_server(aiohttp_server):
    """A tiny Responses look-alike on 127.0.0.1 port 0 answering from scripted hub chunks."""
    served: dict = {}

    async def create(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        served["request"] = R.request_from_client(body)
        if not body.get("stream"):
            return web.json_response(R.response_to_client(served["answer"], META, body))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in to_client(R.ToClient(META, body), served["chunks"]):
            await resp.write(piece)
        for ev in served.get("then", ()):
            await resp.write(R.event_bytes(ev))
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/responses", create)
    server = await aiohttp_server(app)
    client = openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="test", max_retries=0)
    yield client, served
    await client.close()


async def test_sdk_stream_helper_accepts_every_item_kind(sdk_server) -> None:
    client, served = sdk_server
    served["chunks"] = SCRIPTED
    async with client.responses.stream(model="m", input="hi", tools=REQUEST["tools"]) as stream:
        kinds = [e.type async for e in stream]
        final = await stream.get_final_response()
    assert "response.output_text.delta" in kinds and "response.function_call_arguments.delta" in kinds
    assert [o.type for o in final.output] == ["reasoning", "reasoning", "message", "function_call", "reasoning", "custom_tool_call", "function_call"]
    assert final.output_text == "Hello" and final.output[5].input == "*** Begin Patch\n" and final.output[6].namespace == "agents"
    assert final.usage.input_tokens_details.cached_tokens == 10 and final.usage.output_tokens_details.reasoning_tokens == 4


@pytest.mark.parametrize("fixture", HUB_STREAMS)
async def test_sdk_stream_helper_accepts_round_tripped_fixture(sdk_server, fixture: str) -> None:
    client, served = sdk_server
    served["chunks"] = hub_chunks(fixture)
    async with client.responses.stream(model="m", input="hi", tools=REQUEST["tools"][:1]) as stream:
        events_seen = [e async for e in stream]
    final = events_seen[-1].response
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in served["chunks"] if c.get("choices"))
    assert final.output_text == text
    if fixture == "anthropic/stream-tool-use-docs.sse":
        assert orjson.loads(final.output[-1].arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}


async def test_sdk_create_streamed_and_not(sdk_server) -> None:
    client, served = sdk_server
    served["chunks"] = hub_chunks("openai/stream-tool-call-usage.sse")
    stream = await client.responses.create(model="m", input="hi", stream=True, tools=REQUEST["tools"][:1])
    evs = [e async for e in stream]
    assert evs[-1].type == "response.completed" and evs[-1].response.output[0].type == "function_call"
    served["answer"] = O.response_from_upstream(orjson.loads(fixture_bytes("openai/nonstream-tool-call.json")), META)
    answer = await client.responses.create(model="m", input="hi", tools=REQUEST["tools"][:1])
    assert answer.output[0].type == "function_call" and answer.usage.input_tokens > 0


async def test_sdk_raises_on_our_error_event(sdk_server) -> None:
    client, served = sdk_server
    served["chunks"] = [hub_chunk(META, {"content": "par"})]
    served["then"] = R.failed_events({"id": META.id}, [], 7, ProxyError(502, "backend 'x' broke off the response"))
    stream = await client.responses.create(model="m", input="hi", stream=True)
    with pytest.raises(openai.APIError, match="broke off"):
        async for _ in stream:
            pass


def test_relay_answer_usage_and_error_shape() -> None:
    answer = orjson.loads((FIXTURES / "nonstream-text.json").read_bytes())
    assert R.usage_of_answer(answer)["prompt_tokens"] == 14
    err = R.error_from_upstream(400, (FIXTURES / "error-400-invalid-temperature.json").read_bytes())
    assert (err.status, err.param, err.code) == (400, "temperature", "decimal_below_min_value")


def test_every_fixture_is_read_here() -> None:
    used = set(RELAY_STREAMS) | set(REQUESTS) | {"nonstream-text.json", "error-400-invalid-temperature.json"}
    assert used == {p.name for p in FIXTURES.iterdir()}
