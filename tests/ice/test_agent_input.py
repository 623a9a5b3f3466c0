"""Misbehaving input never raises out of the agent: it is answered the way RFC 8489 and
RFC 8445 say (400, 401, 420) or dropped and counted. And when ICE fails,
:class:`ice.ConnectionFailed` says which pairs were tried and why.

The agent is attached to the simulated network directly here (it is an endpoint as it
is); a :class:`~tests.ice.simnet.Probe` sends the crafted datagrams and records answers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import astuple

import pytest

from ice import Agent, ConnectionFailed, ConnectionState, PairState
from ice.gather import host_candidate
from stun import Attr, Class, Message, Method, decode, short_term_key
from tests.ice.agent_support import EPSILON, PREFERENCE, PUBLIC, Peer, World, make_agent
from tests.ice.simnet import Address, Datagram, Network, Probe

AGENT: Address = ("198.51.100.1", 5000)
PROBE: Address = ("198.51.100.2", 6000)
REMOTE_UFRAG, REMOTE_PWD = "probeufrag", "probepasswordprobepassword"


def attached_agent(net: Network, controlling: bool = False) -> Agent:
    agent = make_agent(
        controlling, local_ufrag="agentufrag", local_pwd="agentpasswordagentpassword"
    )
    agent.add_local_candidate(host_candidate(AGENT, PREFERENCE, 1))
    agent.set_remote_credentials(REMOTE_UFRAG, REMOTE_PWD)
    net.attach(agent, [AGENT])
    return agent


def check(
    agent: Agent,
    *,
    username: str | None = None,
    key: bytes | str | None = "right",
    priority: bool = True,
    extra: tuple[tuple[int, object], ...] = (),
    fingerprint: bool = True,
    cls: Class = Class.REQUEST,
    method: int = Method.BINDING,
    n: int = 1,
) -> bytes:
    """A connectivity check to ``agent`` as its peer would send it, altered as asked."""
    attributes: list[tuple[int, object]] = []
    user = f"{agent.local_ufrag}:{REMOTE_UFRAG}" if username is None else username
    if user:
        attributes.append((Attr.USERNAME, user))
    if priority:
        attributes.append((Attr.PRIORITY, 0x6E7F1EFF))
    attributes.append((Attr.ICE_CONTROLLED if agent.controlling else Attr.ICE_CONTROLLING, 42))
    attributes.extend(extra)
    signing = short_term_key(agent.local_pwd) if key == "right" else key
    assert not isinstance(signing, str)
    return Message(method, cls, n.to_bytes(12, "big"), attributes).encode(
        signing, fingerprint=fingerprint
    )


def answers(probe: Probe) -> list[Message]:
    return [decode(r.data) for r in probe.received]


def send(data: bytes) -> tuple[Agent, Probe, Network]:
    net = Network()
    agent = attached_agent(net)
    probe = Probe()
    net.attach(probe, [PROBE])
    probe.send(data, PROBE, AGENT)
    net.run()
    return agent, probe, net


def counters(agent: Agent) -> dict[str, int]:
    return {k: v for k, v in zip(agent.stats.__slots__, astuple(agent.stats), strict=True) if v}


def test_a_good_check_is_answered_signed_with_the_mapped_address() -> None:
    agent, probe, _ = send(check_for())
    (answer,) = answers(probe)
    assert answer.cls is Class.SUCCESS and answer.get(Attr.XOR_MAPPED_ADDRESS) == PROBE
    assert answer.check_integrity(short_term_key(agent.local_pwd)) and answer.check_fingerprint()
    assert counters(agent) == {"requests_received": 1, "responses_sent": 1}


def check_for(**changes: object) -> bytes:
    """``check`` for the agent ``attached_agent`` makes (its credentials are fixed)."""
    net = Network()
    return check(attached_agent(net), **changes)  # type: ignore[arg-type]


ERRORS: dict[str, tuple[Callable[[], bytes], int, bool, dict[str, int]]] = {
    # id: (datagram, error code, signed?, counters)
    "wrong-password": (
        lambda: check_for(key=short_term_key("notthepasswordnotthepassword")),
        401,
        False,
        {"requests_received": 1, "dropped_unauthenticated": 1, "errors_sent": 1},
    ),
    "wrong-local-ufrag": (
        lambda: check_for(username=f"someoneelse:{REMOTE_UFRAG}"),
        401,
        False,
        {"requests_received": 1, "dropped_unauthenticated": 1, "errors_sent": 1},
    ),
    "wrong-remote-ufrag": (
        lambda: check_for(username="agentufrag:intruder"),
        401,
        False,
        {"requests_received": 1, "dropped_unauthenticated": 1, "errors_sent": 1},
    ),
    "username-without-colon": (
        lambda: check_for(username="agentufrag"),
        401,
        False,
        {"requests_received": 1, "dropped_unauthenticated": 1, "errors_sent": 1},
    ),
    "no-username": (
        lambda: check_for(username=""),
        400,
        False,
        {"requests_received": 1, "errors_sent": 1},
    ),
    "no-message-integrity": (
        lambda: check_for(key=None),
        400,
        False,
        {"requests_received": 1, "errors_sent": 1},
    ),
    "no-priority": (
        lambda: check_for(priority=False),
        400,
        True,
        {"requests_received": 1, "errors_sent": 1},
    ),
    "unknown-comprehension-required": (
        lambda: check_for(extra=((0x7F00, b"what"),)),
        420,
        True,
        {"requests_received": 1, "errors_sent": 1},
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_checks_get_the_right_error(case: str) -> None:
    make, code, signed, expected = ERRORS[case]
    agent, probe, _ = send(make())
    (answer,) = answers(probe)
    assert answer.cls is Class.ERROR and answer.get(Attr.ERROR_CODE)[0] == code
    assert answer.transaction_id == (1).to_bytes(12, "big")
    assert answer.check_fingerprint()
    assert answer.has_integrity is signed
    if signed:
        assert answer.check_integrity(short_term_key(agent.local_pwd))
    if code == 420:
        assert list(answer.get(Attr.UNKNOWN_ATTRIBUTES)) == [0x7F00]
    assert counters(agent) == expected
    assert agent.pairs() == [] and agent.remote_candidates == []  # nothing learned


SILENT: dict[str, tuple[Callable[[], bytes], dict[str, int]]] = {
    "empty": (lambda: b"", {"dropped_malformed": 1}),
    "random-bytes": (lambda: random.Random(1).randbytes(64), {"dropped_malformed": 1}),
    "truncated": (lambda: check_for()[:40], {"dropped_malformed": 1}),
    "header-only": (lambda: check_for()[:20], {"dropped_malformed": 1}),
    "bad-fingerprint": (lambda: check_for()[:-1] + b"\x00", {"dropped_malformed": 1}),
    "not-binding": (lambda: check_for(method=Method.ALLOCATE), {"dropped_malformed": 1}),
    "indication": (lambda: check_for(cls=Class.INDICATION), {"indications_received": 1}),
    "unmatched-success": (lambda: check_for(cls=Class.SUCCESS), {"dropped_unmatched": 1}),
    "unmatched-error": (
        lambda: check_for(cls=Class.ERROR, extra=((Attr.ERROR_CODE, (400, "x")),)),
        {"dropped_unmatched": 1},
    ),
}


@pytest.mark.parametrize("case", list(SILENT))
def test_garbage_is_dropped_and_counted_without_an_answer(case: str) -> None:
    make, expected = SILENT[case]
    agent, probe, _ = send(make())
    assert probe.received == []
    assert counters(agent) == expected


def test_an_unknown_comprehension_optional_attribute_is_ignored() -> None:
    agent, probe, _ = send(check_for(extra=((0xC0DE, b"optional"),)))
    (answer,) = answers(probe)
    assert answer.cls is Class.SUCCESS
    assert counters(agent) == {"requests_received": 1, "responses_sent": 1}


def test_a_check_to_an_address_that_is_no_candidate_base_is_dropped() -> None:
    net = Network()
    agent = attached_agent(net)
    other = ("198.51.100.9", 5000)
    net.attach(agent, [other])
    probe = Probe()
    net.attach(probe, [PROBE])
    probe.send(check(agent), PROBE, other)
    net.run()
    assert probe.received == [] and counters(agent) == {
        "requests_received": 1,
        "dropped_unknown_local": 1,
    }


@pytest.mark.parametrize("seed", range(4))
def test_mutated_checks_never_raise_and_are_always_accounted_for(seed: int) -> None:
    """Bit flips, truncations, extensions and splices of good checks and answers, fed to a
    checking agent: nothing raises, every datagram moves a counter or draws an answer."""
    rng = random.Random(seed)
    net = Network()
    agent = attached_agent(net, controlling=True)
    agent.add_remote_candidate(host_candidate(PROBE, PREFERENCE, 1))
    agent.start(0.0)
    seeds = [check(agent, n=n) for n in range(4)]
    seeds += [t.data for t in agent.poll_transmits()]  # its own check, as if reflected
    seeds.append(check(agent, cls=Class.SUCCESS, extra=((Attr.XOR_MAPPED_ADDRESS, PROBE),)))
    for n in range(400):
        data = bytearray(rng.choice(seeds))
        how = rng.randrange(4)
        if how == 0:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif how == 1:
            del data[rng.randrange(len(data)) :]
        elif how == 2:
            data += rng.randbytes(rng.randint(1, 12))
        else:
            cut = rng.randrange(20, len(data))
            data = data[:cut] + bytearray(rng.choice(seeds)[cut:])
        before = sum(astuple(agent.stats))
        agent.handle_datagram(0.001 * n, bytes(data), local=AGENT, remote=PROBE)
        agent.handle_timeout(0.001 * n)
        answered = agent.poll_transmits()
        assert sum(astuple(agent.stats)) > before or answered, bytes(data).hex()
        while agent.poll_event() is not None:
            pass
    assert agent.state is ConnectionState.CHECKING or agent.state is ConnectionState.CONNECTED


# -- ConnectionFailed ------------------------------------------------------------------------


class Misbehaving:
    """A peer that answers every check it gets with ``answer(request, local, remote)``."""

    def __init__(self, answer: Callable[[Message, Address, Address], list[Datagram]]) -> None:
        self.answer = answer
        self._out: list[Datagram] = []

    def handle_datagram(
        self, now: float, data: bytes, /, *, local: Address, remote: Address
    ) -> None:
        message = decode(data)
        if message.cls is Class.REQUEST:
            self._out.extend(self.answer(message, local, remote))

    def handle_timeout(self, now: float, /) -> None:
        """No timers."""

    def poll_transmits(self) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def poll_timeout(self) -> float | None:
        return None


KEY = short_term_key(REMOTE_PWD)


def _reply(
    cls: Class,
    attributes: list[tuple[int, object]],
    key: bytes | None = KEY,
    source: Address | None = None,
) -> Callable[[Message, Address, Address], list[Datagram]]:
    def answer(request: Message, local: Address, remote: Address) -> list[Datagram]:
        data = Message(
            Method.BINDING,
            cls,
            request.transaction_id,
            attributes or [(Attr.XOR_MAPPED_ADDRESS, remote)],
        ).encode(key, fingerprint=True)
        return [Datagram(data, source or local, remote)]

    return answer


MISBEHAVIOURS: list[
    tuple[str, Callable[[Message, Address, Address], list[Datagram]] | None, str]
] = [
    ("silent", None, "no answer to 3 requests within the ICE timeout"),
    (
        "401",
        _reply(Class.ERROR, [(Attr.ERROR_CODE, (401, "Unauthorized"))], key=None),
        "401 Unauthorized",
    ),
    ("400", _reply(Class.ERROR, [(Attr.ERROR_CODE, (400, "Bad Request"))]), "400 Bad Request"),
    ("500", _reply(Class.ERROR, [(Attr.ERROR_CODE, (500, "Server Error"))]), "500 Server Error"),
    (
        "no-mapped",
        _reply(Class.SUCCESS, [(Attr.SOFTWARE, "x")]),
        "success response without XOR-MAPPED-ADDRESS",
    ),
    (
        "asymmetric",
        _reply(Class.SUCCESS, [], source=("203.0.113.99", 7000)),
        "asymmetric response from 203.0.113.99:7000",
    ),
    (
        "wrong-key",
        _reply(Class.SUCCESS, [], key=short_term_key("wrongwrongwrongwrongwrong")),
        "3 answers failed their integrity check (wrong password?)",
    ),
]


def test_connection_failed_lists_every_pair_and_why() -> None:
    """A (controlling) has one remote candidate per misbehaving peer. At the ICE timeout
    (3 s) every pair is listed, highest priority first, with the reason it failed, or
    for the silent peer and the one whose answers never verify, that the ICE timeout
    ended their checks."""
    world = World()
    net = world.net
    a = world.peer(PUBLIC, True, name="A", ice_timeout=3.0)
    a.agent.set_remote_credentials(REMOTE_UFRAG, REMOTE_PWD)
    for n, (_, behaviour, _) in enumerate(MISBEHAVIOURS):
        address = (f"203.0.113.{n + 1}", 7000)
        if behaviour is not None:
            peer = Misbehaving(behaviour)
            net.attach(peer, [address])
            if n == 5:
                net.attach(peer, [("203.0.113.99", 7000)])
        a.add_remote(host_candidate(address, PREFERENCE - n, 1))
    world.start(a)
    world.run(a)
    assert a.when(ConnectionState.FAILED) == pytest.approx(3.0, abs=EPSILON)
    error = a.agent.error
    assert isinstance(error, ConnectionFailed)
    assert error.reason == "ICE failed: no valid pair for component 1 within 3 s"
    reports = error.pairs
    assert [r.remote.split()[2] for r in reports] == [
        f"203.0.113.{n + 1}:7000" for n in range(len(MISBEHAVIOURS))
    ]
    assert [r.reason for r in reports] == [reason for _, _, reason in MISBEHAVIOURS]
    assert all(r.state is PairState.FAILED for r in reports)
    lines = str(error).splitlines()
    assert lines[0] == error.reason and len(lines) == 1 + len(MISBEHAVIOURS)
    for line, (_, _, reason) in zip(lines[1:], MISBEHAVIOURS, strict=True):
        assert reason in line
    silent, wrong_key = reports[0], reports[-1]
    assert silent.requests_sent == 3 and silent.responses_received == 0  # at 0, 0.5, 1.5 s
    assert wrong_key.responses_received == 0
    assert a.agent.stats.dropped_unauthenticated == wrong_key.requests_sent


def test_a_pair_times_out_after_39_5_s_when_the_ice_timeout_is_longer() -> None:
    world = World()
    a = world.peer(PUBLIC, True, name="A", ice_timeout=45.0)
    a.agent.set_remote_credentials(REMOTE_UFRAG, REMOTE_PWD)
    a.add_remote(host_candidate(("203.0.113.1", 7000), PREFERENCE, 1))
    world.start(a)
    world.run(a)
    assert a.when(ConnectionState.FAILED) == pytest.approx(45.0, abs=EPSILON)
    (report,) = a.agent.error.pairs  # type: ignore[union-attr]
    assert report.state is PairState.FAILED
    assert report.reason == "no response after 7 transmissions in 39.5 s"
    assert report.requests_sent == 7
    assert "(7 sent, 0 answered)" in str(report)


def test_a_wrong_password_fails_both_sides_at_the_timeout_with_401_listed() -> None:
    """A signs its checks with a wrong password for B: B answers 401, so A never has a
    valid pair and never nominates; B's own checks work, so B has a valid pair that is
    never nominated. Both fail at exactly the ICE timeout, each saying why."""
    world = World()
    a = world.peer(PUBLIC, True, name="A", ice_timeout=5.0)
    b = world.peer(PUBLIC, False, name="B", ice_timeout=5.0)
    a.agent.set_remote_credentials(b.agent.local_ufrag, "wrongpasswordwrongpassword")
    for candidate in b.candidates:
        a.add_remote(candidate)
    a.signal_to(b)
    world.connect(a, b)
    for peer in (a, b):
        assert peer.when(ConnectionState.FAILED) == pytest.approx(5.0, abs=EPSILON)
    a_error, b_error = a.agent.error, b.agent.error
    assert a_error is not None and b_error is not None
    assert a_error.reason == "ICE failed: no valid pair for component 1 within 5 s"
    assert b_error.reason == "ICE failed: no nominated pair for component 1 within 5 s"
    ((a_report,), (b_report,)) = a_error.pairs, b_error.pairs
    assert a_report.reason == "401 Unauthorized" and a_report.state is PairState.FAILED
    assert b_report.state is PairState.SUCCEEDED and b_report.rtt == pytest.approx(0.01)
    assert "401 Unauthorized" in str(a_error)
    assert b.agent.stats.errors_sent == len(b.answers(401)) >= 1


def test_icmp_unreachable_is_listed() -> None:
    world = World()
    a = world.peer(PUBLIC, True, name="A", ice_timeout=2.0)
    a.agent.set_remote_credentials(REMOTE_UFRAG, REMOTE_PWD)
    remote = ("203.0.113.1", 7000)
    a.add_remote(host_candidate(remote, PREFERENCE, 1))
    world.start(a)
    world.net.run(until=0.1)
    a.agent.handle_unreachable(0.1, a.hosts[0], remote, "ICMP port unreachable")
    world.run(a)
    (report,) = a.agent.error.pairs  # type: ignore[union-attr]
    assert report.reason == "ICMP port unreachable" and report.state is PairState.FAILED


def test_the_peer_wrapper_and_the_bare_agent_see_the_same_thing() -> None:
    """The agent is itself a simnet endpoint; the Peer wrapper changes nothing it sees."""
    seen = []
    for wrapped in (False, True):
        net = Network()
        agent = (
            attached_agent(net)
            if not wrapped
            else make_agent(False, local_ufrag="agentufrag", local_pwd="agentpasswordagentpassword")
        )
        if wrapped:
            peer = Peer(agent)
            peer.host_on(net, AGENT, net.public)
            agent.set_remote_credentials(REMOTE_UFRAG, REMOTE_PWD)
        probe = Probe()
        net.attach(probe, [PROBE])
        probe.send(check(agent), PROBE, AGENT)
        net.run()
        seen.append([(m.cls, m.get(Attr.XOR_MAPPED_ADDRESS)) for m in answers(probe)])
    assert seen[0] == seen[1] == [(Class.SUCCESS, PROBE)]
