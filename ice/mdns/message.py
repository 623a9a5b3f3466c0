"""A strict DNS message codec (RFC 1035 section 4) for what mDNS ICE candidates need.

Names are text in presentation form: labels joined by ``.``, each byte outside ``!``..``~``
and every ``.`` or ``\\`` inside a label written as ``\\DDD`` (decimal), so that any label
survives a round trip. The root name is ``""``. In mDNS (RFC 6762 section 18) the top bit of
a question's class is the unicast-response (QU) bit, and of a record's class the cache-flush
bit; both are fields of their own here.

:func:`parse` follows compression pointers on the way in, strictly backwards only, and
bounds the work a message can cause; every malformed input raises :class:`DnsParseError`
and nothing else. :func:`encode` never compresses.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from .errors import DnsParseError

__all__ = [
    "CLASS_ANY",
    "CLASS_IN",
    "FLAG_AA",
    "FLAG_QR",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_ANY",
    "Message",
    "Question",
    "Record",
    "address_record",
    "encode",
    "parse",
]

TYPE_A = 1
TYPE_AAAA = 28
TYPE_ANY = 255
CLASS_IN = 1
CLASS_ANY = 255
FLAG_QR = 0x8000
"""The message is a response."""
FLAG_AA = 0x0400
"""Authoritative answer: set in every mDNS response (RFC 6762 section 18.4)."""

_TOP_BIT = 0x8000
_HEADER = struct.Struct("!6H")
_FIXED = struct.Struct("!HH")  # type, class
_RECORD_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdata length
_ADDRESS_LENGTHS = {TYPE_A: 4, TYPE_AAAA: 16}
_FAMILIES = {TYPE_A: socket.AF_INET, TYPE_AAAA: socket.AF_INET6}

MAX_NAME = 255
"""Bytes of a name on the wire, length octets and the root included."""
MAX_LABEL = 63
MAX_ENTRIES = 256
"""Questions and records in one message at most; real mDNS traffic stays far below."""
MAX_NAME_STEPS = 4096
"""Labels read and pointers followed in one message at most: the bound on parsing work."""

_ESCAPABLE = frozenset(range(0x21, 0x7F))
_PLAIN = _ESCAPABLE - {ord("."), ord("\\")}


@dataclass(frozen=True, slots=True)
class Question:
    """One question: ``name``, ``type`` and class, and whether a unicast answer is asked for."""

    name: str
    type: int
    unicast_response: bool = False
    qclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record. ``data`` is the raw RDATA (4 bytes for A, 16 for AAAA)."""

    name: str
    type: int
    ttl: int
    data: bytes
    cache_flush: bool = False
    rclass: int = CLASS_IN

    @property
    def address(self) -> str | None:
        """The IP address of an IN-class A or AAAA record, else None."""
        family = _FAMILIES.get(self.type)
        if family is None or self.rclass != CLASS_IN:
            return None
        return socket.inet_ntop(family, self.data)


@dataclass(frozen=True, slots=True)
class Message:
    """A DNS message: header fields and the four sections."""

    id: int = 0
    flags: int = 0
    questions: tuple[Question, ...] = ()
    answers: tuple[Record, ...] = ()
    authorities: tuple[Record, ...] = ()
    additionals: tuple[Record, ...] = ()

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


def address_record(name: str, ip: str, ttl: int, *, cache_flush: bool = False) -> Record:
    """An A record for an IPv4 ``ip``, an AAAA record for an IPv6 one; ValueError otherwise."""
    rtype = TYPE_AAAA if ":" in ip else TYPE_A
    try:
        data = socket.inet_pton(_FAMILIES[rtype], ip)
    except OSError:
        raise ValueError(f"not an IP address: {ip!r}") from None
    return Record(name, rtype, ttl, data, cache_flush)


# -- encoding -------------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """The wire form of ``message``; ValueError for a field that does not fit its format."""
    sections = (message.answers, message.authorities, message.additionals)
    out = bytearray(
        _HEADER.pack(
            _u16(message.id, "id"),
            _u16(message.flags, "flags"),
            _u16(len(message.questions), "question count"),
            *(_u16(len(section), "record count") for section in sections),
        )
    )
    for question in message.questions:
        out += _encode_name(question.name)
        qclass = _u15(question.qclass, "class") | (_TOP_BIT if question.unicast_response else 0)
        out += _FIXED.pack(_u16(question.type, "type"), qclass)
    for section in sections:
        for record in section:
            _encode_record(out, record)
    return bytes(out)


def _encode_record(out: bytearray, record: Record) -> None:
    expected = _ADDRESS_LENGTHS.get(record.type)
    if expected is not None and record.rclass == CLASS_IN and len(record.data) != expected:
        raise ValueError(f"{record.type} record data of {len(record.data)} bytes")
    if not 0 <= record.ttl <= 0xFFFFFFFF:
        raise ValueError(f"ttl {record.ttl!r} is not a 32-bit unsigned integer")
    rclass = _u15(record.rclass, "class") | (_TOP_BIT if record.cache_flush else 0)
    out += _encode_name(record.name)
    out += _RECORD_FIXED.pack(
        _u16(record.type, "type"), rclass, record.ttl, _u16(len(record.data), "rdata length")
    )
    out += record.data


def _u16(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value!r} is not a 16-bit unsigned integer")
    return value


def _u15(value: int, what: str) -> int:
    if not 0 <= value < _TOP_BIT:
        raise ValueError(f"{what} {value!r} does not fit in 15 bits")
    return value


