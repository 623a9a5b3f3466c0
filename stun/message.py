"""The STUN message: header, attribute list, integrity and fingerprint (RFC 8489 section 5).

:func:`decode` checks the whole message up front (header, attribute layout, every known
attribute's value shape) and raises :class:`ParseError` on anything malformed; values are
then converted lazily, when :meth:`Message.get` asks for them.

Speed comes from remembering, never from skipping a check:

- what :func:`decode` learns from a message (where each attribute is, which ones count,
  where integrity and fingerprint are) is a :class:`_Layout`. When a second message
  starts with the same 8 bytes (type, length, magic cookie) its layout is remembered,
  and later ones reuse it once one ``struct`` read shows that their attribute headers,
  and the value bytes that validation looks at, are the same;
- :meth:`Message.encode` copies attribute lists (and single attributes) that encode the
  same way in every message from a memo of their wire bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping
from enum import IntEnum
from hmac import compare_digest
from typing import Any
from zlib import crc32

from .attributes import (
    CODECS,
    FLAGS,
    MAGIC_COOKIE,
    RULES,
    UNKNOWN_RULE,
    Attr,
    Check,
    Decoder,
    attribute_name,
    encode_attribute,
    reusable,
)
from .auth import Mac, hmac_sha1, hmac_sha256
from .errors import ParseError

HEADER_LENGTH = 20
FINGERPRINT_XOR = 0x5354554E

_HEADER = struct.Struct("!HHI")
_FULL_HEADER = struct.Struct("!HHI12s")  # with the transaction id
_TYPE_LENGTH = struct.Struct("!HH")
_ATTR_HEADER = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_FINGERPRINT_ATTR = struct.Struct("!HHI")

_MI = Attr.MESSAGE_INTEGRITY.value
_MI256 = Attr.MESSAGE_INTEGRITY_SHA256.value
_FP = Attr.FINGERPRINT.value
_TRAILERS = frozenset((_MI, _MI256, _FP))
_ALLOWED_AFTER = {_MI: frozenset((_MI256, _FP)), _MI256: frozenset((_FP,)), _FP: frozenset()}
_MI_HEADER = _ATTR_HEADER.pack(_MI, 20)
_MAX_LENGTH = 0xFFFF
_MAX_TRAILERS = 36 + 8  # the most MESSAGE-INTEGRITY-SHA256 and FINGERPRINT can take


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
_CLASS_BY_BITS = tuple(Class)


def _check_type(method: int, cls: int) -> tuple[int, Class]:
    """Validate a method and class given as numbers; return the enum members to keep."""
    if not 0 <= method <= 0xFFF:
        raise ValueError(f"method out of range: {method!r}")
    return _METHODS.get(method, method), Class(cls)


def message_type(method: int, cls: int) -> int:
    """Interleave the 12 method bits and 2 class bits into the 14-bit message type."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 1) << 4)
        | ((cls & 2) << 7)
    )


def split_type(mtype: int) -> tuple[int, Class]:
    """The method and class interleaved in a 14-bit message type."""
    method = (mtype & 0x000F) | ((mtype >> 1) & 0x0070) | ((mtype >> 2) & 0x0F80)
    return _METHODS.get(method, method), _CLASS_BY_BITS[((mtype >> 4) & 1) | ((mtype >> 7) & 2)]


_TYPES: dict[tuple[int, int], int] = {(m, c): message_type(m, c) for m in Method for c in Class}
"""The message type of every known (method, class) pair."""
_SPLIT_TYPES: dict[int, tuple[int, Class]] = {
    message_type(m, c): (m, c) for m in Method for c in Class
}
"""The known (method, class) pair of each message type."""


AttributeItems = Mapping[int, Any] | Iterable[tuple[int, Any]]
Items = tuple[tuple[int, Any], ...]
Entry = tuple[int, int, Decoder]  # where a value is in the message, and its decoder


