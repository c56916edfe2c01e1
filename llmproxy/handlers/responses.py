"""The OpenAI Responses door: ``POST /v1/responses`` (stream and not), ``GET`` and ``DELETE /v1/responses/{id}``.

To a backend with ``responses: relay`` (an ``api: openai`` backend that serves the Responses API
itself) the body goes up as it came, only the model and the route's params changed, and the answer
comes back untouched; its ``previous_response_id`` and stored responses live upstream, and llmproxy
remembers which backend created each response id (``store.py``), so a follow-up goes back there
whatever the strategy says, and ``GET``/``DELETE`` of that id are passed to it.

To any other backend the request goes through the hub (``translate.responses``) and comes back as
the Response object or its typed event stream.  llmproxy keeps the state then: an answer sent with
``store`` (the default) is kept with the conversation before it, so ``previous_response_id`` can
rebuild the conversation for a backend that keeps none, and ``GET``/``DELETE`` find it.  What the
backend cannot take (hosted tools such as ``web_search``) is left out and named in the row's note.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from .. import access, relay, translated
from ..errors import ProxyError
from ..headers import redact
from ..pipeline import Call, Front, route, serve
from ..resolve import Resolved, Target
from ..state import STATE, State
from ..store import Stored
from ..translate import Meta
from ..translate import responses as fmt
from ..translate.common import Tap
from ..upstream import log_back

RESPONSES = Front("responses", fmt, "text/event-stream", "resp_")

# A route's params are written in chat-completions terms; these become their Responses names on a relay.
_PARAM_NAMES = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens"}


def relays(t: Target) -> bool:
    """Whether ``t``'s backend serves /v1/responses itself (``responses: relay``)."""
    return t.backend.responses == "relay"


def not_found(rid: str, param: str | None = None) -> ProxyError:
    return ProxyError(404, f"Response with id '{rid}' not found (unknown here, older than responses_keep_days, or created by another client)",
                      type="invalid_request_error", param=param, code="previous_response_not_found" if param else None)


async def create(request: web.Request) -> web.StreamResponse:
    turn = Turn(request.app[STATE])
    return await serve(request, turn.front, "responses", turn.attempt, parse=fmt.check_request, narrow=turn.narrow)


class Turn:
    """One ``POST /v1/responses``: the stored response it continues, and how its answer is written.

    It is also the format module the pipeline writes this request's answer with (``front``): the
    translator needs the request beside the hub answer, and the door keeps what went by — the
    stream's own response and finished items, so that a failure after the first byte ends the
    stream with ``response.failed`` in order, and the final response, to keep it.  One per
    request: nothing here is shared between requests.
    """

    error_body = staticmethod(fmt.error_body)

    def __init__(self, state: State) -> None:
        assert state.responses is not None
        self.store = state.responses
        self.front = Front("responses", self, "text/event-stream", "resp_")  # type: ignore[arg-type]
        self.previous: Stored | None = None
        self.call: Call | None = None  # the attempt being answered
        self.sent: dict | None = None  # the response ``response.created`` carried
        self.output: list[dict] = []  # items finished in the stream so far
        self.seq = -1  # the last sequence number sent

    async def narrow(self, call: Call, resolved: Resolved) -> Resolved:
        """A follow-up (``previous_response_id``) goes where its state is; an id nobody knows is 404."""
        prev = call.body.get("previous_response_id")
        if not prev:
            return resolved
        rec = await self.store.get(prev, call.row.client)
        if rec is None:
            # Unknown here: only a backend that keeps its own state may know it (say, made before it was routed here).
            upstream = tuple(t for t in resolved.targets if relays(t))
            if not upstream:
                raise not_found(prev, "previous_response_id")
            return replace(resolved, targets=upstream)
        if rec.relayed:
            there = tuple(t for t in resolved.targets if relays(t) and t.backend.name == rec.backend)
            if not there:
                raise ProxyError(400, f"previous_response_id '{prev}' was made by backend '{rec.backend}', which keeps its state; "
                                      f"model '{resolved.name}' has no route there (ask a model it serves, or send the whole conversation as input)",
                                 param="previous_response_id")
            return replace(resolved, targets=there, strategy="fallback")
        self.previous = rec
        return resolved

    def history(self) -> list:
        """The conversation ``previous_response_id`` continues: its input items, then its output."""
        if self.previous is None or self.previous.response is None:
            return []
        return (self.previous.input or []) + self.previous.response.get("output", [])

    async def attempt(self, call: Call) -> web.StreamResponse:
        self.call, self.sent, self.output, self.seq = call, None, [], -1
        if relays(call.target):
            return await self.relay(call)
        history = self.history()
        notes = fmt.dropped(call.body, history)
        call.row.note = f"left out on api: {call.target.backend.api}: " + "; ".join(notes) if notes else None
        return await translated.chat(call, lambda body: fmt.request_from_client(body, history))

    async def relay(self, call: Call) -> web.StreamResponse:
        """The body as it came (the route's params under it, by their Responses names) to ``/responses``.

        A follow-up of a response llmproxy kept (made on a translated backend) carries its
        conversation inline instead of the id, which the backend cannot know.
        """
        params = call.target.route.params
        body = {**{_PARAM_NAMES.get(k, k): v for k, v in params.items()}, **call.body} if params else dict(call.body)
        if self.previous is not None:
            body["input"] = fmt.portable(self.history() + fmt.input_items(body))
            del body["previous_response_id"]
        tap = RelayTap()
        resp = await relay.relay(call, tap, "/responses", body, bool(body.get("stream")))
        if tap.id and body.get("store") is not False and call.row.error is None:
            self.store.put(Stored(tap.id, time.time(), call.row.client, call.target.backend.name, relayed=True))
        return resp

    # -------------------------------------------------------------- the format module of this request's answers

    def response_to_client(self, hub: dict, meta: Meta) -> dict:
        assert self.call is not None
        response = fmt.response_to_client(hub, meta, self.call.body)
        self.keep(response)
        return response

    def ToClient(self, meta: Meta) -> Writer:  # noqa: N802 - the front-door module's name for a stream's writer
        assert self.call is not None
        return Writer(self, meta, self.call.body)

    def stream_error(self, err: ProxyError) -> bytes:
        """After the first byte: ``error`` and ``response.failed`` in the stream's order (a relay's: ``error`` only)."""
        if self.sent is None:
            return fmt.stream_error(err)
        return b"".join([fmt.event_bytes(ev) for ev in fmt.failed_events(self.sent, self.output, self.seq, err)])

    def keep(self, response: dict) -> None:
        """Keep a translated answer with the conversation before it, unless the client said ``store: false``."""
        call = self.call
        assert call is not None and call.target is not None
        if call.body.get("store") is False:
            return
        conversation = self.history() + fmt.input_items(call.body)
        self.store.put(Stored(response["id"], time.time(), call.row.client, call.target.backend.name, input=conversation, response=response))


