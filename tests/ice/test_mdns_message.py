"""The DNS codec of mDNS ICE (ice.mdns.message): known wire forms, hostile inputs, and
Hypothesis properties (derandomized, so CI runs are repeatable):

(i)  every message encodes and parses back to an equal one, with or without name
     compression (the compressor here is the test's own);
(ii) any bytes - random, DNS-shaped, or valid messages mutated - either parse or raise
     DnsParseError, and whatever parses re-encodes to bytes that parse to the same message.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ice.mdns import DnsParseError, MdnsError
from ice.mdns.message import (
    CLASS_ANY,
    CLASS_IN,
    FLAG_AA,
    FLAG_QR,
    MAX_ENTRIES,
    MAX_NAME_STEPS,
    TYPE_A,
    TYPE_AAAA,
    Message,
    Question,
    Record,
    address_record,
    encode,
    parse,
)

IPV4 = bytes([192, 0, 2, 1])
IPV6 = bytes.fromhex("20010db8000000000000000000000001")


def header(flags: int = 0, qd: int = 0, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", 0, flags, qd, an, ns, ar)


# -- known wire forms -----------------------------------------------------------------------


def test_a_query_with_the_unicast_response_bit() -> None:
    message = Message(questions=(Question("a.local", TYPE_A, unicast_response=True),))
    wire = header(qd=1) + b"\x01a\x05local\x00" + b"\x00\x01\x80\x01"
    assert encode(message) == wire
    assert parse(wire) == message


def test_response_with_cache_flush_and_ttl() -> None:
    record = address_record("x.local", "192.0.2.1", 120, cache_flush=True)
    message = Message(flags=FLAG_QR | FLAG_AA, answers=(record,))
    wire = (
        header(FLAG_QR | FLAG_AA, an=1)
        + b"\x01x\x05local\x00"
        + struct.pack("!HHIH", TYPE_A, 0x8001, 120, 4)
        + IPV4
    )
    assert encode(message) == wire
    parsed = parse(wire)
    assert parsed == message
    assert parsed.is_response and parsed.opcode == 0 and parsed.rcode == 0
    assert parsed.answers[0].address == "192.0.2.1"


def test_compressed_names_are_followed() -> None:
    wire = (
        header(FLAG_QR, an=2)
        + b"\x01x\x05local\x00"  # at 12; "local" at 14
        + struct.pack("!HHIH", TYPE_A, 0x8001, 120, 4)
        + IPV4
        + b"\x01y\xc0\x0e"
        + struct.pack("!HHIH", TYPE_AAAA, CLASS_IN, 10, 16)
        + IPV6
    )
    answers = parse(wire).answers
    assert [(r.name, r.address, r.cache_flush) for r in answers] == [
        ("x.local", "192.0.2.1", True),
        ("y.local", "2001:db8::1", False),
    ]


def test_record_addresses() -> None:
    assert address_record("n.local", "2001:DB8::1", 5).address == "2001:db8::1"
    assert address_record("n.local", "2001:DB8::1", 5).type == TYPE_AAAA
    assert Record("n.local", 16, 5, b"\x03abc").address is None
    assert Record("n.local", TYPE_A, 5, b"12345", rclass=3).address is None
    with pytest.raises(ValueError):
        address_record("n.local", "not-an-ip", 5)


def test_names_in_presentation_form_round_trip() -> None:
    name = "a\\.b\\092\\000\\255.local"  # labels b"a.b\\\x00\xff" and b"local"
    wire = encode(Message(questions=(Question(name, TYPE_A),)))
    assert wire[12:] == b"\x06a.b\\\x00\xff\x05local\x00" + b"\x00\x01\x00\x01"
    canonical = "a\\046b\\092\\000\\255.local"  # every escape in \DDD form
    assert parse(wire).questions[0].name == canonical
    assert encode(Message(questions=(Question(canonical, TYPE_A),))) == wire
    assert encode(Message(questions=(Question("\\a.local", TYPE_A),))) == encode(
        Message(questions=(Question("a.local", TYPE_A),))
    )
    assert parse(encode(Message(questions=(Question("", TYPE_A),)))).questions[0].name == ""


@pytest.mark.parametrize(
    "name",
    ["a..local", ".local", "a b.local", "a\\", "\\256.local", "\\1", "a" * 64, "é.local"],
)
def test_encoding_rejects_malformed_names(name: str) -> None:
    with pytest.raises(ValueError):
        encode(Message(questions=(Question(name, TYPE_A),)))


def test_encoding_rejects_names_over_255_bytes() -> None:
    encode(Message(questions=(Question(".".join(["a" * 63] * 3 + ["b" * 61]), TYPE_A),)))
    with pytest.raises(ValueError):
        encode(Message(questions=(Question(".".join(["a" * 63] * 3 + ["b" * 62]), TYPE_A),)))


@pytest.mark.parametrize(
    "message",
    [
        Message(id=0x10000),
        Message(flags=-1),
        Message(questions=(Question("a", 0x10000),)),
        Message(questions=(Question("a", TYPE_A, qclass=0x8000),)),
        Message(answers=(Record("a", TYPE_A, -1, IPV4),)),
        Message(answers=(Record("a", TYPE_A, 2**32, IPV4),)),
        Message(answers=(Record("a", TYPE_A, 1, IPV6),)),
        Message(answers=(Record("a", 16, 1, bytes(0x10000)),)),
    ],
)
def test_encoding_rejects_fields_that_do_not_fit(message: Message) -> None:
    with pytest.raises(ValueError):
        encode(message)


def test_errors_are_of_the_package() -> None:
    assert issubclass(DnsParseError, MdnsError) and issubclass(DnsParseError, ValueError)


# -- hostile and malformed input ------------------------------------------------------------

A_FIXED = struct.pack("!HH", TYPE_A, CLASS_IN)

MALFORMED = {
    "empty": b"",
    "short header": header()[:11],
    "question missing": header(qd=1),
    "name cut": header(qd=1) + b"\x05loc",
    "no root label": header(qd=1) + b"\x01a",
    "fixed part cut": header(qd=1) + b"\x01a\x00\x00\x01\x00",
    "pointer to itself": header(qd=1) + b"\xc0\x0c" + A_FIXED,
    "pointer loop": header(qd=1) + b"\x01a\xc0\x0c" + A_FIXED,
    "forward pointer": header(qd=2) + b"\xc0\x12" + A_FIXED + b"\x01a\x00" + A_FIXED,
    "pointer into the header": header(qd=1) + b"\xc0\x02" + A_FIXED,
    "pointer cut": header(qd=1) + b"\xc0",
    "extended label type": header(qd=1) + b"\x41a\x00" + A_FIXED,
    "reserved label type": header(qd=1) + b"\x80\x00" + A_FIXED,
    "name over 255 bytes": header(qd=1) + (b"\x3f" + b"a" * 63) * 4 + b"\x00" + A_FIXED,
    "rdata cut": header(an=1) + b"\x00" + struct.pack("!HHIH", 16, 1, 0, 5) + b"abc",
    "A of 5 bytes": header(an=1) + b"\x00" + struct.pack("!HHIH", TYPE_A, 1, 0, 5) + b"12345",
    "AAAA of 4 bytes": header(an=1) + b"\x00" + struct.pack("!HHIH", TYPE_AAAA, 1, 0, 4) + IPV4,
    "trailing bytes": header(qd=1) + b"\x00" + A_FIXED + b"\x00",
    "too many entries": header(qd=MAX_ENTRIES, ar=1),
}


@pytest.mark.parametrize("wire", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_raise_parse_errors(wire: bytes) -> None:
    with pytest.raises(DnsParseError):
        parse(wire)


def test_a_long_name_reached_through_pointers_is_bounded_too() -> None:
    long_suffix = (b"\x3f" + b"a" * 63) * 3 + b"\x00"  # 193 bytes at offset 12
    wire = header(qd=2) + long_suffix + A_FIXED + b"\x3f" + b"b" * 63 + b"\xc0\x0c" + A_FIXED
    with pytest.raises(DnsParseError, match="longer than 255"):
        parse(wire)


def test_pointer_chains_exhaust_the_work_budget_quickly() -> None:
    # Question k names the previous question's name by a pointer: resolving all of them
    # takes 1 + 2 + ... steps, far beyond the budget; parsing must give up at it.
    wire = bytearray(header(qd=MAX_ENTRIES) + b"\x00" + A_FIXED)
    previous = 12
    for _ in range(MAX_ENTRIES - 1):
        here = len(wire)
        wire += struct.pack("!H", 0xC000 | previous) + A_FIXED
        previous = here
    with pytest.raises(DnsParseError, match=str(MAX_NAME_STEPS)):
        parse(bytes(wire))


def test_class_bits_of_other_classes_are_kept_apart() -> None:
    wire = header(qd=1, an=1) + b"\x00" + struct.pack("!HH", 255, 0x80FF)
    wire += b"\x00" + struct.pack("!HHIH", TYPE_A, 3, 7, 5) + b"12345"  # class CH: any rdata
    message = parse(wire)
    assert message.questions == (Question("", 255, True, CLASS_ANY),)
    assert message.answers == (Record("", TYPE_A, 7, b"12345", False, 3),)


# -- properties -----------------------------------------------------------------------------

labels = st.binary(min_size=1, max_size=12) | st.binary(min_size=60, max_size=63)
label_lists = st.lists(labels, max_size=3) | st.lists(
    st.binary(min_size=1, max_size=12), max_size=6
)
short_label_lists = st.lists(
    st.sampled_from([b"local", b"a", b"LOCAL", b"x.y", b"\x00"])
    | st.binary(min_size=1, max_size=8),
    max_size=4,
)
names = st.one_of(label_lists, short_label_lists)  # short ones share suffixes: compression
types = st.sampled_from([TYPE_A, TYPE_AAAA, 12, 16, 33, 41, 255]) | st.integers(0, 0xFFFF)
classes = st.sampled_from([CLASS_IN, CLASS_ANY]) | st.integers(0, 0x7FFF)
u16 = st.integers(0, 0xFFFF)


def present(label: bytes) -> str:
    """The test's own presentation form (every byte escaped unless plainly printable)."""
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b not in b".\\" else f"\\{b:03d}" for b in label)


