"""How a connected ``ice.Connection`` sorts what arrives on its socket: application data
only from the peer's valid address, STUN to the agent (malformed STUN dropped and
counted, never raised), and anything that merely starts like STUN from the peer is data.

Each test ends with a datagram from the peer that must be the next one recv() returns:
what was sent before it and should have been dropped would have come first.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Iterator

import pytest

import ice
from ice import CandidatePair, Connection
from stun import MAGIC_COOKIE, Attr, Class, Message, Method, decode, short_term_key
from tests.ice.connection_support import (
    LOOPBACK,
    bounded,
    connect_both,
    connections,
    signal,
)

pytestmark = pytest.mark.usefixtures("loop_errors")


@contextlib.asynccontextmanager
async def connected_pair() -> AsyncIterator[tuple[Connection, Connection, CandidatePair]]:
    """Two connected loopback connections and the first one's selected pair."""
    async with connections() as make:
        a, b = make(True), make(False)
        await signal(a, b)
        pair_a, _ = await connect_both(a, b)
        yield a, b, pair_a


@contextlib.contextmanager
def stranger() -> Iterator[socket.socket]:
    """A non-blocking UDP socket on 127.0.0.1 that is no candidate of anyone."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        yield sock


async def assert_next(conn: Connection, peer: Connection, marker: bytes) -> None:
    """``peer`` sends ``marker`` and it is the next datagram ``conn`` receives."""
    await peer.send(marker)
    assert await bounded(conn.recv()) == marker


def truncated_attribute() -> bytes:
    """A Binding request whose header passes the STUN test (first byte, length field,
    magic cookie) but whose one attribute claims more bytes than there are."""
    body = struct.pack("!HH", Attr.USERNAME, 100) + b"abcd"
    header = struct.pack("!HHI", 0x0001, len(body), MAGIC_COOKIE) + bytes(12)
    return header + body


def bad_fingerprint() -> bytes:
    """A well-formed Binding request whose FINGERPRINT does not match."""
    data = bytearray(Message(Method.BINDING, Class.REQUEST).encode(fingerprint=True))
    data[-1] ^= 0xFF
    return bytes(data)


async def test_data_from_an_unknown_address_is_dropped() -> None:
    """A datagram from a socket that is not the peer's candidate (same IP, another port)
    never reaches recv() and is counted in dropped_data."""
    async with connected_pair() as (a, b, pair_a):
        with stranger() as sock:
            sock.sendto(b"injected", pair_a.base)
            await assert_next(a, b, b"from the peer")
        assert a.dropped_data == 1
        assert pair_a.bytes_received == len(b"from the peer")


async def test_peer_data_that_starts_like_stun_is_data() -> None:
    """From the peer's valid address, datagrams that are not STUN by the full test (first
    byte 0-3 but a wrong length field or no magic cookie, ChannelData-like bytes) are
    the application's, delivered unchanged."""
    look_alikes = [
        b"\x00\x01\x00\x00" + struct.pack("!I", MAGIC_COOKIE) + bytes(12) + b"tail",  # length
        b"\x01\x01\x00\x04" + b"\x00" * 16 + b"abcd",  # no magic cookie
        b"\x40\x00\x00\x04abcd",  # ChannelData, but not from a TURN server
        b"\x03",
    ]
    async with connected_pair() as (a, b, _):
        for data in look_alikes:
            assert not ice.is_stun(data)
            await b.send(data)
        assert [await bounded(a.recv()) for _ in look_alikes] == look_alikes
        assert a.agent.stats.dropped_malformed == 0 and a.dropped_data == 0


@pytest.mark.parametrize("malformed", [truncated_attribute(), bad_fingerprint()])
async def test_malformed_stun_is_dropped_and_counted(malformed: bytes) -> None:
    """STUN-looking datagrams that do not parse (or fail their FINGERPRINT) go to the
    agent, which drops and counts them: from a stranger and from the peer alike, none
    reaches recv() and nothing is raised."""
    assert ice.is_stun(malformed)
    async with connected_pair() as (a, b, pair_a):
        with stranger() as sock:
            sock.sendto(malformed, pair_a.base)
            await b.send(malformed)  # from the peer's own valid address
            await assert_next(a, b, b"still connected")
        assert a.agent.stats.dropped_malformed == 2
        assert a.dropped_data == 0
        assert a.state is ice.ConnectionState.COMPLETED


async def test_unauthenticated_check_gets_401_and_opens_no_path() -> None:
    """A Binding request signed with the wrong password is answered 401 and counted;
    the stranger does not become a valid remote, so its data is still dropped."""
    async with connected_pair() as (a, b, pair_a):
        request = Message(
            Method.BINDING,
            Class.REQUEST,
            attributes=[
                (Attr.USERNAME, f"{a.local_ufrag}:{b.local_ufrag}"),
                (Attr.PRIORITY, 1862270975),
                (Attr.ICE_CONTROLLED, 1),
            ],
        )
        loop = asyncio.get_running_loop()
        with stranger() as sock:
            sock.sendto(
                request.encode(short_term_key("not-the-password-at-all"), True), pair_a.base
            )
            data, source = await bounded(loop.sock_recvfrom(sock, 2048))
            answer = decode(data)
            assert source == pair_a.base
            assert answer.transaction_id == request.transaction_id
            assert answer.cls is Class.ERROR and answer.get(Attr.ERROR_CODE)[0] == 401
            sock.sendto(b"injected", pair_a.base)
            await assert_next(a, b, b"from the peer")
        assert a.agent.stats.dropped_unauthenticated == 1
        assert a.dropped_data == 1
        assert set(a.agent.valid_pairs) == {pair_a.key}
