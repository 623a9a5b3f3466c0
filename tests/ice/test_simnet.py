"""The simulated network: routing, RFC 4787 NAT behaviours, impairments and the event loop."""

from __future__ import annotations

import pytest

from stun import Attr, Class, Message, Method, ParseError, StunServer, decode
from tests.ice.simnet import (
    Address,
    Behavior,
    Datagram,
    EventLimitExceeded,
    Fate,
    Link,
    Network,
    Probe,
    Record,
    Site,
    StunResponder,
)

EI = Behavior.ENDPOINT_INDEPENDENT
AD = Behavior.ADDRESS_DEPENDENT
APD = Behavior.ADDRESS_AND_PORT_DEPENDENT

S1 = ("192.0.2.1", 3478)
S1_ALT_PORT = ("192.0.2.1", 3479)
S2 = ("192.0.2.2", 3478)
S2_ALT_PORT = ("192.0.2.2", 3479)


class Echo:
    """Sends every datagram back where it came from; ``out`` may be primed to start a game."""

    def __init__(self) -> None:
        self.out: list[Datagram] = []
        self.count = 0

    def handle_datagram(self, now: float, data: bytes, local: Address, remote: Address) -> None:
        self.count += 1
        self.out.append(Datagram(data, local, remote))

    def handle_timeout(self, now: float) -> None:
        """Never called: no timers."""

    def poll_transmits(self) -> list[Datagram]:
        out, self.out = self.out, []
        return out

    def poll_timeout(self) -> float | None:
        return None


class Pinger:
    """Sends a Binding request to ``target`` every ``interval`` seconds, from ``interval`` on."""

    def __init__(self, local: Address, target: Address, interval: float) -> None:
        self.local, self.target, self.interval = local, target, interval
        self.next = interval
        self.out: list[Datagram] = []
        self.answers = 0

    def handle_datagram(self, now: float, data: bytes, local: Address, remote: Address) -> None:
        self.answers += 1

    def handle_timeout(self, now: float) -> None:
        self.out.append(Datagram(binding(0), self.local, self.target))
        self.next = now + self.interval

    def poll_transmits(self) -> list[Datagram]:
        out, self.out = self.out, []
        return out

    def poll_timeout(self) -> float | None:
        return self.next


