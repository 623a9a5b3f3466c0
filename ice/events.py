"""What an ICE agent reports: small frozen dataclasses, read from ``Agent.poll_event()``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .candidate import Candidate
from .checklist import CandidatePair, PairState
from .errors import ConnectionFailed


class ConnectionState(StrEnum):
    """The agent's overall state, after the W3C RTCIceConnectionState values.

    CONNECTED: every component has a selected pair. COMPLETED: besides, both sides have
    signalled their last candidate and no check is left to run. DISCONNECTED: a selected
    pair has had no consent answer for ``disconnect_timeout`` (it may come back, and the
    state with it). FAILED: no selected pair within the ICE timeout, or consent expired.
    """

    NEW = "new"
    CHECKING = "checking"
    CONNECTED = "connected"
    COMPLETED = "completed"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"

    @property
    def usable(self) -> bool:
        """Whether data can flow: connected, completed or disconnected (for now)."""
        return self in _USABLE


@dataclass(frozen=True, slots=True)
class PairStateChanged:
    """A candidate pair moved from ``old`` to ``new`` (``reason`` says why a pair failed)."""

    pair: CandidatePair
    old: PairState
    new: PairState
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PairNominated:
    """A valid pair was nominated (by our USE-CANDIDATE check, or by the peer's)."""

    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class SelectedPairChanged:
    """``pair`` now carries the data of ``component``."""

    component: int
    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class CandidateLearned:
    """A peer-reflexive candidate was discovered: ``local`` from a response's
    XOR-MAPPED-ADDRESS, remote from the source of a check."""

    candidate: Candidate
    local: bool


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """A role conflict (RFC 8445 section 7.3.1.1) switched this agent's role."""

    controlling: bool


@dataclass(frozen=True, slots=True)
class ConsentExpired:
    """No consent answer on ``pair`` for ``consent_timeout`` (RFC 7675): nothing more
    may be sent on it; the agent fails."""

    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class ConnectionStateChanged:
    """The agent's :class:`ConnectionState` changed; ``error`` is set on FAILED."""

    state: ConnectionState
    error: ConnectionFailed | None = None


@dataclass(frozen=True, slots=True)
class Restarted:
    """An ICE restart began (RFC 8445 section 9). ``ufrag`` and ``pwd`` are our new
    credentials, to signal to the peer; ``by_peer`` when the peer's new credentials
    started it."""

    ufrag: str
    pwd: str
    by_peer: bool


Event = (
    PairStateChanged
    | PairNominated
    | SelectedPairChanged
    | CandidateLearned
    | RoleChanged
    | ConsentExpired
    | ConnectionStateChanged
    | Restarted
)

_USABLE = frozenset(
    (ConnectionState.CONNECTED, ConnectionState.COMPLETED, ConnectionState.DISCONNECTED)
)
