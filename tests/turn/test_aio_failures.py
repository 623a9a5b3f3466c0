"""``turn.allocate`` against a real coturn when things go wrong: bad credentials, servers
that cannot be reached, servers that stop or restart under a live allocation.

A :class:`~tests.turn.aio_support.UdpProxy` between the client and coturn counts the
requests and plays the network: it swallows everything (a server gone without an ICMP
error) or switches to another coturn with the same realm and accounts (a restarted
server behind the same address). Nothing here may hang: every await is bounded.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import turn
from stun import Method
from stun.uri import Transport
from tests.coturn import Coturn, CoturnFactory
from tests.turn.aio_support import LOOPBACK, TIMEOUT, Peer, Recorder, UdpProxy, round_trip

pytestmark = pytest.mark.usefixtures("loop_errors")

LIMIT = 5.0
"""Seconds any one test here may take before it fails instead of hanging."""
QUICK = 1.0
"""Seconds within which an error that needs no timeout must come (it takes milliseconds)."""


def _closed_port(kind: int) -> int:
    """A loopback port nothing listens on (just released by the kernel)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def black_hole() -> Iterator[tuple[str, int]]:
    """A bound UDP socket that reads nothing and answers nothing (no ICMP either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        yield LOOPBACK, sock.getsockname()[1]


# -- credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["alice", "mallory"])
async def test_wrong_credentials_fail_after_one_authenticated_try(
    coturn: Coturn, user: str
) -> None:
    async with asyncio.timeout(LIMIT), UdpProxy(coturn.address) as proxy:
        events: Recorder[turn.Event] = Recorder()
        with pytest.raises(turn.AuthenticationError) as caught:
            await turn.allocate(
                proxy.address, user, "not the password", timeout=TIMEOUT, on_event=events
            )
        error = caught.value
        assert error.code == 401
        assert error.realm == coturn.realm
        assert coturn.realm in str(error)
        assert user in str(error)
        failed = await events.wait_for(turn.AllocationFailed)
        assert failed.error is error

        requests = [
            seen.message
            for seen in proxy.seen.items
            if seen.is_request(Method.ALLOCATE) and seen.message is not None
        ]
        assert [request.has_integrity for request in requests] == [False, True]
        assert [seen.error_code for seen in proxy.seen.items if not seen.upstream] == [401, 401]


# -- unreachable servers -------------------------------------------------------------------


async def test_udp_server_that_never_answers_times_out_on_time(black_hole: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(LIMIT):
        began = loop.time()
        with pytest.raises(turn.TurnTimeout):
            await turn.allocate(black_hole, "alice", "pw", timeout=0.5)
        assert 0.5 <= loop.time() - began < 0.5 + QUICK


async def test_udp_port_unreachable_fails_at_once() -> None:
    """The connected UDP socket gets the ICMP port unreachable (ECONNREFUSED)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(LIMIT):
        began = loop.time()
        with pytest.raises(turn.TurnError) as caught:
            await turn.allocate((LOOPBACK, _closed_port(socket.SOCK_DGRAM)), "alice", "pw")
        assert loop.time() - began < QUICK
        assert "unreachable" in str(caught.value)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_stream_connect_failure_is_an_immediate_os_error(transport: Transport) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(LIMIT):
        began = loop.time()
        server = (LOOPBACK, _closed_port(socket.SOCK_STREAM))
        with pytest.raises(ConnectionRefusedError):
            await turn.allocate(server, "alice", "pw", transport=transport)
        assert loop.time() - began < QUICK


# -- the server goes away under a live allocation ------------------------------------------


async def _allocate(server: Coturn, target: Any, **options: Any) -> turn.Allocation:
    return await turn.allocate(target, "alice", server.users["alice"], timeout=TIMEOUT, **options)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_stopped_server_loses_the_allocation(coturn: Coturn, transport: Transport) -> None:
    """Over UDP the next request meets ICMP port unreachable; over TCP the connection
    closes. Either way the allocation is lost at once, and says so."""
    async with asyncio.timeout(LIMIT):
        events: Recorder[turn.Event] = Recorder()
        peer = await Peer.open()
        try:
            allocation = await _allocate(
                coturn, coturn.address, transport=transport, on_event=events
            )
            await round_trip(allocation, peer, b"before the stop")
            reader = asyncio.create_task(allocation.recvfrom())
            coturn.stop()
            if transport == "udp":
                with pytest.raises(turn.AllocationLostError):
                    await allocation.create_permission("127.0.0.3")
            lost = await events.wait_for(turn.AllocationLost, timeout=QUICK)
            assert isinstance(lost.error, turn.AllocationLostError)
            assert allocation.closed
            with pytest.raises(turn.AllocationLostError):
                await reader  # woken by the loss
            with pytest.raises(turn.AllocationLostError):
                allocation.sendto(b"after the stop", (LOOPBACK, 9))  # a new peer
            with pytest.raises(turn.AllocationLostError):
                await allocation.create_permission("127.0.0.4")
            with pytest.raises(turn.AllocationLostError):
                await allocation.recvfrom()
            await allocation.close()
        finally:
            peer.close()


