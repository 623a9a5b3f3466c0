"""The STUN server as a sans-I/O core: requests in, responses out (RFC 8489, RFC 5780).

:class:`StunServer` answers Binding requests. It is fed one datagram (or one framed
message from a stream) with the local address it arrived on and the remote address it
came from, and returns the response to send as a :class:`Transmit`, or None. It keeps no
per-client state and needs no clock; :mod:`stun.service` runs it on asyncio sockets.

Answers are kept as small as the RFCs allow, so that the server is no amplifier:

- success: XOR-MAPPED-ADDRESS, plus FINGERPRINT when the request carried one;
- 400 Bad Request when a request decodes but cannot be served (a method other than
  Binding, PADDING with RESPONSE-PORT, RESPONSE-PORT 0);
- 420 Unknown Attribute with UNKNOWN-ATTRIBUTES for comprehension-required attributes
  the server does not understand or does not offer (CHANGE-REQUEST without an alternate
  address, RESPONSE-PORT and PADDING unless enabled);
- silence, counted in :class:`ServerStats`, for anything that does not decode, for
  indications and responses, and for a FINGERPRINT that does not verify.

Given an alternate address (RFC 5780 NAT behaviour discovery), the server answers on four
UDP sockets A1:P1, A1:P2, A2:P1 and A2:P2, honours CHANGE-REQUEST by answering from the
socket it names, and adds MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS to successes.
RESPONSE-PORT and PADDING work with or without it (RFC 5780 section 5). A message from a
stream (TCP, TLS) is answered on its own connection, so CHANGE-REQUEST and RESPONSE-PORT
get a 420 there.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, NamedTuple

from .attributes import Address, Attr, ChangeRequest
from .errors import ParseError
from .message import Class, Message, Method, decode

MAX_DATAGRAM = 65507
"""The largest UDP payload (IPv4): no response with PADDING grows beyond it."""

_CHANGE_IP = ChangeRequest.CHANGE_IP.value
_CHANGE_PORT = ChangeRequest.CHANGE_PORT.value


class Transmit(NamedTuple):
    """A datagram to send: ``data`` from the socket bound to ``local`` to ``remote``
    (the server's responses; an ICE agent's checks and answers)."""

    data: bytes
    local: Address
    remote: Address


@dataclass(slots=True)
class ServerStats:
    """What the server did with the messages it was fed."""

    received: int = 0
    """Datagrams and stream frames fed to the server."""
    answered: int = 0
    """Binding success responses."""
    errors_400: int = 0
    errors_420: int = 0
    dropped_malformed: int = 0
    """Input that is not a well-formed STUN message."""
    dropped_not_request: int = 0
    """Indications and responses: never answered."""
    dropped_bad_fingerprint: int = 0
    closed_corrupt_streams: int = 0
    """Stream connections closed because their framing broke (counted by the shell)."""


def _normalise(address: Address) -> tuple[int, Address]:
    """The address family and the address with its IP in canonical text form."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        packed = socket.inet_pton(family, host)
    except OSError:
        raise ValueError(f"not an IP address literal: {host!r}") from None
    if packed == bytes(len(packed)):
        raise ValueError(f"{host} is a wildcard, not an address responses can come from")
    return family, (socket.inet_ntop(family, packed), port)


def check_alternate(primary: Address, alternate: Address) -> tuple[Address, Address]:
    """Check an RFC 5780 address pair; return both with their IPs in canonical form.

    The IPs must be specific, of one family, and differ; the ports must differ, except
    that port 0 (any port, before binding) is allowed on either side.
    """
    family1, (a1, p1) = _normalise(primary)
    family2, (a2, p2) = _normalise(alternate)
    if family1 != family2:
        raise ValueError("the primary and alternate addresses must be of one address family")
    if a1 == a2 or (p1 and p1 == p2):
        raise ValueError("the alternate address must differ from the primary in IP and port")
    return (a1, p1), (a2, p2)


