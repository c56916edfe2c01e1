"""Limits and budgets, end to end: rpm and tpm of clients, groups and users; budgets on calendar periods; reload."""
from __future__ import annotations

import time

import anthropic
import aiohttp
import openai
import pytest
import yaml

from conftest import Reply, fixture_bytes, openai_config
from llmproxy.app import reload

KEY_A = "client-key-aaaaaaaa"
KEY_B = "client-key-bbbbbbbb"
MSGS = [{"role": "user", "content": "hi"}]
MSGS_BODY = {"model": "gpt", "messages": MSGS}
# openai/nonstream-text.json: 146 prompt + 3 completion tokens; at these prices 0.146 + 0.006 = 0.152 USD a request
PRICE = {"input": 1000, "output": 2000}
COST = 0.152


def config(url: str, clients: list[dict], groups: dict | None = None) -> dict:
    cfg = openai_config(url, models={"gpt": {"backend": "up", "price": PRICE}})
    cfg["access"] = {"clients": clients}
    if groups:
        cfg["access"]["groups"] = groups
    return cfg


class Clock:
    """Wall time plus an offset the test moves forward (windows and budget periods read it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def started(upstream, proxy, clients, groups=None):  # noqa: ANN001, ANN201
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    p = await proxy(config(up.url, clients, groups))
    clock = p.state.quota.clock = Clock()
    return p, clock


async def test_rpm_hit_and_recovered_with_headers_in_each_door(upstream, proxy):
    p, clock = await started(upstream, proxy, [{"name": "script", "key": KEY_A, "rpm": 2}])
    c = p.openai(api_key=KEY_A)
    for _ in range(2):
        await c.chat.completions.create(model="gpt", messages=MSGS)
    with pytest.raises(openai.RateLimitError) as e:
        await c.chat.completions.create(model="gpt", messages=MSGS)
    h = e.value.response.headers
    assert 1 <= int(h["retry-after"]) <= 60
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("2", "0")
    assert "rate limit of client 'script' reached (rpm 2)" in e.value.message
    a = anthropic.AsyncAnthropic(base_url=p.url, api_key=KEY_A, max_retries=0)
    p.clients.append(a)
    with pytest.raises(anthropic.RateLimitError) as ea:  # the same limit, in Anthropic's shape
        await a.messages.create(model="gpt", max_tokens=5, messages=MSGS)
    assert ea.value.body["error"]["type"] == "rate_limit_error" and ea.value.response.headers["retry-after"]
    clock.offset += 120  # two windows later: the requests fell out of the window
    await c.chat.completions.create(model="gpt", messages=MSGS)
    rows = await p.rows()
    assert [r["status"] for r in rows] == [200, 200, 429, 429, 200]


def test_window_is_sliding():
    from llmproxy.quota import Window

    w = Window(100.0)
    for t in (100.2, 100.7, 130.5):
        w.add(t, 1)
    assert w.wait(131.0, 1, 3) == pytest.approx(29.0)  # the two of second 100 leave the window at 160
    assert w.wait(159.9, 1, 3) > 0 and w.wait(160.0, 1, 3) == 0 and w.level(160.0) == 1
    w.add(160.0, 10)
    w.add(160.5, -4)  # an estimate corrected down
    assert w.level(160.5) == 7 and w.wait(160.5, 50, 9) == pytest.approx(59.5)  # more than the limit: an empty window
    assert w.level(500.0) == 0


async def test_group_rpm_counts_every_client_of_the_group(upstream, proxy):
    p, clock = await started(upstream, proxy, [{"name": "mum", "key": KEY_A, "group": "family"},
                                               {"name": "kid", "key": KEY_B, "group": "family", "rpm": 10}],
                             groups={"family": {"rpm": 3}})
    a, b = p.openai(api_key=KEY_A), p.openai(api_key=KEY_B)
    await a.chat.completions.create(model="gpt", messages=MSGS)
    await b.chat.completions.create(model="gpt", messages=MSGS)
    await a.chat.completions.create(model="gpt", messages=MSGS)
    with pytest.raises(openai.RateLimitError) as e:
        await b.chat.completions.create(model="gpt", messages=MSGS)
    assert "group 'family'" in e.value.message and e.value.response.headers["x-ratelimit-limit-requests"] == "3"
    rows = await p.rows()
    assert {r["client_group"] for r in rows} == {"family"}


async def test_tpm_counts_the_estimate_and_then_the_real_usage(upstream, proxy):
    p, clock = await started(upstream, proxy, [{"name": "script", "key": KEY_A, "tpm": 200}])
    c = p.openai(api_key=KEY_A)
    await c.chat.completions.create(model="gpt", messages=MSGS)  # ~9 estimated, then 149 real
    assert p.state.quota.windows[(("client", "script"), "tpm")].level(clock()) == pytest.approx(149, abs=1)
    await c.chat.completions.create(model="gpt", messages=MSGS)  # 149 + ~9 fits, then 298
    with pytest.raises(openai.RateLimitError) as e:
        await c.chat.completions.create(model="gpt", messages=MSGS)
    h = e.value.response.headers
    assert h["x-ratelimit-limit-tokens"] == "200" and h["x-ratelimit-remaining-tokens"] == "0" and int(h["retry-after"]) > 0
    assert "tpm 200" in e.value.message
    clock.offset += 120
    await c.chat.completions.create(model="gpt", messages=MSGS)


async def test_budget_crossed_mid_day_for_a_client_and_back_next_day(upstream, proxy):
    p, clock = await started(upstream, proxy, [{"name": "cron", "key": KEY_A, "budget": {"usd": 0.3, "per": "day"}}])
    c = p.openai(api_key=KEY_A)
    await c.chat.completions.create(model="gpt", messages=MSGS)
    await c.chat.completions.create(model="gpt", messages=MSGS)  # spent 0.152 < 0.3: let in, and its stream not cut
    with pytest.raises(openai.RateLimitError) as e:
        await c.chat.completions.create(model="gpt", messages=MSGS)
    assert e.value.code == "insufficient_quota" and e.value.type == "insufficient_quota"
    assert "budget of client 'cron' ($0.30 per day) is used up: $0.3040 spent since" in e.value.message
    assert "it resets at" in e.value.message and int(e.value.response.headers["retry-after"]) <= 86400
    rows = await p.rows()
    assert sum(r["cost_usd"] or 0 for r in rows) == pytest.approx(2 * COST)
    # a restart rebuilds the spend from the log
    p2 = await proxy(config(p.url, [{"name": "cron", "key": KEY_A, "budget": {"usd": 0.3, "per": "day"}}]))
    assert p2.state.quota.spent(("client", "cron"), "day", time.time())[0] == pytest.approx(2 * COST)
    clock.offset += 86400  # the next day (UTC): a new period
    await c.chat.completions.create(model="gpt", messages=MSGS)


async def test_group_budget_with_cache_priced_anthropic_relay(upstream, proxy):
    """Two clients of a group on an Anthropic relay; the exact cost of cache reads and writes fills the group's budget."""
    up = await upstream({"/v1/messages": Reply(fixture_bytes("anthropic/nonstream-cache-usage.json"))})
    price = {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}
    cost = (3 * 3 + 1111 * 0.3 + 418 * 3.75 + 33 * 15) / 1_000_000
    cfg = {"backends": {"anth": {"api": "anthropic", "url": up.url, "headers": {"x-api-key": "sk-ant-upstream-0123456789"}}},
           "models": {"claude": {"backend": "anth", "price": price}},
           "access": {"groups": {"family": {"budget": {"usd": 0.004, "per": "month"}}},
                      "clients": [{"name": "laptop", "key": KEY_A, "group": "family"}, {"name": "webui", "key": KEY_B, "group": "family"}]}}
    p = await proxy(cfg)
    a = anthropic.AsyncAnthropic(base_url=p.url, api_key=KEY_A, max_retries=0)
    b = anthropic.AsyncAnthropic(base_url=p.url, api_key=KEY_B, max_retries=0)
    p.clients += [a, b]
    await a.messages.create(model="claude", max_tokens=50, messages=MSGS)
    [row] = await p.rows()
    assert row["cost_usd"] == pytest.approx(cost)  # 0.0024048
    await b.messages.create(model="claude", max_tokens=50, messages=MSGS)
    with pytest.raises(anthropic.RateLimitError) as e:
        await a.messages.create(model="claude", max_tokens=50, messages=MSGS)
    assert "insufficient_quota" in e.value.message and "group 'family'" in e.value.message and "$0.0048 spent" in e.value.message
    assert e.value.body["error"]["type"] == "rate_limit_error"