@pytest.mark.parametrize("end", ["lost", "closed"])
async def test_no_sending_on_a_bound_channel_once_the_allocation_is_gone(
    coturn: Coturn, end: str
) -> None:
    async with asyncio.timeout(LIMIT):
        events: Recorder[turn.Event] = Recorder()
        peer = await Peer.open()
        try:
            allocation = await _allocate(coturn, coturn.address, on_event=events)
            await round_trip(allocation, peer, b"binds a channel")
            await events.wait_for(turn.ChannelBound)
            if end == "lost":
                coturn.stop()
                with pytest.raises(turn.AllocationLostError):
                    await allocation.create_permission("127.0.0.3")
            else:
                await allocation.close()
            assert allocation.closed
            sent = allocation.stats.sent_channel_data
            expected = turn.AllocationLostError if end == "lost" else turn.TurnError
            with pytest.raises(expected):
                allocation.sendto(b"after the end", peer.address)
            assert allocation.stats.sent_channel_data == sent
            await allocation.close()
        finally:
            peer.close()


async def test_silent_server_loses_the_allocation_at_the_next_refresh(
    coturn_factory: CoturnFactory,
) -> None:
    """No answer and no ICMP (the proxy swallows everything): the Refresh times out
    before the allocation would expire, and the allocation is lost."""
    server = coturn_factory(users={"alice": "pw"}, max_allocate_lifetime=1)
    async with asyncio.timeout(LIMIT), UdpProxy(server.address) as proxy:
        events: Recorder[turn.Event] = Recorder()
        allocation = await _allocate(server, proxy.address, lifetime=600, on_event=events)
        assert allocation.lifetime == 1
        proxy.blackhole = True
        lost = await events.wait_for(turn.AllocationLost, timeout=1.5)
        assert isinstance(lost.error, turn.AllocationLostError)
        assert proxy.seen.matching(lambda seen: seen.is_request(Method.REFRESH))
        assert not events.matching(lambda event: isinstance(event, turn.Refreshed))
        with pytest.raises(turn.AllocationLostError):
            allocation.sendto(b"into the void", (LOOPBACK, 9))
        await allocation.close()


async def test_restarted_server_answers_437_and_the_allocation_is_lost(
    coturn_factory: CoturnFactory,
) -> None:
    """A new coturn (same realm and accounts) behind the same address knows nothing of
    the allocation: the next Refresh gets 437 (after a 438 for the nonce it never
    issued), and the allocation is lost.

    (coturn 4.6.1 answers CreatePermission and ChannelBind without an allocation with
    400 Bad Request, not 437: only the Refresh tells the client the allocation is gone.)
    """
    first = coturn_factory(users={"alice": "pw"}, max_allocate_lifetime=1)
    restarted = coturn_factory(users={"alice": "pw"}, realm=first.realm)
    async with asyncio.timeout(LIMIT), UdpProxy(first.address) as proxy:
        events: Recorder[turn.Event] = Recorder()
        peer = await Peer.open()
        try:
            allocation = await _allocate(first, proxy.address, lifetime=600, on_event=events)
            await round_trip(allocation, peer, b"before the restart")
            first.stop()
            proxy.target = restarted.address
            lost = await events.wait_for(turn.AllocationLost, timeout=1.5)
            assert isinstance(lost.error, turn.AllocationLostError)
            assert lost.error.code == 437
            assert proxy.seen.matching(lambda seen: seen.is_answer(Method.REFRESH, 437))
            with pytest.raises(turn.AllocationLostError):
                allocation.sendto(b"after the restart", (LOOPBACK, 9))
            with pytest.raises(turn.AllocationLostError):
                await allocation.recvfrom()
            await allocation.close()
        finally:
            peer.close()
