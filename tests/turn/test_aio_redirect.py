"""300 Try Alternate against real coturn: followed once, over UDP, TCP and TLS."""

from __future__ import annotations

import asyncio
import ssl

import pytest

import stun
import turn
from stun.attributes import Address
from stun.framing import frame_length
from stun.uri import Transport
from tests.certs import tls_contexts
from tests.coturn import CoturnFactory

pytestmark = pytest.mark.coturn


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_redirect_is_followed_once(
    coturn_factory: CoturnFactory, transport: Transport, loop_errors: list[dict[str, object]]
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
    coturn_factory: CoturnFactory, loop_errors: list[dict[str, object]]
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


async def test_a_second_redirect_is_not_followed(
    coturn_factory: CoturnFactory, loop_errors: list[dict[str, object]]
) -> None:
    first = coturn_factory(users={"alice": "pw"})
    # The redirect target itself redirects (back to a server that redirects): a loop.
    loop_back = coturn_factory(users={"alice": "pw"}, alternate=first.address)
    redirector = coturn_factory(users={"alice": "pw"}, alternate=loop_back.address)
    with pytest.raises(turn.AllocationError) as caught:
        await asyncio.wait_for(turn.allocate(redirector.address, "alice", "pw"), 10)
    assert caught.value.code == 300
    assert "redirected again" in str(caught.value)


async def _redirector(target: Address, domain: str) -> asyncio.Server:
    """A TLS server that answers every Allocate with 300 to ``target`` and
    ALTERNATE-DOMAIN ``domain``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(20)
                size = frame_length(header)
                assert size is not None
                request = stun.decode(header + await reader.readexactly(size - 20))
                writer.write(
                    stun.Message(
                        request.method,
                        stun.Class.ERROR,
                        request.transaction_id,
                        [
                            (stun.Attr.ERROR_CODE, (300, "Try Alternate")),
                            (stun.Attr.ALTERNATE_SERVER, target),
                            (stun.Attr.ALTERNATE_DOMAIN, domain),
                        ],
                    ).encode()
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=tls_contexts().server)


@pytest.mark.parametrize(("domain", "works"), [("localhost", True), ("elsewhere.test", False)])
async def test_tls_redirect_checks_the_certificate_against_alternate_domain(
    coturn_factory: CoturnFactory,
    domain: str,
    works: bool,
    loop_errors: list[dict[str, object]],
) -> None:
    target = coturn_factory(users={"alice": "pw"}, tls=True)
    redirector = await _redirector(target.tls_address, domain)
    port = redirector.sockets[0].getsockname()[1]
    context = tls_contexts().client  # trusts the session certificate coturn uses too
    try:
        attempt = turn.allocate(
            ("127.0.0.1", port),
            "alice",
            "pw",
            transport="tls",
            ssl=context,
            server_hostname="127.0.0.1",
        )
        if works:
            allocation = await asyncio.wait_for(attempt, 10)
            async with allocation:
                assert allocation.server_address == target.tls_address
        else:
            # 127.0.0.1 would pass the check; only ALTERNATE-DOMAIN makes it fail.
            with pytest.raises(ssl.SSLCertVerificationError, match=r"elsewhere\.test"):
                await asyncio.wait_for(attempt, 10)
    finally:
        redirector.close()
        await redirector.wait_closed()
