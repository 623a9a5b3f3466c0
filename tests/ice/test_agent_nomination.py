"""Nomination: regular and aggressive from either side, the controlled side taking both,
the regular wait for better pairs, lost nominations and the races between a nomination and
the checks still in flight. Exact virtual times: the scheduler adds no delay of its own."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from ice import ConnectionState, PairNominated, SelectedPairChanged
from stun import Attr, decode
from tests.ice.agent_support import (
    AD,
    APD,
    EI,
    PUBLIC,
    Kind,
    Peer,
    World,
    make_agent,
)
from tests.ice.simnet import Link, Packet

Nomination = Literal["regular", "aggressive"]
TOPOLOGIES = {
    "public-public": (PUBLIC, PUBLIC),
    "public-APDM-APDF": (PUBLIC, Kind(APD, APD)),
    "EIM-EIF-APDM-APDF": (Kind(EI, EI), Kind(APD, APD)),
    "EIM-ADF-APDM-ADF": (Kind(EI, AD), Kind(APD, AD)),
    "ADM-EIF-ADM-EIF": (Kind(AD, EI), Kind(AD, EI)),
}


def same_path(a: Peer, b: Peer) -> bool:
    assert a.selected is not None and b.selected is not None
    return (a.selected.local.address, a.selected.remote.address) == (
        b.selected.remote.address,
        b.selected.local.address,
    )


@pytest.mark.parametrize("topology", list(TOPOLOGIES))
@pytest.mark.parametrize("controlled_nomination", ["regular", "aggressive"])
@pytest.mark.parametrize("nomination", ["regular", "aggressive"])
@pytest.mark.parametrize("controller", ["A", "B"])
def test_either_side_controls_with_either_nomination(
    controller: str, nomination: Nomination, controlled_nomination: Nomination, topology: str
) -> None:
    """The nomination setting matters to the controlling agent only: the controlled one
    takes USE-CANDIDATE whenever it comes."""
    world = World(seed=3)
    a_kind, b_kind = TOPOLOGIES[topology]
    a_controls = controller == "A"
    a = world.peer(
        a_kind,
        a_controls,
        name="A",
        nomination=nomination if a_controls else controlled_nomination,
    )
    b = world.peer(
        b_kind,
        not a_controls,
        name="B",
        nomination=controlled_nomination if a_controls else nomination,
    )
    a.signal_to(b)
    b.signal_to(a)
    world.connect(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    assert (a.agent.controlling, b.agent.controlling) == (a_controls, not a_controls)
    world.net.run(until=world.net.now + 2.0)
    assert same_path(a, b)
    controlling, controlled = (a, b) if a_controls else (b, a)
    assert controlled.selected is not None and controlled.selected.nominated
    connected = controlling.when(ConnectionState.CONNECTED)
    assert connected is not None
    checks = [c for c in controlling.checks() if c.time <= connected]
    use_candidate = [c for c in checks if Attr.USE_CANDIDATE in c.message]
    if nomination == "aggressive":
        assert use_candidate == checks
    else:
        assert len(use_candidate) == 1
    assert not [c for c in controlled.checks() if Attr.USE_CANDIDATE in c.message]


def two_path_world(*, slow: float = 0.2, **a_options: Any) -> tuple[World, Peer, Peer]:
    """A (controlling) has two public host addresses: ``best`` (the higher priority) behind
    a link of ``slow`` seconds each way, ``fast`` on B's site (5 ms). B has one."""
    world = World()
    net = world.net
    far = net.public_site()
    net.set_link(far, net.public, Link(latency=slow))
    a = Peer(make_agent(True, **a_options), "A")
    b = Peer(make_agent(False), "B")
    a.add_host(net, far, preference=65000)
    a.add_host(net, net.public, preference=1000)
    b.add_host(net, net.public)
    a.signal_to(b)
    b.signal_to(a)
    return world, a, b


def test_regular_nomination_waits_for_the_better_pair() -> None:
    """The fast pair is valid at 60 ms, but the better one is still in progress: the
    controlling agent waits, and nominates the better one the instant it is valid (400 ms:
    its check took 200 ms each way), through the triggered queue with no delay."""
    world, a, b = two_path_world()
    world.connect(a, b)
    best = a.hosts[0]
    assert a.selected is not None and a.selected.base == best
    nominations = [c for c in a.checks() if Attr.USE_CANDIDATE in c.message]
    assert [(round(c.time, 9), c.local) for c in nominations] == [(0.4, best)]
    assert a.when(ConnectionState.CONNECTED) == pytest.approx(0.8, abs=1e-9)
    assert b.when(ConnectionState.CONNECTED) == pytest.approx(0.6, abs=1e-9)
    assert same_path(a, b)


def test_regular_nomination_gives_up_waiting_after_nomination_wait() -> None:
    """With nomination_wait=0.1 the fast pair (valid at 60 ms) is nominated at 160 ms."""
    world, a, b = two_path_world(nomination_wait=0.1)
    world.connect(a, b)
    fast = a.hosts[1]
    assert a.selected is not None and a.selected.base == fast
    nominations = [c for c in a.checks() if Attr.USE_CANDIDATE in c.message]
    assert [(round(c.time, 9), c.local) for c in nominations] == [(0.16, fast)]
    assert a.when(ConnectionState.CONNECTED) == pytest.approx(0.17, abs=1e-9)
    assert b.when(ConnectionState.CONNECTED) == pytest.approx(0.165, abs=1e-9)
    world.net.run(until=3.0)  # the better pair's answers come later and change nothing
    assert a.selected.base == fast and same_path(a, b)
    assert len(a.of(SelectedPairChanged)) == len(b.of(SelectedPairChanged)) == 1


