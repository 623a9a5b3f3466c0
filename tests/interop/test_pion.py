"""``ice.Connection`` against pion/ice 2.3 (Debian's golang-github-pion-ice.v2-dev), an
independent ICE implementation in Go, on loopback: each side in each role, data both ways.

pion paces its checks by a 200 ms check interval, gathers 127.0.0.1 host candidates
only (``pion/main.go``) and signals no ice-pacing (we keep our 50 ms Ta).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from ice import Candidate, CandidatePair, CandidateType, Connection
from tests.ice.connection_support import bounded, connections, selected_row
from tests.interop.pion_peer import PionPeer

pytestmark = pytest.mark.usefixtures("loop_errors")

Start = Callable[[bool], Awaitable[PionPeer]]


async def connect_with_pion(ours: Connection, peer: PionPeer) -> CandidatePair:
    """Exchange credentials and candidates, connect both; our selected pair and how long
    our ``connect()`` took. pion's selected pair must be the mirror of ours."""
    candidates = await bounded(ours.gather_all())
    lines = await bounded(peer.gathered())
    ours.set_remote_credentials(peer.ufrag, peer.pwd)
    for line in lines:
        ours.add_remote_candidate(Candidate.from_sdp(line))
    ours.add_remote_candidate(None)
    for candidate in candidates:
        peer.give_candidate(candidate.to_sdp())
    peer.give_credentials(ours.local_ufrag, ours.local_pwd)
    pair: CandidatePair
    pair, theirs = await bounded(asyncio.gather(ours.connect(), peer.expect("connected")))
    assert Candidate.from_sdp(theirs["local"]).address == pair.remote.address
    assert Candidate.from_sdp(theirs["remote"]).address == pair.local.address
    role = "controlled" if ours.agent.controlling else "controlling"
    print(f"pion {role}: {pair.local.type}-{pair.remote.type} {pair}")
    return pair


async def exchange_with_pion(ours: Connection, peer: PionPeer, count: int = 4) -> None:
    """``count`` datagrams each way, received in order on both sides."""
    to_pion = [b"icestack %d" % i for i in range(count)]
    for data in to_pion:
        await ours.send(data)
    assert [await bounded(peer.receive()) for _ in to_pion] == to_pion
    to_us = [b"pion %d" % i for i in range(count)]
    for data in to_us:
        peer.send(data)
    assert [await bounded(ours.recv()) for _ in to_us] == to_us
    row = selected_row(ours)
    assert row["bytes_sent"] == sum(map(len, to_pion))
    assert row["bytes_received"] == sum(map(len, to_us))


async def test_icestack_controlling_pion_controlled(pion_factory: Start) -> None:
    """We control and nominate (regular nomination); pion accepts."""
    peer = await pion_factory(False)
    async with connections() as make:
        ours = make(True)
        pair = await connect_with_pion(ours, peer)

        assert ours.agent.controlling and pair.nominated
        assert (pair.local.type, pair.remote.type) == (CandidateType.HOST, CandidateType.HOST)
        assert selected_row(ours)["responses_received"] > 0
        await bounded(peer.reach("Connected"))
        await exchange_with_pion(ours, peer)
        assert "Disconnected" not in peer.states and "Failed" not in peer.states


async def test_pion_controlling_icestack_controlled(pion_factory: Start) -> None:
    """pion controls and nominates on its 200 ms check interval; we accept."""
    peer = await pion_factory(True)
    async with connections() as make:
        ours = make(False)
        pair = await connect_with_pion(ours, peer)

        assert not ours.agent.controlling and pair.nominated
        assert (pair.local.type, pair.remote.type) == (CandidateType.HOST, CandidateType.HOST)
        assert selected_row(ours)["requests_received"] > 0
        await bounded(peer.reach("Connected"))
        await exchange_with_pion(ours, peer)
        assert "Disconnected" not in peer.states and "Failed" not in peer.states