async def test_per_user_limits_behind_open_webui_headers(upstream, proxy):
    p, clock = await started(upstream, proxy, [{"name": "open-webui", "key": KEY_A, "rpm": 100,
                                                "per_user": {"rpm": 1, "budget": {"usd": 0.1, "per": "day"}}}])

    def user(uid: str, name: str) -> openai.AsyncOpenAI:
        return p.openai(api_key=KEY_A, default_headers={"X-OpenWebUI-User-Id": uid, "X-OpenWebUI-User-Name": name,
                                                         "X-OpenWebUI-User-Email": f"{uid}@home.lan", "X-OpenWebUI-Chat-Id": "chat-1"})

    ann, bob = user("u-ann", "J%C3%B6rg%20Ann"), user("u-bob", "Bob")
    await ann.chat.completions.create(model="gpt", messages=MSGS)
    with pytest.raises(openai.RateLimitError) as e:
        await ann.chat.completions.create(model="gpt", messages=MSGS)
    assert "user 'Jörg Ann' (u-ann) of client 'open-webui'" in e.value.message
    await bob.chat.completions.create(model="gpt", messages=MSGS)  # another user: his own limits
    clock.offset += 120
    with pytest.raises(openai.RateLimitError) as e:  # ann's rpm recovered, but her day's budget (0.1) is spent (0.152)
        await ann.chat.completions.create(model="gpt", messages=MSGS)
    assert e.value.code == "insufficient_quota" and "user 'Jörg Ann' (u-ann)" in e.value.message
    rows = await p.rows()
    assert (rows[0]["user_id"], rows[0]["user_name"], rows[0]["user_email"], rows[0]["chat_id"]) == ("u-ann", "Jörg Ann", "u-ann@home.lan", "chat-1")
    assert [r["user_id"] for r in rows] == ["u-ann", "u-ann", "u-bob", "u-ann"]


