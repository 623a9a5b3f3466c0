"""ICE restart (RFC 8445 section 9) on the sans-I/O agent, over the simulated network,
with application data flowing on the selected pair all the while."""

from __future__ import annotations

import random

import pytest

import ice
from ice import Agent, ConnectionState, IceError
from ice.agent import Transmit, is_stun
from ice.gather import host_candidate
from tests.ice.simnet import Address, Network

DATA_INTERVAL = 0.020
CONNECTED = ConnectionState.CONNECTED


class DataPeer:
    """An agent plus the application above it: every ``DATA_INTERVAL`` it sends a
    numbered datagram on the selected pair, and it keeps what arrives from a valid pair
    (the shell's data path)."""

    def __init__(self, agent: Agent, name: bytes) -> None:
        self.agent = agent
        self.name = name
        self.sending = False
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.states: list[ConnectionState] = []
        self.restarts: list[ice.Restarted] = []
        self._next_data: float | None = None
        self._out: list[Transmit] = []

    def start_data(self, now: float) -> None:
        self.sending = True
        self._next_data = now

    def handle_datagram(self, now: float, data: bytes, local: Address, remote: Address) -> None:
        if is_stun(data):
            self.agent.handle_datagram(now, data, local, remote)
        elif (local, remote) in self.agent.valid_pairs:
            self.received.append(data)
        self.drain()

    def handle_timeout(self, now: float) -> None:
        self.agent.handle_timeout(now)
        due = self._next_data
        if self.sending and due is not None and now >= due:
            pair = self.agent.selected[1]
            data = b"%s %d" % (self.name, len(self.sent))
            self.sent.append(data)
            self._out.append(Transmit(data, pair.key[0], pair.key[1]))
            self._next_data = due + DATA_INTERVAL
        self.drain()

    def drain(self) -> None:
        while (event := self.agent.poll_event()) is not None:
            if isinstance(event, ice.ConnectionStateChanged):
                self.states.append(event.state)
            elif isinstance(event, ice.Restarted):
                self.restarts.append(event)

    def poll_transmits(self) -> list[Transmit]:
        out = self.agent.poll_transmits() + self._out
        self._out = []
        return out

    def poll_timeout(self) -> float | None:
        deadline = self.agent.poll_timeout()
        due = self._next_data if self.sending else None
        if due is not None and (deadline is None or due < deadline):
            return due
        return deadline


def _exchange_candidates(a: Agent, b: Agent) -> None:
    for mine, theirs in ((a, b), (b, a)):
        for candidate in theirs.local_candidates:
            if candidate.type is ice.CandidateType.HOST:
                mine.add_remote_candidate(ice.Candidate.from_sdp(candidate.to_sdp()))


def _connected(net: Network, **options: object) -> tuple[DataPeer, DataPeer]:
    peers = []
    for index, controlling in enumerate((True, False)):
        agent = Agent(controlling, pacer=None, rng=random.Random(index), **options)  # type: ignore[arg-type]
        peer = DataPeer(agent, b"ab"[index : index + 1])
        address = net.add_host(peer)
        agent.add_local_candidate(host_candidate(address, 65535, 1))
        peers.append(peer)
    a, b = peers
    a.agent.set_remote_credentials(b.agent.local_ufrag, b.agent.local_pwd)
    b.agent.set_remote_credentials(a.agent.local_ufrag, a.agent.local_pwd)
    _exchange_candidates(a.agent, b.agent)
    a.agent.start(net.now)
    b.agent.start(net.now)
    net.run(until=5.0, stop=lambda: a.agent.state is CONNECTED and b.agent.state is CONNECTED)
    assert a.agent.state is CONNECTED and b.agent.state is CONNECTED
    return a, b


def _restarted(peer: DataPeer) -> bool:
    return peer.agent._previous is None and peer.agent._started_at is not None


