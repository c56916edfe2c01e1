"""router.yaml → env expansion → schema → cross-checks → frozen objects; every error names the YAML path."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from llmproxy.config import ConfigError, load_config, schema
from llmproxy.resolve import Resolver

ROOT = Path(__file__).resolve().parent.parent
BASE = {"backends": {"oa": {"api": "openai", "url": "http://127.0.0.1:1/v1"}}, "models": {"m": {"backend": "oa"}}}


def load(tmp_path: Path, cfg: dict | str, env: dict | None = None):  # noqa: ANN201
    p = tmp_path / "router.yaml"
    p.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return load_config(p, env=env or {})


def error_of(tmp_path: Path, cfg: dict | str, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, cfg, env)
    return str(e.value)


def test_env_expansion(tmp_path):
    cfg = {**BASE, "backends": {"oa": {"api": "openai", "url": "${URL:-http://127.0.0.1:9/v1}", "headers": {"Authorization": "Bearer ${KEY}"}}}}
    c = load(tmp_path, cfg, {"KEY": "k123"})
    assert c.backends["oa"].url == "http://127.0.0.1:9/v1"
    assert dict(c.backends["oa"].headers) == {"Authorization": "Bearer k123"}
    msg = error_of(tmp_path, cfg, {})
    assert "backends.oa.headers.Authorization" in msg and "KEY" in msg


@pytest.mark.parametrize(
    "patch, expect",
    [
        ({"models": {"m": {"bakend": "oa"}}}, r"models\.m\.bakend: unknown field 'bakend'; did you mean 'backend'\?"),
        ({"backends": {"oa": {"api": "opnai", "url": "http://x"}}}, r"^backends\.oa\.api: must be one of openai, .*did you mean 'openai'\?$"),
        ({"models": {"m": {"backend": "oaa"}}}, r"models\.m\.backend: backend 'oaa' is not defined in backends; did you mean 'oa'\?"),
        ({"models": {"m": {"routes": [{"backend": "ao", "model": "x"}]}}}, r"models\.m\.routes\.0\.backend: backend 'ao' is not defined in backends$"),
        ({"models": {"m": {"backend": "oa"}, "s": {"routes": ["mm"]}}}, r"models\.s\.routes\.0: model 'mm' is not defined in models; did you mean 'm'\?"),
        ({"models": {"m": {"backend": "oa"}, "M": {"backend": "oa"}}}, r"models\.[mM]: clashes with '[mM]'"),
        ({"aliases": {"a": "b", "b": "a"}}, r"aliases\.a: alias cycle a → b → a"),
        ({"aliases": {"M": "m"}}, r"aliases\.M: clashes with model 'm'"),
        ({"models": {"m": {"backend": "oa", "routes": ["x"]}}}, r"models\.m: a model needs either 'backend'.*or 'routes'"),
        ({"listen": "nowhere"}, r"^listen: is not in the expected form"),
        ({"backends": {"oa": {"api": "openai", "url": "http://x", "timeout": {"idle": -1}}}}, r"^backends\.oa\.timeout\.idle: must be more than 0$"),
        ({"access": {"clients": [{"name": "a"}]}}, r"access\.clients\.0: a client needs exactly one of 'key', 'key_sha256' or 'networks'"),
        ({"backends": {"oa": {"api": "openai", "url": "http://x", "headers": {"A": "{key}"}}}}, r"backends\.oa\.headers: a header uses \{key\} but the backend has no 'keys:'"),
        ({"backends": {"oa": {"api": "openai", "url": "http://x", "keys": ["k-01"]}}}, r"^backends\.oa\.keys: keys are listed but no header template uses \{key\}$"),
        ({"backends": {"OA": {"api": "openai", "url": "http://y"}}}, r"^backends\.oa: clashes with 'OA' \(names are case-insensitive\)$"),
        ({"aliases": {"a": "m", "A": "m"}}, r"^aliases\.a: clashes with 'A' \(names are case-insensitive\)$"),
        ({"models": {"m": {"backend": "oa"}, "p/*": {"routes": ["m"]}}}, r"^models\.p/\*: a pattern cannot have routes; give it a backend$"),
        ({"models": {"m": {"backend": "oa"}, "a": {"routes": ["z"]}, "z": {"routes": ["m"]}}}, r"^models\.a\.routes\.0: model 'z' is not defined in models \(a route may only name a model with a backend, not one with routes\)$"),
        ({"access": {"clients": [{"name": "a", "key": "12345678"}, {"name": "A", "key": "87654321"}]}}, r"^access\.clients\.1\.name: client 'A' is listed twice$"),
    ],
)
def test_errors_name_the_path(tmp_path, patch, expect):
    cfg = json.loads(json.dumps(BASE))
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict) and k != "models":
            cfg[k].update(v)
        else:
            cfg[k] = v
    assert re.search(expect, error_of(tmp_path, cfg)), error_of(tmp_path, cfg)


def test_yaml_syntax_error_names_line(tmp_path):
    assert "line 3, column 1" in error_of(tmp_path, "backends:\n  oa: [unclosed\n")


def test_resolution_order(tmp_path):
    cfg = {
        "backends": {"oa": {"api": "openai", "url": "http://127.0.0.1:1/v1"}, "lo": {"api": "ollama", "url": "http://127.0.0.1:2", "passthrough": False}},
        "models": {"Exact": {"backend": "oa", "model": "up-exact"}, "pat/*": {"backend": "oa"}, "multi": {"routes": ["Exact", {"backend": "lo", "model": "llama"}]}},
        "aliases": {"a1": "a2", "a2": "exact"},
        "default_model": "exact",
    }
    r = Resolver(load(tmp_path, cfg))
    assert r.resolve("EXACT").targets[0].upstream_model == "up-exact"
    assert r.resolve("a1").name == "Exact"
    assert r.resolve("pat/some-model").targets[0].upstream_model == "some-model"
    assert r.resolve("oa/gpt-x").targets[0].upstream_model == "gpt-x"
    assert r.resolve("lo/llama").name == "Exact"  # passthrough: false → not routable, falls to default
    assert [t.backend.name for t in r.resolve("multi").targets] == ["oa", "lo"]
    assert r.resolve("whatever").name == "Exact"
    cfg.pop("default_model")
    r = Resolver(load(tmp_path, cfg))
    with pytest.raises(Exception) as e:
        r.resolve("exactt")
    assert e.value.status == 404 and "Exact" in e.value.message


def test_schema_documents_every_property():
    missing = []

    def walk(node, path):  # noqa: ANN001
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if "description" not in sub and "$ref" not in sub:
                    missing.append(f"{path}.{name}")
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{path}: additionalProperties must be false"
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(schema(), "$")
    assert schema()["$schema"].endswith("2020-12/schema")
    assert not missing, missing


@pytest.mark.parametrize("name", ["router.yaml", "contrib/demo.yaml"])
def test_shipped_configs_are_valid(name):
    c = load_config(ROOT / name, env={})
    assert c.models


def test_readme_example_validates(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## router.yaml in short\n\n```yaml\n(.*?)```", text, re.S).group(1)
    env = {"OPENAI_API_KEY": "x", "GROQ_KEY_A": "key-a", "GROQ_KEY_B": "key-b"}
    assert load(tmp_path, block, env).models


def test_pending_fields_are_reported_by_check(tmp_path):
    cfg = {**BASE, "log": {"bodies": True}, "backends": {"oa": {"api": "openai", "url": "http://x/v1", "discover": True}}}
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "llmproxy", "check", "-c", str(p)], capture_output=True, text=True)
    assert out.returncode == 0
    assert "m " in out.stdout and "→ oa (openai) m" in out.stdout
    assert "not yet active" not in out.stdout  # (log.bodies is stored now)
    assert "+ whatever oa lists (discover: true, every 600 s" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends: {}\nmodels: {}\n")
    out = subprocess.run([sys.executable, "-m", "llmproxy", "check", "-c", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "backends" in out.stderr


@pytest.mark.parametrize("name", ["Content-Length", "transfer-encoding", "Connection", "Accept-Encoding"])
def test_headers_llmproxy_sets_itself_are_refused(tmp_path, name):
    cfg = {**BASE, "backends": {"oa": {"api": "openai", "url": "http://127.0.0.1:9/v1", "headers": {name: "x"}}}}
    msg = error_of(tmp_path, cfg)
    assert f"backends.oa.headers.{name}" in msg and "sets this header itself" in msg


def test_first_fault_reported_is_the_same_section_by_section(tmp_path):
    """A file with faults in several sections reports one: backends, then model and alias names, then models, aliases, access."""
    cfg = {
        "backends": {"oa": {"api": "openai", "url": "http://x", "keys": ["k-01"]}},
        "models": {"m": {"backend": "nope"}, "s": {"routes": ["m"]}},
        "aliases": {"M": "m", "a": "b", "b": "a"},
        "access": {"clients": [{"name": "c", "key": "12345678"}, {"name": "c", "key": "87654321"}]},
    }
    expected = [
        ("backends.oa.keys: keys are listed but no header template uses {key}", lambda: cfg["backends"]["oa"].pop("keys")),
        ("aliases.M: clashes with model 'm' (names are case-insensitive)", lambda: cfg["aliases"].pop("M")),
        ("models.m.backend: backend 'nope' is not defined in backends", lambda: cfg["models"]["m"].update(backend="oa")),
        ("aliases.a: alias cycle a → b → a", lambda: cfg["aliases"].update(b="m")),
        ("access.clients.1.name: client 'c' is listed twice", lambda: cfg["access"]["clients"].pop()),
    ]
    for message, fix in expected:
        assert error_of(tmp_path, cfg) == message
        fix()
    assert load(tmp_path, cfg).models


def test_limits_and_log_bodies_are_active(tmp_path):
    cfg = {
        **BASE,
        "log": {"bodies": True},
        "access": {"admin_key": "admin-key-1", "clients": [{"name": "a", "key": "12345678", "rpm": 5, "budget": {"usd": 1}}, {"name": "b", "key": "87654321", "tpm": 9}]},
    }
    got = load(tmp_path, cfg)
    assert got.pending == () and got.log_bodies and got.log_bodies_max == 65536
    assert load(tmp_path, {**cfg, "log": {"bodies": True, "bodies_max_bytes": 4096}}).log_bodies_max == 4096


GROQ_SECRET = "gsk_live_0123456789abcdef"


def _groq_keys_as_string() -> dict:
    """The issue's slip: ``keys: "${GROQ_KEY}"``, a string where a list belongs."""
    return {"backends": {"groq": {"api": "openai", "url": "http://127.0.0.1:9/v1", "keys": "${GROQ_KEY}", "headers": {"Authorization": "Bearer {key}"}}},
            "models": {"m": {"backend": "groq"}}}


