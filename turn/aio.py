"""The asyncio TURN client: :func:`allocate` and the :class:`Allocation` it returns.

One socket (UDP) or connection (TCP, TLS) per allocation, driven by one
:class:`~turn.client.TurnClient` and one loop timer. Relaying costs no task per
datagram: :meth:`Allocation.sendto` frames and writes, and received data goes straight
to a callback or a bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from stun import ParseError, StreamFramer
from stun.attributes import Address
from stun.client import resolve
from stun.datagram import open_datagram_socket
from stun.uri import ServerAddress, Transport

from .backoff import MISMATCH_PORTS, ServerBackoff
from .client import (
    CHANNEL_REFRESH,
    CLOSE_TIMEOUT,
    PERMISSION_REFRESH,
    AllocateOptions,
    TurnClient,
    TurnStats,
)
from .errors import AlternateServer, PeerPermissionError, TurnError, TurnTimeout
from .events import (
    Allocated,
    AllocationFailed,
    AllocationLost,
    Closed,
    Event,
    PermissionCreated,
    PermissionFailed,
    Refreshed,
)
from .framing import HEADER as _CHANNEL_HEADER
from .uri import parse_turn_uri

DataHandler = Callable[[bytes, Address], None]
"""Called with ``(data, peer)`` for each relayed datagram, like ``datagram_received``."""
EventHandler = Callable[[Event], None]

_UNREACHABLE = frozenset((errno.EHOSTUNREACH, errno.ENETUNREACH))

RECEIVE_QUEUE = 4096
"""Datagrams :meth:`Allocation.recvfrom` may have waiting before new ones are dropped."""

BACKOFF = ServerBackoff()
"""The process-wide record of servers that asked us to wait before allocating again."""


class Allocation:
    """A relayed transport address on a TURN server, kept alive until :meth:`close`.

    Made by :func:`allocate`. Send with :meth:`sendto`, receive with :meth:`recvfrom` or
    a handler set with :meth:`set_data_handler`. Refreshes of the allocation, its
    permissions and its channels happen by themselves.
    """

    def __init__(
        self,
        core: TurnClient,
        server: ServerAddress,
        server_address: Address,
        on_event: EventHandler | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        # The clock of asyncio's own loops, without the Python frame of loop.time(): one
        # read per relayed datagram each way.
        default_clock = type(self._loop).time is asyncio.BaseEventLoop.time
        self._time = time.monotonic if default_clock else self._loop.time
        self._core = core
        self.server = server
        """The server as given (after any redirect)."""
        self.server_address: Address = server_address
        """The server's resolved address."""
        self._on_event = on_event
        self._channel_data = core.channel_data
        self._channel_peers = core.channel_peers
        self._on_data: DataHandler | None = None
        self._received: deque[tuple[bytes, Address]] = deque()
        self._reader: asyncio.Future[None] | None = None
        self._transport: Any = None
        self._write: Callable[[bytes], Any] = lambda data: None
        self._timer: asyncio.TimerHandle | None = None
        self._allocated: asyncio.Future[Allocated] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._waiters: list[tuple[set[str], asyncio.Future[None], list[PermissionFailed]]] = []
        self._lifetime = 0
        self.socket_errors = 0
        """Datagrams the UDP socket failed to send or receive (other than ICMP errors
        saying the server is unreachable, which end the allocation)."""
        self.dropped_unread = 0
        """Relayed datagrams dropped because :meth:`recvfrom` fell behind."""

    # -- what the allocation is ------------------------------------------------------------

    @property
    def relayed_address(self) -> Address:
        """The address peers send to."""
        return self._details().relayed

    @property
    def mapped_address(self) -> Address:
        """Our address as the server sees it (a server-reflexive candidate)."""
        return self._details().mapped

    @property
    def additional_relayed_address(self) -> Address | None:
        """The IPv6 relayed address of a dual-stack allocation, if granted."""
        return self._details().additional_relayed

    @property
    def lifetime(self) -> int:
        """Seconds the allocation was last granted for (it is refreshed automatically)."""
        return self._lifetime

    @property
    def realm(self) -> str | None:
        """The server's authentication realm."""
        return self._core.realm

    @property
    def details(self) -> Allocated:
        """Everything the server granted."""
        return self._details()

    @property
    def local_address(self) -> Address:
        """Our local (IP, port) towards the server."""
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    @property
    def stats(self) -> TurnStats:
        return self._core.stats

    @property
    def closed(self) -> bool:
        """Whether the allocation is finished (closed, failed or lost)."""
        return self._core.state in ("closed", "failed")

    def _details(self) -> Allocated:
        allocation = self._core.allocation
        if allocation is None:
            raise TurnError("not allocated")
        return allocation

    # -- relaying --------------------------------------------------------------------------

    def sendto(self, data: bytes, peer: Address) -> None:
        """Relay one datagram to ``peer`` (an ``(ip, port)`` tuple).

        The first datagram to a peer installs its permission and binds a channel; data
        waits (bounded) until that is done. Raises :class:`PeerPermissionError` while
        the server refuses the peer and :class:`AllocationLostError` once the allocation
        is gone.
        """
        wire = self._channel_data(data, peer)
        if wire is None:
            wire = self._core.send(self._time(), data, peer)
            if wire is None:
                self._service()
                return
        self._write(wire)

    async def recvfrom(self) -> tuple[bytes, Address]:
        """The next relayed datagram and the peer it came from.

        Raises :class:`AllocationLostError` (or the reason) once the allocation is gone
        and everything received was read.
        """
        while not self._received:
            if self.closed:
                raise self._core.error or TurnError("the allocation is closed")
            self._reader = self._loop.create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self._received.popleft()

    def set_data_handler(self, handler: DataHandler | None) -> None:
        """Have ``handler(data, peer)`` called for each relayed datagram instead of
        queueing it for :meth:`recvfrom` (None: back to the queue)."""
        self._on_data = handler

    async def create_permission(self, *peers: str | Address) -> None:
        """Install permissions for these peers (IP addresses; ports are ignored) and wait.

        Raises :class:`PeerPermissionError` for the first peer the server refused; the
        others are installed all the same.
        """
        ips = self._core.create_permission(self._time(), *peers)
        self._service()
        if not ips:
            return
        future: asyncio.Future[None] = self._loop.create_future()
        failures: list[PermissionFailed] = []
        self._waiters.append((ips, future, failures))
        try:
            await future
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]
        if failures:
            first = failures[0]
            raise PeerPermissionError(
                f"the server refused a permission for {first.peer}: {first.reason}",
                first.peer,
                first.code,
                first.reason,
            )

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Release the allocation (Refresh with LIFETIME 0) and close the socket."""
        if not self.closed:
            self._core.close(self._time())
            self._service()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closed), CLOSE_TIMEOUT + 1)
        self._shutdown()

    async def __aenter__(self) -> Allocation:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        allocation = self._core.allocation
        where = f" relayed={allocation.relayed}" if allocation else ""
        return f"<Allocation {self.server.transport}:{self.server}{where} {self._core.state}>"

    # -- the machinery ---------------------------------------------------------------------

    def _attach(self, transport: Any, write: Callable[[bytes], Any]) -> None:
        self._transport = transport
        self._write = write

    def _socket_error(self, exc: OSError) -> None:
        """An error from the UDP socket: ICMP errors about its one peer (the server) end
        the allocation; others (a full buffer, ...) lose one datagram and are counted."""
        if isinstance(exc, ConnectionRefusedError) or exc.errno in _UNREACHABLE:
            self._connection_lost(f"the TURN server is unreachable: {exc}")
        else:
            self.socket_errors += 1

    def _datagram(self, data: bytes, addr: object = None) -> None:
        """Everything the server sends comes through here (also as ``datagram_received``
        of the UDP protocol, saving a call per datagram).

        ChannelData on a known channel is delivered here without the core's
        :meth:`~turn.client.TurnClient.handle_data` (see ``TurnClient.channel_peers``):
        the relayed data path reads no clock and builds no tuple.
        """
        if len(data) >= 4 and 0x40 <= data[0] <= 0x4F:
            number, size = _CHANNEL_HEADER.unpack_from(data)
            peer = self._channel_peers.get(number)
            if peer is not None and size <= len(data) - 4:
                handler = self._on_data
                if handler is not None:  # the hottest path: no further call
                    handler(data[4 : 4 + size], peer)
                else:
                    self._deliver(data[4 : 4 + size], peer)
                return
        relayed = self._core.handle_data(self._time(), data)
        if relayed is None:
            self._service()
        else:
            self._deliver(relayed[1], relayed[0])

    def _deliver(self, payload: bytes, peer: Address) -> None:
        handler = self._on_data
        if handler is not None:
            handler(payload, peer)
            return
        if len(self._received) >= RECEIVE_QUEUE:
            self.dropped_unread += 1
            return
        self._received.append((payload, peer))
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _service(self) -> None:
        """Send what the core wants sent, hand out its events, re-arm the timer."""
        core = self._core
        transport = self._transport
        while (data := core.poll_transmit()) is not None:
            if transport is not None and not transport.is_closing():
                self._write(data)
        try:
            while (event := core.poll_event()) is not None:
                self._dispatch(event)  # may run user callbacks, which may raise
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            deadline = core.poll_timeout()
            if deadline is not None:
                self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._core.handle_timeout(self._time())
        self._service()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Allocated):
            self._lifetime = event.lifetime
            if not self._allocated.done():
                self._allocated.set_result(event)
        elif isinstance(event, Refreshed):
            self._lifetime = event.lifetime
        elif isinstance(event, AllocationFailed):
            if not self._allocated.done():
                self._allocated.set_exception(event.error)
        elif isinstance(event, (AllocationLost, Closed)):
            self._finished()
        elif isinstance(event, (PermissionCreated, PermissionFailed)):
            self._settle_permissions(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as exc:  # the callback's bug must not stop the allocation
                self._loop.call_exception_handler(
                    {"message": f"on_event raised on {event!r}", "exception": exc}
                )

    def _settle_permissions(self, event: PermissionCreated | PermissionFailed) -> None:
        settled = set(event.peers) if isinstance(event, PermissionCreated) else {event.peer}
        for ips, future, failures in self._waiters:
            if isinstance(event, PermissionFailed) and event.peer in ips:
                failures.append(event)
            ips -= settled
            if not ips and not future.done():
                future.set_result(None)

    def _finished(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
        error = self._core.error or TurnError("the allocation is closed")
        futures: list[asyncio.Future[Any]] = [self._allocated, *(w[1] for w in self._waiters)]
        for future in futures:
            if not future.done():
                future.set_exception(error)
                future.exception()  # nobody may be waiting: do not log it as unretrieved
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _connection_lost(self, reason: str) -> None:
        self._core.handle_connection_lost(reason)
        self._service()

    def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        self._finished()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, allocation: Allocation) -> None:
        self._allocation = allocation
        self.datagram_received = allocation._datagram  # type: ignore[method-assign]

    def error_received(self, exc: Exception) -> None:
        self._allocation._socket_error(exc)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self._allocation._connection_lost("the socket was closed")


class _Stream(asyncio.Protocol):
    def __init__(self, allocation: Allocation) -> None:
        self._allocation = allocation
        self._framer = StreamFramer()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._framer.feed(data)
        except ParseError as exc:
            self._allocation.stats.dropped_malformed += 1
            self._allocation._connection_lost(f"the TURN server sent a corrupt stream: {exc}")
            self._allocation._shutdown()
            return
        for frame in frames:
            self._allocation._datagram(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        self._allocation._connection_lost(f"the TURN server closed the connection{detail}")


async def allocate(
    server: str | ServerAddress | Address,
    username: str,
    password: str,
    *,
    transport: Transport | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    family: Literal["ipv4", "ipv6"] = "ipv4",
    dual_stack: bool = False,
    lifetime: int | None = None,
    dont_fragment: bool = False,
    even_port: bool | None = None,
    reservation_token: bytes | None = None,
    local_address: Address | None = None,
    channels: bool = True,
    permission_refresh: float = PERMISSION_REFRESH,
    channel_refresh: float = CHANNEL_REFRESH,
    software: str | None = None,
    timeout: float | None = None,
    on_event: EventHandler | None = None,
) -> Allocation:
    """Allocate a relayed address on a TURN server and return the live :class:`Allocation`.

    ``server`` is a ``turn:``/``turns:`` URI (RFC 7065), ``host[:port]``, a
    :class:`~stun.uri.ServerAddress` or an ``(ip, port)`` tuple; ``transport`` (``"udp"``,
    ``"tcp"`` or ``"tls"``) overrides what it implies. Over TLS the certificate and host
    name are checked with ``ssl`` (the system's default context when None); pass a
    context that trusts your test CA for test certificates. ``ssl`` is not used over
    UDP and TCP, so one call can serve every transport. ``family``, ``dual_stack``,
    ``lifetime``, ``dont_fragment``, ``even_port`` and ``reservation_token`` are the
    :class:`~turn.client.AllocateOptions`. ``permission_refresh`` and ``channel_refresh``
    change the refresh intervals (only for servers with shorter lifetimes than the RFC's
    300 s and 600 s). ``timeout`` bounds the whole allocation (the RFC transaction
    timeout, 39.5 s, otherwise). ``on_event`` sees every :mod:`turn.events` event.

    Follows one 300 redirect (checking a TLS certificate against ALTERNATE-DOMAIN),
    retries a 437 from new local ports (three in all), and honours the waits RFC 8656
    asks for after 437, 486 and 508. Raises :class:`~turn.AuthenticationError`,
    :class:`~turn.AllocationError`, :class:`~turn.TurnTimeout`, or ``OSError`` when the
    server cannot be reached over TCP/TLS.
    """
    options = AllocateOptions(
        family=family,
        dual_stack=dual_stack,
        lifetime=lifetime,
        dont_fragment=dont_fragment,
        even_port=even_port,
        reservation_token=reservation_token,
    )
    target = (
        server
        if isinstance(server, ServerAddress)
        else ServerAddress(server[0], server[1], transport or "udp")
        if isinstance(server, tuple)
        else parse_turn_uri(server)
    )
    if transport is not None and target.transport != transport:
        target = ServerAddress(target.host, target.port, transport)
    hostname = server_hostname or target.host
    loop = asyncio.get_running_loop()

    async def attempts() -> Allocation:
        nonlocal target, hostname, local_address
        redirected = False
        mismatched: list[Allocation] = []  # held open, so that each retry gets a new port
        try:
            while True:
                remote = await resolve(target.host, target.port, target.transport)
                key = (remote, target.transport)
                BACKOFF.check(key, loop.time(), options)
                core = TurnClient(
                    username,
                    password,
                    reliable=target.transport != "udp",
                    options=options,
                    follow_alternate=not redirected,
                    channels=channels,
                    permission_refresh=permission_refresh,
                    channel_refresh=channel_refresh,
                    software=software,
                )
                allocation = Allocation(core, target, remote, on_event)
                try:
                    await _open(allocation, target.transport, remote, ssl, hostname, local_address)
                    core.allocate(loop.time())
                    allocation._service()
                    await allocation._allocated
                    return allocation
                except AlternateServer as exc:
                    allocation._shutdown()
                    redirected = True
                    if exc.domain:
                        hostname = exc.domain
                    target = ServerAddress(exc.server[0], exc.server[1], target.transport)
                except TurnError as exc:
                    if exc.code == 437 and len(mismatched) + 1 < MISMATCH_PORTS:
                        mismatched.append(allocation)
                        local_address = (local_address[0], 0) if local_address else None
                        continue
                    allocation._shutdown()
                    BACKOFF.record(key, exc, loop.time(), options)
                    raise
                except BaseException:
                    allocation._shutdown()
                    raise
        finally:
            for stale in mismatched:
                stale._shutdown()

    try:
        async with asyncio.timeout(timeout):
            return await attempts()
    except TimeoutError as exc:
        if isinstance(exc, TurnError):
            raise
        raise TurnTimeout(f"no allocation from {target} within {timeout:g} s") from None


async def _open(
    allocation: Allocation,
    transport: Transport,
    remote: Address,
    context: ssl_module.SSLContext | None,
    hostname: str,
    local_address: Address | None,
) -> None:
    loop = asyncio.get_running_loop()
    if transport == "udp":
        try:
            sock = await open_datagram_socket(
                allocation._datagram,
                allocation._socket_error,
                local_address=local_address,
                remote_address=remote,
            )
            allocation._attach(sock, sock.send)
        except NotImplementedError:  # a loop without add_reader: asyncio's transport
            endpoint, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(allocation), local_addr=local_address, remote_addr=remote
            )
            allocation._attach(endpoint, endpoint.sendto)
        return
    tls = None
    if transport == "tls":
        tls = context or ssl_module.create_default_context()
    stream, _ = await loop.create_connection(
        lambda: _Stream(allocation),
        remote[0],
        remote[1],
        ssl=tls,
        server_hostname=hostname if tls else None,
        local_addr=local_address,
    )
    allocation._attach(stream, stream.write)
