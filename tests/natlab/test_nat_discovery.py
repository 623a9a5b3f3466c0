"""``python -m stun nat`` behind each router reports what that router really does."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from .lab import REPO, Lab
from .report import RESULTS
from .topology import Kind

pytestmark = [pytest.mark.natlab, pytest.mark.coturn]

EI, APD = "endpoint-independent", "address-and-port-dependent"
EXPECTED = {
    Kind.CONE: {"behind_nat": True, "mapping": EI, "filtering": APD},
    Kind.SYMMETRIC: {"behind_nat": True, "mapping": APD, "filtering": APD},
    Kind.OPEN: {"behind_nat": False, "mapping": EI, "filtering": EI},
}
REQUEST_TIMEOUT = 1.0
"""``stun nat --timeout``: per request; the filtering tests that get no answer take it."""


async def _discover(netns: str, server: str) -> tuple[int, dict[str, object]]:
    process = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns, sys.executable, "-m", "stun", "nat", server,
        "--json", "--timeout", str(REQUEST_TIMEOUT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    async with asyncio.timeout(30):
        stdout, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, json.loads(stdout.decode().strip().splitlines()[-1])


def _said(record: dict[str, object]) -> str:
    nat = "behind a NAT" if record["behind_nat"] else "no NAT"
    return f"{nat}, mapping {record['mapping']}, filtering {record['filtering']}"


@pytest.fixture(scope="module")
def reports(lab: Lab, request: pytest.FixtureRequest) -> dict[str, tuple[int, dict[str, object]]]:
    """``stun nat`` from every host, all at once."""

    async def everyone() -> list[tuple[int, dict[str, object]]]:
        return await asyncio.gather(
            *(_discover(h.netns, lab.stun_server) for h in lab.hosts.values())
        )

    found = dict(zip(lab.hosts, asyncio.run(everyone()), strict=True))
    request.config.stash.setdefault(RESULTS, {})["nat"] = {
        name: f"exit {code}: {record['error']}" if "error" in record else _said(record)
        for name, (code, record) in found.items()
    }
    return found


@pytest.mark.parametrize("host", ["cone-a", "cone-b", "sym-a", "sym-b", "open-a", "open-b"])
def test_stun_nat_reports_the_router_behaviour(
    lab: Lab, reports: dict[str, tuple[int, dict[str, object]]], host: str
) -> None:
    code, record = reports[host]
    assert code == 0, record
    expected = EXPECTED[lab.hosts[host].kind]
    assert {key: record[key] for key in expected} == expected
    assert str(record["mapped"]).startswith(lab.hosts[host].public_ip + ":")


@pytest.mark.parametrize("host", ["blk-a", "blk-b"])
def test_stun_nat_behind_the_udp_blocking_router_gets_no_answer(
    reports: dict[str, tuple[int, dict[str, object]]], host: str
) -> None:
    code, record = reports[host]
    assert code == 1
    assert str(record["error"]).startswith("timeout")
