"""The STUN server on asyncio sockets: UDP, TCP and TLS, IPv4 and IPv6, one core for all.

``server = await serve(udp=[("0.0.0.0", 3478)], tcp=[("0.0.0.0", 3478)])`` binds the
sockets and answers until ``await server.close()`` (or the end of ``async with server``).
The protocol logic is all in :class:`stun.server.StunServer`; this module moves bytes.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import cast

from .attributes import Address
from .errors import ParseError
from .framing import StreamFramer
from .server import ServerStats, StunServer, Transmit, check_alternate
from .uri import DEFAULT_PORT

_BIND_ATTEMPTS = 16


@dataclass(frozen=True, slots=True)
class Addresses:
    """The addresses a :class:`Server` listens on, with the ports actually bound.

    In RFC 5780 mode ``udp`` holds the four sockets A1:P1, A1:P2, A2:P1 and A2:P2.
    """

    udp: tuple[Address, ...]
    tcp: tuple[Address, ...]
    tls: tuple[Address, ...]


class _Datagrams(asyncio.DatagramProtocol):
    """One UDP socket: datagrams to the core, its answers out of the socket they name."""

    transport: asyncio.DatagramTransport

    def __init__(self, server: Server, local: Address) -> None:
        self._server = server
        self._local = local
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        remote = (str(addr[0]), int(addr[1]))
        transmit = self._server.core.handle_datagram(data, self._local, remote)
        if transmit is not None:
            self._server._send(transmit)


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection: framed messages to the core, its answers back."""

    transport: asyncio.Transport

    def __init__(self, server: Server) -> None:
        self._server = server
        self._framer = StreamFramer()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._local = _address(transport.get_extra_info("sockname"))
        self._remote = _address(transport.get_extra_info("peername"))
        self._server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        core = self._server.core
        try:
            frames = self._framer.feed(data)
        except ParseError:
            core.stats.closed_corrupt_streams += 1
            self.transport.close()
            return
        for frame in frames:
            transmit = core.handle_frame(frame, self._local, self._remote)
            if transmit is not None:
                self.transport.write(transmit.data)


class Server:
    """A running STUN server; made by :func:`serve`. ``async with server:`` closes it."""

    def __init__(self, core: StunServer) -> None:
        self.core = core
        self.addresses = Addresses((), (), ())
        self._udp: dict[Address, _Datagrams] = {}
        self._listeners: list[asyncio.Server] = []
        self._connections: set[_Stream] = set()

    @property
    def stats(self) -> ServerStats:
        """The core's counters."""
        return self.core.stats

    async def close(self) -> None:
        """Stop listening, drop every connection, and wait until all sockets are closed."""
        for listener in self._listeners:
            listener.close()
        ends = [u.lost for u in self._udp.values()] + [c.lost for c in self._connections]
        for udp in self._udp.values():
            udp.transport.close()
        for stream in self._connections:
            stream.transport.abort()
        await asyncio.gather(*ends, *(listener.wait_closed() for listener in self._listeners))

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _send(self, transmit: Transmit) -> None:
        self._udp[transmit.local].transport.sendto(transmit.data, transmit.remote)


async def serve(
    udp: Sequence[Address] = (("0.0.0.0", DEFAULT_PORT),),
    *,
    tcp: Sequence[Address] = (),
    tls: Sequence[Address] = (),
    ssl_context: ssl.SSLContext | None = None,
    alternate: Address | None = None,
    software: str | None = None,
    response_port: bool = False,
    padding: bool = False,
) -> Server:
    """Start a STUN server listening on every address given; port 0 picks a free port.

    With ``alternate`` (RFC 5780 mode) ``udp`` is the one primary address, and the server
    binds the four combinations of the two IPs and two ports. ``tls`` needs
    ``ssl_context``. The other options are those of :class:`stun.server.StunServer`.
    """
    if tls and ssl_context is None:
        raise ValueError("TLS listeners need an ssl_context")
    if alternate is not None and len(udp) != 1:
        raise ValueError("RFC 5780 mode takes exactly one primary UDP address")
    loop = asyncio.get_running_loop()
    with ExitStack() as unbind:
        if alternate is None:
            udp_sockets = [unbind.enter_context(_bind(socket.SOCK_DGRAM, a)) for a in udp]
        else:
            udp_sockets = [unbind.enter_context(s) for s in _bind_rfc5780(udp[0], alternate)]
        tcp_sockets = [unbind.enter_context(_bind(socket.SOCK_STREAM, a)) for a in tcp]
        tls_sockets = [unbind.enter_context(_bind(socket.SOCK_STREAM, a)) for a in tls]
        locals_ = [_address(s.getsockname()) for s in udp_sockets]
        rfc5780 = (locals_[0], locals_[-1]) if alternate is not None else ()  # A1:P1, A2:P2
        core = StunServer(*rfc5780, software=software, response_port=response_port, padding=padding)
        server = Server(core)
        try:
            for local, sock in zip(locals_, udp_sockets, strict=True):
                factory = partial(_Datagrams, server, local)
                _, server._udp[local] = await loop.create_datagram_endpoint(factory, sock=sock)
            for sock in tcp_sockets + tls_sockets:
                context = ssl_context if sock in tls_sockets else None
                listener = await loop.create_server(
                    partial(_Stream, server), sock=sock, ssl=context
                )
                server._listeners.append(listener)
        except BaseException:
            await server.close()
            raise
        unbind.pop_all()
    server.addresses = Addresses(
        udp=tuple(locals_),
        tcp=tuple(_address(s.getsockname()) for s in tcp_sockets),
        tls=tuple(_address(s.getsockname()) for s in tls_sockets),
    )
    return server


def _address(sockname: tuple[str | int, ...]) -> Address:
    return str(sockname[0]), int(sockname[1])


def _bind(kind: socket.SocketKind, address: Address) -> socket.socket:
    """A socket of ``kind`` bound to ``address``; IPv6 sockets are IPv6 only."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_rfc5780(primary: Address, alternate: Address) -> list[socket.socket]:
    """Bind A1:P1, A1:P2, A2:P1 and A2:P2 (in that order), retrying if a port 0 collides."""
    (a1, p1), (a2, p2) = check_alternate(primary, alternate)
    for attempt in range(_BIND_ATTEMPTS):
        bound: list[socket.socket] = []
        try:
            bound.append(_bind(socket.SOCK_DGRAM, (a1, p1)))
            bound.append(_bind(socket.SOCK_DGRAM, (a2, bound[0].getsockname()[1])))
            bound.append(_bind(socket.SOCK_DGRAM, (a2, p2)))
            bound.append(_bind(socket.SOCK_DGRAM, (a1, bound[2].getsockname()[1])))
        except OSError as exc:
            for sock in bound:
                sock.close()
            if exc.errno != errno.EADDRINUSE or (p1 and p2) or attempt == _BIND_ATTEMPTS - 1:
                raise
            continue
        a1p1, a2p1, a2p2, a1p2 = bound
        return [a1p1, a1p2, a2p1, a2p2]
    raise AssertionError("unreachable")
