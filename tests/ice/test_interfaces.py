"""Host-address enumeration and UDP binding (ice.interfaces).

Real sockets here touch only 127.0.0.1 and ::1; other addresses come from a fake ``ifaddr``.
"""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Iterator

import ifaddr
import pytest

from ice.interfaces import HostAddress, bind_udp, host_addresses, usable


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6_LOOPBACK = _ipv6_loopback()
needs_ipv6_loopback = pytest.mark.skipif(not HAS_IPV6_LOOPBACK, reason="no IPv6 loopback")


# -- usable ---------------------------------------------------------------------------------

NEVER = [
    "0.0.0.0",
    "0.1.2.3",  # 0.0.0.0/8, "this network"
    "255.255.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "::",
    "ff02::1",
    "ff05::1:3",
    "::ffff:192.0.2.1",  # IPv4-mapped
    "::ffff:127.0.0.1",
    "fec0::1",  # site-local, deprecated
    "feff::1",
    "::192.0.2.1",  # IPv4-compatible
    "::2",
    "not an address",
    "",
    "192.0.2.256",
]
LOOPBACK = ["127.0.0.1", "127.1.2.3", "::1"]
LINK_LOCAL = ["169.254.0.1", "169.254.255.254", "fe80::1", "fe80::1%eth0", "febf::1"]
ALWAYS = ["192.0.2.1", "10.0.0.1", "100.64.0.1", "2001:db8::1", "fd00::2", "2001:db8::1%3"]


@pytest.mark.parametrize("ip", NEVER)
def test_usable_rejects_unusable_kinds_whatever_the_options(ip: str) -> None:
    for loopback in (False, True):
        for link_local in (False, True):
            assert not usable(ip, include_loopback=loopback, include_link_local=link_local)


@pytest.mark.parametrize("ip", LOOPBACK)
def test_usable_takes_loopback_only_when_asked(ip: str) -> None:
    assert not usable(ip, include_loopback=False, include_link_local=True)
    assert usable(ip, include_loopback=True, include_link_local=False)


@pytest.mark.parametrize("ip", LINK_LOCAL)
def test_usable_takes_link_local_only_when_asked(ip: str) -> None:
    assert not usable(ip, include_loopback=True, include_link_local=False)
    assert usable(ip, include_loopback=False, include_link_local=True)


@pytest.mark.parametrize("ip", ALWAYS)
def test_usable_takes_ordinary_addresses(ip: str) -> None:
    assert usable(ip, include_loopback=False, include_link_local=False)


# -- host_addresses on this machine ---------------------------------------------------------


def test_loopback_opt_in_gives_127_0_0_1() -> None:
    hosts = host_addresses(include_loopback=True)
    [v4] = [host for host in hosts if host.ip == "127.0.0.1"]
    assert v4.family == socket.AF_INET
    assert v4.is_loopback and not v4.is_link_local
    assert v4.scope_id == 0
    assert v4.interface


@needs_ipv6_loopback
def test_loopback_opt_in_gives_ipv6_loopback() -> None:
    hosts = host_addresses(include_loopback=True)
    [v6] = [host for host in hosts if host.ip == "::1"]
    assert v6.family == socket.AF_INET6
    assert v6.is_loopback and v6.scope_id == 0
    assert host_addresses(include_loopback=True, ipv6=False) == [
        host for host in hosts if host.family == socket.AF_INET
    ]


def test_loopback_is_left_out_by_default() -> None:
    hosts = host_addresses()
    assert not any(host.is_loopback for host in hosts)
    assert "127.0.0.1" not in {host.ip for host in hosts}
    assert "::1" not in {host.ip for host in hosts}


def test_filter_sees_each_kept_address_and_decides() -> None:
    everything = host_addresses(include_loopback=True)
    seen: list[HostAddress] = []

    def only_ipv4(host: HostAddress) -> bool:
        seen.append(host)
        return host.family == socket.AF_INET

    kept = host_addresses(include_loopback=True, address_filter=only_ipv4)
    assert seen == everything
    assert kept == [host for host in everything if host.family == socket.AF_INET]
    assert "127.0.0.1" in {host.ip for host in kept}
    assert host_addresses(include_loopback=True, address_filter=lambda host: False) == []


