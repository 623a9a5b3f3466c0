"""The timers of ``turn.allocate`` against a real coturn with lifetimes of a second or two:
allocation refreshes, stale nonces, permission and channel refreshes.

coturn 4.6.1, as measured by ``tests/turn/test_coturn_fixture.py``:
``--max-allocate-lifetime=N`` grants ``min(max(asked, 600), N)`` to an Allocate, and to a
Refresh asking 600 s or more (a Refresh asking less is granted 600 s, whatever N);
``--stale-nonce=1`` makes a nonce stale 1 to 2 s after it was issued;
``--permission-lifetime=1`` and ``--channel-lifetime=1`` end a permission or channel 1 s
after the request that installed or refreshed it.

The waits are for events (``Refreshed``, ``PermissionCreated``, the proxy seeing a 438),
each with a deadline; paced round trips show that data keeps flowing meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import turn
from stun import Method
from tests.coturn import Coturn, CoturnFactory
from tests.turn.aio_support import (
    TIMEOUT,
    Peer,
    Recorder,
    UdpProxy,
    relay_for,
    round_trip,
)

pytestmark = pytest.mark.usefixtures("loop_errors")

LIMIT = 6.0
"""Seconds any one test here may take before it fails instead of hanging."""


async def _allocate(server: Coturn, target: Any = None, **options: Any) -> turn.Allocation:
    return await turn.allocate(
        target or server.address, "alice", server.users["alice"], timeout=TIMEOUT, **options
    )


def _is_lost(event: turn.Event) -> bool:
    return isinstance(event, turn.AllocationLost)


# -- the allocation ------------------------------------------------------------------------


def _refreshes(events: Recorder[turn.Event]) -> list[turn.Refreshed]:
    return [event for event in events.items if isinstance(event, turn.Refreshed)]


async def test_short_allocation_is_refreshed_through_stale_nonces(
    coturn_factory: CoturnFactory,
) -> None:
    """Asking 600 s of a server capped at 1 s: every grant is 1 s, refreshed every 0.5 s;
    the nonce goes stale after 1 to 2 s, a Refresh gets 438 and is retried with the new
    nonce; the allocation outlives several lifetimes, relaying all along."""
    server = coturn_factory(users={"alice": "pw"}, max_allocate_lifetime=1, stale_nonce=1)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(LIMIT), UdpProxy(server.address) as proxy:
        events: Recorder[turn.Event] = Recorder()
        peer = await Peer.open()
        try:
            async with await _allocate(
                server, proxy.address, lifetime=600, on_event=events
            ) as allocation:
                began = loop.time()
                assert allocation.lifetime == 1
                first = await events.wait_for(turn.Refreshed, timeout=1.0)
                assert first.lifetime == 1
                assert loop.time() - began < 1.0  # before the allocation would have ended
                await relay_for(allocation, peer, 1.2)

                stale = await proxy.seen.wait(
                    lambda seen: seen.is_answer(Method.REFRESH, 438), timeout=3.0
                )
                index = proxy.seen.items.index(stale)
                await proxy.seen.wait(lambda seen: seen.is_answer(Method.REFRESH), start=index)
                await events.wait_for(turn.Refreshed, count=len(_refreshes(events)) + 1)
                assert not events.matching(_is_lost)
                assert len(_refreshes(events)) >= 3
                assert all(event.lifetime == 1 for event in _refreshes(events))
                assert allocation.lifetime == 1
                await round_trip(allocation, peer, b"after a stale nonce")
        finally:
            peer.close()


@pytest.mark.parametrize("lifetime", [None, 1])
async def test_refresh_is_granted_what_coturn_grants(
    coturn_factory: CoturnFactory, lifetime: int | None
) -> None:
    """Without LIFETIME, or asking 1 s: coturn grants 1 s to the Allocate (its cap) but
    600 s to the Refresh (its quirk); the client takes whatever it is granted."""
    server = coturn_factory(users={"alice": "pw"}, max_allocate_lifetime=1)
    async with asyncio.timeout(LIMIT):
        events: Recorder[turn.Event] = Recorder()
        peer = await Peer.open()
        try:
            async with await _allocate(server, lifetime=lifetime, on_event=events) as allocation:
                assert allocation.lifetime == 1
                refreshed = await events.wait_for(turn.Refreshed, timeout=1.0)
                assert refreshed.lifetime == 600
                assert allocation.lifetime == 600
                await relay_for(allocation, peer, 0.7)  # past the end of the first grant
                assert len(_refreshes(events)) == 1
                assert not events.matching(_is_lost)
        finally:
            peer.close()


# -- permissions and channels --------------------------------------------------------------


async def test_permissions_outlive_short_lifetimes_and_stale_nonces(
    coturn_factory: CoturnFactory,
) -> None:
    """1-second permissions refreshed every 0.5 s, nonces stale after 1 to 2 s: a
    CreatePermission gets 438 and is retried; after two lifetimes without any traffic,
    the peer can still send first."""
    server = coturn_factory(users={"alice": "pw"}, permission_lifetime=1, stale_nonce=1)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(LIMIT), UdpProxy(server.address) as proxy:
        events: Recorder[turn.Event] = Recorder()
        peer = await Peer.open()
        try:
            async with await _allocate(
                server, proxy.address, channels=False, permission_refresh=0.5, on_event=events
            ) as allocation:
                await round_trip(allocation, peer, b"installs the permission")
                installed = await events.wait_for(turn.PermissionCreated)
                began = loop.time()
                stale = await proxy.seen.wait(
                    lambda seen: seen.is_answer(Method.CREATE_PERMISSION, 438), timeout=3.0
                )
                index = proxy.seen.items.index(stale)
                await proxy.seen.wait(
                    lambda seen: seen.is_answer(Method.CREATE_PERMISSION), start=index
                )
                start = events.items.index(installed) + 1
                await events.wait_for(turn.PermissionCreated, count=4, start=start, timeout=3.0)
                assert loop.time() - began >= 1.4  # more than a lifetime of silence
                assert not events.matching(lambda e: isinstance(e, turn.PermissionFailed))

                peer.sendto(b"still permitted", allocation.relayed_address)
                assert await allocation.recvfrom() == (b"still permitted", peer.address)
                await round_trip(allocation, peer, b"both ways")
                assert allocation.stats.sent_channel_data == 0
        finally:
            peer.close()


async def test_channels_outlive_a_short_channel_lifetime(coturn_factory: CoturnFactory) -> None:
    """1-second channels and permissions, rebound every 0.5 s while in use: two lifetimes
    of round trips, all of them over the channel."""
    server = coturn_factory(users={"alice": "pw"}, permission_lifetime=1, channel_lifetime=1)
    async with asyncio.timeout(LIMIT):
        events: Recorder[turn.Event] = Recorder()
        peer = await Peer.open()
        try:
            async with await _allocate(
                server, channel_refresh=0.5, permission_refresh=0.5, on_event=events
            ) as allocation:
                rounds = await relay_for(allocation, peer, 2.1)
                assert allocation.stats.sent_channel_data == rounds
                assert allocation.stats.sent_indications == 0
                bound = [e.peer for e in events.items if isinstance(e, turn.ChannelBound)]
                assert bound == [peer.address]
        finally:
            peer.close()
