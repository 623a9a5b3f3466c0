"""ICE candidates (RFC 8445 section 5.1) and their SDP ``candidate`` attribute (RFC 8839).

A :class:`Candidate` is a frozen value: it validates and normalises itself when built (IP
literals in canonical form, transport and ``tcptype`` lower-cased), so that two candidates
compare equal exactly when they serialise alike. The helpers compute priorities (5.1.2),
foundations (5.1.1.3) and prune redundant local candidates (5.1.3).
"""

from __future__ import annotations

import functools
import socket
import string
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from stun.attributes import Address
from stun.uri import format_address, ip_literal

from .errors import CandidateError

__all__ = [
    "MAX_PRIORITY",
    "TCP_TYPES",
    "TYPE_PREFERENCE",
    "Address",
    "Candidate",
    "CandidateType",
    "address_family_index",
    "candidate_priority",
    "is_credential",
    "local_preference",
    "make_foundation",
    "prflx_priority",
    "prune",
]


class CandidateType(StrEnum):
    """The four candidate types; the value is the SDP ``typ`` token."""

    HOST = "host"
    SRFLX = "srflx"
    PRFLX = "prflx"
    RELAY = "relay"


TYPE_PREFERENCE: dict[CandidateType, int] = {
    CandidateType.HOST: 126,
    CandidateType.PRFLX: 110,
    CandidateType.SRFLX: 100,
    CandidateType.RELAY: 0,
}
"""Recommended type preferences (RFC 8445 section 5.1.2.2)."""

MAX_PRIORITY = 2**31 - 1
TCP_TYPES = frozenset(("active", "passive", "so"))
"""RFC 6544 ``tcptype`` values."""

_ICE_CHARS = frozenset(string.ascii_letters + string.digits + "+/")
_VCHARS = frozenset(chr(c) for c in range(0x21, 0x7F))
# RFC 4566 token-char: VCHAR except  " ( ) , / : ; < = > ? @ [ \ ]
_TOKEN_CHARS = _VCHARS - frozenset('"(),/:;<=>?@[\\]')
_HOST_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-._")
_LINE_CHARS = _VCHARS | {" ", "\t"}
# Extension names that from_sdp takes out of the extension list into their own fields.
_RESERVED_EXTENSIONS = frozenset(("raddr", "rport", "tcptype"))
_SDP_PREFIX = "candidate:"


_TYPES = {kind.value: kind for kind in CandidateType}


def _as_type(value: CandidateType | str) -> CandidateType:
    if type(value) is CandidateType:
        return value
    kind = _TYPES.get(value) or _TYPES.get(value.lower())
    if kind is None:
        raise CandidateError(f"unknown candidate type {value!r}")
    return kind


def is_credential(value: str, low: int) -> bool:
    """Whether ``value`` is ``low`` to 256 ice-chars (A-Z a-z 0-9 + /): a ufrag (``low``
    4) or a password (22), RFC 8839 section 5.4."""
    return low <= len(value) <= 256 and _ICE_CHARS.issuperset(value)


def candidate_priority(type: CandidateType | str, local_preference: int, component: int) -> int:
    """A candidate's priority (RFC 8445 5.1.2.1).

    ``2**24 * type preference + 2**8 * local preference + (256 - component)``.
    """
    type_preference = TYPE_PREFERENCE[_as_type(type)]
    if not 0 <= local_preference <= 0xFFFF:
        raise CandidateError(f"local preference {local_preference!r} is not in 0..65535")
    if not 1 <= component <= 256:
        raise CandidateError(f"component {component!r} is not in 1..256")
    return (type_preference << 24) + (local_preference << 8) + (256 - component)


def prflx_priority(local_preference: int, component: int) -> int:
    """The PRIORITY a connectivity check carries: as if peer reflexive (RFC 8445 7.1.1)."""
    return candidate_priority(CandidateType.PRFLX, local_preference, component)


@functools.lru_cache(maxsize=4096)
def _ip(text: str, family: int = 0) -> str | None:
    """``ip_literal`` for any text: None instead of an exception for NULs and the like
    (cached: a session sees the same few addresses over and over)."""
    return ip_literal(text, family) if text.isascii() and text.isprintable() else None


def address_family_index(ip: str) -> int:
    """0 for an IPv6 address, 1 for IPv4: the ``family_index`` of :func:`local_preference`."""
    if _ip(ip, socket.AF_INET6) is not None:
        return 0
    if _ip(ip, socket.AF_INET) is not None:
        return 1
    raise CandidateError(f"not an IP address: {ip!r}")


def local_preference(family_index: int, interface_index: int) -> int:
    """A local preference from address family and interface order (in the spirit of RFC 8421).

    Candidates are ranked interface by interface, IPv6 before IPv4 on each, so that the
    families interleave: ``position = 2 * interface_index + family_index`` (family_index 0
    for IPv6, 1 for IPv4, see :func:`address_family_index`), and the local preference is
    ``max(0, 65535 - position)``: 65535 for the first interface's IPv6 address, 65534 for
    its IPv4 address, 65533 for the second interface's IPv6 address, and so on.
    """
    if family_index not in (0, 1):
        raise CandidateError(f"family index {family_index!r} is not 0 (IPv6) or 1 (IPv4)")
    if interface_index < 0:
        raise CandidateError(f"interface index {interface_index!r} is negative")
    return max(0, 0xFFFF - (2 * interface_index + family_index))