class Message:
    """One STUN message.

    Build one with ``Message(method, cls, transaction_id=None, attributes=None)`` (a
    random 96-bit transaction id is drawn when none is given; attributes are a mapping
    or a sequence of ``(Attr, value)`` pairs, in wire order) and turn it into bytes with
    :meth:`encode`. A decoded message keeps its wire bytes, so integrity and fingerprint
    checks run over exactly what was received.
    """

    __slots__ = ("_index", "_items", "_layout", "_raw", "cls", "method", "transaction_id")

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
        if method.__class__ is not Method or cls.__class__ is not Class:
            method, cls = _check_type(method, cls)
        self.method = method
        self.cls = cls
        self.transaction_id = (
            transaction_id if transaction_id.__class__ is bytes else bytes(transaction_id)
        )
        if attributes is None:
            self._items: Items | None = ()
        # A list, the common case, is told apart before the (slower) Mapping test.
        elif isinstance(attributes, list) or not isinstance(attributes, Mapping):
            self._items = tuple(attributes)
        else:
            self._items = tuple(attributes.items())
        self._raw = b""
        self._layout = _BUILT
        self._index = _BUILT.index

    # -- reading ---------------------------------------------------------------------------

    def get(self, attr: int, default: Any = None) -> Any:
        """The decoded value of the first ``attr`` attribute, or ``default``."""
        entry = self._index.get(attr)  # the layout's index (empty when built in code)
        if entry is not None:
            start, end, decode_value = entry
            return decode_value(self._raw, start, end)
        if self._layout is _BUILT:
            for t, value in self._items or ():
                if t == attr:
                    return value
        return default

    def get_all(self, attr: int) -> list[Any]:
        """The decoded values of every ``attr`` attribute, in wire order."""
        return [value for t, value in self.attributes if t == attr]

    def __contains__(self, attr: int) -> bool:
        if self._layout is _BUILT:
            return any(t == attr for t, _ in self._items or ())
        return attr in self._index

    @property
    def attributes(self) -> list[tuple[int, Any]]:
        """Every attribute that counts, as ``(type, decoded value)`` pairs in wire order.

        Attributes after MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT that RFC 8489 says to
        ignore are not listed.
        """
        return list(self._all_items())

    def _all_items(self) -> Items:
        """The attribute list, decoded from the wire bytes on first use."""
        if self._items is None:
            raw = self._raw
            entries = self._layout.entries
            self._items = tuple((t, dec(raw, start, end)) for t, (start, end, dec) in entries)
        return self._items

    def unknown_required(self) -> list[int]:
        """Comprehension-required attribute types this library does not know (for a 420)."""
        types = dict(self._items or ()) if self._layout is _BUILT else self._index
        return [t for t in types if t < 0x8000 and t not in CODECS]

    # -- integrity and fingerprint ---------------------------------------------------------

    def check_integrity(self, key: bytes) -> bool:
        """Verify MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY, with ``key``.

        False when the message carries neither or was not decoded from bytes.
        """
        integrity = self._layout.integrity
        if integrity is None:
            return False
        mac, covered, value, head = integrity
        raw = self._raw
        return compare_digest(mac(key, head + raw[covered]), raw[value])

    def check_fingerprint(self) -> bool:
        """True when the message carries a FINGERPRINT and it matches."""
        fingerprint = self._layout.fingerprint
        if fingerprint is None:
            return False
        covered, start, head = fingerprint
        raw = self._raw
        data = raw[covered] if head is None else head + raw[covered]
        expected: int = _U32.unpack_from(raw, start)[0]
        return crc32(data) ^ FINGERPRINT_XOR == expected

    @property
    def has_integrity(self) -> bool:
        """Whether a MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 attribute counts."""
        return self._layout.integrity is not None

    @property
    def has_fingerprint(self) -> bool:
        """Whether a FINGERPRINT attribute counts."""
        return self._layout.fingerprint is not None

    @property
    def raw(self) -> bytes | None:
        """The bytes this message was decoded from (None for a message built in code)."""
        return None if self._layout is _BUILT else self._raw

    # -- writing ---------------------------------------------------------------------------

    def add(self, attr: int, value: Any) -> None:
        """Append an attribute."""
        self._items = (*self._all_items(), (attr, value))
        self._raw = b""
        self._layout = _BUILT
        self._index = _BUILT.index

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
        items = self._items if self._items is not None else self._all_items()
        body = _memoised(items)
        if body is None:
            body = _encode_items(items, tid)
        return encode_body(
            self.method, self.cls, tid, body, integrity_key, fingerprint, sha256, sha256_length
        )

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

    def __reduce__(self) -> tuple[Any, ...]:
        # For copy and pickle: layouts are shared and hold functions, so a message is
        # rebuilt from what it is made of, its wire bytes when it has them.
        if self._layout is _BUILT:
            return _rebuild, (self.method, self.cls, self.transaction_id, self._items)
        return _redecode, (self._raw, self.method, self.cls, self.transaction_id)

    def __repr__(self) -> str:
        method = self.method.name if isinstance(self.method, Method) else f"0x{self.method:03x}"
        attrs = ", ".join(f"{attribute_name(t)}={v!r}" for t, v in self.attributes)
        return f"<Message {method} {self.cls.name} {self.transaction_id.hex()} [{attrs}]>"


