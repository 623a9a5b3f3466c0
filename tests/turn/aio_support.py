"""Helpers for the tests of ``turn.allocate`` against a real coturn: UDP peers, an event
recorder to wait on, and a UDP proxy that sits between the client and coturn.

Everything here waits on futures with deadlines; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import stun
from stun import Attr, Class, Message, Method
from turn import Allocation

Address = tuple[str, int]
T = TypeVar("T")

TIMEOUT = 2.0
"""Seconds to wait for anything that should happen at once on loopback (it takes < 1 ms)."""
LOOPBACK = "127.0.0.1"
LOOPBACK_2 = "127.0.0.2"


def loopback_2_usable() -> bool:
    """Whether a UDP socket can bind 127.0.0.2 here (Linux: all of 127/8 is local)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK_2, 0))
    except OSError:
        return False
    return True


class Recorder(Generic[T]):
    """Things in the order they happened; :meth:`wait` for one that matches."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []

    def append(self, item: T) -> None:
        self.items.append(item)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    __call__ = append

    def matching(self, predicate: Callable[[T], bool], start: int = 0) -> list[T]:
        return [item for item in self.items[start:] if predicate(item)]

    async def wait(
        self,
        predicate: Callable[[T], bool],
        *,
        count: int = 1,
        start: int = 0,
        timeout: float = TIMEOUT,
    ) -> T:
        """The ``count``-th item from index ``start`` on that matches ``predicate``
        (TimeoutError after ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                found = self.matching(predicate, start)
                if len(found) >= count:
                    return found[count - 1]
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append(waiter)
                await waiter

    async def wait_for(
        self, kind: type[Any], *, count: int = 1, start: int = 0, timeout: float = TIMEOUT
    ) -> Any:
        """The ``count``-th item of type ``kind`` from index ``start`` on."""
        return await self.wait(
            lambda item: isinstance(item, kind), count=count, start=start, timeout=timeout
        )


class _PeerProtocol(asyncio.DatagramProtocol):
    def __init__(self, received: asyncio.Queue[tuple[bytes, Address]]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))


class Peer:
    """A plain UDP socket on loopback playing the remote peer of a TURN allocation."""

    def __init__(
        self, transport: asyncio.DatagramTransport, received: asyncio.Queue[tuple[bytes, Address]]
    ) -> None:
        self._transport = transport
        self.received = received
        sockname = transport.get_extra_info("sockname")
        self.address: Address = (str(sockname[0]), int(sockname[1]))

    @classmethod
    async def open(cls, host: str = LOOPBACK) -> Peer:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _PeerProtocol(queue), local_addr=(host, 0)
        )
        return cls(transport, queue)

    def sendto(self, data: bytes, address: Address) -> None:
        self._transport.sendto(data, address)

    async def recv(self, timeout: float = TIMEOUT) -> tuple[bytes, Address]:
        async with asyncio.timeout(timeout):
            return await self.received.get()

    def close(self) -> None:
        self._transport.close()


@dataclass(frozen=True)
class Seen:
    """One datagram the proxy passed (or swallowed)."""

    upstream: bool
    """True from the client to the server, False from the server to the client."""
    message: Message | None
    """The STUN message (None for ChannelData or anything undecodable)."""
    dropped: bool = False

    @property
    def method(self) -> int | None:
        return None if self.message is None else self.message.method

    @property
    def cls(self) -> Class | None:
        return None if self.message is None else self.message.cls

    @property
    def error_code(self) -> int | None:
        if self.message is None or self.message.cls is not Class.ERROR:
            return None
        error = self.message.get(Attr.ERROR_CODE)
        return None if error is None else int(error[0])

    def is_request(self, method: Method) -> bool:
        return self.upstream and self.method == method and self.cls is Class.REQUEST

    def is_answer(self, method: Method, code: int | None = None) -> bool:
        """A success (``code`` None) or an error with ``code`` to a ``method`` request."""
        if self.upstream or self.method != method:
            return False
        if code is None:
            return self.cls is Class.SUCCESS
        return self.error_code == code


