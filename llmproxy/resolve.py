"""Model name → the routes that can serve it, in the order product.md gives.

exact name → alias (chains) → pattern → ``backend/model`` → discovered (``discover.py``) → default_model → 404.
Everything is case-insensitive.  A ``Resolver`` belongs to one frozen Config, so its cache
never outlives a reload.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .config import Backend, Config, Model, Route
from .errors import ProxyError

if TYPE_CHECKING:
    from .discover import Discovery

_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Target:
    """A route with the upstream model name filled in."""

    model: str  # the configured model name the request resolved to
    route: Route
    upstream_model: str
    # Worked out once (a Target is kept with its cached Resolved), read many times a request:
    backend: Backend = field(init=False, compare=False, repr=False)  # the route's
    key: tuple[str, str] = field(init=False, compare=False, repr=False)  # (backend name, upstream model): the balancer's route key

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend", self.route.backend)
        object.__setattr__(self, "key", (self.route.backend.name, self.upstream_model))


@dataclass(frozen=True, slots=True)
class Resolved:
    requested: str
    name: str  # resolved (configured) name
    targets: tuple[Target, ...]
    strategy: str = "fallback"
    max_attempts: int = 3
    default: str | None = None  # the default_model an otherwise unknown name fell to (None: resolved by its own name)
    weights: tuple[float, float, float, float] | None = None  # strategy: auto (None: the defaults)
    designator: str | None = None  # strategy: designator
    designator_timeout: float = 5.0


class Resolver:
    """Resolves names against one Config; results are cached (the Config never changes)."""

    def __init__(self, cfg: Config, discovery: "Discovery | None" = None) -> None:
        self.cfg = cfg
        self.discovery = discovery
        self._cache: dict[str, Resolved] = {}
        self._version = discovery.version if discovery else 0

    def resolve(self, requested: str, default: bool = True) -> Resolved:
        """Targets for a name; ``default=False`` answers 404 instead of using default_model."""
        if not default:
            return self._resolve(requested, requested.lower(), set(), allow_default=False)
        key = requested.lower()
        if self.discovery is not None and self.discovery.version != self._version:
            self._cache.clear()  # a discovered list changed
            self._version = self.discovery.version
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        res = self._resolve(requested, key, set(), allow_default=True)
        if len(self._cache) < _CACHE_MAX:
            self._cache[key] = res
        return res

    def _resolve(self, requested: str, key: str, seen: set[str], allow_default: bool) -> Resolved:
        cfg = self.cfg
        model = cfg.models.get(key)
        if model is not None:
            return _from_model(requested, model, None)
        if key in cfg.aliases and key not in seen:
            seen.add(key)
            target = cfg.aliases[key]
            res = self._resolve(requested, target.lower(), seen, allow_default)
            return res
        for rx, pmodel in cfg.patterns:
            m = rx.match(requested)
            if m:
                return _from_model(requested, pmodel, m)
        backend_name, slash, rest = requested.partition("/")
        if slash and rest:
            for b in cfg.backends.values():
                if b.name.lower() == backend_name.lower() and b.passthrough:
                    route = Route(backend=b, model=rest, params={}, price=None)
                    return Resolved(requested, requested, (Target(requested, route, rest),))
        listed = self.discovery.find(requested, cfg) if self.discovery is not None else []
        if len(listed) == 1:
            b, name = listed[0]
            route = Route(backend=b, model=name, params={}, price=None)
            return Resolved(requested, f"{b.name}/{name}", (Target(f"{b.name}/{name}", route, name),))
        if allow_default and cfg.default_model:
            return replace(self._resolve(requested, cfg.default_model.lower(), seen, allow_default=False), default=cfg.default_model)
        if listed:
            raise ProxyError(404, f"model '{requested}' is listed by several backends; ask for one of: {', '.join(f'{b.name}/{n}' for b, n in listed)}",
                             param="model", code="model_not_found")
        raise not_found(requested, cfg.model_names())


def _from_model(requested: str, model: Model, match) -> Resolved:  # noqa: ANN001 - re.Match | None
    targets = []
    for r in model.routes:
        if match is not None:
            captured = "".join(match.groups()) if match.groups() else requested
            upstream = r.model.replace("*", captured) if r.model else captured
            name = requested
        else:
            upstream = r.model or model.name
            name = model.name
        targets.append(Target(name, r, upstream))
    return Resolved(requested, targets[0].model, tuple(targets), model.strategy, model.max_attempts,
                    weights=model.weights, designator=model.designator, designator_timeout=model.designator_timeout)


def not_found(requested: str, names: list[str]) -> ProxyError:
    close = difflib.get_close_matches(requested, names, n=3, cutoff=0.4)
    if not close:
        low = {n.lower(): n for n in names}
        close = [low[c] for c in difflib.get_close_matches(requested.lower(), list(low), n=3, cutoff=0.4)]
    hint = f"; closest: {', '.join(close)}" if close else "; GET /v1/models lists what is available"
    return ProxyError(404, f"model '{requested}' not found{hint}", param="model", code="model_not_found")