@functools.lru_cache(maxsize=1024)
def make_foundation(
    type: CandidateType, base_ip: str, protocol: str, server: str | None = None
) -> str:
    """A foundation (RFC 8445 5.1.1.3): equal for candidates of the same type, base IP
    address, transport and, for server reflexive and relayed ones, STUN/TURN ``server``.

    The foundation is the decimal CRC-32 of those four (the server is ignored for host and
    peer reflexive candidates), so it is stable across processes and runs.
    """
    candidate_type = _as_type(type)
    uses_server = candidate_type in (CandidateType.SRFLX, CandidateType.RELAY)
    key = "\0".join(
        (
            candidate_type.value,
            _ip(base_ip) or base_ip,
            protocol.lower(),
            (server or "") if uses_server else "",
        )
    )
    return str(zlib.crc32(key.encode("utf-8", "surrogatepass")))


def _check_host(value: str, what: str) -> str:
    """An IP literal in canonical form, or a host name (such as an mDNS name) as given."""
    canonical = _ip(value)
    if canonical is not None:
        return canonical
    last_label = value.rsplit(".", 1)[-1]
    if (
        not value
        or len(value) > 253
        or not _HOST_NAME_CHARS.issuperset(value)
        or last_label.isdigit()
    ):
        raise CandidateError(f"{what} {value!r} is neither an IP address nor a host name")
    return value


