"""Header templates → the headers of one upstream request (pure), and secret redaction.

``${ENV}`` was expanded at load; ``{key}`` is filled per request with the key the caller picked.
"""
from __future__ import annotations

import base64
import re
from functools import lru_cache
from typing import Iterable
from urllib.parse import quote

from .config import Backend, Config
from .netopts import proxy_password

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
                h.pop(k.lower(), None)  # api defaults are spelled lower-case
                h[k] = v
    for k, v in keyed:
        h[k] = v.replace("{key}", key or "")
    return h


def secrets_of(cfg: Config) -> tuple[str, ...]:
    """Every string in the config that may be a secret: keys, long tokens in header values, the
    password of Basic credentials (a url's ``user:password@`` becomes one) and of a backend's proxy."""
    out: set[str] = set()
    for b in cfg.backends.values():
        out.update(k for k in b.keys if len(k) >= 4)
        for _, v in b.headers:
            for tok in re.split(r"[\s,;]+", v):
                if len(tok) >= 12 and "{key}" not in tok:
                    out.add(tok)
            out.update(_basic_password(v))
        out.update(_password(proxy_password(b.proxy)))
    if cfg.admin_key:
        out.add(cfg.admin_key)
    return tuple(sorted(out, key=len, reverse=True))


def _basic_password(value: str) -> tuple[str, ...]:
    """The password in an ``Authorization: Basic …`` value, as sent and as it may be written in a URL."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return ()
    try:
        password = base64.b64decode(token.strip(), validate=True).decode().partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return ()
    return _password(password)


def _password(password: str | None) -> tuple[str, ...]:
    """A password and its %-encoded spelling, when long enough to be told from ordinary text (as keys: 4 characters)."""
    if not password or len(password) < 4:
        return ()
    return (password, quote(password, safe=""))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in ``text`` with ``***``."""
    for s in secrets:
        if s in text:
            text = text.replace(s, "***")
    return text
