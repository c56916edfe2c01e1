"""llmproxy's own HTTP/1.1 client (``llmproxy.http1``) against scripted servers on real sockets.

Each raw server answers every request on a connection with the next scripted reply (bytes, cut
at the given points), and counts connections, so body framing, keep-alive reuse, a stale
keep-alive, broken and non-HTTP answers, TLS and back-pressure are all checked on the wire.
"""
from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess

import openai
import pytest

from conftest import Raw, Reply, fixture_bytes, openai_config, reply
from llmproxy import http1
from llmproxy.http1 import ConnectError, Pool, ResponseError

SSE = fixture_bytes("openai/stream-text-usage.sse")


async def fetch(pool: Pool, url: str, body: bytes | None = b"{}") -> tuple[int, bytes, http1.Response]:
    resp = await pool.request("POST" if body is not None else "GET", url, {"Content-Type": "application/json"}, body, 5)
    parts = []
    while data := await resp.readany():
        parts.append(data)
    resp.release()
    return resp.status, b"".join(parts), resp


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("split", [None, 1, "random"])
async def test_body_framings_at_every_cut(framing, split):
    raw = Raw([reply(SSE, framing=framing)], split=split)
    url = await raw.start()
    pool = Pool()
    status, body, resp = await fetch(pool, url + "/v1/chat/completions")
    assert status == 200 and body == SSE and resp.headers["Content-Type"] == "application/json"
    assert raw.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    pool.close()
    await raw.stop()


async def test_keep_alive_reuses_one_connection_and_close_does_not():
    raw = Raw([reply(b'{"n":%d}' % i, framing="chunked" if i % 2 else "length") for i in range(5)])
    url = await raw.start()
    pool = Pool()
    for i in range(5):
        assert (await fetch(pool, url + "/x"))[1] == b'{"n":%d}' % i
    assert raw.connections == 1
    half = Raw([reply(SSE, framing="chunked"), reply(b"{}")], split=500, gap=0.01)
    url2 = await half.start()
    resp = await pool.request("POST", url2 + "/x", {}, b"{}", 5)
    assert await resp.readany()
    resp.release()  # released half-read: the connection must not carry the next request
    assert (await fetch(pool, url2 + "/x"))[1] == b"{}" and half.connections == 2
    pool.close()
    await raw.stop()
    await half.stop()


async def test_a_keep_alive_the_server_closed_is_replaced():
    raw = Raw([reply(b'{"a":1}'), reply(b'{"b":2}')], close_after=True)
    url = await raw.start()
    pool = Pool()
    assert (await fetch(pool, url + "/x"))[1] == b'{"a":1}'
    await asyncio.sleep(0.05)  # the server has closed its end by now
    assert (await fetch(pool, url + "/x"))[1] == b'{"b":2}'
    assert raw.connections == 2
    pool.close()
    await raw.stop()


async def test_a_request_on_a_keep_alive_that_dies_unanswered_goes_again_on_a_new_one():
    raw = Raw([reply(b'{"a":1}'), None, reply(b'{"b":2}')])
    url = await raw.start()
    pool = Pool()
    assert (await fetch(pool, url + "/x"))[1] == b'{"a":1}'
    assert (await fetch(pool, url + "/x"))[1] == b'{"b":2}'
    assert raw.connections == 2 and len(raw.requests) == 3
    fresh = Raw([None])  # a new connection that dies unanswered is an error, not a retry
    url = await fresh.start()
    with pytest.raises(ResponseError, match="before any response"):
        await fetch(pool, url + "/x")
    pool.close()
    await raw.stop()
    await fresh.stop()


async def test_informational_responses_are_skipped_and_gzip_is_decoded():
    packed = gzip.compress(SSE)
    raw = Raw([b"HTTP/1.1 100 Continue\r\n\r\n" + reply(packed, framing="chunked", extra=b"Content-Encoding: gzip\r\n")], split=7)
    url = await raw.start()
    pool = Pool()
    status, body, _ = await fetch(pool, url + "/x")
    assert status == 200 and body == SSE
    assert b"Accept-Encoding: gzip, deflate" in raw.requests[0]
    pool.close()
    await raw.stop()


