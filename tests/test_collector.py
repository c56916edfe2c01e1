"""The collector on a clock: while serving, Python's allocation trigger is off and a cycle is freed by the
next tick; afterwards the trigger is back."""
from __future__ import annotations

import asyncio
import gc
import weakref

from llmproxy import collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


async def test_a_cycle_is_freed_by_the_next_tick(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(collector, "TICK", 0.01)
    c = collector.Collector()
    c.start()
    try:
        assert not gc.isenabled(), "the allocation trigger is off while serving"
        assert gc.get_freeze_count() > 0, "start-up's objects are frozen"
        node = Node()
        gone = weakref.ref(node)
        del node
        _ = [[] for _ in range(5000)]  # (enough new containers to have set Python's own trigger off)
        assert gone() is not None, "no collection on allocation"
        for _ in range(100):
            await asyncio.sleep(0.01)
            if gone() is None:
                break
        assert gone() is None, "the clock's pass freed the cycle"
        assert c.passes >= 1
    finally:
        c.stop()
        gc.unfreeze()
    assert gc.isenabled(), "stop gives Python's trigger back"
