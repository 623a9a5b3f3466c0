"""Several data streams in one agent (:class:`ice.MultiStreamAgent`), sans-I/O, over the
simulated network: three streams of two components each (RTP and RTCP), sharing one
role, one Ta, the frozen-pair rules and one pair cap (RFC 8445 sections 6.1.2.5,
6.1.2.6, 6.1.4.2, 7.2.5.3.3)."""

from __future__ import annotations

import itertools
import random

import pytest

import ice
from ice import ConnectionState, MultiStreamAgent, PairState
from ice.agent import Transmit
from ice.checklist import pair_priority
from ice.gather import host_candidate
from stun import Class, decode
from tests.ice.simnet import Address, Network

STREAMS = 3
COMPONENTS = 2
CONNECTED = ConnectionState.CONNECTED
TA = 0.050


class Recorder:
    """A MultiStreamAgent as a simnet endpoint that notes, with the virtual time, every
    event (with its stream) and the first sending of every Binding request."""

    def __init__(self, agent: MultiStreamAgent) -> None:
        self.agent = agent
        self.now = 0.0
        self.events: list[tuple[float, int | None, ice.Event]] = []
        self.requests: dict[bytes, float] = {}

    def handle_datagram(self, now: float, data: bytes, local: Address, remote: Address) -> None:
        self.now = now
        self.agent.handle_datagram(now, data, local, remote)
        self._drain()

    def handle_timeout(self, now: float) -> None:
        self.now = now
        self.agent.handle_timeout(now)
        self._drain()

    def _drain(self) -> None:
        while (item := self.agent.poll_event()) is not None:
            self.events.append((self.now, *item))

    def poll_transmits(self) -> list[Transmit]:
        transmits = self.agent.poll_transmits()
        for transmit in transmits:
            message = decode(transmit.data)
            if message.cls is Class.REQUEST:
                self.requests.setdefault(message.transaction_id, self.now)
        return transmits

    def poll_timeout(self) -> float | None:
        return self.agent.poll_timeout()

    def first(self, stream: int, state: PairState) -> float:
        """When a pair of ``stream`` first entered ``state``."""
        return min(
            time
            for time, index, event in self.events
            if index == stream and isinstance(event, ice.PairStateChanged) and event.new is state
        )


def _port(stream: int, component: int) -> int:
    return 5000 + COMPONENTS * stream + component - 1


def _build(net: Network, seed: int, controlling: bool, **options: object) -> Recorder:
    agent = MultiStreamAgent(
        controlling,
        components=(COMPONENTS,) * STREAMS,
        pacer=None,
        rng=random.Random(seed),
        **options,  # type: ignore[arg-type]
    )
    recorder = Recorder(agent)
    ip = net.add_host(recorder, port=_port(0, 1))[0]
    net.attach(recorder, [(ip, _port(0, 2))] + [(ip, _port(s, c)) for s in (1, 2) for c in (1, 2)])
    for stream, component in itertools.product(range(STREAMS), range(1, COMPONENTS + 1)):
        address = (ip, _port(stream, component))
        agent.add_local_candidate(stream, host_candidate(address, 65535, component))
    return recorder


def _signal(a: MultiStreamAgent, b: MultiStreamAgent) -> None:
    for mine, theirs in ((a, b), (b, a)):
        mine.set_remote_credentials(theirs.local_ufrag, theirs.local_pwd)
        for index, stream in enumerate(theirs.streams):
            for candidate in stream.local_candidates:
                mine.add_remote_candidate(index, ice.Candidate.from_sdp(candidate.to_sdp()))
            mine.add_remote_candidate(index, None)


def _run_until_connected(net: Network, a: Recorder, b: Recorder) -> None:
    net.run(
        until=net.now + 5.0,
        stop=lambda: a.agent.state is CONNECTED and b.agent.state is CONNECTED,
    )
    assert a.agent.state is CONNECTED and b.agent.state is CONNECTED


def _connected(net: Network, b_controlling: bool = False) -> tuple[Recorder, Recorder]:
    """Two agents (a controlling) built, signalled, started and connected."""
    a, b = _build(net, 1, True), _build(net, 2, b_controlling)
    _signal(a.agent, b.agent)
    for side in (a, b):
        side.agent.start(net.now)
    _run_until_connected(net, a, b)
    return a, b


def _signal_restart(net: Network, a: Recorder, b: Recorder) -> None:
    """After ``a``'s restart: b learns a's new credentials (and restarts), a learns
    b's, each gets the other's candidates again, and both start the new checks."""
    b.agent.set_remote_credentials(a.agent.local_ufrag, a.agent.local_pwd)
    a.agent.set_remote_credentials(b.agent.local_ufrag, b.agent.local_pwd)
    for mine, theirs in ((a.agent, b.agent), (b.agent, a.agent)):
        for index, stream in enumerate(theirs.streams):
            for candidate in stream.local_candidates:
                mine.add_remote_candidate(index, ice.Candidate.from_sdp(candidate.to_sdp()))
        mine.start(net.now)


