"""Lines from standard input for asyncio, without a thread and without making the
descriptor non-blocking (a terminal is shared with the shell, which would inherit that).

A pipe, socket or terminal is read when the event loop says it is readable - ``os.read``
then returns what is there without blocking. A regular file or ``/dev/null``, which
``epoll`` refuses and which never block, is read directly.
"""

from __future__ import annotations

import asyncio
import os

_READ_SIZE = 65536


class Lines:
    """The lines of a file descriptor (standard input by default), as bytes. The
    descriptor is watched only while a :meth:`readline` waits, so nothing is read ahead
    of what is asked for beyond one read's worth."""

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._eof = False
        self._pollable = True
        self._waiter: asyncio.Future[None] | None = None

    async def readline(self) -> bytes | None:
        """The next line with its ``\\n`` (the last one may lack it); None at the end."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or (self._eof and self._buffer):
                size = end + 1 if end >= 0 else len(self._buffer)
                line = bytes(self._buffer[:size])
                del self._buffer[:size]
                return line
            if self._eof:
                return None
            await self._more()

    async def _more(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pollable:
            try:
                loop.add_reader(self._fd, self._readable)
            except (ValueError, OSError):  # epoll refuses regular files (EPERM)
                self._pollable = False
        if not self._pollable:
            self._read()
            return
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            loop.remove_reader(self._fd)
            self._waiter = None

    def _readable(self) -> None:
        self._read()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # a terminal that went away (EIO), a closed descriptor
            data = b""
        if data:
            self._buffer += data
        else:
            self._eof = True
