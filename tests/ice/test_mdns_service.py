"""The asyncio mDNS service (ice.mdns.service) on real sockets, inside a network namespace
this module creates: its only link is a veth pair whose end ``mdns0`` carries 192.0.2.1,
2001:db8::1 and fe80::1, so every multicast stays in the namespace (nothing reaches the
host's interfaces). Each scenario runs on a thread that entered the namespace, under its
own event loop, and waits on datagrams and futures with timeouts, never on sleeps.

Needs root and iproute2; without them the tests are skipped with the reason, or fail when
ICESTACK_REQUIRE_NATLAB=1 (as the NAT lab's do).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import pytest

from ice.interfaces import HostAddress
from ice.mdns import MDNS_GROUP4, MDNS_PORT, MdnsError, MdnsService, sockets
from ice.mdns.message import TYPE_A, Message, Question, encode, parse
from ice.mdns.sockets import open_socket, send
from tests.natlab import netns

T = TypeVar("T")

IFACE = "mdns0"
IPV4 = "192.0.2.1"
IPV6 = "2001:db8::1"
UNKNOWN = "00000000-0000-4000-8000-000000000000.local"
SCENARIO_TIMEOUT = 5.0
WAIT = 2.0
"""Seconds any one awaited datagram or answer may take (they take well under 10 ms)."""

_SETUP = [
    "link set lo up",
    f"link add {IFACE} type veth peer name mdns1",
]
_SETUP6 = [f"link set {IFACE} addrgenmode none", "link set mdns1 addrgenmode none"]
_UP = [
    "link set mdns1 up",
    f"link set {IFACE} up",
    f"addr add {IPV4}/24 dev {IFACE}",
]
_ADDRESSES6 = [f"addr add {IPV6}/64 dev {IFACE} nodad", f"addr add fe80::1/64 dev {IFACE} nodad"]


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("ICESTACK_REQUIRE_NATLAB", "") not in ("", "0"):
        pytest.fail(f"{reason} (and ICESTACK_REQUIRE_NATLAB is set)")
    pytest.skip(reason)


@dataclass(frozen=True)
class Namespace:
    name: str
    ipv6: bool

    def run(self, scenario: Callable[[], Awaitable[T]]) -> T:
        """Run ``scenario()`` to completion inside the namespace, on a loop of its own."""

        async def bounded() -> T:
            return await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)

        return netns.call_in(self.name, lambda: asyncio.run(bounded()))


@pytest.fixture(scope="module")
def ns() -> Iterator[Namespace]:
    if os.geteuid() != 0:
        _unavailable("the mDNS service tests need root (a network namespace of their own)")
    if shutil.which("ip") is None:
        _unavailable("the mDNS service tests need iproute2 (apt install iproute2)")
    name = f"icemdns{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        netns.run(["ip", "netns", "add", name])
    except netns.NetnsError as exc:
        _unavailable(f"network namespaces are unavailable here: {exc}")
    try:
        yield Namespace(name, _set_up(name))
    finally:
        netns.delete([name])


def _set_up(name: str) -> bool:
    """Build the namespace's link; whether IPv6 works on it."""
    try:
        netns.ip_batch(_SETUP, name)
    except netns.NetnsError as exc:
        _unavailable(f"veth pairs are unavailable here: {exc}")
    try:
        netns.ip_batch(_SETUP6, name)
    except netns.NetnsError:
        ipv6 = False
    else:
        ipv6 = True
    netns.ip_batch(_UP, name)
    if ipv6:
        netns.ip_batch(_ADDRESSES6, name)
    return ipv6


def service(**options: object) -> MdnsService:
    return MdnsService.open(interfaces=[IFACE], **options)  # type: ignore[arg-type]


def plain_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((IPV4, 0))
    return sock