async def test_reload_lowers_a_limit_keeps_counters_and_drops_a_removed_client(upstream, proxy):
    p, clock = await started(upstream, proxy, [{"name": "script", "key": KEY_A, "rpm": 5, "budget": {"usd": 1, "per": "month"}},
                                               {"name": "old", "key": KEY_B}])
    c, old = p.openai(api_key=KEY_A), p.openai(api_key=KEY_B)
    for _ in range(2):
        await c.chat.completions.create(model="gpt", messages=MSGS)
    await old.chat.completions.create(model="gpt", messages=MSGS)
    cfg = yaml.safe_load(p.path.read_text())
    cfg["access"]["clients"] = [{"name": "script", "key": KEY_A, "rpm": 2, "budget": {"usd": 0.4, "per": "month"}}]
    p.path.write_text(yaml.safe_dump(cfg))
    assert await reload(p.app)
    with pytest.raises(openai.RateLimitError) as e:  # the 2 requests before the reload count against the new rpm
        await c.chat.completions.create(model="gpt", messages=MSGS)
    assert "rpm 2" in e.value.message
    clock.offset += 120
    await c.chat.completions.create(model="gpt", messages=MSGS)  # 0.304 spent < 0.4
    with pytest.raises(openai.RateLimitError) as e:  # the spend before the reload counts against the new budget
        await c.chat.completions.create(model="gpt", messages=MSGS)
    assert e.value.code == "insufficient_quota"
    with pytest.raises(openai.AuthenticationError):
        await old.chat.completions.create(model="gpt", messages=MSGS)


