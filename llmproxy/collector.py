"""Python's cyclic garbage collector, run on a clock while llmproxy serves rather than on allocation counts.

A request's objects are freed by reference counting the moment it ends.  What only the cyclic collector
can free comes from connections that close and requests that are cancelled (asyncio's transports, a
cancelled task's traceback): a few objects a connection, not a request.  Python's own trigger runs a
young pass every 700 new container objects, and under load each pass walks the objects of the requests
still in flight (coroutines mostly) and frees nothing: in a 3 s test at 64 streams, 400 passes, ~75 ms,
8-10 us a stream, about 3 % of the proxy's CPU.  Raising the trigger's threshold instead lets cycles
wait for as long as the traffic is quiet and RSS rose 3-5 % over the bench's soak.

So, once serving: what start-up made (modules, the config, its schema validator) is frozen out of the
collector's view; the allocation trigger is off; a young pass runs every ``TICK`` seconds, the middle
generation every tenth, a full pass every hundredth (Python's own 10 x 10 ratios).  Garbage waits at
most ``TICK`` whatever the load.  A pass walks what survived the last 0.1 s, so each costs more (at 64
streams ~0.45 ms against ~0.2 ms), but there are a tenth as many: 39 passes, 17-19 ms, in the same test.
"""
from __future__ import annotations

import asyncio
import gc

TICK = 0.1  # seconds between young passes


class Collector:
    """The clock: ``start`` once the loop serves, ``stop`` when it is done."""

    __slots__ = ("loop", "handle", "passes")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handle: asyncio.TimerHandle | None = None
        self.passes = 0

    def start(self) -> None:
        """Freeze what start-up made and switch the collector to the clock (inside the running loop)."""
        gc.collect()
        gc.freeze()
        gc.disable()
        self.loop = asyncio.get_running_loop()
        self.handle = self.loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        self.passes += 1
        gc.collect(2 if self.passes % 100 == 0 else 1 if self.passes % 10 == 0 else 0)
        assert self.loop is not None
        self.handle = self.loop.call_later(TICK, self._tick)

    def stop(self) -> None:
        """Back to Python's own trigger (the loop is done)."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        gc.enable()
