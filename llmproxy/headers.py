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
from .errors import ProxyError
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


# The shortest secret redacted by value.  Every configured secret of this length or more is taken
# out of every message wherever it appears, whatever its length (a 9-character token is as much
# a key as a 40-character one).  Below it, replacing the value everywhere would blank ordinary
# words and numbers in messages ("ok", "v1", "123"), and 1-3 characters protect nothing anyway:
# so the fields that hold nothing but a secret refuse shorter values at load (the schema's
# minLength: 4 for ``keys``, 8 for client keys and the admin key), and a word under 4 characters
# in a header value (a version, a flag) is not treated as a secret.
MIN_SECRET = 4

# Headers that carry protocol, not credentials: their values are not secrets.
_PUBLIC_HEADERS = frozenset({"content-type", "accept", "user-agent", "host", "anthropic-version", "anthropic-beta", "openai-beta",
                             "http-referer", "referer", "x-title"})


def secrets_of(cfg: Config) -> tuple[str, ...]:
    """Every configured secret, by value: the backends' ``keys``, each header value (whole, and each
    word of it but an auth scheme such as ``Bearer``; protocol headers aside), the password of Basic
    credentials (a url's ``user:password@`` becomes one) and of a backend's proxy, the client keys
    and the admin key.  Longest first, so a secret that contains
    another is taken out whole."""
    out: set[str] = set()
    for b in cfg.backends.values():
        out.update(b.keys)
        for name, v in b.headers:
            if name.lower() in _PUBLIC_HEADERS:
                continue
            words = [w for w in re.split(r"[\s,;]+", v) if w]
            if len(words) > 1 and words[0].isalpha():
                words.pop(0)  # "Bearer", "Basic", "Token": the scheme, not the credential
            out.update(w for w in words if "{key}" not in w)  # ({key} is one of ``keys``, above)
            if "{key}" not in v:
                out.add(v.strip())
            out.update(_basic_password(v))
        out.update(_password(proxy_password(b.proxy)))
    if cfg.clients:
        out.update(c.key for c in cfg.clients if c.key)
        out.update(c.user_jwt_secret for c in cfg.clients if c.user_jwt_secret)
    out.update(k for k in (cfg.admin_key, cfg.metrics_key) if k)
    return tuple(sorted((s for s in out if len(s) >= MIN_SECRET), key=len, reverse=True))


def _basic_password(value: str) -> tuple[str, ...]:
    """The password in an ``Authorization: Basic …`` value, as sent and as it may be written in a URL
    (or the user, when there is no password: a url's lone ``token@`` is the credential)."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return ()
    try:
        user, _, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return ()
    return _password(password or user)


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
