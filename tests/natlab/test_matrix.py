"""The matrix: for each pair of host kinds two peers in their own namespaces connect
through real NAT routers and a real coturn, and the selected pair has the candidate types
that combination allows; STUN-only combinations that cannot work fail at the ICE timeout."""

from __future__ import annotations

import itertools

import pytest

from .cells import AIOICE, MATRIX, Cell
from .conftest import ICE_TIMEOUT
from .runner import CellResult, SideResult
from .topology import Kind

pytestmark = [pytest.mark.natlab, pytest.mark.coturn]

MARGIN = 1.5
"""Seconds after the ICE timeout by which ConnectionFailed must have come (timers fire on
time; this covers the peers' scheduling on a busy machine)."""

_SCHEME = {"udp": "turn:", "tcp": "turn:", "tls": "turns:"}


def check_connected(result: CellResult, *, types: bool = True) -> None:
    """Both sides connected and data went both ways; with ``types``, over a pair of
    the types the cell allows (relayed candidates over the TURN transport it names)."""
    cell = result.cell
    for name, side, spec in (("a", result.sides["a"], cell.a), ("b", result.sides["b"], cell.b)):
        where = f"{cell.name} side {name}\n{result.diagnostics()}"
        assert side.connected, where
        assert spec.expect is not None
        assert not types or side.types in spec.expect, where
        assert side.data == {
            "data": True,
            "received": f"hello from {'b' if name == 'a' else 'a'}",
        }, where
        transport = cell.relay_transport.get(name)
        if transport is not None:
            assert side.outcome is not None
            server = side.outcome["local"]["server"] or ""
            assert server.startswith(_SCHEME[transport]), where
            assert server.endswith("?transport=tcp") == (transport != "udp"), where


def check_failed_at_timeout(side: SideResult, ice_timeout: float, where: str) -> None:
    assert side.outcome is not None and not side.connected, where
    assert side.outcome["error"] == "ConnectionFailed", where
    assert ice_timeout <= side.outcome["elapsed_s"] <= ice_timeout + MARGIN, where


def _id(cell: Cell) -> str:
    return cell.name


@pytest.mark.parametrize("cell", MATRIX + AIOICE, ids=_id)
def test_cell(matrix: dict[str, CellResult], cell: Cell) -> None:
    result = matrix[cell.name]
    if cell.connects:
        check_connected(result)
    else:
        for name, side in result.sides.items():
            check_failed_at_timeout(
                side, ICE_TIMEOUT, f"{cell.name} side {name}\n{result.diagnostics()}"
            )


def test_every_pair_of_host_kinds_has_a_cell() -> None:
    from .topology import plan

    hosts, _, _ = plan("x")
    covered = {
        frozenset((hosts[c.a.host].kind, hosts[c.b.host].kind))
        for c in MATRIX
        if c.a.turn or c.b.turn
    }
    wanted = {frozenset(p) for p in itertools.combinations_with_replacement(Kind, 2)}
    assert covered == wanted
