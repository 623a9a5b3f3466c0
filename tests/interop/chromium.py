"""Headless Chromium (the Debian package) driven over the DevTools pipe, and the loopback
web server for its test page.

The page is served from ``http://127.0.0.1``, a secure context whose media permission
``--use-fake-ui-for-media-stream`` grants: only then does Chrome put real interface
addresses (not mDNS names) into its candidates, and with ``--allow-loopback-in-peer-connection``
127.0.0.1 too. From ``about:blank`` it offers mDNS names only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.interop.devtools import DevTools

CHROMIUM = os.environ.get("ICESTACK_CHROMIUM", "/usr/lib/chromium/chromium")
"""The browser binary (``/usr/bin/chromium`` is a wrapper script that adds noise)."""

FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--remote-debugging-pipe",
)

PAGE = Path(__file__).with_name("chromium_page.html")

_CHILD_IN, _CHILD_OUT = 3, 4  # the descriptors --remote-debugging-pipe uses


class Page:
    """One tab with the test page loaded; :meth:`call` runs a function the page defines."""

    def __init__(self, devtools: DevTools, session: str) -> None:
        self._devtools = devtools
        self._session = session

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited)."""
        result = await self._devtools.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            self._session,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"JavaScript error in {expression[:60]!r}: {text}")
        return result["result"].get("value")

    async def call(self, function: str, *args: Any) -> Any:
        """``await function(*args)`` in the page, arguments passed as JSON."""
        arguments = ", ".join(json.dumps(arg) for arg in args)
        return await self.evaluate(f"{function}({arguments})")


class Chromium:
    """A running headless browser of our own (its own process group and profile)."""

    def __init__(self, process: asyncio.subprocess.Process, devtools: DevTools, log: Path) -> None:
        self.process = process
        self.devtools = devtools
        self.log = log

    @classmethod
    async def launch(cls, executable: str, workdir: Path) -> Chromium:
        """Start the browser with a fresh profile in ``workdir``; its output goes to
        ``workdir / "chromium.log"``."""
        commands_read, commands_write = os.pipe()
        events_read, events_write = os.pipe()
        # Above the two target numbers, so that placing one cannot overwrite the other.
        child_in = _above(commands_read)
        child_out = _above(events_write)

        def place_pipes() -> None:  # in the child, before exec
            os.dup2(child_in, _CHILD_IN)
            os.dup2(child_out, _CHILD_OUT)

        log = workdir / "chromium.log"
        profile = workdir / "profile"
        try:
            with log.open("wb") as output:
                process = await asyncio.create_subprocess_exec(
                    executable,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    "about:blank",
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    pass_fds=(_CHILD_IN, _CHILD_OUT),
                    preexec_fn=place_pipes,
                    start_new_session=True,
                )
        finally:
            for fd in (child_in, child_out):
                os.close(fd)
        try:
            devtools = await DevTools.over_pipes(events_read, commands_write)
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        return cls(process, devtools, log)

    async def open(self, url: str) -> Page:
        """A new tab showing ``url``, once its load event has fired."""
        target = await self.devtools.call("Target.createTarget", {"url": "about:blank"})
        attached = await self.devtools.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        session = attached["sessionId"]
        await self.devtools.call("Page.enable", session=session)
        loaded = self.devtools.event("Page.loadEventFired", session)
        navigation = await self.devtools.call("Page.navigate", {"url": url}, session)
        if "errorText" in navigation:
            raise RuntimeError(f"Chromium could not load {url}: {navigation['errorText']}")
        await loaded
        return Page(self.devtools, session)

    async def close(self) -> None:
        """Stop the browser and every process it started (its process group)."""
        await self.devtools.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.process.wait()
                    return

    def output(self) -> str:
        """What the browser printed (for failure reports)."""
        return self.log.read_text(errors="replace")


def _above(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered above the child's pipe descriptors
    (closing ``fd``)."""
    duplicate = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _CHILD_OUT + 1)
    os.close(fd)
    return duplicate


@contextlib.asynccontextmanager
async def serve(page: bytes) -> AsyncIterator[str]:
    """Serve ``page`` as ``text/html`` at ``http://127.0.0.1:<port>/`` (anything else is
    404) for the duration; yields the URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if path == b"/":
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                body = page
            else:
                head, body = b"HTTP/1.1 404 Not Found\r\n", b""
            head += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            writer.write(head + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()
