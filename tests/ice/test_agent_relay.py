"""Relayed candidates through the TURN stand-in of ``agent_support``: relay-only agents
connect from behind any NAT, the relay's permissions (by peer IP, RFC 8656 section 9)
keep strangers out until the agent has sent to them, and timings add up over the extra
legs."""

from __future__ import annotations

import pytest

from ice import CandidateType, ConnectionState
from tests.ice.agent_support import (
    AD,
    APD,
    EI,
    PUBLIC,
    TURN_SERVER,
    Kind,
    Peer,
    World,
    make_agent,
)
from tests.ice.simnet import Probe


def relay_only(world: World, kind: Kind, controlling: bool, name: str) -> Peer:
    """A peer whose only candidate is relayed: its host address is never offered."""
    peer = Peer(make_agent(controlling), name)
    host = world.net.add_host(peer, world.site(kind))
    peer.hosts.append(host)
    peer.allocate(world.net, host)
    return peer


KINDS = [PUBLIC, Kind(EI, EI), Kind(AD, APD), Kind(APD, APD)]


@pytest.mark.parametrize("b_kind", KINDS, ids=str)
@pytest.mark.parametrize("a_kind", KINDS, ids=str)
def test_relay_only_agents_connect_from_anywhere(a_kind: Kind, b_kind: Kind) -> None:
    world = World()
    a = relay_only(world, a_kind, True, "A")
    b = relay_only(world, b_kind, False, "B")
    a.signal_to(b)
    b.signal_to(a)
    t0 = world.net.now
    world.connect(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    for peer in (a, b):
        assert peer.selected is not None
        assert (peer.selected.local.type, peer.selected.remote.type) == (
            CandidateType.RELAY,
            CandidateType.RELAY,
        )
    assert world.turn.relayed_in > 0 and world.turn.relayed_out > 0
    if a_kind.public and b_kind.public:
        # one way = 15 ms (client to relay, relayed address to relayed address, relay to
        # client): valid at 30 ms, nominated at Ta = 50 ms, B knows at 65, A at 80
        assert a.when(ConnectionState.CONNECTED) == pytest.approx(t0 + 0.08, abs=1e-9)
        assert b.when(ConnectionState.CONNECTED) == pytest.approx(t0 + 0.065, abs=1e-9)


def test_a_stranger_cannot_reach_the_agent_through_its_relay() -> None:
    world = World()
    a = relay_only(world, Kind(APD, APD), True, "A")
    (relayed,) = a.relays
    stranger = Probe()
    address = world.net.add_host(stranger)
    stranger.send(b"\x00\x01\x00\x00hello, anybody there?", address, relayed)
    world.net.run()
    assert world.turn.dropped_no_permission == 1 and a.received == []


def test_without_permissions_the_relay_lets_everyone_in() -> None:
    world = World(permissions=False)
    a = relay_only(world, Kind(APD, APD), True, "A")
    (relayed,) = a.relays
    stranger = Probe()
    address = world.net.add_host(stranger)
    stranger.send(b"\x00\x01\x00\x00hello, anybody there?", address, relayed)
    world.net.run()
    assert world.turn.dropped_no_permission == 0
    assert [r.remote for r in a.received] == [address]
    assert a.agent.stats.dropped_malformed == 1


def test_checks_to_a_relayed_address_wait_for_the_permission() -> None:
    """B (public, host only) starts 300 ms before A (relay only): its checks to A's
    relayed address are dropped by the relay until A's first check to B opens the
    permission; then everything works."""
    world = World()
    a = relay_only(world, Kind(EI, APD), True, "A")
    b = world.peer(PUBLIC, False, name="B")
    a.signal_to(b)
    b.signal_to(a)
    b.start(world.net.now)
    world.net.run(until=world.net.now + 0.3)
    assert world.turn.dropped_no_permission >= 1 and a.received == []
    a.start(world.net.now)
    world.run(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    assert a.selected is not None and a.selected.local.type is CandidateType.RELAY
    assert a.selected.local.related_address is not None
    assert a.relays[a.selected.local.address] == (a.hosts[0], TURN_SERVER)
