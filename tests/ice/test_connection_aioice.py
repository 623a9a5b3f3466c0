"""``ice.Connection`` against aioice 0.13, an independent ICE implementation, on
loopback: each in each role, and our regular nomination against aioice's controlled
side. aioice signals no ice-pacing (Ta 20 ms on its side, we keep our 50 ms) and a
controlled aioice never fails once a pair succeeded, so every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aioice
import pytest

import ice
from ice import CandidateType, Connection
from tests.ice.aioice_peer import (
    LOOPBACK,
    aioice_accept,
    aioice_offer,
    gather_loopback,
    make_aioice,
)
from tests.ice.connection_support import LIMIT, bounded, connections, selected_row

pytestmark = pytest.mark.usefixtures("loop_errors")


@pytest.fixture
async def aioice_peer_factory() -> AsyncIterator[list[aioice.Connection]]:
    """aioice connections the test appends; each is closed at teardown."""
    peers: list[aioice.Connection] = []
    yield peers
    async with asyncio.timeout(LIMIT):
        for peer in peers:
            await peer.close()


async def connect_with_aioice(ours: Connection, peer: aioice.Connection) -> ice.CandidatePair:
    """Exchange credentials and candidates (aioice's as SDP lines) and connect both;
    our selected pair."""
    await bounded(gather_loopback(peer))
    ufrag, pwd, lines = aioice_offer(peer)
    candidates = await bounded(ours.gather_all())
    ours.set_remote_credentials(ufrag, pwd)  # aioice proposes no Ta
    for line in lines:
        ours.add_remote_candidate(ice.Candidate.from_sdp(line))
    ours.add_remote_candidate(None)
    await aioice_accept(peer, ours.local_ufrag, ours.local_pwd, [c.to_sdp() for c in candidates])
    pair, _ = await bounded(asyncio.gather(ours.connect(), peer.connect()))
    assert isinstance(pair, ice.CandidatePair)
    return pair


async def exchange_with_aioice(ours: Connection, peer: aioice.Connection, count: int = 4) -> None:
    """``count`` datagrams each way, received in order on both sides."""
    to_peer = [b"icestack %d" % i for i in range(count)]
    for data in to_peer:
        await ours.send(data)
    assert [await bounded(peer.recv()) for _ in to_peer] == to_peer
    to_us = [b"aioice %d" % i for i in range(count)]
    for data in to_us:
        await peer.send(data)
    assert [await bounded(ours.recv()) for _ in to_us] == to_us
    row = selected_row(ours)
    assert row["bytes_sent"] == sum(map(len, to_peer))
    assert row["bytes_received"] == sum(map(len, to_us))


@pytest.mark.parametrize("nomination", ["aggressive", "regular"])
async def test_icestack_controlling_aioice_controlled(
    aioice_peer_factory: list[aioice.Connection], nomination: str
) -> None:
    """We control (aggressive, or regular nomination whose USE-CANDIDATE check aioice
    accepts as the controlled side); the pair is host to aioice's host."""
    peer = make_aioice(controlling=False)
    aioice_peer_factory.append(peer)
    async with connections() as make:
        ours = make(True, nomination=nomination)
        pair = await connect_with_aioice(ours, peer)

        remote = peer.local_candidates[0]
        assert pair.remote.address == (remote.host, remote.port) and remote.host == LOOPBACK
        assert pair.local.type is CandidateType.HOST and pair.nominated
        assert ours.agent.controlling
        assert selected_row(ours)["responses_received"] > 0
        await exchange_with_aioice(ours, peer)


async def test_aioice_controlling_icestack_controlled(
    aioice_peer_factory: list[aioice.Connection],
) -> None:
    """aioice controls and nominates (aggressively); we accept its nomination."""
    peer = make_aioice(controlling=True)
    aioice_peer_factory.append(peer)
    async with connections() as make:
        ours = make(False)
        pair = await connect_with_aioice(ours, peer)

        remote = peer.local_candidates[0]
        assert pair.remote.address == (remote.host, remote.port)
        assert pair.nominated and not ours.agent.controlling
        assert selected_row(ours)["requests_received"] > 0
        await exchange_with_aioice(ours, peer)


async def _until(
    predicate: Callable[[], bool], limit: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wait until ``predicate`` holds, checking it each time a Connection has handled a
    datagram or a timer (white-box: after its ``_service``); fail after ``limit`` s."""
    serviced = asyncio.Event()
    service = Connection._service

    def service_and_tell(self: Connection) -> None:
        service(self)
        serviced.set()

    monkeypatch.setattr(Connection, "_service", service_and_tell)
    async with asyncio.timeout(limit):
        while not predicate():
            serviced.clear()
            await serviced.wait()


async def test_consent_both_ways_with_aioice(
    aioice_peer_factory: list[aioice.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    """aioice sends consent checks (every 50 ms here: its interval is patched down, and it
    closes after 6 unanswered ones) and we answer them; ours go out after 4-6 s (RFC 7675
    timing, not shortened) and aioice answers them: an answer counts only once its
    integrity is checked. Data still
    flows both ways after some 100 consent checks of aioice's."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.05)
    peer = make_aioice(controlling=True)
    aioice_peer_factory.append(peer)
    async with connections() as make:
        ours = make(False)
        pair = await connect_with_aioice(ours, peer)
        limit = ice.agent.CONSENT_INTERVAL * 1.2 + 2.0
        await _until(
            lambda: pair.consent_requests_sent >= 1 and pair.responses_received >= 1,
            limit,
            monkeypatch,
        )
        assert pair.consent_requests_received >= 20
        assert ours.state.usable
        await exchange_with_aioice(ours, peer)


async def test_icestack_lite_with_aioice_controlling(
    aioice_peer_factory: list[aioice.Connection],
) -> None:
    """We are ICE-lite, aioice is the full, controlling agent (it nominates aggressively;
    told nothing of our lite mode, as aioice then sends no USE-CANDIDATE at all): we send
    no check, take the pair aioice nominates, and carry data."""
    peer = make_aioice(controlling=True)
    aioice_peer_factory.append(peer)
    async with connections() as make:
        ours = make(False, lite=True)
        pair = await connect_with_aioice(ours, peer)
        assert pair.nominated and ours.agent.stats.checks_sent == 0
        await exchange_with_aioice(ours, peer)