class _Front(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.proxy._from_client(data, (addr[0], addr[1]))


class _Back(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.proxy._from_server(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass  # an unconnected socket: nothing is reported anyway


def _decode(data: bytes) -> Message | None:
    if not data or data[0] >= 0x40:
        return None
    try:
        return stun.decode(data)
    except stun.ParseError:
        return None


class UdpProxy:
    """A UDP relay between one client and a TURN server, logging every STUN message.

    The client talks to :attr:`address`; the server sees the proxy's one upstream socket
    as the client (the same 5-tuple throughout). :attr:`target` may be switched to
    another server (a "restarted" server behind the same address), and
    :attr:`blackhole` makes the server unreachable without any ICMP error.
    """

    def __init__(self, target: Address) -> None:
        self.target = target
        self.blackhole = False
        self.seen: Recorder[Seen] = Recorder()
        self._client: Address | None = None
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None
        self.address: Address = (LOOPBACK, 0)

    async def __aenter__(self) -> UdpProxy:
        loop = asyncio.get_running_loop()
        self._front, _ = await loop.create_datagram_endpoint(
            lambda: _Front(self), local_addr=(LOOPBACK, 0)
        )
        self._back, _ = await loop.create_datagram_endpoint(
            lambda: _Back(self), local_addr=(LOOPBACK, 0)
        )
        sockname = self._front.get_extra_info("sockname")
        self.address = (str(sockname[0]), int(sockname[1]))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for transport in (self._front, self._back):
            if transport is not None:
                transport.close()

    async def ask(self, request: Message, timeout: float = TIMEOUT) -> Seen:
        """Send ``request`` to the server from the proxy's own upstream socket (the
        5-tuple the server knows the client by) and wait for the answer."""
        assert self._back is not None
        start = len(self.seen.items)
        self._back.sendto(request.encode(), self.target)
        tid = request.transaction_id
        return await self.seen.wait(
            lambda seen: (
                not seen.upstream
                and seen.message is not None
                and seen.message.transaction_id == tid
            ),
            start=start,
            timeout=timeout,
        )

    def inject(self, data: bytes) -> None:
        """Send ``data`` to the client as if the server had sent it."""
        assert self._front is not None and self._client is not None
        self._front.sendto(data, self._client)

    def _from_client(self, data: bytes, addr: Address) -> None:
        self._client = addr
        self.seen.append(Seen(True, _decode(data), self.blackhole))
        if not self.blackhole and self._back is not None:
            self._back.sendto(data, self.target)

    def _from_server(self, data: bytes, addr: Address) -> None:
        if addr != self.target:
            return  # the old server, after a switch
        self.seen.append(Seen(False, _decode(data), self.blackhole))
        if not self.blackhole and self._front is not None and self._client is not None:
            self._front.sendto(data, self._client)


# -- relaying through an allocation --------------------------------------------------------


async def round_trip(allocation: Allocation, peer: Peer, payload: bytes) -> None:
    """``payload`` to ``peer`` through the allocation, and its reverse back from ``peer``."""
    allocation.sendto(payload, peer.address)
    assert await peer.recv() == (payload, allocation.relayed_address)
    peer.sendto(payload[::-1], allocation.relayed_address)
    async with asyncio.timeout(TIMEOUT):
        assert await allocation.recvfrom() == (payload[::-1], peer.address)


async def relay_for(
    allocation: Allocation, peer: Peer, seconds: float, interval: float = 0.1
) -> int:
    """Round trips paced ``interval`` apart for ``seconds``; each one must get through."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    rounds = 0
    while loop.time() < end:
        await round_trip(allocation, peer, b"round %d" % rounds)
        rounds += 1
        await asyncio.sleep(interval)  # pacing, not waiting for anything
    return rounds