class Spinner:
    """A broken endpoint whose deadline is always in the past."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def handle_datagram(self, now: float, data: bytes, local: Address, remote: Address) -> None:
        """Nothing to do."""

    def handle_timeout(self, now: float) -> None:
        self.timeouts.append(now)

    def poll_transmits(self) -> list[Datagram]:
        return []

    def poll_timeout(self) -> float | None:
        return 0.0


def binding(n: int) -> bytes:
    return Message(Method.BINDING, Class.REQUEST, n.to_bytes(12, "big")).encode()


def mapped(probe: Probe) -> list[Address]:
    """The XOR-MAPPED-ADDRESS of every STUN message (a Binding success) the probe received."""
    out: list[Address] = []
    for received in probe.received:
        try:
            response = decode(received.data)
        except ParseError:
            continue
        assert response.cls is Class.SUCCESS
        out.append(response.get(Attr.XOR_MAPPED_ADDRESS))
    return out


def nat_ip(site: Site) -> str:
    assert site.nat is not None
    return site.nat.public_ip


def with_servers(seed: int = 0) -> Network:
    """A network with STUN responders on S1 (two ports) and S2 (two ports)."""
    net = Network(seed)
    net.attach(StunResponder(), [S1, S1_ALT_PORT])
    net.attach(StunResponder(), [S2, S2_ALT_PORT])
    return net


# -- delivery and routing ----------------------------------------------------------------


def test_public_hosts_reach_each_other_after_the_internet_latency() -> None:
    net = Network(trace=True)
    probe, echo = Probe(), Echo()
    a = net.add_host(probe)
    b = net.add_host(echo, port=7000)
    assert a != b and b[1] == 7000
    probe.send(b"hello", a, b, at=1.0)
    assert net.run() == 3  # the send, its delivery, the echo's delivery
    (got,) = probe.received
    assert got.time == pytest.approx(1.010) and net.now == got.time
    assert (got.data, got.local, got.remote) == (b"hello", a, b)
    assert [(r.src, r.dst, r.size, r.fate) for r in net.log] == [
        (a, b, 5, Fate.DELIVERED),
        (b, a, 5, Fate.DELIVERED),
    ]
    assert [r.time for r in net.log] == pytest.approx([1.005, 1.010])
    assert net.stats == {"sent": 2, "delivered": 2}


def test_links_between_sites_can_be_impaired_separately() -> None:
    net = Network()
    far = net.public_site()
    net.set_link(net.public, far, Link(latency=0.1))
    probe, near_echo, far_echo = Probe(), Echo(), Echo()
    a = net.add_host(probe)
    near = net.add_host(near_echo)
    distant = net.add_host(far_echo, far)
    probe.send(b"near", a, near)
    probe.send(b"far", a, distant)
    net.run()
    assert [r.data for r in probe.received] == [b"near", b"far"]
    assert [r.time for r in probe.received] == pytest.approx([0.010, 0.200])


def test_lan_traffic_is_direct_and_fast() -> None:
    net = with_servers()
    home = net.nat_site()
    probe, echo = Probe(), Echo()
    a = net.add_host(probe, home)
    b = net.add_host(echo, home)
    assert a[0].startswith("10.0.0.") and b[0].startswith("10.0.0.")
    probe.send(b"x", a, b)
    probe.send(binding(1), a, S1, at=1.0)
    net.run()
    echoed, stun_answer = probe.received
    assert echoed.remote == b and echoed.time == pytest.approx(0.001)
    assert decode(stun_answer.data).get(Attr.XOR_MAPPED_ADDRESS)[0] == nat_ip(home)


def test_sites_sharing_a_private_subnet_are_routed_apart() -> None:
    net = Network()
    home, office = net.nat_site(), net.nat_site()
    probe = Probe()
    home_echo, office_echoes = Echo(), [Echo(), Echo(), Echo()]
    a = net.add_host(probe, home)
    net.add_host(home_echo, home)
    addresses = [net.add_host(echo, office) for echo in office_echoes]
    assert a == addresses[0]  # 10.0.0.2 on both sites
    probe.send(b"lan", a, addresses[1])  # 10.0.0.3: the home echo's address too
    probe.send(b"elsewhere", a, addresses[2])  # 10.0.0.4: only on the office LAN
    net.run()
    assert (home_echo.count, [e.count for e in office_echoes]) == (1, [0, 0, 0])
    assert net.stats[Fate.NO_ROUTE] == 1
    public_probe = Probe()
    p = net.add_host(public_probe)
    public_probe.send(b"private", p, a)
    net.run()
    assert net.stats[Fate.NO_ROUTE] == 2


def test_an_endpoint_may_own_addresses_on_several_sites() -> None:
    net = with_servers()
    home = net.nat_site()
    probe = Probe()
    private = net.add_host(probe, home)
    public = net.add_host(probe)
    probe.send(binding(1), private, S1)
    probe.send(binding(2), public, S1, at=1.0)
    net.run()
    assert [r.local for r in probe.received] == [private, public]
    behind_nat, direct = mapped(probe)
    assert behind_nat[0] == nat_ip(home)
    assert direct == public


def test_a_send_from_an_address_the_endpoint_does_not_own_is_misrouted() -> None:
    net = Network(trace=True)
    probe, other = Probe(), Echo()
    a = net.add_host(probe)
    b = net.add_host(other)
    probe.send(b"spoofed", b, a)
    net.run()
    assert probe.received == [] and other.count == 0
    assert net.stats[Fate.MISROUTED] == 1
    assert net.log == [Record(0.0, b, a, 7, Fate.MISROUTED)]


def test_drop_if_hook() -> None:
    net = Network()
    probe, echo = Probe(), Echo()
    a = net.add_host(probe)
    b = net.add_host(echo)
    net.drop_if = lambda packet: packet.dst == b and packet.data != b"allowed"
    probe.send(b"blocked", a, b)
    probe.send(b"allowed", a, b)
    net.run()
    assert [r.data for r in probe.received] == [b"allowed"]
    assert net.stats[Fate.HOOK] == 1
    assert net.log == []  # no trace unless asked for


def test_addresses_are_unique() -> None:
    net = Network()
    site = net.nat_site(public_ip="203.0.113.1")
    net.attach(Echo(), [S1])
    with pytest.raises(ValueError, match="already attached"):
        net.attach(Echo(), [S1])
    with pytest.raises(ValueError, match="in use"):
        net.attach(Echo(), [("203.0.113.1", 1)])
    with pytest.raises(ValueError, match="in use"):
        net.nat_site(public_ip="192.0.2.1")
    net.attach(Echo(), [("10.0.0.2", 1)], site)
    net.attach(Echo(), [("10.0.0.2", 1)], net.nat_site())  # another LAN, same private address


# -- NAT mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "same_for_other_port", "same_for_other_ip"),
    [(EI, True, True), (AD, True, False), (APD, False, False)],
)
def test_mapping_behaviour(
    mapping: Behavior, same_for_other_port: bool, same_for_other_ip: bool
) -> None:
    net = with_servers()
    site = net.nat_site(mapping=mapping)
    probe = Probe()
    local = net.add_host(probe, site)
    for n, server in enumerate([S1, S1_ALT_PORT, S2, S1]):
        probe.send(binding(n), local, server, at=n * 0.1)
    net.run()
    first, other_port, other_ip, again = mapped(probe)
    assert {first[0], other_port[0], other_ip[0]} == {nat_ip(site)}
    assert first[1] != local[1]  # no port preservation by default
    assert (other_port == first) is same_for_other_port
    assert (other_ip == first) is same_for_other_ip
    assert again == first


def test_mappings_are_per_internal_address_and_ports_deterministic() -> None:
    def ports(seed: int) -> list[int]:
        net = with_servers(seed)
        site = net.nat_site()
        probe = Probe()
        a = net.add_host(probe, site)
        b = net.add_host(probe, site)
        probe.send(binding(1), a, S1)
        probe.send(binding(2), b, S1, at=0.1)
        net.run()
        return [port for _, port in mapped(probe)]

    assert ports(1) == ports(1) != ports(2)
    assert len(set(ports(1))) == 2


def test_port_preservation() -> None:
    net = with_servers()
    site = net.nat_site(port_preservation=True)
    first, second = Probe(), Probe()
    a = net.add_host(first, site, port=6000)
    b = net.add_host(second, site, port=6000)
    first.send(binding(1), a, S1)
    second.send(binding(2), b, S1, at=0.1)
    net.run()
    assert mapped(first)[0][1] == 6000
    assert mapped(second)[0][1] != 6000  # taken: a fresh port


def test_mapping_expires_after_its_lifetime_unless_refreshed() -> None:
    net = with_servers()
    site = net.nat_site()
    assert site.nat is not None and site.nat.lifetime == 120.0
    client, peer = Probe(), Probe()
    local = net.add_host(client, site)
    peer_address = net.add_host(peer)
    client.send(binding(1), local, S1)
    net.run()
    (old,) = mapped(client)
    peer.send(b"in time", peer_address, old, at=119.0)
    peer.send(b"too late", peer_address, old, at=121.0)
    net.run()
    assert [r.data for r in client.received[1:]] == [b"in time"]
    assert net.stats[Fate.NO_MAPPING] == 1

    client.send(binding(2), local, S1, at=200.0)
    for t in (300.0, 400.0, 500.0):  # keepalives refresh the mapping
        client.send(b"keepalive", local, S2, at=t)
    net.run()
    new = mapped(client)[-1]
    assert new != old  # a fresh mapping, on a fresh port
    peer.send(b"refreshed", peer_address, new, at=619.0)
    peer.send(b"expired", peer_address, new, at=621.0)
    net.run()
    assert [r.data for r in client.received[3:]] == [b"refreshed"]
    assert net.stats[Fate.NO_MAPPING] == 2


# -- NAT filtering -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filtering", "from_other_port", "from_other_ip"),
    [(EI, True, True), (AD, True, False), (APD, False, False)],
)
def test_filtering_of_unsolicited_packets(
    filtering: Behavior, from_other_port: bool, from_other_ip: bool
) -> None:
    net = Network()
    net.attach(StunResponder(), [S1])
    same_ip, other_ip = Probe(), Probe()
    net.attach(same_ip, [S1_ALT_PORT])
    net.attach(other_ip, [S2])
    site = net.nat_site(filtering=filtering)
    client = Probe()
    local = net.add_host(client, site)
    client.send(binding(1), local, S1)
    net.run()
    (public,) = mapped(client)  # the solicited answer always passes
    same_ip.send(b"other port", S1_ALT_PORT, public)
    other_ip.send(b"other ip", S2, public)
    other_ip.send(b"no mapping", S2, (public[0], public[1] ^ 1))
    net.run()
    passed = {r.data for r in client.received[1:]}
    assert (b"other port" in passed) is from_other_port
    assert (b"other ip" in passed) is from_other_ip
    assert net.stats[Fate.FILTER] == 2 - from_other_port - from_other_ip
    assert net.stats[Fate.NO_MAPPING] == 1


@pytest.mark.parametrize(
    ("filtering", "change_port_passes", "change_ip_passes"),
    [(EI, True, True), (AD, True, False), (APD, False, False)],
)
def test_filtering_seen_through_rfc5780_change_request(
    filtering: Behavior, change_port_passes: bool, change_ip_passes: bool
) -> None:
    net = Network()
    server = StunResponder(StunServer(S1, S2_ALT_PORT))
    net.attach(server, [S1, S1_ALT_PORT, S2, S2_ALT_PORT])
    client = Probe()
    local = net.add_host(client, net.nat_site(filtering=filtering))
    change = [(Attr.CHANGE_REQUEST, 0x2), (Attr.CHANGE_REQUEST, 0x6)]  # port; IP and port
    for n, attribute in enumerate(change):
        request = Message(Method.BINDING, Class.REQUEST, bytes(11) + bytes([n]), [attribute])
        client.send(request.encode(), local, S1, at=n)
    net.run()
    origins = {decode(r.data).get(Attr.RESPONSE_ORIGIN) for r in client.received}
    assert (S1_ALT_PORT in origins) is change_port_passes
    assert (S2_ALT_PORT in origins) is change_ip_passes


@pytest.mark.parametrize("hairpin", [False, True])
def test_hairpinning(hairpin: bool) -> None:
    net = with_servers()
    site = net.nat_site(hairpin=hairpin)
    a, b = Probe(), Probe()
    la = net.add_host(a, site)
    lb = net.add_host(b, site)
    a.send(binding(1), la, S1)
    b.send(binding(2), lb, S1)
    net.run()
    ((_, a_port),), (b_public,) = mapped(a), mapped(b)
    a.send(b"via the NAT", la, b_public)
    net.run()
    if hairpin:
        got = b.received[-1]
        assert (got.data, got.local, got.remote) == (b"via the NAT", lb, (b_public[0], a_port))
    else:
        assert len(b.received) == 1
        assert net.stats[Fate.HAIRPIN] == 1


# -- impairments -------------------------------------------------------------------------


def stream(seed: int, link: Link, count: int = 1000) -> tuple[list[tuple[float, int]], Network]:
    """Send ``count`` numbered datagrams 1 ms apart over ``link``; (arrival, number) pairs."""
    net = Network(seed)
    net.internet = link
    sender, receiver = Probe(), Probe()
    a = net.add_host(sender)
    b = net.add_host(receiver)
    for i in range(count):
        sender.send(i.to_bytes(2, "big"), a, b, at=i * 0.001)
    net.run()
    return [(r.time, int.from_bytes(r.data, "big")) for r in receiver.received], net


def test_loss_is_random_but_reproducible() -> None:
    lossy = Link(loss=0.3)
    got, net = stream(1, lossy)
    assert got == stream(1, lossy)[0]
    assert got != stream(2, lossy)[0]
    assert 600 < len(got) < 800
    assert net.stats[Fate.LOSS] + net.stats[Fate.DELIVERED] == net.stats["sent"] == 1000
    assert [n for _, n in got] == sorted(n for _, n in got)  # no jitter: no reordering


def test_duplicates_arrive_a_little_later() -> None:
    duplicating = Link(duplicate=0.2)
    got, net = stream(1, duplicating)
    assert got == stream(1, duplicating)[0]
    assert 1150 < len(got) < 1250 and len(got) == 1000 + net.stats["duplicated"]
    first: dict[int, float] = {}
    for time, n in got:
        assert time - n * 0.001 >= 0.005 - 1e-9
        first.setdefault(n, time)
        assert time <= first[n] + 0.005 + 1e-9


def test_jitter_reorders() -> None:
    jittery = Link(latency=0.01, jitter=0.02)
    got, _ = stream(1, jittery)
    assert got == stream(1, jittery)[0]
    numbers = [n for _, n in got]
    assert sorted(numbers) == list(range(1000)) and numbers != sorted(numbers)
    assert all(0.01 - 1e-9 <= time - n * 0.001 <= 0.03 + 1e-9 for time, n in got)


def test_link_checks_its_values() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        Link(loss=1.5)
    with pytest.raises(ValueError, match="negative"):
        Link(latency=-1)


# -- the event loop ----------------------------------------------------------------------


def test_run_until() -> None:
    net = Network()
    sender, receiver = Probe(), Probe()
    a = net.add_host(sender)
    b = net.add_host(receiver)
    for t in (1.0, 2.0, 3.0):
        sender.send(b"%g" % t, a, b, at=t)
    assert net.run(until=2.0) == 3  # sends at 1.0 and 2.0 (events at `until` count), one delivery
    assert net.now == 2.0 and [r.data for r in receiver.received] == [b"1"]
    with pytest.raises(ValueError, match="never goes back"):
        net.run(until=1.0)
    assert net.run() == 3
    assert net.now == pytest.approx(3.005) and len(receiver.received) == 3
    assert net.run(until=10.0) == 0 and net.now == 10.0
    assert net.run() == 0 and net.now == 10.0


def test_a_deadline_in_the_past_means_now() -> None:
    net = Network()
    sender, receiver = Probe(), Probe()
    a = net.add_host(sender)
    b = net.add_host(receiver)
    net.run(until=5.0)
    sender.send(b"late", a, b, at=1.0)  # queued between runs: seen by the next one
    net.run()
    assert receiver.received[0].time == pytest.approx(5.005)


def test_stop_is_checked_after_every_event() -> None:
    net = Network()
    sender, receiver = Probe(), Probe()
    a = net.add_host(sender)
    b = net.add_host(receiver)
    for t in (1.0, 2.0):
        sender.send(b"x", a, b, at=t)
    assert net.run(stop=lambda: bool(receiver.received)) == 2
    assert net.now == pytest.approx(1.005)
    assert net.run(until=100.0, stop=lambda: True) == 0 and net.now == pytest.approx(1.005)


def test_timers_are_moved_not_duplicated() -> None:
    net = with_servers()
    pinger = Pinger(("198.18.0.1", 5000), S1, interval=0.5)
    net.attach(pinger, [pinger.local])
    net.run(until=10.2)
    assert net.stats["sent"] == 2 * 20 and pinger.answers == 20


def test_max_events_guards_against_runaway_loops() -> None:
    net = Network()
    spinner = Spinner()
    net.add_host(spinner)
    with pytest.raises(EventLimitExceeded, match="more than 100 events"):
        net.run(max_events=100)
    assert len(spinner.timeouts) == 100 and set(spinner.timeouts) == {0.0}

    net = Network()
    left, right = Echo(), Echo()
    a = net.add_host(left)
    b = net.add_host(right)
    left.out.append(Datagram(b"ball", a, b))  # two echoes play ping-pong for ever
    with pytest.raises(EventLimitExceeded):
        net.run(max_events=1000)
    assert net.now == pytest.approx(1000 * 0.005)


def test_two_hundred_endpoints() -> None:
    net = with_servers()
    sites = [net.public, net.nat_site(), net.nat_site(mapping=APD, filtering=APD)]
    pingers = []
    for i in range(200):
        pinger = Pinger(("", 0), S1 if i % 2 else S2, interval=0.05)
        pinger.local = net.add_host(pinger, sites[i % 3])
        pingers.append(pinger)
    assert net.run(until=1.025) == 3 * 200 * 20  # 20 rounds of timer, ping, answer
    assert all(p.answers == 20 for p in pingers)
