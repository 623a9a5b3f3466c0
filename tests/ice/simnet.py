"""A deterministic simulated UDP network with a virtual clock, for driving sans-I/O endpoints.

Endpoints (ICE agents, :class:`StunResponder`, :class:`Probe`) live on sites (:class:`Site`):
public sites put hosts directly on the internet, NAT sites put them on a private LAN behind
one :class:`Nat` (RFC 4787 mapping and filtering). :meth:`Network.run` advances the clock from
event to event: datagram deliveries and endpoint timeouts, earliest first, ties in the order
they were scheduled. Latency, jitter, loss and duplication come from links (:class:`Link`);
they and the NATs' ports are drawn from generators seeded by the network's seed, so a
run is a function of its seed::

    net = Network(seed=1)
    server = net.add_host(StunResponder(), port=3478)
    home = net.nat_site(mapping=Behavior.ADDRESS_DEPENDENT)
    probe = Probe()
    local = net.add_host(probe, home)
    probe.send(request_bytes, local, server)
    net.run()
    # probe.received[0].remote == server; the XOR-MAPPED-ADDRESS is on home.nat.public_ip
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol

from stun import Behavior, StunServer

__all__ = [
    "Address",
    "Behavior",
    "Datagram",
    "Endpoint",
    "EventLimitExceeded",
    "Fate",
    "Link",
    "Nat",
    "Network",
    "Packet",
    "Probe",
    "Received",
    "Record",
    "Site",
    "StunResponder",
    "Transmit",
]

Address = tuple[str, int]


class Transmit(Protocol):
    """An outgoing datagram: ``data`` from the endpoint's own ``local`` address to ``remote``."""

    @property
    def data(self) -> bytes: ...
    @property
    def local(self) -> Address: ...
    @property
    def remote(self) -> Address: ...


class Endpoint(Protocol):
    """The sans-I/O interface the network drives (times are absolute virtual seconds)."""

    def handle_datagram(
        self, now: float, data: bytes, /, *, local: Address, remote: Address
    ) -> None: ...
    def handle_timeout(self, now: float, /) -> None: ...
    def poll_transmits(self) -> Iterable[Transmit]: ...
    def poll_timeout(self) -> float | None: ...


class Fate(StrEnum):
    """What became of a datagram; also the keys of :attr:`Network.stats`."""

    DELIVERED = "delivered"
    LOSS = "dropped-loss"
    FILTER = "dropped-filter"
    NO_MAPPING = "dropped-no-mapping"
    NO_ROUTE = "dropped-no-route"
    HAIRPIN = "dropped-hairpin"
    HOOK = "dropped-hook"
    MISROUTED = "misrouted"


class Packet(NamedTuple):
    """A datagram as sent, before any NAT: what :attr:`Network.drop_if` is shown."""

    data: bytes
    src: Address
    dst: Address


class Record(NamedTuple):
    """One trace entry: the addresses are the packet's where its fate was decided."""

    time: float
    src: Address
    dst: Address
    size: int
    fate: Fate


class EventLimitExceeded(RuntimeError):
    """:meth:`Network.run` processed ``max_events`` events without finishing: a runaway loop."""


@dataclass(frozen=True, slots=True)
class Link:
    """One-way impairments: delay is ``latency`` plus uniform ``jitter`` (which reorders);
    ``loss`` and ``duplicate`` are probabilities (a duplicate arrives slightly later)."""

    latency: float = 0.005
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter cannot be negative")
        if not (0 <= self.loss <= 1 and 0 <= self.duplicate <= 1):
            raise ValueError("loss and duplicate are probabilities")


LAN = Link(latency=0.0005)
"""The default link within a NAT site."""


class _Mapping:
    """One NAT binding: internal address to external port, and whom it has sent to."""

    __slots__ = ("expires", "internal", "key", "peer_ips", "peers", "port")

    def __init__(self, key: object, internal: Address, port: int) -> None:
        self.key = key
        self.internal = internal
        self.port = port
        self.expires = 0.0
        self.peers: set[Address] = set()
        self.peer_ips: set[str] = set()