class Writer(fmt.ToClient):
    """One translated stream's writer (``Turn.ToClient``): the format's, with each event noted in the ``Turn`` on
    the way — the last sequence number, the response ``response.created`` carried, the finished items, and the
    final response, kept before the client can read it (a follow-up at once finds it)."""

    __slots__ = ("turn",)

    def __init__(self, turn: Turn, meta: Meta, request: dict) -> None:
        super().__init__(meta, request)
        self.turn = turn

    def frame(self, events: list[dict]) -> bytes:
        turn = self.turn
        for ev in events:
            kind = ev["type"]
            turn.seq = ev["sequence_number"]
            if kind == "response.created":
                turn.sent = ev["response"]
            elif kind == "response.output_item.done":
                turn.output.append(ev["item"])
            elif kind in ("response.completed", "response.incomplete"):
                turn.keep(ev["response"])
        return super().frame(events)


class RelayTap:
    """``translate.responses`` as the relay uses it, noting the id of the response that went by (one per attempt)."""

    STREAM_DECODER = fmt.STREAM_DECODER
    error_from_upstream = staticmethod(fmt.error_from_upstream)

    def __init__(self) -> None:
        self.seen: dict = {}
        self.answer_id: str | None = None

    def relay_tap(self, frame: Any, seen: dict) -> Tap | None:
        self.seen = seen  # the relay's own dict, where the tap notes the id
        return fmt.relay_tap(frame, seen)

    def usage_of_answer(self, answer: Any) -> dict | None:
        if isinstance(answer, dict) and isinstance(answer.get("id"), str):
            self.answer_id = answer["id"]
        return fmt.usage_of_answer(answer)

    @property
    def id(self) -> str | None:
        return self.answer_id or self.seen.get("id")


# ------------------------------------------------------------------ GET and DELETE /v1/responses/{id}


async def _known(request: web.Request) -> tuple[State, Stored]:
    """The record of the id in the path, if the client asking may see it; else 404."""
    state = request.app[STATE]
    client = access.authenticate(state.snap.config, request)
    rid = request.match_info["id"]
    assert state.responses is not None
    rec = await state.responses.get(rid, client.name if client else None)
    if rec is None:
        raise not_found(rid)
    return state, rec


async def get_response(request: web.Request) -> web.StreamResponse:
    state, rec = await _known(request)
    if rec.relayed:
        return await _ask_backend(request, state, rec, "GET")
    return web.Response(body=orjson.dumps(rec.response), content_type="application/json")


async def delete_response(request: web.Request) -> web.StreamResponse:
    state, rec = await _known(request)
    assert state.responses is not None
    if rec.relayed:
        resp = await _ask_backend(request, state, rec, "DELETE")
        if resp.status < 300 or resp.status == 404:
            await state.responses.delete(rec.id)
        return resp
    await state.responses.delete(rec.id)
    return web.Response(body=orjson.dumps({"id": rec.id, "object": "response.deleted", "deleted": True}), content_type="application/json")


async def _ask_backend(request: web.Request, state: State, rec: Stored, method: str) -> web.Response:
    """``GET``/``DELETE`` of a relayed id, passed to the backend that made it; its answer comes back as it is."""
    backend = state.snap.config.backends.get(rec.backend)
    if backend is None:
        raise ProxyError(404, f"Response with id '{rec.id}' was made by backend '{rec.backend}', which router.yaml no longer has",
                         type="invalid_request_error")
    query = request.rel_url.raw_query_string
    path = f"/responses/{rec.id}" + (f"?{query}" if query else "")
    up = await state.upstream.open(backend, path, b"", model=f"({method} {rec.id})", stream=False, method=method,
                                   key=state.balance.key_value(backend), max_bytes=state.snap.config.max_response)
    try:
        raw = await up.read()
    finally:
        up.close()
    err = None
    if up.status >= 400:
        err = fmt.error_from_upstream(up.status, raw)
        err.message = redact(err.message, state.snap.secrets)
    log_back(backend, up.status, up.t0, up.first_byte_ms, err)
    if err is not None:
        raise err
    return web.Response(status=up.status, body=raw, content_type="application/json")


def add_routes(app: web.Application) -> None:
    route(app, "POST", "/v1/responses", create, RESPONSES)
    route(app, "GET", "/v1/responses/{id}", get_response, RESPONSES)
    route(app, "DELETE", "/v1/responses/{id}", delete_response, RESPONSES)
