"""``ice.Connection`` end to end on loopback: two connections in one process, host
candidates on 127.0.0.1, real UDP sockets and the real asyncio clock.

Connecting, data both ways, statistics, closing, trickled candidates, checks that arrive
before the remote credentials, role conflicts, the ICE timeout and gathering errors.
Every wait is bounded (``asyncio.timeout``) and on an event; the one ``sleep(0)`` is a
single, deterministic turn of the loop, not a wait.
"""

from __future__ import annotations

import asyncio

import pytest

import ice
from ice import CandidateType, ConnectionState
from tests.ice.connection_support import (
    LOOPBACK,
    assert_mirrored,
    bounded,
    connect_both,
    connections,
    exchange,
    give_candidates,
    give_credentials,
    selected_row,
    signal,
)
from tests.ports import dead_port

pytestmark = pytest.mark.usefixtures("loop_errors")


@pytest.mark.parametrize("nomination", ["regular", "aggressive"])
async def test_connects_and_carries_data(nomination: str) -> None:
    """Both sides select the same path, datagrams flow both ways in order, and stats()
    shows the selected pair with its checks and bytes."""
    async with connections() as make:
        a = make(True, nomination=nomination)
        b = make(False, nomination=nomination)
        await signal(a, b)
        pair_a, pair_b = await connect_both(a, b)

        assert_mirrored(pair_a, pair_b)
        assert pair_a.local in a.local_candidates and pair_b.local in b.local_candidates
        assert pair_a.remote in b.local_candidates and pair_b.remote in a.local_candidates
        assert pair_a.local.type is CandidateType.HOST and pair_a.local.host == LOOPBACK
        assert a.selected_pair() is pair_a and b.selected_pair() is pair_b
        assert {a.state, b.state} <= {ConnectionState.CONNECTED, ConnectionState.COMPLETED}
        assert pair_a.nominated and pair_b.nominated

        await exchange(a, b, count=5)

        for conn, pair in ((a, pair_a), (b, pair_b)):
            row = selected_row(conn)
            assert row["local"] == str(pair.local) and row["remote"] == str(pair.remote)
            assert row["nominated"] and row["state"] == "succeeded"
            assert row["bytes_sent"] == row["bytes_received"] == 5 * len(b"a->b 0")
            assert row["requests_sent"] > 0 and row["responses_received"] > 0
            assert row["requests_received"] > 0 and row["responses_sent"] > 0
            assert row["rtt"] is not None and row["total_rtt"] >= row["rtt"] > 0
            assert row["packets_sent"] == row["packets_received"] == 5
            sent, received = row["last_sent_at"], row["last_received_at"]
            assert sent is not None and received is not None
            # a sent first and heard back last; b heard first and answered last
            assert received >= sent if conn is a else sent >= received
            assert row["consent_requests_sent"] == 0  # the first comes after 4 s at least
            assert conn.dropped_data == 0


async def test_close_ends_recv_and_send_and_is_idempotent() -> None:
    """close() wakes a pending recv() with ConnectionClosed; afterwards recv(), send()
    and connect() raise it too, and a second close() is a no-op."""
    async with connections() as make:
        a, b = make(True), make(False)
        await signal(a, b)
        await connect_both(a, b)

        pending = asyncio.create_task(b.recv())
        await b.send(b"ping")
        assert await bounded(a.recv()) == b"ping"  # meanwhile b.recv() began to wait
        assert not pending.done()
        await bounded(b.close())
        with pytest.raises(ice.ConnectionClosed):
            await bounded(pending)

        assert b.state is ConnectionState.CLOSED
        with pytest.raises(ice.ConnectionClosed):
            await bounded(b.recv())
        with pytest.raises(ice.ConnectionClosed):
            await b.send(b"after close")
        with pytest.raises(ice.ConnectionClosed):
            await bounded(b.connect())
        await bounded(b.close())
        assert b.state is ConnectionState.CLOSED
        with pytest.raises(ice.ConnectionClosed):
            await bounded(b.recv())


async def test_recv_of_a_component_the_connection_does_not_have() -> None:
    """recv() names the components there are instead of waiting forever (or a KeyError);
    the connection goes on working."""
    async with connections() as make:
        a, b = make(True), make(False)
        await signal(a, b)
        await connect_both(a, b)
        for component in (0, 2):
            with pytest.raises(ValueError, match=rf"no component {component} \(1 to 1\)"):
                await bounded(a.recv(component))
        await b.send(b"ping")
        assert await bounded(a.recv()) == b"ping"


