"""``turn.allocate`` against a real coturn: allocations over UDP, TCP and TLS, relaying to
UDP peers on loopback (ChannelData and Send/Data indications), permissions, forbidden
peers, two allocations talking to each other, and releasing an allocation.

Every await is bounded (``asyncio.timeout``); the peers are plain UDP sockets.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any

import pytest

import turn
from stun import Attr, Class, Message, Method
from tests.coturn import Coturn, CoturnFactory
from tests.turn.aio_support import (
    LOOPBACK,
    LOOPBACK_2,
    TIMEOUT,
    Peer,
    Recorder,
    UdpProxy,
    loopback_2_usable,
    round_trip,
)

pytestmark = pytest.mark.usefixtures("loop_errors")

LOOPBACK_3 = "127.0.0.3"

LIMIT = 5.0
"""Seconds any one test here may take before it fails instead of hanging."""

needs_loopback_2 = pytest.mark.skipif(
    not loopback_2_usable(), reason="127.0.0.2 is not usable on this host"
)


async def allocate(server: Coturn, user: str = "alice", **options: Any) -> turn.Allocation:
    """An allocation for one of ``server``'s accounts over UDP (unless told otherwise)."""
    options.setdefault("timeout", TIMEOUT)
    target = options.pop("target", server.address)
    return await turn.allocate(target, user, server.users[user], **options)


def _target(server: Coturn, transport: str) -> str:
    if transport == "udp":
        return f"turn:{LOOPBACK}:{server.port}"
    if transport == "tcp":
        return f"turn:{LOOPBACK}:{server.port}?transport=tcp"
    return f"turns:{LOOPBACK}:{server.tls_address[1]}"


# -- allocating and relaying ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_allocate_and_relay_both_ways(coturn_tls: Coturn, transport: str) -> None:
    async with asyncio.timeout(LIMIT):
        events: Recorder[turn.Event] = Recorder()
        context = coturn_tls.client_ssl_context() if transport == "tls" else None
        peer = await Peer.open()
        try:
            async with await allocate(
                coturn_tls, target=_target(coturn_tls, transport), ssl=context, on_event=events
            ) as allocation:
                assert allocation.server.transport == transport
                assert allocation.relayed_address[0] == LOOPBACK
                assert allocation.mapped_address == allocation.local_address
                assert allocation.lifetime == 600  # coturn's default
                assert isinstance(events.items[0], turn.Allocated)

                for n in range(3):
                    await round_trip(
                        allocation, peer, b"datagram %d over %s" % (n, transport.encode())
                    )
                bound = await events.wait_for(turn.ChannelBound)
                assert bound.peer == peer.address
                assert allocation.stats.sent_channel_data > 0
                assert allocation.stats.sent_indications == 0
                assert allocation.stats.dropped_malformed == 0
                assert allocation.stats.dropped_unmatched == 0
                assert repr(allocation).endswith(" allocated>")
            assert allocation.closed
            assert isinstance(events.items[-1], turn.Closed)
        finally:
            peer.close()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_bursts_both_ways_arrive_whole_and_in_order(
    coturn_tls: Coturn, transport: str
) -> None:
    """Datagrams sent before the channel is bound wait and then leave in order; a burst
    from the peer comes back over the stream as back-to-back (padded) ChannelData."""
    sizes = [1, 2, 3, 4, 5, 7, 100, 333, 1000, 1199] * 5
    outgoing = [bytes([n % 256]) * size for n, size in enumerate(sizes)]
    async with asyncio.timeout(LIMIT):
        context = coturn_tls.client_ssl_context() if transport == "tls" else None
        peer = await Peer.open()
        try:
            async with await allocate(
                coturn_tls, target=_target(coturn_tls, transport), ssl=context
            ) as allocation:
                for data in outgoing:  # all before the ChannelBind is answered
                    allocation.sendto(data, peer.address)
                for data in outgoing:
                    assert await peer.recv() == (data, allocation.relayed_address)
                for data in outgoing:
                    peer.sendto(data[::-1] + b"!", allocation.relayed_address)
                for data in outgoing:
                    assert await allocation.recvfrom() == (data[::-1] + b"!", peer.address)
                assert allocation.stats.dropped_malformed == 0
                assert allocation.dropped_unread == 0
        finally:
            peer.close()


async def test_a_waiting_recvfrom_ends_when_the_allocation_is_closed(coturn: Coturn) -> None:
    async with asyncio.timeout(LIMIT):
        allocation = await allocate(coturn)
        reader = asyncio.create_task(allocation.recvfrom())
        await asyncio.sleep(0)  # the reader is waiting
        assert not reader.done()
        await allocation.close()
        with pytest.raises(turn.TurnError):
            await reader


