"""``ice.Connection`` with mDNS candidates (draft-ietf-mmusic-mdns-ice-candidates): host
candidates published under ``.local`` names, the peer's resolved, end-of-candidates held
back while resolutions run, names released on close.

mDNS needs multicast, which loopback does not carry: these tests run in the network
namespace of tests/ice/test_mdns_service.py (its ``ns`` fixture: one veth link ``mdns0``
with 192.0.2.1 and 2001:db8::1), with the services bound to that link only. Waits are on
events and futures with timeouts; a resolution is held or released through a gate, never
left to a sleep. The test without a service runs on loopback and needs nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

import pytest

from ice import Candidate, CandidateType, Connection, ConnectionFailed, ConnectionState
from ice.candidate import make_foundation
from ice.gather import reflexive_candidate
from ice.interfaces import host_addresses
from ice.mdns import DEFAULT_RESOLVE_TIMEOUT, MdnsService
from ice.mdns_candidates import MdnsCandidates
from stun.attributes import Attr
from stun.message import Class, Message, Method, decode
from tests.ice.connection_support import (
    bounded,
    connections,
    exchange,
    give_candidates,
    give_credentials,
    via_sdp,
)
from tests.ice.test_mdns_service import IFACE, IPV4, IPV6, UNKNOWN, WAIT, Namespace, ns

__all__ = ["ns"]  # the namespace fixture, shared with the mDNS service tests

T = TypeVar("T")

MAPPED = ("198.51.100.7", 40000)
"""The server-reflexive address the fake STUN server reports."""


class GatedService(MdnsService):
    """An mDNS service whose lookups can be held at a gate, are bounded by
    ``resolve_timeout`` and are recorded in ``ended`` as they end."""

    gate: asyncio.Event | None = None
    resolve_timeout = WAIT
    ended: list[tuple[str, list[str]]]
    changed: asyncio.Event

    async def resolve(self, name: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT) -> list[str]:
        if self.gate is not None:
            await self.gate.wait()
        addresses = await super().resolve(name, min(timeout, self.resolve_timeout))
        self.ended.append((name, addresses))
        self.changed.set()
        return addresses

    async def until_ended(self, count: int) -> None:
        """Until ``count`` lookups have ended (the connection has acted on each by then:
        it runs on from the answer without awaiting anything)."""
        while len(self.ended) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), WAIT)


def gated(gate: asyncio.Event | None = None, resolve_timeout: float = WAIT) -> GatedService:
    service = GatedService.open(interfaces=[IFACE])
    assert isinstance(service, GatedService)
    service.gate = gate
    service.resolve_timeout = resolve_timeout
    service.ended = []
    service.changed = asyncio.Event()
    return service


def connection(controlling: bool, ipv6: bool = False, **options: Any) -> Connection:
    """A connection with host candidates on the namespace's link only."""
    ips = (IPV4, IPV6) if ipv6 else (IPV4,)
    return Connection(
        controlling, ipv6=ipv6, address_filter=lambda address: address.ip in ips, **options
    )


@pytest.fixture(autouse=True)
def host_interfaces() -> Iterator[None]:
    """The scenarios enumerate the namespace's interfaces into the process-wide cache of
    :func:`~ice.interfaces.host_addresses`; it is given back the host's afterwards."""
    yield
    host_addresses(refresh=True)