@pytest.mark.parametrize("where, value, expect", [
    ("keys", None, r"^backends\.groq\.keys: expected a list, not a string \(a YAML list"),
    ("api", "${GROQ_KEY}", r"^backends\.groq\.api: must be one of openai, anthropic, gemini, ollama$"),
    ("url", "${GROQ_KEY}", r"^backends\.groq\.url: is not in the expected form"),
    ("discover", "${GROQ_KEY}", r"^backends\.groq\.discover: expected true or false, not a string$"),
])
def test_schema_errors_name_the_path_never_the_value(tmp_path, where, value, expect):
    cfg = _groq_keys_as_string()
    if value is not None:
        cfg["backends"]["groq"]["keys"] = ["${GROQ_KEY}"]
        cfg["backends"]["groq"][where] = value
    msg = error_of(tmp_path, cfg, {"GROQ_KEY": GROQ_SECRET})
    assert re.search(expect, msg), msg
    assert GROQ_SECRET not in msg and "gsk_" not in msg


def test_check_never_prints_a_value(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(_groq_keys_as_string()))
    out = subprocess.run([sys.executable, "-m", "llmproxy", "check", "-c", str(p)], capture_output=True, text=True,
                         env={**os.environ, "GROQ_KEY": GROQ_SECRET})
    assert out.returncode == 1 and "backends.groq.keys: expected a list, not a string" in out.stderr
    assert GROQ_SECRET not in out.stdout + out.stderr