def _encode_name(name: str) -> bytes:
    out = bytearray()
    for label in _split_labels(name):
        if not 0 < len(label) <= MAX_LABEL:
            raise ValueError(f"label of {len(label)} bytes in {name!r}")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"name of {len(out)} bytes: {name!r}")
    return bytes(out)


def _split_labels(name: str) -> list[bytes]:
    """The labels of a presentation-form name (``\\DDD`` and ``\\X`` escapes undone)."""
    if not name:
        return []
    labels = [bytearray()]
    i = 0
    while i < len(name):
        char = name[i]
        if char == ".":
            labels.append(bytearray())
        elif char == "\\":
            byte, i = _unescape(name, i)
            labels[-1].append(byte)
        elif ord(char) in _PLAIN:
            labels[-1].append(ord(char))
        else:
            raise ValueError(f"character {char!r} in name {name!r} must be escaped")
        i += 1
    return [bytes(label) for label in labels]


def _unescape(name: str, i: int) -> tuple[int, int]:
    """The byte the escape at ``name[i]`` stands for and the index of its last character:
    ``\\DDD`` (three decimal digits, at most 255) or ``\\X`` (X printable, not a digit)."""
    following = name[i + 1 : i + 2]
    if following.isascii() and following.isdigit():
        digits = name[i + 1 : i + 4]
        if len(digits) == 3 and digits.isascii() and digits.isdigit() and int(digits) <= 0xFF:
            return int(digits), i + 3
    elif following and ord(following) in _ESCAPABLE:
        return ord(following), i + 1
    raise ValueError(f"bad escape at {i} in name {name!r}")


# -- parsing --------------------------------------------------------------------------------


def parse(data: bytes) -> Message:
    """Decode one DNS message; :class:`DnsParseError` for anything malformed."""
    return _Reader(data).message()


class _Reader:
    """A cursor over one message, with the budget of name work it may still spend."""

    __slots__ = ("data", "offset", "steps")

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.offset = 0
        self.steps = MAX_NAME_STEPS

    def message(self) -> Message:
        if len(self.data) < _HEADER.size:
            raise DnsParseError(f"{len(self.data)} bytes is shorter than a DNS header")
        ident, flags, *counts = _HEADER.unpack_from(self.data)
        if sum(counts) > MAX_ENTRIES:
            raise DnsParseError(f"{sum(counts)} entries, more than {MAX_ENTRIES}")
        self.offset = _HEADER.size
        questions = tuple(self.question() for _ in range(counts[0]))
        answers, authorities, additionals = (
            tuple(self.record() for _ in range(count)) for count in counts[1:]
        )
        if self.offset != len(self.data):
            raise DnsParseError(f"{len(self.data) - self.offset} bytes after the last record")
        return Message(ident, flags, questions, answers, authorities, additionals)

    def question(self) -> Question:
        name = self.name()
        qtype, qclass = self.unpack(_FIXED)
        return Question(name, qtype, bool(qclass & _TOP_BIT), qclass & ~_TOP_BIT)

    def record(self) -> Record:
        name = self.name()
        rtype, rclass, ttl, length = self.unpack(_RECORD_FIXED)
        data = self.take(length)
        rclass_value = rclass & ~_TOP_BIT
        expected = _ADDRESS_LENGTHS.get(rtype)
        if expected is not None and rclass_value == CLASS_IN and length != expected:
            raise DnsParseError(f"type {rtype} record of {length} bytes, not {expected}")
        return Record(name, rtype, ttl, data, bool(rclass & _TOP_BIT), rclass_value)

    def unpack(self, layout: struct.Struct) -> tuple[int, ...]:
        return layout.unpack(self.take(layout.size))

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise DnsParseError(f"message ends {end - len(self.data)} bytes early")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def name(self) -> str:
        """Read a name at the cursor, following pointers; the cursor ends after it."""
        labels: list[str] = []
        size = 1  # the root's length octet
        position = self.offset
        floor = position  # a pointer must point before where the current run of labels began
        resume: int | None = None
        data = self.data
        while True:
            self.spend()
            if position >= len(data):
                raise DnsParseError("name runs past the end of the message")
            length = data[position]
            if length >= 0xC0:
                target = self.pointer(position, floor)
                if resume is None:
                    resume = position + 2
                position = floor = target
                continue
            if length > MAX_LABEL:
                raise DnsParseError(f"label type {length >> 6:#04b} is not supported")
            position += 1
            if length == 0:
                break
            label = data[position : position + length]
            if len(label) < length:
                raise DnsParseError("label runs past the end of the message")
            size += length + 1
            if size > MAX_NAME:
                raise DnsParseError(f"name longer than {MAX_NAME} bytes")
            labels.append(_present(label))
            position += length
        self.offset = resume if resume is not None else position
        return ".".join(labels)

    def pointer(self, position: int, floor: int) -> int:
        if position + 1 >= len(self.data):
            raise DnsParseError("compression pointer cut short")
        target = ((self.data[position] & 0x3F) << 8) | self.data[position + 1]
        if not _HEADER.size <= target < floor:
            raise DnsParseError(f"compression pointer to {target} does not point back")
        return target

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise DnsParseError(f"more than {MAX_NAME_STEPS} labels and pointers in names")


def _present(label: bytes) -> str:
    """A label in presentation form."""
    if all(byte in _PLAIN for byte in label):
        return label.decode("ascii")
    return "".join(chr(byte) if byte in _PLAIN else f"\\{byte:03d}" for byte in label)
