"""Several data streams on :class:`ice.MultiStreamConnection`, over loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import ice
from ice import (
    CandidatePair,
    ConnectionClosed,
    ConnectionState,
    IceError,
    MultiStreamConnection,
)
from tests.ice.connection_support import (
    assert_mirrored,
    bounded,
    give_candidates,
    loopback_options,
)

pytestmark = pytest.mark.usefixtures("loop_errors")

STREAMS = (2, 2, 2)
"""Three streams of two components (RTP and RTCP, say), as the issue asks."""

Factory = Callable[..., MultiStreamConnection]


@contextlib.asynccontextmanager
async def sessions() -> AsyncIterator[Factory]:
    """A factory of loopback sessions with :data:`STREAMS`; all closed on the way out."""
    made: list[MultiStreamConnection] = []

    def make(controlling: bool, **options: Any) -> MultiStreamConnection:
        options.setdefault("components", STREAMS)
        session = MultiStreamConnection(controlling, **loopback_options(**options))
        made.append(session)
        return session

    try:
        yield make
    finally:
        await bounded(asyncio.gather(*(session.close() for session in made)))


async def signal(a: MultiStreamConnection, b: MultiStreamConnection) -> None:
    """Gather both; hand each the other's credentials and every stream's candidates."""
    cands_a, cands_b = await bounded(asyncio.gather(a.gather_all(), b.gather_all()))
    for to, of, candidates in ((a, b, cands_b), (b, a, cands_a)):
        to.set_remote_credentials(of.local_ufrag, of.local_pwd, ta=of.ta)
        for stream, stream_candidates in zip(to.streams, candidates, strict=True):
            give_candidates(stream, stream_candidates)


async def connect_both(
    a: MultiStreamConnection, b: MultiStreamConnection
) -> tuple[list[CandidatePair], list[CandidatePair]]:
    pairs_a, pairs_b = await bounded(asyncio.gather(a.connect(), b.connect()))
    return pairs_a, pairs_b


async def exchange_everywhere(a: MultiStreamConnection, b: MultiStreamConnection) -> None:
    """A datagram each way on every component of every stream, sent on all of them
    before any is read: each arrives on its own stream and component only."""
    for sender, receiver in ((a, b), (b, a)):
        for index, stream in enumerate(sender.streams):
            for component in (1, 2):
                await stream.send(b"stream %d component %d" % (index, component), component)
        for index, stream in enumerate(receiver.streams):
            for component in (1, 2):
                data = await bounded(stream.recv(component))
                assert data == b"stream %d component %d" % (index, component)
    assert [s.dropped_data for s in a.streams + b.streams] == [0] * 6


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_three_streams_of_two_components_connect_and_carry_data() -> None:
    """Every (stream, component) gets its own selected pair, the two sides' pairs are
    the two ends of one path, every stream shares the session's credentials, and data
    stays on its stream and component."""
    async with sessions() as make:
        a, b = make(True), make(False)
        await signal(a, b)
        pairs_a, pairs_b = await connect_both(a, b)

        assert [s.local_ufrag for s in a.streams] == [a.local_ufrag] * 3
        assert [s.local_pwd for s in b.streams] == [b.local_pwd] * 3
        assert [s.agent.controlling for s in a.streams + b.streams] == [True] * 3 + [False] * 3
        keys = set()
        for stream_a, stream_b, pair_a, pair_b in zip(
            a.streams, b.streams, pairs_a, pairs_b, strict=True
        ):
            assert stream_a.selected_pair(1) is pair_a and stream_b.selected_pair(1) is pair_b
            for component in (1, 2):
                selected_a = stream_a.selected_pair(component)
                selected_b = stream_b.selected_pair(component)
                assert selected_a is not None and selected_b is not None
                assert selected_a.component == selected_b.component == component
                assert_mirrored(selected_a, selected_b)
                keys.add(selected_a.key)
        assert len(keys) == 6  # six sockets on each side, six distinct paths
        assert a.state.usable and b.state.usable
        assert all(s.state.usable for s in a.streams + b.streams)
        await exchange_everywhere(a, b)


async def test_the_checks_of_all_streams_share_one_pacing() -> None:
    """One Ta for the whole session: new checks of all streams together leave at least
    Ta apart (the first transmissions, less the timer's 1 ms lead)."""
    async with sessions() as make:
        a, b = make(True, ta=0.02, negotiate_ta=False), make(False, ta=0.02, negotiate_ta=False)
        await signal(a, b)
        await connect_both(a, b)
        firsts = [
            (pair.checked_at, index)
            for index, stream in enumerate(a.streams)
            for pair in stream.agent.pairs()
            if pair.checked_at is not None
        ]
        assert {index for _, index in firsts} == {0, 1, 2}
        times = sorted(at for at, _ in firsts)
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert gaps and min(gaps) >= 0.02 - 0.0011


async def test_stats_rows_name_their_stream() -> None:
    async with sessions() as make:
        a, b = make(True), make(False)
        await signal(a, b)
        await connect_both(a, b)
        await exchange_everywhere(a, b)
        selected = [row for row in a.stats() if row["selected"]]
        assert sorted((row["stream"], row["component"]) for row in selected) == [
            (s, c) for s in range(3) for c in (1, 2)
        ]
        assert all(row["packets_sent"] >= 1 and row["packets_received"] >= 1 for row in selected)


async def test_restart_gives_every_stream_new_credentials_and_new_pairs() -> None:
    """The session restarts as one: every stream changes to the same new ufrag and pwd,
    the peer follows from the changed credentials, every stream selects new pairs and
    data flows on all of them afterwards."""
    async with sessions() as make:
        a, b = make(True), make(False)
        await signal(a, b)
        old_a, _ = await connect_both(a, b)
        old = (a.local_ufrag, a.local_pwd, b.local_ufrag, b.local_pwd)

        await a.streams[1].restart()  # a stream's restart is the session's
        assert a.agent.restarting and a.state.usable
        b.set_remote_credentials(a.local_ufrag, a.local_pwd)
        assert b.agent.restarting
        a.set_remote_credentials(b.local_ufrag, b.local_pwd)
        for to, of in ((b, a), (a, b)):
            for stream, peer_stream in zip(to.streams, of.streams, strict=True):
                give_candidates(stream, peer_stream.local_candidates)
        new_a, _ = await connect_both(a, b)

        new = (a.local_ufrag, a.local_pwd, b.local_ufrag, b.local_pwd)
        assert all(n != o for n, o in zip(new, old, strict=True))
        assert {s.local_ufrag for s in a.streams} == {a.local_ufrag}
        assert all(n is not o for n, o in zip(new_a, old_a, strict=True))
        assert [a.agent.restarting, b.agent.restarting] == [False, False]
        await exchange_everywhere(a, b)


async def test_close_releases_every_socket_and_wakes_the_readers() -> None:
    """Closing one stream closes the session: every socket of every stream is released,
    a waiting recv() on any stream raises ConnectionClosed, and so does connect()."""
    before = open_descriptors()
    async with sessions() as make:
        a, b = make(True), make(False)
        await signal(a, b)
        await connect_both(a, b)
        assert open_descriptors() >= before + 12
        waiting = asyncio.ensure_future(a.streams[2].recv(2))
        await asyncio.sleep(0)  # let recv() start waiting
        await bounded(a.streams[0].close())
        assert a.state is ConnectionState.CLOSED
        with pytest.raises(ConnectionClosed):
            await bounded(waiting)
        with pytest.raises(ConnectionClosed):
            await a.connect()
        with pytest.raises(ConnectionClosed):
            await a.restart()
        with pytest.raises(IceError):
            a.streams[1].send_nowait(b"late")
        await bounded(b.close())
    assert open_descriptors() == before


async def test_bad_stream_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one stream"):
        MultiStreamConnection(True, components=())
    with pytest.raises(ValueError, match="max_pairs"):
        MultiStreamConnection(True, components=(1, 1, 1), max_pairs=2)


async def test_close_cancelled_at_its_first_await_has_closed_every_socket() -> None:
    """Every stream's sockets are closed before close() first awaits anything: a close
    cancelled there (as at shutdown) leaks none."""
    before = open_descriptors()
    session = MultiStreamConnection(True, **loopback_options(components=STREAMS))
    await bounded(session.gather_all())
    closing = asyncio.ensure_future(session.close())
    await asyncio.sleep(0)  # let close() run to its first await
    closing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await closing
    assert session.state is ConnectionState.CLOSED
    assert open_descriptors() == before


async def test_expired_consent_closes_the_session_with_its_reason() -> None:
    """When consent expires (RFC 7675; 2 s here, with no consent check due before
    4 s), the whole session closes: its state is FAILED, and recv, send, connect and
    restart on any stream raise the consent error; every socket is released."""
    before = open_descriptors()
    async with sessions() as make:
        a, b = make(True, consent_timeout=2.0), make(False)
        await signal(a, b)
        await connect_both(a, b)
        with pytest.raises(ice.ConnectionFailed, match="consent") as caught:
            await bounded(a.streams[2].recv(1))
        assert a.state is ConnectionState.FAILED
        for stream in a.streams:
            with pytest.raises(ice.ConnectionFailed, match="consent"):
                stream.send_nowait(b"late")
        with pytest.raises(ice.ConnectionFailed) as again:
            await a.connect()
        assert again.value is caught.value
        with pytest.raises(ice.ConnectionFailed, match="consent"):
            await a.streams[0].restart()
    assert open_descriptors() == before
