"""Shared fixtures. Each group of fixtures is a section; add new groups below the last."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn

import pytest

from tests.coturn import LOOPBACK_2, Coturn, CoturnFactory, turnserver_path

# -- coturn --------------------------------------------------------------------------------
#
# A real coturn per test: it starts in ~30-60 ms and stops in a few, so every test gets a
# fresh server (own realm, ports, users and allocations) at little cost. Tests that use
# these fixtures get the ``coturn`` marker (``pytest -m "not coturn"`` leaves them out).
# Without turnserver they are skipped, unless ICESTACK_REQUIRE_COTURN=1 (set it in CI,
# which installs coturn, so that a broken install fails instead of skipping silently).

_COTURNS = pytest.StashKey[list[Coturn]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "turnserver" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.coturn)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the log of every coturn a failed test started to its report."""
    report = yield
    if report.failed:
        for server in item.stash.get(_COTURNS, []):
            report.sections.append((f"coturn {server.realm} output", server.output()))
    return report


def _coturn_unavailable(reason: str) -> NoReturn:
    if os.environ.get("ICESTACK_REQUIRE_COTURN", "") not in ("", "0"):
        pytest.fail(f"{reason} (and ICESTACK_REQUIRE_COTURN is set)")
    pytest.skip(reason)


@pytest.fixture
def turnserver() -> str:
    """The turnserver executable (the test is skipped, or failed in CI, without it)."""
    path = turnserver_path()
    if path is None:
        _coturn_unavailable("coturn is not installed (no turnserver on PATH; apt install coturn)")
    return path


@pytest.fixture
def coturn_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, turnserver: str
) -> Iterator[CoturnFactory]:
    """Start coturn servers with any :class:`tests.coturn.Coturn` options; all are stopped
    at teardown, and their logs are attached to the report of a failing test."""
    started = request.node.stash.setdefault(_COTURNS, [])

    def start(**options: Any) -> Coturn:
        workdir = tmp_path_factory.mktemp("coturn")
        server = Coturn(workdir=workdir, **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def _users() -> dict[str, str]:
    return {"alice": secrets.token_hex(8), "bob": secrets.token_hex(8)}


@pytest.fixture
def coturn(coturn_factory: CoturnFactory) -> Coturn:
    """coturn on 127.0.0.1 (UDP and TCP, one port) with long-term accounts alice and bob."""
    return coturn_factory(users=_users())


@pytest.fixture
def coturn_rest(coturn_factory: CoturnFactory) -> Coturn:
    """coturn with TURN REST API credentials: ``server.rest_credentials(user)``."""
    return coturn_factory(secret=secrets.token_hex(16))


@pytest.fixture
def coturn_5780(coturn_factory: CoturnFactory) -> Coturn:
    """coturn in RFC 5780 mode: 127.0.0.1 and 127.0.0.2, each on .port and .alt_port."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK_2, 0))
    except OSError as exc:
        _coturn_unavailable(f"{LOOPBACK_2} is not usable on this host: {exc}")
    return coturn_factory(users=_users(), rfc5780=True)


@pytest.fixture
def coturn_tls(coturn_factory: CoturnFactory) -> Coturn:
    """coturn with accounts alice and bob and a TLS listener too: ``server.tls_address``;
    ``server.client_ssl_context()`` trusts its self-signed certificate (127.0.0.1, localhost)."""
    return coturn_factory(users=_users(), tls=True)


# -- asyncio -------------------------------------------------------------------------------


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, object]]]:
    """Everything that reaches the event loop's exception handler; must stay empty."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)
    assert errors == []