def test_aggressive_nomination_moves_to_a_better_pair_that_succeeds_later() -> None:
    world, a, b = two_path_world(nomination="aggressive")
    world.connect(a, b)
    best, fast = a.hosts
    assert a.selected is not None and a.selected.base == fast
    assert a.when(ConnectionState.CONNECTED) == pytest.approx(0.06, abs=1e-9)
    world.net.run(until=3.0)
    changes = [(round(t, 9), e.pair.base) for t, e in a.of(SelectedPairChanged)]
    assert changes == [(0.06, fast), (0.4, best)]


def test_aggressive_nomination_the_controlled_side_follows_the_better_pair() -> None:
    world, a, b = two_path_world(nomination="aggressive")
    world.connect(a, b)
    world.net.run(until=3.0)
    best = a.hosts[0]
    assert a.selected is not None and a.selected.base == best
    assert same_path(a, b)


def test_a_lost_nomination_is_retransmitted_after_its_rto() -> None:
    """Regular nomination, the USE-CANDIDATE request lost once: it is sent again 500 ms
    later (RTO floor, RFC 8445 14.3), and only then do the agents connect."""
    world = World()
    a, b = world.pair(PUBLIC, PUBLIC)
    dropped: list[float] = []

    def drop_first_nomination(packet: Packet) -> bool:
        if dropped or packet.data[:2] != b"\x00\x01":
            return False
        if Attr.USE_CANDIDATE not in decode(packet.data):
            return False
        dropped.append(world.net.now)
        return True

    world.net.drop_if = drop_first_nomination
    t0 = world.net.now
    world.connect(a, b)
    assert [round(t - t0, 9) for t in dropped] == [0.05]
    assert b.when(ConnectionState.CONNECTED) == pytest.approx(t0 + 0.555, abs=1e-9)
    assert a.when(ConnectionState.CONNECTED) == pytest.approx(t0 + 0.56, abs=1e-9)
    assert a.agent.stats.retransmissions == 1


def test_use_candidate_before_the_controlled_check_succeeds() -> None:
    """Aggressive, both start at once over 10 ms links: the controlled agent gets
    USE-CANDIDATE at 10 ms while its own check of the pair is in flight, and nominates the
    pair when that check's answer arrives (20 ms), even though the incoming check had
    cancelled its retransmissions."""
    world = World(internet=Link(latency=0.01))
    a, b = world.pair(PUBLIC, PUBLIC, a_options={"nomination": "aggressive"})
    world.connect(a, b)
    assert [round(t, 9) for t, _ in b.of(PairNominated)] == [0.02]
    assert b.when(ConnectionState.CONNECTED) == pytest.approx(0.02, abs=1e-9)
    assert a.when(ConnectionState.CONNECTED) == pytest.approx(0.02, abs=1e-9)
    assert same_path(a, b)


@pytest.mark.parametrize("latency", [0.001, 0.01, 0.02, 0.04, 0.1, 0.3])
@pytest.mark.parametrize("nomination", ["aggressive", "regular"])
def test_connect_time_is_exact(nomination: Nomination, latency: float) -> None:
    """Two public hosts, one candidate each, links of ``latency`` each way, no jitter, both
    started at t0 = 1.0, Ta = 50 ms.

    Aggressive: each side's first check crosses the other's; the answers come back at
    2L and both agents connect then (the controlled one nominates on its check's success).

    Regular: A's pair is valid at 2L; B's check, arriving at L, made the pair a
    triggered check of A's at max(L, Ta); A's nomination then leaves at the first instant
    pacing allows - Ta if the answer beat the triggered check (2L <= Ta, the queued entry
    is reused), else max(2L, max(L, Ta) + Ta) - and B connects L later, A 2L later.
    """
    ta = 0.05
    world = World(internet=Link(latency=latency))
    a, b = world.pair(PUBLIC, PUBLIC, a_options={"nomination": nomination})
    world.net.run(until=1.0)
    world.connect(a, b)
    L = latency
    if nomination == "aggressive":
        a_at = b_at = 2 * L
    else:
        nominate = ta if ta >= 2 * L else max(2 * L, max(L, ta) + ta)
        a_at, b_at = nominate + 2 * L, nominate + L
    assert a.when(ConnectionState.CONNECTED) == pytest.approx(1.0 + a_at, abs=1e-9)
    assert b.when(ConnectionState.CONNECTED) == pytest.approx(1.0 + b_at, abs=1e-9)


def test_a_nomination_that_fails_leaves_the_agent_idle_until_the_peer_checks_again() -> None:
    """The only valid pair fails while being nominated (an ICMP error, reported through
    handle_unreachable): A has nothing to nominate and must not spin on its nomination
    wait. B, nominated meanwhile, sends its first consent check 4-6 s later; that check
    triggers a check of the failed pair (RFC 8445 7.3.1.4), which succeeds and is
    nominated again."""
    world = World()
    a, b = world.pair(PUBLIC, PUBLIC, ice_timeout=10.0)
    world.start(a, b)
    world.net.run(until=0.051)  # A's pair is valid (10 ms) and its nomination left at 50 ms
    (nomination,) = [c for c in a.checks() if Attr.USE_CANDIDATE in c.message]
    a.agent.handle_unreachable(world.net.now, nomination.local, nomination.remote, "ICMP")
    world.run(a, limit=10.0, max_events=20_000)
    assert b.when(ConnectionState.CONNECTED) is not None
    assert a.state is ConnectionState.CONNECTED
    connected_at = a.when(ConnectionState.CONNECTED)
    assert connected_at is not None and 4.0 <= connected_at <= 6.1