def _check_port(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF:
        raise CandidateError(f"{what} {value!r} is not in 0..65535")
    return value


@dataclass(frozen=True, slots=True)
class Candidate:
    """An ICE candidate, local or remote.

    ``base`` and ``server`` describe local candidates only (the address their packets leave
    from, and the STUN/TURN server that produced them); they take no part in equality and
    are never serialised.
    """

    foundation: str
    component: int
    protocol: str
    priority: int
    host: str
    port: int
    type: CandidateType
    related_address: Address | None = None
    tcptype: str | None = None
    extensions: tuple[tuple[str, str], ...] = ()
    base: Address | None = field(default=None, compare=False)
    server: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not (0 < len(self.foundation) <= 32 and _ICE_CHARS.issuperset(self.foundation)):
            raise CandidateError(
                f"foundation {self.foundation!r} is not 1 to 32 characters of A-Z a-z 0-9 + /"
            )
        if not 1 <= self.component <= 256:
            raise CandidateError(f"component {self.component!r} is not in 1..256")
        protocol = self.protocol.lower()
        if not (protocol and _TOKEN_CHARS.issuperset(protocol)):
            raise CandidateError(f"transport {self.protocol!r} is not a token")
        if not 1 <= self.priority <= MAX_PRIORITY:
            raise CandidateError(f"priority {self.priority!r} is not in 1..{MAX_PRIORITY}")
        host = _check_host(self.host, "connection address")
        _check_port(self.port, "port")
        related = self.related_address
        if related is not None:
            related = (
                _check_host(related[0], "related address"),
                _check_port(related[1], "related port"),
            )
        tcptype = self.tcptype
        if tcptype is not None:
            tcptype = tcptype.lower()
            if tcptype not in TCP_TYPES:
                raise CandidateError(f"tcptype {self.tcptype!r} is not active, passive or so")
            if protocol != "tcp":
                raise CandidateError(f"tcptype {self.tcptype!r} on a {protocol!r} candidate")
        for name, value in self.extensions:
            if not (name and _TOKEN_CHARS.issuperset(name)):
                raise CandidateError(f"extension name {name!r} is not a token")
            if name.lower() in _RESERVED_EXTENSIONS:
                raise CandidateError(f"{name!r} is a field of its own, not an extension")
            if not (value and _VCHARS.issuperset(value)):
                raise CandidateError(f"extension {name!r} has a malformed value {value!r}")
        # Set again only what normalising changed: most values are canonical already.
        setattr_ = object.__setattr__
        kind = _as_type(self.type)
        if kind is not self.type:
            setattr_(self, "type", kind)
        if protocol != self.protocol:
            setattr_(self, "protocol", protocol)
        if host != self.host:
            setattr_(self, "host", host)
        if related != self.related_address:
            setattr_(self, "related_address", related)
        if tcptype != self.tcptype:
            setattr_(self, "tcptype", tcptype)

    @property
    def address(self) -> Address:
        """The candidate's transport address ``(host, port)``."""
        return (self.host, self.port)

    @property
    def is_mdns(self) -> bool:
        """Whether the address is an mDNS name (``<uuid>.local``) rather than an IP."""
        return self.host.lower().endswith(".local")

    @classmethod
    def from_sdp(cls, text: str) -> Candidate:
        """Parse ``a=candidate:...``, ``candidate:...`` or the bare attribute value.

        Raises :class:`CandidateError`, naming the offending token, for anything malformed.
        ``raddr``, ``rport`` and ``tcptype`` are read wherever they appear after the type;
        every other name/value pair is kept, in order, in :attr:`extensions`.
        """
        line = text.strip()
        if line.startswith("a="):
            line = line[2:]
        if line[: len(_SDP_PREFIX)].lower() == _SDP_PREFIX:
            line = line[len(_SDP_PREFIX) :]
        printable = line.isascii() and line.isprintable()  # VCHAR and space: the usual
        if not printable and not _LINE_CHARS.issuperset(line):
            char = next(char for char in line if char not in _LINE_CHARS)
            raise CandidateError(f"unexpected character {char!r} in candidate {text!r}")
        tokens = line.split()
        if len(tokens) < 8:
            raise CandidateError(f"a candidate has at least 8 fields, not {len(tokens)}: {text!r}")
        foundation, component, transport, priority, host, port, typ, cand_type = tokens[:8]
        if typ.lower() != "typ":
            raise CandidateError(f"expected 'typ' after the port, found {typ!r}")
        rest = tokens[8:]
        if len(rest) % 2:
            raise CandidateError(f"extension {rest[-1]!r} has no value")
        special: dict[str, str] = {}
        extensions: list[tuple[str, str]] = []
        for i in range(0, len(rest), 2):
            name, value = rest[i], rest[i + 1]
            key = name.lower()
            if key not in _RESERVED_EXTENSIONS:
                extensions.append((name, value))
            elif key in special:
                raise CandidateError(f"{name!r} appears twice (second value {value!r})")
            else:
                special[key] = value
        raddr, rport = special.get("raddr"), special.get("rport")
        if (raddr is None) != (rport is None):
            present, missing = ("raddr", "rport") if rport is None else ("rport", "raddr")
            raise CandidateError(f"{present} {special[present]!r} without {missing}")
        related = None
        if raddr is not None and rport is not None:
            related = (raddr, _number(rport, "related port", 5))
        return cls(
            foundation=foundation,
            component=_number(component, "component", 3),
            protocol=transport,
            priority=_number(priority, "priority", 10),
            host=host,
            port=_number(port, "port", 5),
            type=_as_type(cand_type),
            related_address=related,
            tcptype=special.get("tcptype"),
            extensions=tuple(extensions),
        )

    def to_sdp(self) -> str:
        """The attribute as ``candidate:...`` (no ``a=``, no line ending)."""
        parts = [
            f"{_SDP_PREFIX}{self.foundation}",
            str(self.component),
            self.protocol,
            str(self.priority),
            self.host,
            str(self.port),
            "typ",
            self.type.value,
        ]
        if self.related_address is not None:
            raddr, rport = self.related_address
            parts += ["raddr", raddr, "rport", str(rport)]
        if self.tcptype is not None:
            parts += ["tcptype", self.tcptype]
        for name, value in self.extensions:
            parts += [name, value]
        return " ".join(parts)

    def __str__(self) -> str:
        transport = f"{self.protocol}/{self.tcptype}" if self.tcptype else self.protocol
        text = f"{self.type} {transport} {format_address(self.address)}"
        if self.base is not None and self.base != self.address:
            text += f" (base {format_address(self.base)})"
        elif self.base is None and self.related_address is not None:
            text += f" (raddr {format_address(self.related_address)})"
        if self.server:
            text += f" via {self.server}"
        return text


def _number(token: str, what: str, max_digits: int) -> int:
    if not (token.isascii() and token.isdigit() and len(token) <= max_digits):
        raise CandidateError(f"{what} {token!r} is not a number of 1 to {max_digits} digits")
    return int(token)


def _base_of(candidate: Candidate) -> Address:
    """The base, or for a candidate without one the base its type implies."""
    if candidate.base is not None:
        return candidate.base
    reflexive = candidate.type in (CandidateType.SRFLX, CandidateType.PRFLX)
    if reflexive and candidate.related_address is not None:
        return candidate.related_address
    return candidate.address


def prune(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Drop redundant candidates (RFC 8445 5.1.3).

    Candidates of one component and transport with the same transport address and base
    are redundant: the one with the highest priority stays, at the position where the first
    of them was (the first wins a tie). So a server reflexive candidate whose address is
    its base (no NAT) gives way to the host candidate.
    """
    kept: list[Candidate] = []
    slots: dict[tuple[int, str, str | None, Address, Address], int] = {}
    for candidate in candidates:
        key = (
            candidate.component,
            candidate.protocol,
            candidate.tcptype,
            candidate.address,
            _base_of(candidate),
        )
        slot = slots.get(key)
        if slot is None:
            slots[key] = len(kept)
            kept.append(candidate)
        elif candidate.priority > kept[slot].priority:
            kept[slot] = candidate
    return kept
