"""What a client may list, for every front door: configured models and aliases, then discovered ones."""
from __future__ import annotations

from .access import allowed
from .config import Client
from .errors import ProxyError
from .state import Snapshot, State


def owner(snap: Snapshot, name: str) -> str:
    """The backend serving ``name``, or "llmproxy" when several routes (or none) do."""
    try:
        res = snap.resolver.resolve(name, default=False)
    except ProxyError:
        return "llmproxy"
    backends = {t.backend.name for t in res.targets}
    return backends.pop() if len(backends) == 1 else "llmproxy"


def listed(state: State, snap: Snapshot, client: Client | None) -> list[tuple[str, str]]:
    """(name, owning backend) for every name ``client`` may use: models, aliases, discovered models."""
    out = [(n, owner(snap, n)) for n in snap.config.model_names() if allowed(client, n)]
    # Discovered models: by bare name when only one backend lists it, else backend/name.
    out += [(n, b) for n, b in state.discovery.entries(snap.config) if allowed(client, n, f"{b}/{n}")]
    if not snap.config.list_unhealthy:  # only what works now: a model whose every route is down is left out
        out = [(n, b) for n, b in out if not _all_down(state, snap, n)]
    return out


def _all_down(state: State, snap: Snapshot, name: str) -> bool:
    try:
        res = snap.resolver.resolve(name, default=False)
    except ProxyError:
        return False
    return all(state.balance.down(t) for t in res.targets)
