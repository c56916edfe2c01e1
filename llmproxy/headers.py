"""Header templates → the headers of one upstream request (pure), and secret redaction.

``${ENV}`` was expanded at load; ``{key}`` is filled per request with the key the caller picked.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

from .config import Backend, Config
from .errors import ProxyError

_API_DEFAULTS = {
    # Anthropic refuses requests without a version; a config may still override it.
    "anthropic": (("anthropic-version", "2023-06-01"),),
}


@lru_cache(maxsize=256)
def _split(backend: Backend) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """Static headers (rendered once) and the templates that need ``{key}``."""
    static = {"Content-Type": "application/json"}
    for k, v in _API_DEFAULTS.get(backend.api, ()):
        static[k] = v
    keyed = []
    for k, v in backend.headers:
        if "{key}" in v:
            keyed.append((k, v))
        else:
            static[k] = v
    return static, tuple(keyed)


@lru_cache(maxsize=256)
def _configured(backend: Backend) -> frozenset[str]:
    """Lower-case names of the headers the config sets (and Content-Type)."""
    return frozenset(k.lower() for k, _ in backend.headers) | {"content-type"}


def render(backend: Backend, key: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Headers for one request: statics, then ``{key}`` templates, then per-request extras."""
    static, keyed = _split(backend)
    if not keyed and not extra:
        return static
    h = dict(static)
    if extra:
        # Client-supplied protocol headers (e.g. anthropic-beta) never override configured ones,
        # but do replace an api default (a client's anthropic-version beats 2023-06-01).
        configured = _configured(backend)
        for k, v in extra.items():
            if k.lower() not in configured:
                if not (v.isascii() and (v.isprintable() or v.replace("\t", " ").isprintable())):
                    # A client's header llmproxy cannot write as it came (non-ASCII, a control character):
                    # that client's 400, raised before anything is sent, so it never counts against the route.
                    raise ProxyError(400, f"header '{k}' has a character llmproxy cannot send upstream as written "
                                          f"(only printable ASCII is forwarded); correct the header and send again", code="invalid_header")
                h.pop(k.lower(), None)  # api defaults are spelled lower-case
                h[k] = v
    for k, v in keyed:
        h[k] = v.replace("{key}", key or "")
    return h


def secrets_of(cfg: Config) -> tuple[str, ...]:
    """Every string in the config that may be a secret: keys and long tokens in header values."""
    out: set[str] = set()
    for b in cfg.backends.values():
        out.update(k for k in b.keys if len(k) >= 4)
        for _, v in b.headers:
            for tok in re.split(r"[\s,;]+", v):
                if len(tok) >= 12 and "{key}" not in tok:
                    out.add(tok)
    if cfg.admin_key:
        out.add(cfg.admin_key)
    return tuple(sorted(out, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in ``text`` with ``***``."""
    for s in secrets:
        if s in text:
            text = text.replace(s, "***")
    return text
