"""The STUN message: header, attribute list, integrity and fingerprint (RFC 8489 section 5).

:func:`decode` checks the whole message up front (header, attribute layout, every known
attribute's value shape) and raises :class:`ParseError` on anything malformed; values are
then converted lazily, when :meth:`Message.get` asks for them.
"""

from __future__ import annotations

import hmac
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from enum import IntEnum
from typing import Any

from .attributes import CODECS, MAGIC_COOKIE, Attr, attribute_name, check_value, encode_value
from .auth import hmac_sha1, hmac_sha256
from .errors import ParseError

HEADER_LENGTH = 20
FINGERPRINT_XOR = 0x5354554E

_HEADER = struct.Struct("!HHI")
_ATTR_HEADER = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_FINGERPRINT_ATTR = struct.Struct("!HHI")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")

_MI = Attr.MESSAGE_INTEGRITY.value
_MI256 = Attr.MESSAGE_INTEGRITY_SHA256.value
_FP = Attr.FINGERPRINT.value
_TRAILERS = frozenset((_MI, _MI256, _FP))

_SPECS = {t: (c.min_length, c.max_length, c.check) for t, c in CODECS.items()}
_DECODERS = {t: c.decode for t, c in CODECS.items()}


class Method(IntEnum):
    """STUN methods (RFC 8489, RFC 8656, RFC 6062)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009
    CONNECT = 0x00A
    CONNECTION_BIND = 0x00B
    CONNECTION_ATTEMPT = 0x00C


class Class(IntEnum):
    """STUN message classes."""

    REQUEST = 0
    INDICATION = 1
    SUCCESS = 2
    ERROR = 3


_METHODS: dict[int, int] = {m.value: m for m in Method}
_CLASSES = tuple(Class)


def message_type(method: int, cls: int) -> int:
    """Interleave the 12 method bits and 2 class bits into the 14-bit message type."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 1) << 4)
        | ((cls & 2) << 7)
    )


def _split_type(mtype: int) -> tuple[int, Class]:
    method = (mtype & 0x000F) | ((mtype >> 1) & 0x0070) | ((mtype >> 2) & 0x0F80)
    return _METHODS.get(method, method), _CLASSES[((mtype >> 4) & 1) | ((mtype >> 7) & 2)]


AttributeItems = Mapping[int, Any] | Iterable[tuple[int, Any]]


