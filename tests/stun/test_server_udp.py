"""The STUN server over real UDP sockets on loopback, with plain asyncio clients."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import cast

import pytest

from stun import Attr, Class, Message, Method, ParseError, decode
from stun.service import serve

Addr = tuple[str, int]
TIMEOUT = 5.0
CHANGE_IP, CHANGE_PORT = 0x4, 0x2


def _can_bind(host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


HOSTS = [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not _can_bind("::1"), reason="no IPv6")),
]
needs_127_0_0_2 = pytest.mark.skipif(not _can_bind("127.0.0.2"), reason="127.0.0.2 unusable")


class Client(asyncio.DatagramProtocol):
    """A UDP socket that queues what it receives, with the sender's address.

    It sends straight from its socket: asyncio's transport would skip empty datagrams.
    """

    transport: asyncio.DatagramTransport

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox: asyncio.Queue[tuple[bytes, Addr]] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.inbox.put_nowait((data, (str(addr[0]), int(addr[1]))))

    @property
    def address(self) -> Addr:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def send(self, data: bytes, to: Addr) -> None:
        self.sock.sendto(data, to)

    async def receive(self) -> tuple[Message, Addr]:
        data, source = await asyncio.wait_for(self.inbox.get(), TIMEOUT)
        return decode(data), source

    async def ask(self, msg: Message, to: Addr, fingerprint: bool = True) -> tuple[Message, Addr]:
        self.send(msg.encode(fingerprint=fingerprint), to)
        response, source = await self.receive()
        assert response.transaction_id == msg.transaction_id
        return response, source


OpenClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def open_client(loop_errors: list[dict[str, object]]) -> AsyncIterator[OpenClient]:
    clients: list[Client] = []

    async def open_(host: str = "127.0.0.1") -> Client:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        _, client = await loop.create_datagram_endpoint(partial(Client, sock), sock=sock)
        clients.append(client)
        return client

    yield open_
    for client in clients:
        client.transport.close()


def binding(*attributes: tuple[int, object], method: int = Method.BINDING) -> Message:
    return Message(method, Class.REQUEST, attributes=list(attributes))


@pytest.mark.parametrize("host", HOSTS)
async def test_binding(host: str, open_client: OpenClient) -> None:
    async with await serve([(host, 0)]) as server:
        (address,) = server.addresses.udp
        assert address[0] == host and address[1] > 0
        client = await open_client(host)
        response, source = await client.ask(binding(), address)
        assert source == address
        assert response.cls is Class.SUCCESS
        assert response.get(Attr.XOR_MAPPED_ADDRESS) == client.address
        assert response.check_fingerprint()
        assert Attr.OTHER_ADDRESS not in response
    assert server.stats.answered == 1


async def test_ipv4_and_ipv6_on_one_core(open_client: OpenClient) -> None:
    if not _can_bind("::1"):
        pytest.skip("no IPv6")
    async with await serve([("127.0.0.1", 0), ("::1", 0)]) as server:
        for address in server.addresses.udp:
            client = await open_client(address[0])
            response, _ = await client.ask(binding(), address)
            assert response.get(Attr.XOR_MAPPED_ADDRESS) == client.address
    assert server.stats.answered == 2


async def test_400_and_420(open_client: OpenClient) -> None:
    async with await serve([("127.0.0.1", 0)], software="test server") as server:
        (address,) = server.addresses.udp
        client = await open_client()
        response, _ = await client.ask(binding(method=0x0FF), address)
        assert (response.cls, response.get(Attr.ERROR_CODE)) == (Class.ERROR, (400, "Bad Request"))
        assert response.get(Attr.SOFTWARE) == "test server"
        response, _ = await client.ask(binding((0x7F00, b"?"), (Attr.CHANGE_REQUEST, 0)), address)
        assert response.get(Attr.ERROR_CODE) == (420, "Unknown Attribute")
        assert response.get(Attr.UNKNOWN_ATTRIBUTES) == (0x7F00, Attr.CHANGE_REQUEST)
        assert response.check_fingerprint()
    assert (server.stats.errors_400, server.stats.errors_420) == (1, 1)


@needs_127_0_0_2
async def test_rfc5780_change_request_from_every_socket(open_client: OpenClient) -> None:
    async with await serve([("127.0.0.1", 0)], alternate=("127.0.0.2", 0)) as server:
        addresses = server.addresses.udp
        (a1, p1), (_, p2) = addresses[0], addresses[1]
        assert addresses == ((a1, p1), (a1, p2), ("127.0.0.2", p1), ("127.0.0.2", p2))
        client = await open_client()
        for da, dp in addresses:
            ca, cp = ("127.0.0.2" if da == a1 else a1), (p2 if dp == p1 else p1)
            for flags in (0, CHANGE_IP, CHANGE_PORT, CHANGE_IP | CHANGE_PORT):
                expected = (ca if flags & CHANGE_IP else da, cp if flags & CHANGE_PORT else dp)
                msg = binding((Attr.CHANGE_REQUEST, flags))
                response, source = await client.ask(msg, (da, dp))
                assert source == expected
                assert response.get(Attr.RESPONSE_ORIGIN) == expected
                assert response.get(Attr.OTHER_ADDRESS) == (ca, cp)
                assert response.get(Attr.MAPPED_ADDRESS) == client.address
                assert response.get(Attr.XOR_MAPPED_ADDRESS) == client.address
    assert server.stats.answered == 16


@needs_127_0_0_2
async def test_rfc5780_fixed_ports(open_client: OpenClient) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        server = await serve([("127.0.0.1", port)], alternate=("127.0.0.2", port + 1))
    except OSError:
        pytest.skip("the chosen ports were taken meanwhile")
    async with server:
        assert server.addresses.udp[0] == ("127.0.0.1", port)
        assert server.addresses.udp[3] == ("127.0.0.2", port + 1)


async def test_bad_alternate_fails_before_binding() -> None:
    with pytest.raises(ValueError):
        await serve([("127.0.0.1", 0)], alternate=("127.0.0.1", 0))
    with pytest.raises(ValueError):
        await serve([("127.0.0.1", 0), ("127.0.0.1", 0)], alternate=("127.0.0.2", 0))


async def test_response_port(open_client: OpenClient) -> None:
    async with await serve([("127.0.0.1", 0)], response_port=True) as server:
        (address,) = server.addresses.udp
        asking, receiving = await open_client(), await open_client()
        msg = binding((Attr.RESPONSE_PORT, receiving.address[1]))
        asking.send(msg.encode(), address)
        response, source = await receiving.receive()
        assert (response.transaction_id, source) == (msg.transaction_id, address)
        assert response.get(Attr.XOR_MAPPED_ADDRESS) == asking.address
        assert asking.inbox.empty()


async def test_padding(open_client: OpenClient) -> None:
    async with await serve([("127.0.0.1", 0)], padding=True) as server:
        (address,) = server.addresses.udp
        client = await open_client()
        response, _ = await client.ask(binding((Attr.PADDING, b"p" * 1200)), address)
        assert response.cls is Class.SUCCESS
        assert len(response.get(Attr.PADDING)) == 1200
        assert response.check_fingerprint()


async def test_padding_with_response_port_is_400(open_client: OpenClient) -> None:
    async with await serve([("127.0.0.1", 0)], padding=True, response_port=True) as server:
        (address,) = server.addresses.udp
        client = await open_client()
        msg = binding((Attr.PADDING, bytes(500)), (Attr.RESPONSE_PORT, 9))
        response, _ = await client.ask(msg, address)
        assert response.get(Attr.ERROR_CODE) == (400, "Bad Request")


@pytest.mark.parametrize(
    ("attribute", "value"), [(Attr.RESPONSE_PORT, 9), (Attr.PADDING, bytes(500))]
)
async def test_rfc5780_extras_are_420_unless_enabled(
    attribute: Attr, value: object, open_client: OpenClient
) -> None:
    async with await serve([("127.0.0.1", 0)]) as server:
        (address,) = server.addresses.udp
        client = await open_client()
        response, _ = await client.ask(binding((attribute, value)), address)
        assert response.get(Attr.UNKNOWN_ATTRIBUTES) == (attribute,)
        assert len(response.raw or b"") == 20 + 28 + 8 + 8  # no echo of the PADDING


# -- malformed input -----------------------------------------------------------------------


def _attribute(attr_type: int, value: bytes, declared: int | None = None) -> bytes:
    size = len(value) if declared is None else declared
    return struct.pack("!HH", attr_type, size) + value + bytes(-len(value) % 4)


def _datagram(body: bytes, length: int | None = None, cookie: int = 0x2112A442) -> bytes:
    size = len(body) if length is None else length
    return struct.pack("!HHI", 0x0001, size, cookie) + bytes(12) + body


def malformed() -> list[bytes]:
    """Datagrams that must not decode: each is counted and dropped, none is answered."""
    valid = binding((Attr.SOFTWARE, "abc"), (0x8123, b"12345")).encode(fingerprint=True)
    username = struct.pack("!HH", Attr.USERNAME, 3) + b"abc"
    bad = [valid[:n] for n in range(len(valid))]  # truncated
    bad += [
        _datagram(username),  # mis-padded: no padding after a 3-byte value
        _datagram(username, length=8),  # the length field counts padding that is not there
        _datagram(username + b"\0", length=7),
        valid[:4] + b"\x21\x12\xa4\x43" + valid[8:],  # wrong cookie
        valid[:4] + bytes(4) + valid[8:],  # no cookie: RFC 3489
        b"\x80" + valid[1:],  # leading bits set
        _datagram(_attribute(Attr.XOR_MAPPED_ADDRESS, b"\0\x01\0\0\0\0\0")),  # 7 bytes
        _datagram(_attribute(Attr.CHANGE_REQUEST, bytes(8))),
        _datagram(_attribute(Attr.FINGERPRINT, bytes(3))),
        _datagram(_attribute(Attr.USERNAME, b"abcd", declared=200)),  # runs past the end
        _datagram(_attribute(Attr.ERROR_CODE, b"\0\0\x09\x99")),
    ]
    rng = random.Random(5780)
    bad += [rng.randbytes(rng.randrange(0, 120)) for _ in range(100)]
    for _ in range(100):  # a plausible header, then random attribute bytes
        body = rng.randbytes(4 * rng.randrange(1, 16))
        bad.append(_datagram(body))
    for _ in range(100):  # one flipped byte in a valid request
        data = bytearray(valid)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        bad.append(bytes(data))
    return [data for data in bad if not _decodes(data)]


def _decodes(data: bytes) -> bool:
    try:
        decode(data)
    except ParseError:
        return False
    return True


async def test_malformed_batch_is_dropped_and_counted(open_client: OpenClient) -> None:
    batch = malformed()
    assert len(batch) > 250
    ignored = [
        Message(Method.BINDING, Class.INDICATION).encode(),
        Message(Method.BINDING, Class.SUCCESS).encode(),
        Message(Method.BINDING, Class.ERROR, attributes=[(Attr.ERROR_CODE, (400, ""))]).encode(),
        binding().encode(fingerprint=True)[:-1] + b"\0",  # the FINGERPRINT does not verify
    ]
    async with await serve([("127.0.0.1", 0)], tcp=[("127.0.0.1", 0)]) as server:
        (address,) = server.addresses.udp
        client = await open_client()
        datagrams = batch + ignored
        chunks = range(0, len(datagrams), 32)
        for start in chunks:
            for data in datagrams[start : start + 32]:
                client.send(data, address)
            # One socket is read in order: once this is answered, all before it were handled.
            # Small chunks keep the server's receive buffer from overflowing meanwhile.
            response, _ = await client.ask(binding(), address)
            assert response.get(Attr.XOR_MAPPED_ADDRESS) == client.address
            assert client.inbox.empty()
        stats = server.stats
        assert stats.received == len(datagrams) + len(chunks)
        assert stats.dropped_malformed == len(batch)
        assert stats.dropped_not_request == 3
        assert stats.dropped_bad_fingerprint == 1
        assert stats.answered == len(chunks)
