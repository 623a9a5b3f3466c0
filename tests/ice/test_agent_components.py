"""Two components (RTP and RTCP style): connected only once both have a selected pair;
failed at the ICE timeout naming the component that has none."""

from __future__ import annotations

from typing import Any

import pytest

from ice import ConnectionState, SelectedPairChanged
from tests.ice.agent_support import EPSILON, Peer, World, make_agent


def two_component_peers(world: World, **options: Any) -> tuple[Peer, Peer]:
    a = Peer(make_agent(True, components=2, **options), "A")
    b = Peer(make_agent(False, components=2, **options), "B")
    for peer in (a, b):
        for component in (1, 2):
            peer.add_host(world.net, world.net.public, component=component)
    a.signal_to(b)
    b.signal_to(a)
    return a, b


def test_both_components_connect() -> None:
    """Component 1 is checked at 0 and nominated at 50 ms; component 2's check, due at
    50 ms behind that nomination, is overtaken by B's check (55 ms) and leaves as a
    triggered check at 100 ms; its nomination at 150 ms completes the connection."""
    world = World()
    a, b = two_component_peers(world)
    world.connect(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    assert sorted(a.agent.selected) == sorted(b.agent.selected) == [1, 2]
    for component in (1, 2):
        mine, theirs = a.agent.selected[component], b.agent.selected[component]
        assert (mine.local.address, mine.remote.address) == (
            theirs.remote.address,
            theirs.local.address,
        )
        assert mine.base == a.hosts[component - 1]
    selected = [(round(t, 9), e.component) for t, e in a.of(SelectedPairChanged)]
    assert selected == [(0.06, 1), (0.16, 2)]
    assert a.when(ConnectionState.CONNECTED) == pytest.approx(0.16, abs=EPSILON)
    assert b.when(ConnectionState.CONNECTED) == pytest.approx(0.155, abs=EPSILON)


def blocked_component_2(world: World) -> tuple[Peer, Peer]:
    a, b = two_component_peers(world, ice_timeout=3.0)
    component_2 = {a.hosts[1], b.hosts[1]}
    world.net.drop_if = lambda packet: packet.src in component_2
    world.connect(a, b)
    return a, b


def test_a_component_without_a_path_fails_the_agent_at_the_timeout() -> None:
    world = World()
    a, b = blocked_component_2(world)
    for peer in (a, b):
        assert peer.state is ConnectionState.FAILED
        assert peer.when(ConnectionState.FAILED) == pytest.approx(3.0, abs=EPSILON)
        assert list(peer.agent.selected) == [1]
        error = peer.agent.error
        assert error is not None and "for component 2 within 3 s" in error.reason
        assert len(error.pairs) == 2


def test_the_failure_says_the_missing_component_had_no_valid_pair() -> None:
    world = World()
    a, _ = blocked_component_2(world)
    assert a.agent.error is not None
    assert a.agent.error.reason == "ICE failed: no valid pair for component 2 within 3 s"