def to_name(label_list: list[bytes]) -> str:
    return ".".join(present(label) for label in label_list)


@st.composite
def records(draw: st.DrawFn) -> tuple[list[bytes], Record]:
    label_list = draw(names)
    rtype, rclass = draw(types), draw(classes)
    size = {TYPE_A: 4, TYPE_AAAA: 16}.get(rtype) if rclass == CLASS_IN else None
    data = draw(st.binary(min_size=size or 0, max_size=size or 40))
    record = Record(
        to_name(label_list),
        rtype,
        draw(st.integers(0, 2**32 - 1)),
        data,
        draw(st.booleans()),
        rclass,
    )
    return label_list, record


@st.composite
def questions(draw: st.DrawFn) -> tuple[list[bytes], Question]:
    label_list = draw(names)
    question = Question(to_name(label_list), draw(types), draw(st.booleans()), draw(classes))
    return label_list, question


Entry = tuple[list[bytes], Question | Record]


@st.composite
def messages(draw: st.DrawFn) -> tuple[Message, list[list[Entry]]]:
    sections: list[list[Entry]] = [draw(st.lists(questions(), max_size=3))]
    sections += [draw(st.lists(records(), max_size=3)) for _ in range(3)]
    message = Message(
        draw(u16),
        draw(u16),
        *(tuple(entry for _, entry in section) for section in sections),  # type: ignore[arg-type]
    )
    return message, sections


