"""The loop-wide timer queue that serves every ICE core's one timer."""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
import weakref

import pytest

from ice import Candidate, Connection
from ice.timers import _COMPACT_AT, PREWAKE, TimerQueue, timer_queue
from tests.ice.connection_support import loopback_options

DUE = 2.0
"""Seconds a test waits at most for a sleeper to fire."""


class _Sleeper:
    def __init__(
        self,
        name: str,
        fired: list[tuple[str, float]],
        fail: BaseException | None = None,
    ) -> None:
        self._timer_seq = 0
        self.name = name
        self.fired = fired
        self.fail = fail
        self.then: list[object] = []  # what to do when woken: callables
        self.woken = asyncio.Event()

    def _on_timer(self) -> None:
        self.fired.append((self.name, asyncio.get_running_loop().time()))
        self.woken.set()
        for action in self.then:
            action()  # type: ignore[operator]
        if self.fail is not None:
            raise self.fail


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _live_loop_timers(loop: asyncio.AbstractEventLoop) -> int:
    scheduled = getattr(loop, "_scheduled", [])  # white-box: BaseEventLoop's timer heap
    return sum(1 for handle in scheduled if not handle.cancelled())


async def test_sleepers_fire_in_deadline_order_and_never_early() -> None:
    loop = asyncio.get_running_loop()
    queue = TimerQueue(loop)
    fired: list[tuple[str, float]] = []
    start = loop.time()
    sleepers = {name: _Sleeper(name, fired) for name in "cab"}
    deadlines = {"a": start + 0.010, "b": start + 0.020, "c": start + 0.030}
    for name, sleeper in sleepers.items():
        queue.schedule(sleeper, deadlines[name])
    await asyncio.wait_for(sleepers["c"].woken.wait(), DUE)
    assert [name for name, _ in fired] == ["a", "b", "c"]
    resolution = 0.001
    assert all(at >= deadlines[name] - resolution for name, at in fired)


async def test_rescheduling_replaces_the_entry() -> None:
    loop = asyncio.get_running_loop()
    queue = TimerQueue(loop)
    fired: list[tuple[str, float]] = []
    moved, other = _Sleeper("moved", fired), _Sleeper("other", fired)
    queue.schedule(moved, loop.time() + 0.050)
    queue.schedule(other, loop.time() + 0.030)
    queue.schedule(moved, loop.time() + 0.010)
    await asyncio.wait_for(other.woken.wait(), DUE)
    await asyncio.sleep(0.050)  # past the replaced deadline: it must not fire again
    assert [name for name, _ in fired] == ["moved", "other"]
    assert _live_loop_timers(loop) == 0


async def test_cancelling_the_last_sleeper_leaves_no_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    before = _live_loop_timers(loop)
    queue = TimerQueue(loop)
    fired: list[tuple[str, float]] = []
    sleepers = [_Sleeper(str(i), fired) for i in range(3)]
    for i, sleeper in enumerate(sleepers):
        queue.schedule(sleeper, loop.time() + 0.010 * (i + 1))
    assert _live_loop_timers(loop) == before + 1  # one loop timer for all three
    for sleeper in sleepers:
        queue.cancel(sleeper)
    queue.cancel(sleepers[0])  # cancelling twice is harmless
    assert _live_loop_timers(loop) == before
    await asyncio.sleep(0.040)
    assert fired == []


async def test_a_failing_callback_is_reported_and_the_others_still_fire() -> None:
    loop = asyncio.get_running_loop()
    reports: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    try:
        queue = TimerQueue(loop)
        fired: list[tuple[str, float]] = []
        bad = _Sleeper("bad", fired, fail=RuntimeError("bad failed"))
        good = _Sleeper("good", fired)
        at = loop.time() + 0.010
        queue.schedule(bad, at)
        queue.schedule(good, at)
        await asyncio.wait_for(good.woken.wait(), DUE)
    finally:
        loop.set_exception_handler(None)
    assert [name for name, _ in fired] == ["bad", "good"]
    assert len(reports) == 1
    assert str(reports[0]["exception"]) == "bad failed"