def encode_body(
    method: int,
    cls: int,
    transaction_id: bytes,
    body: bytes,
    integrity_key: bytes | None = None,
    fingerprint: bool = False,
    sha256: bool = False,
    sha256_length: int = 32,
) -> bytes:
    """A message from its already encoded attributes ``body`` (each padded, without
    integrity or fingerprint), signed and fingerprinted as :meth:`Message.encode` does.

    For hot paths that send the same attributes again and again (ICE checks): encode the
    body once, then pay only for the header, the MAC and the CRC per message.
    """
    if sha256 and not (16 <= sha256_length <= 32 and sha256_length % 4 == 0):
        raise ValueError("sha256_length must be 16, 20, 24, 28 or 32")
    tid = transaction_id
    try:
        mtype = _TYPES[method, cls]
    except KeyError:  # a method this module does not name
        mtype = message_type(method, cls)
    length = len(body)
    if length + _MAX_TRAILERS > _MAX_LENGTH:
        _check_room(length, integrity_key is not None, sha256, sha256_length, fingerprint)
    # Built as bytes, the header packed afresh for each length field the MAC and the
    # CRC cover: quicker in CPython than patching a bytearray and copying it out.
    if integrity_key is not None:
        if sha256:
            length += 4 + sha256_length
            header = _FULL_HEADER.pack(mtype, length, MAGIC_COOKIE, tid)
            mac = hmac_sha256(integrity_key, header + body)[:sha256_length]
            body += _ATTR_HEADER.pack(_MI256, sha256_length) + mac
        else:
            length += 24
            header = _FULL_HEADER.pack(mtype, length, MAGIC_COOKIE, tid)
            body += _MI_HEADER + hmac_sha1(integrity_key, header + body)
    if fingerprint:
        length += 8
        message = _FULL_HEADER.pack(mtype, length, MAGIC_COOKIE, tid) + body
        return message + _FINGERPRINT_ATTR.pack(_FP, 4, crc32(message) ^ FINGERPRINT_XOR)
    return _FULL_HEADER.pack(mtype, length, MAGIC_COOKIE, tid) + body


def _rebuild(method: int, cls: Class, transaction_id: bytes, items: Items) -> Message:
    """A copy of a message built in code (for ``Message.__reduce__``)."""
    message = Message(Method.BINDING, Class.REQUEST, transaction_id, items)
    message.method = method
    message.cls = cls
    return message


def _redecode(raw: bytes, method: int, cls: Class, transaction_id: bytes) -> Message:
    """A copy of a decoded message (for ``Message.__reduce__``)."""
    message = decode(raw)
    message.method = method
    message.cls = cls
    message.transaction_id = transaction_id
    return message


# -- encoding: the memo of encoded attribute lists ---------------------------------------


def _check_room(
    length: int, integrity: bool, sha256: bool, sha256_length: int, fingerprint: bool
) -> None:
    """Raise ValueError when ``length`` attribute bytes and the trailers asked for do not fit."""
    if integrity:
        length += 4 + (sha256_length if sha256 else 20)
    if fingerprint:
        length += 8
    if length > _MAX_LENGTH:
        raise ValueError(f"{length} bytes of attributes is too long for STUN")


