"""The exceptions of the mDNS layer."""

from __future__ import annotations

from ..errors import IceError


class MdnsError(IceError):
    """Base class of every error :mod:`ice.mdns` raises on purpose: a name that is not an
    mDNS ICE name, an address that is not an IP, a closed service, no usable interface."""


class DnsParseError(MdnsError, ValueError):
    """Bytes that are not a well-formed DNS message. Raised by :func:`ice.mdns.message.parse`
    only; the mDNS endpoint counts such datagrams and drops them."""