async def test_a_long_sleep_wakes_early_once_then_fires_on_its_deadline() -> None:
    loop = asyncio.get_running_loop()
    queue = TimerQueue(loop)
    fired: list[tuple[str, float]] = []
    far, near = _Sleeper("far", fired), _Sleeper("near", fired)
    far_at = loop.time() + 0.060
    queue.schedule(far, far_at)
    assert queue._handle_at == pytest.approx(far_at - PREWAKE)
    near_at = loop.time() + 1.5 * PREWAKE  # within twice PREWAKE: no early wake
    queue.schedule(near, near_at)
    assert queue._handle_at == near_at
    await asyncio.wait_for(far.woken.wait(), DUE)
    assert [name for name, _ in fired] == ["near", "far"]
    assert fired[1][1] >= far_at - 0.001


async def test_stale_entries_are_dropped_once_they_are_most_of_the_heap() -> None:
    loop = asyncio.get_running_loop()
    queue = TimerQueue(loop)
    fired: list[tuple[str, float]] = []
    sleepers = [_Sleeper(str(i), fired) for i in range(4)]
    for sleeper in sleepers:
        queue.schedule(sleeper, loop.time() + 60.0)
    for step in range(10 * _COMPACT_AT):
        queue.schedule(sleepers[step % 4], loop.time() + 60.0 - step * 1e-3)
    assert len(queue._heap) <= 2 * _COMPACT_AT + len(sleepers)
    for sleeper in sleepers:
        queue.cancel(sleeper)
    assert queue._heap == []


async def test_one_queue_per_loop() -> None:
    loop = asyncio.get_running_loop()
    assert timer_queue(loop) is timer_queue(loop)
    other = asyncio.new_event_loop()
    try:
        assert timer_queue(other) is not timer_queue(loop)
    finally:
        other.close()


async def test_a_sleeper_cancelled_or_moved_by_a_callback_of_its_batch_keeps_to_that() -> None:
    loop = asyncio.get_running_loop()
    queue = TimerQueue(loop)
    fired: list[tuple[str, float]] = []
    first, cancelled, moved = (_Sleeper(name, fired) for name in ("first", "cancelled", "moved"))
    at = loop.time() + 0.010
    later = at + 0.030
    first.then += [lambda: queue.cancel(cancelled), lambda: queue.schedule(moved, later)]
    for sleeper in (first, cancelled, moved):  # one batch: first is woken first
        queue.schedule(sleeper, at)
    await asyncio.wait_for(moved.woken.wait(), DUE)
    assert [name for name, _ in fired] == ["first", "moved"]
    assert fired[1][1] >= later - 0.001


def test_an_interrupted_batch_leaves_the_rest_due() -> None:
    loop = asyncio.new_event_loop()
    try:
        queue = TimerQueue(loop)
        fired: list[tuple[str, float]] = []
        stop, after = _Sleeper("stop", fired, fail=SystemExit(3)), _Sleeper("after", fired)
        at = loop.time() + 0.005
        queue.schedule(stop, at)
        queue.schedule(after, at)
        with pytest.raises(SystemExit):
            loop.run_until_complete(asyncio.sleep(DUE))
        assert [name for name, _ in fired] == ["stop"]
        loop.run_until_complete(asyncio.wait_for(after.woken.wait(), DUE))
        assert [name for name, _ in fired] == ["stop", "after"]
    finally:
        loop.close()


def test_a_finished_loop_and_its_unclosed_connections_are_freed() -> None:
    async def leave_one_behind() -> None:
        conn = Connection(True, **loopback_options(ta=0.005, negotiate_ta=False))
        conn.set_remote_credentials("ufrag", "p" * 22)
        conn.add_remote_candidate(Candidate.from_sdp("candidate:1 1 udp 1 127.0.0.1 9 typ host"))
        await conn.gather_all()
        conn._connect_started = True  # start the checks without awaiting the outcome
        conn._core.start(conn._time())
        conn._service()  # a timer entry is armed for the retransmission
        assert conn._timer_seq

    gc.collect()
    files = _open_files()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(leave_one_behind())
    finally:
        loop.close()
    loop_ref = weakref.ref(loop)
    del loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the unclosed socket, collected
        gc.collect()
    assert loop_ref() is None
    assert _open_files() == files  # the connection's socket went with it
