"""A lean UDP endpoint on the running asyncio loop, for data paths that count nanoseconds.

asyncio's datagram transport reads one datagram per wake-up of the loop and wraps every
write in bookkeeping. :class:`DatagramSocket` reads everything the socket holds (up to a
batch) per wake-up and writes straight to the socket, queueing only when the kernel's
buffer is full. It needs a loop with ``add_reader`` (every selector loop, uvloop); use
:func:`open_datagram_socket`, which says so clearly otherwise.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from .attributes import Address

READ_BATCH = 64
"""Datagrams read per wake-up of the loop at most, so that one busy socket cannot starve
the others."""
MAX_DATAGRAM = 65535
WRITE_BACKLOG = 1 << 20
"""Bytes queued while the kernel's send buffer is full; beyond that datagrams are
dropped (and counted), as a UDP socket would."""

DatagramHandler = Callable[[bytes, Address], None]
ErrorHandler = Callable[[OSError], None]
UnreachableHandler = Callable[[Address, bytes, OSError], None]
"""``(destination, payload, error)``: a datagram we sent to ``destination`` with this
``payload`` drew an ICMP error (``error.errno`` ``ECONNREFUSED`` for port unreachable,
``EHOSTUNREACH``, ``ENETUNREACH`` ...), or the kernel refused to send it at all
(``EACCES`` for a broadcast address, ``ENETUNREACH`` without a route ...)."""

_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, 11), socket.AF_INET6: (socket.IPPROTO_IPV6, 25)}
"""Linux's IP_RECVERR and IPV6_RECVERR (not in the socket module before Python 3.12)."""
_EXTENDED_ERROR = struct.Struct("=I")
"""The ``ee_errno`` that opens Linux's ``struct sock_extended_err``."""
_ERROR_QUEUE_DEPTH = 64


class IcmpError(OSError):
    """An ICMP error the network sent back for one of our datagrams (Linux IP_RECVERR),
    as against a datagram the kernel refused to send."""


