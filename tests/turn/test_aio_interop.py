"""Interop: an aioice 0.13 TURN allocation (``aioice.turn.create_turn_endpoint``) and an
icestack one on the same coturn, exchanging datagrams relayed address to relayed address.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aioice.turn import create_turn_endpoint

import turn
from stun.uri import Transport
from tests.coturn import Coturn
from tests.turn.aio_support import LOOPBACK, TIMEOUT, Address

pytestmark = pytest.mark.usefixtures("loop_errors")

LIMIT = 5.0
"""Seconds any one test here may take before it fails instead of hanging."""


class _AioiceReceiver(asyncio.DatagramProtocol):
    """The application protocol aioice hands relayed datagrams to."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))

    def error_received(self, exc: Exception) -> None:
        raise AssertionError(f"aioice could not send: {exc!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_aioice_and_icestack_relay_to_each_other(
    coturn: Coturn, transport: Transport
) -> None:
    async with asyncio.timeout(LIMIT):
        theirs, receiver = await create_turn_endpoint(
            _AioiceReceiver,
            server_addr=coturn.address,
            username="bob",
            password=coturn.users["bob"],
            transport=transport,
        )
        try:
            their_relay: Address = theirs.get_extra_info("sockname")
            assert their_relay[0] == LOOPBACK
            async with await turn.allocate(
                coturn.address,
                "alice",
                coturn.users["alice"],
                transport=transport,
                timeout=TIMEOUT,
            ) as ours:
                # aioice installs its permission (a ChannelBind) on its first send; ours
                # must exist before that datagram reaches coturn.
                await ours.create_permission(their_relay)
                for n in range(3):
                    theirs.sendto(b"from aioice %d" % n, ours.relayed_address)
                    assert await ours.recvfrom() == (b"from aioice %d" % n, their_relay)
                    ours.sendto(b"from icestack %d" % n, their_relay)
                    assert await receiver.received.get() == (
                        b"from icestack %d" % n,
                        ours.relayed_address,
                    )
                assert ours.stats.sent_channel_data > 0
        finally:
            theirs.close()
            await receiver.lost  # aioice released its allocation