def test_cached_objects_are_returned_again_until_refresh() -> None:
    first = host_addresses(include_loopback=True)
    first.clear()  # the caller's list, not the cache
    again = host_addresses(include_loopback=True)
    assert again and all(
        a is b for a, b in zip(again, host_addresses(include_loopback=True), strict=True)
    )
    fresh = host_addresses(include_loopback=True, refresh=True)
    assert fresh == again
    assert not any(a is b for a, b in zip(fresh, again, strict=True))


# -- host_addresses on a fake ifaddr --------------------------------------------------------


class FakeIfaddr:
    def __init__(self) -> None:
        self.adapters: list[ifaddr.Adapter] = []
        self.calls = 0

    def get_adapters(self, include_unconfigured: bool = False) -> list[ifaddr.Adapter]:
        self.calls += 1
        return self.adapters


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeIfaddr]:
    """ifaddr replaced; the real interfaces are enumerated again afterwards."""
    fake = FakeIfaddr()
    with monkeypatch.context() as patch:
        patch.setattr(ifaddr, "get_adapters", fake.get_adapters)
        yield fake
    host_addresses(refresh=True)


def adapter(name: str, *ips: str | tuple[str, int], index: int = 1) -> ifaddr.Adapter:
    """An adapter; a tuple (ip, scope_id) is an IPv6 address, a string with ':' too."""
    entries = []
    for ip in ips:
        if isinstance(ip, tuple):
            entry = ifaddr.IP((ip[0], 0, ip[1]), 64, name)
        elif ":" in ip:
            entry = ifaddr.IP((ip, 0, 0), 64, name)
        else:
            entry = ifaddr.IP(ip, 24, name)
        entries.append(entry)
    return ifaddr.Adapter(name, name, entries, index=index)


def test_families_interleave_ipv6_first_interfaces_in_order(fake: FakeIfaddr) -> None:
    fake.adapters = [
        adapter("lo", "127.0.0.1", "::1"),
        adapter("eth0", "192.0.2.1", "2001:db8::1", "2001:db8::2", ("fe80::1", 2)),
        adapter("tun0", "0.0.0.0", "fec0::1"),  # nothing usable: takes no index
        adapter("wlan0", "2001:db8:1::1", "198.51.100.1"),
        adapter("wwan0", "203.0.113.9"),
    ]
    hosts = host_addresses(refresh=True)
    assert [(h.ip, h.interface, h.interface_index) for h in hosts] == [
        ("2001:db8::1", "eth0", 0),
        ("192.0.2.1", "eth0", 0),
        ("2001:db8::2", "eth0", 0),
        ("198.51.100.1", "wlan0", 1),
        ("2001:db8:1::1", "wlan0", 1),
        ("203.0.113.9", "wwan0", 2),
    ]
    with_lo = host_addresses(include_loopback=True)
    assert [(h.ip, h.interface_index) for h in with_lo[:2]] == [("::1", 0), ("127.0.0.1", 0)]
    assert {h.interface: h.interface_index for h in with_lo} == {
        "lo": 0,
        "eth0": 1,
        "wlan0": 2,
        "wwan0": 3,
    }
    assert [h.ip for h in host_addresses(ipv6=False)] == [
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.9",
    ]
    only_v6 = host_addresses(ipv4=False)
    assert [(h.ip, h.interface_index) for h in only_v6] == [
        ("2001:db8::1", 0),
        ("2001:db8::2", 0),
        ("2001:db8:1::1", 1),
    ]
    assert host_addresses(ipv4=False, ipv6=False) == []


def test_text_is_canonical_and_only_link_local_is_scoped(fake: FakeIfaddr) -> None:
    fake.adapters = [
        adapter("eth0", ("2001:DB8:0:0::0:1", 5), ("FE80:0::1%eth0", 0), ("fe80::2", 9), index=7)
    ]
    hosts = host_addresses(include_link_local=True, refresh=True)
    assert [(h.ip, h.scope_id, h.is_link_local) for h in hosts] == [
        ("2001:db8::1", 0, False),
        ("fe80::1", 7, True),  # no scope id from ifaddr: the interface's index
        ("fe80::2", 9, True),
    ]
    assert host_addresses() == hosts[:1]


