"""Helpers for the scenario tests of the sans-I/O :class:`ice.Agent` on the simulated
network of :mod:`tests.ice.simnet`.

- :class:`Peer` adapts an agent to simnet's endpoint protocol. It stamps every event and
  every datagram the agent sends with the virtual time (``events``, ``sent``: the
  wiretap the pacing tests read), gathers a server-reflexive candidate by really sending
  a STUN Binding request from the host address to a :class:`~tests.ice.simnet.StunResponder`
  through the NAT, and plays the client half of a relay.
- :class:`TurnRelay` stands in for a TURN server. It does not speak TURN: simnet has no TURN
  server and the agent needs none (it only sees a relayed candidate whose base is the
  relayed address). The client and the relay exchange tiny frames (``0xEE`` + kind +
  addresses + payload) over the real simulated path, through the client's NAT: allocate,
  send-to-peer, data-from-peer. Permissions are TURN's (RFC 8656 section 9: by peer IP
  address, ports ignored): a datagram from a peer reaches the client only after the client
  has sent to that peer's IP through the allocation - as if each first send were preceded
  by a CreatePermission answered at once. Allocations never expire, and the leg between
  client and relay has the latency of the links it crosses.
- :class:`World` builds a network with a STUN responder and a relay, puts peers on public
  hosts or behind NATs of any RFC 4787 behaviour, gathers their candidates, exchanges
  credentials and candidates, starts them and runs until both are connected or failed.
- :func:`path_expected` and friends are the NAT theory the matrix test checks the agent
  against, written independently of the agent.

Agents are never given the process-wide ``GLOBAL_PACER`` here: its clock is the real one.
"""

from __future__ import annotations

import itertools
import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import ice
from ice import Agent, Candidate, CandidatePair, CandidateType, ConnectionState, Event
from ice.gather import host_candidate, reflexive_candidate, relayed_candidate
from stun import Attr, Class, Message, Method, decode
from stun.errors import ParseError
from tests.ice.simnet import Address, Behavior, Datagram, Link, Network, Site, StunResponder

EI = Behavior.ENDPOINT_INDEPENDENT
AD = Behavior.ADDRESS_DEPENDENT
APD = Behavior.ADDRESS_AND_PORT_DEPENDENT
BEHAVIORS = (EI, AD, APD)
_SHORT = {EI: "EI", AD: "AD", APD: "APD"}

STUN_SERVER: Address = ("192.0.2.1", 3478)
TURN_SERVER: Address = ("192.0.2.100", 3478)
PREFERENCE = 65534  # the local preference of the first interface's IPv4 address

DONE = frozenset((ConnectionState.CONNECTED, ConnectionState.COMPLETED, ConnectionState.FAILED))
EPSILON = 1e-9
RETRIES = 10
"""Gathering requests sent (500 ms apart) before a test gives up on a server."""
MAX_EVENTS = 200_000
"""Far more than any scenario here needs (a failing 10 s run takes a few thousand)."""


# -- the relay -----------------------------------------------------------------------------

_FRAME = 0xEE
_ALLOCATE, _ALLOCATED, _SEND, _DATA = b"A", b"a", b"S", b"D"
_ADDRESS = struct.Struct("!4sH")


def _pack(address: Address) -> bytes:
    return _ADDRESS.pack(socket.inet_aton(address[0]), address[1])


def _unpack(data: bytes, offset: int) -> Address:
    raw, port = _ADDRESS.unpack_from(data, offset)
    return socket.inet_ntoa(raw), port


def _frame(kind: bytes, *parts: bytes) -> bytes:
    return bytes((_FRAME,)) + kind + b"".join(parts)


def _is_frame(data: bytes) -> bool:
    return len(data) >= 2 and data[0] == _FRAME


class _Allocation:
    __slots__ = ("client", "permissions", "relayed")

    def __init__(self, client: Address, relayed: Address) -> None:
        self.client = client
        self.relayed = relayed
        self.permissions: set[str] = set()


