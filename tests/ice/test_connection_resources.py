"""Bounded resources: closing a Connection gives back every socket, timer and task."""

from __future__ import annotations

import asyncio
import gc
import os

import pytest

from ice import Connection
from tests.ice.connection_support import bounded, connect_both, loopback_options, signal

pytestmark = pytest.mark.usefixtures("loop_errors")

CYCLES = 1000


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _timers(loop: asyncio.AbstractEventLoop) -> int:
    """Live timer handles on the loop (cancelled ones may wait in its heap a while)."""
    scheduled = getattr(loop, "_scheduled", [])  # white-box: BaseEventLoop's timer heap
    return sum(1 for handle in scheduled if not handle.cancelled())


async def test_a_thousand_connect_close_cycles_leave_nothing_behind() -> None:
    loop = asyncio.get_running_loop()
    options = loopback_options(ta=0.005, negotiate_ta=False, global_pacing=False)
    files, tasks, timers = _open_files(), len(asyncio.all_tasks()), _timers(loop)
    for _ in range(CYCLES):
        a, b = Connection(True, **options), Connection(False, **options)
        await signal(a, b)
        await connect_both(a, b)
        await a.send(b"ping")
        assert await bounded(b.recv()) == b"ping"
        await asyncio.gather(a.close(), b.close())
    gc.collect()
    assert _open_files() == files
    assert len(asyncio.all_tasks()) == tasks
    assert _timers(loop) == timers