def listener() -> socket.socket:
    """A socket that sees the IPv4 mDNS traffic on the link, as any other stack would."""
    return open_socket(socket.AF_INET, MDNS_GROUP4, MDNS_PORT, [socket.if_nametoindex(IFACE)])[0]


def to_group(sock: socket.socket, data: bytes) -> None:
    send(sock, data, (MDNS_GROUP4, MDNS_PORT), socket.if_nametoindex(IFACE))


async def next_datagram(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 9000), WAIT)
    return data, source


async def drain(sock: socket.socket) -> list[Message]:
    """Every DNS message the listener got, up to a sentinel it sends itself now."""
    to_group(sock, b"sentinel")
    messages = []
    while (data := (await next_datagram(sock))[0]) != b"sentinel":
        messages.append(parse(data))
    return messages


# -- resolving ------------------------------------------------------------------------------


def test_resolves_a_published_ipv4_name(ns: Namespace) -> None:
    async def scenario() -> tuple[str, list[str], int]:
        alice, bob = service(), service()
        try:
            name = alice.register(IPV4)
            addresses = await bob.resolve(name, timeout=WAIT)
            return name, addresses, bob.stats.queries_sent
        finally:
            alice.close()
            bob.close()

    name, addresses, queries = ns.run(scenario)
    assert name.endswith(".local") and addresses == [IPV4]
    assert queries == 1  # the first query was answered: no retransmission


def test_resolves_a_published_ipv6_name_over_ipv6_only(ns: Namespace) -> None:
    if not ns.ipv6:
        pytest.skip("IPv6 is disabled on this machine")

    async def scenario() -> tuple[list[str], list[int]]:
        alice, bob = service(ipv4=False), service(ipv4=False)
        try:
            addresses = await bob.resolve(alice.register(IPV6), timeout=WAIT)
            return addresses, [family for family, _ in alice.links + bob.links]
        finally:
            alice.close()
            bob.close()

    addresses, families = ns.run(scenario)
    assert addresses == [IPV6] and families == [socket.AF_INET6] * 2


def test_an_unknown_name_times_out_within_the_bound(ns: Namespace) -> None:
    async def scenario() -> tuple[list[str], float]:
        bob = service()
        try:
            with pytest.raises(MdnsError):
                await bob.resolve("printer.local")
            loop = asyncio.get_running_loop()
            started = loop.time()
            addresses = await bob.resolve(UNKNOWN, timeout=0.3)
            return addresses, loop.time() - started
        finally:
            bob.close()

    addresses, took = ns.run(scenario)
    assert addresses == [] and 0.29 <= took < 0.3 + WAIT


def test_concurrent_resolutions_share_one_query(ns: Namespace) -> None:
    async def scenario() -> tuple[str, list[list[str]], list[str], list[Message]]:
        wire = listener()
        alice, bob = service(announcements=0), service()
        try:
            name = alice.register(IPV4)
            together = await asyncio.gather(*(bob.resolve(name, WAIT) for _ in range(4)))
            again = await bob.resolve(name, WAIT)  # from the cache
        finally:
            alice.close()
            bob.close()
        try:
            return name, together, again, await drain(wire)
        finally:
            wire.close()

    name, together, again, messages = ns.run(scenario)
    assert together == [[IPV4]] * 4 and again == [IPV4]
    queries = [m for m in messages if not m.is_response]
    assert [q.questions[0].name for q in queries] == [name]  # one query, on IPv4


# -- responding -----------------------------------------------------------------------------


def test_a_malformed_datagram_is_counted_and_dropped(ns: Namespace) -> None:
    async def scenario() -> tuple[str, Message, tuple[int, int]]:
        alice = service(announcements=0)
        peer = plain_socket()
        try:
            name = alice.register(IPV4)
            to_group(peer, b"\x00\x01garbage")
            to_group(peer, encode(Message(0x4242, questions=(Question(name, TYPE_A),))))
            data, _ = await next_datagram(peer)  # the legacy query's unicast reply
            return name, parse(data), (alice.stats.received, alice.stats.dropped_malformed)
        finally:
            peer.close()
            alice.close()

    name, reply, counts = ns.run(scenario)
    assert reply.id == 0x4242 and reply.questions == (Question(name, TYPE_A),)
    assert [(r.name, r.address, r.ttl) for r in reply.answers] == [(name, IPV4, 10)]
    assert counts == (2, 1)