@pytest.mark.parametrize("answer, message", [
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not a valid HTTP/1.1 response: Expected HTTP/"),
    (b"HTTP/1.1 200 OK\r\nbroken header line\r\n\r\n", "not a valid HTTP/1.1 response: Invalid header"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not a valid HTTP/1.1 response: Invalid character in chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n{\"cut", "connection closed"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnotgz", "does not decode"),
])
async def test_broken_answers_raise_response_error(answer, message):
    raw = Raw([answer], close_after=True)
    url = await raw.start()
    pool = Pool()
    with pytest.raises(ResponseError, match=message):
        await fetch(pool, url + "/x")
    pool.close()
    await raw.stop()


async def test_refused_and_header_injection():
    pool = Pool()
    raw = Raw([])
    url = await raw.start()
    await raw.stop()
    await asyncio.sleep(0.01)
    with pytest.raises(ConnectError):
        await fetch(pool, url + "/x")
    ok = Raw([reply(b"{}")])
    url = await ok.start()
    with pytest.raises(ValueError, match="line break"):
        await pool.request("POST", url + "/x", {"X-Evil": "a\r\nInjected: 1"}, b"{}", 5)
    pool.close()
    await ok.stop()


async def test_a_slow_reader_stops_the_socket_being_read():
    big = b"x" * (8 * http1.HIGH_WATER)
    raw = Raw([reply(big, framing="chunked")])
    url = await raw.start()
    pool = Pool()
    resp = await pool.request("POST", url + "/x", {}, b"{}", 5)
    await asyncio.sleep(0.3)  # nobody reads: the buffer stops near the high-water mark, not at 8 MiB
    assert resp._size < 2 * http1.HIGH_WATER + 256 * 1024
    got = 0
    while data := await resp.readany():
        got += len(data)
    assert got == len(big)
    resp.release()
    pool.close()
    await raw.stop()


def _self_signed(tmp_path) -> tuple[str, str]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command to make a certificate")
async def test_https_backend_end_to_end(tmp_path, monkeypatch, proxy):
    """An https backend with a certificate the system trusts (SSL_CERT_FILE) works; one it does not trust is a 502."""
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    body = fixture_bytes("openai/nonstream-text.json")
    raw = Raw([reply(body), reply(body)])
    url = await raw.start(server_ctx)
    monkeypatch.setattr(http1, "_TLS", None)
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    p = await proxy(openai_config(url))
    r = await p.openai().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content and raw.requests[0].startswith(b"POST /v1/chat/completions")
    monkeypatch.setattr(http1, "_TLS", None)
    monkeypatch.delenv("SSL_CERT_FILE")
    p2 = await proxy(openai_config(url))
    with pytest.raises(openai.APIStatusError) as e:
        await p2.openai().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502 and "certificate" in str(e.value.message).lower()
    monkeypatch.setattr(http1, "_TLS", None)
    await raw.stop()


async def test_a_redirect_is_a_clear_502_not_followed(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(b"", status=307, headers={"Location": "https://elsewhere.example/v1/chat/completions"})})
    p = await proxy(openai_config(up.url))
    with pytest.raises(openai.APIStatusError) as e:
        await p.openai().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502 and "redirect to https://elsewhere.example" in str(e.value.message)
    assert len(up.seen) == 1  # asked once, never followed
    [row] = await p.rows()
    assert row["status"] == 502 and "redirect" in row["error"]
    good = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    cfg = openai_config(up.url)
    cfg["backends"]["good"] = {"api": "openai", "url": good.url + "/v1"}
    cfg["models"]["gpt"] = {"routes": [{"backend": "up", "model": "x"}, {"backend": "good", "model": "x"}]}
    p2 = await proxy(cfg)
    r = await p2.openai().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content and len(up.seen) == 2 and len(good.seen) == 1  # on to the next route, once


async def test_a_configured_host_replaces_the_urls_and_each_header_goes_once(proxy):
    body = fixture_bytes("openai/nonstream-text.json")
    raw = Raw([reply(body), reply(body)])
    url = await raw.start()
    cfg = openai_config(url)
    cfg["backends"]["up"]["headers"] = {"host": "api.internal.example", "X-Team": "homelab"}
    p = await proxy(cfg)
    await p.openai().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    plain = await proxy(openai_config(url))
    await plain.openai().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    heads = [r.split(b"\r\n\r\n")[0].lower().split(b"\r\n")[1:] for r in raw.requests]
    names = [[h.split(b":")[0] for h in head] for head in heads]
    for n in names:
        assert len(n) == len(set(n)), n  # no header twice
    assert b"host: api.internal.example" in heads[0] and b"x-team: homelab" in heads[0]
    assert b"host: " + url.split("//")[1].encode() in heads[1]
    await raw.stop()