class TurnRelay:
    """A TURN server stand-in on ``address`` (see the module docstring); relayed addresses
    are ``address``'s IP with ports from ``first_port`` on. ``permissions=False`` lets
    every peer in, as if the client had installed permissions for the whole internet."""

    def __init__(
        self, net: Network, address: Address, *, permissions: bool = True, first_port: int = 50000
    ) -> None:
        self.net = net
        self.address = address
        self.permissions = permissions
        self.allocations: dict[Address, _Allocation] = {}
        self._by_client: dict[Address, _Allocation] = {}
        self._ports = itertools.count(first_port)
        self._out: list[Datagram] = []
        self.relayed_out = 0
        self.relayed_in = 0
        self.dropped_no_permission = 0
        self.dropped_other = 0
        net.attach(self, [address])

    def handle_datagram(
        self, now: float, data: bytes, /, *, local: Address, remote: Address
    ) -> None:
        if local == self.address:
            self._from_client(data, remote)
            return
        allocation = self.allocations.get(local)
        if allocation is None:
            self.dropped_other += 1
        elif self.permissions and remote[0] not in allocation.permissions:
            self.dropped_no_permission += 1
        else:
            self.relayed_in += 1
            frame = _frame(_DATA, _pack(remote), data)
            self._out.append(Datagram(frame, self.address, allocation.client))

    def _from_client(self, data: bytes, client: Address) -> None:
        if not _is_frame(data):
            self.dropped_other += 1
            return
        kind = data[1:2]
        allocation = self._by_client.get(client)
        if kind == _ALLOCATE:
            if allocation is None:
                relayed = (self.address[0], next(self._ports))
                allocation = _Allocation(client, relayed)
                self._by_client[client] = self.allocations[relayed] = allocation
                self.net.attach(self, [relayed])
            answer = _frame(_ALLOCATED, _pack(allocation.relayed), _pack(client))
            self._out.append(Datagram(answer, self.address, client))
        elif kind == _SEND and allocation is not None:
            peer = _unpack(data, 2)
            allocation.permissions.add(peer[0])
            self.relayed_out += 1
            self._out.append(Datagram(data[2 + _ADDRESS.size :], allocation.relayed, peer))
        else:
            self.dropped_other += 1

    def handle_timeout(self, now: float, /) -> None:
        """Never called: no timers."""

    def poll_transmits(self) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def poll_timeout(self) -> float | None:
        return None


# -- the peer ------------------------------------------------------------------------------


class Sent(NamedTuple):
    """A datagram the agent handed over, at virtual time ``time`` (before any relaying)."""

    time: float
    data: bytes
    local: Address
    remote: Address


class Check(NamedTuple):
    """The first transmission of one connectivity check (a Binding request)."""

    time: float
    transaction_id: bytes
    local: Address
    remote: Address
    message: Message


