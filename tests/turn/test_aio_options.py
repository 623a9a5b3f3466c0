"""``turn.allocate`` options and refusals against a real coturn: what coturn 4.6.1 grants
(EVEN-PORT with a reservation, DONT-FRAGMENT, a dual-stack request it ignores, an IPv6
relay it cannot give) and how the client handles 437 and 486.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

import stun
import turn
from stun import Attr, Class, Message, Method
from tests.coturn import Coturn, CoturnFactory
from tests.turn.aio_support import LOOPBACK, TIMEOUT, Peer, UdpProxy, round_trip

pytestmark = pytest.mark.usefixtures("loop_errors")

LIMIT = 5.0
"""Seconds any one test here may take before it fails instead of hanging."""


async def allocate(server: Coturn, user: str = "alice", **options: Any) -> turn.Allocation:
    target = options.pop("target", server.address)
    return await turn.allocate(target, user, server.users[user], timeout=TIMEOUT, **options)


# -- what coturn grants --------------------------------------------------------------------


async def test_even_port_reserves_the_next_port(coturn: Coturn) -> None:
    async with asyncio.timeout(LIMIT):
        async with await allocate(coturn, even_port=True) as first:
            relayed = first.relayed_address
            assert relayed[1] % 2 == 0
            token = first.details.reservation_token
            assert token is not None and len(token) == 8
            async with await allocate(coturn, "bob", reservation_token=token) as second:
                assert second.relayed_address == (relayed[0], relayed[1] + 1)
                peer = await Peer.open()
                try:
                    await round_trip(second, peer, b"on the reserved port")
                finally:
                    peer.close()


async def test_even_port_without_reservation(coturn: Coturn) -> None:
    async with asyncio.timeout(LIMIT), await allocate(coturn, even_port=False) as allocation:
        assert allocation.relayed_address[1] % 2 == 0
        assert allocation.details.reservation_token is None


async def test_dont_fragment_is_accepted(coturn: Coturn) -> None:
    async with asyncio.timeout(LIMIT), await allocate(coturn, dont_fragment=True) as allocation:
        assert allocation.details.dont_fragment


async def test_dual_stack_without_an_ipv6_relay(coturn: Coturn) -> None:
    """coturn ignores ADDITIONAL-ADDRESS-FAMILY (no ADDRESS-ERROR-CODE): IPv4 only."""
    async with asyncio.timeout(LIMIT), await allocate(coturn, dual_stack=True) as allocation:
        assert allocation.relayed_address[0] == LOOPBACK
        assert allocation.additional_relayed_address is None
        assert allocation.details.additional_error is not None


async def test_ipv6_relay_refused_with_440(coturn: Coturn) -> None:
    async with asyncio.timeout(LIMIT):
        with pytest.raises(turn.AllocationError) as caught:
            await allocate(coturn, family="ipv6")
        assert caught.value.code == 440


# -- 437 and 486 ---------------------------------------------------------------------------


def _abandoned_allocation(server: Coturn, user: str) -> tuple[str, int]:
    """Allocate from a fresh local port with bare STUN, then close the socket without
    releasing: a client that crashed. Returns the local address left behind."""
    key = stun.long_term_key(user, server.realm, server.users[user])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((LOOPBACK, 0))
        sock.connect(server.address)
        request = Message(
            Method.ALLOCATE, Class.REQUEST, attributes=[(Attr.REQUESTED_TRANSPORT, 17)]
        )
        sock.send(request.encode())
        challenge = stun.decode(sock.recv(2048))
        assert challenge.get(Attr.ERROR_CODE)[0] == 401
        request = Message(
            Method.ALLOCATE,
            Class.REQUEST,
            attributes=[
                (Attr.REQUESTED_TRANSPORT, 17),
                (Attr.USERNAME, user),
                (Attr.REALM, server.realm),
                (Attr.NONCE, challenge.get(Attr.NONCE)),
            ],
        )
        sock.send(request.encode(key))
        answer = stun.decode(sock.recv(2048))
        assert answer.cls is Class.SUCCESS, answer
        local: tuple[str, int] = sock.getsockname()
    return local


async def test_437_is_retried_from_another_local_port(coturn: Coturn) -> None:
    """The local port of a crashed client still has an allocation: 437 for it, and the
    allocation is made from a new port instead."""
    async with asyncio.timeout(LIMIT):
        left_behind = _abandoned_allocation(coturn, "alice")
        async with await allocate(coturn, local_address=left_behind) as allocation:
            assert allocation.local_address[0] == LOOPBACK
            assert allocation.local_address[1] != left_behind[1]


@pytest.fixture
def fresh_backoff(monkeypatch: pytest.MonkeyPatch) -> turn.ServerBackoff:
    """A process-wide backoff record of this test's own, so that its holds end with it."""
    backoff = turn.ServerBackoff()
    monkeypatch.setattr(turn.aio, "BACKOFF", backoff)
    return backoff


@pytest.mark.usefixtures("fresh_backoff")
async def test_437_on_every_port_gives_up_and_holds_back(coturn: Coturn) -> None:
    """Behind a proxy every local port is the same 5-tuple to coturn: three Allocates get
    437, then the client stops asking that server for a while."""
    async with (
        asyncio.timeout(LIMIT),
        UdpProxy(coturn.address) as proxy,
        await allocate(coturn, target=proxy.address) as allocation,
    ):
        assert not allocation.closed
        before = len(proxy.seen.items)
        with pytest.raises(turn.AllocationError) as caught:
            await allocate(coturn, "bob", target=proxy.address)
        assert caught.value.code == 437
        answers = [seen.error_code for seen in proxy.seen.items[before:] if not seen.upstream]
        assert answers == [437, 437, 437]

        before = len(proxy.seen.items)
        with pytest.raises(turn.AllocationError) as caught:
            await allocate(coturn, "bob", target=proxy.address)
        assert "437" in str(caught.value)
        assert len(proxy.seen.items) == before  # not even asked


@pytest.mark.usefixtures("fresh_backoff")
async def test_486_quota_is_not_retried_and_holds_back(coturn_factory: CoturnFactory) -> None:
    server = coturn_factory(users={"alice": "pw"}, user_quota=1)
    async with (
        asyncio.timeout(LIMIT),
        UdpProxy(server.address) as proxy,
        await allocate(server),
    ):
        with pytest.raises(turn.AllocationError) as caught:
            await allocate(server, target=proxy.address)
        assert caught.value.code == 486
        allocates = proxy.seen.matching(lambda seen: seen.is_request(Method.ALLOCATE))
        assert len(allocates) == 2  # the challenge, and the one refused
        with pytest.raises(turn.AllocationError) as caught:
            await allocate(server, target=proxy.address)
        assert "486" in str(caught.value)
        assert len(proxy.seen.matching(lambda s: s.is_request(Method.ALLOCATE))) == 2