class DatagramSocket:
    """One non-blocking UDP socket read and written directly.

    ``on_datagram(data, source)`` is called for each datagram, ``on_error(exc)`` for
    errors the socket reports (on a connected socket, ICMP errors such as "port
    unreachable" about its one peer). The socket is closed by :meth:`close`.

    An unconnected socket hears of ICMP errors only with ``on_unreachable``: on Linux it
    then asks the kernel to queue them (``IP_RECVERR``) and reports each with the
    destination and payload of the datagram that drew it, so that the caller can tell
    which of its peers or transactions failed. Elsewhere ``on_unreachable`` is never
    called.
    """

    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_closing",
        "_fd",
        "_loop",
        "_on_datagram",
        "_on_error",
        "_on_unreachable",
        "_remote",
        "_sock",
        "dropped_writes",
    )

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: DatagramHandler,
        on_error: ErrorHandler,
        remote: Address | None = None,
        on_unreachable: UnreachableHandler | None = None,
    ) -> None:
        sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._remote = remote
        self._on_datagram = on_datagram
        self._on_error = on_error
        queued = on_unreachable is not None and _queue_icmp_errors(sock, remote)
        self._on_unreachable = on_unreachable if queued else None
        self._backlog: deque[tuple[bytes, Address | None]] | None = None  # made when needed
        self._backlog_bytes = 0
        self._closing = False
        self.dropped_writes = 0
        """Datagrams dropped because the write backlog was full."""
        self._loop.add_reader(self._fd, self._read_ready)

    @property
    def local_address(self) -> Address:
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"sockname"``, ``"peername"`` or ``"socket"``, like an asyncio transport."""
        if name == "sockname":
            return self._sock.getsockname()
        if name == "peername":
            return self._remote
        if name == "socket":
            return self._sock
        return default

    def is_closing(self) -> bool:
        return self._closing

    # -- writing -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send one datagram to the connected peer."""
        if self._backlog or self._closing:
            self._queue(data, None)
            return
        try:
            self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            self._queue(data, None)
        except OSError as exc:
            self._on_error(exc)

    def sendto(self, data: bytes, address: Address) -> None:
        """Send one datagram to ``address``."""
        if self._backlog or self._closing:
            self._queue(data, address)
            return
        try:
            self._sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            self._queue(data, address)
        except OSError as exc:
            self._send_failed(exc, data, address)

    def _send_failed(self, exc: OSError, data: bytes, address: Address) -> None:
        """``sendto`` failed: the queued ICMP errors it reports, if any; else the kernel
        refused this datagram itself, which is ``on_unreachable``'s to hear too."""
        if self._on_unreachable is None:
            self._on_error(exc)
        elif not self._drain_error_queue(exc):
            self._on_unreachable(address, data, exc)

    def _queue(self, data: bytes, address: Address | None) -> None:
        if self._closing:
            return
        if self._backlog_bytes + len(data) > WRITE_BACKLOG:
            self.dropped_writes += 1
            return
        if self._backlog is None:
            self._backlog = deque()
        if not self._backlog:
            self._loop.add_writer(self._fd, self._write_ready)
        self._backlog.append((data, address))
        self._backlog_bytes += len(data)

    def _write_ready(self) -> None:
        backlog = self._backlog
        while backlog:  # not None: the writer is only added with data queued
            data, address = backlog[0]
            try:
                if address is None:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if address is None:
                    self._on_error(exc)
                else:
                    self._send_failed(exc, data, address)
            backlog.popleft()
            self._backlog_bytes -= len(data)
        self._loop.remove_writer(self._fd)

    # -- reading -----------------------------------------------------------------------------

    def _read_ready(self) -> None:
        sock = self._sock
        handler = self._on_datagram
        remote = self._remote
        try:
            if remote is not None:
                receive = sock.recv
                for _ in range(READ_BATCH):
                    handler(receive(MAX_DATAGRAM), remote)
            else:
                receive_from = sock.recvfrom
                for _ in range(READ_BATCH):
                    data, source = receive_from(MAX_DATAGRAM)
                    handler(data, source)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if not self._closing:
                self._socket_error(exc)

    def _socket_error(self, exc: OSError) -> None:
        """An error the socket reported while reading: the queued ICMP errors, if any
        (this one is the latest); else ``on_error``."""
        if self._on_unreachable is None or not self._drain_error_queue(exc):
            self._on_error(exc)

    def _drain_error_queue(self, exc: OSError) -> int:
        """Hand each queued ICMP error to ``on_unreachable``; how many there were."""
        assert self._on_unreachable is not None
        # Every queued error is taken here, where the kernel reports one: the queue
        # keeps the socket readable (EPOLLERR) until it is empty.
        receive = self._sock.recvmsg
        for count in range(_ERROR_QUEUE_DEPTH):
            try:
                payload, ancillary, _flags, destination = receive(
                    MAX_DATAGRAM, 512, socket.MSG_ERRQUEUE
                )
            except OSError:
                return count
            errno = next(
                (
                    _EXTENDED_ERROR.unpack_from(data)[0]
                    for _, _, data in ancillary
                    if len(data) >= _EXTENDED_ERROR.size
                ),
                exc.errno,
            )
            if destination is not None and errno:
                if len(destination) > 2:
                    destination = (destination[0].partition("%")[0], destination[1])
                self._on_unreachable(destination, payload, IcmpError(errno, _strerror(errno)))
        return _ERROR_QUEUE_DEPTH

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading and writing and close the socket (queued datagrams are dropped)."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if self._backlog:
            self._loop.remove_writer(self._fd)
            self._backlog.clear()
        self._sock.close()


def _queue_icmp_errors(sock: socket.socket, remote: Address | None) -> bool:
    """Ask Linux to queue the ICMP errors of an unconnected UDP socket; whether it will."""
    option = _RECVERR.get(sock.family)
    if remote is not None or option is None or not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(option[0], option[1], 1)
    except OSError:
        return False
    return True


def _strerror(errno: int) -> str:
    try:
        return os.strerror(errno)
    except ValueError:
        return f"error {errno}"


async def open_datagram_socket(
    on_datagram: DatagramHandler,
    on_error: ErrorHandler,
    *,
    local_address: Address | None = None,
    remote_address: Address | None = None,
) -> DatagramSocket:
    """A :class:`DatagramSocket` bound to ``local_address`` (any port when None) and, with
    ``remote_address`` (an IP literal and port), connected to it.

    Raises :class:`OSError` for binding or connecting failures and
    :class:`NotImplementedError` on a loop without ``add_reader`` (Windows' proactor).
    """
    host = (remote_address or local_address or ("0.0.0.0", 0))[0]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(local_address or ("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        if remote_address is not None:
            sock.connect(remote_address)
        return DatagramSocket(sock, on_datagram, on_error, remote_address)
    except BaseException:
        sock.close()
        raise
