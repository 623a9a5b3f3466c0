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
"""Stale entries (deadlines moved or cancelled) are dropped from the heap once there are
this many and they are more than half of it."""

_Entry = tuple[float, int, "Sleeper"]


class Sleeper(Protocol):
    """What the queue wakes: its current entry's sequence number (0 for none), and the
    callback."""

    _timer_seq: int

    def _on_timer(self) -> None: ...


class TimerQueue:
    """The deadlines of every :class:`Sleeper` on one loop, served by one loop timer.

    Each sleeper has at most one live entry, the one its ``_timer_seq`` names; entries it
    replaced or cancelled stay in the heap, stale, until they come up or are compacted
    away. A sleeper cancelled or moved by another's callback in the same batch of due
    ones is not woken.
    """

    __slots__ = (
        "__weakref__",
        "_firing",
        "_handle",
        "_handle_at",
        "_heap",
        "_live",
        "_loop",
        "_seq",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[_Entry] = []
        self._seq = 0
        self._live = 0  # sleepers with a live entry (in the heap, or due in _fire)
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = 0.0
        self._firing = False

    def schedule(self, sleeper: Sleeper, when: float) -> None:
        """Wake ``sleeper`` at ``when`` (loop time), in place of its earlier entry."""
        if not sleeper._timer_seq:
            self._live += 1
        self._seq += 1
        sleeper._timer_seq = self._seq
        heapq.heappush(self._heap, (when, self._seq, sleeper))
        self._compact()
        if not self._firing and (self._handle is None or when < self._handle_at):
            self._rearm()

    def cancel(self, sleeper: Sleeper) -> None:
        """Forget ``sleeper``'s entry, if it has one."""
        if not sleeper._timer_seq:
            return
        sleeper._timer_seq = 0
        self._live -= 1
        if self._live:
            self._compact()
            return
        self._heap.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _compact(self) -> None:
        """Drop the stale entries once they are most of the heap."""
        heap = self._heap
        stale = len(heap) - self._live
        if stale >= _COMPACT_AT and 2 * stale > len(heap):
            heap[:] = [entry for entry in heap if entry[2]._timer_seq == entry[1]]
            heapq.heapify(heap)

    def _rearm(self) -> None:
        heap = self._heap
        while heap and heap[0][2]._timer_seq != heap[0][1]:
            heapq.heappop(heap)
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
        due: list[_Entry] = []
        while heap and heap[0][0] <= horizon:
            entry = heapq.heappop(heap)
            if entry[2]._timer_seq == entry[1]:
                due.append(entry)
        self._firing = True
        woken = 0
        try:
            for _, seq, sleeper in due:
                woken += 1
                if sleeper._timer_seq != seq:
                    continue  # cancelled or moved by a callback of this batch
                sleeper._timer_seq = 0
                self._live -= 1
                try:
                    sleeper._on_timer()
                except Exception as exc:  # one core's failure must not starve the others
                    self._loop.call_exception_handler(
                        {"message": "an ICE timer callback failed", "exception": exc}
                    )
        finally:  # interrupted (KeyboardInterrupt ...): the rest stay due
            for entry in due[woken:]:
                heapq.heappush(heap, entry)
            self._firing = False
            self._rearm()


_QUEUES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.ref[TimerQueue]] = (
    weakref.WeakKeyDictionary()
)
"""Each loop's queue, held weakly both ways: the queue (kept alive by its drivers and its
loop timer) refers to the loop and, through its entries, to connections that refer to
the loop, so a strong value here would keep every loop, and every connection left
unclosed on it, alive for good."""


def timer_queue(loop: asyncio.AbstractEventLoop) -> TimerQueue:
    """The queue serving ``loop`` (made on first use, and again once it is gone)."""
    held = _QUEUES.get(loop)
    queue = None if held is None else held()
    if queue is None:
        queue = TimerQueue(loop)
        _QUEUES[loop] = weakref.ref(queue)
    return queue
