"""The asyncio shell of :class:`~ice.reliable.Reliable` on a connected
:class:`~ice.connection.Connection`: one reader task and one deadline in the loop's
:class:`~ice.timers.TimerQueue` (it moves with nearly every acknowledgement)."""

from __future__ import annotations

import asyncio
import contextlib

from .connection import Connection, ConnectionClosed
from .driver import wake
from .errors import IceError
from .reliable import Reliable
from .timers import timer_queue


class Channel:
    """Ordered, acknowledged messages to the peer of a connected ``conn``."""

    def __init__(self, conn: Connection, core: Reliable) -> None:
        self._conn = conn
        self.core = core
        self._loop = asyncio.get_running_loop()
        self._waiters: list[asyncio.Future[None]] = []
        self._timers = timer_queue(self._loop)
        self._timer_seq = 0  # this channel's entry in the TimerQueue, 0 for none
        self._timer_at: float | None = None
        self._closed = False
        self._error: IceError | None = None
        core.start(self._loop.time())
        self._reader = self._loop.create_task(self._read())
        self._flush()

    async def send(self, kind: int, payload: bytes) -> None:
        """Send one message once the window has room for it."""
        while not self.core.writable:
            self._check()
            await self._changed()
        self.core.send(self._loop.time(), kind, payload)
        self._flush()

    async def receive(self) -> tuple[int, bytes]:
        """The next message from the peer, as ``(kind, payload)``."""
        while (message := self.core.poll_message()) is None:
            self._check()
            await self._changed()
        return message

    async def settle(self, timeout: float | None = None) -> bool:
        """Wait until the peer has acknowledged everything sent; False after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while not self.core.settled:
                    self._check()
                    await self._changed()
        except TimeoutError:
            return False
        return True

    def send_now(self, kind: int, payload: bytes) -> bool:
        """Send a message without waiting (for a farewell); False when the window is full."""
        if self._closed or not self.core.writable:
            return False
        self.core.send(self._loop.time(), kind, payload)
        self._flush()
        return True

    async def close(self) -> None:
        """Stop reading and forget the timer (the connection stays open)."""
        self._closed = True
        self._timers.cancel(self)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        wake(self._waiters)

    def _check(self) -> None:
        if self.core.failed is not None:
            raise IceError(self.core.failed)
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ConnectionClosed("the channel is closed")

    async def _changed(self) -> None:
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def _read(self) -> None:
        try:
            while True:
                data = await self._conn.recv()
                self.core.handle_datagram(self._loop.time(), data)
                self._flush()
        except IceError as exc:  # closed, or consent to send was lost
            self._error = exc
        finally:
            self._closed = True
            wake(self._waiters)

    def _on_timer(self) -> None:
        self._timer_at = None
        self.core.handle_timeout(self._loop.time())
        self._flush()

    def _flush(self) -> None:
        if self._closed:
            return
        try:
            for datagram in self.core.poll_transmits():
                self._conn.send_nowait(datagram)
        except IceError as exc:  # the connection closed under us
            self._error = exc
            self._closed = True
        deadline = None if self._closed else self.core.poll_timeout()
        if deadline != self._timer_at:  # re-armed only when the deadline moved
            self._timer_at = deadline
            if deadline is None:
                self._timers.cancel(self)
            else:
                self._timers.schedule(self, deadline)
        wake(self._waiters)