class Nat:
    """A NAT with one public IP, as RFC 4787 describes it; made by :meth:`Network.nat_site`.

    ``mapping`` decides when an outbound packet reuses a mapping: same internal address
    (endpoint-independent), also same remote IP (address-dependent), also same remote port
    (address-and-port-dependent). ``filtering`` decides which inbound packets a mapping
    lets in: any, only from IPs it has sent to, only from addresses it has sent to. A
    mapping lives ``lifetime`` seconds after its last outbound packet. External ports are
    drawn from ``rng``; with ``port_preservation`` the internal port is used when free.
    """

    __slots__ = (
        "_by_key",
        "_by_port",
        "_rng",
        "filtering",
        "hairpin",
        "lifetime",
        "mapping",
        "port_preservation",
        "public_ip",
    )

    def __init__(
        self,
        public_ip: str,
        rng: random.Random,
        *,
        mapping: Behavior = Behavior.ENDPOINT_INDEPENDENT,
        filtering: Behavior = Behavior.ENDPOINT_INDEPENDENT,
        hairpin: bool = False,
        lifetime: float = 120.0,
        port_preservation: bool = False,
    ) -> None:
        self.public_ip = public_ip
        self.mapping = mapping
        self.filtering = filtering
        self.hairpin = hairpin
        self.lifetime = lifetime
        self.port_preservation = port_preservation
        self._rng = rng
        self._by_key: dict[object, _Mapping] = {}
        self._by_port: dict[int, _Mapping] = {}

    def outbound(self, now: float, internal: Address, remote: Address) -> Address:
        """Map (creating or refreshing) a packet from ``internal`` to ``remote``; its new source."""
        if self.mapping is Behavior.ENDPOINT_INDEPENDENT:
            key: object = internal
        elif self.mapping is Behavior.ADDRESS_DEPENDENT:
            key = (internal, remote[0])
        else:
            key = (internal, remote)
        found = self._live(self._by_key.get(key), now)
        if found is None:
            found = _Mapping(key, internal, self._free_port(now, internal[1]))
            self._by_key[key] = self._by_port[found.port] = found
        found.expires = now + self.lifetime
        found.peers.add(remote)
        found.peer_ips.add(remote[0])
        return self.public_ip, found.port

    def inbound(self, now: float, remote: Address, port: int) -> Address | Fate:
        """Where a packet from ``remote`` to ``port`` goes (internal address), or why not."""
        found = self._live(self._by_port.get(port), now)
        if found is None:
            return Fate.NO_MAPPING
        if (self.filtering is Behavior.ADDRESS_DEPENDENT and remote[0] not in found.peer_ips) or (
            self.filtering is Behavior.ADDRESS_AND_PORT_DEPENDENT and remote not in found.peers
        ):
            return Fate.FILTER
        return found.internal

    def _live(self, found: _Mapping | None, now: float) -> _Mapping | None:
        """``found`` unless it has expired, in which case it is removed."""
        if found is not None and found.expires <= now:
            del self._by_key[found.key], self._by_port[found.port]
            return None
        return found

    def _free_port(self, now: float, preferred: int) -> int:
        if self.port_preservation and self._live(self._by_port.get(preferred), now) is None:
            return preferred
        while True:
            port = self._rng.randint(1024, 65535)
            if self._live(self._by_port.get(port), now) is None:
                return port


class Site:
    """Where hosts live: the public internet (``nat`` None) or a private LAN behind ``nat``.

    ``lan`` impairs traffic between two hosts of the site (None: the network's internet link).
    """

    __slots__ = ("_next_host", "hosts", "ips", "lan", "name", "nat", "subnet")

    def __init__(self, name: str, nat: Nat | None, lan: Link | None, subnet: str = "") -> None:
        self.name = name
        self.nat = nat
        self.lan = lan
        self.subnet = subnet
        self.hosts: dict[Address, _Node] = {}
        self.ips: set[str] = set()
        self._next_host = 2

    def __repr__(self) -> str:
        return f"<Site {self.name}>"


