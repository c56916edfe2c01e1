"""What both directions of the Responses translation share: tool names and llmproxy's opaque reasoning state.

Tools in a ``namespace`` reach the hub as one flat function each, named ``<namespace>__<name>``;
the request's tools say how to name a call on the way back.

A backend's reasoning that must go back to it on the next turn (Anthropic's signed thinking blocks,
Gemini's thought signatures) travels in a ``reasoning`` item's ``encrypted_content``, which clients
such as Codex keep and send back (``include: ["reasoning.encrypted_content"]``)::

    "llmproxy:" + base64url(JSON {"thinking_blocks": [...], "tool_extra": {call_id: extra_content}})

Another provider's encrypted content (OpenAI's) means nothing here and is dropped.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any, NamedTuple

import orjson

STATE_PREFIX = "llmproxy:"
NAMESPACE_SEP = "__"


def hub_name(namespace: Any, name: Any) -> str:
    """The hub function name of a tool (or call) ``name`` in ``namespace`` (None: no namespace)."""
    return f"{namespace}{NAMESPACE_SEP}{name}" if namespace else str(name or "")


class ToolName(NamedTuple):
    """What a hub function name stands for in the client's request."""

    kind: str  # function | custom
    name: str
    namespace: str | None = None


def tool_names(tools: Any) -> dict[str, ToolName]:
    """Hub function name -> the client's tool, for the function and custom tools of a request (namespaces opened)."""
    out: dict[str, ToolName] = {}
    for t in tools if isinstance(tools, list) else ():
        if not isinstance(t, dict):
            continue
        if t.get("type") == "namespace":
            for sub in t.get("tools") or ():
                if isinstance(sub, dict) and sub.get("type") in ("function", "custom") and sub.get("name"):
                    out[hub_name(t.get("name"), sub["name"])] = ToolName(sub["type"], sub["name"], t.get("name"))
        elif t.get("type") in ("function", "custom") and t.get("name"):
            out[t["name"]] = ToolName(t["type"], t["name"])
    return out


def encode_state(state: dict) -> str:
    return STATE_PREFIX + base64.urlsafe_b64encode(orjson.dumps(state)).decode()


def decode_state(value: Any) -> dict | None:
    """llmproxy's state from an ``encrypted_content``; None for anyone else's (or none)."""
    if not isinstance(value, str) or not value.startswith(STATE_PREFIX):
        return None
    try:
        state = orjson.loads(base64.urlsafe_b64decode(value[len(STATE_PREFIX):]))
    except (binascii.Error, ValueError):
        return None
    return state if isinstance(state, dict) else None


def item_id(meta_id: str, prefix: str, n: int) -> str:
    """A stable output item id: the item's kind, the response's id and the item's position."""
    return f"{prefix}_{meta_id.removeprefix('resp_')}_{n}"