async def test_check_no_longer_calls_limits_not_active(tmp_path):
    from llmproxy.config import load_config

    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config("http://127.0.0.1:9", [{"name": "a", "key": KEY_A, "rpm": 1, "tpm": 9, "budget": {"usd": 1}}])))
    cfg = load_config(path)
    assert cfg.pending == () and cfg.clients[0].limits.budget.per == "month"
    cfg_bad = config("http://127.0.0.1:9", [{"name": "a", "key": KEY_A, "group": "famly"}], groups={"family": {"rpm": 1}})
    path.write_text(yaml.safe_dump(cfg_bad))
    from llmproxy.config import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'family'"):
        load_config(path)


async def test_signed_open_webui_user_jwt(upstream, proxy):
    import jwt

    secret = "owui-jwt-secret-0123456789abcdefghij"
    p, clock = await started(upstream, proxy, [{"name": "open-webui", "key": KEY_A, "user_jwt_secret": secret, "per_user": {"rpm": 1}}])

    def token(sub: str, *, key: str = secret, exp: float = 600, iss: str = "open-webui") -> str:
        claims = {"sub": sub, "name": "Ann Example", "email": f"{sub}@home.lan", "role": "user", "iss": iss, "exp": int(time.time() + exp)}
        return jwt.encode(claims, key, algorithm="HS256")

    forged = {"X-OpenWebUI-User-Id": "someone-else", "X-OpenWebUI-User-Name": "Mallory"}
    ann = p.openai(api_key=KEY_A, default_headers={**forged, "X-OpenWebUI-User-Jwt": token("u-ann")})
    await ann.chat.completions.create(model="gpt", messages=MSGS)
    with pytest.raises(openai.RateLimitError) as e:  # per_user keyed on the token's sub, not the plain header
        await ann.chat.completions.create(model="gpt", messages=MSGS)
    assert "user 'Ann Example' (u-ann)" in e.value.message
    with pytest.raises(openai.AuthenticationError) as e:  # plain headers, no token: with per_user limits, it would escape them
        await p.openai(api_key=KEY_A, default_headers=forged).chat.completions.create(model="gpt", messages=MSGS)
    assert "must carry Open-WebUI's signed X-OpenWebUI-User-Jwt" in e.value.message and e.value.code == "missing_user_token"
    for bad in (token("u-ann", exp=-10), token("u-ann", key="another-secret-0123456789abcdefghijk"), token("u-ann", iss="elsewhere"), "not.a.jwt"):
        with pytest.raises(openai.AuthenticationError) as e:
            await p.openai(api_key=KEY_A, default_headers={"X-OpenWebUI-User-Jwt": bad}).chat.completions.create(model="gpt", messages=MSGS)
        assert "X-OpenWebUI-User-Jwt is not valid for client 'open-webui'" in e.value.message
    rows = await p.rows()
    assert [(r["user_id"], r["user_name"], r["user_email"]) for r in rows[:3]] == [
        ("u-ann", "Ann Example", "u-ann@home.lan"), ("u-ann", "Ann Example", "u-ann@home.lan"), (None, None, None)]
    assert [r["status"] for r in rows] == [200, 429, 401, 401, 401, 401, 401]
    async with aiohttp.ClientSession() as s:  # the model list needs no user (Open-WebUI's connection check sends none)
        async with s.get(p.url + "/v1/models", headers={"Authorization": f"Bearer {KEY_A}"}) as r:
            assert r.status == 200
    assert secret not in p.path.parent.joinpath("llmproxy.db").read_bytes().decode("latin-1")


