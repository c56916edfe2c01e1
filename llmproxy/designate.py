"""strategy: designator — before the first attempt, another model picks the route.

The designator gets one short non-stream chat: llmproxy's prompt listing each route's name and
``description``, then the client's last user message (cut to ``QUESTION_MAX`` characters).  Its
answer must be exactly a route's number or name (``parse``); anything else, an error or no answer
within ``designator_timeout`` leaves the routes in their configured order (the first route first),
and the request's row says why (``route_choice``).  A choice is kept per conversation (the key
sticky key rotation uses), so a conversation stays on one model.  The designator's own call is a
row of its own (endpoint ``designate``) whose ``parent_id`` is the request's id.

``prompt`` and ``parse`` are pure; ``choose`` does the call through the same machinery as a
request (``pipeline.attempt``: the designator's routes, breakers and failover; the backend's
translator; ``exchange.open_upstream`` and ``whole_answer``), without writing to the client.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from .balance import sticky_hash
from .errors import ProxyError
from .exchange import open_upstream, upstream_body, whole_answer
from .pipeline import CHOOSERS, Call, _finish_row, attempt, new_id
from .requestlog import new_row
from .resolve import Resolved, Target
from .translated import backend_module
from .usage import Usage

QUESTION_MAX = 2000  # characters of the user's message the designator reads
ANSWER_TOKENS = 16
CACHE_MAX = 10_000  # conversations remembered (the oldest forgotten first)


def route_name(t: Target) -> str:
    """How the designator is told a route: the model it names, or backend/model."""
    return t.route.name or f"{t.backend.name}/{t.upstream_model}"


def last_user_text(body: dict) -> str:
    """The text of the last user message (OpenAI, Anthropic or Ollama messages), '' when there is none."""
    for m in reversed(body.get("messages") or ()):
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            return "\n".join(p.get("text", "") for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
        return ""
    return ""


def prompt(targets: tuple[Target, ...] | list[Target], question: str, limit: int = QUESTION_MAX) -> list[dict[str, str]]:
    """The designator's messages: the routes by number, name and description, then the question. Pure."""
    lines = []
    for i, t in enumerate(targets, 1):
        desc = t.route.description
        lines.append(f"{i}. {route_name(t)}" + (f": {desc}" if desc else ""))
    if len(question) > limit:
        question = question[:limit] + " […]"
    system = ("You choose which model answers a user's message. The models:\n" + "\n".join(lines) +
              "\nReply with the number of the one model that fits the message best, and nothing else.")
    return [{"role": "system", "content": system}, {"role": "user", "content": f"<message>\n{question}\n</message>"}]


_STRIP = " \t\r\n\"'`.*"


def parse(answer: str, targets: tuple[Target, ...] | list[Target]) -> int | None:
    """The 0-based index of the route the answer names — exactly a number (1-based) or a route's name — else None. Pure."""
    a = answer.strip(_STRIP)
    if re.fullmatch(r"\d{1,3}", a):
        i = int(a) - 1
        return i if 0 <= i < len(targets) else None
    low = a.lower()
    for i, t in enumerate(targets):
        if low in (route_name(t).lower(), t.upstream_model.lower()):
            return i
    return None


def _first(resolved: Resolved, i: int) -> Resolved:
    """The routes with route ``i`` first, the others after it in their order (failover still applies)."""
    ts = resolved.targets
    return replace(resolved, targets=(ts[i],) + ts[:i] + ts[i + 1:])


async def choose(call: Call, resolved: Resolved) -> Resolved:
    """``resolved`` with the designator's route first; notes on ``call.row.route_choice`` how it was chosen."""
    row, _cache = call.row, call.state.balance.designated
    conv = sticky_hash(call.body)
    ckey = (resolved.name.lower(), conv) if conv is not None else None
    if ckey is not None and ckey in _cache:
        rk = _cache[ckey]
        for i, t in enumerate(resolved.targets):
            if (t.backend.name, t.upstream_model) == rk:
                _cache.move_to_end(ckey)
                row.route_choice = f"route {i + 1} ({route_name(t)}), kept for this conversation"
                return _first(resolved, i)
    question = last_user_text(call.body)
    if not question.strip():
        row.route_choice = "first route: no user message for the designator to read"
        return resolved
    answer, why = await _ask(call, resolved, question)
    i = parse(answer, resolved.targets) if answer is not None else None
    if i is None:
        if why is None:
            shown = answer if answer is not None and len(answer) <= 80 else f"{(answer or '')[:80]}…"
            why = f"the designator answered {shown!r}, not a route's number or name"
        row.route_choice = f"first route: {why}"
        return resolved
    row.route_choice = f"route {i + 1} ({route_name(resolved.targets[i])}), chosen by {resolved.designator}"
    if ckey is not None:
        t = resolved.targets[i]
        _cache[ckey] = (t.backend.name, t.upstream_model)
        if len(_cache) > CACHE_MAX:
            _cache.popitem(last=False)
    return _first(resolved, i)


async def _ask(call: Call, resolved: Resolved, question: str) -> tuple[str | None, str | None]:
    """(the designator's answer, None) or (None, why there is none). Its own row is logged, linked to ``call``'s."""
    name = resolved.designator
    assert name is not None
    sub_row = new_row(new_id(), call.front.name, "designate")
    sub_row.client_addr, sub_row.client, sub_row.tags = call.row.client_addr, call.row.client, call.row.tags
    sub_row.requested_model, sub_row.parent_id = name, call.row.id
    body = {"model": name, "messages": prompt(resolved.targets, question), "max_tokens": ANSWER_TOKENS, "temperature": 0, "stream": False}
    sub = Call(call.request, call.state, call.snap, call.front, sub_row, body)
    got: list[str] = []

    async def handler(c: Call) -> web.StreamResponse:
        module = backend_module(c)
        path, up_body = module.request_to_upstream(upstream_body(c), c.target.upstream_model, False)
        up = await open_upstream(c, path, orjson.dumps(up_body), False, module)
        meta = c.meta
        _, hub = await whole_answer(c, up, lambda data: module.response_from_upstream(data, meta), Usage.of_answer)
        got.append(_text(hub))
        return web.Response(status=200)

    timeout = resolved.designator_timeout
    try:
        d = call.snap.resolver.resolve(name, default=False)
        if d.strategy == "designator":  # (refused at load for a configured model; never recurse)
            d = replace(d, strategy="fallback")
        async with asyncio.timeout(timeout):
            resp = await attempt(sub, d, handler)
        sub_row.status = resp.status
    except TimeoutError:
        why = f"the designator {name} did not answer within designator_timeout ({timeout:g} s)"
        sub_row.fail(504, "timeout", why)
        return None, why
    except ProxyError as e:
        sub_row.fail(e.status, e.type, e.message)
        return None, f"the designator {name} failed: HTTP {e.status}: {e.message[:200]}"
    except asyncio.CancelledError:
        sub_row.fail(499, "cancelled", "client disconnected")
        raise
    finally:
        _finish_row(sub)
        call.state.log.put(sub_row)
    return (got[0] if got else ""), None


CHOOSERS["designator"] = choose


def _text(hub: dict[str, Any]) -> str:
    """The text of a hub (OpenAI-shaped) answer."""
    try:
        content = hub["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    return content if isinstance(content, str) else ""
