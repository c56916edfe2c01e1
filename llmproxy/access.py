"""Who is calling: client keys (or a ``networks:`` address), model allow-lists, and the end user behind a client."""
from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import logging
import re
from functools import lru_cache
from urllib.parse import unquote
from typing import Callable

from aiohttp import web

from .config import Client, Config
from .errors import ProxyError
from .requestlog import LogRow

log = logging.getLogger("llmproxy")


def presented_key(request: web.Request) -> str | None:
    """The key a client sent: ``Authorization: Bearer …`` or Anthropic's ``x-api-key``."""
    auth = request.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


def authenticate(cfg: Config, request: web.Request) -> Client | None:
    """The calling client, or None when access control is off. 401 without a valid key (or a ``networks:`` address)."""
    if cfg.clients is None:
        return None
    key = presented_key(request)
    found = None
    if key:
        digest = hashlib.sha256(key.encode()).digest()
        for c in cfg.clients:  # compare against every client, in constant time each
            if c.key_sha256 is not None and hmac.compare_digest(digest, c.key_sha256):
                found = c
    if found is None:
        found = _by_network(cfg, request.remote)
    if found is None:
        if not key:
            raise ProxyError(401, "this llmproxy requires a client key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        raise ProxyError(401, "the client key is not valid for this llmproxy", code="invalid_api_key")
    return found


def _by_network(cfg: Config, remote: str | None) -> Client | None:
    """The ``networks:`` client whose ranges hold ``remote`` (the first listed), if any."""
    if remote is None or not any(c.networks for c in cfg.clients or ()):
        return None
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:  # ::ffff:192.168.1.5 on a dual-stack socket
        addr = addr.ipv4_mapped
    for c in cfg.clients or ():
        if any(addr in n for n in c.networks):
            return c
    return None


def end_user(client: Client | None, request: web.Request, row: LogRow, told: set[tuple[str, str]] | None = None) -> None:
    """The end user and chat Open-WebUI forwards (``ENABLE_FORWARD_USER_INFO_HEADERS``), onto the row.

    A client with ``user_jwt_secret`` takes its user only from a valid ``X-OpenWebUI-User-Jwt``
    (HS256, ``iss: open-webui``, unexpired): plain user headers are ignored, a bad token is a 401, and so
    is none at all when the client also has ``per_user`` limits (else leaving it out would escape them).
    Half of the signed mode set up (the secret on one side only) is warned about once per client, in ``told``.
    """
    told = set() if told is None else told
    h = request.headers
    row.chat_id = h.get("X-OpenWebUI-Chat-Id")
    if client is not None and client.user_jwt_secret:
        token = h.get("X-OpenWebUI-User-Jwt")
        if token is None:
            if client.per_user:  # every person has limits of their own: a request that names nobody would escape them
                raise ProxyError(401, f"client '{client.name}' has per_user limits and user_jwt_secret: each request must carry "
                                      "Open-WebUI's signed X-OpenWebUI-User-Jwt (set ENABLE_FORWARD_USER_INFO_HEADERS=true and "
                                      "FORWARD_USER_INFO_HEADER_JWT_SECRET to this client's user_jwt_secret)", code="missing_user_token")
            if "X-OpenWebUI-User-Id" in h:
                _tell_once(told, client.name, "plain", f"client '{client.name}' has user_jwt_secret but its requests carry plain "
                           "X-OpenWebUI-User-* headers and no X-OpenWebUI-User-Jwt, so they are ignored: no user is recorded and per_user "
                           "limits do not apply; set Open-WebUI's FORWARD_USER_INFO_HEADER_JWT_SECRET to this client's user_jwt_secret")
            return
        import jwt  # (PyJWT: loaded only by a client that verifies its users)

        try:  # (no iat check: Open-WebUI stamps it with its own clock, and one a second ahead would refuse every token; exp bounds the age)
            claims = jwt.decode(token, client.user_jwt_secret, algorithms=["HS256"], issuer="open-webui",
                                options={"require": ["exp", "sub", "iss"], "verify_iat": False})
        except jwt.PyJWTError as e:
            if isinstance(e, jwt.ExpiredSignatureError):
                hint = "Open-WebUI sends a fresh one with each request, so check that its host's clock and llmproxy's agree"
            elif isinstance(e, jwt.InvalidSignatureError):
                hint = "check that Open-WebUI's FORWARD_USER_INFO_HEADER_JWT_SECRET equals this client's user_jwt_secret"
            else:
                hint = "it must be the HS256 token Open-WebUI sends (iss 'open-webui', with sub and exp)"
            raise ProxyError(401, f"X-OpenWebUI-User-Jwt is not valid for client '{client.name}': {e}; {hint}", code="invalid_user_token") from None
        row.user_id, row.user_name, row.user_email = str(claims["sub"]), _str(claims.get("name")), _str(claims.get("email"))
        return
    uid = h.get("X-OpenWebUI-User-Id")
    if uid:
        name = h.get("X-OpenWebUI-User-Name")
        row.user_id, row.user_name, row.user_email = uid, unquote(name) if name else None, h.get("X-OpenWebUI-User-Email")
    elif "X-OpenWebUI-User-Jwt" in h:
        _unverified_user(client, h["X-OpenWebUI-User-Jwt"], row, told)


def _unverified_user(client: Client | None, token: str, row: LogRow, told: set[tuple[str, str]]) -> None:
    """The user of an Open-WebUI that signs (its FORWARD_USER_INFO_HEADER_JWT_SECRET set: then it sends no plain headers)
    at a client without ``user_jwt_secret``: read from the token unchecked, trusted as far as plain headers are."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        return
    row.user_id, row.user_name, row.user_email = sub, _str(claims.get("name")), _str(claims.get("email"))
    if client is None:  # (no access: section: nothing to verify with, nothing to set)
        return
    _tell_once(told, client.name, "unverified", f"client '{client.name}' gets Open-WebUI's signed X-OpenWebUI-User-Jwt but has no "
               "user_jwt_secret: its users are read from the token unverified, as plain headers would be; set user_jwt_secret to "
               "Open-WebUI's FORWARD_USER_INFO_HEADER_JWT_SECRET to verify them")


def _tell_once(told: set[tuple[str, str]], client: str, what: str, message: str) -> None:
    if (client, what) not in told:
        told.add((client, what))
        log.warning("warning: %s", message)


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def is_admin(cfg: Config, request: web.Request) -> bool:
    """The request carries ``access.admin_key`` (as a client key is sent); False when none is configured."""
    return key_matches(cfg.admin_key, presented_key(request))


def key_matches(want: str | None, got: str | None) -> bool:
    """``got`` is the configured key ``want`` (compared in constant time); False when either is missing."""
    return bool(want and got) and hmac.compare_digest(hashlib.sha256(got.encode()).digest(), hashlib.sha256(want.encode()).digest())


def allowed(client: Client | None, *names: str) -> bool:
    """Whether any of ``names`` matches one of the client's ``models`` globs (case-insensitive)."""
    if client is None or "*" in client.models:  # (every model: the default, no pattern to run)
        return True
    match = _globs(client.models)
    return any(match(n.lower()) for n in names if n)


@lru_cache(maxsize=1024)
def _globs(models: tuple[str, ...]) -> Callable[[str], re.Match | None]:
    """A client's globs as one compiled pattern, built once per distinct list (not per request)."""
    return re.compile("|".join(fnmatch.translate(g.lower()) for g in models)).match if models else (lambda name: None)


def authorize(client: Client | None, requested: str, resolved: str, default: str | None = None) -> None:
    """403 when the client's ``models`` globs match neither the requested nor the resolved name.

    A name that resolved only through ``default_model`` (``default``) is a request for that model:
    the name asked for no longer counts, else ``models: ["mock-*"]`` would let ``mock-anything``
    reach any default.  The default's own name (an alias the client may use) and the model it
    resolves to do.
    """
    if not allowed(client, default or requested, resolved):
        assert client is not None
        if default:
            raise ProxyError(403, f"client '{client.name}' may not use model '{requested}': that name resolves to no model, so it falls to "
                                  f"default_model '{default}', which this client may not use", param="model", code="model_not_allowed")
        raise ProxyError(403, f"client '{client.name}' may not use model '{requested}'", param="model", code="model_not_allowed")
