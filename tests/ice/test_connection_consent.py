"""Consent expiry on a real :class:`ice.Connection`: it closes itself, and send() and
recv() say why (RFC 7675: nothing more may be sent)."""

from __future__ import annotations

import asyncio
import os

import pytest

import ice
from tests.coturn import Coturn
from tests.ice.connection_support import bounded, connect_both, connections, signal, turn_server

pytestmark = pytest.mark.usefixtures("loop_errors")


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_consent_expiry_closes_the_connection_with_its_reason() -> None:
    async with connections() as make:
        # Consent lasts 0.3 s from selection; the first consent check leaves after 4 s
        # at the earliest, so nothing can renew it: it expires 0.3 s after connecting.
        a = make(True, consent_timeout=0.3)
        b = make(False)
        await signal(a, b)
        await connect_both(a, b)
        files = _open_files()

        with pytest.raises(ice.ConnectionFailed, match="consent to send expired"):
            await bounded(a.recv())
        assert a.state is ice.ConnectionState.FAILED
        with pytest.raises(ice.ConnectionFailed, match="consent to send expired"):
            await a.send(b"no more")
        assert _open_files() == files - 1  # a's one host socket is closed
        await a.close()  # still fine afterwards
        assert b.state.usable  # the peer only notices through its own consent checks


async def test_close_after_consent_expiry_waits_for_the_turn_release(coturn: Coturn) -> None:
    async with connections() as make:
        a = make(True, relay_only=True, turn_servers=[turn_server(coturn)], consent_timeout=0.3)
        b = make(False)
        await signal(a, b)
        await connect_both(a, b)
        (allocation,) = a._relays.values()  # white-box: the relayed candidate's allocation

        with pytest.raises(ice.ConnectionFailed, match="consent to send expired"):
            await bounded(a.recv())
        await a.close()  # the expiry began the release; close() waits for it
        assert allocation.closed


async def test_a_cancelled_close_leaves_the_releases_of_a_failure_running() -> None:
    async with connections() as make:
        a = make(True)
        await bounded(a.gather_all())
        a._shut_for(None)  # white-box: closed as a failure closes it
        may_finish, released = asyncio.Event(), asyncio.Event()

        async def release() -> None:  # stands in for a TURN release
            await may_finish.wait()
            released.set()

        a._spawn(release())
        with pytest.raises(TimeoutError):  # close() waits for the release, which waits
            await asyncio.wait_for(a.close(), 0.01)
        may_finish.set()
        await bounded(released.wait())
