"""ICE restart and ICE-lite on :class:`ice.Connection`, over loopback sockets."""

from __future__ import annotations

import asyncio

import pytest

from ice import Connection
from tests.ice.connection_support import (
    bounded,
    connect_both,
    connections,
    exchange,
    give_candidates,
    selected_row,
    signal,
)

pytestmark = pytest.mark.usefixtures("loop_errors")


async def test_restart_while_data_flows() -> None:
    """a restarts while it sends a datagram to b every millisecond; b detects the restart
    from a's new credentials and restarts too. Both get new credentials and new selected
    pairs, connect() returns the new pair, and b receives every datagram, in order."""
    async with connections() as make:
        a, b = make(True), make(False)
        await signal(a, b)
        old_a, old_b = await connect_both(a, b)
        old_credentials = (a.local_ufrag, a.local_pwd, b.local_ufrag, b.local_pwd)
        sent: list[bytes] = []
        enough = asyncio.Event()
        target = [1_000_000]

        async def stream() -> None:
            while len(sent) < target[0]:
                data = b"%d" % len(sent)
                await a.send(data)
                sent.append(data)
                await asyncio.sleep(0.001)  # pacing the sender, not waiting for anything
            enough.set()

        sender = asyncio.create_task(stream())
        await a.restart()
        assert a.agent.restarting and a.selected_pair() is old_a
        b.set_remote_credentials(a.local_ufrag, a.local_pwd)
        assert b.agent.restarting and b.local_ufrag != old_credentials[2]
        give_candidates(b, a.local_candidates)
        a.set_remote_credentials(b.local_ufrag, b.local_pwd)
        give_candidates(a, b.local_candidates)
        new_a, new_b = await connect_both(a, b)
        target[0] = len(sent) + 20  # and 20 more on the new pair
        await bounded(enough.wait())
        await bounded(sender)

        new_credentials = (a.local_ufrag, a.local_pwd, b.local_ufrag, b.local_pwd)
        assert all(n != o for n, o in zip(new_credentials, old_credentials, strict=True))
        assert new_a is not old_a and new_b is not old_b
        assert new_a.key == old_a.key and new_a.nominated and new_b.nominated
        assert [c.agent.restarting for c in (a, b)] == [False, False]
        assert a.agent.controlling and not b.agent.controlling
        assert a.state.usable
        received = [await bounded(b.recv()) for _ in sent]
        assert received == sent
        assert new_b.packets_received >= 20 and old_b.packets_received > 0
        await exchange(a, b)


async def test_lite_connection_against_a_full_one() -> None:
    """A lite connection built as controlling becomes controlled against a full peer,
    sends no check, and carries data over the pair the full side nominates."""
    async with connections() as make:
        full, lite = make(False), make(True, lite=True)
        cands_full, cands_lite = await bounded(asyncio.gather(full.gather_all(), lite.gather_all()))
        full.set_remote_credentials(lite.local_ufrag, lite.local_pwd, lite=True)
        lite.set_remote_credentials(full.local_ufrag, full.local_pwd)
        give_candidates(full, cands_lite)
        give_candidates(lite, cands_full)
        await connect_both(full, lite)
        await exchange(full, lite)
        assert full.agent.controlling and not lite.agent.controlling
        assert lite.agent.stats.checks_sent == 0
        assert selected_row(lite)["nominated"]


def test_a_lite_connection_has_no_servers() -> None:
    with pytest.raises(ValueError, match="ICE-lite"):
        Connection(False, lite=True, stun_servers=["stun:127.0.0.1:3478"])