class Message:
    """One STUN message.

    Build one with ``Message(method, cls, transaction_id=None, attributes=None)`` (a
    random 96-bit transaction id is drawn when none is given; attributes are a mapping
    or a sequence of ``(Attr, value)`` pairs, in wire order) and turn it into bytes with
    :meth:`encode`. A decoded message keeps its wire bytes, so integrity and fingerprint
    checks run over exactly what was received.
    """

    __slots__ = (
        "_fp",
        "_index",
        "_items",
        "_mi",
        "_mi256",
        "_raw",
        "cls",
        "method",
        "transaction_id",
    )

    method: int
    cls: Class
    transaction_id: bytes

    def __init__(
        self,
        method: int,
        cls: int,
        transaction_id: bytes | None = None,
        attributes: AttributeItems | None = None,
    ) -> None:
        if transaction_id is None:
            transaction_id = os.urandom(12)
        elif len(transaction_id) != 12:
            raise ValueError("a transaction id is 12 bytes (96 bits)")
        if not 0 <= method <= 0xFFF:
            raise ValueError(f"method out of range: {method!r}")
        self.method = _METHODS.get(method, method)
        self.cls = Class(cls)
        self.transaction_id = bytes(transaction_id)
        if attributes is None:
            self._items: list[tuple[int, Any]] | None = []
        elif isinstance(attributes, Mapping):
            self._items = list(attributes.items())
        else:
            self._items = list(attributes)
        self._raw: bytes | None = None
        self._index: dict[int, int] = {}
        self._mi = self._mi256 = self._fp = -1

    # -- reading ---------------------------------------------------------------------------

    def get(self, attr: int, default: Any = None) -> Any:
        """The decoded value of the first ``attr`` attribute, or ``default``."""
        raw = self._raw
        if raw is None:
            for t, value in self._items or ():
                if t == attr:
                    return value
            return default
        off = self._index.get(attr)
        if off is None:
            return default
        start = off + 4
        end = start + ((raw[off + 2] << 8) | raw[off + 3])
        decoder = _DECODERS.get(attr)
        if decoder is None:
            return raw[start:end]
        return decoder(raw, start, end, self.transaction_id)

    def get_all(self, attr: int) -> list[Any]:
        """The decoded values of every ``attr`` attribute, in wire order."""
        return [value for t, value in self.attributes if t == attr]

    def __contains__(self, attr: int) -> bool:
        if self._raw is None:
            return any(t == attr for t, _ in self._items or ())
        return attr in self._index

    @property
    def attributes(self) -> list[tuple[int, Any]]:
        """Every attribute that counts, as ``(type, decoded value)`` pairs in wire order.

        Attributes after MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT that RFC 8489 says to
        ignore are not listed.
        """
        if self._items is None:
            self._items = list(self._decode_all())
        return list(self._items)

    def _decode_all(self) -> Iterator[tuple[int, Any]]:
        raw = self._raw
        assert raw is not None
        tid = self.transaction_id
        trailers = [off for off in (self._mi, self._mi256, self._fp) if off >= 0]
        body_end = min(trailers, default=len(raw))
        off = HEADER_LENGTH
        while off < len(raw):
            t, length = _ATTR_HEADER.unpack_from(raw, off)
            start, end = off + 4, off + 4 + length
            if off < body_end or off in trailers:
                decoder = _DECODERS.get(t)
                yield t, decoder(raw, start, end, tid) if decoder else raw[start:end]
            off = (end + 3) & ~3

    def unknown_required(self) -> list[int]:
        """Comprehension-required attribute types this library does not know (for a 420)."""
        types = self._index if self._raw is not None else dict(self._items or ())
        return [t for t in types if t < 0x8000 and t not in CODECS]

    # -- integrity and fingerprint ---------------------------------------------------------

    def check_integrity(self, key: bytes) -> bool:
        """Verify MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY, with ``key``.

        False when the message carries neither or was not decoded from bytes.
        """
        raw = self._raw
        if raw is None:
            return False
        if self._mi256 >= 0:
            off, mac = self._mi256, hmac_sha256
        elif self._mi >= 0:
            off, mac = self._mi, hmac_sha1
        else:
            return False
        size = (raw[off + 2] << 8) | raw[off + 3]
        covered = raw[:2] + _U16.pack(off + 4 + size - HEADER_LENGTH) + raw[4:off]
        digest = mac(key, covered)[:size]
        return hmac.compare_digest(digest, raw[off + 4 : off + 4 + size])

    def check_fingerprint(self) -> bool:
        """True when the message carries a FINGERPRINT and it matches."""
        raw = self._raw
        off = self._fp
        if raw is None or off < 0:
            return False
        expected: int = _FINGERPRINT_ATTR.unpack_from(raw, off)[2]
        if off + 8 == len(raw):
            crc = zlib.crc32(raw[:off])
        else:
            crc = zlib.crc32(raw[4:off], zlib.crc32(raw[:2] + _U16.pack(off + 8 - HEADER_LENGTH)))
        return (crc ^ FINGERPRINT_XOR) == expected

    @property
    def has_integrity(self) -> bool:
        """Whether a MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 attribute counts."""
        return self._mi >= 0 or self._mi256 >= 0

    @property
    def has_fingerprint(self) -> bool:
        """Whether a FINGERPRINT attribute counts."""
        return self._fp >= 0

    @property
    def raw(self) -> bytes | None:
        """The bytes this message was decoded from (None for a message built in code)."""
        return self._raw

    # -- writing ---------------------------------------------------------------------------

    def add(self, attr: int, value: Any) -> None:
        """Append an attribute."""
        if self._items is None:
            self._items = list(self._decode_all())
        self._items.append((attr, value))
        self._raw = None

    def encode(
        self,
        integrity_key: bytes | None = None,
        fingerprint: bool = False,
        sha256: bool = False,
        sha256_length: int = 32,
    ) -> bytes:
        """The message as bytes.

        With ``integrity_key`` a MESSAGE-INTEGRITY is appended, or a
        MESSAGE-INTEGRITY-SHA256 when ``sha256`` is set (at its full 32 bytes unless
        ``sha256_length`` asks for a truncated 16-28). ``fingerprint`` appends FINGERPRINT.
        Integrity and fingerprint attributes in the attribute list are recomputed, never
        copied.
        """
        tid = self.transaction_id
        buf = bytearray(_HEADER.pack(message_type(self.method, self.cls), 0, MAGIC_COOKIE))
        buf += tid
        pack_attr = _ATTR_HEADER.pack
        for t, value in self.attributes if self._items is None else self._items:
            if t in _TRAILERS:
                continue
            data = encode_value(t, value, tid)
            size = len(data)
            buf += pack_attr(t, size)
            buf += data
            buf += _PADDING[size & 3]
        if integrity_key is not None:
            if sha256:
                if not (16 <= sha256_length <= 32 and sha256_length % 4 == 0):
                    raise ValueError("sha256_length must be 16, 20, 24, 28 or 32")
                _U16.pack_into(buf, 2, len(buf) - HEADER_LENGTH + 4 + sha256_length)
                buf += pack_attr(_MI256, sha256_length)
                buf += hmac_sha256(integrity_key, buf[:-4])[:sha256_length]
            else:
                _U16.pack_into(buf, 2, len(buf) - HEADER_LENGTH + 24)
                buf += pack_attr(_MI, 20)
                buf += hmac_sha1(integrity_key, buf[:-4])
        if fingerprint:
            _U16.pack_into(buf, 2, len(buf) - HEADER_LENGTH + 8)
            buf += _FINGERPRINT_ATTR.pack(_FP, 4, zlib.crc32(buf) ^ FINGERPRINT_XOR)
        else:
            _U16.pack_into(buf, 2, len(buf) - HEADER_LENGTH)
        return bytes(buf)

    # -- plumbing --------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.method == other.method
            and self.cls == other.cls
            and self.transaction_id == other.transaction_id
            and self.attributes == other.attributes
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        method = self.method.name if isinstance(self.method, Method) else f"0x{self.method:03x}"
        attrs = ", ".join(f"{attribute_name(t)}={v!r}" for t, v in self.attributes)
        return f"<Message {method} {self.cls.name} {self.transaction_id.hex()} [{attrs}]>"


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse one STUN message from a datagram (or a complete framed message).

    Raises :class:`ParseError` with a reason on anything malformed, and nothing else.
    """
    if not isinstance(data, bytes):
        try:
            data = bytes(data)
        except TypeError:
            raise ParseError(f"cannot decode a {type(data).__name__}") from None
    size = len(data)
    if size < HEADER_LENGTH:
        raise ParseError(f"{size} bytes is shorter than a STUN header")
    mtype, length, cookie = _HEADER.unpack_from(data)
    if mtype & 0xC000:
        raise ParseError("not STUN: the two leading bits of the message type are not zero")
    if cookie != MAGIC_COOKIE:
        if length + HEADER_LENGTH == size and length % 4 == 0:
            raise ParseError(
                "RFC 3489 message without the magic cookie: classic STUN is not supported"
            )
        raise ParseError(f"wrong magic cookie 0x{cookie:08x}")
    if length + HEADER_LENGTH != size:
        raise ParseError(
            f"length field says {length} but {size - HEADER_LENGTH} bytes follow the header"
        )
    if length & 3:
        raise ParseError(f"length {length} is not a multiple of 4")

    index: dict[int, int] = {}
    specs = _SPECS
    unpack = _ATTR_HEADER.unpack_from
    off = HEADER_LENGTH
    t = -1
    while off < size:
        t, alen = unpack(data, off)
        end = off + 4 + alen
        if end > size:
            raise ParseError(f"{attribute_name(t)} of {alen} bytes runs past the end")
        spec = specs.get(t)
        if spec is not None:
            if alen < spec[0] or alen > spec[1]:
                raise ParseError(f"{attribute_name(t)} has {alen} value bytes")
            if spec[2] is not None:
                problem = spec[2](data, off + 4, end)
                if problem is not None:
                    raise ParseError(f"{attribute_name(t)}: {problem}")
            if t in _TRAILERS:
                break
        if t not in index:
            index[t] = off
        off = (end + 3) & ~3

    message = Message.__new__(Message)
    method, cls = _split_type(mtype)
    message.method = method
    message.cls = cls
    message.transaction_id = data[8:20]
    message._raw = data
    message._index = index
    message._items = None
    message._mi = message._mi256 = message._fp = -1
    if off < size:
        _read_trailers(message, data, off, t)
    return message


def _read_trailers(message: Message, data: bytes, off: int, t: int) -> None:
    """Record the integrity and fingerprint attributes from ``off`` on, per RFC 8489 §9.

    After MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count, after
    MESSAGE-INTEGRITY-SHA256 only FINGERPRINT, after FINGERPRINT nothing; the rest is
    still checked for layout but otherwise ignored.
    """
    size = len(data)
    allowed = _TRAILERS
    while True:
        if t in allowed:
            if t == _MI:
                message._mi = off
                allowed = frozenset((_MI256, _FP))
            elif t == _MI256:
                message._mi256 = off
                allowed = frozenset((_FP,))
            else:
                message._fp = off
                allowed = frozenset()
            message._index[t] = off
        off = (off + 4 + ((data[off + 2] << 8) | data[off + 3]) + 3) & ~3
        if off >= size:
            return
        t, alen = _ATTR_HEADER.unpack_from(data, off)
        if off + 4 + alen > size:
            raise ParseError(f"{attribute_name(t)} of {alen} bytes runs past the end")
        if t in allowed:
            check_value(t, data, off + 4, off + 4 + alen)
