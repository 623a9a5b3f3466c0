"""Pacing (RFC 8445 section 14): one new transaction per Ta per agent, the process-wide
5 ms rule through a shared :class:`ice.Pacer`, Ta negotiation (``a=ice-pacing``, RFC 8445
14.2) and the retransmission timeout of 14.3 - all read off the wiretap of what each
agent sent, where a new transaction is the first transmission of a Binding request's
transaction id (retransmissions and responses excluded)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from ice import ConnectionState, Pacer
from ice.gather import host_candidate
from tests.ice.agent_support import (
    AD,
    APD,
    EI,
    PREFERENCE,
    PUBLIC,
    Kind,
    Peer,
    World,
    make_agent,
)
from tests.ice.simnet import Link

SCENARIOS = {
    "public": (PUBLIC, PUBLIC, False),
    "EIM-APDF-APDM-ADF": (Kind(EI, APD), Kind(APD, AD), False),
    "ADM-ADF-relayed": (Kind(AD, AD), Kind(AD, AD), True),
    "check-storm": (Kind(APD, EI), Kind(APD, EI), False),
    "no-path": (Kind(APD, APD), Kind(APD, APD), False),
}


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


@pytest.mark.parametrize("nomination", ["regular", "aggressive"])
@pytest.mark.parametrize("ta", [0.005, 0.02, 0.05])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_new_transactions_of_an_agent_are_ta_apart(
    scenario: str, ta: float, nomination: str
) -> None:
    a_kind, b_kind, relays = SCENARIOS[scenario]
    world = World(seed=5, internet=Link(latency=0.02, jitter=0.01))
    options: dict[str, Any] = {"ta": ta, "negotiate_ta": False, "ice_timeout": 4.0}
    a, b = world.pair(
        a_kind,
        b_kind,
        relay_a=relays,
        relay_b=relays,
        a_options={"nomination": nomination},
        **options,
    )
    world.connect(a, b)
    world.net.run(until=world.net.now + 1.0)
    for peer in (a, b):
        times = [c.time for c in peer.checks()]
        assert len(times) >= 2
        assert min(gaps(times)) >= ta - 1e-9, peer.name


def test_ordinary_checks_leave_exactly_ta_apart_and_rto_follows_section_14_3() -> None:
    """20 pairs that get no answer: checks at t0, t0 + Ta, ... (no delay added), each
    retransmitted at RTO, 3 RTO, 7 RTO with RTO = max(500 ms, Ta x (Waiting + In-Progress))
    = 20 x 50 ms = 1 s."""
    world = World()
    a = Peer(make_agent(True), "A")
    a.add_host(world.net, world.net.public)
    world.net.run(until=2.0)
    a.agent.set_remote_credentials("remoteufrag", "remotepasswordremotepassword")
    for n in range(20):  # addresses nobody owns: the checks are lost on the way
        a.add_remote(host_candidate((f"203.0.113.{n + 1}", 9), PREFERENCE - n, 1))
    a.start(2.0)
    world.net.run(until=2.0 + 4.0)
    checks = a.checks()
    assert [c.time for c in checks] == pytest.approx([2.0 + 0.05 * k for k in range(20)], abs=1e-9)
    assert [c.remote[0] for c in checks] == [f"203.0.113.{n + 1}" for n in range(20)]
    first = a.transmissions(checks[0].transaction_id)
    assert first == pytest.approx([2.0, 3.0, 5.0], abs=1e-9)  # 7.0 is past the end of the run


def test_a_shared_pacer_keeps_the_whole_network_5_ms_apart() -> None:
    """Four pairs of agents on one network, each proposing Ta = 5 ms without negotiating
    (so that they would collide), sharing one Pacer(0.005): no two new transactions
    anywhere closer than 5 ms, and everyone still connects."""
    pacer = Pacer(0.005)
    world = World(seed=2, internet=Link(latency=0.01))
    kinds = [
        (PUBLIC, PUBLIC),
        (Kind(EI, EI), PUBLIC),
        (Kind(EI, AD), Kind(AD, EI)),
        (PUBLIC, Kind(APD, APD)),
    ]
    pairs = [
        world.pair(x, y, ta=0.005, negotiate_ta=False, pacer=pacer, ice_timeout=5.0)
        for x, y in kinds
    ]
    peers = [p for pair in pairs for p in pair]
    world.start(*peers)
    world.run(*peers)
    assert all(p.state is ConnectionState.CONNECTED for p in peers)
    times = sorted(c.time for p in peers for c in p.checks())
    assert len(times) > 8
    assert min(gaps(times)) >= 0.005 - 1e-9


def test_without_a_shared_pacer_the_same_agents_collide() -> None:
    """The control experiment: the same network with pacer=None has new transactions
    closer than 5 ms (so the test above measures the pacer, not luck)."""
    world = World(seed=2, internet=Link(latency=0.01))
    pairs = [world.pair(PUBLIC, PUBLIC, ta=0.005, negotiate_ta=False) for _ in range(4)]
    peers = [p for pair in pairs for p in pair]
    world.start(*peers)
    world.run(*peers)
    times = sorted(c.time for p in peers for c in p.checks())
    assert min(gaps(times)) < 0.005


@pytest.mark.parametrize(
    ("a_ta", "b_ta", "a_signals", "b_signals", "a_negotiates", "expected_a", "expected_b"),
    [
        pytest.param(0.02, 0.05, True, True, True, 0.05, 0.05, id="20ms-vs-50ms-both-50"),
        pytest.param(0.05, 0.02, True, True, True, 0.05, 0.05, id="50ms-vs-20ms-both-50"),
        pytest.param(0.1, 0.08, True, True, True, 0.1, 0.1, id="100ms-vs-80ms-both-100"),
        pytest.param(0.02, 0.02, True, False, True, 0.05, 0.02, id="peer-proposes-nothing-50"),
        pytest.param(0.005, 0.05, True, True, False, 0.005, 0.05, id="no-negotiation-5ms"),
    ],
)
def test_ta_negotiation(
    a_ta: float,
    b_ta: float,
    a_signals: bool,
    b_signals: bool,
    a_negotiates: bool,
    expected_a: float,
    expected_b: float,
) -> None:
    """Each agent uses max(its proposal, the peer's) - 50 ms standing in for a peer that
    proposed nothing - unless negotiate_ta=False. The gaps between the ordinary checks of
    six unanswerable remote candidates show the Ta really used."""
    world = World()
    net = world.net
    a = Peer(make_agent(True, ta=a_ta, negotiate_ta=a_negotiates), "A")
    b = Peer(make_agent(False, ta=b_ta), "B")
    a.add_host(net, net.public)
    b.add_host(net, net.public)
    a.signal_to(b, ta=a_signals, candidates=False)
    b.signal_to(a, ta=b_signals, candidates=False)
    for n in range(6):  # addresses nobody owns: every check goes unanswered
        a.add_remote(host_candidate((f"203.0.113.{n + 1}", 9), PREFERENCE - n, 1))
        b.add_remote(host_candidate((f"203.0.113.{n + 101}", 9), PREFERENCE - n, 1))
    assert (a.agent.ta, b.agent.ta) == (expected_a, expected_b)
    world.start(a, b)
    net.run(until=0.5)
    for peer, ta in ((a, expected_a), (b, expected_b)):
        times = [c.time for c in peer.checks()][:6]
        assert len(times) == 6
        assert min(gaps(times)) == pytest.approx(ta, abs=1e-9), peer.name


def test_a_batch_of_datagrams_is_seen_before_the_next_check() -> None:
    """Both agents check their one pair at 0 and read the other's request and the answer
    to their own in one batch, long after Ta (a busy process): the request cancels the
    check in flight and queues the pair again (7.3.1.4), but no check leaves while the
    batch is read; the answer that follows in it makes the pair Succeeded, so the next
    handle_timeout sends nothing. One check per agent, both connected."""
    a_address, b_address = ("192.0.2.1", 5000), ("192.0.2.2", 5000)
    options: dict[str, Any] = {"nomination": "aggressive", "ta": 0.02, "negotiate_ta": False}
    a, b = make_agent(True, **options), make_agent(False, **options)
    for agent, mine, theirs, peer in ((a, a_address, b_address, b), (b, b_address, a_address, a)):
        agent.add_local_candidate(host_candidate(mine, PREFERENCE, 1))
        agent.set_remote_credentials(peer.local_ufrag, peer.local_pwd)
        agent.add_remote_candidate(host_candidate(theirs, PREFERENCE, 1))
    a.start(0.0)
    b.start(0.0)
    (a_check,), (b_check,) = a.poll_transmits(), b.poll_transmits()
    now = 0.5  # well past Ta: a check could leave at once
    a.handle_datagram(now, b_check.data, a_address, b_address)
    b.handle_datagram(now, a_check.data, b_address, a_address)
    (a_answer,), (b_answer,) = a.poll_transmits(), b.poll_transmits()
    a.handle_datagram(now, b_answer.data, a_address, b_address)
    b.handle_datagram(now, a_answer.data, b_address, a_address)
    for agent in (a, b):
        assert agent.poll_transmits() == []
        agent.handle_timeout(now)
        assert agent.poll_transmits() == []
        assert agent.stats.checks_sent == 1
        assert agent.state is ConnectionState.CONNECTED


def test_a_cancelled_check_wakes_the_agent_only_at_its_deadline() -> None:
    """A check that was cancelled (a triggered check or completion replaced it) sends no
    more retransmissions: after the wake-up already due, the agent's next wake for it is
    the transaction's deadline (until which its answer still counts), not each
    retransmission time."""
    agent = make_agent(True)
    agent.add_local_candidate(host_candidate(("192.0.2.1", 5000), PREFERENCE, 1))
    agent.set_remote_credentials("remoteufrag", "remotepasswordremotepass")
    agent.add_remote_candidate(host_candidate(("192.0.2.2", 6000), PREFERENCE, 1))
    agent.start(0.0)
    assert len(agent.poll_transmits()) == 1
    (check,) = agent._checks.values()  # white-box: the check in flight
    check.cancelled = True
    transaction = check.transaction
    due = transaction.poll_timeout()
    assert due is not None and due < transaction.deadline
    agent.handle_timeout(due)
    assert agent.poll_transmits() == []  # no retransmission of a cancelled check
    assert [when for when, _, armed in agent._timers if armed is check] == [transaction.deadline]
