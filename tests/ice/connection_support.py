"""Helpers for the tests of :class:`ice.Connection` over real loopback sockets: connections
with 127.0.0.1 host candidates only, the signalling between two of them, and bounded waits.

Nothing here sleeps: every wait is on a future or a coroutine under ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import ice
from ice import Candidate, CandidatePair, CandidateType, Connection
from tests.coturn import Coturn

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
LIMIT = 5.0
"""Seconds any one wait may take before the test fails instead of hanging (loopback ICE
with the default 50 ms Ta connects in well under a second)."""

Factory = Callable[..., Connection]


def loopback_options(**options: Any) -> dict[str, Any]:
    """Connection options for 127.0.0.1 host candidates only, plus ``options``."""
    base: dict[str, Any] = {
        "include_loopback": True,
        "ipv6": False,
        "address_filter": lambda address: address.is_loopback,
    }
    base.update(options)
    return base


@contextlib.asynccontextmanager
async def connections() -> AsyncIterator[Factory]:
    """A factory of loopback :class:`ice.Connection` objects (keyword arguments override
    :func:`loopback_options`); every one it made is closed on the way out."""
    made: list[Connection] = []

    def make(controlling: bool, **options: Any) -> Connection:
        conn = Connection(controlling, **loopback_options(**options))
        made.append(conn)
        return conn

    try:
        yield make
    finally:
        async with asyncio.timeout(LIMIT):
            await asyncio.gather(*(conn.close() for conn in made))


async def bounded(awaitable: Awaitable[T], limit: float = LIMIT) -> T:
    """``await awaitable``, failing with TimeoutError after ``limit`` seconds."""
    async with asyncio.timeout(limit):
        return await awaitable


def via_sdp(candidate: Candidate) -> Candidate:
    """``candidate`` as the peer sees it: through its SDP line (no base, no server)."""
    return Candidate.from_sdp(candidate.to_sdp())


def give_credentials(to: Connection, of: Connection) -> None:
    """Signal ``of``'s ufrag, pwd and proposed Ta to ``to``."""
    to.set_remote_credentials(of.local_ufrag, of.local_pwd, ta=of.ta)


def give_candidates(to: Connection, candidates: Sequence[Candidate], end: bool = True) -> None:
    """Signal ``candidates`` (through SDP) to ``to``, then end-of-candidates if ``end``."""
    for candidate in candidates:
        to.add_remote_candidate(via_sdp(candidate))
    if end:
        to.add_remote_candidate(None)


async def signal(a: Connection, b: Connection) -> None:
    """Gather both, then hand each the other's credentials and candidates (no trickle)."""
    cands_a, cands_b = await bounded(asyncio.gather(a.gather_all(), b.gather_all()))
    give_credentials(a, b)
    give_credentials(b, a)
    give_candidates(a, cands_b)
    give_candidates(b, cands_a)


async def connect_both(a: Connection, b: Connection) -> tuple[CandidatePair, CandidatePair]:
    """Run both ``connect()`` calls together; the selected pair of each."""
    pair_a, pair_b = await bounded(asyncio.gather(a.connect(), b.connect()))
    return pair_a, pair_b


def assert_mirrored(pair_a: CandidatePair, pair_b: CandidatePair) -> None:
    """The two selected pairs are the two ends of one path: each side's local transport
    address is the other's remote, and data leaves from the local base."""
    assert pair_a.local.address == pair_b.remote.address
    assert pair_b.local.address == pair_a.remote.address
    assert pair_a.base == pair_b.remote.address or pair_a.local.type is CandidateType.RELAY
    assert pair_b.base == pair_a.remote.address or pair_b.local.type is CandidateType.RELAY


async def exchange(a: Connection, b: Connection, count: int = 5, tag: bytes = b"") -> None:
    """``count`` datagrams from a to b and then back, each received in the order sent."""
    for sender, receiver, name in ((a, b, b"a->b"), (b, a, b"b->a")):
        sent = [tag + name + b" %d" % i for i in range(count)]
        for data in sent:
            await sender.send(data)
        received = [await bounded(receiver.recv()) for _ in sent]
        assert received == sent


def selected_row(conn: Connection) -> dict[str, Any]:
    """The one ``stats()`` row marked selected."""
    rows = [row for row in conn.stats() if row["selected"]]
    assert len(rows) == 1, conn.stats()
    return rows[0]


def stun_url(server: Coturn) -> str:
    host, port = server.address
    return f"stun:{host}:{port}"


def turn_server(server: Coturn, user: str = "alice", password: str | None = None) -> ice.TurnServer:
    """The UDP ``turn:`` entry of one of ``server``'s accounts (``password`` overrides)."""
    host, port = server.address
    secret = server.users[user] if password is None else password
    return ice.TurnServer(f"turn:{host}:{port}?transport=udp", username=user, password=secret)


def of_type(candidates: Sequence[Candidate], kind: CandidateType) -> list[Candidate]:
    """The candidates of type ``kind``, in order."""
    return [c for c in candidates if c.type is kind]
