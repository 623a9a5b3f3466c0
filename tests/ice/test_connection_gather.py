"""Gathering in ``ice.Connection``: host candidates at once, server-reflexive ones from a
real coturn (directly, where the mapped address is the host address, and behind a UDP
proxy that plays a NAT), relayed ones from coturn's TURN, and the record of servers that
gave nothing (401, timeout) - without holding back the host candidates or connect().
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest

import ice
from ice import CandidateType, Connection
from stun import Attr, Class, Message, Method, decode
from tests.coturn import Coturn
from tests.ice.connection_support import (
    LIMIT,
    LOOPBACK,
    bounded,
    connect_both,
    connections,
    exchange,
    give_candidates,
    give_credentials,
    of_type,
    signal,
    stun_url,
    turn_server,
    via_sdp,
)
from tests.ports import dead_port, silent_port
from tests.turn.aio_support import UdpProxy

pytestmark = pytest.mark.usefixtures("loop_errors")


@contextlib.contextmanager
def silent_server() -> Iterator[socket.socket]:
    """A non-blocking UDP socket on 127.0.0.1 posing as a STUN server that answers only
    when the test does."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        yield sock


async def test_slow_stun_server_holds_back_neither_host_nor_connect() -> None:
    """While a STUN server has not answered yet, the host candidate is already yielded
    and connect() succeeds; the server-reflexive candidate trickles in afterwards, when
    the answer comes (here: only once connected, so the order is certain)."""
    with silent_server() as server:
        async with connections() as make:
            host_ip, port = server.getsockname()
            a = make(True, stun_servers=[f"stun:{host_ip}:{port}"], gather_timeout=LIMIT)
            b = make(False)
            trickle = a.gather()
            host = await bounded(anext(trickle))
            assert host.type is CandidateType.HOST

            loop = asyncio.get_running_loop()
            data, source = await bounded(loop.sock_recvfrom(server, 2048))
            request = decode(data)  # the query is out, unanswered
            assert request.method == Method.BINDING and request.cls is Class.REQUEST
            assert source == host.address

            cands_b = await bounded(b.gather_all())
            give_credentials(a, b)
            give_credentials(b, a)
            give_candidates(a, cands_b)
            give_candidates(b, [host])
            pair_a, _ = await connect_both(a, b)
            assert pair_a.local.address == host.address
            await exchange(a, b, count=1)

            mapped = (LOOPBACK, dead_port())
            answer = Message(
                Method.BINDING,
                Class.SUCCESS,
                request.transaction_id,
                [(Attr.XOR_MAPPED_ADDRESS, mapped)],
            )
            server.sendto(answer.encode(fingerprint=True), source)
            srflx = await bounded(anext(trickle))
            assert srflx.type is CandidateType.SRFLX and srflx.address == mapped
            assert srflx.related_address == host.address
            assert await bounded(anext(trickle, None)) is None
            assert a.failures == []
            assert a.local_candidates == [host, srflx]


async def test_silent_stun_server_times_out() -> None:
    """A STUN server that never answers: the host candidate comes first, at once; then
    gathering ends, no sooner than gather_timeout, with a "timeout" failure naming the
    server; connecting works all the same."""
    async with connections() as make:
        with silent_port() as port:
            a = make(True, stun_servers=[f"stun:{LOOPBACK}:{port}"], gather_timeout=0.5)
            b = make(False)
            loop = asyncio.get_running_loop()
            start = loop.time()
            trickle = a.gather()
            host = await bounded(anext(trickle))
            assert host.type is CandidateType.HOST and a.failures == []

            assert await bounded(anext(trickle, None)) is None
            assert loop.time() - start >= 0.5
        assert [(f.server, f.reason) for f in a.failures] == [
            (f"{LOOPBACK}:{port}", "timeout: no response after 1 transmission in 0.5 s")
        ]
        assert a.local_candidates == [host]

        await signal(a, b)
        await connect_both(a, b)
        await exchange(a, b, count=1)


async def test_closed_stun_server_port_is_refused_at_once() -> None:
    """A STUN server port nothing listens on draws ICMP port unreachable: the server's
    failure is "refused", well before gather_timeout (Linux reports ICMP errors of
    unconnected sockets only with IP_RECVERR, which the host sockets ask for)."""
    port = dead_port()
    async with connections() as make:
        a = make(True, stun_servers=[f"stun:{LOOPBACK}:{port}"], gather_timeout=LIMIT)
        candidates = await bounded(a.gather_all())
        assert [c.type for c in candidates] == [CandidateType.HOST]
        assert [(f.server, f.reason) for f in a.failures] == [(f"{LOOPBACK}:{port}", "refused")]


async def test_srflx_equal_to_its_base_is_not_emitted(coturn: Coturn) -> None:
    """On loopback coturn maps the host socket to itself: that server-reflexive
    candidate is redundant with the host candidate (RFC 8445 section 5.1.3) and is not
    offered, yet the server answered (no failure)."""
    async with connections() as make:
        conn = make(True, stun_servers=[stun_url(coturn)])
        candidates = await bounded(conn.gather_all())
        assert [c.type for c in candidates] == [CandidateType.HOST]
        assert conn.failures == []
        assert conn.local_candidates == candidates
        assert conn.agent.local_candidates == candidates


