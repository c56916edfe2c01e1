"""How llmproxy reaches a backend on a real network: forward proxies (environment and per backend),
NO_PROXY, a self-signed certificate (tls.ca, tls.verify), credentials in the url, a cap on
connections per origin, happy eyeballs and IDN hosts.

The forward proxy is a small one of the test's own on 127.0.0.1 (CONNECT tunnels and absolute-form
forwarding, optionally asking for Basic credentials); llmproxy is talked to with aiohttp's client,
which, unlike the SDKs, ignores the proxy variables the tests set.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import select
import shutil
import ssl
import subprocess
import sys
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from aiohttp import web

from conftest import FakeUpstream, Reply, fixture_bytes, openai_config
from llmproxy import cli
from llmproxy.config import ConfigError, load_config
from llmproxy.http1 import ConnectError, Pool, _origin
from llmproxy.netopts import EnvProxies, Net

BODY = fixture_bytes("openai/nonstream-text.json")
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "no_proxy", "all_proxy")
needs_openssl = pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command to make a certificate")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def set_env(monkeypatch, **values: str) -> None:
    """Exactly these proxy variables (llmproxy reads them when its pool is made, i.e. when the app starts)."""
    for k in PROXY_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in values.items():
        monkeypatch.setenv(k, v)


async def chat(p, model: str = "gpt") -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:  # trust_env off: the test's own calls never use the proxy
        async with s.post(p.url + "/v1/chat/completions", json={**CHAT, "model": model}) as r:
            return r.status, await r.json()


def error_text(data: dict) -> str:
    return data["error"]["message"]


class ForwardProxy:
    """An http:// forward proxy: CONNECT tunnels, absolute-form requests (rewritten to origin-form, then piped)."""

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.expect = basic(user, password) if user is not None else None
        self.connects: list[str] = []  # CONNECT targets
        self.forwarded: list[str] = []  # absolute-form request lines
        self.proxy_auth: list[str | None] = []  # Proxy-Authorization of each request it got
        self.refused = 0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self.tasks):
            t.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        up_writer = None
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            method, target, version = lines[0].split(" ")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            self.proxy_auth.append(headers.get("proxy-authorization"))
            if self.expect is not None and headers.get("proxy-authorization") != self.expect:
                self.refused += 1
                writer.write(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            if method == "CONNECT":
                self.connects.append(target)
                host, _, port = target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                self.forwarded.append(lines[0])
                u = urlsplit(target)
                up_reader, up_writer = await asyncio.open_connection(u.hostname, u.port or 80)
                origin_form = f"{method} {u.path or '/'}{'?' + u.query if u.query else ''} {version}"
                kept = [line for line in lines[1:] if not line.lower().startswith("proxy-authorization:")]
                up_writer.write("\r\n".join([origin_form, *kept]).encode("latin-1"))
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
            self.tasks.discard(asyncio.current_task())

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()


@pytest.fixture
async def forward_proxy():
    started: list[ForwardProxy] = []

    async def start(user: str | None = None, password: str | None = None) -> tuple[ForwardProxy, str]:
        fp = ForwardProxy(user, password)
        started.append(fp)
        return fp, await fp.start()

    yield start
    for fp in started:
        await fp.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a certificate")
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return str(crt), str(key)


@pytest.fixture
async def https_upstream(aiohttp_server, cert):
    """``fake, sni = await https_upstream(routes)``: a FakeUpstream on https://localhost:<port> with the self-signed cert."""

    async def start(routes: dict) -> tuple[FakeUpstream, list[str | None]]:
        sni: list[str | None] = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        ctx.sni_callback = lambda _sock, name, _ctx: sni.append(name)
        fake = FakeUpstream()
        fake.routes.update(routes)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        server = await aiohttp_server(app, ssl=ctx)
        fake.url = f"https://localhost:{server.port}"
        return fake, sni

    return start


ROUTES = {"/v1/chat/completions": Reply(BODY)}


# --------------------------------------------------------------------------- proxies


@needs_openssl
async def test_https_goes_through_a_connect_tunnel_with_the_real_hosts_sni(monkeypatch, proxy, forward_proxy, https_upstream, cert):
    fp, where = await forward_proxy()
    up, sni = await https_upstream(ROUTES)
    set_env(monkeypatch, HTTPS_PROXY=f"http://{where}")
    cfg = openai_config(up.url)
    cfg["backends"]["up"]["tls"] = {"ca": cert[0]}
    p = await proxy(cfg)
    for _ in range(2):
        status, data = await chat(p)
        assert status == 200 and data["choices"][0]["message"]["content"]
    port = up.url.rsplit(":", 1)[1]
    assert fp.connects == [f"localhost:{port}"]  # one tunnel, kept alive for the second request
    assert sni == ["localhost"] and fp.forwarded == []
    assert len(up.seen) == 2 and "Proxy-Authorization" not in up.seen[0].headers
    assert up.seen[0].headers["Host"] == f"localhost:{port}"


async def test_http_goes_through_the_proxy_in_absolute_form_with_its_credentials(monkeypatch, proxy, forward_proxy, upstream, caplog):
    caplog.set_level(logging.INFO, logger="llmproxy")
    fp, where = await forward_proxy("squid", "proxy-pass-9876")
    up = await upstream(ROUTES)
    set_env(monkeypatch, HTTP_PROXY=f"http://squid:proxy-pass-9876@{where}")
    p = await proxy(openai_config(up.url))
    status, _ = await chat(p)
    assert status == 200
    hostport = up.url.split("//")[1]
    assert fp.forwarded == [f"POST http://{hostport}/v1/chat/completions HTTP/1.1"]
    assert fp.proxy_auth == [basic("squid", "proxy-pass-9876")] and fp.connects == []
    assert up.seen[0].headers["Host"] == hostport and "Proxy-Authorization" not in up.seen[0].headers
    assert "proxy-pass-9876" not in caplog.text


async def test_no_proxy_and_a_backends_proxy_setting(monkeypatch, proxy, forward_proxy, upstream):
    fp, where = await forward_proxy()
    up = await upstream(ROUTES)
    # NO_PROXY names the upstream: direct, the proxy sees nothing
    set_env(monkeypatch, HTTP_PROXY=f"http://{where}", NO_PROXY="example.com, 127.0.0.1")
    p = await proxy(openai_config(up.url))
    assert (await chat(p))[0] == 200 and fp.forwarded == []
    # the environment names a dead proxy, the backend says none (or false): direct
    set_env(monkeypatch, HTTP_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
    for direct in ("none", False):
        cfg = openai_config(up.url)
        cfg["backends"]["up"]["proxy"] = direct
        assert (await chat(await proxy(cfg)))[0] == 200
    # no environment at all, the backend names the proxy: through it, NO_PROXY or not
    set_env(monkeypatch, NO_PROXY="*")
    cfg = openai_config(up.url)
    cfg["backends"]["up"]["proxy"] = f"http://{where}"
    assert (await chat(await proxy(cfg)))[0] == 200
    assert len(fp.forwarded) == 1 and len(up.seen) == 4


@pytest.mark.parametrize("no_proxy, host, port, bypass", [
    ("*", "api.openai.com", 443, True),
    ("openai.com", "api.openai.com", 443, True),
    (".openai.com", "openai.com", 443, True),
    ("openai.com", "notopenai.com", 443, False),
    ("api.example.com:8443", "api.example.com", 8443, True),
    ("api.example.com:8443", "api.example.com", 443, False),
    ("10.0.0.0/8, localhost", "10.1.2.3", 80, True),
    ("10.0.0.0/8", "192.168.1.2", 80, False),
    ("", "api.openai.com", 443, False),
])
def test_no_proxy_rules(monkeypatch, no_proxy, host, port, bypass):
    set_env(monkeypatch, HTTPS_PROXY="http://proxy.lan:3128", no_proxy=no_proxy)
    env = EnvProxies()
    assert env.bypass(host, port) is bypass
    assert (env.for_origin(host, port, True) is None) is bypass
    assert env.for_origin(host, port, False) is None  # no HTTP_PROXY: http goes direct


def test_proxy_variables_lower_case_first_and_no_https_proxies(monkeypatch, caplog):
    set_env(monkeypatch, HTTP_PROXY="http://upper:1", http_proxy="lower:3128", HTTPS_PROXY="https://tls-proxy:443")
    env = EnvProxies()
    assert env.http is not None and env.http.shown == "http://lower:3128"
    assert env.https is None and "HTTPS_PROXY ignored" in caplog.text


@needs_openssl
@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_a_proxy_refusing_is_a_502_naming_its_status_not_its_credentials(scheme, monkeypatch, proxy, forward_proxy, https_upstream,
                                                                             upstream, cert, caplog):
    caplog.set_level(logging.INFO, logger="llmproxy")
    fp, where = await forward_proxy("squid", "right-password")
    if scheme == "https":
        up, _ = await https_upstream(ROUTES)
        set_env(monkeypatch, HTTPS_PROXY=f"http://squid:wrong-password-4711@{where}")
    else:
        up = await upstream(ROUTES)
        set_env(monkeypatch)
    cfg = openai_config(up.url)
    cfg["backends"]["up"]["tls"] = {"ca": cert[0]}
    if scheme == "http":
        cfg["backends"]["up"]["proxy"] = f"http://squid:wrong-password-4711@{where}"
    cfg["models"]["gpt"]["max_attempts"] = 1
    p = await proxy(cfg)
    status, data = await chat(p)
    msg = error_text(data)
    assert status == 502 and f"proxy http://{where} answered 407" in msg, msg
    if scheme == "https":
        assert "to CONNECT localhost:" in msg
    assert fp.refused >= 1 and up.seen == []
    [row] = await p.rows()
    assert row["status"] == 502 and "answered 407" in row["error"]
    for text in (msg, json.dumps(row), caplog.text):
        assert "wrong-password-4711" not in text and "squid:" not in text


@pytest.mark.parametrize("value", ["https://squid:cfg-secret-77@proxy.lan:3128", "socks5://squid:cfg-secret-77@proxy.lan:1080", True])
def test_a_proxy_llmproxy_cannot_use_is_a_config_error_without_its_credentials(tmp_path, value):
    cfg = openai_config("https://api.example.com")
    cfg["backends"]["up"]["proxy"] = value
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith("backends.up.proxy: ") and "give an http:// URL" in str(e.value)
    assert "cfg-secret-77" not in str(e.value) and "squid" not in str(e.value)


# --------------------------------------------------------------------------- TLS


@needs_openssl
async def test_a_self_signed_backend_with_tls_ca_verify_false_and_without(proxy, https_upstream, cert, monkeypatch, tmp_path, capsys):
    set_env(monkeypatch)
    up, _ = await https_upstream(ROUTES)
    cfg = openai_config(up.url)
    cfg["backends"]["up"]["tls"] = {"ca": cert[0]}
    assert (await chat(await proxy(cfg)))[0] == 200
    status, data = await chat(await proxy(openai_config(up.url)))  # the system's store alone does not know it
    assert status == 502 and "certificate verify failed" in error_text(data)
    cfg["backends"]["up"]["tls"] = {"verify": False}
    assert (await chat(await proxy(cfg)))[0] == 200
    path = tmp_path / "insecure.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["check", "-c", str(path)]) == 0
    assert "warning: backends.up.tls.verify is false" in capsys.readouterr().out


def test_serve_warns_about_verify_false_at_start(tmp_path):
    cfg = openai_config("https://127.0.0.1:9")
    cfg["backends"]["up"]["tls"] = {"verify": False}
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "llmproxy", "serve", "-c", str(path), "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, deadline = "", time.monotonic() + 20
    try:
        while " on http://" not in out and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                out += proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
    assert "warning: backends.up.tls.verify is false" in out, out


@pytest.mark.parametrize("content, why", [(None, "No such file"), ("not a certificate\n", "no CA certificate in it")])
def test_a_bad_tls_ca_is_a_config_error_naming_backend_and_path(tmp_path, content, why):
    ca = tmp_path / "homelab-ca.pem"
    if content is not None:
        ca.write_text(content)
    cfg = openai_config("https://box.lan:8443")
    cfg["backends"]["up"]["tls"] = {"ca": "homelab-ca.pem"}  # relative to the file's folder
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"backends.up.tls.ca: cannot use {ca}" in str(e.value) and why in str(e.value)


# --------------------------------------------------------------------------- credentials in the url


async def test_url_credentials_become_basic_auth_and_are_never_shown(proxy, upstream, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="llmproxy")
    set_env(monkeypatch)
    up = await upstream(ROUTES)
    secret = "hunter2-url-secret"
    cfg = openai_config(up.url.replace("http://", f"http://alice:{secret}@"))
    del cfg["backends"]["up"]["headers"]
    cfg["backends"]["dead"] = {"api": "openai", "url": f"http://bob:{secret}@127.0.0.1:9/v1"}
    cfg["backends"]["bearer"] = {"api": "openai", "url": up.url.replace("http://", f"http://carol:{secret}@") + "/v1",
                                 "headers": {"Authorization": "Bearer sk-configured-wins-000"}}
    cfg["models"]["dead"] = {"backend": "dead", "max_attempts": 1}
    cfg["models"]["bearer"] = {"backend": "bearer"}
    p = await proxy(cfg)
    assert (await chat(p))[0] == 200
    assert up.seen[0].headers["Authorization"] == basic("alice", secret)
    assert (await chat(p, "bearer"))[0] == 200
    assert up.seen[1].headers["Authorization"] == "Bearer sk-configured-wins-000"
    status, data = await chat(p, "dead")
    assert status == 502 and "unreachable at http://127.0.0.1:9/v1" in error_text(data)
    async with aiohttp.ClientSession() as s:
        async with s.get(p.url + "/health") as r:
            health = await r.text()
    assert '"url": "http://127.0.0.1:9/v1"' in health
    rows = await p.rows()
    assert len(rows) == 3
    for text in (json.dumps(data), health, json.dumps(rows), caplog.text, repr(p.state.snap.config)):
        assert secret not in text and "alice" not in text and "bob:" not in text
    assert secret in p.state.snap.secrets  # and were it ever in a message, redact() would take it out


# --------------------------------------------------------------------------- max_connections


class CountingServer:
    """Answers each request after ``delay`` seconds; counts the connections open at once."""

    def __init__(self, delay: float) -> None:
        self.delay, self.open, self.most, self.requests = delay, 0, 0, 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most = max(self.most, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.requests += 1
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


async def test_max_connections_caps_the_connections_and_the_rest_wait(proxy, monkeypatch):
    set_env(monkeypatch)
    srv = CountingServer(0.2)
    url = await srv.start()
    cfg = openai_config(url)
    cfg["backends"]["up"]["max_connections"] = 2
    p = await proxy(cfg)
    results = await asyncio.gather(*(chat(p) for _ in range(5)))
    assert [s for s, _ in results] == [200] * 5
    assert srv.requests == 5 and srv.most == 2
    [slots] = p.state.upstream.pool._slots.values()
    assert slots.used == 0 and not slots.waiters and not p.state.upstream.pool._held  # every slot given back
    srv.server.close()


async def test_a_wait_for_a_connection_longer_than_the_connect_timeout_is_a_503(proxy, monkeypatch):
    set_env(monkeypatch)
    srv = CountingServer(1.0)
    url = await srv.start()
    cfg = openai_config(url)
    cfg["backends"]["up"].update(max_connections=1, timeout={"connect": 0.2})
    cfg["models"]["gpt"]["max_attempts"] = 1
    p = await proxy(cfg)
    (s1, _), (s2, data) = await asyncio.gather(chat(p), chat(p))
    assert sorted([s1, s2]) == [200, 503] and srv.most == 1
    err = data if s2 == 503 else _
    assert "all 1 connections (max_connections) stayed busy for 0.2 s" in error_text(err)
    srv.server.close()


def test_max_connections_default_is_documented(tmp_path):
    from llmproxy.config import schema
    from llmproxy.netopts import DEFAULT_MAX_CONNECTIONS

    assert schema()["$defs"]["backend"]["properties"]["max_connections"]["default"] == DEFAULT_MAX_CONNECTIONS == 4096
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(openai_config("http://x")))
    assert load_config(path).backends["up"].max_connections == 4096


# --------------------------------------------------------------------------- happy eyeballs, IDN


@needs_openssl
async def test_every_connection_is_opened_with_happy_eyeballs(monkeypatch, upstream, https_upstream, forward_proxy, cert):
    set_env(monkeypatch)
    up = await upstream(ROUTES)
    tls_up, _ = await https_upstream(ROUTES)
    fp, where = await forward_proxy()
    loop = asyncio.get_running_loop()
    real, calls = loop.create_connection, []

    async def spy(factory, host=None, port=None, **kw):  # noqa: ANN001, ANN202
        if factory.__module__ == "llmproxy.http1":  # not the test proxy's own
            calls.append((host, kw))
        return await real(factory, host, port, **kw)

    monkeypatch.setattr(loop, "create_connection", spy)
    pool = Pool()
    for url, net in [(up.url, None), (up.url, Net(proxy=f"http://{where}")),
                     (tls_up.url, Net(tls_ca=cert[0])), (tls_up.url, Net(proxy=f"http://{where}", tls_ca=cert[0]))]:
        resp = await pool.request("POST", url + "/v1/chat/completions", {}, b"{}", 5, net)
        assert resp.status == 200 and await resp.readany()
        resp.release()
    pool.close()
    assert [h for h, _ in calls] == ["127.0.0.1", "127.0.0.1", "localhost", "127.0.0.1"]
    assert len(fp.forwarded) == 1 and len(fp.connects) == 1
    assert all(kw["happy_eyeballs_delay"] == 0.25 and kw["interleave"] == 1 for _, kw in calls)


def test_idn_hosts_go_out_as_punycode():
    assert _origin("https://bücher.example/v1/chat?x=1") == (("xn--bcher-kva.example", 443, True), "/v1/chat?x=1", "xn--bcher-kva.example")
    assert _origin("http://user:pw@münchen.test:8080/v1") == (("xn--mnchen-3ya.test", 8080, False), "/v1", "xn--mnchen-3ya.test:8080")


async def test_an_idn_backend_connects_sends_sni_and_host_in_punycode(monkeypatch, upstream):
    set_env(monkeypatch)
    up = await upstream(ROUTES)
    port = int(up.url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    real, calls = loop.create_connection, []

    async def resolve_locally(factory, host=None, to_port=None, **kw):  # noqa: ANN001, ANN202 - "DNS": every name is 127.0.0.1
        calls.append((host, kw.get("server_hostname")))
        if kw.get("ssl"):
            raise ConnectionRefusedError(111, "no TLS server here")
        return await real(factory, "127.0.0.1", to_port, **kw)

    monkeypatch.setattr(loop, "create_connection", resolve_locally)
    pool = Pool()
    resp = await pool.request("POST", f"http://bücher.example:{port}/v1/chat/completions", {}, b"{}", 5)
    await resp.readany()
    resp.release()
    with pytest.raises(ConnectError):
        await pool.request("POST", "https://bücher.example/v1/chat/completions", {}, b"{}", 5)
    pool.close()
    assert up.seen[0].headers["Host"] == f"xn--bcher-kva.example:{port}"
    assert calls == [("xn--bcher-kva.example", None), ("xn--bcher-kva.example", "xn--bcher-kva.example")]
