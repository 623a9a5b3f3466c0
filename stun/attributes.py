"""STUN attribute types and their value codecs (RFC 8489, 8445, 5780, 8656).

Each known attribute has a :class:`Codec`: an encoder from a plain Python value to the
attribute's value bytes, a decoder back, and the checks that :func:`stun.decode` runs on
every attribute before it hands out a message (so that reading a value never fails later).

Decoded values are plain Python: addresses are ``(host, port)`` tuples, ERROR-CODE is
``(code, reason)``, flags such as USE-CANDIDATE are ``True``, numbers are ``int``, text is
``str`` (invalid UTF-8 is kept losslessly with the ``surrogateescape`` error handler).
Unknown attributes decode to their raw value bytes.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from enum import IntEnum
from typing import Any, NamedTuple

MAGIC_COOKIE = 0x2112A442
_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
_COOKIE_PORT = MAGIC_COOKIE >> 16

Address = tuple[str, int]


class Attr(IntEnum):
    """STUN attribute types."""

    MAPPED_ADDRESS = 0x0001
    CHANGE_REQUEST = 0x0003
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PADDING = 0x0026
    RESPONSE_PORT = 0x0027
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    ICMP = 0x8004
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


class AddressFamily(IntEnum):
    """Address family numbers of the address attributes and REQUESTED-ADDRESS-FAMILY."""

    IPV4 = 0x01
    IPV6 = 0x02


class PasswordAlgorithm(IntEnum):
    """RFC 8489 section 18.5 password algorithms."""

    MD5 = 0x0001
    SHA256 = 0x0002


class ChangeRequest(IntEnum):
    """RFC 5780 CHANGE-REQUEST flags."""

    CHANGE_IP = 0x4
    CHANGE_PORT = 0x2


class AddressError(NamedTuple):
    """ADDRESS-ERROR-CODE (RFC 8656): which family failed, with code and reason."""

    family: int
    code: int
    reason: str


class Icmp(NamedTuple):
    """ICMP attribute (RFC 8656): an ICMP error the relay received from a peer."""

    type: int
    code: int
    data: int


def is_comprehension_required(attr_type: int) -> bool:
    """Attributes 0x0000-0x7FFF must be understood by the receiver (RFC 8489 section 14)."""
    return attr_type < 0x8000


# -- value codecs -------------------------------------------------------------------------

# Encoders take the value and the transaction id. Decoders and checks take the whole
# message and the value's [start, end) in it (an XOR address reads the transaction id
# from the message itself).
Encoder = Callable[[Any, bytes], bytes]
Decoder = Callable[[bytes, int, int], Any]
Check = Callable[[bytes, int, int], str | None]

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


def _pack_ip(host: str) -> tuple[int, bytes]:
    try:
        if ":" in host:
            return 2, socket.inet_pton(socket.AF_INET6, host)
        return 1, socket.inet_pton(socket.AF_INET, host)
    except (OSError, TypeError):
        raise ValueError(f"not an IP address literal: {host!r}") from None


def _check_port(port: int) -> int:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port!r}")
    return port


def _enc_address(value: Address, tid: bytes) -> bytes:
    host, port = value
    family, packed = _pack_ip(host)
    return bytes((0, family)) + _U16.pack(_check_port(port)) + packed


def _dec_address(buf: bytes, start: int, end: int) -> Address:
    port = (buf[start + 2] << 8) | buf[start + 3]
    if end - start == 8:
        return socket.inet_ntoa(buf[start + 4 : end]), port
    return socket.inet_ntop(socket.AF_INET6, buf[start + 4 : end]), port


def _enc_xor_address(value: Address, tid: bytes) -> bytes:
    host, port = value
    family, packed = _pack_ip(host)
    size = len(packed)
    mask = _COOKIE_BYTES + tid if size == 16 else _COOKIE_BYTES
    xored = (int.from_bytes(packed) ^ int.from_bytes(mask)).to_bytes(size)
    return bytes((0, family)) + _U16.pack(_check_port(port) ^ _COOKIE_PORT) + xored


def _dec_xor_address(buf: bytes, start: int, end: int) -> Address:
    port = ((buf[start + 2] << 8) | buf[start + 3]) ^ _COOKIE_PORT
    if end - start == 8:
        ip = int.from_bytes(buf[start + 4 : end]) ^ MAGIC_COOKIE
        return socket.inet_ntoa(ip.to_bytes(4)), port
    ip = int.from_bytes(buf[start + 4 : end]) ^ int.from_bytes(buf[4:20])  # cookie and tid
    return socket.inet_ntop(socket.AF_INET6, ip.to_bytes(16)), port


def _check_address(buf: bytes, start: int, end: int) -> str | None:
    family = buf[start + 1]
    size = end - start
    if (family == 1 and size == 8) or (family == 2 and size == 20):
        return None
    return f"address family {family} with {size} value bytes"


def _enc_text(value: str, tid: bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _dec_text(buf: bytes, start: int, end: int) -> str:
    return buf[start:end].decode("utf-8", "surrogateescape")


def _enc_bytes(value: bytes, tid: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("a bytes-like value is required")
    return bytes(value)


def _dec_bytes(buf: bytes, start: int, end: int) -> bytes:
    return buf[start:end]


def _enc_flag(value: bool, tid: bytes) -> bytes:
    return b""


def _dec_flag(buf: bytes, start: int, end: int) -> bool:
    return True


def _enc_u32(value: int, tid: bytes) -> bytes:
    return _U32.pack(value)


def _dec_u32(buf: bytes, start: int, end: int) -> int:
    value: int = _U32.unpack_from(buf, start)[0]
    return value


def _enc_u64(value: int, tid: bytes) -> bytes:
    return _U64.pack(value)


def _dec_u64(buf: bytes, start: int, end: int) -> int:
    value: int = _U64.unpack_from(buf, start)[0]
    return value


def _enc_u16_padded(value: int, tid: bytes) -> bytes:
    """A 16-bit number followed by two reserved bytes (CHANNEL-NUMBER, RESPONSE-PORT)."""
    return _U16.pack(value) + b"\0\0"


def _dec_u16_padded(buf: bytes, start: int, end: int) -> int:
    return (buf[start] << 8) | buf[start + 1]


def _enc_u8_padded(value: int, tid: bytes) -> bytes:
    """An 8-bit number followed by three reserved bytes (REQUESTED-TRANSPORT, families)."""
    return bytes((value, 0, 0, 0))


def _dec_u8_padded(buf: bytes, start: int, end: int) -> int:
    return buf[start]


def _error_code_bytes(code: int, reason: str) -> bytes:
    if not 300 <= code <= 699:
        raise ValueError(f"error code out of range 300-699: {code!r}")
    return bytes((0, 0, code // 100, code % 100)) + reason.encode("utf-8", "surrogateescape")


def _enc_error_code(value: tuple[int, str], tid: bytes) -> bytes:
    code, reason = value
    return _error_code_bytes(code, reason)


def _dec_error_code(buf: bytes, start: int, end: int) -> tuple[int, str]:
    code = (buf[start + 2] & 7) * 100 + buf[start + 3]
    return code, buf[start + 4 : end].decode("utf-8", "surrogateescape")


def _check_error_code(buf: bytes, start: int, end: int) -> str | None:
    klass, number = buf[start + 2] & 7, buf[start + 3]
    if 3 <= klass <= 6 and number < 100:
        return None
    return f"error class {klass} number {number}"


def _enc_address_error(value: tuple[int, int, str], tid: bytes) -> bytes:
    family, code, reason = value
    return bytes((family,)) + _error_code_bytes(code, reason)[1:]


def _dec_address_error(buf: bytes, start: int, end: int) -> AddressError:
    code, reason = _dec_error_code(buf, start, end)
    return AddressError(buf[start], code, reason)


def _enc_unknown_attributes(value: tuple[int, ...], tid: bytes) -> bytes:
    return b"".join(_U16.pack(t) for t in value)


def _dec_unknown_attributes(buf: bytes, start: int, end: int) -> tuple[int, ...]:
    return tuple(_U16.unpack_from(buf, i)[0] for i in range(start, end, 2))


def _check_even(buf: bytes, start: int, end: int) -> str | None:
    return None if (end - start) % 2 == 0 else "odd length"


def _enc_password_algorithm(value: int, tid: bytes) -> bytes:
    return _U16.pack(value) + b"\0\0"


def _dec_password_algorithm(buf: bytes, start: int, end: int) -> int:
    return (buf[start] << 8) | buf[start + 1]


def _check_password_algorithm(buf: bytes, start: int, end: int) -> str | None:
    params = _U16.unpack_from(buf, start + 2)[0]
    return None if 4 + params == end - start else "parameter length does not fit"


def _enc_password_algorithms(value: tuple[int, ...], tid: bytes) -> bytes:
    return b"".join(_enc_password_algorithm(a, tid) for a in value)


def _password_algorithm_offsets(buf: bytes, start: int, end: int) -> list[int] | None:
    """Offsets of each (algorithm, parameters) entry, or None if they do not tile the value."""
    offsets = []
    pos = start
    while pos < end:
        if pos + 4 > end:
            return None
        offsets.append(pos)
        params = _U16.unpack_from(buf, pos + 2)[0]
        pos += 4 + ((params + 3) & ~3)
    return offsets if pos == end else None


def _dec_password_algorithms(buf: bytes, start: int, end: int) -> tuple[int, ...]:
    offsets = _password_algorithm_offsets(buf, start, end) or []
    return tuple((buf[pos] << 8) | buf[pos + 1] for pos in offsets)


def _check_password_algorithms(buf: bytes, start: int, end: int) -> str | None:
    ok = _password_algorithm_offsets(buf, start, end) is not None
    return None if ok else "entries do not fit the value"


def _enc_even_port(value: bool, tid: bytes) -> bytes:
    return b"\x80" if value else b"\x00"


def _dec_even_port(buf: bytes, start: int, end: int) -> bool:
    return bool(buf[start] & 0x80)


def _enc_icmp(value: tuple[int, int, int], tid: bytes) -> bytes:
    icmp_type, icmp_code, data = value
    return bytes((0, 0, icmp_type, icmp_code)) + _U32.pack(data)


def _dec_icmp(buf: bytes, start: int, end: int) -> Icmp:
    return Icmp(buf[start + 2], buf[start + 3], _U32.unpack_from(buf, start + 4)[0])


def _check_sha256_length(buf: bytes, start: int, end: int) -> str | None:
    return None if (end - start) % 4 == 0 else "length is not a multiple of 4"


class Codec(NamedTuple):
    """How one attribute type is encoded, decoded and checked.

    ``check_span`` is how many leading value bytes ``check`` reads (0 when it only looks
    at the length): :func:`stun.decode` reuses the layout it learnt from one message for
    another only when these bytes match too. ``memo`` says whether encoded attributes of
    this type may be remembered by value (not for one-off payloads such as DATA).
    """

    encode: Encoder
    decode: Decoder
    min_length: int
    max_length: int
    check: Check | None = None
    check_span: int = 0
    memo: bool = True


_ANY = 0xFFFF
_ADDRESS = Codec(_enc_address, _dec_address, 8, 20, _check_address, check_span=2)
_XOR_ADDRESS = Codec(_enc_xor_address, _dec_xor_address, 8, 20, _check_address, check_span=2)
_U32_CODEC = Codec(_enc_u32, _dec_u32, 4, 4)
_FAMILY = Codec(_enc_u8_padded, _dec_u8_padded, 4, 4)
_USERNAME = Codec(_enc_text, _dec_text, 0, 508)  # fewer than 509 bytes (RFC 8489 section 14.3)
_TEXT_763 = Codec(_enc_text, _dec_text, 0, 763)
_ERROR_CODE = Codec(_enc_error_code, _dec_error_code, 4, 4 + 763, _check_error_code, 4)
_PAYLOAD = Codec(_enc_bytes, _dec_bytes, 0, _ANY, memo=False)
_TIE_BREAKER = Codec(_enc_u64, _dec_u64, 8, 8)

CODECS: dict[int, Codec] = {
    Attr.MAPPED_ADDRESS: _ADDRESS,
    Attr.CHANGE_REQUEST: _U32_CODEC,
    Attr.USERNAME: _USERNAME,
    Attr.MESSAGE_INTEGRITY: Codec(_enc_bytes, _dec_bytes, 20, 20, memo=False),
    Attr.ERROR_CODE: _ERROR_CODE,
    Attr.UNKNOWN_ATTRIBUTES: Codec(
        _enc_unknown_attributes, _dec_unknown_attributes, 0, _ANY, _check_even
    ),
    Attr.CHANNEL_NUMBER: Codec(_enc_u16_padded, _dec_u16_padded, 4, 4),
    Attr.LIFETIME: _U32_CODEC,
    Attr.XOR_PEER_ADDRESS: _XOR_ADDRESS,
    Attr.DATA: _PAYLOAD,
    Attr.REALM: _TEXT_763,
    Attr.NONCE: _TEXT_763,
    Attr.XOR_RELAYED_ADDRESS: _XOR_ADDRESS,
    Attr.REQUESTED_ADDRESS_FAMILY: _FAMILY,
    Attr.EVEN_PORT: Codec(_enc_even_port, _dec_even_port, 1, 1),
    Attr.REQUESTED_TRANSPORT: Codec(_enc_u8_padded, _dec_u8_padded, 4, 4),
    Attr.DONT_FRAGMENT: Codec(_enc_flag, _dec_flag, 0, 0),
    Attr.MESSAGE_INTEGRITY_SHA256: Codec(
        _enc_bytes, _dec_bytes, 16, 32, _check_sha256_length, memo=False
    ),
    Attr.PASSWORD_ALGORITHM: Codec(
        _enc_password_algorithm, _dec_password_algorithm, 4, _ANY, _check_password_algorithm, 4
    ),
    Attr.USERHASH: Codec(_enc_bytes, _dec_bytes, 32, 32),
    Attr.XOR_MAPPED_ADDRESS: _XOR_ADDRESS,
    Attr.RESERVATION_TOKEN: Codec(_enc_bytes, _dec_bytes, 8, 8, memo=False),
    Attr.PRIORITY: _U32_CODEC,
    Attr.USE_CANDIDATE: Codec(_enc_flag, _dec_flag, 0, 0),
    Attr.PADDING: _PAYLOAD,
    Attr.RESPONSE_PORT: Codec(_enc_u16_padded, _dec_u16_padded, 4, 4),
    Attr.ADDITIONAL_ADDRESS_FAMILY: _FAMILY,
    Attr.ADDRESS_ERROR_CODE: Codec(
        _enc_address_error, _dec_address_error, 4, 4 + 763, _check_error_code, 4
    ),
    Attr.PASSWORD_ALGORITHMS: Codec(
        _enc_password_algorithms,
        _dec_password_algorithms,
        0,
        _ANY,
        _check_password_algorithms,
        check_span=_ANY,
    ),
    Attr.ALTERNATE_DOMAIN: Codec(_enc_text, _dec_text, 0, 255),
    Attr.ICMP: Codec(_enc_icmp, _dec_icmp, 8, 8, memo=False),
    Attr.SOFTWARE: _TEXT_763,
    Attr.ALTERNATE_SERVER: _ADDRESS,
    Attr.FINGERPRINT: Codec(_enc_u32, _dec_u32, 4, 4, memo=False),
    Attr.ICE_CONTROLLED: _TIE_BREAKER,
    Attr.ICE_CONTROLLING: _TIE_BREAKER,
    Attr.RESPONSE_ORIGIN: _ADDRESS,
    Attr.OTHER_ADDRESS: _ADDRESS,
}
"""The codec of every known attribute type, keyed by its number."""


Rule = tuple[range, Check | None, int, Decoder]
"""What :func:`stun.decode` needs of an attribute type, in one lookup: the value lengths
allowed, the value check, how many leading value bytes that check reads, the decoder.
(A plain tuple: unpacking one is quicker than unpacking a NamedTuple.)"""

RULES: dict[int, Rule] = {
    t: (range(c.min_length, c.max_length + 1), c.check, c.check_span, c.decode)
    for t, c in CODECS.items()
}
UNKNOWN_RULE: Rule = (range(0x10000), None, 0, _dec_bytes)
"""Unknown attribute types: any length, decoded to their raw value bytes."""


def encode_value(attr_type: int, value: Any, transaction_id: bytes) -> bytes:
    """Encode one attribute value; unknown types take raw bytes."""
    codec = CODECS.get(attr_type)
    try:
        if codec is None:
            return _enc_bytes(value, transaction_id)
        encoded = codec.encode(value, transaction_id)
    except (struct.error, TypeError, AttributeError, UnicodeError, OverflowError) as exc:
        raise ValueError(
            f"cannot encode {attribute_name(attr_type)} from {value!r}: {exc}"
        ) from None
    if not codec.min_length <= len(encoded) <= codec.max_length:
        raise ValueError(
            f"{attribute_name(attr_type)} value of {len(encoded)} bytes is not allowed"
        )
    return encoded


_ATTR_HEADER = struct.Struct("!HH")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")
_PLAIN = (str, bytes, int)


def encode_attribute(attr_type: int, value: Any, transaction_id: bytes) -> bytes:
    """One whole attribute: type, length, value and the padding to a multiple of 4."""
    data = encode_value(attr_type, value, transaction_id)
    size = len(data)
    if size > 0xFFFF:
        raise ValueError(f"{attribute_name(attr_type)} value of {size} bytes is too long")
    return _ATTR_HEADER.pack(attr_type, size) + data + _PADDING[size & 3]


def reusable(attr_type: int, value: Any, encoded: bytes) -> bool:
    """Whether ``value`` encodes to ``encoded`` in every message, so that it may be memoised.

    Only plain values (str, bytes, int or tuples of them) of codecs that allow it; an
    IPv6 XOR address (not the 12 bytes of an IPv4 one) depends on the transaction id.
    """
    codec = CODECS.get(attr_type)
    if codec is None or not codec.memo:
        return False
    if codec.encode is _enc_xor_address and len(encoded) != 12:
        return False
    if isinstance(value, tuple):
        return all(isinstance(item, _PLAIN) for item in value)
    return isinstance(value, _PLAIN)


FLAGS = frozenset(t for t, codec in CODECS.items() if codec.encode is _enc_flag)
"""Attribute types whose presence is all there is: any value encodes the same."""


def attribute_name(attr_type: int) -> str:
    """The RFC name of an attribute type (``XOR-MAPPED-ADDRESS``), or its number in hex."""
    try:
        return Attr(attr_type).name.replace("_", "-")
    except ValueError:
        return f"attribute 0x{attr_type:04x}"