async def test_concurrent_receivers() -> None:
    """Several recv() calls may wait on one component: each datagram goes to one of
    them, a cancelled one loses nothing, and close() wakes every one still waiting."""
    async with connections() as make:
        a, b = make(True), make(False)
        await signal(a, b)
        await connect_both(a, b)

        readers = [asyncio.create_task(b.recv()) for _ in range(3)]
        await b.send(b"ping")
        assert await bounded(a.recv()) == b"ping"  # meanwhile the readers began to wait
        readers[1].cancel()
        await a.send(b"one")
        await a.send(b"two")
        got = await bounded(asyncio.gather(readers[0], readers[2]))
        assert sorted(got) == [b"one", b"two"]
        assert readers[1].cancelled()

        waiting = [asyncio.create_task(b.recv()) for _ in range(2)]
        await b.send(b"ping")
        assert await bounded(a.recv()) == b"ping"
        await bounded(b.close())
        for outcome in await bounded(asyncio.gather(*waiting, return_exceptions=True)):
            assert isinstance(outcome, ice.ConnectionClosed)


async def test_candidates_added_while_connect_runs() -> None:
    """Both agents are already checking - with no remote candidate at all - when the
    candidates are handed over one by one (trickle ICE): pairs formed while the checks
    run are checked too, and both sides connect over the signalled host candidates."""
    async with connections() as make:
        a, b = make(True), make(False)
        give_credentials(a, b)
        give_credentials(b, a)
        cands_a, cands_b = await bounded(asyncio.gather(a.gather_all(), b.gather_all()))
        connecting = asyncio.gather(a.connect(), b.connect())
        try:
            await asyncio.sleep(0)  # one loop turn: each connect() starts its agent
            assert a.state is b.state is ConnectionState.CHECKING
            assert not a.agent.remote_candidates and not b.agent.remote_candidates
            give_candidates(b, cands_a)
            give_candidates(a, cands_b)
            pair_a, pair_b = await bounded(connecting)
        finally:
            connecting.cancel()

        assert pair_a.remote.address == cands_b[0].address
        assert pair_b.remote.address == cands_a[0].address
        assert pair_a.remote.type is pair_b.remote.type is CandidateType.HOST
        assert_mirrored(pair_a, pair_b)
        await exchange(a, b, count=2)


async def test_checks_before_remote_credentials() -> None:
    """The controlled side answers checks that arrive before it knows the peer's
    credentials or candidates; once it learns them, it connects over the same path."""
    async with connections() as make:
        a, b = make(True), make(False)
        cands_a, cands_b = await bounded(asyncio.gather(a.gather_all(), b.gather_all()))
        give_credentials(a, b)
        give_candidates(a, cands_b)

        pair_a = await bounded(a.connect())  # its nominating check was answered by b
        assert b.agent.remote_ufrag is None
        assert b.state is ConnectionState.NEW
        assert b.agent.stats.responses_sent >= 2
        assert b.agent.stats.dropped_unauthenticated == 0

        give_credentials(b, a)
        give_candidates(b, cands_a)
        pair_b = await bounded(b.connect())
        assert_mirrored(pair_a, pair_b)
        assert pair_b.nominated
        await exchange(a, b, count=3)


@pytest.mark.parametrize("nomination", ["regular", "aggressive"])
async def test_data_from_a_peer_that_connected_first(nomination: str) -> None:
    """The controlling side may send as soon as its connect() returns (RFC 8445 section
    12.1), while the controlled side has not validated the pair itself yet: the data
    comes from an address that has sent authenticated checks, and is delivered."""
    async with connections() as make:
        a = make(True, nomination=nomination)
        b = make(False, nomination=nomination)
        await signal(a, b)
        pair_a = await bounded(a.connect())  # b has not called connect(): no checks of its own
        assert b.state is ConnectionState.NEW and not b.agent.valid_pairs

        sent = [b"early %d" % i for i in range(3)]
        for data in sent:
            await a.send(data)
        assert [await bounded(b.recv()) for _ in sent] == sent
        assert b.dropped_data == 0

        pair_b = await bounded(b.connect())
        assert_mirrored(pair_a, pair_b)
        await exchange(a, b, count=2)


@pytest.mark.parametrize("controlling", [True, False], ids=["both-controlling", "both-controlled"])
async def test_role_conflict_is_resolved(controlling: bool) -> None:
    """Two agents that claim the same role (RFC 8445 section 7.3.1.1): exactly one
    switches, and they connect."""
    async with connections() as make:
        a, b = make(controlling), make(controlling)
        await signal(a, b)
        pair_a, pair_b = await connect_both(a, b)

        assert a.agent.controlling != b.agent.controlling
        assert [a.agent.controlling, b.agent.controlling].count(controlling) == 1
        assert_mirrored(pair_a, pair_b)
        await exchange(a, b, count=2)


@pytest.mark.parametrize("winner", ["a", "b"])
async def test_the_higher_tie_breaker_keeps_the_controlling_role(winner: str) -> None:
    """Both claim the controlling role with given tie-breakers: the higher one keeps it,
    whichever side sent the first check."""
    high, low = 2**64 - 1, 2**63
    async with connections() as make:
        a = make(True, tie_breaker=high if winner == "a" else low)
        b = make(True, tie_breaker=low if winner == "a" else high)
        assert (a.agent.tie_breaker, b.agent.tie_breaker) == (
            (high, low) if winner == "a" else (low, high)
        )
        await signal(a, b)
        await connect_both(a, b)
        assert a.agent.controlling is (winner == "a")
        assert b.agent.controlling is (winner == "b")


