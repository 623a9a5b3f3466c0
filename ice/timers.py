"""One asyncio timer per event loop for every ICE core on it.

Each :class:`~ice.driver.Driver` has one deadline at a time. Rather than an asyncio
``TimerHandle`` each (a handle object, a heap of them compared in Python, a cancel for
every re-arm), the deadlines of all drivers on a loop wait in one heap of plain tuples,
served by a single loop timer: a thousand connections that fall due together are one
loop callback.

The loop timer also wakes :data:`PREWAKE` before a long sleep ends and sleeps the rest
again. A virtual machine's vCPU that idles for tens of milliseconds comes back 2-3 ms
late as a rule (measured here: a 48 ms sleep ended 2.4 ms late at the median); from a
5 ms sleep it comes back on time. One extra wake-up per long sleep of the whole process
keeps a paced check from leaving milliseconds after its slot.
"""

from __future__ import annotations

import asyncio
import heapq
import time
import weakref
from typing import Protocol

PREWAKE = 0.005
"""How long before a deadline that is further off than twice this the loop timer wakes
first, to sleep the last stretch as a short sleep."""

_RESOLUTION = time.get_clock_info("monotonic").resolution
_COMPACT_AT = 64
"""Stale entries (deadlines moved or stopped) are dropped from the heap once there are
this many and they are more than half of it."""


class Sleeper(Protocol):
    """What the queue wakes: its current entry's sequence number, and the callback."""

    _timer_seq: int

    def _on_timer(self) -> None: ...


class TimerQueue:
    """The deadlines of every :class:`Sleeper` on one loop, served by one loop timer."""

    __slots__ = ("_firing", "_handle", "_handle_at", "_heap", "_live", "_loop", "_seq", "_stale")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Sleeper]] = []
        self._seq = 0
        self._live = 0
        self._stale = 0
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = 0.0
        self._firing = False

    def schedule(self, sleeper: Sleeper, when: float) -> None:
        """Wake ``sleeper`` at ``when`` (loop time), in place of its earlier entry."""
        replaced = sleeper._timer_seq
        self._seq += 1
        sleeper._timer_seq = self._seq
        heapq.heappush(self._heap, (when, self._seq, sleeper))
        if replaced:
            self._retire()
        else:
            self._live += 1
        if not self._firing and (self._handle is None or when < self._handle_at):
            self._rearm()

    def cancel(self, sleeper: Sleeper) -> None:
        """Forget ``sleeper``'s entry, if it has one."""
        if not sleeper._timer_seq:
            return
        sleeper._timer_seq = 0
        self._live -= 1
        if not self._live:
            self._heap.clear()
            self._stale = 0
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            return
        self._retire()

    def _retire(self) -> None:
        """One more heap entry is stale: drop them all once they are most of it."""
        self._stale += 1
        if self._stale >= _COMPACT_AT and 2 * self._stale > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2]._timer_seq == entry[1]]
            heapq.heapify(self._heap)
            self._stale = 0

    def _rearm(self) -> None:
        heap = self._heap
        while heap and heap[0][2]._timer_seq != heap[0][1]:
            heapq.heappop(heap)
            self._stale -= 1
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not heap:
            return
        when = heap[0][0]
        if when - self._loop.time() > 2 * PREWAKE:
            when -= PREWAKE
        self._handle_at = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        """Wake every sleeper that is due (those it re-schedules as due wait for the
        next loop iteration, as the loop's own timers do), then re-arm."""
        self._handle = None
        heap = self._heap
        horizon = self._loop.time() + _RESOLUTION  # what the loop itself counts as due
        due = []
        while heap and heap[0][0] <= horizon:
            _, seq, sleeper = heapq.heappop(heap)
            if sleeper._timer_seq != seq:
                self._stale -= 1
                continue
            sleeper._timer_seq = 0
            self._live -= 1
            due.append(sleeper)
        self._firing = True
        try:
            for sleeper in due:
                try:
                    sleeper._on_timer()
                except Exception as exc:  # one core's failure must not starve the others
                    self._loop.call_exception_handler(
                        {"message": "an ICE timer callback failed", "exception": exc}
                    )
        finally:
            self._firing = False
        self._rearm()


_QUEUES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerQueue] = (
    weakref.WeakKeyDictionary()
)


def timer_queue(loop: asyncio.AbstractEventLoop) -> TimerQueue:
    """The queue serving ``loop`` (made on first use)."""
    queue = _QUEUES.get(loop)
    if queue is None:
        queue = _QUEUES[loop] = TimerQueue(loop)
    return queue
