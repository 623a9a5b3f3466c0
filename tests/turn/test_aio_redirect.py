"""300 Try Alternate against real coturn: followed once, over UDP, TCP and TLS."""

from __future__ import annotations

import asyncio

import pytest

import turn
from stun.uri import Transport
from tests.coturn import CoturnFactory

pytestmark = pytest.mark.coturn


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_redirect_is_followed_once(
    coturn_factory: CoturnFactory, transport: Transport
) -> None:
    target = coturn_factory(users={"alice": "pw"})
    redirector = coturn_factory(users={"alice": "pw"}, alternate=target.address)
    events: list[turn.Event] = []
    allocation = await asyncio.wait_for(
        turn.allocate(
            redirector.address, "alice", "pw", transport=transport, on_event=events.append
        ),
        10,
    )
    async with allocation:
        assert allocation.server_address == target.address
        assert allocation.server.port == target.port
        # on_event sees the redirect, then the allocation on the other server.
        assert isinstance(events[0], turn.AllocationFailed)
        assert isinstance(events[0].error, turn.AlternateServer)
        assert events[0].error.server == target.address
        assert isinstance(events[1], turn.Allocated)


async def test_redirect_over_tls_checks_the_new_servers_certificate(
    coturn_factory: CoturnFactory,
) -> None:
    target = coturn_factory(users={"alice": "pw"}, tls=True)
    redirector = coturn_factory(users={"alice": "pw"}, tls=True, alternate=target.tls_address)
    allocation = await asyncio.wait_for(
        turn.allocate(
            redirector.tls_address,
            "alice",
            "pw",
            transport="tls",
            ssl=target.client_ssl_context(),
            server_hostname="localhost",
        ),
        10,
    )
    async with allocation:
        assert allocation.server_address == target.tls_address


async def test_a_second_redirect_is_not_followed(coturn_factory: CoturnFactory) -> None:
    first = coturn_factory(users={"alice": "pw"})
    # The redirect target itself redirects (back to a server that redirects): a loop.
    loop_back = coturn_factory(users={"alice": "pw"}, alternate=first.address)
    redirector = coturn_factory(users={"alice": "pw"}, alternate=loop_back.address)
    with pytest.raises(turn.AllocationError) as caught:
        await asyncio.wait_for(turn.allocate(redirector.address, "alice", "pw"), 10)
    assert caught.value.code == 300
    assert "redirected again" in str(caught.value)
