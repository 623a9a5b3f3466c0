"""The asyncio STUN client: requests over UDP, TCP or TLS, and :func:`binding`.

A :class:`StunClient` owns one UDP socket or one TCP/TLS connection and runs any number
of :class:`~stun.transaction.ClientTransaction` cores on it with a single loop timer.
Whatever arrives that is not a well-formed response to a pending request is counted and
dropped; nothing a peer sends raises into the event loop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .attributes import Address, Attr
from .errors import ParseError, ResolutionError, StunError
from .framing import StreamFramer
from .message import Class, Message, Method, decode
from .transaction import DEFAULT_RC, DEFAULT_RTO, ClientTransaction
from .uri import ServerAddress, Transport, as_server, ip_literal


@dataclass(slots=True)
class ClientStats:
    """What a client received that it could not use."""

    dropped_malformed: int = 0
    dropped_unmatched: int = 0


@dataclass(frozen=True, slots=True)
class BindingResult:
    """The answer to a Binding request."""

    mapped_address: Address
    """Our address as the server saw it (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS)."""
    rtt: float
    """Seconds from the first transmission of the request to the response."""
    server: Address
    """The server's resolved address."""
    local: Address
    """The local address the request was sent from."""
    response: Message = field(repr=False)
    """The whole success response, for its other attributes."""