class Peer:
    """An :class:`ice.Agent` as a simnet endpoint, with a wiretap, gathering and a relay
    client. Drive the agent through the peer (``start``, ``add_remote``...) or directly
    between two :meth:`Network.run` calls (simnet polls every endpoint when it runs)."""

    def __init__(self, agent: Agent, name: str = "peer") -> None:
        self.agent = agent
        self.name = name
        self.now = 0.0
        self.hosts: list[Address] = []
        self.candidates: list[Candidate] = []
        """The local candidates the agent accepted, in the order gathered (to signal)."""
        self.sent: list[Sent] = []
        self.received: list[Sent] = []
        """What the agent was handed (relayed datagrams with the relayed address as local)."""
        self.events: list[tuple[float, Event]] = []
        self.started_at: float | None = None
        self.relays: dict[Address, tuple[Address, Address]] = {}
        """relayed address -> (the host base it was allocated from, the relay server)."""
        self._out: list[Datagram] = []
        self._gathering: dict[bytes, Address | None] = {}
        self._allocating: dict[Address, tuple[Address, Address] | None] = {}

    def __repr__(self) -> str:
        return f"<Peer {self.name} {self.agent.state}>"

    # -- the endpoint protocol ---------------------------------------------------------------

    def handle_datagram(
        self, now: float, data: bytes, /, *, local: Address, remote: Address
    ) -> None:
        self.now = now
        if _is_frame(data) and (
            remote in self._allocating or any(s == remote for _, s in self.relays.values())
        ):
            self._from_relay(data, local, remote)
        elif not self._gathered(data):
            self._deliver(data, local, remote)

    def handle_timeout(self, now: float, /) -> None:
        self.now = now
        self.agent.handle_timeout(now)
        self._drain()

    def poll_transmits(self) -> list[Datagram]:
        out, self._out = self._out, []
        for transmit in self.agent.poll_transmits():
            self.sent.append(Sent(self.now, *transmit))
            relay = self.relays.get(transmit.local)
            if relay is None:
                out.append(Datagram(*transmit))
            else:
                base, server = relay
                frame = _frame(_SEND, _pack(transmit.remote), transmit.data)
                out.append(Datagram(frame, base, server))
        return out

    def poll_timeout(self) -> float | None:
        return self.agent.poll_timeout()

    def _deliver(self, data: bytes, local: Address, remote: Address) -> None:
        self.received.append(Sent(self.now, data, local, remote))
        self.agent.handle_datagram(self.now, data, local=local, remote=remote)
        self._drain()

    def _drain(self) -> None:
        agent, now, events = self.agent, self.now, self.events
        while (event := agent.poll_event()) is not None:
            events.append((now, event))

    # -- candidates ----------------------------------------------------------------------------

    def add_local(self, candidate: Candidate) -> bool:
        """Offer the agent a local candidate; remember it for signalling if it took it."""
        taken = self.agent.add_local_candidate(candidate)
        if taken:
            self.candidates.append(candidate)
        return taken

    def add_host(
        self, net: Network, site: Site, *, preference: int = PREFERENCE, component: int = 1
    ) -> Candidate:
        """A fresh host address on ``site`` and its host candidate."""
        address = net.add_host(self, site, port=5000)
        return self.host_on(net, address, site, preference=preference, component=component)

    def host_on(
        self,
        net: Network,
        address: Address,
        site: Site,
        *,
        preference: int = PREFERENCE,
        component: int = 1,
    ) -> Candidate:
        """Attach ``address`` to this peer on ``site`` (unless attached) and add its host
        candidate for ``component``."""
        if address not in site.hosts:
            net.attach(self, [address], site)
        if address not in self.hosts:
            self.hosts.append(address)
        candidate = host_candidate(address, preference, component)
        self.add_local(candidate)
        return candidate

    def gather_srflx(
        self,
        net: Network,
        base: Address,
        server: Address = STUN_SERVER,
        *,
        preference: int = PREFERENCE,
    ) -> Candidate:
        """Send a Binding request from ``base`` to ``server`` through the network and add
        the server-reflexive candidate the answer names (the agent may call it redundant)."""
        rng = random.Random(f"{self.name}/gather/{len(self.candidates)}/{net.now}")
        request = Message(Method.BINDING, Class.REQUEST, rng.randbytes(12)).encode(fingerprint=True)
        tid = request[8:20]
        self._gathering[tid] = None
        for _ in range(RETRIES):  # sent again every 500 ms, as over a lossy network
            if self._gathering[tid] is not None:
                break
            self._out.append(Datagram(request, base, server))
            net.run(stop=lambda: self._gathering[tid] is not None, until=net.now + 0.5)
        mapped = self._gathering.pop(tid)
        if mapped is None:
            raise AssertionError(f"{self.name}: no answer from the STUN server {server}")
        uri = f"stun:{server[0]}:{server[1]}"
        candidate = reflexive_candidate(mapped, base, preference, 1, uri)
        self.add_local(candidate)
        return candidate

    def _gathered(self, data: bytes) -> bool:
        if not self._gathering or len(data) < 20 or data[8:20] not in self._gathering:
            return False
        try:
            answer = decode(data)
        except ParseError:
            return False
        if answer.cls is not Class.SUCCESS:
            return False
        self._gathering[answer.transaction_id] = answer.get(Attr.XOR_MAPPED_ADDRESS)
        return True

    def allocate(
        self,
        net: Network,
        base: Address,
        server: Address = TURN_SERVER,
        *,
        preference: int = PREFERENCE,
    ) -> Candidate:
        """Allocate a relayed address on the :class:`TurnRelay` at ``server`` from ``base``
        and add the relayed candidate."""
        self._allocating[server] = None
        for _ in range(RETRIES):
            if self._allocating[server] is not None:
                break
            self._out.append(Datagram(_frame(_ALLOCATE), base, server))
            net.run(stop=lambda: self._allocating[server] is not None, until=net.now + 0.5)
        answer = self._allocating.pop(server)
        if answer is None:
            raise AssertionError(f"{self.name}: no allocation from {server}")
        relayed, mapped = answer
        self.relays[relayed] = (base, server)
        uri = f"turn:{server[0]}:{server[1]}"
        candidate = relayed_candidate(relayed, mapped, preference, 1, uri)
        self.add_local(candidate)
        return candidate

    def _from_relay(self, data: bytes, local: Address, server: Address) -> None:
        kind = data[1:2]
        if kind == _ALLOCATED and server in self._allocating:
            self._allocating[server] = (_unpack(data, 2), _unpack(data, 2 + _ADDRESS.size))
        elif kind == _DATA:
            relayed = next(
                r for r, (base, s) in self.relays.items() if s == server and base == local
            )
            peer = _unpack(data, 2)
            self._deliver(data[2 + _ADDRESS.size :], relayed, peer)

    # -- driving -------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self.now = now
        self.started_at = now
        self.agent.start(now)
        self._drain()

    def add_remote(self, candidate: Candidate | None) -> None:
        self.agent.add_remote_candidate(candidate)
        self._drain()

    def signal_to(self, other: Peer, *, ta: bool = True, candidates: bool = True) -> None:
        """Give ``other`` this peer's credentials (and proposed Ta, unless ``ta`` is false)
        and, with ``candidates``, every candidate gathered so far."""
        agent = self.agent
        other.agent.set_remote_credentials(
            agent.local_ufrag, agent.local_pwd, ta=agent.proposed_ta if ta else None
        )
        if candidates:
            for candidate in self.candidates:
                other.add_remote(candidate)

    # -- what happened -----------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self.agent.state

    @property
    def done(self) -> bool:
        return self.agent.state in DONE

    def when(self, state: ConnectionState) -> float | None:
        """When the agent first entered ``state``."""
        for time, event in self.events:
            if isinstance(event, ice.ConnectionStateChanged) and event.state is state:
                return time
        return None

    @property
    def selected(self) -> CandidatePair | None:
        return self.agent.selected.get(1)

    def of(self, kind: type[Any]) -> list[tuple[float, Any]]:
        """The events of one type, with their times."""
        return [(t, e) for t, e in self.events if isinstance(e, kind)]

    def checks(self) -> list[Check]:
        """The first transmission of every Binding request the agent sent: its new
        transactions, without retransmissions, responses or error responses."""
        seen: set[bytes] = set()
        out: list[Check] = []
        for sent in self.sent:
            message = decode(sent.data)
            if message.cls is Class.REQUEST and message.transaction_id not in seen:
                seen.add(message.transaction_id)
                out.append(
                    Check(sent.time, message.transaction_id, sent.local, sent.remote, message)
                )
        return out

    def transmissions(self, transaction_id: bytes) -> list[float]:
        """The times at which the request ``transaction_id`` was sent (first and retries)."""
        return [s.time for s in self.sent if s.data[8:20] == transaction_id and s.data[0] == 0]

    def answers(self, code: int | None = None) -> list[Message]:
        """The responses the agent sent (successes, or the errors with ``code``)."""
        out: list[Message] = []
        for sent in self.sent:
            message = decode(sent.data)
            if (message.cls is Class.SUCCESS and code is None) or (
                message.cls is Class.ERROR
                and code is not None
                and message.get(Attr.ERROR_CODE)[0] == code
            ):
                out.append(message)
        return out