def test_three_streams_of_two_components_connect_sharing_ta_and_foundations() -> None:
    net = Network(seed=31)
    a, b = _build(net, 1, True), _build(net, 2, False)
    _signal(a.agent, b.agent)
    for side in (a, b):
        side.agent.start(net.now)
        active = [
            s.checklist.count(PairState.WAITING) + s.checklist.count(PairState.IN_PROGRESS)
            for s in side.agent.streams
        ]
        assert active == [1, 0, 0], "one foundation: unfrozen in the first stream only"
    _run_until_connected(net, a, b)

    for side, peer in ((a, b), (b, a)):
        assert side.agent.state is CONNECTED
        for index, stream in enumerate(side.agent.streams):
            assert sorted(stream.selected) == [1, 2]
            for component, pair in stream.selected.items():
                assert pair.local.port == pair.remote.port == _port(index, component)
                assert pair.remote.host == peer.agent.streams[0].local_candidates[0].host
        # stream 1 and 2 were unfrozen by stream 0's first success, not by pacing
        success = side.first(0, PairState.SUCCEEDED)
        for later in (1, 2):
            assert side.first(later, PairState.WAITING) >= success
        # one Ta for all streams: no two new transactions of the agent closer than Ta
        sent = sorted(side.requests.values())
        assert len(sent) >= STREAMS * COMPONENTS
        assert min(later - earlier for earlier, later in itertools.pairwise(sent)) >= TA - 1e-9
    states = [
        event.state
        for _, index, event in a.events
        if index is None and isinstance(event, ice.ConnectionStateChanged)
    ]
    assert states == [ConnectionState.CHECKING, CONNECTED]


def test_the_pair_cap_is_split_evenly_between_the_check_lists() -> None:
    """max_pairs=12 over three streams: at most 4 pairs per check list, the best ones."""
    net = Network(seed=32)
    a, b = _build(net, 1, True, max_pairs=12), _build(net, 2, False, max_pairs=12)
    for side in (a, b):  # a second address per component: 4 candidate pairs each
        ip = net.add_host(side, port=6000)[0]
        net.attach(side, [(ip, 6000 + n) for n in range(1, STREAMS * COMPONENTS)])
        for n, (index, component) in enumerate(
            itertools.product(range(STREAMS), range(1, COMPONENTS + 1))
        ):
            candidate = host_candidate((ip, 6000 + n), 60000, component)
            side.agent.add_local_candidate(index, candidate)
    _signal(a.agent, b.agent)
    for index, stream in enumerate(a.agent.streams):
        possible = sorted(
            (
                pair_priority(local.priority, remote.priority)
                for local in stream.local_candidates
                for remote in b.agent.streams[index].local_candidates
                if local.component == remote.component
            ),
            reverse=True,
        )
        assert len(possible) == 8 and stream.checklist.max_pairs == 4
        assert [pair.priority for pair in stream.pairs()] == possible[:4]
    for side in (a, b):
        side.agent.start(net.now)
    _run_until_connected(net, a, b)
    for side in (a, b):
        assert all(len(stream.pairs()) <= 4 for stream in side.agent.streams)


def test_a_role_conflict_switches_every_stream() -> None:
    """Both sides start controlling: the loser of the tie-breaker switches the role of
    all its streams, and the agents connect with one controlling side."""
    a, b = _connected(Network(seed=33), b_controlling=True)
    roles = [[stream.controlling for stream in side.agent.streams] for side in (a, b)]
    assert roles in ([[True] * STREAMS, [False] * STREAMS], [[False] * STREAMS, [True] * STREAMS])


def test_a_restart_gives_every_stream_the_same_new_credentials() -> None:
    net = Network(seed=34)
    a, b = _connected(net)
    old_a, old_b = a.agent.local_ufrag, b.agent.local_ufrag
    a.agent.restart()
    assert a.agent.local_ufrag != old_a
    assert {s.local_ufrag for s in a.agent.streams} == {a.agent.local_ufrag}
    _signal_restart(net, a, b)
    assert b.agent.local_ufrag != old_b
    assert {s.local_ufrag for s in b.agent.streams} == {b.agent.local_ufrag}
    net.run(
        until=net.now + 5.0,
        stop=lambda: all(s._previous is None for x in (a, b) for s in x.agent.streams),
    )
    for side in (a, b):
        assert all(stream._previous is None for stream in side.agent.streams)
        assert side.agent.state is CONNECTED


def test_a_restart_refused_by_one_stream_changes_no_stream() -> None:
    """While a restart has moved some of a stream's components to new pairs but not all,
    a second restart is refused (IceError) and leaves every stream's credentials as
    they were: a session restarts whole or not at all."""
    net = Network(seed=35)
    a, b = _connected(net)
    a.agent.restart()
    _signal_restart(net, a, b)

    def partly_moved(stream: ice.Agent) -> bool:
        previous = stream._previous
        owned = [previous is not None and previous.owns(p) for p in stream.selected.values()]
        return any(owned) and not all(owned)

    first, *_, last = a.agent.streams
    net.run(until=net.now + 5.0, stop=lambda: partly_moved(last) and not partly_moved(first))
    assert partly_moved(last) and not partly_moved(first)
    before = [(s.local_ufrag, s.local_pwd) for s in a.agent.streams]
    with pytest.raises(ice.IceError, match="previous ICE restart"):
        a.agent.restart()
    assert [(s.local_ufrag, s.local_pwd) for s in a.agent.streams] == before


def test_a_base_belongs_to_one_stream() -> None:
    agent = MultiStreamAgent(True, components=(1, 1), pacer=None)
    agent.add_local_candidate(0, host_candidate(("192.0.2.1", 5000), 65535, 1))
    with pytest.raises(ValueError, match="stream 0"):
        agent.add_local_candidate(1, host_candidate(("192.0.2.1", 5000), 65535, 1))
