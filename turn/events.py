"""What the sans-I/O TURN client reports: small frozen records, one per thing that happened.

Relayed application data is not an event: :meth:`turn.client.TurnClient.handle_data`
returns it directly as ``(peer, payload)``, so the data path allocates nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from stun.attributes import Address, Icmp

from .errors import TurnError


@dataclass(frozen=True, slots=True)
class Allocated:
    """The server granted the allocation."""

    relayed: Address
    """The relayed transport address peers send to (the first XOR-RELAYED-ADDRESS)."""
    mapped: Address
    """Our address as the server sees it (XOR-MAPPED-ADDRESS): a server-reflexive candidate."""
    lifetime: int
    """Seconds the allocation lives unless refreshed (refreshes are automatic)."""
    additional_relayed: Address | None = None
    """The second relayed address of a dual-stack allocation (IPv6), if granted."""
    additional_error: str | None = None
    """Why a requested dual-stack allocation got only one family (None when not asked
    or granted)."""
    reservation_token: bytes | None = None
    """The RESERVATION-TOKEN of an EVEN-PORT allocation that reserved the next port."""
    dont_fragment: bool = False
    """Whether DONT-FRAGMENT was accepted (False when not asked or when the server did
    not support it and the request was retried without it)."""


@dataclass(frozen=True, slots=True)
class AllocationFailed:
    """Allocate failed for good; ``error`` says why (an :class:`AlternateServer` to follow,
    an authentication error, a timeout, ...)."""

    error: TurnError


@dataclass(frozen=True, slots=True)
class Refreshed:
    """The allocation was refreshed; it now lives ``lifetime`` more seconds."""

    lifetime: int


@dataclass(frozen=True, slots=True)
class AllocationLost:
    """The allocation is gone (refresh refused or unanswered, expired); nothing more is
    relayed."""

    error: TurnError


@dataclass(frozen=True, slots=True)
class PermissionCreated:
    """Permissions for these peer IP addresses are installed (or refreshed)."""

    peers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PermissionFailed:
    """The server would not install (or refresh) the permission for ``peer``.

    ``dropped`` datagrams that waited for this permission were discarded.
    """

    peer: str
    code: int | None
    reason: str
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class ChannelBound:
    """Channel ``number`` carries the data to and from ``peer`` from now on."""

    peer: Address
    number: int


@dataclass(frozen=True, slots=True)
class DataDropped:
    """Datagrams to ``peer`` were discarded before they could be sent (``reason`` says why)."""

    peer: Address
    datagrams: int
    reason: str


@dataclass(frozen=True, slots=True)
class PeerIcmp:
    """The relay got an ICMP error from ``peer`` (a Data indication with ICMP)."""

    peer: Address
    icmp: Icmp


@dataclass(frozen=True, slots=True)
class Closed:
    """The allocation was released (or given up); the client is finished."""

    reason: str


Event = (
    Allocated
    | AllocationFailed
    | Refreshed
    | AllocationLost
    | PermissionCreated
    | PermissionFailed
    | ChannelBound
    | DataDropped
    | PeerIcmp
    | Closed
)