@pytest.mark.parametrize("tie_breaker", [-1, 2**64, 1.5, True])
def test_a_tie_breaker_outside_64_bits_is_refused(tie_breaker: int) -> None:
    with pytest.raises(ValueError, match="tie_breaker must be an int from 0 to 2\\*\\*64 - 1"):
        ice.Connection(True, tie_breaker=tie_breaker)
    with pytest.raises(ValueError, match="tie_breaker"):
        ice.MultiStreamConnection(True, components=(1, 1), tie_breaker=tie_breaker)


async def _fail_against_dead_port(
    ice_timeout: float, host: str = LOOPBACK
) -> tuple[ice.ConnectionFailed, float, int]:
    """connect() with one remote candidate on a port nothing listens on (at ``host``):
    the error, the seconds connect() took, and the port."""
    port = dead_port()
    async with connections() as make:
        a = make(True, ice_timeout=ice_timeout)
        await bounded(a.gather_all())
        a.set_remote_credentials("deadbeef", "x" * 22)
        line = f"candidate:1 1 udp 2130706431 {host} {port} typ host"
        a.add_remote_candidate(ice.Candidate.from_sdp(line))
        a.add_remote_candidate(None)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ice.ConnectionFailed) as caught:
            await bounded(a.connect())
        elapsed = loop.time() - start
        assert a.state is ConnectionState.FAILED
    return caught.value, elapsed, port


async def test_ice_timeout_raises_connection_failed() -> None:
    """With no answer at all, connect() raises ConnectionFailed at ice_timeout, not
    before (its timer is not armed early, unlike the others: see TIMER_LEAD), naming
    the pair it tried."""
    error, elapsed, port = await _fail_against_dead_port(0.5)
    assert elapsed >= 0.5
    assert len(error.pairs) == 1
    report = error.pairs[0]
    assert report.remote.endswith(f"{LOOPBACK}:{port}")
    assert report.local.startswith(f"host udp {LOOPBACK}:")
    assert report.requests_sent >= 1 and report.responses_received == 0
    assert not report.nominated
    assert f"{LOOPBACK}:{port}" in str(error)


async def test_ice_timeout_report_says_why_the_pair_failed() -> None:
    """Each pair in ConnectionFailed.pairs says how it ended: one that was never
    answered has failed, with a reason."""
    error, _, _ = await _fail_against_dead_port(0.5)
    report = error.pairs[0]
    assert report.state is ice.PairState.FAILED
    assert report.reason == "ICMP: Connection refused"  # at once, not at the check's timeout


async def test_a_check_the_kernel_refuses_to_send_fails_with_that_reason() -> None:
    """A remote candidate on 127.255.255.255, the loopback network's broadcast address:
    the kernel refuses the datagram (EACCES, no SO_BROADCAST), nothing is sent, and the
    check fails with that reason, not as an unanswered check at its timeout."""
    error, _, _ = await _fail_against_dead_port(0.5, host="127.255.255.255")
    report = error.pairs[0]
    assert report.state is ice.PairState.FAILED
    assert report.reason == "send failed: Permission denied"


async def test_no_usable_address_is_an_error() -> None:
    """An address filter that leaves nothing makes gather() and connect() raise
    IceError at once instead of ending quietly without candidates."""
    async with connections() as make:
        a = make(True, address_filter=lambda address: False)
        with pytest.raises(ice.IceError, match="no usable interface address"):
            await bounded(a.gather_all())
        with pytest.raises(ice.IceError, match="no usable interface address"):
            await bounded(a.connect())
        assert a.local_candidates == []


async def test_two_components() -> None:
    """Two components (RTP and RTCP without rtcp-mux): a socket, a candidate and a
    selected pair each, and data kept apart by component."""
    async with connections() as make:
        a = make(True, components=2)
        b = make(False, components=2)
        await signal(a, b)
        assert sorted(c.component for c in a.local_candidates) == [1, 2]
        await connect_both(a, b)

        for component in (1, 2):
            pair_a, pair_b = a.selected_pair(component), b.selected_pair(component)
            assert pair_a is not None and pair_b is not None
            assert pair_a.component == pair_b.component == component
            assert_mirrored(pair_a, pair_b)
        assert a.selected_pair(1).base != a.selected_pair(2).base  # type: ignore[union-attr]

        await a.send(b"to two", component=2)
        await a.send(b"to one", component=1)
        assert await bounded(b.recv(component=1)) == b"to one"
        assert await bounded(b.recv(component=2)) == b"to two"
        await b.send(b"back on two", component=2)
        assert await bounded(a.recv(component=2)) == b"back on two"
