"""The Responses door's answers: hub answer / hub chunks -> a Response object / its typed event stream; errors.

A stream is the sequence OpenAI sends and the ``openai`` SDK's stream helper checks, each event with
its ``sequence_number``::

    response.created, response.in_progress
    per output item, one at a time:  response.output_item.added ... response.output_item.done
      reasoning (hub reasoning_content):  reasoning_summary_part.added, reasoning_summary_text.delta…,
                                          reasoning_summary_text.done, reasoning_summary_part.done
      message (hub content):              content_part.added, output_text.delta…, output_text.done, content_part.done
                                          (hub refusal: refusal.delta…, refusal.done)
      function_call (hub tool_calls):     function_call_arguments.delta…, function_call_arguments.done
      custom_tool_call (a custom tool):   custom_tool_call_input.delta, custom_tool_call_input.done
    response.completed (or response.incomplete: finish "length" / "content_filter"), with usage

Item ids are the response id and the item's position (``msg_<id>_1``); a hub tool call keeps its id
as ``call_id``.  Reasoning the backend needs back rides in ``encrypted_content`` (see ``shared``).
A non-stream answer is the same Response object, built by the same code.  After the stream began,
a failure is an ``error`` event (its error nested, as OpenAI sends it) and ``response.failed``
(``failed_events``).  Nothing here reads a clock or makes an id up: all comes from ``meta``.
"""
from __future__ import annotations

from typing import Any

import orjson

from ...errors import ProxyError
from ...sse import sse_event
from ...usage import Usage
from ..common import FieldTypes, StreamWriter, check_types, require_model, synth_tool_call_id
from ..meta import Meta
from ..openai import error_body, error_dict
from .shared import ToolName, encode_state, item_id, tool_names

__all__ = ["Events", "ToClient", "check_request", "error_body", "event_bytes", "failed_events", "response_to_client",
           "stream_error", "usage_of_hub"]

_TYPES: FieldTypes = {
    "stream": ((bool,), "a boolean"),
    "store": ((bool,), "a boolean"),
    "background": ((bool,), "a boolean"),
    "input": ((str, list), "a string or an array of input items"),
    "instructions": ((str, list), "a string or an array of input items"),
    "previous_response_id": ((str,), "a string"),
    "tools": ((list,), "an array"),
    "include": ((list,), "an array"),
    "metadata": ((dict,), "an object"),
    "text": ((dict,), "an object"),
    "reasoning": ((dict,), "an object"),
    "max_output_tokens": ((int,), "an integer"),
    "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number"),
    "parallel_tool_calls": ((bool,), "a boolean"),
}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_FAILED_CODE = {429: "rate_limit_exceeded", 400: "invalid_prompt"}


def check_request(body: dict) -> dict:
    """What the door checks before routing: the model and the JSON types of the fields it reads (400 naming the field)."""
    require_model(body)
    check_types(body, _TYPES)
    return body


# ------------------------------------------------------------------ the Response object


def response_object(meta: Meta, request: dict, status: str, output: list, usage: dict | None = None) -> dict:
    """A Response with the request's settings echoed, as OpenAI answers it."""
    reasoning = request.get("reasoning") if isinstance(request.get("reasoning"), dict) else {}
    text = request.get("text") if isinstance(request.get("text"), dict) else {}
    return {
        "id": meta.id, "object": "response", "created_at": meta.created, "status": status, "background": False,
        "error": None, "incomplete_details": None, "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"), "max_tool_calls": request.get("max_tool_calls"),
        "model": meta.model, "output": output, "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"), "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": request.get("safety_identifier"), "service_tier": "default", "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0), "text": {**text, "format": text.get("format") or {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools") or [], "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"), "usage": usage, "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def usage_of_hub(usage: Any) -> dict | None:
    """Hub usage -> a Response's ``usage`` (input tokens include the cached ones, as OpenAI counts them)."""
    u = Usage.from_hub(usage) if isinstance(usage, dict) else None
    if u is None:
        return None
    return {"input_tokens": u.prompt, "input_tokens_details": {"cached_tokens": u.cached, "cache_write_tokens": u.cache_write},
            "output_tokens": u.completion, "output_tokens_details": {"reasoning_tokens": u.reasoning}, "total_tokens": u.total}