class StunClient:
    """A STUN client on one UDP socket or one TCP/TLS connection.

    Open one with :meth:`open_udp` or :meth:`connect`, send requests with
    :meth:`request`, close it with :meth:`close` (or ``async with``).
    """

    def __init__(self, reliable: bool) -> None:
        self._loop = asyncio.get_running_loop()
        self._reliable = reliable
        self._pending: dict[bytes, tuple[ClientTransaction, asyncio.Future[Message], Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._closed: StunError | None = None
        self.stats = ClientStats()

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    async def open_udp(
        cls,
        local_address: Address | None = None,
        *,
        remote_address: Address | None = None,
        family: int = 0,
    ) -> StunClient:
        """A client on a new UDP socket.

        With ``remote_address`` the socket is connected, so ICMP errors (port
        unreachable) fail requests at once instead of after the full timeout.
        """
        client = cls(reliable=False)
        await client._loop.create_datagram_endpoint(
            lambda: _DatagramProtocol(client),
            local_addr=local_address,
            remote_addr=remote_address,
            family=family,
        )
        return client

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        local_address: Address | None = None,
    ) -> StunClient:
        """A client on a new TCP connection, or TLS with ``ssl_context``."""
        client = cls(reliable=True)
        await client._loop.create_connection(
            lambda: _StreamProtocol(client),
            host,
            port,
            ssl=ssl_context,
            server_hostname=server_hostname if ssl_context else None,
            local_addr=local_address,
        )
        return client

    async def close(self) -> None:
        """Close the socket; pending requests fail with :class:`StunError`."""
        if self._transport is not None:
            self._transport.close()
        self._shutdown(StunError("the client was closed"))

    async def __aenter__(self) -> StunClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def local_address(self) -> Address:
        """The local (IP, port) of the socket."""
        assert self._transport is not None
        sockname = self._transport.get_extra_info("sockname")
        return sockname[0], sockname[1]

    # -- requests --------------------------------------------------------------------------

    async def request(
        self,
        message: Message,
        remote_address: Address | None = None,
        *,
        integrity_key: bytes | None = None,
        sha256: bool = False,
        fingerprint: bool = True,
        rto: float = DEFAULT_RTO,
        rc: int = DEFAULT_RC,
        timeout: float | None = None,
    ) -> Message:
        """Send a request and return its success response.

        The request is signed with ``integrity_key`` (MESSAGE-INTEGRITY, or
        MESSAGE-INTEGRITY-SHA256 with ``sha256``), and responses must verify with it.
        ``timeout`` caps the RFC retransmission schedule. Raises
        :class:`~stun.ErrorResponse`, :class:`~stun.TransactionTimeout`,
        :class:`~stun.IntegrityError`, or :class:`StunError` if the client closes.
        """
        data = message.encode(integrity_key, fingerprint=fingerprint, sha256=sha256)
        return await self.request_bytes(
            data, remote_address, integrity_key=integrity_key, rto=rto, rc=rc, timeout=timeout
        )

    async def request_bytes(
        self,
        data: bytes,
        remote_address: Address | None = None,
        *,
        integrity_key: bytes | None = None,
        rto: float = DEFAULT_RTO,
        rc: int = DEFAULT_RC,
        timeout: float | None = None,
    ) -> Message:
        """Like :meth:`request`, for a request that is already encoded."""
        if self._closed is not None:
            raise self._closed
        now = self._loop.time()
        tx = ClientTransaction(
            data,
            now,
            integrity_key=integrity_key,
            reliable=self._reliable,
            rto=rto,
            rc=rc,
            timeout=timeout,
        )
        if tx.transaction_id in self._pending:
            raise ValueError("a request with this transaction id is already pending")
        future: asyncio.Future[Message] = self._loop.create_future()
        self._pending[tx.transaction_id] = (tx, future, remote_address)
        self._service(tx, future, remote_address)
        self._arm_timer()
        try:
            return await future
        finally:
            self._pending.pop(tx.transaction_id, None)

    # -- the machinery behind one timer ----------------------------------------------------

    def _service(self, tx: ClientTransaction, future: asyncio.Future[Message], remote: Any) -> None:
        """Send what the transaction wants sent and settle its future when it is done."""
        data = tx.poll_transmit()
        if data is not None and self._transport is not None and not self._transport.is_closing():
            if self._reliable:
                self._transport.write(data)  # type: ignore[attr-defined]
            else:
                self._transport.sendto(data, remote)  # type: ignore[attr-defined]
        if tx.done and not future.done():
            if tx.response is not None:
                future.set_result(tx.response)
            else:
                assert tx.error is not None
                future.set_exception(tx.error)

    def _arm_timer(self) -> None:
        deadlines = [d for tx, _, _ in self._pending.values() if (d := tx.poll_timeout())]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines:
            self._timer = self._loop.call_at(min(deadlines), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        for tx, future, remote in list(self._pending.values()):
            tx.handle_timeout(now)
            self._service(tx, future, remote)
        self._arm_timer()

    def _handle_frame(self, data: bytes) -> None:
        try:
            message = decode(data)
        except ParseError:
            self.stats.dropped_malformed += 1
            return
        entry = self._pending.get(message.transaction_id)
        if entry is None or not entry[0].handle_response(message, self._loop.time()):
            self.stats.dropped_unmatched += 1
            return
        self._service(*entry)
        self._arm_timer()

    def _shutdown(self, error: StunError) -> None:
        if self._closed is None:
            self._closed = error
        for tx, future, remote in list(self._pending.values()):
            tx.cancel(error)
            self._service(tx, future, remote)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: StunClient) -> None:
        self._client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._client._transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._client._handle_frame(data)

    def error_received(self, exc: Exception) -> None:
        # Only a connected socket reports ICMP errors; they are about its one peer.
        self._client._shutdown(StunError(f"the server is unreachable: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._shutdown(StunError("the socket was closed"))


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, client: StunClient) -> None:
        self._client = client
        self._framer = StreamFramer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._client._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._framer.feed(data)
        except ParseError as exc:
            self._client.stats.dropped_malformed += 1
            self._client._shutdown(StunError(f"the server sent a corrupt stream: {exc}"))
            assert self._client._transport is not None
            self._client._transport.close()
            return
        for frame in frames:
            self._client._handle_frame(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._client._shutdown(StunError(f"the server closed the connection{reason}"))


async def resolve(host: str, port: int, transport: Transport = "udp", family: int = 0) -> Address:
    """Resolve a host name without blocking; the first address returned wins.

    An IP literal (of ``family``, if given) is returned as it is, without a lookup.
    """
    literal = ip_literal(host, family)
    if literal is not None:
        return literal, port
    loop = asyncio.get_running_loop()
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    try:
        infos = await loop.getaddrinfo(host, port, family=family, type=kind)
    except socket.gaierror as exc:
        raise ResolutionError(f"cannot resolve {host!r}: {exc.strerror}") from None
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise ResolutionError(f"cannot resolve {host!r}: no addresses")
    sockaddr = infos[0][4]
    return str(sockaddr[0]), int(sockaddr[1])


async def binding(
    server: str | ServerAddress | Address,
    *,
    transport: Transport | None = None,
    family: int = 0,
    local_address: Address | None = None,
    ssl_context: ssl.SSLContext | None = None,
    rto: float = DEFAULT_RTO,
    timeout: float | None = None,
    attributes: Iterable[tuple[int, Any]] = (),
) -> BindingResult:
    """Send one Binding request and return the mapped address and the RTT.

    ``server`` is ``"host[:port]"``, a ``stun:``/``stuns:`` URI, a :class:`ServerAddress`
    or an ``(ip, port)`` tuple. Host names are resolved with asyncio; ``family``
    (``socket.AF_INET`` / ``AF_INET6``) restricts that. Over TLS the server certificate
    is verified against the host name with ``ssl_context`` (the system's default
    context when None). ``timeout`` caps the RFC 8489 schedule (39.5 s).

    Raises :class:`~stun.TransactionTimeout`, :class:`~stun.ErrorResponse`,
    :class:`ResolutionError`, :class:`StunError` (unreachable, closed) or
    :class:`OSError` (connection refused, TLS failures).
    """
    target = as_server(server, transport)
    remote = await resolve(target.host, target.port, target.transport, family)
    if target.transport == "udp":
        client = await StunClient.open_udp(local_address, remote_address=remote)
    else:
        context = None
        if target.transport == "tls":
            context = ssl_context or ssl.create_default_context()
        client = await StunClient.connect(
            remote[0],
            remote[1],
            ssl_context=context,
            server_hostname=target.host,
            local_address=local_address,
        )
    async with client:
        request = Message(Method.BINDING, Class.REQUEST, attributes=list(attributes))
        start = client._loop.time()
        response = await client.request(request, rto=rto, timeout=timeout)
        rtt = client._loop.time() - start
        mapped = response.get(Attr.XOR_MAPPED_ADDRESS) or response.get(Attr.MAPPED_ADDRESS)
        if mapped is None:
            raise StunError("the Binding response carries no mapped address")
        return BindingResult(mapped, rtt, remote, client.local_address, response)
