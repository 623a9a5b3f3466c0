"""Exchange offer lines with the peer over a Unix socket or TCP (``ice connect --signal``).

``unix:PATH`` and ``tcp:HOST:PORT`` name a meeting point, and both sides run the same
command: the first to find nobody listening there listens, the other connects. Binding
decides a race - one socket only can be bound to PATH or HOST:PORT - so two sides
started at the same moment still pair up, one each way. A side that cannot bind HOST
(an address of the other machine) keeps connecting, every ``REMOTE_RETRY`` seconds, until the
other side listens. Each side writes its line and reads the peer's; the listener accepts
one connection, then stops listening and removes its socket file.

The line carries the ICE password: signal over TCP only across a network you trust (or
through an SSH tunnel).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from stun.uri import format_address, ip_literal, split_host_port

RETRY = 0.05
"""Seconds between attempts while the meeting point is bound but not answering: the
other side between bind and listen (or a stale socket file)."""
REMOTE_RETRY = 0.5
"""Seconds between attempts to connect to a meeting point on the other machine."""
STALE_AFTER = 1.0
"""Seconds a bound socket that refuses connections may take before it counts as left
over from an earlier run."""
MAX_LINE = 65536

_Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class SignalAddress:
    """Where the two sides meet: a Unix socket path, or a TCP host and port."""

    kind: Literal["unix", "tcp"]
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"tcp:{format_address((self.host, self.port))}"


@dataclass(frozen=True, slots=True)
class Exchanged:
    """The peer's line, and whether we were the side that listened."""

    line: str
    listened: bool


def parse_signal(text: str) -> SignalAddress:
    """``unix:PATH`` or ``tcp:HOST:PORT``; ValueError for anything else."""
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return SignalAddress("unix", path=rest)
    if kind == "tcp" and rest:
        host, port = split_host_port(rest, 0)
        if port == 0:
            raise ValueError(f"{text!r}: tcp: needs a port (tcp:HOST:PORT)")
        return SignalAddress("tcp", host=host, port=port)
    raise ValueError(f"{text!r} is not unix:PATH or tcp:HOST:PORT")


async def exchange(
    address: SignalAddress, line: str, on_listening: Callable[[], None] | None = None
) -> Exchanged:
    """Meet the peer at ``address``, send ``line`` and return the peer's.

    ``on_listening`` is called when this side starts listening. Raises OSError naming
    the address (a ConnectionError when the peer hung up without a line).
    """
    reader, writer, listened = await _meet(address, on_listening)
    try:
        writer.write(line.encode() + b"\n")
        await writer.drain()
        received = await reader.readline()
    except ConnectionError:
        received = b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not received.endswith(b"\n"):
        raise ConnectionError(f"{address}: the peer hung up without sending its line")
    return Exchanged(received.decode("utf-8", "replace").strip(), listened)


async def _meet(
    address: SignalAddress, on_listening: Callable[[], None] | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
    loop = asyncio.get_running_loop()
    refused_since: float | None = None
    while True:
        try:
            return (*await _connect(address), False)
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        except OSError as exc:
            raise OSError(f"{address}: {exc.strerror or exc}") from None
        listener, taken = _listen(address)
        if listener is not None:
            if on_listening is not None:
                on_listening()
            return (*await _accept(address, listener), True)
        if not taken:
            await asyncio.sleep(REMOTE_RETRY)
            continue
        now = loop.time()
        if refused_since is None:
            refused_since = now
        elif now - refused_since >= STALE_AFTER:
            raise OSError(_stale(address))
        await asyncio.sleep(RETRY)


def _stale(address: SignalAddress) -> str:
    if address.kind == "unix":
        return f"{address}: a socket file nobody listens on (left by an earlier run?): remove it"
    return f"{address}: the port is in use, but nobody accepts connections on it"


async def _connect(address: SignalAddress) -> _Streams:
    if address.kind == "unix":
        return await asyncio.open_unix_connection(address.path, limit=MAX_LINE)
    return await asyncio.open_connection(address.host, address.port, limit=MAX_LINE)


def _listen(address: SignalAddress) -> tuple[socket.socket | None, bool]:
    """A listening socket; or None and whether the address is taken (in use) rather
    than not ours to bind."""
    sock = _socket(address)
    try:
        if address.kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address.path if address.kind == "unix" else (address.host, address.port))
        sock.listen(1)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None, True
        if exc.errno == errno.EADDRNOTAVAIL:
            return None, False
        raise OSError(f"{address}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock, False


def _socket(address: SignalAddress) -> socket.socket:
    if address.kind == "unix":
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    family = socket.AF_INET6 if ip_literal(address.host, socket.AF_INET6) else socket.AF_INET
    return socket.socket(family, socket.SOCK_STREAM)


async def _accept(address: SignalAddress, listener: socket.socket) -> _Streams:
    try:
        client, _ = await asyncio.get_running_loop().sock_accept(listener)
    finally:
        listener.close()
        if address.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address.path)
    if address.kind == "unix":
        return await asyncio.open_unix_connection(sock=client, limit=MAX_LINE)
    return await asyncio.open_connection(sock=client, limit=MAX_LINE)
