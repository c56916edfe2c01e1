"""How a backend is reached: through which proxy, trusting which certificates, over how many connections.

``Net`` is a backend's choice (from router.yaml, one instance per backend, built with the config);
``EnvProxies`` is the environment's (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY`` and their
lower-case spellings, read once when the pool is made).  The pool combines the two once per origin
and backend, never per request.

A proxy is only ever named by ``Proxy.shown`` (``http://host:port``): its credentials go into the
``Proxy-Authorization`` header and nowhere else.
"""
from __future__ import annotations

import base64
import ipaddress
import logging
import re
import ssl
from dataclasses import dataclass
from urllib.request import getproxies_environment, proxy_bypass_environment

from yarl import URL

# Per origin (and proxy): requests beyond it wait for a free connection.  High, because a stream holds its
# connection for minutes: 2,000 concurrent streams to one provider must not queue (the bench runs that many).
DEFAULT_MAX_CONNECTIONS = 4096
DIRECT = ""  # Net.proxy: no proxy, whatever the environment says
HAPPY_EYEBALLS_DELAY = 0.25  # seconds before the next address (IPv4 after a silent IPv6) is tried too

log = logging.getLogger("llmproxy")


@dataclass(frozen=True, slots=True, eq=False)
class Net:
    """A backend's network options.  Compared by identity: the pool keeps its plan per instance."""

    proxy: str | None = None  # None: from the environment; DIRECT; or http://[user:pass@]host:port
    tls_ca: str | None = None  # a PEM file trusted besides the system's CA store
    tls_verify: bool = True
    max_connections: int = DEFAULT_MAX_CONNECTIONS


@dataclass(frozen=True, slots=True, repr=False)
class Proxy:
    """An http:// forward proxy: CONNECT tunnels to https origins, absolute-form requests to http ones."""

    host: str
    port: int
    auth: str | None  # the Proxy-Authorization value, "Basic …"
    shown: str  # http://host:port, what messages name

    def __repr__(self) -> str:
        return f"Proxy({self.shown})"


def basic(user: str, password: str) -> str:
    """An ``Authorization``/``Proxy-Authorization`` value for user and password."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s'\"]*@")


def without_userinfo(text: str) -> str:
    """``text`` (a URL, or a message with URLs in it) with every ``user:password@`` taken out, otherwise as written."""
    return _USERINFO.sub(r"\1", text) if "@" in text else text


def parse_proxy(url: str) -> Proxy:
    """``http://[user:pass@]host[:port]`` (a bare ``host:port`` is taken as http://); ValueError, without the credentials, if not."""
    if "://" not in url:
        url = "http://" + url
    u = URL(url)
    if u.scheme != "http" or not u.raw_host:
        raise ValueError(f"{without_userinfo(url)}: llmproxy talks to http:// proxies only")
    host, port = u.raw_host, u.port or 80
    auth = basic(u.user or "", u.password or "") if u.raw_user is not None or u.raw_password is not None else None
    return Proxy(host, port, auth, f"http://{f'[{host}]' if ':' in host else host}:{port}")


def proxy_password(url: str | None) -> str | None:
    """The password in a proxy URL (for the secrets to redact), if any."""
    if not url:
        return None
    return URL(url if "://" in url else "http://" + url).password


class EnvProxies:
    """``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` as aiohttp's ``trust_env`` reads them (urllib's rules, lower case first),
    with ``host:port`` and CIDR entries in NO_PROXY too.  Read once, at construction."""

    def __init__(self) -> None:
        found = getproxies_environment()
        self.no = found.get("no", "")
        self.http = self._read(found, "http")
        self.https = self._read(found, "https")

    @staticmethod
    def _read(found: dict[str, str], scheme: str) -> Proxy | None:
        url = found.get(scheme)
        if not url:
            return None
        try:
            return parse_proxy(url)
        except ValueError as e:
            log.warning("%s_PROXY ignored: %s", scheme.upper(), e)  # as aiohttp does
            return None

    def for_origin(self, host: str, port: int, tls: bool) -> Proxy | None:
        """The proxy for this origin, None to go direct."""
        proxy = self.https if tls else self.http
        if proxy is None or self.bypass(host, port):
            return None
        return proxy

    def bypass(self, host: str, port: int) -> bool:
        """NO_PROXY names the host: ``*``, the host, a domain it is in (``example.com``, ``.example.com``), ``host:port``, or a CIDR range."""
        no = self.no
        if not no:
            return False
        env = {"no": no}
        if proxy_bypass_environment(host, env) or proxy_bypass_environment(f"{host}:{port}", env):
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        for entry in no.split(","):
            try:
                if "/" in entry and ip in ipaddress.ip_network(entry.strip(), strict=False):
                    return True
            except ValueError:
                continue
        return False


_CONTEXTS: dict[tuple[str | None, bool], ssl.SSLContext] = {}


def tls_context(ca: str | None, verify: bool, *, fresh: bool = False) -> ssl.SSLContext:
    """One SSLContext per (ca, verify): the system's CA store, plus ``ca`` when given; no checks at all when not ``verify``.

    ``fresh`` builds it again (a config load: the file may have changed); raises OSError or ssl.SSLError for a bad ``ca``.
    """
    key = (ca, verify)
    ctx = None if fresh else _CONTEXTS.get(key)
    if ctx is None:
        ctx = ssl.create_default_context()
        if ca:
            ctx.load_verify_locations(cafile=ca)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _CONTEXTS[key] = ctx
    return ctx
