"""Which STUN and TURN servers gathering still waits for, shown while it waits.

On a terminal a status line is redrawn in place (``\\r`` and erase-to-end-of-line)
every ``TERMINAL_TICK`` seconds and cleared around each result line; on anything else a
plain line is printed every ``PLAIN_TICK`` seconds while a server is pending. A server
is pending until it has given a candidate or failed (one that answered with nothing new,
such as a reflexive address equal to a host one, stays pending until gathering ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TextIO

from .connection import Connection
from .gather import stun_server

TERMINAL_TICK = 0.1
PLAIN_TICK = 1.0
_ERASE = "\r\x1b[K"


def server_names(stun: Sequence[str], turn: Sequence[str]) -> list[str]:
    """The names candidates and failures give these servers: ``host:port`` for STUN,
    the URI for TURN."""
    return [str(stun_server(url)) for url in stun] + list(turn)


class Progress:
    """Shows the pending servers of ``conn`` on ``stream`` while in an ``async with``."""

    def __init__(
        self, conn: Connection, servers: Sequence[str], stream: TextIO, *, enabled: bool = True
    ) -> None:
        self._conn = conn
        self._servers = list(servers)
        self._stream = stream
        self._enabled = enabled and bool(self._servers)
        self._terminal = stream.isatty()
        self._began = time.monotonic()
        self._shown = False
        self._task: asyncio.Task[None] | None = None

    def pending(self) -> list[str]:
        """The servers that have given neither a candidate nor a failure yet."""
        done = {candidate.server for candidate in self._conn.local_candidates}
        done.update(failure.server for failure in self._conn.failures)
        return [server for server in self._servers if server not in done]

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Print result lines inside this: the status line makes way for them."""
        self._clear()
        try:
            yield
        finally:
            if self._task is not None and self._terminal:
                self._draw()

    async def __aenter__(self) -> Progress:
        if self._enabled:
            self._began = time.monotonic()
            self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._clear()

    async def _tick(self) -> None:
        tick = TERMINAL_TICK if self._terminal else PLAIN_TICK
        while True:
            await asyncio.sleep(tick)
            self._draw()

    def _draw(self) -> None:
        pending = self.pending()
        if not pending:
            self._clear()
            return
        elapsed = time.monotonic() - self._began
        text = f"waiting {elapsed:.1f} s for {', '.join(pending)}"
        if self._terminal:
            self._stream.write(f"{_ERASE}{text}")
            self._shown = True
        else:
            self._stream.write(f"{text}\n")
        self._stream.flush()

    def _clear(self) -> None:
        if self._shown:
            self._stream.write(_ERASE)
            self._stream.flush()
            self._shown = False
