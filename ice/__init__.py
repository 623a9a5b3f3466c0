"""ICE (RFC 8445): candidates, the sans-I/O agent and its paced scheduler, and the asyncio
:class:`Connection` that gathers, connects and carries data."""

from .agent import Agent, AgentStats, Transmit, is_stun
from .candidate import Candidate, CandidateType
from .checklist import CandidatePair, PairReport, PairState
from .connection import Connection, ConnectionClosed
from .errors import CandidateError, ConnectionFailed, IceError
from .events import (
    CandidateLearned,
    ConnectionState,
    ConnectionStateChanged,
    ConsentExpired,
    Event,
    PairNominated,
    PairStateChanged,
    Restarted,
    RoleChanged,
    SelectedPairChanged,
)
from .gather import ServerFailure, TurnServer
from .interfaces import HostAddress
from .multistream import MultiStreamAgent
from .multistream_connection import MultiStreamConnection
from .pacer import GLOBAL_PACER, Pacer

__all__ = [
    "GLOBAL_PACER",
    "Agent",
    "AgentStats",
    "Candidate",
    "CandidateError",
    "CandidateLearned",
    "CandidatePair",
    "CandidateType",
    "Connection",
    "ConnectionClosed",
    "ConnectionFailed",
    "ConnectionState",
    "ConnectionStateChanged",
    "ConsentExpired",
    "Event",
    "HostAddress",
    "IceError",
    "MultiStreamAgent",
    "MultiStreamConnection",
    "Pacer",
    "PairNominated",
    "PairReport",
    "PairState",
    "PairStateChanged",
    "Restarted",
    "RoleChanged",
    "SelectedPairChanged",
    "ServerFailure",
    "Transmit",
    "TurnServer",
    "is_stun",
]
