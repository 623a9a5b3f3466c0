"""Role conflicts (RFC 8445 sections 7.3.1.1 and 7.2.5.1): both agents controlling, or
both controlled, with tie-breakers fixed so that each branch is taken, the checks either
crossing (both start at once) or arriving before the other agent started. Both always end
connected with opposite roles."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ice import ConnectionState, RoleChanged
from tests.ice.agent_support import AD, APD, EI, PUBLIC, Kind, World, path_expected

BIG, SMALL = 0xF000_0000_0000_0000, 0x0000_0000_0000_1234


@dataclass(frozen=True)
class Conflict:
    """``switches``: (who, when in ms after A's start, the new role: controlling?)."""

    controlling: bool
    a_tie_breaker: int
    b_tie_breaker: int
    stagger: float
    winner: str
    switches: tuple[tuple[str, float, bool], ...]
    errors_487: tuple[int, int]  # sent by A, by B
    branches: str


CONFLICTS = [
    # both controlling: the larger tie-breaker stays controlling
    Conflict(
        True,
        BIG,
        SMALL,
        0.0,
        "A",
        (("B", 5, False),),
        (1, 0),
        "B switches on A's check (7.3.1.1 smaller); A answers B's 487 (larger); "
        "B's 487 after its switch just requeues (7.2.5.1)",
    ),
    Conflict(True, SMALL, BIG, 0.0, "B", (("A", 5, False),), (0, 1), "mirror image"),
    Conflict(
        True,
        BIG,
        SMALL,
        0.3,
        "A",
        (("B", 5, False),),
        (0, 0),
        "B, not started yet, switches on A's check",
    ),
    Conflict(
        True,
        SMALL,
        BIG,
        0.3,
        "B",
        (("A", 10, False),),
        (0, 1),
        "B, not started yet, answers 487; A switches on the 487 (7.2.5.1)",
    ),
    # both controlled: the larger tie-breaker becomes controlling
    Conflict(
        False,
        BIG,
        SMALL,
        0.0,
        "A",
        (("A", 5, True),),
        (0, 1),
        "A switches on B's check (7.3.1.1 larger); B answers 487 (smaller); "
        "A's 487 after its switch just requeues",
    ),
    Conflict(False, SMALL, BIG, 0.0, "B", (("B", 5, True),), (1, 0), "mirror image"),
    Conflict(
        False,
        BIG,
        SMALL,
        0.3,
        "A",
        (("A", 10, True),),
        (0, 1),
        "B, not started yet, answers 487; A switches on the 487",
    ),
    Conflict(
        False,
        SMALL,
        BIG,
        0.3,
        "B",
        (("B", 5, True),),
        (0, 0),
        "B, not started yet, switches on A's check",
    ),
]


def conflict_id(c: Conflict) -> str:
    roles = "both-controlling" if c.controlling else "both-controlled"
    larger = "A" if c.a_tie_breaker > c.b_tie_breaker else "B"
    timing = "crossing" if not c.stagger else "B-late"
    return f"{roles}-{larger}-larger-{timing}"


@pytest.mark.parametrize(
    "kinds", [(PUBLIC, PUBLIC), (Kind(EI, AD), Kind(APD, APD))], ids=["public", "NATs"]
)
@pytest.mark.parametrize("case", CONFLICTS, ids=conflict_id)
def test_role_conflict(case: Conflict, kinds: tuple[Kind, Kind]) -> None:
    world = World()
    a_kind, b_kind = kinds
    a = world.peer(a_kind, case.controlling, name="A", tie_breaker=case.a_tie_breaker)
    b = world.peer(b_kind, case.controlling, name="B", tie_breaker=case.b_tie_breaker)
    a.signal_to(b)
    b.signal_to(a)
    t0 = world.net.now
    a.start(t0)
    world.net.run(until=t0 + case.stagger)
    b.start(world.net.now)
    world.run(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    assert (a.agent.controlling, b.agent.controlling) == (case.winner == "A", case.winner == "B")
    assert a.selected is not None and b.selected is not None
    assert (a.selected.local.address, a.selected.remote.address) == (
        b.selected.remote.address,
        b.selected.local.address,
    )
    if kinds[0] is PUBLIC:  # the branches and exact times, on the 5 ms public links
        switches = [
            (peer.name, round((t - t0) * 1000, 6), e.controlling)
            for peer in (a, b)
            for t, e in peer.of(RoleChanged)
        ]
        assert switches == [(w, float(ms), c) for w, ms, c in case.switches]
        assert (len(a.answers(487)), len(b.answers(487))) == case.errors_487
        assert (a.agent.stats.errors_sent, b.agent.stats.errors_sent) == case.errors_487
    else:  # behind NATs the first checks are filtered: which branch runs depends on timing
        assert path_expected(*kinds)
        roles = [(p.name, e.controlling) for p in (a, b) for _, e in p.of(RoleChanged)]
        assert roles == [(who, controlling) for who, _, controlling in case.switches]
    # the controlling agent's checks claim the new role, and pair priorities follow it
    for peer in (a, b):
        assert all(p.priority == _priority(p, peer.agent.controlling) for p in peer.agent.pairs())


def _priority(pair: object, controlling: bool) -> int:
    from ice.checklist import CandidatePair, pair_priority

    assert isinstance(pair, CandidatePair)
    mine, theirs = pair.local.priority, pair.remote.priority
    return pair_priority(mine, theirs) if controlling else pair_priority(theirs, mine)


def test_role_conflict_with_aggressive_nomination_on_both_sides() -> None:
    """Both controlling and both nominating aggressively: the loser's USE-CANDIDATE
    checks are refused (487) or it switched before, and the agents still agree."""
    world = World()
    a = world.peer(PUBLIC, True, name="A", tie_breaker=BIG, nomination="aggressive")
    b = world.peer(PUBLIC, True, name="B", tie_breaker=SMALL, nomination="aggressive")
    a.signal_to(b)
    b.signal_to(a)
    world.connect(a, b)
    assert (a.state, b.state) == (ConnectionState.CONNECTED, ConnectionState.CONNECTED)
    assert (a.agent.controlling, b.agent.controlling) == (True, False)
    assert b.selected is not None and b.selected.nominated


@pytest.mark.parametrize("controlling", [True, False], ids=["both-controlling", "both-controlled"])
def test_equal_tie_breakers_end_without_spinning(controlling: bool) -> None:
    """Equal 64-bit tie-breakers (never by chance, possible when configured): whatever the
    roles do, the agents end connected, or failed at the ICE timeout."""
    world = World()
    a = world.peer(PUBLIC, controlling, name="A", tie_breaker=7, ice_timeout=5.0)
    b = world.peer(PUBLIC, controlling, name="B", tie_breaker=7, ice_timeout=5.0)
    a.signal_to(b)
    b.signal_to(a)
    world.connect(a, b, limit=20.0, max_events=20_000)
    assert a.done and b.done
