"""The Responses front door's shapes: the request checked before routing, errors in OpenAI's shape."""
from __future__ import annotations

import orjson

from ...errors import ProxyError
from ...sse import sse_event
from ..common import FieldTypes, check_types, require_model
from ..openai import error_body, error_dict

__all__ = ["check_request", "error_body", "stream_error"]

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


def check_request(body: dict) -> dict:
    """What the door checks before routing: the model and the JSON types of the fields it reads (400 naming the field)."""
    require_model(body)
    check_types(body, _TYPES)
    return body


def stream_error(err: ProxyError) -> bytes:
    """An error after a relayed stream began: OpenAI's ``error`` event (its sequence number is the backend's to know)."""
    return sse_event(orjson.dumps({"type": "error", **error_dict(err)}), "error")
