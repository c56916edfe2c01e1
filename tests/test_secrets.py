"""No configured secret leaves llmproxy: redacted by value, whatever its length, wherever an upstream echoes it."""
from __future__ import annotations

import base64

import aiohttp
import orjson
import pytest

from conftest import Reply, openai_config
from llmproxy.config import ConfigError, load_config
from llmproxy.headers import secrets_of

CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


async def _everything_visible(p, status: int, raw: bytes) -> str:  # noqa: ANN001
    """What a client, the log and /health show after one request: all of it, as one text."""
    async with aiohttp.ClientSession() as s, s.get(p.url + "/health") as r:
        health = await r.text()
    return raw.decode() + health + repr(await p.rows())


@pytest.mark.parametrize("backend, secret", [
    ({"headers": {"Authorization": "Bearer sk-9chars"}}, "sk-9chars"),  # under 12 characters: was echoed back
    ({"headers": {"x-api-key": "ak-short"}}, "ak-short"),
])
async def test_short_secret_echoed_by_upstream_never_leaks(upstream, proxy, backend, secret):
    body = orjson.dumps({"error": {"message": f"Incorrect API key provided: {secret}.", "type": "invalid_request_error", "code": "invalid_api_key"}})
    up = await upstream({"/v1/chat/completions": Reply(body, status=401)})
    cfg = openai_config(up.url)
    cfg["backends"]["up"] = {"api": "openai", "url": up.url + "/v1", **backend}
    p = await proxy(cfg)
    async with aiohttp.ClientSession() as s, s.post(p.url + "/v1/chat/completions", json=CHAT) as r:
        status, raw = r.status, await r.read()
    assert status == 401 and "Incorrect API key provided: ***." in orjson.loads(raw)["error"]["message"]
    assert secret in str(up.seen[0].headers)  # it was sent upstream...
    assert secret not in await _everything_visible(p, status, raw)  # ...and is nowhere else


def test_which_values_are_secrets(tmp_path):
    """Every value that may be a credential, by value; protocol headers, auth schemes and {key} templates are not."""
    path = tmp_path / "router.yaml"
    path.write_text(orjson.dumps({
        "backends": {
            "a": {"api": "anthropic", "url": "https://api.example", "headers": {"x-api-key": "ak-1234", "anthropic-version": "2023-06-01"}},
            "g": {"api": "openai", "url": "https://bob:pw-sekret@llm.example/v1", "keys": ["k-01", "k-02"], "headers": {"X-Api-Key": "{key}"}},
            "t": {"api": "openai", "url": "https://tok-abcdef@llm.example/v1", "headers": {"X-Flag": "on"}},
            "b": {"api": "openai", "url": "https://llm.example/v1", "headers": {"Authorization": "Basic dXNlcjpwdw=="}},
        },
        "models": {"m": {"backend": "a"}},
        "access": {"admin_key": "admin-key-1", "clients": [{"name": "c", "key": "client-1"}]},
    }).decode())
    got = set(secrets_of(load_config(path, env={})))
    # a url's user:password@ goes up as Basic credentials: the header, its token, and the password (or lone user) itself
    basic = {w for creds in (b"bob:pw-sekret", b"tok-abcdef:") for t in [base64.b64encode(creds).decode()] for w in (t, "Basic " + t)}
    assert got == {"ak-1234", "k-01", "k-02", "pw-sekret", "tok-abcdef", "Basic dXNlcjpwdw==", "dXNlcjpwdw==", "admin-key-1", "client-1", *basic}


@pytest.mark.parametrize("access, where", [
    ({}, "backends.g.keys.1: must be at least 4 characters long"),
    ({"admin_key": "adm"}, "access.admin_key: must be at least 8 characters long"),
])
def test_a_secret_too_short_to_redact_is_refused(tmp_path, access, where):
    """A key of 1-3 characters could not be taken out of messages without blanking ordinary words: refused at load."""
    path = tmp_path / "router.yaml"
    keys = ["k-01", "k-02"] if access else ["k-01", "abc"]
    path.write_text(orjson.dumps({"backends": {"g": {"api": "openai", "url": "http://x/v1", "keys": keys, "headers": {"Authorization": "Bearer {key}"}}},
                                  "models": {"m": {"backend": "g"}}, **({"access": access} if access else {})}).decode())
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert str(e.value) == where


def _first_event(name: str) -> bytes:
    from conftest import fixture_bytes

    return fixture_bytes(name).split(b"\n\n")[0] + b"\n\n"


SECRET = "sk-9chars"
# (front door path, backend api, upstream path, content type, the events before the error, the in-band error event)
MID_STREAM_ERRORS = {
    "openai": ("/v1/chat/completions", "openai", "/v1/chat/completions", "text/event-stream", lambda: _first_event("openai/stream-text-usage.sse"),
               b'data: {"error": {"message": "key sk-9chars was revoked", "type": "invalid_request_error"}}\n\n'),
    "anthropic": ("/v1/messages", "anthropic", "/v1/messages", "text/event-stream", lambda: _first_event("anthropic/stream-thinking.sse"),
                  b'event: error\ndata: {"type": "error", "error": {"type": "authentication_error", "message": "key sk-9chars was revoked"}}\n\n'),
    "ollama": ("/api/chat", "ollama", "/api/chat", "application/x-ndjson",
               lambda: b'{"model":"m","created_at":"2025-10-26T17:21:21Z","message":{"role":"assistant","content":"Yes"},"done":false}\n',
               b'{"error":"key sk-9chars was revoked"}\n'),
}


@pytest.mark.parametrize("door", list(MID_STREAM_ERRORS))
async def test_relay_mid_stream_error_event_is_redacted(upstream, proxy, door):
    """An upstream that echoes a key in an in-band error event: the client's stream and the row get ***; the events before pass as they came."""
    path, api, up_path, content_type, before, error_event = MID_STREAM_ERRORS[door]
    up = await upstream({up_path: Reply(before() + error_event, content_type=content_type)})
    url = up.url + "/v1" if api == "openai" else up.url
    header = {"x-api-key": SECRET} if api == "anthropic" else {"Authorization": f"Bearer {SECRET}"}
    p = await proxy({"backends": {"up": {"api": api, "url": url, "headers": header}}, "models": {"gpt": {"backend": "up"}}})
    body = {"model": "gpt", "stream": True, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s, s.post(p.url + path, json=body) as r:
        raw = await r.read()
    assert r.status == 200 and raw.startswith(before())
    assert SECRET not in raw.decode() and b"key *** was revoked" in raw
    [row] = await p.rows()
    assert row["error"] and "key *** was revoked" in row["error"] and SECRET not in repr(row)
