"""The process-wide pacing rule of RFC 8445 section 14: all agents together start at most
one new STUN transaction per interval (5 ms)."""

from __future__ import annotations

GLOBAL_INTERVAL = 0.005


class Pacer:
    """A slot clock shared by the agents it paces.

    An agent asks :meth:`slot` when it may next start a transaction and calls
    :meth:`take` when it does. Agents on one clock share one pacer: :data:`GLOBAL_PACER`
    for the monotonic clock of the process, one per simulated network in tests.
    """

    __slots__ = ("_next", "interval")

    def __init__(self, interval: float = GLOBAL_INTERVAL) -> None:
        if interval < 0:
            raise ValueError("the pacing interval cannot be negative")
        self.interval = interval
        self._next = float("-inf")

    def slot(self, now: float) -> float:
        """The earliest time, ``now`` or later, at which a new transaction may start."""
        return now if now >= self._next else self._next

    def take(self, now: float) -> None:
        """Record that a transaction started at ``now``."""
        self._next = now + self.interval


GLOBAL_PACER = Pacer()
"""The pacer of every agent in this process that keeps the process-wide rule (the
default); its clock is :func:`time.monotonic`, the clock the asyncio shells use."""