async def test_data_handler_receives_instead_of_the_queue(coturn: Coturn) -> None:
    async with asyncio.timeout(LIMIT):
        peer = await Peer.open()
        received: Recorder[tuple[bytes, tuple[str, int]]] = Recorder()
        try:
            async with await allocate(coturn) as allocation:
                allocation.set_data_handler(lambda data, source: received.append((data, source)))
                allocation.sendto(b"hello", peer.address)
                assert await peer.recv() == (b"hello", allocation.relayed_address)
                for n in range(3):
                    peer.sendto(b"reply %d" % n, allocation.relayed_address)
                await received.wait(lambda _: True, count=3)
                assert received.items == [(b"reply %d" % n, peer.address) for n in range(3)]

                allocation.set_data_handler(None)  # back to recvfrom()
                await round_trip(allocation, peer, b"queued again")
                assert len(received.items) == 3
        finally:
            peer.close()


async def test_send_and_data_indications_without_channels(coturn: Coturn) -> None:
    async with asyncio.timeout(LIMIT):
        events: Recorder[turn.Event] = Recorder()
        peer = await Peer.open()
        try:
            async with await allocate(coturn, channels=False, on_event=events) as allocation:
                for n in range(3):
                    await round_trip(allocation, peer, b"indication %d" % n)
                assert allocation.stats.sent_channel_data == 0
                assert allocation.stats.sent_indications == 3
                assert not events.matching(lambda e: isinstance(e, turn.ChannelBound))
                assert events.matching(lambda e: isinstance(e, turn.PermissionCreated))
        finally:
            peer.close()


async def test_rest_api_credentials(coturn_rest: Coturn) -> None:
    assert coturn_rest.secret is not None
    async with asyncio.timeout(LIMIT):
        username, password = turn.rest_credentials(coturn_rest.secret, "carol", 600)
        peer = await Peer.open()
        try:
            async with await turn.allocate(
                coturn_rest.address, username, password, timeout=TIMEOUT
            ) as allocation:
                await round_trip(allocation, peer, b"with a shared secret")
        finally:
            peer.close()

        expired, password = coturn_rest.rest_credentials("carol", ttl=-60)
        with pytest.raises(turn.AuthenticationError) as caught:
            await turn.allocate(coturn_rest.address, expired, password, timeout=TIMEOUT)
        assert caught.value.code == 401
        assert caught.value.realm == coturn_rest.realm


# -- TLS certificate checks ----------------------------------------------------------------


async def test_tls_checks_the_certificate_by_default(coturn_tls: Coturn) -> None:
    """The system's default context does not trust the self-signed test certificate."""
    async with asyncio.timeout(LIMIT):
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await allocate(coturn_tls, target=_target(coturn_tls, "tls"))
        assert "certificate verify failed" in str(caught.value)
        assert re.search("self[- ]signed certificate", str(caught.value))  # OpenSSL 3 / 1.1


async def test_tls_checks_the_host_name(coturn_tls: Coturn) -> None:
    async with asyncio.timeout(LIMIT):
        context = coturn_tls.client_ssl_context()
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await allocate(
                coturn_tls,
                target=_target(coturn_tls, "tls"),
                ssl=context,
                server_hostname="turn.example.org",
            )
        assert "turn.example.org" in str(caught.value)
        # The names the certificate carries pass: 127.0.0.1 (the default) and localhost.
        async with await allocate(
            coturn_tls, target=_target(coturn_tls, "tls"), ssl=context, server_hostname="localhost"
        ) as allocation:
            assert allocation.relayed_address[0] == LOOPBACK


# -- permissions ---------------------------------------------------------------------------


@needs_loopback_2
async def test_data_from_a_peer_without_permission_is_not_delivered(coturn: Coturn) -> None:
    """coturn drops what a peer without a permission sends; our own first datagram to a
    peer installs its permission and gets through."""
    async with asyncio.timeout(LIMIT):
        known = await Peer.open(LOOPBACK)
        stranger = await Peer.open(LOOPBACK_2)
        try:
            async with await allocate(coturn) as allocation:
                await round_trip(allocation, known, b"installs 127.0.0.1")
                # Both reach the relay in this order; only the known peer's is relayed.
                stranger.sendto(b"from a stranger", allocation.relayed_address)
                known.sendto(b"from a friend", allocation.relayed_address)
                assert await allocation.recvfrom() == (b"from a friend", known.address)

                await round_trip(allocation, stranger, b"installs 127.0.0.2")
                stranger.sendto(b"welcome now", allocation.relayed_address)
                assert await allocation.recvfrom() == (b"welcome now", stranger.address)
        finally:
            known.close()
            stranger.close()