class StunServer:
    """Answers STUN Binding requests; see the module docstring for the rules.

    ``primary`` and ``alternate`` (both or neither) switch on RFC 5780 mode: they must be
    specific addresses of one family that differ in both IP and port. ``software`` adds a
    SOFTWARE attribute to every response. ``response_port`` and ``padding`` enable the
    RFC 5780 RESPONSE-PORT and PADDING attributes, which are otherwise answered with 420.
    """

    __slots__ = ("_opposite", "_padding", "_response_port", "_software", "stats")

    def __init__(
        self,
        primary: Address | None = None,
        alternate: Address | None = None,
        *,
        software: str | None = None,
        response_port: bool = False,
        padding: bool = False,
    ) -> None:
        if (primary is None) != (alternate is None):
            raise ValueError("RFC 5780 mode needs both a primary and an alternate address")
        self._opposite: dict[Address, Address] = {}
        if primary is not None and alternate is not None:
            (a1, p1), (a2, p2) = check_alternate(primary, alternate)
            if not (p1 and p2):
                raise ValueError("RFC 5780 mode needs the bound ports, not port 0")
            # Each socket's OTHER-ADDRESS: the other IP with the other port.
            self._opposite = {
                (a1, p1): (a2, p2),
                (a1, p2): (a2, p1),
                (a2, p1): (a1, p2),
                (a2, p2): (a1, p1),
            }
        self._software = software
        self._response_port = response_port
        self._padding = padding
        self.stats = ServerStats()

    def handle_datagram(self, data: bytes, local: Address, remote: Address) -> Transmit | None:
        """Handle one datagram that ``local`` received from ``remote``."""
        return self._handle(data, local, remote, self._opposite.get(local), True)

    def handle_frame(self, data: bytes, local: Address, remote: Address) -> Transmit | None:
        """Handle one message framed on a stream; the answer goes back on that stream."""
        return self._handle(data, local, remote, None, False)

    def _handle(
        self, data: bytes, local: Address, remote: Address, other: Address | None, datagram: bool
    ) -> Transmit | None:
        stats = self.stats
        stats.received += 1
        try:
            request = decode(data)
        except ParseError:
            stats.dropped_malformed += 1
            return None
        if request.cls is not Class.REQUEST:
            stats.dropped_not_request += 1
            return None
        if request.has_fingerprint and not request.check_fingerprint():
            stats.dropped_bad_fingerprint += 1
            return None
        if request.method != Method.BINDING:
            return self._bad_request(request, local, remote)

        unknown = request.unknown_required()
        if other is None and Attr.CHANGE_REQUEST in request:
            unknown.append(Attr.CHANGE_REQUEST)
        if not (datagram and self._response_port) and Attr.RESPONSE_PORT in request:
            unknown.append(Attr.RESPONSE_PORT)
        if not self._padding and Attr.PADDING in request:
            unknown.append(Attr.PADDING)
        if unknown:
            return self._unknown_attributes(request, local, remote, unknown)

        response_port: int | None = request.get(Attr.RESPONSE_PORT)
        padding: bytes | None = request.get(Attr.PADDING)
        if response_port == 0 or (response_port is not None and padding is not None):
            return self._bad_request(request, local, remote)

        mapped = (remote[0].partition("%")[0], remote[1])
        attributes: list[tuple[int, Any]] = [(Attr.XOR_MAPPED_ADDRESS, mapped)]
        source = local
        if other is not None:
            flags = request.get(Attr.CHANGE_REQUEST, 0)
            source = (
                other[0] if flags & _CHANGE_IP else local[0],
                other[1] if flags & _CHANGE_PORT else local[1],
            )
            attributes += (
                (Attr.MAPPED_ADDRESS, mapped),
                (Attr.RESPONSE_ORIGIN, source),
                (Attr.OTHER_ADDRESS, other),
            )
        response = self._response(request, Class.SUCCESS, attributes)
        if padding is not None:
            _add_padding(response, len(padding), request.has_fingerprint)
        stats.answered += 1
        destination = remote if response_port is None else (remote[0], response_port)
        return Transmit(response.encode(fingerprint=request.has_fingerprint), source, destination)

    def _bad_request(self, request: Message, local: Address, remote: Address) -> Transmit:
        self.stats.errors_400 += 1
        response = self._response(request, Class.ERROR, [(Attr.ERROR_CODE, (400, "Bad Request"))])
        return Transmit(response.encode(fingerprint=request.has_fingerprint), local, remote)

    def _unknown_attributes(
        self, request: Message, local: Address, remote: Address, unknown: list[int]
    ) -> Transmit:
        self.stats.errors_420 += 1
        attributes: list[tuple[int, Any]] = [
            (Attr.ERROR_CODE, (420, "Unknown Attribute")),
            (Attr.UNKNOWN_ATTRIBUTES, tuple(unknown)),
        ]
        response = self._response(request, Class.ERROR, attributes)
        return Transmit(response.encode(fingerprint=request.has_fingerprint), local, remote)

    def _response(self, request: Message, cls: Class, attributes: list[tuple[int, Any]]) -> Message:
        if self._software is not None:
            attributes.append((Attr.SOFTWARE, self._software))
        return Message(request.method, cls, request.transaction_id, attributes)


def _add_padding(response: Message, size: int, fingerprint: bool) -> None:
    """Add PADDING of ``size`` bytes (RFC 5780 section 7.6), trimmed to fit in a datagram."""
    room = MAX_DATAGRAM - len(response.encode()) - 4 - (8 if fingerprint else 0)
    response.add(Attr.PADDING, bytes(min(size, room & ~3)))
