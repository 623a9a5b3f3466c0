"""A minimal Chrome DevTools protocol client over ``--remote-debugging-pipe``.

With that switch Chrome reads commands from its file descriptor 3 and writes answers and
events to descriptor 4, each message one JSON object terminated by a NUL byte. A pipe
needs no port, no HTTP discovery and no WebSocket library.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any

_LIMIT = 1 << 24


class DevToolsError(Exception):
    """The browser answered a command with an error, or the pipe closed."""


class DevTools:
    """Send commands, await their answers, await events; ``session`` addresses a target
    attached with ``Target.attachToTarget(flatten=True)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.WriteTransport) -> None:
        self._reader = reader
        self._writer = writer
        self._next_id = 0
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: dict[tuple[str, str | None], list[asyncio.Future[dict[str, Any]]]] = {}
        self._closed: DevToolsError | None = None
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def over_pipes(cls, read_fd: int, write_fd: int) -> DevTools:
        """A client on our ends of the two pipes (it owns and closes them)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_LIMIT)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(write_fd, "wb", 0))
        return cls(reader, writer)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Run one command; its ``result``."""
        if self._closed is not None:
            raise self._closed
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self._calls[self._next_id] = future
        self._writer.write(json.dumps(message).encode() + b"\0")
        answer = await future
        if "error" in answer:
            raise DevToolsError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def event(self, method: str, session: str | None = None) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``method`` event of ``session`` (its params); take it
        before the command that causes the event."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((method, session), []).append(future)
        return future

    async def _read(self) -> None:
        try:
            while True:
                data = await self._reader.readuntil(b"\0")
                self._dispatch(json.loads(data[:-1]))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self._fail(DevToolsError(f"the DevTools pipe closed: {exc!r}"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            future = self._calls.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message)
            return
        key = (message.get("method", ""), message.get("sessionId"))
        for future in self._waiters.pop(key, []):
            if not future.done():
                future.set_result(message.get("params", {}))

    def _fail(self, error: DevToolsError) -> None:
        self._closed = error
        pending = list(self._calls.values())
        for waiters in self._waiters.values():
            pending += waiters
        self._calls.clear()
        self._waiters.clear()
        for future in pending:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a waiter may be gone already

    async def close(self) -> None:
        self._writer.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._fail(DevToolsError("the client is closed"))