async def test_forbidden_peer_next_to_a_working_one(coturn_factory: CoturnFactory) -> None:
    server = coturn_factory(users={"alice": "pw"}, denied_peers=[f"{LOOPBACK_2}-{LOOPBACK_3}"])
    async with asyncio.timeout(LIMIT):
        events: Recorder[turn.Event] = Recorder()
        peer = await Peer.open()
        try:
            async with await allocate(server, on_event=events) as allocation:
                with pytest.raises(turn.PeerPermissionError) as caught:
                    await allocation.create_permission(LOOPBACK_2, peer.address)
                assert caught.value.peer == LOOPBACK_2
                assert caught.value.code == 403
                assert LOOPBACK_2 in str(caught.value)
                failed = await events.wait_for(turn.PermissionFailed)
                assert (failed.peer, failed.code) == (LOOPBACK_2, 403)
                created = await events.wait_for(turn.PermissionCreated)
                assert created.peers == (LOOPBACK,)

                with pytest.raises(turn.PeerPermissionError):
                    allocation.sendto(b"refused", (LOOPBACK_2, 9))

                # Sending first: the datagrams wait for the ChannelBind, which gets 403.
                allocation.sendto(b"one", (LOOPBACK_3, 9))
                allocation.sendto(b"two", (LOOPBACK_3, 9))
                failed = await events.wait(
                    lambda e: isinstance(e, turn.PermissionFailed) and e.peer == LOOPBACK_3
                )
                assert isinstance(failed, turn.PermissionFailed)
                assert (failed.code, failed.dropped) == (403, 2)
                with pytest.raises(turn.PeerPermissionError) as caught:
                    allocation.sendto(b"three", (LOOPBACK_3, 9))
                assert caught.value.peer == LOOPBACK_3
                # The permitted peer was installed all the same: it may send first.
                peer.sendto(b"first", allocation.relayed_address)
                assert await allocation.recvfrom() == (b"first", peer.address)
                await round_trip(allocation, peer, b"still working")
                assert not allocation.closed
        finally:
            peer.close()


# -- two allocations -----------------------------------------------------------------------


async def test_two_allocations_relay_to_each_other(coturn: Coturn) -> None:
    async with asyncio.timeout(LIMIT):
        async with (
            await allocate(coturn, "alice") as alice,
            await allocate(coturn, "bob", transport="tcp") as bob,
        ):
            assert alice.relayed_address != bob.relayed_address
            await bob.create_permission(alice.relayed_address)
            for n in range(3):
                alice.sendto(b"alice %d" % n, bob.relayed_address)
                assert await bob.recvfrom() == (b"alice %d" % n, alice.relayed_address)
                bob.sendto(b"bob %d" % n, alice.relayed_address)
                assert await alice.recvfrom() == (b"bob %d" % n, bob.relayed_address)
            assert alice.stats.sent_channel_data > 0
            assert bob.stats.sent_channel_data > 0


# -- releasing -----------------------------------------------------------------------------


def _unauthenticated_allocate() -> Message:
    return Message(Method.ALLOCATE, Class.REQUEST, attributes=[(Attr.REQUESTED_TRANSPORT, 17)])


async def test_close_releases_the_allocation(coturn: Coturn) -> None:
    """close() sends Refresh LIFETIME=0 and coturn frees the 5-tuple: an Allocate from the
    same client address and port is challenged (401) again, not refused with 437, while
    an allocation that is not released keeps its 5-tuple.

    Each allocation goes through its own proxy, whose upstream socket is the 5-tuple
    coturn knows; the probes go out from that socket. Measured with coturn 4.6.1: the
    5-tuple of a released allocation still gets 437 for up to a second (the session is
    dropped on coturn's next 1-second tick), so the probe is repeated until then.
    """
    async with (
        asyncio.timeout(LIMIT),
        UdpProxy(coturn.address) as released_proxy,
        UdpProxy(coturn.address) as kept_proxy,
    ):
        events: Recorder[turn.Event] = Recorder()
        released = await allocate(coturn, "alice", target=released_proxy.address, on_event=events)
        kept = await allocate(coturn, "bob", target=kept_proxy.address)
        await released.close()
        assert released.closed
        closed = await events.wait_for(turn.Closed)
        assert closed.reason == "the allocation was released"
        refreshes = released_proxy.seen.matching(lambda seen: seen.is_request(Method.REFRESH))
        assert len(refreshes) == 1
        assert refreshes[0].message is not None
        assert refreshes[0].message.get(Attr.LIFETIME) == 0
        assert released_proxy.seen.matching(lambda seen: seen.is_answer(Method.REFRESH))
        with pytest.raises(turn.TurnError):
            released.sendto(b"too late", (LOOPBACK, 9))
        await released.close()  # idempotent

        while (answer := await released_proxy.ask(_unauthenticated_allocate())).error_code != 401:
            assert answer.error_code == 437
            await asyncio.sleep(0.1)  # pacing the probes until coturn's next tick
        assert (await kept_proxy.ask(_unauthenticated_allocate())).error_code == 437
        assert not kept.closed
        await kept.close()