def compress(message: Message, sections: list[list[Entry]]) -> bytes:
    """``message`` with each name's longest known suffix written as a pointer."""
    out = bytearray(encode(Message(message.id, message.flags))[:4])
    out += struct.pack("!4H", *(len(section) for section in sections))
    seen: dict[tuple[bytes, ...], int] = {}
    for index, section in enumerate(sections):
        for label_list, entry in section:
            write_name(out, label_list, seen)
            if index == 0:
                assert isinstance(entry, Question)
                out += struct.pack("!HH", entry.type, entry.qclass | (entry.unicast_response << 15))
            else:
                assert isinstance(entry, Record)
                rclass = entry.rclass | (entry.cache_flush << 15)
                out += struct.pack("!HHIH", entry.type, rclass, entry.ttl, len(entry.data))
                out += entry.data
    return bytes(out)


def write_name(out: bytearray, label_list: list[bytes], seen: dict[tuple[bytes, ...], int]) -> None:
    for i in range(len(label_list)):
        suffix = tuple(label_list[i:])
        if suffix in seen:
            out += struct.pack("!H", 0xC000 | seen[suffix])
            return
        if len(out) < 0x3FFF:
            seen[suffix] = len(out)
        out.append(len(label_list[i]))
        out += label_list[i]
    out.append(0)


def check_any_bytes(data: bytes) -> None:
    """The oracle of (ii): parse or DnsParseError; what parses is stable under re-encoding."""
    try:
        message = parse(data)
    except DnsParseError:
        return
    assert parse(encode(message)) == message


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=600))
def test_random_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    check_any_bytes(data)


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(
    flags=u16,
    counts=st.tuples(*(st.integers(0, 4) for _ in range(4))),
    body=st.lists(
        st.sampled_from([b"\x00", b"\xc0\x0c", b"\x05local", b"\x01a", b"\x00\x01\x80\x01"])
        | st.binary(max_size=12),
        max_size=24,
    ),
)
def test_dns_shaped_bytes_parse_or_raise_parse_error(
    flags: int, counts: tuple[int, int, int, int], body: list[bytes]
) -> None:
    check_any_bytes(struct.pack("!6H", 0, flags, *counts) + b"".join(body))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    generated=messages(),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=4),
    cut=st.integers(0, 10**6),
    insert=st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=4)),
    how=st.sampled_from(["flip", "cut", "insert", "all"]),
)
def test_messages_round_trip_and_their_mutations_parse_or_raise_parse_error(
    generated: tuple[Message, list[list[Entry]]],
    flips: list[tuple[int, int]],
    cut: int,
    insert: tuple[int, bytes],
    how: str,
) -> None:
    message, sections = generated
    wire = encode(message)
    assert parse(wire) == message
    compressed = compress(message, sections)
    assert len(compressed) <= len(wire)
    assert parse(compressed) == message

    data = bytearray(compressed)
    if how in ("flip", "all") and data:
        for position, bit in flips:
            data[position % len(data)] ^= 1 << bit
    if how in ("insert", "all"):
        position = insert[0] % (len(data) + 1)
        data[position:position] = insert[1]
    if how in ("cut", "all"):
        del data[cut % (len(data) + 1) :]
    check_any_bytes(bytes(data))