# ------------------------------------------------------------------ hub deltas -> output items and events


class _Output:
    """The output items of one answer, one open at a time, and the events that build them.

    One instance per answer, made inside ``Events`` / ``response_to_client``; nothing is
    shared between answers.
    """

    __slots__ = ("meta", "request", "tools", "seq", "done", "kind", "item", "text", "tool", "tools_seen", "state")

    def __init__(self, meta: Meta, request: dict) -> None:
        self.meta, self.request = meta, request
        self.tools: dict[str, ToolName] = tool_names(request.get("tools"))
        self.seq = 0
        self.done: list[dict] = []  # finished items, in order
        self.kind: str | None = None  # reasoning | message | refusal | function_call | custom_tool_call
        self.item: dict = {}
        self.text = ""  # the open item's text, arguments or input so far
        self.tool: int | None = None  # hub index of the open tool call
        self.tools_seen: set[int] = set()
        self.state: dict = {}  # the open reasoning item's state for encrypted_content

    def event(self, kind: str, **fields: Any) -> dict:
        ev = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return ev

    def start(self) -> list[dict]:
        response = response_object(self.meta, self.request, "in_progress", [])
        return [self.event("response.created", response=response), self.event("response.in_progress", response=response)]

    @property
    def index(self) -> int:
        return len(self.done)

    def _open(self, kind: str, prefix: str, **fields: Any) -> list[dict]:
        """Close the open item, open a new one (its id from its position) and announce it."""
        out = self.close()
        item = {"id": item_id(self.meta.id, prefix, self.index), **fields}
        self.kind, self.item, self.text, self.state = kind, item, "", {}
        return out + [self.event("response.output_item.added", output_index=self.index, item=item)]

    def _where(self) -> dict:
        return {"item_id": self.item["id"], "output_index": self.index}

    def delta(self, delta: dict) -> list[dict]:
        """One hub delta -> events (opening and closing items as the kind changes)."""
        out: list[dict] = []
        if delta.get("reasoning_content"):
            out += self._reasoning(delta["reasoning_content"])
        for block in delta.get("thinking_blocks") or ():
            if isinstance(block, dict):
                out += self._thinking_block(block)
        for kind, key in (("message", "content"), ("refusal", "refusal")):
            if delta.get(key):
                if self.kind != kind:
                    out += self._open_message(kind)
                self.text += delta[key]
                name = "response.output_text.delta" if kind == "message" else "response.refusal.delta"
                out.append(self.event(name, **self._where(), content_index=0, delta=delta[key], **({"logprobs": []} if kind == "message" else {})))
        for call in delta.get("tool_calls") or ():
            out += self._tool_call(call)
        return out

    def _reasoning(self, text: str) -> list[dict]:
        out: list[dict] = []
        if self.kind != "reasoning":
            out += self._open("reasoning", "rs", type="reasoning", summary=[])
        if not self.text:
            out.append(self.event("response.reasoning_summary_part.added", **self._where(), summary_index=0, part={"type": "summary_text", "text": ""}))
        self.text += text
        out.append(self.event("response.reasoning_summary_text.delta", **self._where(), summary_index=0, delta=text))
        return out

    def _thinking_block(self, block: dict) -> list[dict]:
        """A complete hub thinking block: it ends the reasoning item its text streamed into (or makes one)."""
        out: list[dict] = []
        if self.kind != "reasoning" or self.state.get("thinking_blocks"):
            out += self._open("reasoning", "rs", type="reasoning", summary=[])
            if block.get("type") == "thinking" and block.get("thinking"):
                out += self._reasoning(block["thinking"])
        self.state.setdefault("thinking_blocks", []).append(block)
        return out + self.close()

    def _open_message(self, kind: str) -> list[dict]:
        out = self._open(kind, "msg", type="message", status="in_progress", content=[], role="assistant")
        return out + [self.event("response.content_part.added", **self._where(), content_index=0, part=self._part(""))]

    def _part(self, text: str) -> dict:
        if self.kind == "refusal":
            return {"type": "refusal", "refusal": text}
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def _tool_call(self, call: dict) -> list[dict]:
        out: list[dict] = []
        k = call.get("index", 0)
        fn = call.get("function") or {}
        if self.tool != k or self.kind not in ("function_call", "custom_tool_call"):
            if k in self.tools_seen:
                raise ProxyError(502, f"tool call {k} continued after another item began; cannot re-open its output item")
            self.tools_seen.add(k)
            call_id = call.get("id") or synth_tool_call_id(self.meta.id, k)
            if call.get("extra_content"):  # Gemini's thought signature: back with the reasoning before the call
                if self.kind != "reasoning":
                    out += self._open("reasoning", "rs", type="reasoning", summary=[])
                self.state.setdefault("tool_extra", {})[call_id] = call["extra_content"]
            hub = fn.get("name") or ""
            tool = self.tools.get(hub) or ToolName("function", hub)
            ns = {"namespace": tool.namespace} if tool.namespace else {}
            if tool.kind == "function":
                out += self._open("function_call", "fc", type="function_call", status="in_progress", arguments="", call_id=call_id, name=tool.name, **ns)
            else:
                out += self._open("custom_tool_call", "ctc", type="custom_tool_call", input="", call_id=call_id, name=tool.name, **ns)
            self.tool = k
        args = fn.get("arguments")
        if args:
            args = args if isinstance(args, str) else orjson.dumps(args).decode()
            self.text += args
            if self.kind == "function_call":
                out.append(self.event("response.function_call_arguments.delta", **self._where(), delta=args))
        return out

    def close(self, finish: str | None = None) -> list[dict]:
        """Finish the open item: its closing events, then ``response.output_item.done``."""
        kind, item, text = self.kind, self.item, self.text
        if kind is None:
            return []
        where = self._where()
        out: list[dict] = []
        if kind == "reasoning":
            if text:
                part = {"type": "summary_text", "text": text}
                out.append(self.event("response.reasoning_summary_text.done", **where, summary_index=0, text=text))
                out.append(self.event("response.reasoning_summary_part.done", **where, summary_index=0, part=part))
                item = {**item, "summary": [part]}
            if self.state:
                item = {**item, "encrypted_content": encode_state(self.state)}
        elif kind in ("message", "refusal"):
            part = self._part(text)
            if kind == "message":
                out.append(self.event("response.output_text.done", **where, content_index=0, text=text, logprobs=[]))
            else:
                out.append(self.event("response.refusal.done", **where, content_index=0, refusal=text))
            out.append(self.event("response.content_part.done", **where, content_index=0, part=part))
            item = {**item, "status": "incomplete" if finish == "length" else "completed", "content": [part]}
        elif kind == "function_call":
            text = text or "{}"
            out.append(self.event("response.function_call_arguments.done", **where, arguments=text))
            item = {**item, "status": "completed", "arguments": text}
        else:  # custom_tool_call: the hub's {"input": "..."} arguments, unwrapped
            value = _custom_input(text)
            out.append(self.event("response.custom_tool_call_input.delta", **where, delta=value))
            out.append(self.event("response.custom_tool_call_input.done", **where, input=value))
            item = {**item, "input": value}
        out.append(self.event("response.output_item.done", output_index=self.index, item=item))
        self.done.append(item)
        self.kind, self.item, self.text, self.tool, self.state = None, {}, "", None, {}
        return out

    def finish(self, finish: str | None, usage: Any) -> dict:
        """The last event: ``response.completed``, or ``response.incomplete`` when the answer was cut short."""
        reason = _INCOMPLETE.get(finish or "")
        response = response_object(self.meta, self.request, "incomplete" if reason else "completed", self.done, usage_of_hub(usage))
        if reason:
            response["incomplete_details"] = {"reason": reason}
        return self.event("response.incomplete" if reason else "response.completed", response=response)