def test_close_says_goodbye(ns: Namespace) -> None:
    async def scenario() -> tuple[str, Message]:
        wire = listener()
        try:
            alice = service(announcements=0)
            name = alice.register(IPV4)
            alice.close()
            return name, parse((await next_datagram(wire))[0])
        finally:
            wire.close()

    name, goodbye = ns.run(scenario)
    assert goodbye.is_response
    assert [(r.name, r.address, r.ttl) for r in goodbye.answers] == [(name, IPV4, 0)]


def test_announces_a_new_name(ns: Namespace) -> None:
    async def scenario() -> tuple[str, Message]:
        wire = listener()
        alice = service(announcements=1)
        try:
            name = alice.register(IPV4)
            return name, parse((await next_datagram(wire))[0])
        finally:
            alice.close()
            wire.close()

    name, announcement = ns.run(scenario)
    assert [(r.name, r.address, r.ttl, r.cache_flush) for r in announcement.answers] == [
        (name, IPV4, 120, True)
    ]


# -- opening and closing --------------------------------------------------------------------


def test_close_releases_every_socket_timer_and_lookup(ns: Namespace) -> None:
    async def scenario() -> tuple[list[str], set[str], set[asyncio.Task[object]], int]:
        fds = set(os.listdir("/proc/self/fd"))
        tasks = asyncio.all_tasks()
        mdns = service()
        lookup = asyncio.ensure_future(mdns.resolve(UNKNOWN, timeout=60))
        await asyncio.sleep(0)  # one turn of the loop: the lookup has sent its query
        queries = mdns.stats.queries_sent
        mdns.close()
        mdns.close()
        addresses = await asyncio.wait_for(lookup, WAIT)
        with pytest.raises(MdnsError):
            mdns.register(IPV4)
        with pytest.raises(MdnsError):
            await mdns.resolve(UNKNOWN)
        for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.bind((host, MDNS_PORT))  # no SO_REUSEADDR: fails if ours were open
        new_fds = fds ^ set(os.listdir("/proc/self/fd"))
        return addresses, new_fds, asyncio.all_tasks() ^ tasks, queries

    addresses, fd_changes, task_changes, queries = ns.run(scenario)
    assert addresses == [] and queries == 1
    assert fd_changes == set() and task_changes == set()


def test_default_interfaces_are_those_with_host_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake_host_addresses(**options: bool) -> list[HostAddress]:
        assert options["include_link_local"] == options["ipv6"]
        family = socket.AF_INET6 if options["ipv6"] else socket.AF_INET
        return [
            HostAddress(ip, name, 0, family, 0, False, False)
            for ip, name in (("192.0.2.1", "lo"), ("192.0.2.2", "lo"), ("192.0.2.3", "gone0"))
        ]

    monkeypatch.setattr(sockets, "host_addresses", fake_host_addresses)
    for family in (socket.AF_INET, socket.AF_INET6):
        assert sockets.default_interfaces(family) == [socket.if_nametoindex("lo")]


def test_opening_on_no_usable_interface_fails_cleanly(ns: Namespace) -> None:
    async def scenario() -> None:
        with pytest.raises(MdnsError, match="no interface named"):
            MdnsService.open(interfaces=["nonexistent0"])
        with pytest.raises(MdnsError, match="unavailable"):
            MdnsService.open(interfaces=[])
        with pytest.raises(MdnsError, match="no family enabled"):
            MdnsService.open(ipv4=False, ipv6=False)

    ns.run(scenario)
