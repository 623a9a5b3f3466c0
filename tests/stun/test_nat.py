"""RFC 5780 NAT discovery and the client against a real coturn."""

from __future__ import annotations

import socket

import pytest

import stun
from stun.client import binding
from stun.nat import Behavior, NotRfc5780Error, discover
from tests.coturn import Coturn


async def test_discover_against_local_coturn_reports_no_nat(coturn_5780: Coturn) -> None:
    report = await discover(coturn_5780.address, timeout=2)
    assert not report.behind_nat
    assert report.mapped_address == report.local_address
    assert report.other_address == coturn_5780.other_address
    assert report.mapping is Behavior.ENDPOINT_INDEPENDENT
    assert report.filtering is Behavior.ENDPOINT_INDEPENDENT


async def test_discover_needs_an_rfc5780_server(coturn: Coturn) -> None:
    with pytest.raises(NotRfc5780Error, match="OTHER-ADDRESS"):
        await discover(f"{coturn.host}:{coturn.port}", timeout=2)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_binding_against_coturn(coturn: Coturn, transport: str) -> None:
    result = await binding(coturn.address, transport=transport)  # type: ignore[arg-type]
    assert result.mapped_address == result.local
    assert result.server == coturn.address
    assert result.response.get(stun.Attr.SOFTWARE, "").startswith("Coturn")


async def test_binding_resolves_host_names(coturn: Coturn) -> None:
    result = await binding(f"stun:localhost:{coturn.port}", family=socket.AF_INET)
    assert result.server[1] == coturn.port
    assert result.mapped_address == result.local
