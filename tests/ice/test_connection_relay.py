"""``ice.Connection`` through a real coturn: one side (or both) gathers relayed
candidates only, the checks and the data go through TURN allocations, and both ends
agree on the path.
"""

from __future__ import annotations

import pytest

import ice
from ice import CandidateType
from tests.coturn import Coturn
from tests.ice.connection_support import (
    assert_mirrored,
    bounded,
    connect_both,
    connections,
    exchange,
    selected_row,
    signal,
    turn_server,
)

pytestmark = pytest.mark.usefixtures("loop_errors")


@pytest.mark.parametrize(
    "relay_controls", [True, False], ids=["relay-controlling", "relay-controlled"]
)
async def test_relay_only_on_one_side(coturn: Coturn, relay_controls: bool) -> None:
    """A relay-only side and a host-only side connect over the relayed candidate: the
    relay side sends from its allocation, the host side to coturn's relayed address."""
    async with connections() as make:
        a = make(relay_controls, relay_only=True, turn_servers=[turn_server(coturn)])
        b = make(not relay_controls)
        await signal(a, b)
        assert [c.type for c in a.local_candidates] == [CandidateType.RELAY]
        relay = a.local_candidates[0]
        pair_a, pair_b = await connect_both(a, b)

        assert pair_a.local.type is CandidateType.RELAY
        assert pair_a.base == relay.address
        assert pair_a.remote.type is CandidateType.HOST
        assert pair_b.remote.address == relay.address  # b talks to coturn's relayed port
        assert pair_b.remote.type is CandidateType.RELAY
        assert pair_b.local.type is CandidateType.HOST
        assert_mirrored(pair_a, pair_b)

        await exchange(a, b, count=4)
        for conn in (a, b):
            row = selected_row(conn)
            assert row["bytes_sent"] == row["bytes_received"] == 4 * len(b"a->b 0")
            assert conn.dropped_data == 0


async def test_relay_only_on_both_sides(coturn: Coturn) -> None:
    """Two relay-only sides (two accounts on one coturn) connect relay to relay: every
    datagram crosses coturn twice."""
    async with connections() as make:
        a = make(True, relay_only=True, turn_servers=[turn_server(coturn, "alice")])
        b = make(False, relay_only=True, turn_servers=[turn_server(coturn, "bob")])
        await signal(a, b)
        pair_a, pair_b = await connect_both(a, b)

        for pair in (pair_a, pair_b):
            assert pair.local.type is CandidateType.RELAY
            assert pair.remote.type is CandidateType.RELAY
            assert pair.base == pair.local.address
        assert pair_a.remote.address == b.local_candidates[0].address
        assert pair_b.remote.address == a.local_candidates[0].address
        assert_mirrored(pair_a, pair_b)

        await exchange(a, b, count=4)
        assert selected_row(a)["bytes_received"] == selected_row(b)["bytes_sent"] > 0


async def test_relay_only_with_a_refused_account_fails(coturn: Coturn) -> None:
    """relay_only whose one TURN server refuses the account has nothing to check with:
    connect() raises ConnectionFailed at ice_timeout, and failures says why."""
    async with connections() as make:
        server = turn_server(coturn, password="wrong")
        a = make(True, relay_only=True, turn_servers=[server], ice_timeout=0.5)
        b = make(False)
        await signal(a, b)
        assert a.local_candidates == []
        with pytest.raises(ice.ConnectionFailed) as caught:
            await bounded(a.connect())
        assert caught.value.pairs == ()
        assert [f.server for f in a.failures] == [server.url]
        assert "401" in a.failures[0].reason
