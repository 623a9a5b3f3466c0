"""ICE-lite (RFC 8445 sections 2.5, 6.1.1, 7.3.1.5) on the sans-I/O agent, over the
simulated network: a lite agent against a full one in both configured roles, two lite
agents, and a full agent told its peer is lite."""

from __future__ import annotations

import random

import pytest

import ice
from ice import Agent, CandidateType, ConnectionState
from ice.gather import host_candidate
from tests.ice.simnet import Network

CONNECTED = ConnectionState.CONNECTED


def _agents(
    net: Network, a_options: dict[str, object], b_options: dict[str, object]
) -> tuple[Agent, Agent]:
    agents = []
    for index, options in enumerate((a_options, b_options)):
        agent = Agent(pacer=None, rng=random.Random(index), **options)  # type: ignore[arg-type]
        address = net.add_host(agent)
        agent.add_local_candidate(host_candidate(address, 65535, 1))
        agents.append(agent)
    return agents[0], agents[1]


def _signal_and_start(net: Network, a: Agent, b: Agent, *, tell_lite: bool = True) -> None:
    """Exchange credentials (with ``a=ice-lite`` unless ``tell_lite`` is off) and
    candidates, then start both."""
    a.set_remote_credentials(b.local_ufrag, b.local_pwd, lite=b.lite and tell_lite)
    b.set_remote_credentials(a.local_ufrag, a.local_pwd, lite=a.lite and tell_lite)
    for mine, theirs in ((a, b), (b, a)):
        for candidate in theirs.local_candidates:
            mine.add_remote_candidate(ice.Candidate.from_sdp(candidate.to_sdp()))
        mine.start(net.now)


def _run_until_connected(net: Network, a: Agent, b: Agent) -> None:
    net.run(until=net.now + 5.0, stop=lambda: a.state is CONNECTED and b.state is CONNECTED)
    assert a.state is CONNECTED and b.state is CONNECTED


@pytest.mark.parametrize("lite_says_controlling", [False, True])
def test_lite_against_full_is_controlled_and_sends_no_check(lite_says_controlling: bool) -> None:
    """The lite agent is controlled whatever it was built with, the full one controls
    (whatever it was built with) and nominates regularly; the lite agent answers and
    takes the nominated pair, sending no check and no consent check in 60 s, while the
    full agent keeps consent through the lite agent's answers."""
    net = Network(seed=21)
    full, lite = _agents(
        net,
        {"controlling": lite_says_controlling},
        {"controlling": lite_says_controlling, "lite": True},
    )
    _signal_and_start(net, full, lite)
    assert full.controlling and not lite.controlling
    _run_until_connected(net, full, lite)
    net.run(until=net.now + 60.0)

    assert full.state is CONNECTED and lite.state is CONNECTED
    assert lite.stats.checks_sent == 0 and lite.stats.consent_checks_sent == 0
    assert lite.stats.responses_sent > 10
    assert lite.stats.keepalives_sent == 0, "its consent answers leave no keepalive due"
    assert full.stats.consent_checks_sent >= 10
    pair = lite.selected[1]
    assert pair.nominated and pair.remote.address == full.local_candidates[0].address
    assert full.selected[1].nominated and full.selected[1].consent_requests_sent >= 10


def test_lite_answers_a_controlled_full_peer_with_a_role_conflict() -> None:
    """A full agent not told that its peer is lite, and controlled: its checks claim
    the controlled role, the lite agent answers 487 (it stays controlled), and the full
    agent switches to controlling and connects."""
    net = Network(seed=22)
    full, lite = _agents(net, {"controlling": False}, {"controlling": False, "lite": True})
    _signal_and_start(net, full, lite, tell_lite=False)
    _run_until_connected(net, full, lite)
    assert full.controlling and not lite.controlling
    assert lite.stats.errors_sent >= 1 and lite.stats.checks_sent == 0


def test_two_lite_agents_select_the_same_pair_without_checks() -> None:
    """Both lite: the initiator controls, nobody sends a check, and both select the pair
    of each other's highest-priority candidate of one family, at once."""
    net = Network(seed=23)
    a, b = _agents(net, {"controlling": True, "lite": True}, {"controlling": False, "lite": True})
    for agent in (a, b):
        address = net.add_host(agent, port=7000)
        agent.add_local_candidate(host_candidate(address, 60000, 1))  # a lower priority
    _signal_and_start(net, a, b)
    assert a.state is CONNECTED and b.state is CONNECTED
    assert a.controlling and not b.controlling
    pair_a, pair_b = a.selected[1], b.selected[1]
    assert pair_a.local.address == pair_b.remote.address == a.local_candidates[0].address
    assert pair_b.local.address == pair_a.remote.address == b.local_candidates[0].address
    net.run(until=net.now + 20.0)
    assert a.stats.checks_sent == b.stats.checks_sent == 0
    assert a.stats.requests_received == b.stats.requests_received == 0
    assert a.stats.keepalives_sent == b.stats.keepalives_sent == 1  # at Tr, 15 s
    assert a.stats.indications_received == b.stats.indications_received == 1


def test_two_lite_agents_select_when_a_candidate_trickles_in_after_start() -> None:
    net = Network(seed=24)
    a, b = _agents(net, {"controlling": True, "lite": True}, {"controlling": False, "lite": True})
    a.set_remote_credentials(b.local_ufrag, b.local_pwd, lite=True)
    a.start(net.now)
    assert a.state is ConnectionState.CHECKING and not a.selected
    a.add_remote_candidate(ice.Candidate.from_sdp(b.local_candidates[0].to_sdp()))
    net.run(until=net.now + 0.001)
    assert a.state is CONNECTED
    assert a.selected[1].remote.address == b.local_candidates[0].address


def test_full_agent_told_its_peer_is_lite_takes_control() -> None:
    agent = Agent(False, pacer=None)
    agent.set_remote_credentials("abcd", "x" * 22, lite=True)
    assert agent.controlling and agent.remote_lite
    assert isinstance(agent.poll_event(), ice.RoleChanged)


def test_lite_agent_takes_host_candidates_only() -> None:
    agent = Agent(False, lite=True, pacer=None)
    host = host_candidate(("192.0.2.7", 5000), 65535, 1)
    reflexive = ice.Candidate(
        foundation="1",
        component=1,
        protocol="udp",
        priority=1,
        host="198.51.100.7",
        port=5000,
        type=CandidateType.SRFLX,
        base=("192.0.2.7", 5000),
    )
    assert agent.add_local_candidate(host)
    with pytest.raises(ValueError, match="host candidates only"):
        agent.add_local_candidate(reflexive)
    assert not agent.consent