def test_interfaces_are_enumerated_once_per_process(fake: FakeIfaddr) -> None:
    fake.adapters = [adapter("eth0", "192.0.2.1", "2001:db8::1")]
    first = host_addresses(refresh=True)
    assert fake.calls == 1
    host_addresses(ipv6=False)
    host_addresses(include_loopback=True, include_link_local=True)
    second = host_addresses()
    assert fake.calls == 1
    assert all(a is b for a, b in zip(first, second, strict=True))

    fake.adapters = [adapter("eth1", "198.51.100.1")]
    assert host_addresses() == second
    assert [h.ip for h in host_addresses(refresh=True)] == ["198.51.100.1"]
    assert fake.calls == 2
    assert [h.ip for h in host_addresses(ipv6=False)] == ["198.51.100.1"]


# -- bind_udp -------------------------------------------------------------------------------


def hold_ports(count: int) -> list[socket.socket]:
    """UDP sockets on ``count`` consecutive free ports of 127.0.0.1, lowest first."""
    for _ in range(100):
        base = random.randrange(20000, 60000)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            for sock in held:
                sock.close()
            continue
        return held
    raise RuntimeError(f"found no {count} consecutive free UDP ports")


def test_bind_udp_fills_a_port_range_then_says_which_is_full() -> None:
    held = hold_ports(2)
    low, high = (sock.getsockname()[1] for sock in held)
    for sock in held:
        sock.close()
    with (
        bind_udp("127.0.0.1", port_range=(low, high)) as a,
        bind_udp("127.0.0.1", port_range=(low, high)) as b,
    ):
        assert {a.getsockname()[1], b.getsockname()[1]} == {low, high}
        assert a.getsockname()[0] == "127.0.0.1"
        assert not a.getblocking() and not b.getblocking()
        message = f"no free UDP port in range {low}-{high} on 127.0.0.1"
        with pytest.raises(OSError, match=message) as full:
            bind_udp("127.0.0.1", port_range=(low, high))
        assert full.value.errno == errno.EADDRINUSE


def test_bind_udp_tries_every_port_in_the_range() -> None:
    held = hold_ports(8)
    ports = [sock.getsockname()[1] for sock in held]
    try:
        for free in (0, 3, 7):
            held[free].close()
            with bind_udp("127.0.0.1", port_range=(ports[0], ports[-1])) as sock:
                assert sock.getsockname()[1] == ports[free]
            held[free] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held[free].bind(("127.0.0.1", ports[free]))
    finally:
        for sock in held:
            sock.close()


def test_bind_udp_on_a_host_address_carries_datagrams() -> None:
    [loopback] = host_addresses(include_loopback=True, address_filter=lambda h: h.ip == "127.0.0.1")
    with bind_udp(loopback) as a, bind_udp("127.0.0.1") as b:
        assert a.family == socket.AF_INET and a.getsockname()[1] != 0
        b.sendto(b"ping", a.getsockname())
        a.settimeout(2)
        assert a.recvfrom(64) == (b"ping", b.getsockname())


@needs_ipv6_loopback
def test_bind_udp_ipv6_is_v6only() -> None:
    [loopback] = host_addresses(include_loopback=True, address_filter=lambda h: h.ip == "::1")
    for address in (loopback, "::1", "0:0::1"):
        with bind_udp(address) as sock:
            assert sock.family == socket.AF_INET6
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
            assert sock.getsockname()[0] == "::1"
            assert not sock.getblocking()


@pytest.mark.parametrize(
    ("port", "port_range"),
    [
        (0, (0, 10)),
        (0, (10, 5)),
        (0, (-1, 5)),
        (0, (65535, 65536)),
        (0, (1, 70000)),
        (5000, (5000, 5001)),
        (-1, None),
        (65536, None),
    ],
)
def test_bind_udp_rejects_bad_ports_and_ranges(
    port: int, port_range: tuple[int, int] | None
) -> None:
    with pytest.raises(ValueError):
        bind_udp("127.0.0.1", port, port_range)


def test_bind_udp_rejects_a_host_name() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        bind_udp("localhost")