async def test_reload_error_in_health_never_shows_a_value(tmp_path, proxy, monkeypatch):
    import aiohttp

    from llmproxy.app import reload

    p = await proxy(BASE)
    monkeypatch.setenv("GROQ_KEY", GROQ_SECRET)
    p.path.write_text(yaml.safe_dump(_groq_keys_as_string()))
    assert not await reload(p.app)
    async with aiohttp.ClientSession() as s, s.get(p.url + "/health") as r:
        text = await r.text()
    assert "backends.groq.keys: expected a list" in orjson.loads(text)["config"]["reload_error"] and GROQ_SECRET not in text


@pytest.mark.parametrize("value, where", [
    ("gsk_live_0123456789\r", "backends.groq.keys.0"),  # a Windows-style env file
    ("gsk_live_01234\n56789", "backends.groq.keys.0"),
])
def test_env_value_with_a_line_break_is_a_config_error(tmp_path, value, where):
    cfg = _groq_keys_as_string()
    cfg["backends"]["groq"]["keys"] = ["${GROQ_KEY}"]
    msg = error_of(tmp_path, cfg, {"GROQ_KEY": value})
    assert msg.startswith(f"{where}: environment variable GROQ_KEY has a line break in its value"), msg
    assert ("Windows line endings" in msg) == value.endswith("\r") and "gsk_live" not in msg
    cfg["backends"]["groq"]["headers"]["X-Org"] = "${ORG}"
    msg = error_of(tmp_path, cfg, {"GROQ_KEY": "gsk_live_0123456789", "ORG": "org-1\r"})
    assert msg.startswith("backends.groq.headers.X-Org: environment variable ORG has a line break"), msg


@pytest.mark.parametrize("header", ["Bearer \u201csk-live-0123456789\u201d", "Bearer sk-live\u200b0123456789", "Bearer sk-live\x000123"])
def test_header_value_that_cannot_be_sent_is_a_config_error(tmp_path, header):
    cfg = {**BASE, "backends": {"oa": {"api": "openai", "url": "http://127.0.0.1:9/v1", "headers": {"Authorization": "${KEY}"}}}}
    msg = error_of(tmp_path, cfg, {"KEY": header})
    assert msg.startswith("backends.oa.headers.Authorization: has a character that cannot go into an HTTP header"), msg
    assert "sk-live" not in msg
    assert load(tmp_path, cfg, {"KEY": "Bearer sk-live-0123456789"}).backends["oa"].headers == (("Authorization", "Bearer sk-live-0123456789"),)
