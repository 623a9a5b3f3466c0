"""Property tests of the STUN codec (Hypothesis, derandomized so that CI runs are repeatable).

(i)  Everything the encoder produces decodes to an equal message, and its integrity and
     fingerprint verify.
(ii) Any bytes at all (random, STUN-shaped, or valid messages mutated by bit flips,
     truncation, insertion and length patching) either decode or raise stun.ParseError; a
     message that decodes can be read completely without any exception, and whether and
     how it decodes does not change under another message type (a differential check
     against anything decode may remember between messages).

The longer, randomized fuzz run of the same oracles is fuzz/fuzz_codec.py.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import stun
from stun import AddressError, Attr, Class, Icmp, Method

TRAILERS = frozenset((Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256, Attr.FINGERPRINT))
KEY = b"property key"
KNOWN = frozenset(int(a) for a in Attr)

# -- strategies of valid values ----------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)

# Hosts in the canonical text form the decoder produces (inet_ntop of the packed address).
ipv4 = st.binary(min_size=4, max_size=4).map(lambda b: socket.inet_ntop(socket.AF_INET, b))
ipv6 = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))
address = st.tuples(st.one_of(ipv4, ipv6), u16)

# Any text but lone surrogates (which have no UTF-8 form); at most 4 bytes a character.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
blob = st.binary(max_size=64)
error_code = st.integers(300, 699)

VALUE_STRATEGIES: dict[Attr, st.SearchStrategy[Any]] = {
    Attr.MAPPED_ADDRESS: address,
    Attr.CHANGE_REQUEST: u32,
    Attr.USERNAME: text,
    Attr.ERROR_CODE: st.tuples(error_code, text),
    Attr.UNKNOWN_ATTRIBUTES: st.lists(u16, max_size=8).map(tuple),
    Attr.CHANNEL_NUMBER: u16,
    Attr.LIFETIME: u32,
    Attr.XOR_PEER_ADDRESS: address,
    Attr.DATA: blob,
    Attr.REALM: text,
    Attr.NONCE: text,
    Attr.XOR_RELAYED_ADDRESS: address,
    Attr.REQUESTED_ADDRESS_FAMILY: u8,
    Attr.EVEN_PORT: st.booleans(),
    Attr.REQUESTED_TRANSPORT: u8,
    Attr.DONT_FRAGMENT: st.just(True),
    Attr.PASSWORD_ALGORITHM: u16,
    Attr.USERHASH: st.binary(min_size=32, max_size=32),
    Attr.XOR_MAPPED_ADDRESS: address,
    Attr.RESERVATION_TOKEN: st.binary(min_size=8, max_size=8),
    Attr.PRIORITY: u32,
    Attr.USE_CANDIDATE: st.just(True),
    Attr.PADDING: blob,
    Attr.RESPONSE_PORT: u16,
    Attr.ADDITIONAL_ADDRESS_FAMILY: u8,
    Attr.ADDRESS_ERROR_CODE: st.builds(AddressError, u8, error_code, text),
    Attr.PASSWORD_ALGORITHMS: st.lists(u16, max_size=6).map(tuple),
    Attr.ALTERNATE_DOMAIN: text,
    Attr.ICMP: st.builds(Icmp, u8, u8, u32),
    Attr.SOFTWARE: text,
    Attr.ALTERNATE_SERVER: address,
    Attr.ICE_CONTROLLED: u64,
    Attr.ICE_CONTROLLING: u64,
    Attr.RESPONSE_ORIGIN: address,
    Attr.OTHER_ADDRESS: address,
}


def test_every_attribute_type_has_a_strategy() -> None:
    assert set(VALUE_STRATEGIES) | TRAILERS == set(Attr)


known_attribute = st.sampled_from(sorted(VALUE_STRATEGIES)).flatmap(
    lambda a: st.tuples(st.just(a), VALUE_STRATEGIES[a])
)
unknown_attribute = st.tuples(u16.filter(lambda t: t not in KNOWN), st.binary(max_size=24))
attribute = st.one_of(known_attribute, known_attribute, known_attribute, unknown_attribute)
attribute_lists = st.lists(attribute, max_size=10)
SHA256_LENGTHS = (16, 20, 24, 28, 32)


def counted(msg: stun.Message) -> list[tuple[int, Any]]:
    return [(t, v) for t, v in msg.attributes if t not in TRAILERS]


# -- (i) encode then decode ------------------------------------------------------------------


@settings(max_examples=2000, deadline=None, derandomize=True, database=None)
@given(
    method=st.integers(0, 0xFFF),
    cls=st.sampled_from(Class),
    tid=st.binary(min_size=12, max_size=12),
    attrs=attribute_lists,
    integrity=st.sampled_from([None, "sha1", "sha256"]),
    sha256_length=st.sampled_from(SHA256_LENGTHS),
    fingerprint=st.booleans(),
    # Keys up to 150 bytes: longer than the 64-byte block, HMAC hashes the key first.
    key=st.one_of(st.binary(max_size=40), st.binary(min_size=60, max_size=150)),
)
def test_encoded_messages_decode_to_equal_ones(
    method: int,
    cls: Class,
    tid: bytes,
    attrs: list[tuple[int, Any]],
    integrity: str | None,
    sha256_length: int,
    fingerprint: bool,
    key: bytes,
) -> None:
    msg = stun.Message(method, cls, tid, attrs)
    options: dict[str, Any] = {
        "integrity_key": key if integrity else None,
        "fingerprint": fingerprint,
        "sha256": integrity == "sha256",
        "sha256_length": sha256_length,
    }
    data = msg.encode(**options)
    assert len(data) % 4 == 0
    assert struct.unpack_from("!H", data, 2)[0] == len(data) - 20

    decoded = stun.decode(data)
    assert decoded.method == method
    assert isinstance(decoded.method, Method) == (method in set(Method))
    assert decoded.cls == cls
    assert decoded.transaction_id == tid
    assert counted(decoded) == attrs
    for attr_type in {t for t, _ in attrs}:
        values = [v for t, v in attrs if t == attr_type]
        assert decoded.get(attr_type) == values[0]
        assert decoded.get_all(attr_type) == values
    required = {t for t, _ in attrs if t < 0x8000 and t not in KNOWN}
    assert set(decoded.unknown_required()) == required

    trailer_types = [t for t, _ in decoded.attributes if t in TRAILERS]
    expected_trailers: list[int] = []
    if integrity == "sha1":
        expected_trailers.append(Attr.MESSAGE_INTEGRITY)
    elif integrity == "sha256":
        expected_trailers.append(Attr.MESSAGE_INTEGRITY_SHA256)
        assert len(decoded.get(Attr.MESSAGE_INTEGRITY_SHA256)) == sha256_length
    if fingerprint:
        expected_trailers.append(Attr.FINGERPRINT)
    assert trailer_types == expected_trailers

    # The MAC and CRC on the wire, recomputed here with hmac and zlib.
    end = len(data) - (8 if fingerprint else 0)
    if integrity is not None:
        size = 20 if integrity == "sha1" else sha256_length
        mac_start = end - size
        covered = data[:2] + struct.pack("!H", end - 20) + data[4 : mac_start - 4]
        digest = hashlib.sha1 if integrity == "sha1" else hashlib.sha256
        assert data[mac_start:end] == hmac.new(key, covered, digest).digest()[:size]
    if fingerprint:
        crc = zlib.crc32(data[:-8]) ^ 0x5354554E
        assert data[-8:] == struct.pack("!HHI", Attr.FINGERPRINT, 4, crc)

    assert decoded.check_integrity(key) == (integrity is not None)
    # (Not key + b"\x00": HMAC pads short keys with zeros, so that is the same key.)
    assert not decoded.check_integrity(key + b"x")
    assert decoded.check_fingerprint() == fingerprint

    # Encoding is deterministic: the decoded message re-encodes to the very same bytes.
    assert decoded.encode(**options) == data
    assert decoded == stun.decode(decoded.encode(**options))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(attrs=attribute_lists, tids=st.lists(st.binary(min_size=12, max_size=12), min_size=2))
def test_same_attributes_in_different_transactions(
    attrs: list[tuple[int, Any]], tids: list[bytes]
) -> None:
    # The same values sent under several transaction ids (as a client retransmits or a
    # server answers many clients) must decode to the same values every time.
    for tid in tids:
        decoded = stun.decode(stun.Message(Method.BINDING, Class.SUCCESS, tid, attrs).encode())
        assert decoded.transaction_id == tid
        assert counted(decoded) == attrs


# -- (ii) robustness ---------------------------------------------------------------------------


def exercise(msg: stun.Message) -> None:
    """Read everything a decoded message offers; none of it may raise."""
    attributes = msg.attributes
    assert all(isinstance(t, int) for t, _ in attributes)
    for attr_type in Attr:
        value = msg.get(attr_type)
        listed = msg.get_all(attr_type)
        if attr_type in (t for t, _ in attributes):
            assert listed
            assert value == listed[0]
        else:
            assert value is None
            assert listed == []
    msg.get(0x0000)
    msg.get(0xFFFF)
    for t, _ in attributes:
        msg.get(t)
    assert isinstance(msg.check_integrity(KEY), bool)
    assert isinstance(msg.check_integrity(b""), bool)
    assert isinstance(msg.check_fingerprint(), bool)
    unknown = msg.unknown_required()
    assert all(t < 0x8000 and t not in KNOWN for t in unknown)
    repr(msg)
    # A message we accepted can be re-encoded, and decodes to the same counted attributes.
    again = stun.decode(msg.encode())
    assert again.method == msg.method
    assert again.cls == msg.cls
    assert again.transaction_id == msg.transaction_id
    assert counted(again) == counted(msg)


def raw_attribute(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) % 4)


def seed_messages() -> list[bytes]:
    tid = bytes(range(12))
    every = [(a, v) for a, v in _one_value_each()]
    seeds = [
        stun.Message(Method.BINDING, Class.REQUEST, tid).encode(),
        stun.Message(Method.ALLOCATE, Class.SUCCESS, tid, every).encode(),
        stun.Message(Method.ALLOCATE, Class.ERROR, tid, every).encode(KEY, fingerprint=True),
        stun.Message(Method.REFRESH, Class.REQUEST, tid, every[:12]).encode(
            KEY, sha256=True, sha256_length=20, fingerprint=True
        ),
        stun.Message(Method.SEND, Class.INDICATION, tid, every[12:]).encode(KEY, sha256=True),
        stun.Message(
            0x0ABC,
            Class.INDICATION,
            tid,
            [(0x0042, b"required"), (0x8042, b"optional"), (Attr.DATA, b"\x00" * 7)],
        ).encode(fingerprint=True),
    ]
    # Trailers followed by attributes that must be ignored.
    signed = stun.Message(Method.BINDING, Class.SUCCESS, tid, every[:5]).encode(KEY)
    tail = raw_attribute(Attr.SOFTWARE, b"late") + raw_attribute(Attr.FINGERPRINT, bytes(4))
    body = signed + tail
    seeds.append(body[:2] + struct.pack("!H", len(body) - 20) + body[4:])
    return seeds


def _one_value_each() -> list[tuple[Attr, Any]]:
    return [
        (Attr.MAPPED_ADDRESS, ("192.0.2.1", 3478)),
        (Attr.XOR_MAPPED_ADDRESS, ("2001:db8::1", 3478)),
        (Attr.XOR_PEER_ADDRESS, ("192.0.2.2", 1)),
        (Attr.XOR_RELAYED_ADDRESS, ("2001:db8::2", 2)),
        (Attr.USERNAME, "user"),
        (Attr.REALM, "realm"),
        (Attr.NONCE, "obMatJos2AAABnonce"),
        (Attr.ERROR_CODE, (438, "Stale Nonce")),
        (Attr.UNKNOWN_ATTRIBUTES, (0x0042, 0x0043)),
        (Attr.PASSWORD_ALGORITHMS, (1, 2)),
        (Attr.PASSWORD_ALGORITHM, 2),
        (Attr.USERHASH, bytes(32)),
        (Attr.ADDRESS_ERROR_CODE, (2, 440, "no v6")),
        (Attr.ICMP, (3, 4, 1280)),
        (Attr.EVEN_PORT, True),
        (Attr.CHANNEL_NUMBER, 0x4001),
        (Attr.LIFETIME, 600),
        (Attr.REQUESTED_TRANSPORT, 17),
        (Attr.DONT_FRAGMENT, True),
        (Attr.RESERVATION_TOKEN, bytes(8)),
        (Attr.PRIORITY, 12345),
        (Attr.USE_CANDIDATE, True),
        (Attr.ICE_CONTROLLING, 99),
        (Attr.SOFTWARE, "software"),
        (Attr.ALTERNATE_SERVER, ("2001:db8::3", 3478)),
        (Attr.CHANGE_REQUEST, 6),
        (Attr.RESPONSE_PORT, 5000),
        (Attr.PADDING, bytes(5)),
        (Attr.REQUESTED_ADDRESS_FAMILY, 2),
        (Attr.ADDITIONAL_ADDRESS_FAMILY, 2),
        (Attr.ALTERNATE_DOMAIN, "example.org"),
        (Attr.RESPONSE_ORIGIN, ("192.0.2.4", 3479)),
        (Attr.OTHER_ADDRESS, ("192.0.2.5", 3480)),
        (Attr.DATA, b"payload"),
    ]


SEEDS = seed_messages()


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> tuple[bytes, bytes]:
    """A valid message and a mutation of it: bit flips, byte sets, insertion, deletion,
    truncation, and often a length field patched back to agree with the new size."""
    original = draw(base)
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "length")))
        if op == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(u8)
        elif op == "insert":
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.sampled_from([b"\x00", b"\x00" * 4, b"\xff" * 4])) + draw(
                st.binary(max_size=8)
            )
        elif op == "delete" and data:
            pos = draw(st.integers(0, len(data) - 1))
            del data[pos : pos + draw(st.sampled_from([1, 2, 4, 8]))]
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "length" and len(data) >= 4:
            data[2:4] = struct.pack("!H", draw(u16))
    if len(data) >= 20 and draw(st.booleans()):
        data[2:4] = struct.pack("!H", (len(data) - 20) & 0xFFFF)
    return original, bytes(data)


attribute_types = st.one_of(st.sampled_from(sorted(KNOWN)), u16)


@st.composite
def stun_shaped(draw: st.DrawFn) -> bytes:
    """A correct header and attribute layout around arbitrary attribute values."""
    mtype = draw(st.integers(0, 0x3FFF))
    attrs = draw(st.lists(st.tuples(attribute_types, st.binary(max_size=40)), max_size=8))
    body = b"".join(raw_attribute(t, v) for t, v in attrs)
    return (
        struct.pack("!HHI", mtype, len(body), stun.MAGIC_COOKIE)
        + draw(st.binary(min_size=12, max_size=12))
        + body
    )


def generated_messages() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda method, cls, attrs, mode: stun.Message(method, cls, bytes(12), attrs).encode(
            KEY if mode else None, fingerprint=mode != 1, sha256=mode == 2
        ),
        st.integers(0, 0xFFF),
        st.sampled_from(Class),
        st.lists(attribute, max_size=5),
        st.integers(0, 2),
    )


inputs = st.one_of(
    st.binary(max_size=80).map(lambda b: (b"", b)),
    stun_shaped().map(lambda b: (b"", b)),
    mutated(st.sampled_from(SEEDS)),
    mutated(st.sampled_from(SEEDS)),
    mutated(generated_messages()),
)


def retyped(data: bytes, mtype: int) -> bytes:
    """``data`` with the 14 message type bits replaced (the two leading bits are kept)."""
    if len(data) < 2:
        return data
    return bytes(((data[0] & 0xC0) | (mtype >> 8), mtype & 0xFF)) + data[2:]


Outcome = tuple[bytes, list[tuple[int, Any]], list[int]] | None


def outcome(data: bytes) -> Outcome:
    """What decode makes of ``data``, apart from method and class: None for a ParseError."""
    try:
        msg = stun.decode(data)
    except stun.ParseError:
        return None
    return msg.transaction_id, msg.attributes, sorted(msg.unknown_required())


@settings(
    max_examples=10_000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=inputs, other_type=st.integers(0, 0x3FFF))
def test_decode_accepts_or_raises_parse_error(case: tuple[bytes, bytes], other_type: int) -> None:
    original, data = case
    if original:
        # Decode the valid message first, so that anything decode remembers from one
        # message is in place when the mutated one arrives.
        exercise(stun.decode(original))
    try:
        msg = stun.decode(data)
    except stun.ParseError:
        event("rejected")
        result: Outcome = None
    else:
        event("decoded")
        exercise(msg)
        result = msg.transaction_id, msg.attributes, sorted(msg.unknown_required())
    # Differential check: whether a message is valid, and what it holds, never depends on
    # its method and class. Under a message type drawn at random, nothing decode may have
    # remembered from earlier messages applies, so both answers must agree.
    assert outcome(retyped(data, other_type)) == result


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(data=stun_shaped())
def test_stun_shaped_input_from_bytearray_and_memoryview(data: bytes) -> None:
    # The same outcome whatever the buffer type, and a decoded message does not change
    # when the caller reuses its receive buffer afterwards.
    try:
        reference: stun.Message | None = stun.decode(data)
    except stun.ParseError:
        reference = None
    if reference is None:
        for variant in (bytearray(data), memoryview(data)):
            with pytest.raises(stun.ParseError):
                stun.decode(variant)
        return
    expected = reference.attributes
    buffer = bytearray(data)
    msg = stun.decode(buffer)
    assert msg.attributes == expected
    buffer[20:] = bytes(len(buffer) - 20)
    buffer[8:20] = b"\xff" * 12
    assert msg.attributes == expected
    assert msg.transaction_id == reference.transaction_id
    for attr_type, _ in expected:
        assert msg.get(attr_type) == reference.get(attr_type)
