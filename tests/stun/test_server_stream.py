"""The STUN server over real TCP and TLS connections on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress

import pytest

from stun import Attr, Class, Message, Method, decode
from stun.service import serve
from tests.certs import tls_contexts

Addr = tuple[str, int]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[..., Awaitable[Streams]]
TIMEOUT = 5.0


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


HOSTS = [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not _has_ipv6(), reason="no IPv6")),
]


@pytest.fixture
async def connect(loop_errors: list[dict[str, object]]) -> AsyncIterator[Connect]:
    writers: list[asyncio.StreamWriter] = []

    async def connect_(address: Addr, ssl_context: ssl.SSLContext | None = None) -> Streams:
        opening = asyncio.open_connection(*address, ssl=ssl_context)
        reader, writer = await asyncio.wait_for(opening, TIMEOUT)
        writers.append(writer)
        return reader, writer

    yield connect_
    for writer in writers:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


def binding(*attributes: tuple[int, object]) -> Message:
    return Message(Method.BINDING, Class.REQUEST, attributes=list(attributes))


async def receive(reader: asyncio.StreamReader) -> Message:
    header = await asyncio.wait_for(reader.readexactly(20), TIMEOUT)
    body = await asyncio.wait_for(reader.readexactly(int.from_bytes(header[2:4])), TIMEOUT)
    return decode(header + body)


async def ask(streams: Streams, msg: Message) -> Message:
    reader, writer = streams
    writer.write(msg.encode(fingerprint=True))
    response = await receive(reader)
    assert response.transaction_id == msg.transaction_id
    return response


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_binding(host: str, tls: bool, connect: Connect) -> None:
    server_context, client_context = tls_contexts()
    if tls:
        server = await serve((), tls=[(host, 0)], ssl_context=server_context)
    else:
        server = await serve((), tcp=[(host, 0)])
    async with server:
        (address,) = server.addresses.tls if tls else server.addresses.tcp
        assert address[0] == host and address[1] > 0
        streams = await connect(address, client_context if tls else None)
        own = streams[1].get_extra_info("sockname")[:2]
        for _ in range(2):
            response = await ask(streams, binding())
            assert response.cls is Class.SUCCESS
            assert response.get(Attr.XOR_MAPPED_ADDRESS) == own
            assert response.check_fingerprint()
    assert server.stats.answered == 2


async def test_udp_tcp_and_tls_share_one_core(connect: Connect) -> None:
    server_context, client_context = tls_contexts()
    local = [("127.0.0.1", 0)]
    async with await serve(local, tcp=local, tls=local, ssl_context=server_context) as server:
        addresses = server.addresses
        await ask(await connect(addresses.tcp[0]), binding())
        await ask(await connect(addresses.tls[0], client_context), binding())
    assert server.stats.answered == 2


async def test_tls_needs_a_context() -> None:
    with pytest.raises(ValueError):
        await serve((), tls=[("127.0.0.1", 0)])


async def test_framing_across_and_within_writes(connect: Connect) -> None:
    async with await serve((), tcp=[("127.0.0.1", 0)]) as server:
        reader, writer = await connect(server.addresses.tcp[0])
        first, second, third = binding(), binding(), binding((Attr.SOFTWARE, "split"))
        writer.write(first.encode() + second.encode())
        data = third.encode(fingerprint=True)
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
        for msg in (first, second, third):
            assert (await receive(reader)).transaction_id == msg.transaction_id


async def test_stream_cannot_redirect_answers(connect: Connect) -> None:
    async with await serve((), tcp=[("127.0.0.1", 0)], response_port=True) as server:
        streams = await connect(server.addresses.tcp[0])
        for attribute, value in ((Attr.CHANGE_REQUEST, 0x6), (Attr.RESPONSE_PORT, 9)):
            response = await ask(streams, binding((attribute, value)))
            assert response.get(Attr.ERROR_CODE) == (420, "Unknown Attribute")
            assert response.get(Attr.UNKNOWN_ATTRIBUTES) == (attribute,)


async def test_undecodable_frames_are_dropped_and_the_connection_kept(connect: Connect) -> None:
    async with await serve((), tcp=[("127.0.0.1", 0)]) as server:
        streams = await connect(server.addresses.tcp[0])
        valid = binding().encode()
        streams[1].write(valid[:4] + b"\x21\x12\xa4\x43" + valid[8:])  # wrong cookie
        streams[1].write(Message(Method.BINDING, Class.INDICATION).encode())
        streams[1].write(b"\x40\x00\x00\x03abc\x00")  # ChannelData: frames, but is not STUN
        await ask(streams, binding())
        stats = server.stats
        assert (stats.dropped_malformed, stats.dropped_not_request, stats.answered) == (2, 1, 1)
        assert stats.closed_corrupt_streams == 0


async def test_corrupt_stream_closes_only_that_connection(connect: Connect) -> None:
    async with await serve((), tcp=[("127.0.0.1", 0)]) as server:
        address = server.addresses.tcp[0]
        bad, good = await connect(address), await connect(address)
        bad[1].write(b"\xc0" + bytes(19))
        assert await closed_by_peer(bad[0])
        assert server.stats.closed_corrupt_streams == 1
        await ask(good, binding())


async def test_tls_listener_survives_plain_garbage(connect: Connect) -> None:
    server_context, client_context = tls_contexts()
    async with await serve((), tls=[("127.0.0.1", 0)], ssl_context=server_context) as server:
        address = server.addresses.tls[0]
        reader, writer = await connect(address)
        writer.write(binding().encode() + bytes(300))
        assert await closed_by_peer(reader)
        await ask(await connect(address, client_context), binding())


async def test_close_drops_open_connections(connect: Connect) -> None:
    server = await serve((), tcp=[("127.0.0.1", 0)])
    streams = await connect(server.addresses.tcp[0])
    await ask(streams, binding())  # the server has surely accepted the connection
    await server.close()
    assert await closed_by_peer(streams[0])