def checked(scenario: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """``scenario``, failing if anything reached the loop's exception handler."""

    async def run() -> T:
        host_addresses(refresh=True)  # the namespace's interfaces, not the host's cached
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        outcome = await scenario()
        assert errors == []
        return outcome

    return run


def local_candidate(host: str, port: int = 9) -> Candidate:
    """A host candidate of the peer's at ``host`` (a name or an address)."""
    return Candidate.from_sdp(f"candidate:1 1 udp 2130706431 {host} {port} typ host")


# -- publishing and resolving ---------------------------------------------------------------


def test_publishes_and_resolves_host_candidates(ns: Namespace) -> None:
    """b offers its host candidates under .local names only; a resolves them and reaches
    b over the resolved copies. b is told none of a's candidates, so the path exists only
    because a resolved b's names. Data flows both ways."""

    async def scenario() -> None:
        mdns_a, mdns_b = gated(), gated()
        a = connection(True, ns.ipv6, mdns=mdns_a)
        b = connection(False, ns.ipv6, mdns=mdns_b, mdns_publish=True)
        try:
            offered, _ = await bounded(asyncio.gather(b.gather_all(), a.gather_all()))
            inside = b.agent.local_candidates
            assert offered == b.local_candidates and len(offered) == len(inside)
            assert all(c.is_mdns and c.type is CandidateType.HOST for c in offered)
            assert {c.host for c in inside} == ({IPV4, IPV6} if ns.ipv6 else {IPV4})
            assert mdns_b.names == {o.host: c.host for o, c in zip(offered, inside, strict=True)}
            assert [o.port for o in offered] == [c.port for c in inside]
            for line in (c.to_sdp() for c in offered):
                assert IPV4 not in line and IPV6 not in line

            give_credentials(a, b)
            give_credentials(b, a)
            give_candidates(a, offered)
            b.add_remote_candidate(None)  # and nothing else
            pair_a, pair_b = await bounded(asyncio.gather(a.connect(), b.connect()))
            await mdns_a.until_ended(len(offered))

            assert pair_a.remote.type is CandidateType.HOST and not pair_a.remote.is_mdns
            assert pair_a.remote.address == pair_b.local.address
            resolved = {c.address for c in a.agent.remote_candidates if not c.is_mdns}
            assert resolved == {c.address for c in inside}
            assert a.mdns_unresolved == 0 and a.agent.remote_end_of_candidates
            assert not any(p.remote.is_mdns for p in a.agent.pairs())
            await exchange(a, b)
        finally:
            await a.close()
            await b.close()
            mdns_a.close()
            mdns_b.close()

    ns.run(checked(scenario))


class _FakeStunServer(asyncio.DatagramProtocol):
    """Answers every Binding request with :data:`MAPPED`, as a server behind a NAT would."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = decode(data)
        answer = Message(
            Method.BINDING,
            Class.SUCCESS,
            request.transaction_id,
            [(Attr.XOR_MAPPED_ADDRESS, MAPPED)],
        )
        self.transport.sendto(answer.encode(fingerprint=True), addr)


def test_published_candidates_reveal_no_private_address(ns: Namespace) -> None:
    """With mdns_publish, a server-reflexive candidate is offered with the related
    address 0.0.0.0:0 ([::]:0 for IPv6) and no candidate keeps the foundation that is a
    CRC-32 of its private base address; the agent keeps the real ones."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(_FakeStunServer, local_addr=(IPV4, 0))
        port = transport.get_extra_info("sockname")[1]
        mdns = gated()
        conn = connection(False, mdns=mdns, mdns_publish=True, stun_servers=[f"{IPV4}:{port}"])
        try:
            offered = await bounded(conn.gather_all())
            assert conn.failures == []
            assert [c.type for c in offered] == [CandidateType.HOST, CandidateType.SRFLX]
            host, srflx = offered
            assert host.is_mdns and srflx.address == MAPPED
            assert srflx.related_address == ("0.0.0.0", 0)
            inside_host, inside_srflx = conn.agent.local_candidates
            assert inside_srflx.related_address == inside_host.address == inside_srflx.base
            for shown, inside in ((host, inside_host), (srflx, inside_srflx)):
                assert inside.foundation == make_foundation(inside.type, IPV4, "udp", inside.server)
                assert shown.foundation != inside.foundation
                assert IPV4 not in shown.to_sdp()
            assert host.foundation != srflx.foundation

            six = reflexive_candidate(("2001:db8::99", 4000), (IPV6, 5000), 65535, 1, "stun")
            assert MdnsCandidates(mdns, publish=True).public(six).related_address == ("::", 0)
        finally:
            await conn.close()
            mdns.close()
            transport.close()

    ns.run(checked(scenario))


# -- what does not resolve ------------------------------------------------------------------


def test_an_unresolvable_candidate_is_ignored(ns: Namespace) -> None:
    """A .local candidate nobody answers for, and one that is no <uuid>.local name (never
    asked for), are counted and left unpaired; the connection runs over b's real host
    candidate, and the end-of-candidates reaches the agent once the lookup timed out."""

    async def scenario() -> None:
        mdns = gated(resolve_timeout=0.2)
        a, b = connection(True, mdns=mdns), connection(False)
        try:
            b_candidates = await bounded(b.gather_all())
            await bounded(a.gather_all())
            give_credentials(a, b)
            give_credentials(b, a)
            give_candidates(b, a.local_candidates)
            give_candidates(
                a, [local_candidate(UNKNOWN), local_candidate("printer.local"), *b_candidates]
            )
            assert a.mdns_unresolved == 1  # printer.local, at once
            await bounded(asyncio.gather(a.connect(), b.connect()))
            await mdns.until_ended(1)

            assert mdns.ended == [(UNKNOWN, [])]
            assert a.mdns_unresolved == 2 and a.agent.remote_end_of_candidates
            assert sum(c.is_mdns for c in a.agent.remote_candidates) == 2  # carried
            assert not any(p.remote.is_mdns for p in a.agent.pairs())
            await exchange(a, b)
        finally:
            await a.close()
            await b.close()
            mdns.close()

    ns.run(checked(scenario))


def test_an_unresolvable_only_candidate_fails_with_the_ice_error(ns: Namespace) -> None:
    """With nothing but an unresolvable .local candidate, connect() fails the ordinary
    way: ConnectionFailed at the ICE timeout."""

    async def scenario() -> None:
        mdns = gated(resolve_timeout=0.2)
        a = connection(True, mdns=mdns, ice_timeout=0.5)
        try:
            a.set_remote_credentials("peer", "p" * 22)
            give_candidates(a, [local_candidate(UNKNOWN)])
            with pytest.raises(ConnectionFailed):
                await bounded(a.connect())
            await mdns.until_ended(1)
            assert a.mdns_unresolved == 1 and a.state is ConnectionState.FAILED
        finally:
            await a.close()
            mdns.close()

    ns.run(checked(scenario))


# -- end-of-candidates ----------------------------------------------------------------------


def test_end_of_candidates_waits_for_pending_resolutions(ns: Namespace) -> None:
    """While a's lookup of b's name is held, the agent has not learned the peer's
    end-of-candidates (so it cannot reach COMPLETED), even though the two connect through
    a peer-reflexive candidate; once the lookup ends, the resolved host candidate takes
    that candidate's place and the end-of-candidates is passed on."""

    async def scenario() -> None:
        gate = asyncio.Event()
        mdns_a, mdns_b = gated(gate), gated()
        a = connection(True, mdns=mdns_a)
        b = connection(False, mdns=mdns_b, mdns_publish=True)
        try:
            await bounded(asyncio.gather(a.gather_all(), b.gather_all()))
            give_credentials(a, b)
            give_credentials(b, a)
            give_candidates(b, a.local_candidates)
            give_candidates(a, b.local_candidates)
            pair_a, _ = await bounded(asyncio.gather(a.connect(), b.connect()))
            learned = pair_a.remote
            assert learned.type is CandidateType.PRFLX and learned.address == (IPV4, learned.port)
            assert (a.state, a.agent.remote_end_of_candidates) == (ConnectionState.CONNECTED, False)

            gate.set()
            await mdns_a.until_ended(1)
            assert a.agent.remote_end_of_candidates
            assert a.selected_pair() is pair_a and pair_a.remote.type is CandidateType.HOST
            assert pair_a.remote == dataclasses.replace(b.local_candidates[0], host=IPV4)
            await exchange(a, b)
        finally:
            await a.close()
            await b.close()
            mdns_a.close()
            mdns_b.close()

    ns.run(checked(scenario))


# -- closing --------------------------------------------------------------------------------


def test_close_unregisters_names_and_leaves_no_task(ns: Namespace) -> None:
    """Two connections sharing one service publish the same address under one name: it
    stays published until the last of them closes, and the service stays open. A
    resolution under way is cancelled by close(), which leaves no task behind."""

    async def scenario() -> None:
        tasks = asyncio.all_tasks()
        gate = asyncio.Event()
        mdns = gated(gate)
        first = connection(True, mdns=mdns, mdns_publish=True)
        second = connection(True, mdns=mdns, mdns_publish=True)
        resolver = connection(True, mdns=mdns)
        try:
            one, two = await bounded(asyncio.gather(first.gather_all(), second.gather_all()))
            assert one[0].host == two[0].host and mdns.names == {one[0].host: IPV4}

            await first.close()
            assert mdns.names == {one[0].host: IPV4}
            assert first.local_candidates == one  # still shown as offered
            await second.close()
            await second.close()
            assert mdns.names == {} and mdns.stats.goodbyes_sent == 1

            resolver.add_remote_candidate(via_sdp(one[0]))
            resolver.add_remote_candidate(None)
            assert len(asyncio.all_tasks() - tasks) == 1  # the held lookup
            await resolver.close()
            assert asyncio.all_tasks() == tasks
            assert not resolver.agent.remote_end_of_candidates and mdns.ended == []
            assert mdns.register(IPV4).endswith(".local")  # the service is still open
        finally:
            for conn in (first, second, resolver):
                await conn.close()
            mdns.close()

    ns.run(checked(scenario))


# -- without a service ----------------------------------------------------------------------


@pytest.mark.usefixtures("loop_errors")
async def test_without_a_service_local_candidates_are_carried_unpaired() -> None:
    """The default (mdns=None) resolves nothing and multicasts nothing: a .local
    candidate is carried but never paired, and end-of-candidates is not held back."""
    with pytest.raises(ValueError, match="mdns_publish"):
        Connection(True, mdns_publish=True)
    async with connections() as make:
        a, b = make(True), make(False)
        cands_a, cands_b = await bounded(asyncio.gather(a.gather_all(), b.gather_all()))
        assert not any(c.is_mdns for c in cands_a + cands_b)
        give_credentials(a, b)
        give_credentials(b, a)
        give_candidates(b, cands_a)
        give_candidates(a, [local_candidate(UNKNOWN), *cands_b])
        assert a.agent.remote_end_of_candidates
        await bounded(asyncio.gather(a.connect(), b.connect()))
        assert local_candidate(UNKNOWN) in a.agent.remote_candidates
        assert not any(p.remote.is_mdns for p in a.agent.pairs())
        assert a.mdns_unresolved == 0
        await exchange(a, b)


@pytest.mark.usefixtures("loop_errors")
async def test_a_local_candidate_signalled_before_gathering_is_not_paired() -> None:
    """A .local candidate signalled before we gather stays unpaired when our host
    candidates arrive: no check is ever sent to a name."""
    async with connections() as make:
        a = make(True)
        a.add_remote_candidate(local_candidate(UNKNOWN))
        await bounded(a.gather_all())
        assert not any(p.remote.is_mdns for p in a.agent.pairs())