async def test_srflx_behind_a_translating_proxy(coturn: Coturn) -> None:
    """Behind a UDP proxy coturn sees another address: a server-reflexive candidate
    whose related address and base are the host candidate's."""
    async with UdpProxy(coturn.address) as proxy, connections() as make:
        host, port = proxy.address
        conn = make(True, stun_servers=[f"stun:{host}:{port}"])
        candidates = await bounded(conn.gather_all())

        assert [c.type for c in candidates] == [CandidateType.HOST, CandidateType.SRFLX]
        host_candidate, srflx = candidates
        assert srflx.host == LOOPBACK and srflx.address != host_candidate.address
        assert srflx.related_address == host_candidate.address
        assert srflx.base == host_candidate.base
        assert srflx.priority < host_candidate.priority
        assert srflx.foundation != host_candidate.foundation
        assert f"typ srflx raddr {LOOPBACK} rport {host_candidate.port}" in srflx.to_sdp()
        assert via_sdp(srflx) == srflx
        assert conn.failures == []
        requests = proxy.seen.matching(lambda s: s.upstream and s.method == Method.BINDING)
        assert len(requests) == 1


async def test_turn_gives_a_relayed_candidate(coturn: Coturn) -> None:
    """A TURN server gives a relayed candidate (its own base) whose related address is
    where coturn saw the client; STUN and TURN together still put the host first."""
    async with connections() as make:
        conn = make(True, stun_servers=[stun_url(coturn)], turn_servers=[turn_server(coturn)])
        candidates = await bounded(conn.gather_all())

        assert [c.type for c in candidates] == [CandidateType.HOST, CandidateType.RELAY]
        host, relay = candidates
        assert relay.host == LOOPBACK and relay.port not in (host.port, coturn.port)
        assert relay.base == relay.address
        assert relay.related_address is not None
        assert relay.related_address[0] == LOOPBACK
        assert relay.related_address not in (relay.address, host.address)
        assert relay.priority >> 24 == 0  # type preference 0
        assert relay.server == turn_server(coturn).url
        assert " typ relay raddr " in relay.to_sdp()
        assert conn.failures == []


async def test_wrong_turn_password_is_a_failure(coturn: Coturn) -> None:
    """A refused TURN account gives no candidate and a failure that names the server
    and the 401; gathering ends, with the host candidate."""
    async with connections() as make:
        server = turn_server(coturn, password="wrong")
        conn = make(True, turn_servers=[server])
        candidates = await bounded(conn.gather_all())

        assert [c.type for c in candidates] == [CandidateType.HOST]
        assert len(conn.failures) == 1
        failure = conn.failures[0]
        assert failure.server == server.url
        assert "401" in failure.reason
        assert str(failure).startswith(server.url)


async def test_relay_only_without_turn_server_is_refused() -> None:
    """relay_only with no TURN server could never gather anything."""
    with pytest.raises(ValueError, match="TURN"):
        Connection(True, relay_only=True)


async def test_relay_only_gathers_no_local_address(coturn: Coturn) -> None:
    """relay_only offers the relayed candidate and nothing that names a local address:
    no host candidate, and the STUN server is not even asked."""
    async with UdpProxy(coturn.address) as proxy, connections() as make:
        host, port = proxy.address
        conn = make(
            True,
            relay_only=True,
            stun_servers=[f"stun:{host}:{port}"],
            turn_servers=[turn_server(coturn)],
        )
        candidates = await bounded(conn.gather_all())
        assert [c.type for c in candidates] == [CandidateType.RELAY]
        assert of_type(conn.agent.local_candidates, CandidateType.HOST) == []
        assert conn.failures == []
        assert proxy.seen.items == []


@pytest.mark.parametrize("gathering_ran", [False, True], ids=["not-yet-running", "query-pending"])
async def test_close_during_gathering_ends_gather_and_connect(gathering_ran: bool) -> None:
    """close() while gathering waits for a STUN answer - or before the gathering task has
    even run - ends a pending gather() and fails a pending connect() with
    ConnectionClosed; the agent stays closed."""
    with silent_server() as server:
        async with connections() as make:
            host_ip, port = server.getsockname()
            a = make(True, stun_servers=[f"stun:{host_ip}:{port}"], gather_timeout=LIMIT)
            trickle = a.gather()
            if gathering_ran:
                await bounded(anext(trickle))  # the host candidate
                loop = asyncio.get_running_loop()
                await bounded(loop.sock_recvfrom(server, 2048))  # the query is out
            rest = asyncio.ensure_future(anext(trickle, None))
            connecting = asyncio.ensure_future(a.connect())
            # One loop turn: both futures take their first step (and the first of them
            # creates the gathering task when gathering_ran is False); close() then runs
            # before that task's first step.
            await asyncio.sleep(0)
            await bounded(a.close())

            first = await bounded(rest)
            if not gathering_ran:  # host candidates come at once, without the task
                assert first is not None and first.type is CandidateType.HOST
                first = await bounded(anext(trickle, None))
            assert first is None
            with pytest.raises(ice.ConnectionClosed):
                await bounded(connecting)
            assert a.state is ice.ConnectionState.CLOSED
            assert a.failures == []
