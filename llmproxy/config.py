"""router.yaml → ${ENV} expansion → JSON Schema → cross-checks → frozen objects.

``load_config(path)`` is the only way in; it raises ``ConfigError`` naming the YAML path
(and, for a mistyped name, the closest valid one).  A reload calls exactly the same function.
"""
from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
import ssl
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import jsonschema
import yaml
from yarl import URL

from .netopts import DEFAULT_MAX_CONNECTIONS, DIRECT, Net, basic, parse_proxy, tls_context, without_userinfo

_HERE = Path(__file__).resolve().parent
# Installed: the copy the build put in the package (setup.py); in a checkout (editable install): schema/.
SCHEMA_PATH = next((p for p in (_HERE / "router.schema.json", _HERE.parent / "schema" / "router.schema.json") if p.is_file()), _HERE / "router.schema.json")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
TIMEOUT_DEFAULTS = {"connect": 10.0, "first_byte": 120.0, "idle": 60.0, "total": 600.0}
WEIGHT_DEFAULTS = {"errors": 4.0, "latency": 2.0, "load": 1.0, "cost": 1.0}  # strategy: auto


class ConfigError(Exception):
    """A bad router.yaml; the message names the YAML path and says what to do."""


@dataclass(frozen=True, slots=True)
class Timeout:
    connect: float
    first_byte: float
    idle: float
    total: float


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """``health_check:`` of a backend: a cheap request every ``interval`` seconds."""

    interval: float = 60.0
    timeout: float = 5.0
    model: str | None = None  # None: the model list; else the smallest completion of this upstream model


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    api: str
    url: str  # without trailing slash
    headers: tuple[tuple[str, str], ...]  # templates; ${ENV} already expanded, {key} left
    keys: tuple[str, ...]
    discover: bool
    passthrough: bool
    timeout: Timeout
    discover_interval: float = 600.0
    proxy: str | None = field(default=None, repr=False)  # None: HTTPS_PROXY/HTTP_PROXY/NO_PROXY; "" (DIRECT): none; else http://[user:pass@]host:port
    tls_ca: str | None = None  # absolute path of a PEM file trusted besides the system's CA store
    tls_verify: bool = True
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # per origin; more requests wait for a free connection
    responses: str = "translate"  # /v1/responses: "relay" (api: openai backends that serve it) or "translate" (through the hub)
    health_check: HealthCheck | None = None  # None: no active checks (the default)
    net: Net = field(init=False, repr=False, compare=False)  # the four above, as the pool takes them

    def __post_init__(self) -> None:
        object.__setattr__(self, "net", Net(self.proxy, self.tls_ca, self.tls_verify, self.max_connections))


@dataclass(frozen=True, slots=True)
class Route:
    """One concrete way to serve a model: a backend, an upstream model, defaults and price."""

    backend: Backend
    model: str | None  # None: the requested name (or the part a pattern's * matched)
    params: Mapping[str, Any]
    price: Mapping[str, float] | None
    weight: float = 1.0
    context_fallback: bool = False
    description: str | None = None  # strategy: designator — what this route is good at
    name: str | None = None  # how the designator is told this route: the model it names, or backend/model


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    routes: tuple[Route, ...]
    strategy: str = "fallback"
    max_attempts: int = 3
    weights: tuple[float, float, float, float] = tuple(WEIGHT_DEFAULTS.values())  # strategy: auto — errors, latency, load, cost
    designator: str | None = None  # strategy: designator — the model that picks a route
    designator_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Failover:
    """Retries, the time a request may spend on attempts, and circuit-breaker cooldowns (``failover:``)."""

    max_time: float = 300.0  # above the default timeout.first_byte (120), which it would otherwise cut
    backoff: float = 0.5
    max_backoff: float = 10.0
    failures: int = 3
    cooldown: float = 10.0
    cooldown_max: float = 300.0
    explore: float = 0.1


@dataclass(frozen=True, slots=True)
class Budget:
    usd: float
    per: str  # day | week | month (calendar periods, UTC)


@dataclass(frozen=True, slots=True)
class Limits:
    """``rpm``, ``tpm`` and ``budget`` of a client, a group or each user behind a client (``per_user``)."""

    rpm: int | None = None
    tpm: int | None = None
    budget: Budget | None = None

    def __bool__(self) -> bool:
        return bool(self.rpm or self.tpm or self.budget)


NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    key_sha256: bytes | None  # None: a ``networks:`` client without a key
    models: tuple[str, ...]
    tags: tuple[str, ...]
    key: str | None = field(default=None, repr=False)  # as configured (None: key_sha256), only to be redacted by value
    group: str | None = None
    limits: Limits = NO_LIMITS
    per_user: Limits = NO_LIMITS
    user_jwt_secret: str | None = field(default=None, repr=False)
    networks: tuple[Any, ...] = ()  # ipaddress networks whose requests are this client when they carry no valid key


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    sha256: str
    loaded_at: float
    host: str
    port: int
    log_path: Path
    log_bodies: bool
    log_queue: int
    max_body: int
    max_response: int  # bytes of a decoded non-stream answer
    max_event: int  # bytes of one stream event
    shutdown_grace: float
    backends: Mapping[str, Backend]
    models: Mapping[str, Model]  # keyed by lower-case name, exact names only
    patterns: tuple[tuple[re.Pattern[str], Model], ...]
    aliases: Mapping[str, str]  # lower-case alias → target as written
    default_model: str | None
    clients: tuple[Client, ...] | None  # None: no access control
    admin_key: str | None = field(repr=False, default=None)
    groups: Mapping[str, Limits] = field(default_factory=lambda: MappingProxyType({}))
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # the file as loaded (${VAR} expanded), for /admin/api/config
    pending: tuple[str, ...] = ()  # fields accepted whose behaviour arrives later
    alias_names: tuple[str, ...] = ()  # as written, for listing
    failover: Failover = field(default_factory=Failover)
    warnings: tuple[str, ...] = ()  # accepted, but worth a line at start and in `llmproxy check` (verify: false)
    responses_keep_days: float = 30.0  # stored /v1/responses answers (and relayed ids) expire after this
    list_unhealthy: bool = True  # false: /v1/models and /api/tags leave out models whose every route is down
    metrics_key: str | None = field(repr=False, default=None)  # besides the admin key, opens /metrics when access: is set
    log_keep_days: float | None = None  # request rows older than this are deleted in the background; None: kept
    log_bodies_max: int = 65536  # log.bodies_max_bytes: each kept body is cut to this many bytes

    def model_names(self) -> list[str]:
        """Every routable name a client may list: models and aliases, not patterns."""
        return [m.name for m in self.models.values()] + list(self.alias_names)


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> "Config":
    """Read, expand, validate and build; raises ConfigError with the YAML path on any fault."""
    p = Path(path).resolve()
    try:
        raw_bytes = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    try:
        raw = yaml.safe_load(raw_bytes) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p.name}:{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p.name}: the top level must be a mapping (listen:, backends:, models:, …)")
    data = _expand(raw, os.environ if env is None else env, ())
    _validate(data)
    return _build(data, p, hashlib.sha256(raw_bytes).hexdigest())


def _where(path: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in path) if path else "(top level)"


