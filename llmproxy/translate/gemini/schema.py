"""JSON Schema -> Gemini OpenAPI-subset Schema: ``clean_schema`` for tool ``parameters``."""
from __future__ import annotations

from typing import Any

import orjson

_KEEP = ("description", "minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength",
         "pattern", "minProperties", "maxProperties", "propertyOrdering")
_FORMATS = {"string": {"enum", "date-time"}, "integer": {"int32", "int64"}, "number": {"float", "double"}}
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}


def clean_schema(schema: Any) -> dict:
    """A JSON Schema -> the OpenAPI subset Gemini's ``parameters`` accepts; never raises.

    Inlines local ``$ref``s (recursive ones become ``{"type": "object"}``), merges ``allOf``,
    turns ``const`` into ``enum``, ``null`` variants / ``type: [x, "null"]`` into ``nullable``,
    collapses one-variant ``anyOf``/``oneOf``, keeps non-string enums as a description note,
    keeps only the formats Gemini knows and drops everything else (``$schema``, ``title``,
    ``default``, ``examples``, ``additionalProperties``, ``$defs``, …).  Gemini requires a type
    everywhere: an untyped schema becomes ``object`` (with properties / at the top), ``array``
    (with items) or else ``string``; arrays without ``items`` get string items.
    """
    root = schema if isinstance(schema, dict) else {}
    out = _clean(root, root, (), 0)
    if "type" not in out and "anyOf" not in out:
        out["type"] = "object"
    return out


def _clean(s: Any, root: dict, refs: tuple, depth: int) -> dict:
    if not isinstance(s, dict) or depth > 40:
        return {}
    ref = s.get("$ref")
    if isinstance(ref, str):
        target = _resolve(ref, root)
        if target is None or ref in refs:
            out = {"type": "object"}
        else:
            out = _clean(target, root, refs + (ref,), depth + 1)
        if isinstance(s.get("description"), str):
            out["description"] = s["description"]
        return out
    if isinstance(s.get("allOf"), list):
        merged: dict = {k: v for k, v in s.items() if k != "allOf"}
        for sub in s["allOf"]:
            sub = _resolve(sub["$ref"], root) if isinstance(sub, dict) and isinstance(sub.get("$ref"), str) else sub
            if isinstance(sub, dict):
                for k, v in sub.items():
                    if k == "properties" and isinstance(v, dict):
                        merged["properties"] = {**v, **(merged.get("properties") or {})}
                    elif k == "required" and isinstance(v, list):
                        merged["required"] = list(dict.fromkeys([*(merged.get("required") or []), *v]))
                    else:
                        merged.setdefault(k, v)
        s = merged
    out: dict[str, Any] = {}
    nullable = s.get("nullable") is True
    types = s.get("type")
    types = [types] if isinstance(types, str) else [t for t in types if isinstance(t, str)] if isinstance(types, list) else []
    if "null" in types:
        nullable, types = True, [t for t in types if t != "null"]
    variants = s.get("anyOf") if isinstance(s.get("anyOf"), list) else s.get("oneOf")
    if isinstance(variants, list):
        variants = [v for v in variants if isinstance(v, dict)]
        if any(v.get("type") == "null" for v in variants):
            nullable, variants = True, [v for v in variants if v.get("type") != "null"]
        if len(variants) == 1 and not types:
            inner = _clean(variants[0], root, refs, depth + 1)
            if isinstance(s.get("description"), str):
                inner["description"] = s["description"]
            if nullable:
                inner["nullable"] = True
            return inner
        if variants:
            out["anyOf"] = [_clean(v, root, refs, depth + 1) for v in variants]
    if len(types) > 1:
        out["anyOf"] = [{"type": t.lower()} for t in types if t.lower() in _TYPES]
        types = []
    kind = types[0].lower() if types and types[0].lower() in _TYPES else None
    enum = [s["const"]] if "const" in s else s.get("enum")
    if isinstance(enum, list):
        if None in enum:
            nullable, enum = True, [e for e in enum if e is not None]
        if enum and all(isinstance(e, str) for e in enum) and kind in (None, "string"):
            kind, out["enum"] = "string", enum
        elif enum:
            if kind is None:
                first = enum[0]
                kind = ("boolean" if isinstance(first, bool) else "integer" if isinstance(first, int)
                        else "number" if isinstance(first, float) else None)
            note = "Allowed values: " + ", ".join(orjson.dumps(e).decode() for e in enum)
            desc = s.get("description")
            s = {**s, "description": f"{desc} ({note})" if isinstance(desc, str) and desc else note}
    if kind is None and "anyOf" not in out:
        # Gemini rejects a schema without a type: guess from the keywords, else "string".
        kind = "object" if "properties" in s else "array" if "items" in s or "prefixItems" in s else "string"
    if kind:
        out["type"] = kind
    fmt = s.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(kind or "", ()):
        out["format"] = fmt
    for key in _KEEP:
        if key in s and isinstance(s[key], (str, int, float, list)) and not isinstance(s[key], bool):
            out[key] = s[key]
    if nullable:
        out["nullable"] = True
    props = s.get("properties")
    if isinstance(props, dict) and kind in (None, "object"):
        out["properties"] = {str(k): _clean(v, root, refs, depth + 1) for k, v in props.items()}
        required = [r for r in s.get("required") or [] if isinstance(r, str) and r in props]
        if required:
            out["required"] = required
    if kind == "array":
        items = s.get("items")
        if isinstance(items, list):  # tuple form
            items = items[0] if items else None
        if not isinstance(items, dict) and isinstance(s.get("prefixItems"), list) and s["prefixItems"]:
            items = s["prefixItems"][0]
        out["items"] = _clean(items, root, refs, depth + 1) if isinstance(items, dict) else {}
        if not out["items"]:
            out["items"] = {"type": "string"}
    return out


def _resolve(ref: str, root: dict) -> dict | None:
    """A local ``#/…`` JSON pointer into the root schema, or None."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for key in ref[1:].split("/")[1:] if ref != "#" else []:
        key = key.replace("~1", "/").replace("~0", "~")
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