def _custom_input(arguments: str) -> str:
    """A custom tool's input from the function arguments the backend wrote (``{"input": "..."}``; else as written)."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    return value["input"] if isinstance(value, dict) and isinstance(value.get("input"), str) else arguments


class Events:
    """Hub chunks -> the Responses event stream (as dicts), chunk by chunk; ``request``: the client's body,
    echoed and read for tool kinds.

    ``response.created`` waits for the first hub chunk, so a backend that fails before it can
    still be failed over (with no chunk at all, ``end`` starts the response and finishes it); the
    last event waits for the hub's trailing usage chunk.
    """

    __slots__ = ("out", "started", "finish", "usage")

    def __init__(self, meta: Meta, request: dict) -> None:
        self.out = _Output(meta, request)
        self.started = False
        self.finish: str | None = None
        self.usage: Any = None

    def chunk(self, chunk: dict) -> list[dict]:
        """The events one hub chunk makes (none, or several)."""
        out = self.out
        evs: list[dict] = []
        if not self.started:
            self.started = True
            evs += out.start()
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in (chunk.get("choices") or ())[:1]:
            evs += out.delta(choice.get("delta") or {})
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                evs += out.close(self.finish)
        return evs

    def end(self) -> list[dict]:
        """The closing events, after the last chunk: the open item's end, then ``response.completed`` (or ``.incomplete``)."""
        out = self.out
        evs = [] if self.started else out.start()
        evs += out.close(self.finish)
        evs.append(out.finish(self.finish, self.usage))
        return evs


