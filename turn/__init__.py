"""TURN (RFC 8656) client: allocations over UDP, TCP and TLS, permissions, channels, refreshes.

``await turn.allocate(server, username, password)`` gives an :class:`Allocation`;
:class:`TurnClient` is the sans-I/O core underneath it.
"""

from .aio import Allocation, allocate
from .backoff import ServerBackoff
from .client import AllocateOptions, TurnClient, TurnStats
from .credentials import rest_credentials
from .errors import (
    AllocationError,
    AllocationLostError,
    AlternateServer,
    AuthenticationError,
    PeerPermissionError,
    TurnError,
    TurnTimeout,
)
from .events import (
    Allocated,
    AllocationFailed,
    AllocationLost,
    ChannelBound,
    Closed,
    DataDropped,
    Event,
    PeerIcmp,
    PermissionCreated,
    PermissionFailed,
    Refreshed,
)
from .uri import parse_turn_uri

__all__ = [
    "AllocateOptions",
    "Allocated",
    "Allocation",
    "AllocationError",
    "AllocationFailed",
    "AllocationLost",
    "AllocationLostError",
    "AlternateServer",
    "AuthenticationError",
    "ChannelBound",
    "Closed",
    "DataDropped",
    "Event",
    "PeerIcmp",
    "PeerPermissionError",
    "PermissionCreated",
    "PermissionFailed",
    "Refreshed",
    "ServerBackoff",
    "TurnClient",
    "TurnError",
    "TurnStats",
    "TurnTimeout",
    "allocate",
    "parse_turn_uri",
    "rest_credentials",
]