def make_agent(controlling: bool, seed: int = 0, **options: Any) -> Agent:
    """An agent with deterministic randomness and, unless given, no process-wide pacer."""
    options.setdefault("pacer", None)
    options.setdefault("rng", random.Random(f"agent/{seed}/{controlling}"))
    return Agent(controlling, **options)


# -- where peers live ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """A public host (``mapping`` None) or a host behind a NAT with these RFC 4787
    behaviours."""

    mapping: Behavior | None = None
    filtering: Behavior | None = None

    @property
    def public(self) -> bool:
        return self.mapping is None

    def __str__(self) -> str:
        if self.mapping is None or self.filtering is None:
            return "public"
        return f"{_SHORT[self.mapping]}M-{_SHORT[self.filtering]}F"


PUBLIC = Kind()
NAT_KINDS = tuple(Kind(m, f) for m in BEHAVIORS for f in BEHAVIORS)
KINDS = (PUBLIC, *NAT_KINDS)


class World:
    """A network with a STUN responder at :data:`STUN_SERVER`, a :class:`TurnRelay` at
    :data:`TURN_SERVER` and peers placed on it (each NAT on its own private subnet)."""

    def __init__(
        self,
        seed: int = 0,
        *,
        trace: bool = False,
        internet: Link | None = None,
        permissions: bool = True,
    ) -> None:
        self.seed = seed
        self.net = Network(seed, trace=trace)
        if internet is not None:
            self.net.internet = internet
        self.stun = StunResponder()
        self.net.attach(self.stun, [STUN_SERVER])
        self.turn = TurnRelay(self.net, TURN_SERVER, permissions=permissions)
        self._subnets = itertools.count(1)
        self.peers: list[Peer] = []

    def site(self, kind: Kind) -> Site:
        if kind.mapping is None or kind.filtering is None:
            return self.net.public
        return self.net.nat_site(kind.mapping, kind.filtering, subnet=f"10.{next(self._subnets)}.0")

    def peer(
        self,
        kind: Kind,
        controlling: bool,
        *,
        srflx: bool = True,
        relay: bool = False,
        name: str | None = None,
        **options: Any,
    ) -> Peer:
        """A peer on a fresh host of a new site of ``kind`` with its candidates gathered:
        host, server-reflexive (behind a NAT, with ``srflx``) and relayed (with ``relay``)."""
        name = name or f"{'controlling' if controlling else 'controlled'}-{len(self.peers)}"
        agent = make_agent(controlling, self.seed * 1000 + len(self.peers), **options)
        peer = Peer(agent, name)
        self.peers.append(peer)
        site = self.site(kind)
        host = peer.add_host(self.net, site)
        if srflx and not kind.public:
            peer.gather_srflx(self.net, host.address)
        if relay:
            peer.allocate(self.net, host.address)
        return peer

    def pair(
        self,
        a: Kind,
        b: Kind,
        *,
        relay_a: bool = False,
        relay_b: bool = False,
        a_options: dict[str, Any] | None = None,
        b_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> tuple[Peer, Peer]:
        """A controlling peer of kind ``a`` and a controlled one of kind ``b`` that have
        exchanged credentials and candidates (``options`` go to both agents)."""
        left = self.peer(a, True, relay=relay_a, name="A", **(options | (a_options or {})))
        right = self.peer(b, False, relay=relay_b, name="B", **(options | (b_options or {})))
        left.signal_to(right)
        right.signal_to(left)
        return left, right

    def start(self, *peers: Peer) -> None:
        for peer in peers:
            peer.start(self.net.now)

    def run(self, *peers: Peer, limit: float = 60.0, max_events: int = MAX_EVENTS) -> None:
        """Run until every peer given is connected or failed, or ``limit`` seconds pass.

        More than ``max_events`` events raise :class:`~tests.ice.simnet.EventLimitExceeded`:
        an agent whose ``poll_timeout`` stays in the past spins the network in place."""
        self.net.run(
            until=self.net.now + limit,
            stop=lambda: all(p.done for p in peers),
            max_events=max_events,
        )

    def connect(
        self, a: Peer, b: Peer, *, limit: float = 60.0, max_events: int = MAX_EVENTS
    ) -> None:
        """Start both and run until both are done."""
        self.start(a, b)
        self.run(a, b, limit=limit, max_events=max_events)


# -- the NAT theory ------------------------------------------------------------------------


def _reaches(receiver: Kind, sender: Kind) -> bool:
    """Can the first check of ``sender`` to ``receiver``'s advertised (server-reflexive)
    address get through ``receiver``'s NAT? The receiver's own checks open its NAT
    toward the sender's NAT's IP (and toward the sender's advertised address)."""
    if receiver.public:
        return True
    if receiver.mapping is EI:
        # the advertised mapping is the one that sends to the sender: closed only to a
        # sender port it never sent to, i.e. a port-filtering receiver and a sender
        # whose ports toward it differ from its advertised one
        return receiver.filtering is not APD or sender.public or sender.mapping is EI
    # the advertised mapping only ever talked to the STUN server
    return receiver.filtering is EI


def _answers_back(sender: Kind, receiver: Kind) -> bool:
    """Once the receiver saw the sender's check, do its checks back (from its peer-facing
    mapping) get through the sender's NAT, which has sent to the receiver's advertised
    address only?"""
    if sender.public or receiver.public or receiver.mapping is EI:
        return True
    return sender.filtering is not APD


def _consistent(kind: Kind) -> bool:
    """One external port per peer IP (or no NAT at all)."""
    return kind.public or kind.mapping is not APD


def path_expected(a: Kind, b: Kind) -> bool:
    """Whether ICE with host and server-reflexive candidates finds a direct path.

    Hole punching needs the checks of one side to get in (``_reaches``) and the triggered
    checks back to get in too (``_answers_back``); it cannot work between two NATs that
    both map per remote port: every answer leaves from yet another port, so no response
    ever comes back from where its request went.
    """
    if not (_consistent(a) or _consistent(b)):
        return False
    return (_reaches(b, a) and _answers_back(a, b)) or (_reaches(a, b) and _answers_back(b, a))


def local_type(kind: Kind) -> CandidateType:
    """The type of the local candidate of this side's end of a direct path: how the other
    side sees it (its host address, its advertised mapping or a mapping learned from a
    check)."""
    if kind.public:
        return CandidateType.HOST
    return CandidateType.SRFLX if kind.mapping is EI else CandidateType.PRFLX


def kind_pairs() -> Iterator[tuple[Kind, Kind]]:
    for a in KINDS:
        for b in KINDS:
            yield a, b