class _Node:
    """An attached endpoint, the addresses it owns and its timer's heap entry."""

    __slots__ = ("addresses", "deadline", "endpoint", "timer_seq")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.addresses: dict[Address, Site] = {}
        self.deadline: float | None = None
        self.timer_seq = -1


class _Flight(NamedTuple):
    """A datagram on its way to ``dst`` on ``site``, from ``src`` as the receiver will see it."""

    site: Site
    src: Address
    dst: Address
    data: bytes


class Network:
    """The simulated network: sites, attached endpoints, a virtual clock and the event loop.

    ``now`` starts at 0.0. ``internet`` impairs traffic between sites (see :meth:`set_link`);
    ``drop_if`` drops every packet it returns True for. ``stats`` counts ``"sent"``,
    ``"duplicated"`` and every :class:`Fate`; ``log`` holds a :class:`Record` per fate when
    ``trace`` is on. ``public`` is the default site of :meth:`attach` and :meth:`add_host`.
    """

    def __init__(self, seed: int = 0, *, trace: bool = False) -> None:
        self.now = 0.0
        self.internet = Link()
        self.drop_if: Callable[[Packet], bool] | None = None
        self.stats: Counter[str] = Counter()
        self.log: list[Record] = []
        self._trace = trace
        self._seed = seed
        self._rng = random.Random(seed)
        self._heap: list[tuple[float, int, _Node | _Flight]] = []
        self._seq = itertools.count()
        self._nodes: dict[int, _Node] = {}
        self._public_ips: dict[str, Site] = {}
        self._links: dict[tuple[Site, Site], Link] = {}
        self._fresh_public = (f"198.51.{n // 250}.{n % 250 + 1}" for n in itertools.count())
        self._sites = 0
        self.public = self.public_site()

    # -- topology ------------------------------------------------------------------------

    def public_site(self, lan: Link | None = None) -> Site:
        """A new group of hosts on public addresses (one site suffices unless links differ)."""
        return self._site(None, lan, "")

    def nat_site(
        self,
        mapping: Behavior = Behavior.ENDPOINT_INDEPENDENT,
        filtering: Behavior = Behavior.ENDPOINT_INDEPENDENT,
        *,
        hairpin: bool = False,
        lifetime: float = 120.0,
        port_preservation: bool = False,
        public_ip: str | None = None,
        subnet: str = "10.0.0",
        lan: Link = LAN,
    ) -> Site:
        """A new private LAN behind a :class:`Nat` (see there for the options).

        Hosts get addresses ``{subnet}.2``, ``{subnet}.3``, ...; sites may share a subnet.
        The NAT's ports come from its own rng, seeded by the network's seed and its IP.
        """
        ip = self._claim_public_ip(public_ip)
        nat = Nat(
            ip,
            random.Random(f"{self._seed}/{ip}"),
            mapping=mapping,
            filtering=filtering,
            hairpin=hairpin,
            lifetime=lifetime,
            port_preservation=port_preservation,
        )
        site = self._site(nat, lan, subnet)
        self._public_ips[ip] = site
        return site

    def set_link(self, a: Site, b: Site, link: Link) -> None:
        """Impair traffic between sites ``a`` and ``b`` (both ways) with ``link``."""
        self._links[a, b] = self._links[b, a] = link

    def attach(
        self, endpoint: Endpoint, addresses: Iterable[Address], site: Site | None = None
    ) -> None:
        """Give ``endpoint`` the host ``addresses`` on ``site`` (default :attr:`public`)."""
        site = self.public if site is None else site
        node = self._nodes.get(id(endpoint))
        if node is None:
            node = self._nodes[id(endpoint)] = _Node(endpoint)
        for address in addresses:
            ip = address[0]
            if address in site.hosts or address in node.addresses:
                raise ValueError(f"{address} is already attached")
            if site.nat is None and self._public_ips.get(ip, site) is not site:
                raise ValueError(f"{ip} is already in use on the public internet")
            site.hosts[address] = node
            site.ips.add(ip)
            node.addresses[address] = site
            if site.nat is None:
                self._public_ips[ip] = site

    def add_host(self, endpoint: Endpoint, site: Site | None = None, port: int = 5000) -> Address:
        """Attach ``endpoint`` on a fresh IP of ``site`` (default :attr:`public`); its address."""
        site = self.public if site is None else site
        if site.nat is None:
            ip = self._claim_public_ip(None)
        elif site._next_host > 254:
            raise ValueError(f"{site} has no free address left in {site.subnet}.0/24")
        else:
            ip = f"{site.subnet}.{site._next_host}"
            site._next_host += 1
        self.attach(endpoint, [(ip, port)], site)
        return ip, port

    def _site(self, nat: Nat | None, lan: Link | None, subnet: str) -> Site:
        self._sites += 1
        return Site(f"{'nat' if nat else 'public'}{self._sites}", nat, lan, subnet)

    def _claim_public_ip(self, ip: str | None) -> str:
        if ip is None:
            ip = next(self._fresh_public)
            while ip in self._public_ips:
                ip = next(self._fresh_public)
        elif ip in self._public_ips:
            raise ValueError(f"{ip} is already in use on the public internet")
        return ip

    # -- the event loop ------------------------------------------------------------------

    def run(
        self,
        until: float | None = None,
        *,
        stop: Callable[[], bool] | None = None,
        max_events: int = 1_000_000,
    ) -> int:
        """Process events in time order; return how many.

        Ends when ``stop()`` is true (checked before the first event and after each), when
        the next event lies beyond ``until`` (``now`` is then ``until``; events at ``until``
        are processed), or when nothing is scheduled. More than ``max_events`` events raise
        :class:`EventLimitExceeded`. Endpoints are first polled for transmits and timeouts,
        so calls made on them between runs take effect.
        """
        if until is not None and until < self.now:
            raise ValueError(f"until={until} is before now={self.now}: time never goes back")
        for node in self._nodes.values():
            self._poll(node)
        heap = self._heap
        events = 0
        while stop is None or not stop():
            while heap and isinstance(entry := heap[0][2], _Node) and entry.timer_seq != heap[0][1]:
                heapq.heappop(heap)  # a deadline the endpoint has since moved
            if not heap or (until is not None and heap[0][0] > until):
                if until is not None:
                    self.now = until
                return events
            if events == max_events:
                raise EventLimitExceeded(
                    f"more than {max_events} events by t={self.now:.6f}s: a runaway loop?"
                )
            events += 1
            time, _, item = heapq.heappop(heap)
            self.now = time
            if isinstance(item, _Node):
                item.deadline, item.timer_seq = None, -1
                item.endpoint.handle_timeout(time)
                self._poll(item)
            else:
                self._arrive(item)
        return events

    def _poll(self, node: _Node) -> None:
        """Send what ``node`` has queued and (re)schedule its timer."""
        for transmit in node.endpoint.poll_transmits():
            self._send(node, transmit)
        deadline = node.endpoint.poll_timeout()
        if deadline != node.deadline:
            node.deadline = deadline
            node.timer_seq = seq = next(self._seq)
            if deadline is not None:
                heapq.heappush(self._heap, (max(deadline, self.now), seq, node))

    def _send(self, node: _Node, transmit: Transmit) -> None:
        self.stats["sent"] += 1
        data, local, dst = transmit.data, transmit.local, transmit.remote
        site = node.addresses.get(local)
        if site is None:
            return self._drop(Fate.MISROUTED, local, dst, data)
        if self.drop_if is not None and self.drop_if(Packet(data, local, dst)):
            return self._drop(Fate.HOOK, local, dst, data)
        nat = site.nat
        src = local
        if dst[0] in site.ips:
            dst_site: Site | None = site
        else:
            if nat is not None:
                src = nat.outbound(self.now, local, dst)
            dst_site = self._public_ips.get(dst[0])
            if dst_site is site and nat is not None and not nat.hairpin:
                return self._drop(Fate.HAIRPIN, src, dst, data)
        if dst_site is None:
            return self._drop(Fate.NO_ROUTE, src, dst, data)
        if dst_site is site:
            link = site.lan or self.internet
        else:
            link = self._links.get((site, dst_site), self.internet)
        rng = self._rng
        if link.loss and rng.random() < link.loss:
            return self._drop(Fate.LOSS, src, dst, data)
        delay = link.latency + rng.uniform(0.0, link.jitter) if link.jitter else link.latency
        flight = _Flight(dst_site, src, dst, data)
        heapq.heappush(self._heap, (self.now + delay, next(self._seq), flight))
        if link.duplicate and rng.random() < link.duplicate:
            self.stats["duplicated"] += 1
            later = self.now + delay + rng.uniform(0.0, link.latency)
            heapq.heappush(self._heap, (later, next(self._seq), flight))

    def _arrive(self, flight: _Flight) -> None:
        site, src, dst, data = flight
        nat = site.nat
        if nat is not None and dst[0] == nat.public_ip:
            internal = nat.inbound(self.now, src, dst[1])
            if isinstance(internal, Fate):
                return self._drop(internal, src, dst, data)
            dst = internal
        node = site.hosts.get(dst)
        if node is None:
            return self._drop(Fate.NO_ROUTE, src, dst, data)
        self.stats[Fate.DELIVERED] += 1
        if self._trace:
            self.log.append(Record(self.now, src, dst, len(data), Fate.DELIVERED))
        node.endpoint.handle_datagram(self.now, data, local=dst, remote=src)
        self._poll(node)

    def _drop(self, fate: Fate, src: Address, dst: Address, data: bytes) -> None:
        self.stats[fate] += 1
        if self._trace:
            self.log.append(Record(self.now, src, dst, len(data), fate))