_Encoded = tuple[bytes, tuple[int, ...], tuple[tuple[int, int], ...]]
"""A memoised attribute list: ``(data, numbers, inner_numbers)``, its wire bytes and where
its numbers are: ``numbers`` holds the items whose values are ints, ``inner_numbers``
``(item, index)`` of ints inside tuple values (an address's port). A list that is equal
but holds another kind of number there (``600.0`` for ``600``) must not reuse the bytes:
the encoder refuses it. (Any int, bool or IntEnum equal to the memoised one encodes the
same way.)"""

_ENCODED: dict[Items, _Encoded] = {}
"""Encoded attribute lists, and single attributes as lists of one, by the list itself:
an ICE check repeats its whole list, a server each client's XOR-MAPPED-ADDRESS."""
_ENCODED_LIMIT = 1024


def _memoised(items: Items) -> bytes | None:
    """The memoised wire bytes of ``items``, if any."""
    try:
        memo = _ENCODED.get(items)
    except TypeError:  # an unhashable value
        return None
    if memo is None:
        return None
    data, numbers, inner_numbers = memo
    for i in numbers:
        if not isinstance(items[i][1], int):
            return None
    if inner_numbers:  # most lists have none, and even an empty loop costs something
        for i, j in inner_numbers:
            if not isinstance(items[i][1][j], int):
                return None
    return data


def _memoise(items: Items, data: bytes) -> None:
    """Remember that ``items`` encode to ``data``, and where their numbers are."""
    numbers = []
    inner_numbers = []
    for i, (attr_type, value) in enumerate(items):
        if attr_type in FLAGS:  # any value encodes the same
            continue
        if isinstance(value, tuple):
            inner_numbers += [(i, j) for j, v in enumerate(value) if isinstance(v, int)]
        elif isinstance(value, int):
            numbers.append(i)
    if len(_ENCODED) >= _ENCODED_LIMIT:
        _ENCODED.clear()
    _ENCODED[items] = (data, tuple(numbers), tuple(inner_numbers))


def _encode_items(items: Items, tid: bytes) -> bytes:
    """Encode an attribute list attribute by attribute, from the memo where possible.

    The list is memoised when all its attributes could be. Integrity and fingerprint
    attributes become nothing: :meth:`Message.encode` computes its own.
    """
    parts = []
    reuse = True
    for item in items:
        attr_type, value = item
        if attr_type in _TRAILERS:
            reuse = False
            continue
        data = _memoised((item,))
        if data is None:
            data = encode_attribute(attr_type, value, tid)
            if reusable(attr_type, value, data):
                _memoise((item,), data)
            else:
                reuse = False
        parts.append(data)
    data = b"".join(parts)
    if reuse:
        _memoise(items, data)
    return data


# -- decoding ------------------------------------------------------------------------------


