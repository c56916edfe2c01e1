"""A Responses request -> the hub request (OpenAI Chat Completions), for every backend that does not relay it.

- ``instructions`` and ``system``/``developer`` messages -> system messages; ``user`` messages with
  ``input_text``, ``input_image`` (URL or data URL) and ``input_file`` (``file_data``) parts.
- The model's own items sent back (``message``, ``function_call``, ``custom_tool_call``, and our
  ``reasoning``) -> one assistant message per turn; ``function_call_output`` /
  ``custom_tool_call_output`` -> tool messages (images in an output follow as a user message).
- Tools: ``function`` as it is, ``custom`` (free-form input, e.g. Codex's grammar-based ``apply_patch``)
  as a function with one string parameter ``input`` (the grammar in its description), ``namespace``
  opened into ``<namespace>__<name>`` functions.  Hosted tools (``web_search``, ``file_search``,
  ``tool_search``, ``code_interpreter``, MCP…) cannot run on these backends: dropped, and ``dropped``
  says which, for the log row.  So are input items of kinds only OpenAI produces (``web_search_call``…).
- ``text.format`` -> ``response_format``; ``reasoning.effort`` -> ``reasoning_effort``;
  ``max_output_tokens`` -> ``max_completion_tokens``; ``temperature``, ``top_p``, ``tool_choice``,
  ``parallel_tool_calls``, ``user`` carry over.
- No counterpart, dropped: ``include`` (llmproxy's reasoning state always comes back, see ``shared``),
  ``prompt_cache_key``, ``client_metadata``, ``metadata`` (echoed in the answer), ``text.verbosity``,
  ``reasoning.summary``, ``truncation``, ``service_tier``, ``top_logprobs``, ``max_tool_calls``.
- Refused (400): ``background``, ``conversation``, ``item_reference`` items, files and images by
  ``file_id``, audio input.
"""
from __future__ import annotations

from typing import Any

import orjson

from ...errors import bad_request
from ..common import json_type
from .shared import decode_state, hub_name, tool_names

__all__ = ["dropped", "input_items", "portable", "request_from_client"]

# Input items that are the model's or the client's side of a hosted tool: nothing a translated backend can read.
_HOSTED_ITEMS = frozenset({"web_search_call", "file_search_call", "computer_call", "computer_call_output", "image_generation_call",
                           "code_interpreter_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
                           "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
                           "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output", "compaction"})
_CUSTOM_INPUT = {"type": "object", "properties": {"input": {"type": "string", "description": "The tool's input: free-form text, not JSON."}},
                 "required": ["input"], "additionalProperties": False}


def input_items(body: dict) -> list:
    """This request's ``input`` as a list of items (a string is one user message)."""
    inp = body.get("input")
    if inp is None:
        return []
    if isinstance(inp, str):
        return [{"type": "message", "role": "user", "content": inp}]
    return list(inp)


def portable(items: list) -> list:
    """Items another provider can take: without llmproxy's own reasoning state (for a relay backend)."""
    return [i for i in items if not (isinstance(i, dict) and i.get("type") == "reasoning" and decode_state(i.get("encrypted_content")))]


