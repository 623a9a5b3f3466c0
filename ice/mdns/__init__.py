"""mDNS for ICE (draft-ietf-mmusic-mdns-ice-candidates, RFC 6762): hide host addresses
behind ``<uuid4>.local`` names and resolve the peer's.

:class:`MdnsService` is the asyncio API; :class:`MdnsEndpoint` the sans-I/O core behind it;
:mod:`ice.mdns.message` the DNS codec.
"""

from .endpoint import MdnsEndpoint
from .errors import DnsParseError, MdnsError
from .names import is_mdns_name, new_name
from .resolver import Resolved, ResolveFailed
from .service import DEFAULT_RESOLVE_TIMEOUT, MdnsService
from .types import DEFAULT_TTL, MDNS_GROUP4, MDNS_GROUP6, MDNS_PORT, Link, MdnsStats, Transmit

__all__ = [
    "DEFAULT_RESOLVE_TIMEOUT",
    "DEFAULT_TTL",
    "MDNS_GROUP4",
    "MDNS_GROUP6",
    "MDNS_PORT",
    "DnsParseError",
    "Link",
    "MdnsEndpoint",
    "MdnsError",
    "MdnsService",
    "MdnsStats",
    "ResolveFailed",
    "Resolved",
    "Transmit",
    "is_mdns_name",
    "new_name",
]