# -- endpoints for tests -------------------------------------------------------------------


class Datagram(NamedTuple):
    """A :class:`Transmit` of the endpoints below."""

    data: bytes
    local: Address
    remote: Address


class Received(NamedTuple):
    """A datagram a :class:`Probe` received at ``time``."""

    time: float
    data: bytes
    local: Address
    remote: Address


class StunResponder:
    """A STUN server endpoint: :class:`stun.StunServer` answering on whatever it is attached to.

    Binding successes carry the source as this host saw it (after any NAT) in
    XOR-MAPPED-ADDRESS; give it an RFC 5780 ``server`` and attach all four addresses to
    have it honour CHANGE-REQUEST.
    """

    def __init__(self, server: StunServer | None = None) -> None:
        self.server = StunServer() if server is None else server
        self._out: list[Transmit] = []

    def handle_datagram(self, now: float, data: bytes, local: Address, remote: Address) -> None:
        response = self.server.handle_datagram(data, local, remote)
        if response is not None:
            self._out.append(response)

    def handle_timeout(self, now: float) -> None:
        """Never called: the responder keeps no timers."""

    def poll_transmits(self) -> list[Transmit]:
        out, self._out = self._out, []
        return out

    def poll_timeout(self) -> float | None:
        return None


class Probe:
    """A scriptable endpoint: sends datagrams at the times given, records all it receives."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scheduled: list[tuple[float, int, Datagram]] = []
        self._due: list[Datagram] = []
        self._seq = itertools.count()

    def send(self, data: bytes, local: Address, remote: Address, at: float = 0.0) -> None:
        """Send ``data`` at virtual time ``at`` (a past time: as soon as the network runs)."""
        heapq.heappush(self._scheduled, (at, next(self._seq), Datagram(data, local, remote)))

    def handle_datagram(self, now: float, data: bytes, local: Address, remote: Address) -> None:
        self.received.append(Received(now, data, local, remote))

    def handle_timeout(self, now: float) -> None:
        while self._scheduled and self._scheduled[0][0] <= now:
            self._due.append(heapq.heappop(self._scheduled)[2])

    def poll_transmits(self) -> list[Datagram]:
        due, self._due = self._due, []
        return due

    def poll_timeout(self) -> float | None:
        return self._scheduled[0][0] if self._scheduled else None