def dropped(body: dict, history: list | None = None) -> list[str]:
    """What a translated backend cannot take and is left out: hosted tools, and items of hosted tools."""
    tools = sorted({str(t.get("type")) for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") not in ("function", "custom", "namespace")})
    items: dict[str, int] = {}
    for item in (history or []) + input_items(body):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind in _HOSTED_ITEMS:
            items[kind] = items.get(kind, 0) + 1
    notes = [f"tools {', '.join(tools)}"] if tools else []
    if items:
        notes.append("items " + ", ".join(f"{k}×{n}" if n > 1 else k for k, n in sorted(items.items())))
    return notes


def request_from_client(body: dict, history: list | None = None) -> dict:
    """A Responses request -> hub request; ``history``: the stored conversation ``previous_response_id`` continues."""
    for name in ("background", "conversation"):
        if body.get(name):
            raise bad_request(f"'{name}' is not supported by llmproxy on a translated backend", param=name)
    messages: list[dict] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif isinstance(instructions, list):
        messages += _messages(instructions, "instructions")
    messages += _messages((history or []) + input_items(body), "input", len(history or []))
    hub: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    _params(body, hub)
    _tools(body, hub)
    return hub


# ------------------------------------------------------------------ items -> messages


def _messages(items: list, where: str, skip: int = 0) -> list[dict]:
    """Input items -> hub messages (``skip``: how many come first from the stored history, for error positions)."""
    out: list[dict] = []
    thinking: list[dict] = []  # our reasoning state, for the next assistant message
    extra: dict[str, Any] = {}  # call_id -> extra_content (Gemini thought signatures)
    images: list[dict] = []  # images and files in tool outputs: a user message after the tool results
    for i, item in enumerate(items):
        at = f"{where}[{i - skip}]" if i >= skip else f"previous_response_id (item {i})"
        if not isinstance(item, dict):
            raise bad_request(f"'{at}' must be an input item object, got {json_type(item)}", param=at)
        kind = item.get("type") or ("message" if "role" in item else None)
        if images and kind not in ("function_call_output", "custom_tool_call_output"):
            out.append({"role": "user", "content": images})
            images = []
        if kind == "message":
            _message(item, at, out, thinking)
        elif kind in ("function_call", "custom_tool_call"):
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise bad_request(f"'{at}.call_id' must be a non-empty string", param=f"{at}.call_id")
            args = item.get("arguments") if kind == "function_call" else orjson.dumps({"input": item.get("input") or ""}).decode()
            call: dict[str, Any] = {"id": call_id, "type": "function",
                                    "function": {"name": hub_name(item.get("namespace"), item.get("name")), "arguments": args or "{}"}}
            if call_id in extra:
                call["extra_content"] = extra[call_id]
            _assistant(out, thinking).setdefault("tool_calls", []).append(call)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            text, media = _output(item.get("output"), f"{at}.output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
            images += media
        elif kind == "reasoning":
            state = decode_state(item.get("encrypted_content")) or {}
            thinking += [b for b in state.get("thinking_blocks") or () if isinstance(b, dict)]
            extra.update(state.get("tool_extra") or {})
            # another provider's reasoning (OpenAI's encrypted content, summaries): nothing these backends can read
        elif kind == "item_reference":
            raise bad_request(f"'{at}': item_reference is not supported on a translated backend; send the item itself", param=at)
        elif kind not in _HOSTED_ITEMS:
            raise bad_request(f"'{at}.type': input item type {kind!r} is not supported", param=f"{at}.type")
    if images:
        out.append({"role": "user", "content": images})
    return out


def _assistant(out: list[dict], thinking: list[dict]) -> dict:
    """The assistant message of the current turn (a new one after anything else), with pending reasoning attached."""
    if not out or out[-1]["role"] != "assistant":
        out.append({"role": "assistant", "content": None})
    msg = out[-1]
    if thinking:
        msg["thinking_blocks"] = msg.get("thinking_blocks", []) + thinking
        thinking.clear()
    return msg


def _message(item: dict, at: str, out: list[dict], thinking: list[dict]) -> None:
    role, content = item.get("role"), item.get("content")
    if not isinstance(content, (str, list)):
        raise bad_request(f"'{at}.content' must be a string or an array of content parts", param=f"{at}.content")
    if role in ("system", "developer"):
        out.append({"role": "system", "content": _text(content, f"{at}.content")})
    elif role == "user":
        out.append({"role": "user", "content": _user_content(content, f"{at}.content")})
    elif role == "assistant":
        msg = _assistant(out, thinking)
        text = _text(content, f"{at}.content")
        msg["content"] = (msg["content"] + "\n\n" + text) if msg["content"] else text
    else:
        raise bad_request(f"'{at}.role' must be user, assistant, system or developer, got {role!r}", param=f"{at}.role")


def _text(content: str | list, at: str) -> str:
    """Text of a message's content: input_text, output_text and refusal parts."""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            texts.append(str(part.get("text") or ""))
        elif kind == "refusal":
            texts.append(str(part.get("refusal") or ""))
        else:
            raise bad_request(f"'{at}[{j}]': only text can go here, got {kind!r}", param=f"{at}[{j}]")
    return "\n".join(texts)


def _user_content(content: str | list, at: str) -> str | list[dict]:
    if isinstance(content, str):
        return content
    parts = [_part(p, f"{at}[{j}]") for j, p in enumerate(content)]
    return parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts


def _part(part: Any, at: str) -> dict:
    """One input content part -> a hub content part."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise bad_request(f"'{at}': an image needs image_url (a URL or a data URL); file_id is not supported here", param=at)
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise bad_request(f"'{at}': a file needs file_data (a data URL); file_id and file_url are not supported here", param=at)
        if not data.startswith("data:"):
            data = f"data:application/pdf;base64,{data}"
        return {"type": "file", "file": {"filename": part.get("filename") or "document.pdf", "file_data": data}}
    raise bad_request(f"'{at}': content part type {kind!r} cannot be sent to this backend", param=at)


def _output(output: Any, at: str) -> tuple[str, list[dict]]:
    """A tool output (a string or content parts) -> its text, and its images and files."""
    if output is None or isinstance(output, str):
        return output or "", []
    if not isinstance(output, list):
        return orjson.dumps(output).decode(), []
    parts = [_part(p, f"{at}[{j}]") for j, p in enumerate(output)]
    return "\n".join(p["text"] for p in parts if p["type"] == "text"), [p for p in parts if p["type"] != "text"]


# ------------------------------------------------------------------ parameters and tools


def _params(body: dict, hub: dict) -> None:
    if body.get("max_output_tokens") is not None:
        hub["max_completion_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "user"):
        if body.get(name) is not None:
            hub[name] = body[name]
    reasoning = body.get("reasoning") or {}
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        hub["reasoning_effort"] = reasoning["effort"]
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if fmt.get(k) is not None}
        hub["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", **schema}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        hub["response_format"] = {"type": "json_object"}
    if body.get("stream"):
        hub["stream"] = True
        hub["stream_options"] = {"include_usage": True}


def _tools(body: dict, hub: dict) -> None:
    tools: list[dict] = []
    for i, t in enumerate(body.get("tools") or ()):
        if not isinstance(t, dict):
            raise bad_request(f"'tools[{i}]' must be an object", param=f"tools[{i}]")
        if t.get("type") == "namespace":
            tools += [_tool(sub, f"tools[{i}].tools[{j}]", t.get("name")) for j, sub in enumerate(t.get("tools") or ())]
        elif t.get("type") in ("function", "custom"):
            tools.append(_tool(t, f"tools[{i}]"))
    if not tools:
        return
    hub["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"), tool_names(body.get("tools")))
    if choice is not None:
        hub["tool_choice"] = choice
    if isinstance(body.get("parallel_tool_calls"), bool):
        hub["parallel_tool_calls"] = body["parallel_tool_calls"]


def _tool(t: Any, at: str, namespace: str | None = None) -> dict:
    if not isinstance(t, dict) or t.get("type") not in ("function", "custom") or not isinstance(t.get("name"), str) or not t["name"]:
        raise bad_request(f"'{at}' must be a function or custom tool with a name", param=at)
    fn: dict[str, Any] = {"name": hub_name(namespace, t["name"])}
    description = t.get("description") or ""
    if t["type"] == "function":
        fn["parameters"] = t.get("parameters") or {"type": "object", "properties": {}}
        if isinstance(t.get("strict"), bool):
            fn["strict"] = t["strict"]
    else:
        grammar = t.get("format") if isinstance(t.get("format"), dict) else {}
        if grammar.get("type") == "grammar" and grammar.get("definition"):
            description += (f"\n\nPut the whole input in `input`, as plain text (not JSON); "
                            f"it must follow this {grammar.get('syntax') or ''} grammar:\n{grammar['definition']}")
        fn["parameters"] = _CUSTOM_INPUT
    if description:
        fn["description"] = description
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any, names: dict) -> Any:
    """``tool_choice`` -> the hub's; a hosted tool that was dropped cannot be forced (auto instead)."""
    if choice in (None, "auto", "none", "required"):
        return choice
    if not isinstance(choice, dict):
        raise bad_request("'tool_choice' must be auto, none, required or an object", param="tool_choice")
    kind = choice.get("type")
    if kind in ("function", "custom"):
        name = hub_name(choice.get("namespace"), choice.get("name"))
        if name not in names:
            raise bad_request(f"'tool_choice' names tool {choice.get('name')!r}, which is not in tools", param="tool_choice")
        return {"type": "function", "function": {"name": name}}
    if kind == "allowed_tools":
        return "required" if choice.get("mode") == "required" else "auto"
    return "auto"
