"""Fixtures of the NAT lab: the lab itself (one per session), the matrix run once on the
clean network and twice on an impaired one, and a summary table at the end of the run.

The lab needs root, iproute2, iptables and coturn; without them its tests are skipped
with the reason, or fail when ICESTACK_REQUIRE_NATLAB=1 (set in CI).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from . import netns
from .cells import AIOICE, MATRIX
from .lab import Lab
from .report import RESULTS, table
from .runner import CellResult, run_cells

ICE_TIMEOUT = 5.0
"""The ICE timeout of the clean matrix: well above its slowest connect (~1.2 s)."""
IMPAIRED_ICE_TIMEOUT = 20.0
"""The ICE timeout with 100 ms delay and 10 % loss each way on one end's link: allocation
and checks take several retransmissions there."""
IMPAIRED_GATHER_TIMEOUT = 8.0
"""Five Binding transmissions (0, 0.5, 1.5, 3.5, 7.5 s) before a STUN server counts as
gone: one lost reflexive candidate would turn a direct cell into a relayed one."""
IMPAIRED_RUNS = 2
DELAY = 0.1
LOSS = 0.1


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("ICESTACK_REQUIRE_NATLAB", "") not in ("", "0"):
        pytest.fail(f"{reason} (and ICESTACK_REQUIRE_NATLAB is set)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The whole lab, built once and always torn down."""
    reason = netns.unavailable()
    if reason is not None:
        _unavailable(reason)
    with Lab(tmp_path_factory.mktemp("natlab")) as built:
        request.config.stash.setdefault(RESULTS, {})["lab"] = built
        yield built


@pytest.fixture(scope="session")
def matrix(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> dict[str, CellResult]:
    """Every cell of the matrix and the aioice cells, run in parallel, once."""
    workdir = tmp_path_factory.mktemp("matrix")
    results = asyncio.run(run_cells(lab, MATRIX + AIOICE, workdir, ice_timeout=ICE_TIMEOUT))
    request.config.stash.setdefault(RESULTS, {})["matrix"] = results
    return results


@pytest.fixture(scope="session")
def impaired(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> list[dict[str, CellResult]]:
    """The cells that connect, :data:`IMPAIRED_RUNS` times, with every ``-a`` host's link
    delayed by 100 ms and losing 10 % each way."""
    cells = [cell for cell in MATRIX + AIOICE if cell.connects]
    runs = []
    lab.impair([h for h in lab.hosts.values() if h.name.endswith("-a")], delay=DELAY, loss=LOSS)
    try:
        for _ in range(IMPAIRED_RUNS):
            workdir = tmp_path_factory.mktemp("impaired")
            runs.append(
                asyncio.run(
                    run_cells(
                        lab,
                        cells,
                        workdir,
                        ice_timeout=IMPAIRED_ICE_TIMEOUT,
                        gather_timeout=IMPAIRED_GATHER_TIMEOUT,
                    )
                )
            )
    finally:
        lab.unimpair()
    request.config.stash.setdefault(RESULTS, {})["impaired"] = runs
    return runs


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The matrix table (cell, expected, seen, connect time) after a run that built it."""
    stash = terminalreporter.config.stash.get(RESULTS, {})
    lines = table(stash)
    if lines:
        terminalreporter.write_sep("=", "NAT lab")
        for line in lines:
            terminalreporter.write_line(line)
