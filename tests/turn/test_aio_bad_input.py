"""Malformed and forged packets from the server's address, over a real socket: counted,
dropped, and the allocation keeps relaying."""

from __future__ import annotations

import asyncio
import os

import turn
from stun import Attr, Class, Message, Method
from tests.coturn import Coturn
from tests.turn.aio_support import Peer, UdpProxy, round_trip

LIMIT = 5.0


def _forgeries() -> list[bytes]:
    """What a confused or hostile sender at the server's address might send."""
    unknown_tid = Message(
        Method.ALLOCATE,
        Class.SUCCESS,
        os.urandom(12),
        [(Attr.XOR_RELAYED_ADDRESS, ("127.0.0.1", 9)), (Attr.LIFETIME, 600)],
    ).encode(b"not the key")
    valid = Message(Method.BINDING, Class.REQUEST).encode()
    return [
        b"\xff" * 40,  # neither STUN nor ChannelData
        valid[:12],  # truncated header
        valid[:4] + b"\x00\x00\x00\x00" + valid[8:],  # wrong magic cookie
        valid[:3] + b"\x08" + valid[4:],  # length field that does not fit
        b"\x4f\xff\x00\x04abcd",  # ChannelData on a channel never bound
        b"\x40\x00\xff\xff" + b"x" * 8,  # on the bound channel, longer than the datagram
        unknown_tid,  # a response to no request
    ]


async def test_garbage_from_the_servers_address_is_counted_and_dropped(
    coturn: Coturn, loop_errors: list[dict[str, object]]
) -> None:
    async with asyncio.timeout(LIMIT), UdpProxy(coturn.address) as proxy:
        peer = await Peer.open()
        allocation = await turn.allocate(proxy.address, "alice", coturn.users["alice"])
        try:
            await round_trip(allocation, peer, b"before")
            for forged in _forgeries():
                proxy.inject(forged)
            await round_trip(allocation, peer, b"after")  # ordered after the forgeries
            stats = allocation.stats
            assert stats.dropped_malformed == 5
            assert stats.dropped_unknown_channel == 1
            assert stats.dropped_unmatched == 1
            assert not allocation.closed
        finally:
            await allocation.close()
            peer.close()