async def test_a_networks_client_needs_no_key(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    p = await proxy(config(up.url, [{"name": "laptop", "key": KEY_A},
                                    {"name": "lan", "networks": ["10.0.0.0/8", "127.0.0.0/8"], "models": ["gp*"], "tags": ["lan"]}]))
    await p.openai(api_key="no-key-this-device-has").chat.completions.create(model="gpt", messages=MSGS)
    import aiohttp

    async with aiohttp.ClientSession() as s:  # no Authorization at all
        async with s.get(p.url + "/v1/models") as r:
            assert r.status == 200 and [m["id"] for m in (await r.json())["data"]] == ["gpt"]
    await p.openai(api_key=KEY_A).chat.completions.create(model="gpt", messages=MSGS)  # a valid key still names its client
    rows = await p.rows()
    assert [(r["client"], r["tags"], r["client_addr"]) for r in rows] == [("lan", "lan", "127.0.0.1"), ("laptop", None, "127.0.0.1")]
    far = await proxy(config(up.url, [{"name": "lan", "networks": ["10.0.0.0/8"]}]))
    with pytest.raises(openai.AuthenticationError):
        await far.openai(api_key="no-key-this-device-has").chat.completions.create(model="gpt", messages=MSGS)


async def test_budget_spend_outlives_the_rows_log_keep_days_deletes(upstream, proxy):
    """Budgets are rebuilt from the hourly rollup, which pruning leaves alone: deleting a period's rows never lowers its spend."""
    clients = [{"name": "cron", "key": KEY_A, "budget": {"usd": 1, "per": "month"}}]
    p, _ = await started(upstream, proxy, clients)
    c = p.openai(api_key=KEY_A)
    for _ in range(2):
        await c.chat.completions.create(model="gpt", messages=MSGS)
    await p.state.log.flush()
    assert await p.state.log.prune(time.time() + 1) == 2  # every row deleted, as log.keep_days does with old ones
    assert await p.rows() == []
    p2 = await proxy(config(p.url, clients))  # a restart
    for per in ("day", "week", "month"):
        assert p2.state.quota.spent(("client", "cron"), per, time.time())[0] == pytest.approx(2 * COST)


async def test_signed_user_jwt_from_a_clock_a_little_ahead(upstream, proxy):
    """Open-WebUI stamps ``iat`` with its own clock: a host a few seconds ahead of llmproxy's must not be a 401
    on every request; an expired token still is, and its message points at the clocks, not at the secret."""
    import jwt

    secret = "owui-jwt-secret-0123456789abcdefghij"
    p, clock = await started(upstream, proxy, [{"name": "open-webui", "key": KEY_A, "user_jwt_secret": secret}])
    now = int(time.time())

    def token(iat: int, exp: int) -> str:  # what Open-WebUI 0.12's _mint_forward_user_jwt sends
        claims = {"sub": "u-ann", "email": "ann@home.lan", "name": "Ann", "role": "user", "iss": "open-webui", "iat": iat, "exp": exp}
        return jwt.encode(claims, secret, algorithm="HS256")

    ahead = p.openai(api_key=KEY_A, default_headers={"X-OpenWebUI-User-Jwt": token(now + 5, now + 305)})
    await ahead.chat.completions.create(model="gpt", messages=MSGS)
    with pytest.raises(openai.AuthenticationError) as e:
        await p.openai(api_key=KEY_A, default_headers={"X-OpenWebUI-User-Jwt": token(now - 310, now - 10)}).chat.completions.create(
            model="gpt", messages=MSGS)
    assert "expired" in e.value.message and "clock" in e.value.message and "FORWARD_USER_INFO_HEADER_JWT_SECRET" not in e.value.message
    rows = await p.rows()
    assert [(r["status"], r["user_id"]) for r in rows] == [(200, "u-ann"), (401, None)]


async def test_a_user_over_a_limit_is_told_by_name(upstream, proxy):
    """Open-WebUI shows the 429's message to the person in the chat: it names them, not only their UUID."""
    p, clock = await started(upstream, proxy, [{"name": "open-webui", "key": KEY_A, "per_user": {"rpm": 1, "budget": {"usd": 0.2, "per": "day"}}}])
    uid = "c37bcb8b-06a6-4ee6-95db-5d98634bf722"
    bob = p.openai(api_key=KEY_A, default_headers={"X-OpenWebUI-User-Id": uid, "X-OpenWebUI-User-Name": "Bob M%C3%BCller"})
    await bob.chat.completions.create(model="gpt", messages=MSGS)
    with pytest.raises(openai.RateLimitError) as e:
        await bob.chat.completions.create(model="gpt", messages=MSGS)
    assert f"rate limit of user 'Bob Müller' ({uid}) of client 'open-webui' reached (rpm 1)" in e.value.message
    clock.offset += 61
    await bob.chat.completions.create(model="gpt", messages=MSGS)  # $0.304 of $0.20 now
    clock.offset += 61
    with pytest.raises(openai.RateLimitError) as e:
        await bob.chat.completions.create(model="gpt", messages=MSGS)
    assert e.value.code == "insufficient_quota" and f"the budget of user 'Bob Müller' ({uid}) of client 'open-webui' ($0.20 per day)" in e.value.message
    nameless = p.openai(api_key=KEY_A, default_headers={"X-OpenWebUI-User-Id": "u-ann"})
    await nameless.chat.completions.create(model="gpt", messages=MSGS)
    with pytest.raises(openai.RateLimitError) as e:
        await nameless.chat.completions.create(model="gpt", messages=MSGS)
    assert "rate limit of user 'u-ann' of client 'open-webui'" in e.value.message


async def test_one_side_of_the_signed_mode_forgotten_is_said_once(upstream, proxy, caplog):
    """Open-WebUI with FORWARD_USER_INFO_HEADER_JWT_SECRET sends only X-OpenWebUI-User-Jwt, no plain headers: a client
    without user_jwt_secret takes its user from the token unverified (as it trusts plain headers) rather than losing every
    user and their per_user limits, and says once to set the secret. The other way round (plain headers at a client that
    verifies) stays unattributed, and is said once too."""
    import logging

    import jwt

    caplog.set_level(logging.WARNING, logger="llmproxy")
    p, clock = await started(upstream, proxy, [{"name": "open-webui", "key": KEY_A, "per_user": {"rpm": 1}},
                                               {"name": "signed", "key": KEY_B, "user_jwt_secret": "owui-jwt-secret-0123456789abcdefghij"}])
    now = int(time.time())
    claims = {"sub": "u-ann", "email": "ann@home.lan", "name": "Ann Müller", "role": "user", "iss": "open-webui", "iat": now, "exp": now + 300}
    ann = p.openai(api_key=KEY_A, default_headers={"X-OpenWebUI-User-Jwt": jwt.encode(claims, "some-other-secret-0123456789abcdef", algorithm="HS256")})
    await ann.chat.completions.create(model="gpt", messages=MSGS)
    with pytest.raises(openai.RateLimitError) as e:  # her per_user limit applies
        await ann.chat.completions.create(model="gpt", messages=MSGS)
    assert "user 'Ann Müller' (u-ann)" in e.value.message
    garbled = p.openai(api_key=KEY_A, default_headers={"X-OpenWebUI-User-Jwt": "not.a.jwt"})
    await garbled.chat.completions.create(model="gpt", messages=MSGS)  # unreadable: no user, as without headers
    plain = p.openai(api_key=KEY_B, default_headers={"X-OpenWebUI-User-Id": "u-bob", "X-OpenWebUI-User-Name": "Bob"})
    for _ in range(2):
        await plain.chat.completions.create(model="gpt", messages=MSGS)
    rows = await p.rows()
    assert [(r["client"], r["status"], r["user_id"], r["user_name"], r["user_email"]) for r in rows] == [
        ("open-webui", 200, "u-ann", "Ann Müller", "ann@home.lan"), ("open-webui", 429, "u-ann", "Ann Müller", "ann@home.lan"),
        ("open-webui", 200, None, None, None), ("signed", 200, None, None, None), ("signed", 200, None, None, None)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "client 'open-webui'" in warnings[0] and "user_jwt_secret" in warnings[0] and "unverified" in warnings[0]
    assert "client 'signed'" in warnings[1] and "FORWARD_USER_INFO_HEADER_JWT_SECRET" in warnings[1]


async def test_signed_user_read_without_access_section(upstream, proxy):
    import jwt

    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    p = await proxy(openai_config(up.url, models={"gpt": {"backend": "up"}}))
    token = jwt.encode({"sub": "u-ann", "name": "Ann", "email": "ann@home.lan", "iss": "open-webui", "exp": int(time.time()) + 300}, "s" * 32)
    await p.openai(default_headers={"X-OpenWebUI-User-Jwt": token}).chat.completions.create(model="gpt", messages=MSGS)
    assert [(r["client"], r["user_id"], r["user_name"]) for r in await p.rows()] == [(None, "u-ann", "Ann")]


def _quota_on(tmp_path, access: str):  # noqa: ANN001, ANN202
    """A Quota on a config whose ``access:`` section is ``access``, with a clock the test moves: (config, now, quota)."""
    from llmproxy.config import load_config
    from llmproxy.quota import Quota

    (tmp_path / "router.yaml").write_text("backends: {up: {api: openai, url: 'http://127.0.0.1:9/v1'}}\nmodels: {gpt: {backend: up}}\n"
                                          f"access: {access}\n")
    now = [1_796_300_000.0]
    return load_config(tmp_path / "router.yaml"), now, Quota(clock=lambda: now[0])


def test_budget_checked_on_every_admission(tmp_path):
    """With the client's plan kept between requests, a zero budget still refuses the first request, a budget crossed
    refuses the next, and a new period (the clock past its end) starts afresh."""
    from llmproxy.errors import ProxyError

    cfg, now, q = _quota_on(tmp_path, "{clients: [{name: free, key: k-free-0123456789, budget: {usd: 0}},"
                                      " {name: cron, key: k-cron-0123456789, budget: {usd: 1, per: day}}]}")
    free, cron = cfg.clients
    for _ in range(2):
        with pytest.raises(ProxyError) as e:
            q.admit(cfg, free, None, {})
        assert e.value.code == "insufficient_quota"
    q.admit(cfg, cron, None, {})  # (the period is known from here on)
    q.add_cost("cron", None, None, 0.6, now[0])
    q.admit(cfg, cron, None, {})
    q.add_cost("cron", None, None, 0.6, now[0])
    with pytest.raises(ProxyError):
        q.admit(cfg, cron, None, {})
    now[0] += 86_400  # the next day
    q.admit(cfg, cron, None, {})


def test_a_refused_request_counts_in_no_window(tmp_path):
    """Each window counts a request as it is checked; when a later one (the group's) has no room, the ones that
    counted it (the client's rpm and tpm) take it back, and the 429 names the longest wait."""
    from llmproxy.errors import ProxyError

    cfg, now, q = _quota_on(tmp_path, "{groups: {fam: {rpm: 2}}, clients: [{name: kid, key: k-kid-0123456789, group: fam, rpm: 10, tpm: 1000}]}")
    (kid,) = cfg.clients
    q.count_tokens = lambda body: 100  # (every request: 100 prompt tokens)
    for _ in range(2):
        q.admit(cfg, kid, None, MSGS_BODY)
    for _ in range(3):
        with pytest.raises(ProxyError) as e:
            q.admit(cfg, kid, None, MSGS_BODY)
        assert "group 'fam'" in e.value.message and e.value.retry_after == pytest.approx(60)
    levels = {k[1]: w.level(now[0]) for k, w in q.windows.items() if k[0] == ("client", "kid")}
    assert levels == {"rpm": 2, "tpm": 200} and q.windows[(("group", "fam"), "rpm")].level(now[0]) == 2
    now[0] += 60  # a window later all have room again
    q.admit(cfg, kid, None, MSGS_BODY)