_KEY = slice(0, 8)  # message type, length, magic cookie
_TRANSACTION_ID = slice(8, 20)
_new_message = object.__new__  # a Message without __init__: decode fills its slots


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse one STUN message from a datagram (or a complete framed message).

    Raises :class:`ParseError` with a reason on anything malformed, and nothing else.
    """
    if data.__class__ is not bytes:
        data = _as_bytes(data)
    shape = _SHAPES.get(data[_KEY])
    if shape is None:
        layout = _learn(data)
    else:
        size, reader, signature, layout = shape
        if size != len(data) or reader.unpack_from(data) != signature:
            layout = _learn(data)
    message = _new_message(Message)
    message.method = layout.method
    message.cls = layout.cls
    message.transaction_id = data[_TRANSACTION_ID]
    message._raw = data
    message._layout = layout
    message._index = layout.index
    message._items = None
    return message


def _as_bytes(data: object) -> bytes:
    try:
        return memoryview(data).tobytes()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParseError(f"cannot decode a {type(data).__name__}") from None


def _check_header(data: bytes) -> int:
    """Validate the 20-byte header; return the message type."""
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
    return int(mtype)


_WalkRule = tuple[range, Check | None, Decoder, int, frozenset[int] | None]

_RULES: dict[int, _WalkRule] = {
    int(t): (lengths, check, decode_value, Attr(t), _ALLOWED_AFTER.get(t))
    for t, (lengths, check, _, decode_value) in RULES.items()
}
"""What :func:`_walk` needs of each known attribute type, in one lookup: the value
lengths allowed, the value check, the decoder, the :class:`Attr` member to index it by
(``get(Attr.X)`` then finds it by identity) and, for MESSAGE-INTEGRITY(-SHA256) and
FINGERPRINT, which attributes may still count after it."""


def _unknown(attr_type: int) -> _WalkRule:
    """The walk rule of an unknown attribute type: any length, read as raw bytes."""
    return UNKNOWN_RULE[0], None, UNKNOWN_RULE[3], attr_type, None


def _walk(data: bytes) -> tuple[list[tuple[int, Entry]], dict[int, Entry]]:
    """Check the attributes after a valid header; list and index those that count.

    Every attribute that counts has its value checked and becomes ``(type, (start, end,
    decoder))``; the index keeps the first of each type. Per RFC 8489 section 9, after
    MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count, after
    MESSAGE-INTEGRITY-SHA256 only FINGERPRINT, after FINGERPRINT nothing; the attributes
    that do not count must still fit the message.
    """
    entries = []
    index: dict[int, Entry] = {}
    allowed: frozenset[int] | None = None  # None until the first of those three
    unpack, rules = _ATTR_HEADER.unpack_from, _RULES
    size = len(data)
    off = HEADER_LENGTH
    while off < size:
        attr_type, length = unpack(data, off)
        start = off + 4
        end = start + length
        if end > size:
            raise ParseError(f"{attribute_name(attr_type)} of {length} bytes runs past the end")
        if allowed is None or attr_type in allowed:
            lengths, check, decode_value, key, after = rules.get(attr_type) or _unknown(attr_type)
            if length not in lengths:
                raise ParseError(f"{attribute_name(attr_type)} has {length} value bytes")
            if check is not None:
                problem = check(data, start, end)
                if problem is not None:
                    raise ParseError(f"{attribute_name(attr_type)}: {problem}")
            entry = (start, end, decode_value)
            entries.append((attr_type, entry))
            if key not in index:
                index[key] = entry
            if after is not None:
                allowed = after
        off = (end + 3) & ~3
    return entries, index


def _truncated(mac: Mac, size: int) -> Mac:
    """``mac`` cut to its first ``size`` bytes (a truncated MESSAGE-INTEGRITY-SHA256)."""
    return lambda key, data: mac(key, data)[:size]


_SHA256_MACS: dict[int, Mac] = {
    32: hmac_sha256,
    **{size: _truncated(hmac_sha256, size) for size in (16, 20, 24, 28)},
}
"""The MESSAGE-INTEGRITY-SHA256 MAC for each value length that validation lets through."""


class _Layout:
    """Everything :func:`decode` learnt from one message's header and attributes.

    ``entries`` lists every attribute that counts as ``(type, (start, end, decoder))`` in
    wire order, and ``index`` maps each type to the ``(start, end, decoder)`` of its first
    value. ``integrity`` is ``(mac, covered, value, head)`` for the MESSAGE-INTEGRITY or
    MESSAGE-INTEGRITY-SHA256 to verify: the MAC is computed over ``head`` (the message
    type and a length field that ends at that attribute) and the ``covered`` slice of the
    message, and must equal its ``value`` slice; ``mac`` gives as many bytes as the value
    holds. ``fingerprint`` is ``(covered, start, head)``: the CRC covers ``covered``,
    after ``head`` unless FINGERPRINT is the last attribute (then ``head`` is None and
    the bytes are covered as they are), and the CRC value starts at ``start``. Layouts
    are shared between messages and never change.
    """

    __slots__ = ("cls", "entries", "fingerprint", "index", "integrity", "method")

    def __init__(
        self, size: int, mtype: int, entries: list[tuple[int, Entry]], index: dict[int, Entry]
    ) -> None:
        self.method, self.cls = _SPLIT_TYPES.get(mtype) or split_type(mtype)
        self.entries = entries
        self.index = index
        self.integrity: tuple[Mac, slice, slice, bytes] | None = None
        self.fingerprint: tuple[slice, int, bytes | None] | None = None
        mi = index.get(_MI256) or index.get(_MI)
        if mi is not None:
            start, end, _ = mi
            mac = _SHA256_MACS[end - start] if _MI256 in index else hmac_sha1
            head = _TYPE_LENGTH.pack(mtype, end - HEADER_LENGTH)
            self.integrity = (mac, slice(4, start - 4), slice(start, end), head)
        fp = index.get(_FP)
        if fp is not None:
            start, end, _ = fp
            if end == size:
                self.fingerprint = (slice(0, start - 4), start, None)
            else:
                head = _TYPE_LENGTH.pack(mtype, end - HEADER_LENGTH)
                self.fingerprint = (slice(4, start - 4), start, head)


_BUILT = _Layout(0, 0, [], {})
"""The layout of every message built in code: no wire bytes, nothing to look up."""


# -- remembered layouts --------------------------------------------------------------------


_Shape = tuple[int, struct.Struct, tuple[Any, ...], _Layout]
"""A remembered layout and how to recognise another message that has it: ``(size,
reader, signature, layout)``. ``reader`` picks every attribute header and the value
bytes that validation reads out of a message of ``size`` bytes; a message that starts
with the same 8 bytes (the key) has this layout when that read equals ``signature``.
(A plain tuple: CPython unpacks one much quicker than a NamedTuple.)"""

_SHAPES: dict[bytes, _Shape] = {}
"""Remembered layouts by the first 8 header bytes (message type, length, magic cookie)."""
_SEEN: set[bytes] = set()
"""First 8 bytes of messages decoded once, whose layout is remembered if they come back."""
_SHAPE_LIMIT = 256
_SHAPE_MAX_ATTRIBUTES = 32


def _learn(data: bytes) -> _Layout:
    """Check a whole message and work out its layout.

    The layout is remembered the second time a message starts with the same 8 bytes, so
    that one-off messages do not pay for that.
    """
    mtype = _check_header(data)
    entries, index = _walk(data)
    layout = _Layout(len(data), mtype, entries, index)
    key = data[:8]
    if key not in _SEEN:
        if len(_SEEN) >= _SHAPE_LIMIT:
            _SEEN.clear()
        _SEEN.add(key)
    else:
        _SEEN.discard(key)
        _remember(key, data, layout)
    return layout


def _remember(key: bytes, data: bytes, layout: _Layout) -> None:
    """Keep ``layout`` for later messages that start with ``key`` and match its signature.

    The key holds the message type, length and magic cookie. The signature is every
    attribute header and, of each attribute that counts, the leading value bytes its
    check reads (``Codec.check_span``), adjacent ones read as one field: a message that
    matches both walks, validates and counts exactly like this one.
    """
    counted = {start for _, (start, _, _) in layout.entries}
    fmt = "!"
    pos = first = 0  # the field being read is data[first:pos]
    size = len(data)
    off = HEADER_LENGTH
    headers = 0
    while off < size:
        headers += 1
        if headers > _SHAPE_MAX_ATTRIBUTES:
            return  # too many attributes to be worth a signature
        attr_type, length = _ATTR_HEADER.unpack_from(data, off)
        if off != pos:  # a gap: end the field so far and skip the gap
            if pos:
                fmt += _field(pos - first)
            fmt += f"{off - pos}x"
            first = off
        pos = off + 4
        if pos in counted:
            pos += min(RULES.get(attr_type, UNKNOWN_RULE)[2], length)
        off = (off + 4 + length + 3) & ~3
    reader = struct.Struct(fmt + _field(pos - first))
    if len(_SHAPES) >= _SHAPE_LIMIT:
        _SHAPES.clear()
    _SHAPES[key] = (size, reader, reader.unpack_from(data), layout)


def _field(size: int) -> str:
    """A struct format that reads ``size`` bytes.

    Short runs are read as 16-bit numbers: attribute types and lengths are mostly below
    257, numbers CPython keeps ready-made, so the read allocates little and compares by
    identity.
    """
    if size > 8:
        return f"{size}s"
    return "H" * (size // 2) + "B" * (size % 2)
