"""Every pair of places an agent can live - a public host, or behind a NAT with any of
the nine RFC 4787 combinations of mapping and filtering - with and without relays, both
nominations: the agent connects exactly when NAT theory (``agent_support.path_expected``)
says a direct path exists or a relay is there, picks the candidate types the theory
predicts, never a relay when a direct path exists, and otherwise fails exactly at its
ICE timeout with every pair listed.

Candidates: a host candidate, a server-reflexive one gathered by a real Binding request to
the STUN responder through the NAT (behind a NAT only: on a public host it would be the
host candidate again) and, where the case id says so, a relayed one on the relay stand-in
of ``agent_support``.
A is controlling, B controlled; each NAT has its own private subnet and public IP.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ice import (
    CandidatePair,
    CandidateType,
    ConnectionFailed,
    ConnectionState,
    ConnectionStateChanged,
    PairState,
    SelectedPairChanged,
)
from tests.ice.agent_support import (
    AD,
    APD,
    EI,
    EPSILON,
    KINDS,
    PUBLIC,
    Kind,
    Peer,
    World,
    kind_pairs,
    local_type,
    make_agent,
    path_expected,
)

ICE_TIMEOUT = 7.25
RELAYS = {
    "no-relay": (False, False),
    "relay-A": (True, False),
    "relay-B": (False, True),
    "relays": (True, True),
}


def cases(relays: tuple[str, ...]) -> Iterator[object]:
    for relay in relays:
        relay_a, relay_b = RELAYS[relay]
        for a, b in kind_pairs():
            yield pytest.param(a, b, relay_a, relay_b, id=f"{a}-{b}-{relay}")


def five_tuple(pair: CandidatePair) -> tuple[tuple[str, int], tuple[str, int]]:
    """The path as this side sees it: (our address as the peer sees it, the peer's)."""
    return pair.local.address, pair.remote.address


def types(pair: CandidatePair) -> tuple[CandidateType, CandidateType]:
    return pair.local.type, pair.remote.type


def assert_failed_at_timeout(peer: Peer) -> None:
    agent = peer.agent
    assert peer.started_at is not None
    assert agent.state is ConnectionState.FAILED
    failed_at = peer.when(ConnectionState.FAILED)
    assert failed_at is not None
    assert abs(failed_at - (peer.started_at + ICE_TIMEOUT)) < EPSILON, failed_at
    error = agent.error
    assert isinstance(error, ConnectionFailed)
    assert error.reason == f"ICE failed: no valid pair for component 1 within {ICE_TIMEOUT:g} s"
    assert str(error).startswith(error.reason)
    pairs = agent.pairs()
    assert [(r.local, r.remote) for r in error.pairs] == [
        (str(p.local), str(p.remote)) for p in pairs
    ]
    assert len(str(error).splitlines()) == 1 + len(pairs)
    assert not agent.selected and not agent.valid_pairs
    assert all(p.state is not PairState.SUCCEEDED for p in pairs)
    ((_, changed),) = [(t, e) for t, e in peer.of(ConnectionStateChanged) if e.state == "failed"]
    assert changed.error is error


def assert_same_path(a: Peer, b: Peer) -> None:
    """Both agents selected the same path: A's address as B sees it and B's as A sees it."""
    assert a.selected is not None and b.selected is not None
    local, remote = five_tuple(a.selected)
    assert five_tuple(b.selected) == (remote, local)


def assert_theory_types(a_kind: Kind, b_kind: Kind, a: Peer, b: Peer) -> None:
    assert a.selected is not None and b.selected is not None
    if path_expected(a_kind, b_kind):
        # a direct path exists: the relay's lowest priority keeps it out
        assert types(a.selected) == (local_type(a_kind), local_type(b_kind))
        assert types(b.selected) == (local_type(b_kind), local_type(a_kind))
        return
    # relayed on exactly one end (half-relayed pairs outrank relay-to-relay ones); the
    # other end is that side's NAT as the relay saw it
    for peer, mine, theirs in ((a, a_kind, b_kind), (b, b_kind, a_kind)):
        assert peer.selected is not None
        local, remote = types(peer.selected)
        assert [local, remote].count(CandidateType.RELAY) == 1
        assert local in (CandidateType.RELAY, local_type(mine))
        assert remote in (CandidateType.RELAY, local_type(theirs))


FULL_CONE, RESTRICTED, PORT_RESTRICTED = Kind(EI, EI), Kind(EI, AD), Kind(EI, APD)
SYMMETRIC = Kind(APD, APD)


def test_the_theory_agrees_with_the_classic_table() -> None:
    """The RFC 3489 names: a full cone or a public host reaches anyone; a symmetric NAT
    reaches a restricted cone but not a port-restricted one nor another symmetric NAT;
    cones reach each other. 61 of the 100 combinations have a direct path."""
    for kind in KINDS:
        assert path_expected(FULL_CONE, kind) and path_expected(kind, PUBLIC)
    assert path_expected(SYMMETRIC, RESTRICTED) and path_expected(RESTRICTED, SYMMETRIC)
    assert not path_expected(SYMMETRIC, PORT_RESTRICTED)
    assert not path_expected(PORT_RESTRICTED, SYMMETRIC)
    assert not path_expected(SYMMETRIC, SYMMETRIC)
    assert path_expected(PORT_RESTRICTED, PORT_RESTRICTED)
    assert sum(path_expected(a, b) for a, b in kind_pairs()) == 61
    assert all(path_expected(a, b) == path_expected(b, a) for a, b in kind_pairs())


@pytest.mark.parametrize(("a_kind", "b_kind", "relay_a", "relay_b"), cases(tuple(RELAYS)))
def test_regular_nomination(a_kind: Kind, b_kind: Kind, relay_a: bool, relay_b: bool) -> None:
    world = World(seed=1)
    a, b = world.pair(a_kind, b_kind, relay_a=relay_a, relay_b=relay_b, ice_timeout=ICE_TIMEOUT)
    world.connect(a, b)
    if not (path_expected(a_kind, b_kind) or relay_a or relay_b):
        assert_failed_at_timeout(a)
        assert_failed_at_timeout(b)
        return
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    assert a.started_at is not None
    connected = a.when(ConnectionState.CONNECTED)
    assert connected is not None and connected - a.started_at < 2.0
    assert_same_path(a, b)
    assert_theory_types(a_kind, b_kind, a, b)
    assert a.selected is not None and a.selected.nominated
    # nothing changes afterwards: one selected pair per side, for good
    world.net.run(until=world.net.now + 3.0)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    assert len(a.of(SelectedPairChanged)) == len(b.of(SelectedPairChanged)) == 1


@pytest.mark.parametrize(("a_kind", "b_kind", "relay_a", "relay_b"), cases(("no-relay", "relays")))
def test_aggressive_nomination(a_kind: Kind, b_kind: Kind, relay_a: bool, relay_b: bool) -> None:
    """USE-CANDIDATE on every check: the first pair to work is selected (a better one may
    replace it); the controlled side accepts every nomination."""
    world = World(seed=1)
    a, b = world.pair(
        a_kind,
        b_kind,
        relay_a=relay_a,
        relay_b=relay_b,
        ice_timeout=ICE_TIMEOUT,
        a_options={"nomination": "aggressive"},
    )
    world.connect(a, b)
    if not (path_expected(a_kind, b_kind) or relay_a or relay_b):
        assert_failed_at_timeout(a)
        assert_failed_at_timeout(b)
        return
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    world.net.run(until=world.net.now + 3.0)
    selections = [e.pair for _, e in a.of(SelectedPairChanged)]
    first = selections[0]
    if path_expected(a_kind, b_kind):
        assert types(first) == (local_type(a_kind), local_type(b_kind))
        assert all(CandidateType.RELAY not in types(p) for p in selections)
    # the controlled side follows every better nomination to the same final path
    assert_same_path(a, b)


def test_two_lans_with_the_same_private_addresses() -> None:
    """Both NATs number their LAN 10.0.0.0/24, so each agent's host candidate is also the
    other's address: a check to the peer's host candidate comes back to the sender
    itself, which refuses it (401, not its own ufrag) - the pair fails at once - and the
    server-reflexive pair connects."""
    world = World()
    peers = []
    for controlling, name in ((True, "A"), (False, "B")):
        peer = Peer(make_agent(controlling), name)
        host = peer.add_host(world.net, world.net.nat_site(subnet="10.0.0"))
        peer.gather_srflx(world.net, host.address)
        peers.append(peer)
    a, b = peers
    assert a.hosts == b.hosts == [("10.0.0.2", 5000)]
    a.signal_to(b)
    b.signal_to(a)
    world.connect(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    assert_same_path(a, b)
    assert a.selected is not None and types(a.selected) == (
        CandidateType.SRFLX,
        CandidateType.SRFLX,
    )
    own = [p for p in a.agent.pairs() if p.remote.address == ("10.0.0.2", 5000)]
    assert [(p.state, p.failure) for p in own] == [(PairState.FAILED, "401 Unauthorized")]
    assert a.agent.stats.dropped_unauthenticated >= 1