def event_bytes(event: dict) -> bytes:
    """One event as OpenAI frames it: ``event: <type>`` and ``data: <json>``."""
    return sse_event(orjson.dumps(event), event["type"])


class ToClient(StreamWriter):
    """Hub chunks -> the Responses event stream's bytes (``Events``, each framed by ``event_bytes``)."""

    __slots__ = ("events",)

    def __init__(self, meta: Meta, request: dict) -> None:
        self.events = Events(meta, request)

    def chunk(self, chunk: dict) -> bytes:
        return self.frame(self.events.chunk(chunk))

    def end(self) -> bytes:
        return self.frame(self.events.end())

    def frame(self, events: list[dict]) -> bytes:
        """Events as the client reads them (a subclass may look at each on the way)."""
        return b"".join([event_bytes(ev) for ev in events])


def response_to_client(hub: dict, meta: Meta, request: dict) -> dict:
    """A hub ``chat.completion`` -> the Response object (what the stream's last event would carry)."""
    choice = (hub.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    out = _Output(meta, request)
    blocks = [b for b in msg.get("thinking_blocks") or () if isinstance(b, dict)]
    deltas: list[dict] = [{"thinking_blocks": blocks} if blocks else {"reasoning_content": msg.get("reasoning_content")}]
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    deltas += [{"content": text}, {"refusal": msg.get("refusal")}]
    deltas += [{"tool_calls": [{**call, "index": k}]} for k, call in enumerate(msg.get("tool_calls") or ())]
    for d in deltas:
        out.delta(d)
    out.close(choice.get("finish_reason"))
    return out.finish(choice.get("finish_reason"), hub.get("usage"))["response"]


# ------------------------------------------------------------------ errors


def failed_events(response: dict, output: list, seq: int, err: ProxyError) -> list[dict]:
    """After the stream began: an ``error`` event, then ``response.failed``.

    ``response``: the one ``response.created`` carried; ``output``: the items finished so far;
    ``seq``: the last sequence number sent.
    """
    error = {"type": "error", "sequence_number": seq + 1, **error_dict(err)}
    code = err.code or _FAILED_CODE.get(err.status, "server_error")
    failed = {**response, "status": "failed", "output": output, "error": {"code": code, "message": err.message}}
    return [error, {"type": "response.failed", "sequence_number": seq + 2, "response": failed}]


def stream_error(err: ProxyError) -> bytes:
    """An error after a relayed stream began: OpenAI's ``error`` event (its sequence number is the backend's to know)."""
    return sse_event(orjson.dumps({"type": "error", **error_dict(err)}), "error")
