"""Fixtures for the independent ICE peers: Chromium and pion/ice, on loopback.

Without the browser, Go or pion these tests are skipped, unless ICESTACK_REQUIRE_PEERS=1
(set it in CI, which installs them, so that a broken install fails instead of skipping
silently). Every test that runs a peer gets the ``interop`` marker.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.interop import pion_peer
from tests.interop.chromium import CHROMIUM, PAGE, Chromium, Page, serve
from tests.interop.pion_peer import PionPeer

_LOGS = pytest.StashKey[list[tuple[str, Path]]]()


_PEER_FIXTURES = frozenset(("chromium_path", "pion_binary"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _PEER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.interop)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the output of every browser and pion process a failed test ran."""
    report = yield
    if report.failed:
        for name, log in item.stash.get(_LOGS, []):
            if log.exists():
                report.sections.append((f"{name} output", log.read_text(errors="replace")))
    return report


def peer_unavailable(reason: str) -> NoReturn:
    """Skip, or fail when ICESTACK_REQUIRE_PEERS is set."""
    if os.environ.get("ICESTACK_REQUIRE_PEERS", "") not in ("", "0"):
        pytest.fail(f"{reason} (and ICESTACK_REQUIRE_PEERS is set)")
    pytest.skip(reason)


# -- Chromium ------------------------------------------------------------------------------


@pytest.fixture
def chromium_path() -> str:
    """The Chromium binary (skipped, or failed in CI, without it)."""
    if not os.access(CHROMIUM, os.X_OK):
        peer_unavailable(f"Chromium is not installed ({CHROMIUM}; apt install chromium)")
    return CHROMIUM


@pytest.fixture
async def chromium(
    request: pytest.FixtureRequest, tmp_path: Path, chromium_path: str
) -> AsyncIterator[Chromium]:
    """A fresh headless browser for this test."""
    workdir = tmp_path / "chromium"
    workdir.mkdir()
    request.node.stash.setdefault(_LOGS, []).append(("chromium", workdir / "chromium.log"))
    browser = await Chromium.launch(chromium_path, workdir)
    try:
        yield browser
    finally:
        await browser.close()


@pytest.fixture
async def page(chromium: Chromium) -> AsyncIterator[Page]:
    """The test page (``chromium_page.html``), served from 127.0.0.1, loaded in a tab."""
    async with serve(PAGE.read_bytes()) as url:
        yield await chromium.open(url)


# -- pion ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pion_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our pion peer, built once per session (skipped, or failed in CI, without Go or
    pion)."""
    reason = pion_peer.missing()
    if reason is not None:
        peer_unavailable(reason)
    return pion_peer.build(tmp_path_factory.mktemp("pion"))


@pytest.fixture
async def pion_factory(
    request: pytest.FixtureRequest, tmp_path: Path, pion_binary: Path
) -> AsyncIterator[Callable[[bool], Awaitable[PionPeer]]]:
    """``await start(controlling)`` runs a pion agent; all are stopped at teardown."""
    started: list[PionPeer] = []
    logs = request.node.stash.setdefault(_LOGS, [])

    async def start(controlling: bool) -> PionPeer:
        workdir = tmp_path / f"pion{len(started)}"
        workdir.mkdir()
        logs.append(("pion", workdir / "pion.log"))
        peer = await PionPeer.start(pion_binary, controlling, workdir)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        await peer.close()
