"""The asyncio client over real loopback sockets, against peers scripted in the test."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

import stun
from stun.client import StunClient, binding
from tests.certs import tls_contexts

Responder = Callable[[bytes, tuple[str, int]], list[bytes]]


class _Peer(asyncio.DatagramProtocol):
    """A UDP peer that answers each datagram with what ``respond`` returns."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)
        assert self.transport is not None
        for reply in self.respond(data, addr):
            self.transport.sendto(reply, addr)


@asynccontextmanager
async def _peer(respond: Responder, host: str = "127.0.0.1") -> AsyncIterator[tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Peer(respond), local_addr=(host, 0))
    try:
        yield transport.get_extra_info("sockname")[:2]
    finally:
        transport.close()


def _answer(data: bytes, addr: tuple[str, int]) -> bytes:
    request = stun.decode(data)
    return stun.Message(
        stun.Method.BINDING,
        stun.Class.SUCCESS,
        request.transaction_id,
        [(stun.Attr.XOR_MAPPED_ADDRESS, (addr[0], addr[1]))],
    ).encode(fingerprint=True)


def _malformed_batch(valid: bytes) -> list[bytes]:
    """Truncated, mis-padded, wrong-cookie, wrong-length-attribute and random datagrams."""
    wrong_cookie = valid[:4] + b"\x21\x12\xa4\x43" + valid[8:]
    bad_attr_length = bytearray(valid)
    bad_attr_length[22:24] = (200).to_bytes(2, "big")  # XOR-MAPPED-ADDRESS runs past the end
    mis_padded = valid[:2] + (len(valid) - 19).to_bytes(2, "big") + valid[4:] + b"\0"
    random_bytes = [os.urandom(n) for n in (1, 19, 20, 21, 64, 500)]
    return [valid[:10], valid[:-1], wrong_cookie, bytes(bad_attr_length), mis_padded, *random_bytes]


async def test_binding_over_udp_returns_mapped_address_and_rtt() -> None:
    async with _peer(lambda data, addr: [_answer(data, addr)]) as server:
        result = await binding(server)
    assert result.mapped_address == result.local
    assert result.server == server
    assert 0 < result.rtt < 5


async def test_binding_over_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        async with _peer(lambda data, addr: [_answer(data, addr)], host="::1") as server:
            result = await binding(f"[{server[0]}]:{server[1]}")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert result.mapped_address == result.local
    assert result.mapped_address[0] == "::1"


async def test_malformed_datagrams_are_counted_and_the_transaction_still_completes(
    loop_errors: list[dict[str, object]],
) -> None:
    def respond(data: bytes, addr: tuple[str, int]) -> list[bytes]:
        valid = _answer(data, addr)
        return [*_malformed_batch(valid), valid]

    async with _peer(respond) as server, await StunClient.open_udp(("127.0.0.1", 0)) as client:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        response = await client.request(request, server, timeout=5)
        assert response.get(stun.Attr.XOR_MAPPED_ADDRESS) == client.local_address
        assert client.stats.dropped_malformed == len(_malformed_batch(b"\0" * 32))


async def test_responses_for_unknown_transactions_are_counted() -> None:
    def respond(data: bytes, addr: tuple[str, int]) -> list[bytes]:
        stray = stun.Message(stun.Method.BINDING, stun.Class.SUCCESS).encode()
        return [stray, _answer(data, addr)]

    async with _peer(respond) as server, await StunClient.open_udp(("127.0.0.1", 0)) as client:
        await client.request(stun.Message(stun.Method.BINDING, stun.Class.REQUEST), server)
        assert client.stats.dropped_unmatched == 1


async def test_error_response_raises_error_response() -> None:
    def respond(data: bytes, addr: tuple[str, int]) -> list[bytes]:
        tid = stun.decode(data).transaction_id
        error = stun.Message(
            stun.Method.BINDING, stun.Class.ERROR, tid, [(stun.Attr.ERROR_CODE, (420, "Nope"))]
        )
        return [error.encode()]

    async with _peer(respond) as server:
        with pytest.raises(stun.ErrorResponse) as caught:
            await binding(server)
    assert (caught.value.code, caught.value.reason) == (420, "Nope")


async def test_silent_server_times_out_with_the_configured_cap() -> None:
    received: list[bytes] = []

    def record(data: bytes, addr: tuple[str, int]) -> list[bytes]:
        received.append(data)
        return []

    async with _peer(record) as server:
        with pytest.raises(stun.TransactionTimeout):
            await binding(server, rto=0.05, timeout=0.5)
    # sends at 0, 0.05, 0.15 and 0.35 s fit before the 0.5 s cap; the next would be at 0.75 s
    assert len(received) == 4
    assert len({stun.decode(d).transaction_id for d in received}) == 1


async def test_closed_port_fails_fast_with_unreachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(stun.StunError, match="unreachable"):
        await asyncio.wait_for(binding(("127.0.0.1", port)), timeout=5)


async def test_wrong_integrity_key_fails_with_integrity_error() -> None:
    def respond(data: bytes, addr: tuple[str, int]) -> list[bytes]:
        tid = stun.decode(data).transaction_id
        reply = stun.Message(
            stun.Method.BINDING, stun.Class.SUCCESS, tid, [(stun.Attr.XOR_MAPPED_ADDRESS, addr)]
        )
        return [reply.encode(b"server key", fingerprint=True)]

    async with _peer(respond) as server, await StunClient.open_udp(("127.0.0.1", 0)) as client:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        with pytest.raises(stun.IntegrityError, match="integrity"):
            await client.request(
                request, server, integrity_key=b"client key", rto=0.05, timeout=0.3
            )


async def test_tcp_corrupt_stream_fails_pending_request_and_counts() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(20)
        writer.write(b"\xff" * 24)
        await writer.drain()
        await reader.read()  # wait for the client to hang up
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        client = await StunClient.connect(host, port)
        with pytest.raises(stun.StunError, match="corrupt"):
            await client.request(stun.Message(stun.Method.BINDING, stun.Class.REQUEST), timeout=5)
        assert client.stats.dropped_malformed == 1
        await client.close()


async def test_closing_the_client_fails_pending_requests() -> None:
    async with _peer(lambda data, addr: []) as server:
        client = await StunClient.open_udp(("127.0.0.1", 0))
        pending = asyncio.ensure_future(
            client.request(stun.Message(stun.Method.BINDING, stun.Class.REQUEST), server)
        )
        await asyncio.sleep(0)
        await client.close()
        with pytest.raises(stun.StunError, match="closed"):
            await asyncio.wait_for(pending, timeout=5)
        with pytest.raises(stun.StunError):
            await client.request(stun.Message(stun.Method.BINDING, stun.Class.REQUEST), server)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_binding_against_our_server_on_every_transport(transport: str) -> None:
    contexts = tls_contexts()
    loopback = [("127.0.0.1", 0)]
    async with await stun.serve(
        loopback, tcp=loopback, tls=loopback, ssl_context=contexts.server
    ) as server:
        where = getattr(server.addresses, transport)[0]
        result = await binding(
            where,
            transport=transport,  # type: ignore[arg-type]
            ssl_context=contexts.client,
        )
    assert result.mapped_address == result.local
    assert result.server == where


async def test_tls_certificate_is_verified_by_default() -> None:
    contexts = tls_contexts()
    async with await stun.serve(
        [("127.0.0.1", 0)], tls=[("127.0.0.1", 0)], ssl_context=contexts.server
    ) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await binding(server.addresses.tls[0], transport="tls")