def _expand(node: Any, env: Mapping[str, str], path: tuple[Any, ...]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string value (keys are left alone)."""
    if isinstance(node, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            val = env.get(name)
            if val is None or (val == "" and default is not None):
                if default is None:
                    raise ConfigError(
                        f"{_where(path)}: environment variable {name} is not set "
                        f"(set it, or write ${{{name}:-default}})"
                    )
                return default
            if "\r" in val or "\n" in val:  # never a working header, key or url; the value itself is not shown
                why = " (it ends in \\r: an env file saved with Windows line endings?)" if val.endswith("\r") else ""
                raise ConfigError(f"{_where(path)}: environment variable {name} has a line break in its value{why}; remove it")
            return val

        return _ENV.sub(sub, node) if "${" in node else node
    if isinstance(node, dict):
        return {k: _expand(v, env, path + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, env, path + (i,)) for i, v in enumerate(node)]
    return node


@lru_cache(maxsize=1)
def schema() -> dict:
    import json

    return json.loads(SCHEMA_PATH.read_text())


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def _closest(word: str, options: Any) -> str:
    opts = [str(o) for o in options]
    m = difflib.get_close_matches(str(word), opts, n=1, cutoff=0.6) or difflib.get_close_matches(
        str(word).lower(), [o.lower() for o in opts], n=1, cutoff=0.6
    )
    return f"; did you mean '{m[0]}'?" if m else ""


def _validate(data: dict) -> None:
    errors = sorted(_validator().iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    raise ConfigError(without_userinfo("\n".join(_explain(e) for e in errors[:5])))  # a url's credentials are never shown


def _explain(err: jsonschema.ValidationError) -> str:
    """One schema error as 'yaml.path: what is wrong; did you mean …'.

    Never the value itself: after ``${VAR}`` expansion it may be a secret (``keys: "${GROQ_KEY}"``
    instead of a list), and this text goes to ``llmproxy check``, the log and ``/health``.  So not
    ``err.message`` (which quotes the value) but the path, the rule and what the schema expects.
    Names of fields (mapping keys, never expanded) may be shown.
    """
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        return "; ".join(
            f"{_where(path + (k,))}: unknown field '{k}'{_closest(k, allowed)}" for k in extra
        )
    if err.validator == "enum":
        return f"{_where(path)}: must be one of {', '.join(map(str, err.validator_value))}{_closest(err.instance, err.validator_value)}"
    if err.validator in ("oneOf", "anyOf") and err.context:
        # Report the branch that got furthest, not the generic "is not valid under any".
        best = max(err.context, key=lambda e: (len(e.absolute_path), -len(e.message)))
        if err.validator == "oneOf" and isinstance(err.instance, dict) and "routes" in err.schema.get("properties", {}):
            return f"{_where(path)}: a model needs either 'backend' (with optional 'model') or 'routes', not both"
        if err.validator == "oneOf" and isinstance(err.instance, dict) and "key_sha256" in err.schema.get("properties", {}):
            return f"{_where(path)}: a client needs exactly one of 'key', 'key_sha256' or 'networks'"
        return _explain(best)
    if len(path) == 3 and path[0] == "backends" and path[2] == "proxy":
        return f"{_where(path)}: is not a proxy: give an http:// URL (with user:pass@ before the host if it asks for credentials), or none (or false) to go direct"
    return f"{_where(path)}: {_expected(err)}"


_KINDS = {"object": "a mapping", "array": "a list", "string": "a string", "number": "a number", "integer": "a whole number",
          "boolean": "true or false", "null": "nothing"}


def _kind(value: Any) -> str:
    """What a YAML value is, in the words of ``_KINDS`` (never the value itself)."""
    for t, py in (("boolean", bool), ("integer", int), ("number", float), ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, py):
            return _KINDS[t]
    return _KINDS["null"]


def _expected(err: jsonschema.ValidationError) -> str:
    """What the schema wants where ``err`` is, from the rule and its value, never the instance."""
    v, want = err.validator, err.validator_value
    if v == "type":
        kinds = [want] if isinstance(want, str) else list(want)
        hint = " (a YAML list: [a, b], or one '- item' per line)" if "array" in kinds and isinstance(err.instance, str) else ""
        return f"expected {' or '.join(_KINDS.get(k, k) for k in kinds)}, not {_kind(err.instance)}{hint}"
    if v == "required":
        missing = [r for r in want if isinstance(err.instance, dict) and r not in err.instance]
        return f"'{missing[0] if missing else want[0]}' is required"
    if v == "pattern" and "propertyNames" in err.absolute_schema_path:  # the instance is a name (a key), not a value
        return f"the name '{err.instance}' is not in the expected form (the pattern {want})"
    words = {
        "minimum": f"must be at least {want}", "maximum": f"must be at most {want}",
        "exclusiveMinimum": f"must be more than {want}", "exclusiveMaximum": f"must be less than {want}",
        "minLength": "must not be empty" if want == 1 else f"must be at least {want} characters long",
        "maxLength": f"must be at most {want} characters long",
        "minItems": f"needs at least {want} item{'s' if want != 1 else ''}",
        "minProperties": f"needs at least {want} entr{'ies' if want != 1 else 'y'}",
        "pattern": f"is not in the expected form (the pattern {want})",
    }
    return words.get(v, f"is not valid here (schema rule '{v}')")


# --------------------------------------------------------------------------- building


def _timeout(d: Mapping[str, Any] | None) -> Timeout:
    t = dict(TIMEOUT_DEFAULTS)
    t.update(d or {})
    return Timeout(**{k: float(v) for k, v in t.items()})


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


def _build(d: dict, path: Path, digest: str) -> Config:
    """router.yaml section by section, one function each.

    The sections that can be at fault come first, in the order their errors have always been
    reported (the first fault raises); then Config takes every section in the file's order.
    """
    backends = _backends(d["backends"], path.parent)
    aliases = d.get("aliases") or {}
    _distinct_names(d["models"], aliases)
    models, patterns = _models(d["models"], backends)
    alias_targets = _aliases(aliases)
    access = _access(d.get("access"))
    return Config(
        path=path,
        sha256=digest,
        loaded_at=time.time(),
        **_listen(d.get("listen", "127.0.0.1:4000")),
        **_log(d.get("log") or {}, path.parent),
        **_limits(d.get("limits") or {}),
        backends=MappingProxyType(backends),
        models=MappingProxyType(models),
        patterns=tuple(patterns),
        aliases=MappingProxyType(alias_targets),
        alias_names=tuple(aliases),
        default_model=d.get("default_model"),
        failover=_failover(d.get("failover") or {}),
        responses_keep_days=float(d.get("responses_keep_days", 30)),
        metrics_key=d.get("metrics_key"),
        **access,
        raw=d,
        pending=_not_yet_active(d),
        warnings=_warnings(backends, d.get("listen", "127.0.0.1:4000"), access),
        list_unhealthy=bool(d.get("list_unhealthy", True)),
    )


def _listen(listen: str) -> dict[str, Any]:
    """listen: → Config's host and port."""
    host, _, port = listen.rpartition(":")
    return {"host": host.strip("[]") or "127.0.0.1", "port": int(port)}


def _log(log: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """log: → Config's log_path (relative to the file's folder), log_bodies, log_bodies_max, log_queue and log_keep_days."""
    return {
        "log_path": (folder / log.get("path", "llmproxy.db")).resolve(),
        "log_bodies": bool(log.get("bodies", False)),
        "log_bodies_max": int(log.get("bodies_max_bytes", 65536)),
        "log_queue": int(log.get("queue", 100000)),
        "log_keep_days": float(log["keep_days"]) if log.get("keep_days") is not None else None,
    }


def _limits(limits: Mapping[str, Any]) -> dict[str, Any]:
    """limits: → Config's max_body, max_response and max_event (in bytes) and shutdown_grace."""
    return {
        "max_body": _mib(limits.get("max_body_mb", 32)),
        "max_response": _mib(limits.get("max_response_mb", 64)),
        "max_event": _mib(limits.get("max_event_mb", 16)),
        "shutdown_grace": float(limits.get("shutdown_grace", 30)),
    }


def _mib(n: Any) -> int:
    return int(float(n) * 1024 * 1024)


# Headers llmproxy's client writes from the body it sends and the encodings it can decode.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "accept-encoding", "te", "upgrade"})


def _backends(raw: Mapping[str, dict], folder: Path) -> dict[str, Backend]:
    """backends: each one checked in turn, then their names against each other."""
    backends = {name: _backend(name, b, folder) for name, b in raw.items()}
    _no_clash("backends", list(backends))
    return backends


def _backend(name: str, b: Mapping[str, Any], folder: Path) -> Backend:
    url, credentials = _url_credentials(b["url"])
    headers = _backend_headers(name, b.get("headers") or {})
    if credentials and not any(k.lower() == "authorization" for k, _ in headers):
        headers += (("Authorization", credentials),)
    keys = tuple(b.get("keys") or ())
    for i, k in enumerate(keys):
        _sendable(f"backends.{name}.keys.{i}", k)
    uses_key = any("{key}" in v for _, v in headers)
    if uses_key and not keys:
        raise ConfigError(f"backends.{name}.headers: a header uses {{key}} but the backend has no 'keys:' list")
    if keys and not uses_key:
        raise ConfigError(f"backends.{name}.keys: keys are listed but no header template uses {{key}}")
    return Backend(
        name=name,
        api=b["api"],
        url=url.rstrip("/"),
        headers=headers,
        keys=keys,
        discover=bool(b.get("discover", False)),
        passthrough=bool(b.get("passthrough", True)),
        timeout=_timeout(b.get("timeout")),
        discover_interval=float(b.get("discover_interval", 600)),
        proxy=_backend_proxy(name, b.get("proxy")),
        **_backend_tls(name, b.get("tls") or {}, folder),
        max_connections=int(b.get("max_connections", DEFAULT_MAX_CONNECTIONS)),
        responses=_responses_mode(name, b),
        health_check=_health_check(b.get("health_check")),
    )


def _health_check(h: Mapping[str, Any] | None) -> HealthCheck | None:
    """health_check: → HealthCheck (None: off)."""
    if h is None:
        return None
    dflt = HealthCheck()
    return HealthCheck(float(h.get("interval", dflt.interval)), float(h.get("timeout", dflt.timeout)), h.get("model"))


def _url_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` (never shown anywhere) and those as a Basic Authorization value."""
    u = URL(url)
    if u.raw_user is None and u.raw_password is None:
        return url, None
    return without_userinfo(url), basic(u.user or "", u.password or "")


def _backend_proxy(name: str, proxy: str | bool | None) -> str | None:
    """proxy: → None (the environment's), DIRECT (none/false), or the proxy URL (checked here, never shown)."""
    if proxy is None:
        return None
    if proxy is False or proxy == "none":
        return DIRECT
    try:
        parse_proxy(str(proxy))
    except ValueError as e:
        raise ConfigError(f"backends.{name}.proxy: {e}") from None
    return str(proxy)


def _backend_tls(name: str, tls: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """tls: → tls_ca (relative to the file's folder; read now, so a bad file fails the load) and tls_verify."""
    verify = bool(tls.get("verify", True))
    ca = str((folder / tls["ca"]).resolve()) if tls.get("ca") else None
    if ca is not None:
        try:
            tls_context(ca, verify, fresh=True)
        except OSError as e:  # ssl.SSLError too: a file with no PEM certificate in it
            why = e.strerror if not isinstance(e, ssl.SSLError) else f"no CA certificate in it ({e.reason or e})"
            raise ConfigError(f"backends.{name}.tls.ca: cannot use {ca}: {why}") from None
    return {"tls_ca": ca, "tls_verify": verify}


def _warnings(backends: Mapping[str, Backend], listen: str, access: Mapping[str, Any]) -> tuple[str, ...]:
    """What is allowed but unsafe: a backend whose certificate is not checked; a listen address
    beyond this machine with no ``access:`` (every model, /admin and /health's details open to the network)."""
    out = [f"backends.{b.name}.tls.verify is false: {b.name}'s certificate is not checked, anyone on the way can read and change its traffic"
           for b in backends.values() if not b.tls_verify]
    host = _listen(listen)["host"]
    if access.get("clients") is None and not (host == "localhost" or host.startswith("127.") or host == "::1"):
        out.append(f"listen: {listen} reaches beyond this machine and there is no access: block: anyone who can reach it may use "
                   "every model (on your keys), the admin API and /health's details; add access.clients and access.admin_key")
    return tuple(out)


def _responses_mode(name: str, b: Mapping[str, Any]) -> str:
    """responses: relay is for an api: openai backend that serves /v1/responses itself."""
    mode = b.get("responses", "translate")
    if mode == "relay" and b["api"] != "openai":
        raise ConfigError(f"backends.{name}.responses: only an api: openai backend can relay /v1/responses "
                          f"(this one is api: {b['api']}; remove the line and requests are translated)")
    return mode


def _backend_headers(name: str, raw: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    headers = []
    for k, v in raw.items():
        low = str(k).lower()
        if low in FRAMING_HEADERS:
            raise ConfigError(f"backends.{name}.headers.{k}: llmproxy sets this header itself (it frames and decodes the body)")
        _sendable(f"backends.{name}.headers.{k}", str(v))
        headers.append(("Host" if low == "host" else str(k), str(v)))  # a configured Host replaces the url's
    return tuple(headers)


def _sendable(where: str, value: str) -> None:
    """A header value (or a key that goes into one) must be writable as it is, or every request would fail at the backend's door."""
    if value.isprintable() or value.replace("\t", " ").isprintable():
        try:
            value.encode("latin-1")
            return
        except UnicodeEncodeError:
            pass
    raise ConfigError(f"{where}: has a character that cannot go into an HTTP header (a control character, or one outside Latin-1 "
                      f"such as a typographic quote from a copy-paste)")


def _distinct_names(models: Mapping[str, Any], aliases: Mapping[str, str]) -> None:
    """models: and aliases: share one case-insensitive namespace; checked before either is built."""
    _no_clash("models", list(models))
    _no_clash("aliases", list(aliases))
    lower_models = {n.lower(): n for n in models}
    for a in aliases:
        if a.lower() in lower_models:
            raise ConfigError(f"aliases.{a}: clashes with model '{lower_models[a.lower()]}' (names are case-insensitive)")


def _models(raw: Mapping[str, dict], backends: Mapping[str, Backend]) -> tuple[dict[str, Model], list[tuple[re.Pattern[str], Model]]]:
    """models: → exact models by lower-case name, and patterns."""
    models: dict[str, Model] = {}
    patterns: list[tuple[re.Pattern[str], Model]] = []
    # Direct models first, so routes may name them.
    for name, m in raw.items():
        if "backend" in m:
            model = Model(name=name, routes=(_direct_route(m, f"models.{name}", backends),), max_attempts=int(m.get("max_attempts", 3)))
            _add_model(name, model, models, patterns)
    for name, m in raw.items():
        if "routes" in m:
            models[name.lower()] = _routed_model(name, m, raw, models, backends)
    return models, patterns


def _routed_model(name: str, m: Mapping[str, Any], raw: Mapping[str, dict], models: Mapping[str, Model], backends: Mapping[str, Backend]) -> Model:
    """A model with routes: each one a backend of its own, or a model built before it."""
    where = f"models.{name}"
    if "*" in name:
        raise ConfigError(f"{where}: a pattern cannot have routes; give it a backend")
    routes: list[Route] = []
    for i, r in enumerate(m["routes"]):
        rw = f"{where}.routes.{i}"
        if isinstance(r, dict) and "backend" in r:
            route = _direct_route(r, rw, backends)
            route = route if route.model else _with(route, model=name)
            routes.append(_with(route, name=f"{route.backend.name}/{route.model}"))
        else:
            routes.append(_route_to_model(r, rw, raw, models))
    strategy = m.get("strategy", "fallback")
    designator = m.get("designator")
    if strategy == "designator" and not designator:
        raise ConfigError(f"{where}.designator: strategy: designator needs 'designator:', the model that picks a route")
    if designator and strategy != "designator":
        raise ConfigError(f"{where}.designator: only used with strategy: designator (this model has strategy: {strategy})")
    picker = {n.lower(): v for n, v in raw.items()}.get(str(designator).lower()) or {}
    if designator and picker.get("strategy") == "designator":
        raise ConfigError(f"{where}.designator: '{designator}' picks routes itself; name a model that answers (e.g. a small, cheap one)")
    weights = {**WEIGHT_DEFAULTS, **(m.get("weights") or {})}
    return Model(name=name, routes=tuple(routes), strategy=strategy, max_attempts=int(m.get("max_attempts", 3)),
                 weights=tuple(float(weights[k]) for k in WEIGHT_DEFAULTS), designator=designator,
                 designator_timeout=float(m.get("designator_timeout", 5)))


def _direct_route(m: Mapping[str, Any], where: str, backends: Mapping[str, Backend]) -> Route:
    """A direct model, or a route with its own backend."""
    name = m["backend"]
    if name not in backends:
        raise ConfigError(f"{where}.backend: backend '{name}' is not defined in backends{_closest(name, backends)}")
    return Route(
        backend=backends[name],
        model=m.get("model"),
        params=_frozen(m.get("params")),
        price=_frozen(m["price"]) if m.get("price") else None,
        **_route_options(m),
    )


def _route_to_model(r: str | Mapping[str, Any], where: str, raw: Mapping[str, dict], models: Mapping[str, Model]) -> Route:
    """A route naming another model: that model's route, with this route's weight and context_fallback."""
    ref = r if isinstance(r, str) else r["model"]
    target = models.get(ref.lower())
    if target is None:
        if ref.lower() in {n.lower() for n in raw}:
            hint = " (a route may only name a model with a backend, not one with routes)"
        else:
            hint = _closest(ref, [n for n in raw if "backend" in raw[n]])
        raise ConfigError(f"{where}: model '{ref}' is not defined in models{hint}")
    base = target.routes[0]
    extra = _route_options(r) if isinstance(r, dict) else {}
    return _with(base, model=base.model or target.name, name=target.name, **extra)


def _route_options(r: Mapping[str, Any]) -> dict[str, Any]:
    """What a route (or a direct model) sets for balancing: weight, context_fallback and description."""
    return {"weight": float(r.get("weight", 1)), "context_fallback": bool(r.get("context_fallback", False)),
            "description": r.get("description")}


def _aliases(raw: Mapping[str, str]) -> dict[str, str]:
    """aliases: → lower-case alias → target as written; every chain must end, with no cycle."""
    aliases = {a.lower(): t for a, t in raw.items()}
    for a in raw:
        seen = [a]
        cur = aliases[a.lower()]
        while cur.lower() in aliases:
            if cur.lower() in (s.lower() for s in seen):
                raise ConfigError(f"aliases.{a}: alias cycle {' → '.join(seen + [cur])}")
            seen.append(cur)
            cur = aliases[cur.lower()]
    return aliases


def _failover(f: Mapping[str, Any]) -> Failover:
    c = f.get("cooldown") or {}
    dflt = Failover()
    return Failover(
        max_time=float(f.get("max_time", dflt.max_time)),
        backoff=float(f.get("backoff", dflt.backoff)),
        max_backoff=float(f.get("max_backoff", dflt.max_backoff)),
        failures=int(c.get("failures", dflt.failures)),
        cooldown=float(c.get("seconds", dflt.cooldown)),
        cooldown_max=float(c.get("max", dflt.cooldown_max)),
        explore=float(f.get("explore", dflt.explore)),
    )


def _access(access: Mapping[str, Any] | None) -> dict[str, Any]:
    """access: → Config's clients (None: no access control), groups and admin_key."""
    if access is None:
        return {"clients": None, "admin_key": None}
    groups = {name: _limits_of(g) for name, g in (access.get("groups") or {}).items()}
    return {"clients": _clients(access.get("clients") or (), groups), "admin_key": access.get("admin_key"),
            "groups": MappingProxyType(groups)}


def _limits_of(d: Mapping[str, Any]) -> Limits:
    b = d.get("budget")
    return Limits(d.get("rpm"), d.get("tpm"), Budget(float(b["usd"]), b.get("per", "month")) if b else None)


def _clients(raw: Iterable[Mapping[str, Any]], groups: Mapping[str, Limits]) -> tuple[Client, ...]:
    clients: list[Client] = []
    seen_names: set[str] = set()
    for i, c in enumerate(raw):
        if c["name"].lower() in seen_names:
            raise ConfigError(f"access.clients.{i}.name: client '{c['name']}' is listed twice")
        seen_names.add(c["name"].lower())
        group = c.get("group")
        if group is not None and group not in groups:
            near = difflib.get_close_matches(group, list(groups), 1)
            raise ConfigError(f"access.clients.{i}.group: no group '{group}' in access.groups" + (f" (did you mean '{near[0]}'?)" if near else ""))
        networks = []
        for j, n in enumerate(c.get("networks") or ()):
            try:
                networks.append(ipaddress.ip_network(n, strict=False))
            except ValueError as e:
                raise ConfigError(f"access.clients.{i}.networks.{j}: {e}") from None
        key_sha256 = (bytes.fromhex(c["key_sha256"]) if "key_sha256" in c else hashlib.sha256(c["key"].encode()).digest() if "key" in c else None)
        clients.append(Client(c["name"], key_sha256, tuple(c.get("models") or ("*",)), tuple(c.get("tags") or ()), c.get("key"),
                              group=group, limits=_limits_of(c), per_user=_limits_of(c.get("per_user") or {}),
                              user_jwt_secret=c.get("user_jwt_secret"), networks=tuple(networks)))
    return tuple(clients)


def _not_yet_active(d: dict) -> tuple[str, ...]:
    """Fields accepted whose behaviour arrives with a later release (Config.pending, shown by check and /health)."""
    notes: list[str] = []  # (none at present)
    return tuple(notes)


def _with(route: Route, **changes: Any) -> Route:
    return replace(route, **changes)


def _add_model(name: str, model: Model, models: dict[str, Model], patterns: list) -> None:
    if "*" in name:
        rx = re.compile("^" + "(.*)".join(re.escape(p) for p in name.split("*")) + "$", re.IGNORECASE)
        patterns.append((rx, model))
    else:
        models[name.lower()] = model


def _no_clash(section: str, names: list[str]) -> None:
    seen: dict[str, str] = {}
    for n in names:
        if n.lower() in seen:
            raise ConfigError(f"{section}.{n}: clashes with '{seen[n.lower()]}' (names are case-insensitive)")
        seen[n.lower()] = n
