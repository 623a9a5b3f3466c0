"""Consent freshness (RFC 7675) on the sans-I/O agent, over the simulated network."""

from __future__ import annotations

import itertools
import random

import pytest

import ice
from ice.gather import host_candidate
from stun import Class, Message, Method
from tests.ice.simnet import Link, Network


def _connected_pair(net: Network, **options: object) -> tuple[ice.Agent, ice.Agent]:
    agents = []
    for index, controlling in enumerate((True, False)):
        agent = ice.Agent(controlling, pacer=None, rng=random.Random(index), **options)  # type: ignore[arg-type]
        address = net.add_host(agent)
        agent.add_local_candidate(host_candidate(address, 65535, 1))
        agents.append(agent)
    a, b = agents
    a.set_remote_credentials(b.local_ufrag, b.local_pwd)
    b.set_remote_credentials(a.local_ufrag, a.local_pwd)
    for mine, theirs in ((a, b), (b, a)):
        for candidate in theirs.local_candidates:
            mine.add_remote_candidate(ice.Candidate.from_sdp(candidate.to_sdp()))
        mine.start(net.now)
    connected = ice.ConnectionState.CONNECTED
    net.run(until=5.0, stop=lambda: a.state is connected and b.state is connected)
    assert a.state is connected and b.state is connected
    return a, b


def test_consent_checks_keep_an_idle_connection_alive() -> None:
    net = Network(seed=3, trace=True)
    a, b = _connected_pair(net)
    start = net.now
    net.run(until=start + 120.0)
    assert a.state is ice.ConnectionState.CONNECTED
    assert b.state is ice.ConnectionState.CONNECTED
    for agent in (a, b):
        sent = agent.stats.consent_checks_sent
        assert 120 / 6 <= sent <= 120 / 4 + 1  # one every 5 s x uniform(0.8, 1.2)


def test_consent_intervals_are_jittered_and_never_under_four_seconds() -> None:
    net = Network(seed=4)
    a, _ = _connected_pair(net)
    sent_at: list[float] = []

    def note_sends() -> bool:
        while len(sent_at) < a.stats.consent_checks_sent:
            sent_at.append(net.now)
        return False

    net.run(until=net.now + 200.0, stop=note_sends)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent_at)]
    assert gaps and min(gaps) >= 4.0 and max(gaps) <= 6.0 + 1e-9
    assert len({round(g, 3) for g in gaps}) > 1


def test_consent_expires_exactly_consent_timeout_after_the_last_answered_check() -> None:
    net = Network(seed=5)
    a, b = _connected_pair(net, consent_timeout=30.0)
    blocked_from = net.now + 10.0
    b_base = b.selected[1].base
    net.drop_if = lambda p: net.now >= blocked_from and p.src == b_base
    sent_at: list[float] = []
    failed_at: list[float] = []

    def watch() -> bool:
        while len(sent_at) < a.stats.consent_checks_sent:
            sent_at.append(net.now)
        if a.state is ice.ConnectionState.FAILED and not failed_at:
            failed_at.append(net.now)
        return bool(failed_at)

    net.run(until=net.now + 100.0, stop=watch)
    assert failed_at, "consent never expired"
    assert a.error is not None and "consent" in str(a.error)
    # B answers a check the moment it arrives; answers that leave B before the block are
    # delivered. Consent ends 30 s after the last answered check left, not after its answer.
    answered = [t for t in sent_at if t + net.internet.latency < blocked_from]
    assert len(answered) < len(sent_at)
    assert failed_at[0] == pytest.approx(max(answered) + 30.0, abs=1e-9)


@pytest.mark.parametrize(("one_way", "holds"), [(8.0, True), (11.0, True), (16.0, False)])
def test_late_answers_count_within_the_consent_timeout(one_way: float, holds: bool) -> None:
    """Answers that arrive after the next consent check was sent still count, as long as
    the check they answer left less than 30 s ago (aioice drops them after 0.5 s)."""
    net = Network(seed=6)
    a, b = _connected_pair(net)
    net.internet = Link(latency=one_way)
    net.run(until=net.now + 120.0)
    state = ice.ConnectionState.CONNECTED if holds else ice.ConnectionState.FAILED
    assert a.state is state and b.state is state


