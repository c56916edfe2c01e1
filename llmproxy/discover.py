"""Discovery: the models a ``discover: true`` backend lists, refreshed in the background.

Each such backend is listed at start, on reload and every ``discover_interval`` seconds by one
task that never blocks a request.  A listing that fails keeps the last good one (and /health says
so).  ``find`` serves resolution: ``backend/name`` for a listed name, or a bare name when exactly
one backend lists it (``llama3.2`` also finds Ollama's ``llama3.2:latest``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from .config import Backend, Config
from .errors import ProxyError
from .translate import BACKENDS
from .upstream import Upstream

# Which key a listing uses: the balancer's choice for the backend (None when it has no keys).
KeyOf = Callable[[Backend], "str | None"]

log = logging.getLogger("llmproxy")

# api → first path to GET; pages follow via ``parse``.
PATHS = {
    "openai": "/models",
    "ollama": "/api/tags",
    "anthropic": "/v1/models?limit=1000",
    "gemini": "/v1beta/models?pageSize=1000",
}
MAX_PAGES = 20
LIST_TIMEOUT = 30.0
LIST_MAX_BYTES = 16 * 1024 * 1024  # one page of a model list


def parse(api: str, data: Any) -> tuple[list[str], str | None]:
    """One page of a model list → (model names, path of the next page or None). Pure."""
    if not isinstance(data, dict):
        raise ValueError("the model list is not a JSON object")
    if api == "ollama":
        return [str(m.get("model") or m.get("name")) for m in data.get("models") or [] if isinstance(m, dict) and (m.get("model") or m.get("name"))], None
    if api == "gemini":
        names = [str(m["name"]).removeprefix("models/") for m in data.get("models") or [] if isinstance(m, dict) and m.get("name")]
        token = data.get("nextPageToken")
        return names, f"/v1beta/models?pageSize=1000&pageToken={token}" if token else None
    names = [str(m["id"]) for m in data.get("data") or [] if isinstance(m, dict) and m.get("id")]
    if api == "anthropic" and data.get("has_more") and data.get("last_id"):
        return names, f"/v1/models?limit=1000&after_id={data['last_id']}"
    return names, None


@dataclass
class Listing:
    """What one backend listed last, and how the latest attempt went."""

    models: tuple[str, ...] = ()
    ok_at: float | None = None  # wall clock of the last good listing
    error: str | None = None  # the latest attempt's failure, None once one succeeds
    error_at: float | None = None
    next_at: float = 0.0  # monotonic time of the next listing

    def view(self) -> dict[str, Any]:
        if self.error is None and self.ok_at is None:
            state = "listing"
        elif self.error is None:
            state = "ok"
        else:
            state = "stale" if self.ok_at is not None else "failed"
        out: dict[str, Any] = {"state": state, "models": len(self.models), "listed_at": self.ok_at}
        if self.error is not None:
            kept = f"; keeping the {len(self.models)} models listed before" if self.ok_at is not None else "; nothing listed yet"
            out.update(error=self.error + kept, error_at=self.error_at)
        out["next_in_s"] = round(max(0.0, self.next_at - time.monotonic()), 1)
        return out


class Discovery:
    """Listings of every discovering backend, and the index resolution reads."""

    def __init__(self) -> None:
        self.lists: dict[str, Listing] = {}
        self.version = 0  # bumped when any list changes (resolvers drop their caches)
        self._index: dict[str, list[tuple[str, str]]] = {}  # lower name → [(backend, name)]
        self._kick = asyncio.Event()

    # -------------------------------------------------------------- reading

    def find(self, requested: str, cfg: Config) -> list[tuple[Backend, str]]:
        """Listed models a name may mean: ``backend/name``, or every backend listing the bare name."""
        if not self._index:
            return []
        low = requested.lower()
        bname, slash, rest = requested.partition("/")
        if slash:
            b = next((b for b in cfg.backends.values() if b.name.lower() == bname.lower() and b.discover), None)
            if b is not None:
                hit = [(b, n) for bn, n in self._index.get(rest.lower(), ()) if bn == b.name]
                if hit:
                    return hit[:1]
        return [(cfg.backends[bn], n) for bn, n in self._index.get(low, ()) if bn in cfg.backends and cfg.backends[bn].discover]

    def entries(self, cfg: Config) -> list[tuple[str, str]]:
        """(id, backend) for /v1/models: the bare name when unambiguous and not a configured name, else backend/name."""
        taken = {n.lower() for n in cfg.model_names()}
        out: list[tuple[str, str]] = []
        for bname, listing in self.lists.items():
            b = cfg.backends.get(bname)
            if b is None or not b.discover:
                continue
            for name in listing.models:
                owners = {bn for bn, _ in self._index.get(name.lower(), ())}
                bare = len(owners) == 1 and name.lower() not in taken
                out.append((name if bare else f"{bname}/{name}", bname))
        return out

    # -------------------------------------------------------------- refreshing

    def kick(self) -> None:
        """List every discovering backend again now (on reload)."""
        for listing in self.lists.values():
            listing.next_at = 0.0
        self._kick.set()

    async def run(self, config: Callable[[], Config], upstream: Upstream, key_of: KeyOf) -> None:
        """The background task: list what is due in the running ``config()``, then sleep until the next is due or a kick."""
        while True:
            self._kick.clear()
            cfg = config()
            wanted = {b.name: b for b in cfg.backends.values() if b.discover}
            for gone in [n for n in self.lists if n not in wanted]:
                del self.lists[gone]
                self._reindex()
            now = time.monotonic()
            due = [b for b in wanted.values() if self.lists.setdefault(b.name, Listing()).next_at <= now]
            if due:
                await asyncio.gather(*(self.refresh(upstream, b, key_of(b)) for b in due))
            wait = min((lst.next_at for lst in self.lists.values()), default=now + 3600) - time.monotonic()
            try:
                await asyncio.wait_for(self._kick.wait(), timeout=max(0.05, wait))
            except TimeoutError:
                pass

    async def refresh(self, upstream: Upstream, b: Backend, key: str | None) -> None:
        """List one backend (with ``key``, the value of one of its keys); on failure keep its last list and note why."""
        listing = self.lists.setdefault(b.name, Listing())
        listing.next_at = time.monotonic() + b.discover_interval
        try:
            async with asyncio.timeout(min(LIST_TIMEOUT, b.timeout.first_byte)):
                names = await fetch(upstream, b, key)
        except TimeoutError:
            err = f"listing models took over {min(LIST_TIMEOUT, b.timeout.first_byte):g} s"
        except ProxyError as e:
            err = e.message if e.code in ("upstream_unreachable", "upstream_timeout", "upstream_error") else f"HTTP {e.status}: {e.message}"
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as e:
            err = f"the model list could not be read: {e}"
        else:
            changed = tuple(names) != listing.models
            listing.models, listing.ok_at, listing.error, listing.error_at = tuple(names), time.time(), None, None
            if changed:
                self._reindex()
                log.info("discovered %d models on %s", len(names), b.name)
            return
        listing.error, listing.error_at = err[:500], time.time()
        log.warning("discovery on %s failed (keeping %d models): %s", b.name, len(listing.models), err)

    def _reindex(self) -> None:
        index: dict[str, list[tuple[str, str]]] = {}
        for bname, listing in self.lists.items():
            for name in listing.models:
                keys = {name.lower()}
                if name.lower().endswith(":latest"):  # Ollama: "llama3.2" means "llama3.2:latest"
                    keys.add(name.lower().removesuffix(":latest"))
                for k in keys:
                    entries = index.setdefault(k, [])
                    if (bname, name) not in entries:
                        entries.append((bname, name))
        self._index = index
        self.version += 1


async def fetch(upstream: Upstream, b: Backend, key: str | None) -> list[str]:
    """Every model name the backend lists (following pages)."""
    names: list[str] = []
    path: str | None = PATHS[b.api]
    for _ in range(MAX_PAGES):
        if path is None:
            break
        up = await upstream.open(b, path, b"", model="(model list)", stream=False, method="GET", key=key, max_bytes=LIST_MAX_BYTES)
        try:
            raw = await up.read()
        finally:
            up.close()
        if up.status >= 400:
            mod = BACKENDS.get(b.api)
            raise mod.error_from_upstream(up.status, raw) if mod else ProxyError(up.status, f"HTTP {up.status}")
        page, path = parse(b.api, orjson.loads(raw))
        names.extend(page)
    return names