@pytest.mark.parametrize("signalling_delay", [0.1, 12.0])
def test_restart_while_data_flows_loses_nothing(signalling_delay: float) -> None:
    """A restarts; B learns A's new credentials ``signalling_delay`` later (12 s: longer
    than the 10 s without consent answers that would make either side DISCONNECTED),
    restarts too, and A learns B's 100 ms after that. Data flows both ways every 20 ms
    throughout: every datagram arrives, both sides stay CONNECTED, the old pair keeps
    its consent under the old credentials, and the new pair takes over under new ones."""
    net = Network(seed=11)
    a, b = _connected(net)
    old_pairs = (a.agent.selected[1], b.agent.selected[1])
    old_credentials = [(p.agent.local_ufrag, p.agent.local_pwd) for p in (a, b)]
    old_consent = [p.agent.stats.consent_checks_sent for p in (a, b)]
    a.start_data(net.now)
    b.start_data(net.now)
    net.run(until=net.now + 1.0)

    a.states.clear()
    b.states.clear()
    a.agent.restart()
    a.drain()
    assert a.restarts == [ice.Restarted(a.agent.local_ufrag, a.agent.local_pwd, by_peer=False)]
    net.run(until=net.now + signalling_delay)
    b.agent.set_remote_credentials(a.agent.local_ufrag, a.agent.local_pwd)
    b.drain()
    assert b.restarts == [ice.Restarted(b.agent.local_ufrag, b.agent.local_pwd, by_peer=True)]
    b.agent.add_remote_candidate(ice.Candidate.from_sdp(a.agent.local_candidates[0].to_sdp()))
    b.agent.start(net.now)
    net.run(until=net.now + 0.1)
    a.agent.set_remote_credentials(b.agent.local_ufrag, b.agent.local_pwd)
    a.agent.add_remote_candidate(ice.Candidate.from_sdp(b.agent.local_candidates[0].to_sdp()))
    a.agent.start(net.now)
    net.run(until=net.now + 5.0, stop=lambda: _restarted(a) and _restarted(b))
    assert _restarted(a) and _restarted(b)
    net.run(until=net.now + 40.0)  # consent under the new credentials only from here on
    a.sending = b.sending = False
    net.run(until=net.now + 1.0)

    for (ufrag, pwd), peer in zip(old_credentials, (a, b), strict=True):
        assert ufrag != peer.agent.local_ufrag and pwd != peer.agent.local_pwd
    assert a.agent.controlling and not b.agent.controlling  # the roles are kept
    for peer, old, consent in zip((a, b), old_pairs, old_consent, strict=True):
        new = peer.agent.selected[1]
        assert new is not old and new.key == old.key and new.nominated
        if signalling_delay > ice.agent.CONSENT_INTERVAL:
            assert old.consent_requests_sent > 0 and old.responses_received > 0
        assert (
            new.consent_requests_sent > 0
            and new.responses_received >= new.consent_requests_sent - 1
        )
        assert peer.agent.stats.consent_checks_sent > consent
        assert peer.states == [], "the state never left CONNECTED"
        assert peer.agent.state is CONNECTED
        assert peer.agent.stats.dropped_unauthenticated == 0
    assert a.received == b.sent and b.received == a.sent
    assert len(a.sent) > 2 * signalling_delay / DATA_INTERVAL


def test_restart_fails_at_the_ice_timeout_without_the_peer() -> None:
    """The peer never learns our new credentials: the old pair carries data until the
    ICE timeout, then the agent fails, exactly then, saying the restart failed."""
    net = Network(seed=12)
    a, _ = _connected(net, ice_timeout=6.0)
    a.agent.restart()
    a.agent.start(net.now)
    restarted_at = net.now
    assert a.agent.ice_deadline == pytest.approx(restarted_at + 6.0)
    net.run(until=restarted_at + 5.999)
    assert a.agent.state is CONNECTED
    net.run(until=restarted_at + 6.0)
    assert a.agent.state is ConnectionState.FAILED
    assert a.agent.error is not None and "ICE restart failed" in str(a.agent.error)
    sent = a.agent.stats.consent_checks_sent
    net.run(until=net.now + 30.0)
    assert a.agent.stats.consent_checks_sent == sent, "consent stops with the failure"


def test_restart_revives_a_failed_agent() -> None:
    """A FAILED agent (consent expired: the peer vanished) restarts afresh: NEW, then
    CHECKING, then CONNECTED to the peer once both have new credentials."""
    net = Network(seed=13)
    a, b = _connected(net, consent_timeout=10.0)
    b.agent.close()
    net.run(until=net.now + 11.0)
    assert a.states[-1] is ConnectionState.FAILED and "consent" in str(a.agent.error)
    b = DataPeer(Agent(False, pacer=None, rng=random.Random(7)), b"b")
    address = net.add_host(b, port=6000)
    b.agent.add_local_candidate(host_candidate(address, 65535, 1))
    a.agent.restart()
    assert a.agent.state is ConnectionState.NEW and a.agent.error is None
    a.agent.set_remote_credentials(b.agent.local_ufrag, b.agent.local_pwd)
    b.agent.set_remote_credentials(a.agent.local_ufrag, a.agent.local_pwd)
    _exchange_candidates(a.agent, b.agent)
    a.agent.start(net.now)
    b.agent.start(net.now)
    net.run(until=net.now + 5.0, stop=lambda: a.agent.state is CONNECTED)
    assert a.agent.state is CONNECTED
    assert a.states[-3:] == [ConnectionState.NEW, ConnectionState.CHECKING, CONNECTED]
    assert a.agent.selected[1].remote.port == 6000


def test_restart_needs_new_credentials_and_an_open_agent() -> None:
    agent = Agent(True, pacer=None)
    with pytest.raises(IceError, match="new ufrag and a new pwd"):
        agent.restart(local_ufrag=agent.local_ufrag)
    ufrag = agent.local_ufrag
    agent.restart()
    assert agent.local_ufrag != ufrag
    agent.close()
    with pytest.raises(IceError, match="closed"):
        agent.restart()
