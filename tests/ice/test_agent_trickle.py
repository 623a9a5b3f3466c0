"""Early checks, trickled candidates, end-of-candidates, the pair cap and triggered checks:
what happens when things arrive in an order other than "signal everything, then start"."""

from __future__ import annotations

import pytest

from ice import (
    CandidateLearned,
    CandidateType,
    ConnectionFailed,
    ConnectionState,
    ConnectionStateChanged,
    PairState,
    PairStateChanged,
)
from ice.agent import PEER_REFLEXIVE_LIMIT
from ice.checklist import pair_priority
from ice.gather import host_candidate
from stun import Attr, decode
from tests.ice.agent_support import (
    EPSILON,
    PREFERENCE,
    PUBLIC,
    Peer,
    World,
    make_agent,
)
from tests.ice.simnet import Link, Packet

# -- early checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "late_side_controls", [False, True], ids=["late-controlled", "late-controlling"]
)
def test_checks_arriving_before_the_agent_has_credentials_or_started(
    late_side_controls: bool,
) -> None:
    """B starts at 0 knowing A; A learns B's credentials and candidates and starts only at
    1 s. A answers B's checks all along (its own password is all it needs), learns B's
    address as peer reflexive, and sends nothing of its own before it starts."""
    world = World()
    a = world.peer(PUBLIC, late_side_controls, name="A")
    b = world.peer(PUBLIC, not late_side_controls, name="B")
    a.signal_to(b)
    b.start(0.0)
    world.net.run(until=1.0)
    assert a.state is ConnectionState.NEW and a.agent.remote_ufrag is None
    assert a.agent.stats.responses_sent >= 1 and a.checks() == []
    ((_, learned),) = a.of(CandidateLearned)
    assert learned.candidate.type is CandidateType.PRFLX and learned.candidate.address == b.hosts[0]
    assert b.agent.valid_pairs  # B's check of A succeeded before A even started
    if late_side_controls:
        assert b.state is ConnectionState.CHECKING
    else:  # B nominated at Ta and A's answer made it connected
        assert b.when(ConnectionState.CONNECTED) == pytest.approx(0.06, abs=EPSILON)
    b.signal_to(a)
    a.start(1.0)
    world.run(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    if late_side_controls:  # check at 1.0, valid at 1.01, nomination at 1.05
        assert a.when(ConnectionState.CONNECTED) == pytest.approx(1.06, abs=EPSILON)
        assert b.when(ConnectionState.CONNECTED) == pytest.approx(1.055, abs=EPSILON)
    else:  # its first check succeeds at 1.01 and completes the nomination B made
        assert a.when(ConnectionState.CONNECTED) == pytest.approx(1.01, abs=EPSILON)
    assert a.selected is not None and a.selected.remote.address == b.hosts[0]


def test_at_most_8_peer_reflexive_candidates_before_the_credentials() -> None:
    """Checks from 40 addresses before A knows who its peer is: all answered, only 8
    remembered (PEER_REFLEXIVE_LIMIT); the connection works once A knows B."""
    world = World()
    net = world.net
    a = world.peer(PUBLIC, True, name="A")
    b = Peer(make_agent(False), "B")  # controlled: it keeps checking every pair
    for n in range(40):
        b.host_on(net, (f"198.51.100.{n + 1}", 7000), net.public, preference=PREFERENCE - n)
    a.signal_to(b)
    b.start(0.0)
    world.net.run(until=3.0)
    assert a.agent.stats.responses_sent >= 40
    assert len(a.of(CandidateLearned)) == PEER_REFLEXIVE_LIMIT == 8
    assert len(a.agent.pairs()) == 8
    b.signal_to(a)
    a.start(3.0)
    world.run(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)


# -- trickled candidates --------------------------------------------------------------------


def test_candidates_trickled_seconds_after_start() -> None:
    """Both start at 0 with credentials and no candidates: nothing is sent; the candidates
    trickle in at 3 s and the agents connect as if they had just started then."""
    world = World()
    a = world.peer(PUBLIC, True, name="A")
    b = world.peer(PUBLIC, False, name="B")
    a.signal_to(b, candidates=False)
    b.signal_to(a, candidates=False)
    world.start(a, b)
    world.net.run(until=3.0)
    assert a.sent == b.sent == []
    assert (a.state, b.state) == (ConnectionState.CHECKING, ConnectionState.CHECKING)
    for candidate in a.candidates:
        b.add_remote(candidate)
    for candidate in b.candidates:
        a.add_remote(candidate)
    world.run(a, b)
    assert a.when(ConnectionState.CONNECTED) == pytest.approx(3.06, abs=EPSILON)
    assert b.when(ConnectionState.CONNECTED) == pytest.approx(3.055, abs=EPSILON)


def test_one_side_trickles_the_other_learns_from_checks() -> None:
    """Only A gets B's candidates (at 2 s); B never gets A's: B learns A from A's checks
    (peer reflexive) and answers with a triggered check the instant A's arrives."""
    world = World()
    a = world.peer(PUBLIC, True, name="A")
    b = world.peer(PUBLIC, False, name="B")
    a.signal_to(b, candidates=False)
    b.signal_to(a, candidates=False)
    world.start(a, b)
    world.net.run(until=2.0)
    for candidate in b.candidates:
        a.add_remote(candidate)
    world.run(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    first = b.checks()[0]
    assert first.time == pytest.approx(2.005, abs=EPSILON) and first.remote == a.hosts[0]
    assert b.selected is not None and b.selected.remote.type is CandidateType.PRFLX


@pytest.mark.parametrize("end_of_candidates", [False, True], ids=["no-end", "end-signalled"])
def test_unreachable_candidates_fail_exactly_at_the_ice_timeout(end_of_candidates: bool) -> None:
    """Every remote candidate unreachable: failed at exactly start + ice_timeout, whether
    or not end-of-candidates came (RFC 8863: not before the timer)."""
    world = World()
    a = world.peer(PUBLIC, True, name="A", ice_timeout=6.5)
    a.agent.set_remote_credentials("remoteufrag", "remotepasswordremotepassword")
    for n in range(3):
        a.add_remote(host_candidate((f"203.0.113.{n + 1}", 9), PREFERENCE - n, 1))
    if end_of_candidates:
        a.add_remote(None)
    world.net.run(until=1.25)
    a.start(1.25)
    world.run(a, limit=30.0)
    assert a.state is ConnectionState.FAILED
    assert abs(a.when(ConnectionState.FAILED) - 7.75) < EPSILON  # type: ignore[operator]
    assert len(a.agent.error.pairs) == 3  # type: ignore[union-attr]


def test_all_pairs_failed_and_end_of_candidates_still_waits_for_the_timer() -> None:
    """A's every check is refused (401: it has a wrong password for B) by 10 ms and B
    signalled end-of-candidates: no pair is left to check, yet A fails only at the ICE
    timeout (RFC 8863 section 4: a peer-reflexive candidate may still turn up)."""
    world = World()
    a = world.peer(PUBLIC, True, name="A", ice_timeout=4.0)
    b = world.peer(PUBLIC, False, name="B", ice_timeout=4.0)
    a.agent.set_remote_credentials(b.agent.local_ufrag, "wrongpasswordwrongpassword")
    for candidate in b.candidates:
        a.add_remote(candidate)
    a.add_remote(None)
    world.start(a)
    world.run(a, limit=10.0)
    (pair,) = a.agent.pairs()
    assert pair.state is PairState.FAILED and pair.failure == "401 Unauthorized"
    failed_pair_at = [t for t, e in a.of(PairStateChanged) if e.new is PairState.FAILED]
    assert failed_pair_at == [pytest.approx(0.01, abs=EPSILON)]
    assert a.when(ConnectionState.FAILED) == pytest.approx(4.0, abs=EPSILON)


def test_no_candidates_ever_fails_at_the_timeout_saying_so() -> None:
    world = World()
    a = world.peer(PUBLIC, True, name="A", ice_timeout=2.0)
    a.agent.set_remote_credentials("remoteufrag", "remotepasswordremotepassword")
    world.start(a)
    world.run(a)
    assert a.when(ConnectionState.FAILED) == pytest.approx(2.0, abs=EPSILON)
    assert a.sent == []
    error = a.agent.error
    assert isinstance(error, ConnectionFailed) and error.pairs == ()
    assert "(no candidate pair was formed)" in str(error)


def test_candidates_trickled_after_the_failure_change_nothing() -> None:
    world = World()
    a = world.peer(PUBLIC, True, name="A", ice_timeout=1.0)
    b = world.peer(PUBLIC, False, name="B", ice_timeout=1.0)
    a.signal_to(b, candidates=False)
    b.signal_to(a, candidates=False)
    world.start(a, b)
    world.run(a, b)
    assert (a.state, b.state) == (ConnectionState.FAILED, ConnectionState.FAILED)
    for candidate in b.candidates:
        a.add_remote(candidate)
    world.net.run(until=5.0)
    assert a.state is ConnectionState.FAILED and a.checks() == []
    assert [e.state for _, e in a.of(ConnectionStateChanged)] == ["checking", "failed"]


# -- the pair cap ----------------------------------------------------------------------------


def many_hosts(world: World, peer: Peer, first: int, count: int) -> None:
    for n in range(count):
        address = (f"198.51.{first}.{n + 1}", 5000)
        peer.host_on(world.net, address, world.net.public, preference=PREFERENCE - n)


@pytest.mark.parametrize("max_pairs", [100, 37, 5, 1])
def test_20_by_20_host_candidates_are_capped_and_connect(max_pairs: int) -> None:
    """400 possible pairs: only the ``max_pairs`` of highest priority are kept, and the
    pair cap holds while checks arrive from everywhere; the agents still connect."""
    world = World()
    a = Peer(make_agent(True, max_pairs=max_pairs), "A")
    b = Peer(make_agent(False, max_pairs=max_pairs), "B")
    many_hosts(world, a, 100, 20)
    many_hosts(world, b, 101, 20)
    a.signal_to(b)
    b.signal_to(a)
    kept = a.agent.pairs()
    assert len(kept) == max_pairs
    everything = sorted(
        (pair_priority(x.priority, y.priority) for x in a.candidates for y in b.candidates),
        reverse=True,
    )
    assert [p.priority for p in kept] == everything[:max_pairs]
    world.connect(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    world.net.run(until=world.net.now + 2.0)
    assert len(a.agent.checklist) <= max_pairs and len(b.agent.checklist) <= max_pairs


# -- triggered checks ------------------------------------------------------------------------


def test_a_check_for_an_in_progress_pair_cancels_its_retransmissions_and_requeues_it() -> None:
    """A's first check is lost; before its retransmission (at 500 ms) B's check arrives
    (205 ms): A's transaction is never sent again and a new check of the pair leaves at
    that very instant, through the triggered queue (RFC 8445 7.3.1.4)."""
    world = World()
    a, b = world.pair(PUBLIC, PUBLIC)
    lost: list[bytes] = []

    def lose_first(packet: Packet) -> bool:
        if not lost and packet.src == a.hosts[0] and packet.data[:2] == b"\x00\x01":
            lost.append(packet.data[8:20])
            return True
        return False

    world.net.drop_if = lose_first
    a.start(0.0)
    world.net.run(until=0.2)
    b.start(0.2)
    world.run(a, b)
    world.net.run(until=10.0)
    (first_id,) = lost
    assert a.transmissions(first_id) == [0.0]  # not at 0.5, 1.5, 3.5, 7.5
    assert a.agent.stats.retransmissions == 0
    second = a.checks()[1]
    assert second.transaction_id != first_id and second.remote == b.hosts[0]
    assert second.time == pytest.approx(0.205, abs=EPSILON)
    moves = [(round(t, 9), e.old, e.new) for t, e in a.of(PairStateChanged)][:4]
    assert moves == [
        (0.0, PairState.FROZEN, PairState.WAITING),
        (0.0, PairState.WAITING, PairState.IN_PROGRESS),
        (0.205, PairState.IN_PROGRESS, PairState.WAITING),
        (0.205, PairState.WAITING, PairState.IN_PROGRESS),
    ]
    assert a.state is ConnectionState.CONNECTED


def test_a_triggered_check_waits_for_the_next_pacing_slot_not_longer() -> None:
    """B's check arrives 20 ms after A's first check: A's triggered check leaves at 50 ms,
    the first instant Ta allows."""
    world = World()
    a, b = world.pair(PUBLIC, PUBLIC)
    world.net.drop_if = lambda p: (
        p.src == a.hosts[0] and p.data[:2] == b"\x00\x01" and not a.checks()[1:]
    )
    a.start(0.0)
    world.net.run(until=0.015)
    b.start(0.015)
    world.run(a, b)
    assert [round(c.time, 9) for c in a.checks()[:2]] == [0.0, 0.05]


def test_triggered_checks_are_served_before_ordinary_ones() -> None:
    """A has 5 unreachable remote candidates of higher priority than B's real one and
    checks them in order, Ta apart; B's check arrives at 105 ms, so A's next check (150 ms)
    is the triggered one, ahead of the Waiting pairs of higher priority."""
    world = World(internet=Link(latency=0.005))
    a, b = world.pair(PUBLIC, PUBLIC)
    for n in range(5):
        a.add_remote(host_candidate((f"203.0.113.{n + 1}", 9), 65535, 1))
    a.start(0.0)
    world.net.run(until=0.1)
    b.start(0.1)
    world.run(a, b)
    checks = a.checks()
    assert [round(c.time, 9) for c in checks[:4]] == [0.0, 0.05, 0.1, 0.15]
    assert [c.remote[0] for c in checks[:3]] == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    assert checks[3].remote == b.hosts[0]
    assert Attr.USE_CANDIDATE not in decode(a.sent[0].data)


def test_a_signalled_candidate_replaces_the_peer_reflexive_one_learned_before() -> None:
    """What Chromium does when it answers our offer: it checks at once, so its checks
    arrive before its answer. A (us, two host addresses) learns B's address from them as
    peer reflexive; then B's answer signals that address as a host candidate. As libwebrtc
    and libnice do, the signalled candidate should take the learned one's place (type and
    priority) and be paired with every local candidate of A."""
    world = World()
    a = world.peer(PUBLIC, True, name="A")
    a.add_host(world.net, world.net.public, preference=PREFERENCE - 2)
    b = world.peer(PUBLIC, False, name="B")
    b.agent.set_remote_credentials(a.agent.local_ufrag, a.agent.local_pwd)
    b.add_remote(a.candidates[0])  # B checks A's first address only
    b.start(0.0)
    world.net.run(until=1.0)
    assert [c.type for c in a.agent.remote_candidates] == [CandidateType.PRFLX]

    b.signal_to(a)
    a.start(1.0)
    world.run(a, b)

    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    remote = [c for c in a.agent.remote_candidates if c.address == b.hosts[0]]
    assert [c.type for c in remote] == [CandidateType.HOST]
    assert a.selected is not None and a.selected.remote.type is CandidateType.HOST
    paired = {p.local.address for p in a.agent.pairs() if p.remote.address == b.hosts[0]}
    assert paired == set(a.hosts)