def test_unauthenticated_answers_do_not_extend_consent() -> None:
    net = Network(seed=7)
    a, b = _connected_pair(net)
    pair = a.selected[1]
    silent = b.selected[1].base
    net.drop_if = lambda packet: packet.src == silent
    net.run(until=net.now + 6.5)  # at least one consent check is out, unanswered
    open_checks = list(a._consent)  # white-box: the ids of consent checks in flight
    assert open_checks
    for transaction_id in open_checks:
        forged = Message(Method.BINDING, Class.SUCCESS, transaction_id).encode(b"wrong key")
        a.handle_datagram(net.now, forged, local=pair.key[0], remote=pair.key[1])
    assert a.stats.dropped_unauthenticated == len(open_checks)
    assert set(a._consent) == set(open_checks)


def _states(agent: ice.Agent) -> list[ice.ConnectionState]:
    """Every state change left in the agent's event queue."""
    changes = []
    while (event := agent.poll_event()) is not None:
        if isinstance(event, ice.ConnectionStateChanged):
            changes.append(event.state)
    return changes


def test_silence_makes_the_agent_disconnected_and_an_answer_brings_it_back() -> None:
    """No consent answer for disconnect_timeout (10 s by default): DISCONNECTED, exactly
    then; the first answer after the peer is heard again: CONNECTED, with consent held."""
    net = Network(seed=8)
    a, b = _connected_pair(net)
    heard = a._components[0].heard_at  # white-box: selection, the last time A heard B
    assert heard is not None
    silent_from, silent_until = net.now, net.now + 14.0
    b_base = b.selected[1].base
    net.drop_if = lambda p: silent_from <= net.now < silent_until and p.src == b_base
    seen: list[tuple[float, ice.ConnectionState]] = []
    last = a.state

    def watch() -> bool:
        nonlocal last
        if a.state is not last:
            seen.append((net.now, a.state))
            last = a.state
        return False

    net.run(until=net.now + 30.0, stop=watch)
    disconnected, connected = ice.ConnectionState.DISCONNECTED, ice.ConnectionState.CONNECTED
    assert [state for _, state in seen] == [disconnected, connected]
    assert seen[0][0] == pytest.approx(heard + a.disconnect_timeout, abs=1e-9)
    assert silent_until <= seen[1][0] < silent_until + 7.0  # the next consent answer
    assert b.state is connected


def test_consent_expiry_is_an_event_and_ends_every_consent_transaction() -> None:
    net = Network(seed=9)
    a, b = _connected_pair(net, consent_timeout=12.0)
    b_base = b.selected[1].base
    net.drop_if = lambda p: p.src == b_base
    while a.poll_event() is not None:
        pass
    net.run(until=net.now + 60.0, stop=lambda: a.state is ice.ConnectionState.FAILED)
    events = []
    while (event := a.poll_event()) is not None:
        events.append(event)
    expired = [e for e in events if isinstance(e, ice.ConsentExpired)]
    assert [e.pair for e in expired] == [a.selected[1]]
    assert not a._consent  # white-box: no consent transaction left
    sent = a.stats.consent_checks_sent
    net.run(until=net.now + 60.0)
    assert a.stats.consent_checks_sent == sent  # nothing more is sent
    assert a.poll_timeout() is None


def test_without_consent_keepalives_go_out_after_tr_of_silence_on_the_selected_pair() -> None:
    net = Network(seed=10)
    a, b = _connected_pair(net, consent=False)
    start = net.now
    a_pair, b_pair = a.selected[1], b.selected[1]
    net.run(until=start + 100.0)
    assert a.stats.consent_checks_sent == b.stats.consent_checks_sent == 0
    # Nothing else is sent on the pairs, so one indication every 15 s from each side;
    # each side's first is due Tr after its last check or answer.
    for agent, pair in ((a, a_pair), (b, b_pair)):
        assert agent.stats.keepalives_sent == 6
        assert pair.last_sent_at is not None and start + 85.0 <= pair.last_sent_at
    assert a.stats.indications_received == b.stats.indications_received == 6
    assert a.state is b.state is ice.ConnectionState.CONNECTED


def test_keepalive_interval_under_tr_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 15 s"):
        ice.Agent(True, keepalive_interval=14.9)


def test_both_ends_of_candidates_and_no_check_left_make_it_completed() -> None:
    net = Network(seed=11)
    a, b = _connected_pair(net)
    assert a.state is b.state is ice.ConnectionState.CONNECTED  # no local end signalled
    a.add_remote_candidate(None)
    assert ice.ConnectionState.COMPLETED not in _states(a)
    a.add_local_candidate(None)
    assert _states(a) == [ice.ConnectionState.COMPLETED]
    assert b.state is ice.ConnectionState.CONNECTED
