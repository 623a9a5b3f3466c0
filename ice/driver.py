"""The asyncio side of a sans-I/O ICE core: its one timer, and the outcome of
``connect()`` that the core's events settle. :class:`~ice.Connection` drives an
:class:`~ice.Agent` with it, :class:`~ice.MultiStreamConnection` a
:class:`~ice.MultiStreamAgent`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from .agent import Agent
from .errors import ConnectionFailed, IceError
from .events import ConnectionState, ConnectionStateChanged, Event, Restarted, SelectedPairChanged
from .multistream import MultiStreamAgent
from .timers import TimerQueue, timer_queue

TIMER_LEAD = 0.001
"""asyncio's selectors wait in whole milliseconds, rounded up: a timer armed for its
deadline fires 0.4-0.6 ms late as a rule, a delay that every paced check would add.
The core's timer is armed this much early instead, and the core does what falls due
within this much of the wall clock (``Agent.handle_timeout(now, early=...)``): a check
may leave up to 1 ms before its pacing slot, never later because of the timer, while
the core's clock stays the wall clock (RTTs are true). The ICE timeout is not served
early: ConnectionFailed never comes before it."""

Outcome = TypeVar("Outcome")


class ConnectionClosed(IceError, ConnectionError):
    """The connection was closed (by ``close()`` or a failure)."""


def wake(waiters: list[asyncio.Future[None]]) -> None:
    """Wake every waiter still waiting, and forget them."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()


class Driver(Generic[Outcome]):
    """One timer around ``_core`` and the outcome of connecting: the selected pair(s), or
    why there are none. A subclass says what the outcome is, sends the core's output
    (:meth:`_service`) and says when gathering has gone far enough to start."""

    __slots__ = (
        "_close_reason",
        "_closed",
        "_connect_started",
        "_connect_waiters",
        "_core",
        "_loop",
        "_outcome",
        "_time",
        "_timer_at",
        "_timer_seq",
        "_timers",
    )

    def __init__(self, core: Agent | MultiStreamAgent) -> None:
        self._core = core
        self._loop: asyncio.AbstractEventLoop | None = None
        self._time: Callable[[], float] = time.monotonic
        self._timers: TimerQueue | None = None
        self._timer_seq = 0  # the entry in the loop's TimerQueue, 0 for none
        self._timer_at: float | None = None
        self._connect_started = False
        self._outcome: Outcome | BaseException | None = None
        self._connect_waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._close_reason: BaseException | None = None

    def _closed_error(self) -> BaseException:
        """What is raised once closed: why it was closed, if not by ``close()``."""
        return self._close_reason or ConnectionClosed("the connection is closed")

    # -- what a subclass provides ----------------------------------------------------------

    def _service(self) -> None:
        """Send what the core wants sent, act on its events, then :meth:`_arm`."""
        raise NotImplementedError

    def _selected(self) -> Outcome:
        """What :meth:`_connect` returns once the core is connected."""
        raise NotImplementedError

    def _start_gathering(self) -> None:
        raise NotImplementedError

    async def _ready_to_start(self) -> BaseException | None:
        """Wait until the checks may start (some candidate gathered, or gathering over);
        why they cannot, if so."""
        raise NotImplementedError

    # -- what we offer ---------------------------------------------------------------------

    @property
    def local_ufrag(self) -> str:
        return self._core.local_ufrag

    @property
    def local_pwd(self) -> str:
        return self._core.local_pwd

    @property
    def ta(self) -> float:
        """The Ta we propose (signal it as ``a=ice-pacing`` when not 50 ms)."""
        return self._core.proposed_ta

    # -- the loop and the timer ------------------------------------------------------------

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, and its clock for the core (the wall clock unless a test
        loop has its own)."""
        if self._loop is None:
            loop = self._loop = asyncio.get_running_loop()
            default_clock = type(loop).time is asyncio.BaseEventLoop.time
            self._time = time.monotonic if default_clock else loop.time
            self._timers = timer_queue(loop)
        return self._loop

    def _arm(self) -> None:
        """(Re-)arm the one timer for the core's next deadline."""
        timers = self._timers
        if timers is None or self._closed:
            return
        core = self._core
        deadline = core.poll_timeout()
        if deadline == self._timer_at:
            return
        self._timer_at = deadline
        if deadline is None:
            timers.cancel(self)
            return
        lead = 0.0 if deadline == core.ice_deadline else TIMER_LEAD  # never fail early
        timers.schedule(self, deadline - lead)

    def _on_timer(self) -> None:
        self._timer_at = None
        self._core.handle_timeout(self._time(), TIMER_LEAD)
        self._service()

    def _stop_timer(self) -> None:
        self._timer_at = None
        if self._timers is not None:
            self._timers.cancel(self)

    # -- connecting ------------------------------------------------------------------------

    async def _connect(self) -> Outcome:
        """Start the checks once (when gathering allows), then wait for the outcome."""
        self._start_gathering()
        loop = self._bind_loop()
        if not self._connect_started:
            self._connect_started = True
            error = await self._ready_to_start()
            if error is not None:
                self._settle(error)
            elif not self._closed:  # closed meanwhile: closing settles the outcome
                self._core.start(self._time())
                self._service()
        waiters = self._connect_waiters
        while self._outcome is None:
            waiter = loop.create_future()
            waiters.append(waiter)  # one per caller: cancelling one leaves the others be
            try:
                await waiter
            finally:
                if waiter in waiters:
                    waiters.remove(waiter)
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def _settle(self, outcome: Outcome | BaseException) -> None:
        """The outcome of connecting, unless there is one already."""
        if self._outcome is None:
            self._outcome = outcome
            wake(self._connect_waiters)

    def _session_event(self, event: Event) -> None:
        """Settle the outcome on the core's connection state, its restarts and new
        selected pairs (an ICE restart completing)."""
        if not self._connect_started:
            return
        core = self._core
        if type(event) is ConnectionStateChanged:
            state = event.state
            if state is ConnectionState.CONNECTED:
                if not core.restarting:  # COMPLETED becomes CONNECTED as a restart begins
                    self._settle(self._selected())
            elif state is ConnectionState.FAILED:
                self._settle(event.error or ConnectionFailed("ICE failed"))
            elif state is ConnectionState.CLOSED:
                self._settle(ConnectionClosed("the connection was closed"))
        elif type(event) is Restarted:
            if not self._closed:  # ours or the peer's: its checks start at once
                self._outcome = None
                core.start(self._time())
        elif type(event) is SelectedPairChanged and core.state.usable and not core.restarting:
            self._settle(self._selected())  # also when an ICE restart completes
