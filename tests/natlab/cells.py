"""The matrix: which two hosts each cell connects, with which servers, and what the
selected pair must look like from each side.

Side ``a`` is controlling, side ``b`` controlled. A side's expectation is the set of
(local type, remote type) pairs it may select; None means ICE must fail with
ConnectionFailed at the ICE timeout. ``a`` hosts are the impaired ones.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

HOST, SRFLX, PRFLX, RELAY = "host", "srflx", "prflx", "relay"
REFLEXIVE = frozenset({SRFLX, PRFLX})

Types = frozenset[tuple[str, str]]


def pairs(local: set[str] | frozenset[str], remote: set[str] | frozenset[str]) -> Types:
    """Every (local, remote) combination of the two sets."""
    return frozenset(itertools.product(local, remote))


def relay_on_either_end(others: frozenset[str] = REFLEXIVE) -> Types:
    """A relayed candidate on at least one end, the other end relayed or ``others``."""
    ends = others | {RELAY}
    return pairs({RELAY}, ends) | pairs(ends, {RELAY})


DIRECT = pairs(REFLEXIVE, REFLEXIVE)


@dataclass(frozen=True, slots=True)
class Side:
    """One end of a cell: where it runs, what it implements, which servers it uses."""

    host: str
    """A host name of :mod:`tests.natlab.topology` (``cone-a``, ...)."""
    turn: tuple[str, ...] = ("udp",)
    """coturn transports to gather relayed candidates over (udp, tcp, tls)."""
    stun: bool = True
    impl: str = "ours"
    expect: Types | None = None

    @property
    def label(self) -> str:
        servers = ["stun"] if self.stun else []
        servers += [f"turn/{t}" for t in self.turn]
        impl = "" if self.impl == "ours" else f"[{self.impl}]"
        return f"{self.host}{impl}({'+'.join(servers) or 'host only'})"


@dataclass(frozen=True, slots=True)
class Cell:
    name: str
    a: Side
    b: Side
    expected: str
    """The expectation in words, for the report."""
    relay_transport: dict[str, str] = field(default_factory=dict)
    """Side -> the TURN transport its selected relayed candidate must have used."""

    @property
    def connects(self) -> bool:
        return self.a.expect is not None


def _flip(types: Types) -> Types:
    return frozenset((remote, local) for local, remote in types)


def _cell(name: str, a: Side, b: Side, expected: str, relay: dict[str, str] | None = None) -> Cell:
    return Cell(name, a, b, expected, relay or {})


def _both(name: str, a: str, b: str, expect: Types | None, expected: str, **kw: object) -> Cell:
    """A cell whose two ends use the default servers (STUN and TURN over UDP), with
    ``expect`` seen from ``a`` (``b`` sees it mirrored)."""
    turn = kw.pop("turn", ("udp",))
    stun = kw.pop("stun", True)
    assert isinstance(turn, tuple) and isinstance(stun, bool) and not kw
    b_expect = None if expect is None else _flip(expect)
    return _cell(
        name, Side(a, turn, stun, expect=expect), Side(b, turn, stun, expect=b_expect), expected
    )


_CONE_OPEN = pairs(REFLEXIVE, {HOST})
_TO_RELAY = pairs(REFLEXIVE, {RELAY})

MATRIX: list[Cell] = [
    _both("cone-cone", "cone-a", "cone-b", DIRECT, "srflx/prflx <-> srflx/prflx"),
    _both("cone-sym", "cone-a", "sym-b", relay_on_either_end(), "relay on either end"),
    _both("cone-open", "cone-a", "open-b", _CONE_OPEN, "srflx/prflx <-> host"),
    _cell(
        "cone-blocked",
        Side("cone-a", expect=_TO_RELAY),
        Side("blk-b", ("tcp",), stun=False, expect=_flip(_TO_RELAY)),
        "srflx/prflx <-> relay (TURN/TCP)",
        {"b": "tcp"},
    ),
    _both("sym-sym", "sym-a", "sym-b", relay_on_either_end(), "relay on either end"),
    _both("sym-open", "sym-a", "open-b", _CONE_OPEN, "prflx <-> host"),
    _cell(
        "sym-blocked",
        Side("sym-a", expect=_TO_RELAY),
        Side("blk-b", ("tls",), stun=False, expect=_flip(_TO_RELAY)),
        "prflx <-> relay (TURN/TLS)",
        {"b": "tls"},
    ),
    _both("open-open", "open-a", "open-b", pairs({HOST}, {HOST}), "host <-> host"),
    _cell(
        "open-blocked",
        Side("open-a", expect=pairs({HOST}, {RELAY})),
        Side("blk-b", ("tls",), stun=False, expect=pairs({RELAY}, {HOST})),
        "host <-> relay (TURN/TLS)",
        {"b": "tls"},
    ),
    _cell(
        "blocked-blocked",
        Side("blk-a", ("tcp",), stun=False, expect=pairs({RELAY}, {RELAY})),
        Side("blk-b", ("tls",), stun=False, expect=pairs({RELAY}, {RELAY})),
        "relay (TURN/TCP) <-> relay (TURN/TLS)",
        {"a": "tcp", "b": "tls"},
    ),
    _both(
        "cone-cone/stun-only", "cone-a", "cone-b", DIRECT, "srflx/prflx <-> srflx/prflx", turn=()
    ),
    _both(
        "cone-sym/stun-only",
        "cone-a",
        "sym-b",
        None,
        "ConnectionFailed at the ICE timeout",
        turn=(),
    ),
    _both(
        "sym-sym/stun-only", "sym-a", "sym-b", None, "ConnectionFailed at the ICE timeout", turn=()
    ),
]
"""Every pair of host kinds (with STUN and TURN), and the STUN-only cells that must fail."""

# aioice reports its pair's local candidate as gathered: the host candidate behind a NAT
# (it never swaps in the reflexive address a check revealed).
_AIOICE_LOCAL = frozenset({HOST, SRFLX, PRFLX})
_OR_RELAY = REFLEXIVE | {RELAY}

AIOICE: list[Cell] = [
    _cell(
        "aioice:cone-cone",
        Side("cone-a", expect=DIRECT),
        Side("cone-b", impl="aioice", expect=pairs(_AIOICE_LOCAL, REFLEXIVE)),
        "ours srflx/prflx <-> aioice srflx/prflx",
    ),
    # aioice nominates the first pair that works, often a relayed one when it has TURN:
    # as the controlling side it is checked on STUN only (or where relaying is a must).
    _cell(
        "aioice:cone-cone/stun-only",
        Side("cone-a", (), impl="aioice", expect=pairs(_AIOICE_LOCAL, REFLEXIVE)),
        Side("cone-b", (), expect=DIRECT),
        "aioice srflx/prflx <-> ours srflx/prflx",
    ),
    _cell(
        "aioice:sym-sym",
        Side("sym-a", expect=relay_on_either_end()),
        Side("sym-b", impl="aioice", expect=relay_on_either_end(_AIOICE_LOCAL)),
        "relay on either end",
    ),
    _cell(
        "aioice:blocked-cone",
        Side("blk-a", ("tcp",), stun=False, impl="aioice", expect=pairs({RELAY}, _OR_RELAY)),
        Side("cone-b", expect=pairs(_OR_RELAY, {RELAY})),
        "aioice relay (TURN/TCP) <-> ours srflx/prflx/relay",
    ),
]
"""aioice 0.13 as one end, through the NATs, in each role."""
