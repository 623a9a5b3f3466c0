"""The STUN codec attribute by attribute: values, malformed input, header and ordering rules.

Messages that the encoder would never produce are written by hand with :func:`raw_message`
(attributes as raw type/value pairs, zero padding, a correct length field) and patched
where a test needs a broken header.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct
import zlib
from typing import Any

import pytest

import stun
from stun import AddressError, Attr, Class, Icmp, Method
from stun.auth import _CACHE_LIMIT
from stun.framing import StreamFramer

TID = bytes.fromhex("0102030405060708090a0b0c")
COOKIE = bytes.fromhex("2112a442")
KEY = b"a shared secret"
FINGERPRINT_XOR = 0x5354554E


def tlv(attr_type: int, value: bytes) -> bytes:
    """One attribute: header, value, zero padding to a multiple of 4."""
    return struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) % 4)


def raw_message(attrs: list[tuple[int, bytes]], mtype: int = 0x0001, tid: bytes = TID) -> bytes:
    body = b"".join(tlv(t, v) for t, v in attrs)
    return struct.pack("!HH", mtype, len(body)) + COOKIE + tid + body


def append_raw(data: bytes, *attrs: tuple[int, bytes]) -> bytes:
    """``data`` with raw attributes appended and the header length patched to match."""
    out = bytearray(data) + b"".join(tlv(t, v) for t, v in attrs)
    out[2:4] = struct.pack("!H", len(out) - 20)
    return bytes(out)


def with_length(data: bytes, length: int) -> bytes:
    return data[:2] + struct.pack("!H", length) + data[4:]


def sha1_mac_attr(data: bytes, key: bytes) -> bytes:
    """MESSAGE-INTEGRITY appended to ``data`` (length patched to cover it)."""
    covered = with_length(data, len(data) - 20 + 24)
    return covered + tlv(Attr.MESSAGE_INTEGRITY, hmac.new(key, covered, hashlib.sha1).digest())


def sha256_mac_attr(data: bytes, key: bytes, size: int = 32) -> bytes:
    covered = with_length(data, len(data) - 20 + 4 + size)
    mac = hmac.new(key, covered, hashlib.sha256).digest()[:size]
    return covered + tlv(Attr.MESSAGE_INTEGRITY_SHA256, mac)


def fingerprint_attr(data: bytes) -> bytes:
    covered = with_length(data, len(data) - 20 + 8)
    crc = zlib.crc32(covered) ^ FINGERPRINT_XOR
    return covered + tlv(Attr.FINGERPRINT, struct.pack("!I", crc))


def roundtrip(attr: int, value: Any, tid: bytes = TID) -> stun.Message:
    data = stun.Message(Method.BINDING, Class.SUCCESS, tid, [(attr, value)]).encode()
    return stun.decode(data)


# -- every attribute type: encode, decode, same value ----------------------------------------

# Representative values, decoded form expected equal to the encoded one.
VALUES: dict[Attr, list[Any]] = {
    Attr.MAPPED_ADDRESS: [("192.0.2.1", 32853), ("2001:db8::1", 1), ("0.0.0.0", 0)],
    Attr.CHANGE_REQUEST: [
        stun.ChangeRequest.CHANGE_IP | stun.ChangeRequest.CHANGE_PORT,
        stun.ChangeRequest.CHANGE_PORT,
        0,
    ],
    Attr.USERNAME: ["evtj:h6vY", "", "\u30de\u30c8\u30ea\u30c3\u30af\u30b9", "x" * 508],
    Attr.ERROR_CODE: [(401, "Unauthorized"), (300, ""), (699, "r\u00e9ason"), (420, "x" * 763)],
    Attr.UNKNOWN_ATTRIBUTES: [(0x0002, 0x7FFF, 0x0000), (), (0x1234,)],
    Attr.CHANNEL_NUMBER: [0x4000, 0x4FFF],
    Attr.LIFETIME: [600, 0, 0xFFFFFFFF],
    Attr.XOR_PEER_ADDRESS: [("203.0.113.5", 49152), ("2001:db8:1:2:3:4:5:6", 65535)],
    Attr.DATA: [b"", b"\x00\x01\x02", bytes(range(256))],
    Attr.REALM: ["example.org", ""],
    Attr.NONCE: ["f//499k954d6OL34oL9FSTvy64sA", "n" * 763],
    Attr.XOR_RELAYED_ADDRESS: [("198.51.100.7", 50000), ("::", 3478)],
    Attr.REQUESTED_ADDRESS_FAMILY: [1, 2],
    Attr.EVEN_PORT: [True, False],
    Attr.REQUESTED_TRANSPORT: [17, 6],
    Attr.DONT_FRAGMENT: [True],
    Attr.PASSWORD_ALGORITHM: [stun.PasswordAlgorithm.SHA256, stun.PasswordAlgorithm.MD5, 0xFFFF],
    Attr.USERHASH: [bytes(range(32))],
    Attr.XOR_MAPPED_ADDRESS: [("192.0.2.1", 32853), ("::ffff:192.0.2.1", 7), ("fe80::1", 9)],
    Attr.RESERVATION_TOKEN: [b"\x01\x02\x03\x04\x05\x06\x07\x08"],
    Attr.PRIORITY: [0x6E0001FF, 0, 0xFFFFFFFF],
    Attr.USE_CANDIDATE: [True],
    Attr.PADDING: [b"", bytes(13)],
    Attr.RESPONSE_PORT: [3478, 0xFFFF],
    Attr.ADDITIONAL_ADDRESS_FAMILY: [2],
    Attr.ADDRESS_ERROR_CODE: [
        AddressError(2, 440, "Address Family not Supported"),
        AddressError(1, 508, ""),
    ],
    Attr.PASSWORD_ALGORITHMS: [(1, 2), (2,), (), (0xFFFF, 1, 2)],
    Attr.ALTERNATE_DOMAIN: ["turn.example.org", "d" * 255],
    Attr.ICMP: [Icmp(3, 4, 1280), Icmp(0, 0, 0), Icmp(255, 255, 0xFFFFFFFF)],
    Attr.SOFTWARE: ["icestack 0.1", "\u00e9" * 300],
    Attr.ALTERNATE_SERVER: [("192.0.2.2", 3478), ("2001:db8::2", 5349)],
    Attr.ICE_CONTROLLED: [0x932FF9B151263B36, 0, 2**64 - 1],
    Attr.ICE_CONTROLLING: [1, 2**63],
    Attr.RESPONSE_ORIGIN: [("192.0.2.3", 3478)],
    Attr.OTHER_ADDRESS: [("2001:db8::3", 3479)],
}
TRAILERS = {Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256, Attr.FINGERPRINT}


def test_every_attribute_type_has_a_case() -> None:
    assert set(VALUES) | TRAILERS == set(Attr)


@pytest.mark.parametrize(
    ("attr", "value"),
    [(attr, value) for attr, values in VALUES.items() for value in values],
    ids=lambda x: x.name if isinstance(x, Attr) else None,
)
def test_attribute_roundtrip(attr: Attr, value: Any) -> None:
    msg = roundtrip(attr, value)
    decoded = msg.get(attr)
    assert decoded == value
    assert msg.attributes == [(attr, value)]
    assert msg.get_all(attr) == [value]
    assert attr in msg
    # A second, different transaction id must not change the decoded value (XOR types too).
    assert roundtrip(attr, value, tid=bytes(range(100, 112))).get(attr) == value


def test_decoded_value_types() -> None:
    assert isinstance(
        roundtrip(Attr.ADDRESS_ERROR_CODE, (2, 440, "x")).get(Attr.ADDRESS_ERROR_CODE), AddressError
    )
    assert roundtrip(Attr.ADDRESS_ERROR_CODE, (2, 440, "x")).get(
        Attr.ADDRESS_ERROR_CODE
    ) == AddressError(family=2, code=440, reason="x")
    icmp = roundtrip(Attr.ICMP, (3, 4, 1280)).get(Attr.ICMP)
    assert isinstance(icmp, Icmp)
    assert (icmp.type, icmp.code, icmp.data) == (3, 4, 1280)
    assert roundtrip(Attr.USE_CANDIDATE, True).get(Attr.USE_CANDIDATE) is True
    assert roundtrip(Attr.DONT_FRAGMENT, True).get(Attr.DONT_FRAGMENT) is True
    assert roundtrip(Attr.EVEN_PORT, True).get(Attr.EVEN_PORT) is True
    assert roundtrip(Attr.EVEN_PORT, False).get(Attr.EVEN_PORT) is False
    algorithms = roundtrip(Attr.PASSWORD_ALGORITHMS, [1, 2]).get(Attr.PASSWORD_ALGORITHMS)
    assert algorithms == (1, 2)
    assert isinstance(algorithms, tuple)
    unknown = roundtrip(Attr.UNKNOWN_ATTRIBUTES, [0x1A, 0x1B]).get(Attr.UNKNOWN_ATTRIBUTES)
    assert unknown == (0x1A, 0x1B)
    assert isinstance(unknown, tuple)
    error = roundtrip(Attr.ERROR_CODE, (438, "Stale Nonce")).get(Attr.ERROR_CODE)
    assert error == (438, "Stale Nonce")
    assert isinstance(roundtrip(Attr.PRIORITY, 5).get(Attr.PRIORITY), int)
    assert isinstance(roundtrip(Attr.USERNAME, "u").get(Attr.USERNAME), str)
    assert isinstance(roundtrip(Attr.DATA, b"d").get(Attr.DATA), bytes)


# Wire bytes of attribute values, from the RFC layouts.
WIRE: list[tuple[Attr, Any, str]] = [
    (Attr.MAPPED_ADDRESS, ("192.0.2.1", 32853), "0001 8055 c0000201"),
    (Attr.MAPPED_ADDRESS, ("2001:db8::1", 1), "0002 0001 20010db8000000000000000000000001"),
    # x-port = port ^ 0x2112, x-address = address ^ magic cookie (IPv4).
    (Attr.XOR_MAPPED_ADDRESS, ("192.0.2.1", 32853), "0001 a147 e112a643"),
    # IPv6: address ^ (magic cookie || transaction id 0102...0c).
    (Attr.XOR_PEER_ADDRESS, ("2001:db8::1", 1), "0002 2113 0113a9fa 01020304 05060708 090a0b0d"),
    (Attr.ERROR_CODE, (401, "Unauthorized"), "00000401" + b"Unauthorized".hex()),
    (Attr.ERROR_CODE, (699, ""), "00000663"),
    (Attr.ADDRESS_ERROR_CODE, (2, 440, "x"), "02000428 78"),
    (Attr.UNKNOWN_ATTRIBUTES, (1, 2, 0x8000), "0001 0002 8000"),
    (Attr.CHANNEL_NUMBER, 0x4001, "4001 0000"),
    (Attr.RESPONSE_PORT, 3478, "0d96 0000"),
    (Attr.LIFETIME, 600, "00000258"),
    (Attr.REQUESTED_TRANSPORT, 17, "11000000"),
    (Attr.REQUESTED_ADDRESS_FAMILY, 2, "02000000"),
    (Attr.EVEN_PORT, True, "80"),
    (Attr.EVEN_PORT, False, "00"),
    (Attr.DONT_FRAGMENT, True, ""),
    (Attr.USE_CANDIDATE, True, ""),
    (Attr.PASSWORD_ALGORITHM, 2, "0002 0000"),
    (Attr.PASSWORD_ALGORITHMS, (1, 2), "0001 0000 0002 0000"),
    (Attr.ICMP, (3, 4, 1280), "0000 03 04 00000500"),
    (Attr.ICE_CONTROLLING, 0x0102030405060708, "0102030405060708"),
    (Attr.CHANGE_REQUEST, 6, "00000006"),
    (Attr.USERNAME, "\u00e9", "c3a9"),
]


@pytest.mark.parametrize(("attr", "value", "wire"), WIRE, ids=[w[0].name for w in WIRE])
def test_attribute_wire_format(attr: Attr, value: Any, wire: str) -> None:
    expected = bytes.fromhex(wire)
    data = stun.Message(Method.BINDING, Class.REQUEST, TID, [(attr, value)]).encode()
    assert data[20:] == tlv(attr, expected)
    assert stun.decode(raw_message([(attr, expected)])).get(attr) == value


def test_reserved_bits_and_padding_are_ignored() -> None:
    # Nonzero padding, a nonzero reserved first byte of an address, reserved bits of
    # ERROR-CODE, the low bits of EVEN-PORT and the RFFU bytes of CHANNEL-NUMBER.
    data = bytearray(
        raw_message(
            [
                (Attr.USERNAME, b"abc"),
                (Attr.MAPPED_ADDRESS, bytes.fromhex("ff01 8055 c0000201")),
                (Attr.ERROR_CODE, bytes.fromhex("fffffc01") + b"no"),
                (Attr.EVEN_PORT, b"\x7f"),
                (Attr.CHANNEL_NUMBER, bytes.fromhex("4001ffff")),
            ]
        )
    )
    data[27] = 0xFF  # USERNAME padding byte
    msg = stun.decode(bytes(data))
    assert msg.get(Attr.USERNAME) == "abc"
    assert msg.get(Attr.MAPPED_ADDRESS) == ("192.0.2.1", 32853)
    assert msg.get(Attr.ERROR_CODE) == (401, "no")
    assert msg.get(Attr.EVEN_PORT) is False
    assert msg.get(Attr.CHANNEL_NUMBER) == 0x4001


def test_invalid_utf8_text_is_kept_losslessly() -> None:
    msg = stun.decode(raw_message([(Attr.SOFTWARE, b"ok\xff\xfe")]))
    software = msg.get(Attr.SOFTWARE)
    assert isinstance(software, str)
    assert software.startswith("ok")
    again = stun.decode(msg.encode())
    assert again.raw is not None
    assert again.raw[24:28] == b"ok\xff\xfe"


# -- malformed attribute values --------------------------------------------------------------

MALFORMED: list[tuple[str, int, bytes]] = [
    # addresses: wrong length, family/length mismatch, unknown family
    ("mapped-7", Attr.MAPPED_ADDRESS, bytes.fromhex("0001 8055 c00002")),
    ("mapped-12", Attr.MAPPED_ADDRESS, bytes.fromhex("0001 8055 c0000201 00000000")),
    ("mapped-v4-20", Attr.MAPPED_ADDRESS, bytes.fromhex("0001 8055") + bytes(16)),
    ("mapped-v6-8", Attr.MAPPED_ADDRESS, bytes.fromhex("0002 8055 c0000201")),
    ("mapped-family-0", Attr.MAPPED_ADDRESS, bytes.fromhex("0000 8055 c0000201")),
    ("mapped-family-3", Attr.MAPPED_ADDRESS, bytes.fromhex("0003 8055 c0000201")),
    ("xor-mapped-v6-8", Attr.XOR_MAPPED_ADDRESS, bytes.fromhex("0002 a147 e112a643")),
    ("xor-mapped-v4-20", Attr.XOR_MAPPED_ADDRESS, bytes.fromhex("0001 a147") + bytes(16)),
    ("xor-mapped-4", Attr.XOR_MAPPED_ADDRESS, bytes.fromhex("0001 a147")),
    ("xor-peer-v6-19", Attr.XOR_PEER_ADDRESS, bytes.fromhex("0002 a147") + bytes(15)),
    ("xor-relayed-family-9", Attr.XOR_RELAYED_ADDRESS, bytes.fromhex("0009 a147 e112a643")),
    ("alternate-server-v6-8", Attr.ALTERNATE_SERVER, bytes.fromhex("0002 0d96 c0000201")),
    ("response-origin-0", Attr.RESPONSE_ORIGIN, b""),
    ("other-address-v4-20", Attr.OTHER_ADDRESS, bytes.fromhex("0001 0d96") + bytes(16)),
    # ERROR-CODE: class outside 3..6, number >= 100, too short
    ("error-class-2", Attr.ERROR_CODE, bytes.fromhex("00000263")),
    ("error-class-7", Attr.ERROR_CODE, bytes.fromhex("00000700")),
    ("error-class-0", Attr.ERROR_CODE, bytes.fromhex("00000000")),
    ("error-number-100", Attr.ERROR_CODE, bytes.fromhex("00000464") + b"x"),
    ("error-number-255", Attr.ERROR_CODE, bytes.fromhex("000004ff")),
    ("error-3-bytes", Attr.ERROR_CODE, bytes.fromhex("000004")),
    ("error-reason-764", Attr.ERROR_CODE, bytes.fromhex("00000401") + b"r" * 764),
    ("address-error-class-7", Attr.ADDRESS_ERROR_CODE, bytes.fromhex("01000700")),
    ("address-error-number-100", Attr.ADDRESS_ERROR_CODE, bytes.fromhex("02000464")),
    ("address-error-3-bytes", Attr.ADDRESS_ERROR_CODE, bytes.fromhex("020004")),
    # integrity / fingerprint sizes
    ("mi-19", Attr.MESSAGE_INTEGRITY, bytes(19)),
    ("mi-21", Attr.MESSAGE_INTEGRITY, bytes(21)),
    ("mi-0", Attr.MESSAGE_INTEGRITY, b""),
    ("mi256-12", Attr.MESSAGE_INTEGRITY_SHA256, bytes(12)),
    ("mi256-18", Attr.MESSAGE_INTEGRITY_SHA256, bytes(18)),
    ("mi256-30", Attr.MESSAGE_INTEGRITY_SHA256, bytes(30)),
    ("mi256-36", Attr.MESSAGE_INTEGRITY_SHA256, bytes(36)),
    ("mi256-0", Attr.MESSAGE_INTEGRITY_SHA256, b""),
    ("fingerprint-3", Attr.FINGERPRINT, bytes(3)),
    ("fingerprint-8", Attr.FINGERPRINT, bytes(8)),
    # fixed sizes
    ("userhash-31", Attr.USERHASH, bytes(31)),
    ("userhash-33", Attr.USERHASH, bytes(33)),
    ("priority-3", Attr.PRIORITY, bytes(3)),
    ("priority-8", Attr.PRIORITY, bytes(8)),
    ("lifetime-2", Attr.LIFETIME, bytes(2)),
    ("change-request-0", Attr.CHANGE_REQUEST, b""),
    ("ice-controlled-4", Attr.ICE_CONTROLLED, bytes(4)),
    ("ice-controlling-9", Attr.ICE_CONTROLLING, bytes(9)),
    ("use-candidate-4", Attr.USE_CANDIDATE, bytes(4)),
    ("dont-fragment-1", Attr.DONT_FRAGMENT, bytes(1)),
    ("even-port-0", Attr.EVEN_PORT, b""),
    ("even-port-2", Attr.EVEN_PORT, bytes(2)),
    ("channel-number-2", Attr.CHANNEL_NUMBER, bytes.fromhex("4000")),
    ("response-port-8", Attr.RESPONSE_PORT, bytes(8)),
    ("requested-transport-1", Attr.REQUESTED_TRANSPORT, b"\x11"),
    ("requested-family-8", Attr.REQUESTED_ADDRESS_FAMILY, bytes(8)),
    ("additional-family-1", Attr.ADDITIONAL_ADDRESS_FAMILY, b"\x02"),
    ("reservation-token-4", Attr.RESERVATION_TOKEN, bytes(4)),
    ("icmp-4", Attr.ICMP, bytes(4)),
    ("icmp-12", Attr.ICMP, bytes(12)),
    # variable sizes with a maximum
    ("username-509", Attr.USERNAME, b"u" * 509),
    ("realm-764", Attr.REALM, b"r" * 764),
    ("nonce-764", Attr.NONCE, b"n" * 764),
    ("software-764", Attr.SOFTWARE, b"s" * 764),
    ("alternate-domain-256", Attr.ALTERNATE_DOMAIN, b"d" * 256),
    # lists
    ("unknown-attributes-odd", Attr.UNKNOWN_ATTRIBUTES, bytes.fromhex("000100")),
    ("password-algorithms-3", Attr.PASSWORD_ALGORITHMS, bytes.fromhex("000100")),
    ("password-algorithms-6", Attr.PASSWORD_ALGORITHMS, bytes.fromhex("0001 0000 0002")),
    ("password-algorithms-params-missing", Attr.PASSWORD_ALGORITHMS, bytes.fromhex("0001 0004")),
    # the first entry's 8 parameter bytes would run past the value
    (
        "password-algorithms-params-past-end",
        Attr.PASSWORD_ALGORITHMS,
        bytes.fromhex("0001 0008 00000000"),
    ),
    # 5 parameter bytes padded to 8, but the value stops after 5
    (
        "password-algorithms-params-unpadded",
        Attr.PASSWORD_ALGORITHMS,
        bytes.fromhex("0001 0005 0000000000"),
    ),
    # the second entry announces 1 parameter byte that is not there
    (
        "password-algorithms-second-short",
        Attr.PASSWORD_ALGORITHMS,
        bytes.fromhex("0001 0000 0002 0001"),
    ),
    ("password-algorithm-2", Attr.PASSWORD_ALGORITHM, bytes.fromhex("0002")),
    ("password-algorithm-params-missing", Attr.PASSWORD_ALGORITHM, bytes.fromhex("0002 0004")),
    ("password-algorithm-extra", Attr.PASSWORD_ALGORITHM, bytes.fromhex("0002 0000 00000000")),
]


@pytest.mark.parametrize(
    ("attr", "value"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_value_is_a_parse_error(attr: int, value: bytes) -> None:
    data = raw_message([(Attr.SOFTWARE, b"before"), (attr, value)])
    with pytest.raises(stun.ParseError):
        stun.decode(data)


def test_parse_error_is_a_stun_error_and_value_error() -> None:
    with pytest.raises(stun.StunError):
        stun.decode(b"")
    assert issubclass(stun.ParseError, stun.StunError)


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        (Attr.PASSWORD_ALGORITHMS, bytes.fromhex("0001 0001 aa000000 0002 0000")),
        (Attr.PASSWORD_ALGORITHMS, bytes.fromhex("0003 0004 aabbccdd")),
        (Attr.UNKNOWN_ATTRIBUTES, b""),
        (Attr.MESSAGE_INTEGRITY_SHA256, bytes(16)),
        (Attr.MESSAGE_INTEGRITY_SHA256, bytes(28)),
        (Attr.ERROR_CODE, bytes.fromhex("00000663")),
        (Attr.ERROR_CODE, bytes.fromhex("0000032a")),
        (Attr.USERNAME, b"u" * 508),
        (Attr.ALTERNATE_DOMAIN, b"d" * 255),
    ],
)
def test_well_formed_edge_values_decode(attr: int, value: bytes) -> None:
    stun.decode(raw_message([(attr, value)]))


def test_password_algorithms_with_parameters() -> None:
    # Each entry: algorithm, parameter length, parameters padded to a multiple of 4.
    value = bytes.fromhex("0001 0001 aa000000 0002 0000")
    assert stun.decode(raw_message([(Attr.PASSWORD_ALGORITHMS, value)])).get(
        Attr.PASSWORD_ALGORITHMS
    ) == (1, 2)


# -- header ------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_bits", [0x4000, 0x8000, 0xC000])
def test_leading_bits_must_be_zero(first_bits: int) -> None:
    data = raw_message([], mtype=0x0001 | first_bits)
    with pytest.raises(stun.ParseError):
        stun.decode(data)


@pytest.mark.parametrize("size", range(20))
def test_shorter_than_a_header(size: int) -> None:
    data = raw_message([(Attr.PRIORITY, bytes(4))])[:size]
    with pytest.raises(stun.ParseError):
        stun.decode(data)


def test_length_not_a_multiple_of_four() -> None:
    # Length 2 and exactly 2 bytes after the header: consistent but not aligned.
    data = struct.pack("!HH", 0x0001, 2) + COOKIE + TID + b"\0\0"
    with pytest.raises(stun.ParseError):
        stun.decode(data)
    data = struct.pack("!HH", 0x0001, 6) + COOKIE + TID + bytes.fromhex("8022 0002 6869")
    with pytest.raises(stun.ParseError):
        stun.decode(data)


@pytest.mark.parametrize("delta", [-8, -4, 4, 8, 0x100])
def test_length_must_match_the_datagram(delta: int) -> None:
    data = raw_message([(Attr.PRIORITY, bytes(4)), (Attr.SOFTWARE, b"abcd")])
    length = len(data) - 20 + delta
    with pytest.raises(stun.ParseError):
        stun.decode(with_length(data, length))


def test_extra_bytes_after_the_message_are_rejected() -> None:
    data = raw_message([(Attr.PRIORITY, bytes(4))])
    stun.decode(data)
    with pytest.raises(stun.ParseError):
        stun.decode(data + bytes(4))
    with pytest.raises(stun.ParseError):
        stun.decode(data[:-4])


@pytest.mark.parametrize("cookie", ["2112a443", "00000000", "42a41221", "ffffffff"])
def test_wrong_magic_cookie(cookie: str) -> None:
    data = raw_message([(Attr.PRIORITY, bytes(4))])
    with pytest.raises(stun.ParseError):
        stun.decode(data[:4] + bytes.fromhex(cookie) + data[8:])
    # Also when the length does not match either.
    with pytest.raises(stun.ParseError):
        stun.decode(data[:4] + bytes.fromhex(cookie) + data[8:] + bytes(3))


def test_rfc3489_message_is_rejected_as_such() -> None:
    # Classic STUN: a 128-bit transaction id where the magic cookie would be, and a
    # MAPPED-ADDRESS; otherwise a perfectly well-formed message.
    tid128 = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")
    body = tlv(Attr.MAPPED_ADDRESS, bytes.fromhex("0001 0d96 c0000201"))
    data = struct.pack("!HH", 0x0101, len(body)) + tid128 + body
    with pytest.raises(stun.ParseError, match="RFC 3489"):
        stun.decode(data)
    request = struct.pack("!HH", 0x0001, 0) + tid128
    with pytest.raises(stun.ParseError, match="RFC 3489"):
        stun.decode(request)


@pytest.mark.parametrize(
    "attrs",
    [
        [(Attr.SOFTWARE, b"abcd")],
        [(Attr.PRIORITY, bytes(4)), (0x8077, bytes(12))],
        [(Attr.DATA, bytes(100))],
    ],
)
def test_attribute_running_past_the_end(attrs: list[tuple[int, bytes]]) -> None:
    data = raw_message(attrs)
    # Grow the last attribute's length field beyond the message.
    last = len(data) - len(tlv(*attrs[-1]))
    (length,) = struct.unpack_from("!H", data, last + 2)
    for bigger in (length + 1, length + 4, 0xFFFF):
        broken = data[: last + 2] + struct.pack("!H", bigger) + data[last + 4 :]
        with pytest.raises(stun.ParseError):
            stun.decode(broken)


def test_attribute_padding_running_past_the_end() -> None:
    # An aligned message whose last attribute declares 5 value bytes where only 4 remain.
    data = struct.pack("!HH", 0x0001, 8) + COOKIE + TID + bytes.fromhex("8022 0005 61626364")
    with pytest.raises(stun.ParseError):
        stun.decode(data)


def test_garbage_is_a_parse_error() -> None:
    garbage = [b"", b"\x00", b"GET / HTTP/1.1\r\n\r\n", bytes(20), bytes(range(256)), b"\xff" * 40]
    for data in garbage:
        with pytest.raises(stun.ParseError):
            stun.decode(data)


def test_decode_rejects_non_bytes_with_parse_error() -> None:
    with pytest.raises(stun.ParseError):
        stun.decode("not bytes")  # type: ignore[arg-type]
    with pytest.raises(stun.ParseError):
        stun.decode(None)  # type: ignore[arg-type]


def test_empty_message() -> None:
    msg = stun.decode(raw_message([]))
    assert msg.attributes == []
    assert msg.get(Attr.USERNAME) is None
    assert msg.get(Attr.USERNAME, "dflt") == "dflt"
    assert not msg.check_integrity(KEY)
    assert not msg.check_fingerprint()
    assert msg.unknown_required() == []


# -- method and class --------------------------------------------------------------------------

TYPES = [
    (Method.BINDING, Class.REQUEST, 0x0001),
    (Method.BINDING, Class.INDICATION, 0x0011),
    (Method.BINDING, Class.SUCCESS, 0x0101),
    (Method.BINDING, Class.ERROR, 0x0111),
    (Method.ALLOCATE, Class.REQUEST, 0x0003),
    (Method.ALLOCATE, Class.SUCCESS, 0x0103),
    (Method.ALLOCATE, Class.ERROR, 0x0113),
    (Method.REFRESH, Class.REQUEST, 0x0004),
    (Method.SEND, Class.INDICATION, 0x0016),
    (Method.DATA, Class.INDICATION, 0x0017),
    (Method.CREATE_PERMISSION, Class.SUCCESS, 0x0108),
    (Method.CHANNEL_BIND, Class.ERROR, 0x0119),
    (Method.CONNECT, Class.REQUEST, 0x000A),
    (Method.CONNECTION_BIND, Class.SUCCESS, 0x010B),
    (Method.CONNECTION_ATTEMPT, Class.INDICATION, 0x001C),
    (0xFFF, Class.ERROR, 0x3FFF),
    (0xFFF, Class.REQUEST, 0x3EEF),
    (0x080, Class.REQUEST, 0x0200),
    (0x010, Class.INDICATION, 0x0030),
]


@pytest.mark.parametrize(("method", "cls", "mtype"), TYPES)
def test_message_type_bits(method: int, cls: Class, mtype: int) -> None:
    data = stun.Message(method, cls, TID).encode()
    assert data[:2] == struct.pack("!H", mtype)
    msg = stun.decode(raw_message([], mtype=mtype))
    assert msg.method == method
    assert msg.cls == cls


def test_every_message_type_decodes_and_reencodes() -> None:
    for mtype in range(0x4000):
        msg = stun.decode(raw_message([], mtype=mtype))
        assert 0 <= msg.method <= 0xFFF
        assert isinstance(msg.cls, Class)
        assert msg.encode()[:2] == struct.pack("!H", mtype)


def test_unknown_method_decodes_as_an_int() -> None:
    # Method 0x025: M0-M3 = 0x5 in bits 0-3, M4-M6 = 0b010 in bits 5-7; success sets bit 8.
    msg = stun.decode(raw_message([], mtype=0x0145))
    assert msg.method == 0x025
    assert not isinstance(msg.method, Method)
    assert msg.cls == Class.SUCCESS
    known = stun.decode(raw_message([], mtype=0x0101))
    assert known.method is Method.BINDING


def test_message_constructor_checks() -> None:
    with pytest.raises(ValueError):
        stun.Message(Method.BINDING, Class.REQUEST, b"short")
    with pytest.raises(ValueError):
        stun.Message(0x1000, Class.REQUEST)
    with pytest.raises(ValueError):
        stun.Message(-1, Class.REQUEST)
    with pytest.raises(ValueError):
        stun.Message(Method.BINDING, 4)
    a = stun.Message(Method.BINDING, Class.REQUEST)
    b = stun.Message(Method.BINDING, Class.REQUEST)
    assert len(a.transaction_id) == 12
    assert a.transaction_id != b.transaction_id


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        (Attr.ERROR_CODE, (299, "x")),
        (Attr.ERROR_CODE, (700, "x")),
        (Attr.XOR_MAPPED_ADDRESS, ("not-an-address", 1)),
        (Attr.MAPPED_ADDRESS, ("192.0.2.1", 65536)),
        (Attr.PRIORITY, 2**32),
        (Attr.USERHASH, bytes(31)),
        (Attr.USERNAME, "u" * 513),
    ],
)
def test_encoder_refuses_invalid_values(attr: Attr, value: Any) -> None:
    with pytest.raises(ValueError):
        stun.Message(Method.BINDING, Class.REQUEST, TID, [(attr, value)]).encode()


def test_attributes_as_mapping() -> None:
    attrs: dict[int, Any] = {Attr.PRIORITY: 7, Attr.USE_CANDIDATE: True}
    msg = stun.Message(Method.BINDING, Class.REQUEST, TID, attrs)
    decoded = stun.decode(msg.encode())
    assert decoded.attributes == [(Attr.PRIORITY, 7), (Attr.USE_CANDIDATE, True)]
    assert decoded == msg


# -- integrity and fingerprint -----------------------------------------------------------------


def base_request() -> stun.Message:
    return stun.Message(
        Method.BINDING,
        Class.REQUEST,
        TID,
        [(Attr.USERNAME, "alice:bob"), (Attr.PRIORITY, 1234), (Attr.ICE_CONTROLLING, 99)],
    )


def test_message_integrity_sha1() -> None:
    data = base_request().encode(integrity_key=KEY)
    msg = stun.decode(data)
    assert len(msg.get(Attr.MESSAGE_INTEGRITY)) == 20
    assert msg.get(Attr.MESSAGE_INTEGRITY_SHA256) is None
    assert msg.check_integrity(KEY)
    assert not msg.check_integrity(KEY + b"!")
    assert not msg.check_fingerprint()
    assert data[-24:-20] == bytes.fromhex("0008 0014")
    expected = hmac.new(KEY, data[:-24], hashlib.sha1).digest()
    assert data[-20:] == expected


def test_message_integrity_sha256_full_by_default() -> None:
    data = base_request().encode(integrity_key=KEY, sha256=True)
    msg = stun.decode(data)
    mac = msg.get(Attr.MESSAGE_INTEGRITY_SHA256)
    assert len(mac) == 32
    assert mac == hmac.new(KEY, data[:-36], hashlib.sha256).digest()
    assert msg.get(Attr.MESSAGE_INTEGRITY) is None
    assert msg.check_integrity(KEY)
    assert not msg.check_integrity(b"other")


@pytest.mark.parametrize("size", [16, 20, 24, 28, 32])
def test_message_integrity_sha256_truncated(size: int) -> None:
    data = base_request().encode(integrity_key=KEY, sha256=True, sha256_length=size)
    msg = stun.decode(data)
    mac = msg.get(Attr.MESSAGE_INTEGRITY_SHA256)
    assert len(mac) == size
    assert mac == hmac.new(KEY, data[: -4 - size], hashlib.sha256).digest()[:size]
    assert msg.check_integrity(KEY)
    assert not msg.check_integrity(b"other")
    # A flipped bit anywhere before the MAC breaks it.
    damaged = bytearray(data)
    damaged[24] ^= 0x20
    assert not stun.decode(bytes(damaged)).check_integrity(KEY)


@pytest.mark.parametrize("size", [0, 12, 15, 18, 30, 33, 36])
def test_message_integrity_sha256_bad_length_refused(size: int) -> None:
    with pytest.raises(ValueError):
        base_request().encode(integrity_key=KEY, sha256=True, sha256_length=size)


@pytest.mark.parametrize("sha256", [False, True])
def test_integrity_and_fingerprint_together(sha256: bool) -> None:
    data = base_request().encode(integrity_key=KEY, fingerprint=True, sha256=sha256)
    msg = stun.decode(data)
    assert msg.check_integrity(KEY)
    assert msg.check_fingerprint()
    assert msg.get(Attr.FINGERPRINT) == zlib.crc32(data[:-8]) ^ FINGERPRINT_XOR
    # The FINGERPRINT covers the MAC: damage the MAC and both fail.
    damaged = bytearray(data)
    damaged[-9] ^= 1
    bad = stun.decode(bytes(damaged))
    assert not bad.check_fingerprint()
    assert not bad.check_integrity(KEY)


def test_fingerprint_alone() -> None:
    data = base_request().encode(fingerprint=True)
    msg = stun.decode(data)
    assert msg.check_fingerprint()
    assert not msg.check_integrity(KEY)
    assert msg.get(Attr.FINGERPRINT) == zlib.crc32(data[:-8]) ^ FINGERPRINT_XOR
    wrong = data[:-4] + struct.pack("!I", msg.get(Attr.FINGERPRINT) ^ 1)
    assert not stun.decode(wrong).check_fingerprint()


def test_integrity_attributes_in_the_list_are_recomputed() -> None:
    msg = stun.Message(
        Method.BINDING,
        Class.REQUEST,
        TID,
        [(Attr.PRIORITY, 1), (Attr.MESSAGE_INTEGRITY, bytes(20)), (Attr.FINGERPRINT, 0)],
    )
    plain = stun.decode(msg.encode())
    assert [t for t, _ in plain.attributes] == [Attr.PRIORITY]
    signed = stun.decode(msg.encode(integrity_key=KEY, fingerprint=True))
    assert signed.check_integrity(KEY)
    assert signed.check_fingerprint()
    assert signed.get(Attr.MESSAGE_INTEGRITY) != bytes(20)


def test_built_message_has_no_verifiable_integrity() -> None:
    msg = base_request()
    assert not msg.check_integrity(KEY)
    assert not msg.check_fingerprint()


def test_reencoding_a_decoded_message_recomputes_the_mac() -> None:
    original = stun.decode(base_request().encode(integrity_key=KEY, fingerprint=True))
    new_key = b"another key"
    again = stun.decode(original.encode(integrity_key=new_key, fingerprint=True))
    assert again.check_integrity(new_key)
    assert not again.check_integrity(KEY)
    assert again.check_fingerprint()


# -- RFC 8489 section 9: what counts after MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT ----------


def signed_base() -> bytes:
    return raw_message([(Attr.USERNAME, b"alice"), (Attr.PRIORITY, struct.pack("!I", 7))])


def test_attribute_after_message_integrity_is_ignored() -> None:
    data = append_raw(sha1_mac_attr(signed_base(), KEY), (Attr.SOFTWARE, b"late"))
    msg = stun.decode(data)
    assert msg.get(Attr.SOFTWARE) is None
    assert Attr.SOFTWARE not in msg
    assert msg.get_all(Attr.SOFTWARE) == []
    assert [t for t, _ in msg.attributes] == [
        Attr.USERNAME,
        Attr.PRIORITY,
        Attr.MESSAGE_INTEGRITY,
    ]
    # The MAC still verifies: its length field ends at MESSAGE-INTEGRITY.
    assert msg.check_integrity(KEY)


def test_duplicate_attribute_after_message_integrity_does_not_count() -> None:
    data = append_raw(
        sha1_mac_attr(signed_base(), KEY),
        (Attr.USERNAME, b"mallory"),
        (Attr.PRIORITY, struct.pack("!I", 8)),
    )
    msg = stun.decode(data)
    assert msg.get(Attr.USERNAME) == "alice"
    assert msg.get_all(Attr.USERNAME) == ["alice"]
    assert msg.get(Attr.PRIORITY) == 7
    assert msg.check_integrity(KEY)


def test_fingerprint_after_ignored_attributes_still_counts() -> None:
    signed = append_raw(sha1_mac_attr(signed_base(), KEY), (Attr.SOFTWARE, b"ignored"))
    data = fingerprint_attr(signed)
    msg = stun.decode(data)
    assert msg.get(Attr.SOFTWARE) is None
    assert msg.check_fingerprint()
    assert msg.check_integrity(KEY)
    assert msg.get(Attr.FINGERPRINT) is not None
    assert [t for t, _ in msg.attributes] == [
        Attr.USERNAME,
        Attr.PRIORITY,
        Attr.MESSAGE_INTEGRITY,
        Attr.FINGERPRINT,
    ]


def test_sha256_after_message_integrity_counts_and_is_preferred() -> None:
    # MESSAGE-INTEGRITY with garbage, then a valid MESSAGE-INTEGRITY-SHA256: the SHA-256
    # one is what check_integrity verifies.
    with_bad_sha1 = append_raw(signed_base(), (Attr.MESSAGE_INTEGRITY, bytes(20)))
    data = sha256_mac_attr(with_bad_sha1, KEY)
    msg = stun.decode(data)
    assert msg.get(Attr.MESSAGE_INTEGRITY) == bytes(20)
    assert msg.get(Attr.MESSAGE_INTEGRITY_SHA256) is not None
    assert msg.check_integrity(KEY)

    # The reverse: a valid MESSAGE-INTEGRITY then a wrong MESSAGE-INTEGRITY-SHA256 fails.
    good_sha1 = sha1_mac_attr(signed_base(), KEY)
    data = append_raw(good_sha1, (Attr.MESSAGE_INTEGRITY_SHA256, bytes(32)))
    msg = stun.decode(data)
    assert msg.get(Attr.MESSAGE_INTEGRITY_SHA256) == bytes(32)
    assert not msg.check_integrity(KEY)


def test_both_macs_valid_then_fingerprint() -> None:
    data = fingerprint_attr(sha256_mac_attr(sha1_mac_attr(signed_base(), KEY), KEY, 16))
    msg = stun.decode(data)
    assert [t for t, _ in msg.attributes] == [
        Attr.USERNAME,
        Attr.PRIORITY,
        Attr.MESSAGE_INTEGRITY,
        Attr.MESSAGE_INTEGRITY_SHA256,
        Attr.FINGERPRINT,
    ]
    assert msg.check_integrity(KEY)
    assert msg.check_fingerprint()


def test_message_integrity_after_sha256_is_ignored() -> None:
    data = append_raw(sha256_mac_attr(signed_base(), KEY), (Attr.MESSAGE_INTEGRITY, bytes(20)))
    msg = stun.decode(data)
    assert msg.get(Attr.MESSAGE_INTEGRITY) is None
    assert msg.check_integrity(KEY)
    data = fingerprint_attr(data)
    msg = stun.decode(data)
    assert msg.get(Attr.MESSAGE_INTEGRITY) is None
    assert msg.check_fingerprint()
    assert msg.check_integrity(KEY)


def test_anything_after_sha256_but_fingerprint_is_ignored() -> None:
    data = append_raw(
        sha256_mac_attr(signed_base(), KEY),
        (Attr.XOR_MAPPED_ADDRESS, bytes.fromhex("0001 a147 e112a643")),
        (Attr.MESSAGE_INTEGRITY_SHA256, bytes(32)),
    )
    msg = stun.decode(data)
    assert msg.get(Attr.XOR_MAPPED_ADDRESS) is None
    assert msg.get_all(Attr.MESSAGE_INTEGRITY_SHA256) == [msg.get(Attr.MESSAGE_INTEGRITY_SHA256)]
    assert msg.get(Attr.MESSAGE_INTEGRITY_SHA256) != bytes(32)
    assert msg.check_integrity(KEY)


def test_nothing_counts_after_fingerprint() -> None:
    data = append_raw(
        fingerprint_attr(signed_base()),
        (Attr.SOFTWARE, b"late"),
        (Attr.MESSAGE_INTEGRITY, bytes(20)),
        (Attr.FINGERPRINT, bytes(4)),
    )
    msg = stun.decode(data)
    assert msg.get(Attr.SOFTWARE) is None
    assert msg.get(Attr.MESSAGE_INTEGRITY) is None
    assert not msg.check_integrity(KEY)
    assert msg.check_fingerprint()
    assert msg.get(Attr.FINGERPRINT) != 0
    assert [t for t, _ in msg.attributes] == [Attr.USERNAME, Attr.PRIORITY, Attr.FINGERPRINT]


def test_mac_after_fingerprint_does_not_count() -> None:
    data = sha1_mac_attr(fingerprint_attr(signed_base()), KEY)
    msg = stun.decode(data)
    assert msg.get(Attr.MESSAGE_INTEGRITY) is None
    assert not msg.check_integrity(KEY)
    assert msg.check_fingerprint()


def test_ignored_attributes_are_not_value_checked() -> None:
    # A malformed XOR-MAPPED-ADDRESS and an unknown comprehension-required attribute after
    # MESSAGE-INTEGRITY are ignored: no ParseError, not reported by unknown_required().
    data = append_raw(
        sha1_mac_attr(signed_base(), KEY),
        (Attr.XOR_MAPPED_ADDRESS, bytes.fromhex("0002 a147 e112a643")),
        (0x0042, b"required but ignored"),
    )
    msg = stun.decode(data)
    assert msg.get(Attr.XOR_MAPPED_ADDRESS) is None
    assert msg.get(0x0042) is None
    assert msg.unknown_required() == []
    assert msg.check_integrity(KEY)


def test_layout_after_message_integrity_is_still_checked() -> None:
    data = append_raw(sha1_mac_attr(signed_base(), KEY), (Attr.SOFTWARE, b"late"))
    broken = data[:-8] + struct.pack("!HH", Attr.SOFTWARE, 40) + data[-4:]
    with pytest.raises(stun.ParseError):
        stun.decode(broken)


def test_counting_trailers_are_value_checked() -> None:
    # A FINGERPRINT that counts (right after MESSAGE-INTEGRITY) with a wrong size.
    data = append_raw(sha1_mac_attr(signed_base(), KEY), (Attr.FINGERPRINT, bytes(8)))
    with pytest.raises(stun.ParseError):
        stun.decode(data)
    data = append_raw(sha1_mac_attr(signed_base(), KEY), (Attr.MESSAGE_INTEGRITY_SHA256, bytes(18)))
    with pytest.raises(stun.ParseError):
        stun.decode(data)


# -- unknown attributes ------------------------------------------------------------------------


def test_unknown_comprehension_optional_attribute_is_kept_raw() -> None:
    data = raw_message([(0x8FFE, b"\x01\x02\x03"), (Attr.PRIORITY, struct.pack("!I", 1))])
    msg = stun.decode(data)
    assert msg.get(0x8FFE) == b"\x01\x02\x03"
    assert msg.attributes == [(0x8FFE, b"\x01\x02\x03"), (Attr.PRIORITY, 1)]
    assert msg.unknown_required() == []
    again = stun.decode(msg.encode())
    assert again.get(0x8FFE) == b"\x01\x02\x03"
    assert again == msg


def test_unknown_comprehension_required_attributes_are_listed() -> None:
    data = raw_message(
        [
            (0x0050, b"x"),
            (Attr.PRIORITY, struct.pack("!I", 1)),
            (0x7FFF, b""),
            (0x0002, bytes(8)),  # RESPONSE-ADDRESS, reserved since RFC 5389
            (0xC001, b"optional"),
        ]
    )
    msg = stun.decode(data)
    assert sorted(msg.unknown_required()) == [0x0002, 0x0050, 0x7FFF]
    assert msg.get(0x0050) == b"x"
    built = stun.Message(Method.BINDING, Class.REQUEST, TID, [(0x0050, b"x"), (0x8050, b"y")])
    assert built.unknown_required() == [0x0050]
    assert stun.is_comprehension_required(0x7FFF)
    assert not stun.is_comprehension_required(0x8000)


def test_known_attributes_are_not_unknown_required() -> None:
    attrs = [(attr, value[0]) for attr, value in VALUES.items() if attr < 0x8000]
    msg = stun.decode(stun.Message(Method.ALLOCATE, Class.REQUEST, TID, attrs).encode())
    assert msg.unknown_required() == []


# -- repeated attributes -----------------------------------------------------------------------


def test_multiple_xor_peer_addresses() -> None:
    peers = [("192.0.2.10", 1000), ("2001:db8::10", 2000), ("192.0.2.11", 3000)]
    msg = stun.Message(
        Method.CREATE_PERMISSION,
        Class.REQUEST,
        TID,
        [(Attr.XOR_PEER_ADDRESS, p) for p in peers] + [(Attr.USERNAME, "u")],
    )
    decoded = stun.decode(msg.encode(integrity_key=KEY))
    assert decoded.get_all(Attr.XOR_PEER_ADDRESS) == peers
    assert decoded.get(Attr.XOR_PEER_ADDRESS) == peers[0]
    assert msg.get_all(Attr.XOR_PEER_ADDRESS) == peers
    assert decoded.check_integrity(KEY)


def test_first_of_repeated_attributes_wins() -> None:
    data = raw_message([(Attr.SOFTWARE, b"one"), (Attr.SOFTWARE, b"two")])
    msg = stun.decode(data)
    assert msg.get(Attr.SOFTWARE) == "one"
    assert msg.get_all(Attr.SOFTWARE) == ["one", "two"]


# -- keys ----------------------------------------------------------------------------------------


def test_long_term_key_known_values() -> None:
    # MD5 / SHA-256 of "user:realm:pass" computed with coreutils md5sum / sha256sum.
    assert stun.long_term_key("user", "realm", "pass") == bytes.fromhex(
        "8493fbc53ba582fb4c044c456bdc40eb"
    )
    assert stun.long_term_key("user", "realm", "pass", algorithm="md5") == bytes.fromhex(
        "8493fbc53ba582fb4c044c456bdc40eb"
    )
    assert stun.long_term_key("user", "realm", "pass", algorithm="sha256") == bytes.fromhex(
        "07e934117abd40836e7c6329b54731b2b2d2a5f9a71f544922d75e0730d8251b"
    )
    assert stun.long_term_key(
        "user", "realm", "pass", stun.PasswordAlgorithm.MD5
    ) == stun.long_term_key("user", "realm", "pass")
    with pytest.raises(ValueError):
        stun.long_term_key("user", "realm", "pass", algorithm="sha1")  # type: ignore[arg-type]


def test_a_session_key_keeps_its_own_hash_states() -> None:
    key = stun.short_term_key("VOkJxbRl1RmTxUk/WvJxBt")
    assert isinstance(key, stun.SessionKey) and key == b"VOkJxbRl1RmTxUk/WvJxBt"
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, TID)
    data = message.encode(integrity_key=key)
    signed = stun.decode(data)
    assert signed.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBt")  # the same MAC as plain bytes
    assert data[-20:] == hmac.new(key, data[:-24], hashlib.sha1).digest()
    pads = vars(key)["sha1"]
    for i in range(3 * _CACHE_LIMIT):  # enough other keys to flush the shared cache
        assert stun.decode(message.encode(integrity_key=b"other %d" % i)).check_integrity(
            b"other %d" % i
        )
    assert signed.check_integrity(key)
    assert vars(key)["sha1"] is pads  # not evicted, not recomputed
    copied = pickle.loads(pickle.dumps(key))  # the hash states are left behind
    assert type(copied) is stun.SessionKey and copied == key and not vars(copied)
    assert stun.decode(message.encode(integrity_key=copied)).check_integrity(key)


def test_short_term_key_and_userhash() -> None:
    assert stun.short_term_key("VOkJxbRl1RmTxUk/WvJxBt") == b"VOkJxbRl1RmTxUk/WvJxBt"
    assert stun.short_term_key("p\u00e4ss") == "p\u00e4ss".encode()
    # RFC 8489 appendix B.1 USERHASH of the katakana username at example.org.
    assert stun.userhash("\u30de\u30c8\u30ea\u30c3\u30af\u30b9", "example.org") == bytes.fromhex(
        "4a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704"
    )
    assert stun.userhash("user", "realm") == hashlib.sha256(b"user:realm").digest()


# -- stream framing ----------------------------------------------------------------------------


def stream_frames() -> list[bytes]:
    stun1 = base_request().encode(integrity_key=KEY, fingerprint=True)
    channel_odd = struct.pack("!HH", 0x4001, 5) + b"hello" + b"\0\0\0"  # padded to 4
    channel_empty = struct.pack("!HH", 0x4FFF, 0)
    stun2 = stun.Message(Method.BINDING, Class.SUCCESS, TID).encode()
    channel_aligned = struct.pack("!HH", 0x4002, 8) + b"12345678"
    return [stun1, channel_odd, channel_empty, stun2, channel_aligned]


def test_framer_one_chunk() -> None:
    frames = stream_frames()
    framer = StreamFramer()
    assert framer.feed(b"".join(frames)) == frames
    assert framer.pending == 0
    assert stun.decode(frames[0]).check_integrity(KEY)


def test_framer_byte_by_byte() -> None:
    frames = stream_frames()
    framer = StreamFramer()
    out: list[bytes] = []
    stream = b"".join(frames)
    for i in range(len(stream)):
        got = framer.feed(stream[i : i + 1])
        out += got
        assert framer.pending == (i + 1) - sum(len(f) for f in out)
    assert out == frames
    assert framer.pending == 0


def test_framer_uneven_chunks() -> None:
    frames = stream_frames()
    stream = b"".join(frames)
    for size in (2, 3, 7, 19, 21, 64):
        framer = StreamFramer()
        out: list[bytes] = []
        for i in range(0, len(stream), size):
            out += framer.feed(stream[i : i + size])
        assert out == frames, size


def test_framer_keeps_an_incomplete_frame() -> None:
    frames = stream_frames()
    framer = StreamFramer()
    assert framer.feed(frames[0] + frames[1][:6]) == [frames[0]]
    assert framer.pending == 6
    assert framer.feed(frames[1][6:]) == [frames[1]]
    assert framer.feed(b"") == []
    assert framer.pending == 0


@pytest.mark.parametrize("first", [0x80, 0xC0, 0xFF, 0x17 | 0x80])
def test_framer_garbage_first_byte(first: int) -> None:
    framer = StreamFramer()
    with pytest.raises(stun.ParseError):
        framer.feed(bytes([first]) + bytes(23))
    later = StreamFramer()
    assert later.feed(stream_frames()[2]) == [stream_frames()[2]]
    with pytest.raises(stun.ParseError):
        later.feed(bytes([first, 0, 0, 0]))


# -- one message after another: nothing remembered may change a result ------------------------
#
# Each pair below has the same header word and the same attribute headers (types and
# lengths) and differs only in value bytes, so that whatever decode may remember from the
# first message applies to the second one as far as the layout goes.

SAME_LAYOUT_PAIRS: list[tuple[str, int, bytes, bytes]] = [
    (
        "xor-mapped-family",
        Attr.XOR_MAPPED_ADDRESS,
        bytes.fromhex("0001 a147 e112a643"),
        bytes.fromhex("0002 a147 e112a643"),
    ),
    (
        "xor-mapped-family-0",
        Attr.XOR_MAPPED_ADDRESS,
        bytes.fromhex("0001 a147 e112a643"),
        bytes.fromhex("0000 a147 e112a643"),
    ),
    (
        "mapped-v6-family",
        Attr.MAPPED_ADDRESS,
        bytes.fromhex("0002 0d96") + bytes(16),
        bytes.fromhex("0001 0d96") + bytes(16),
    ),
    (
        "error-class",
        Attr.ERROR_CODE,
        bytes.fromhex("00000401") + b"oops",
        bytes.fromhex("00000701") + b"oops",
    ),
    (
        "error-number",
        Attr.ERROR_CODE,
        bytes.fromhex("00000401") + b"oops",
        bytes.fromhex("00000464") + b"oops",
    ),
    (
        "address-error-class",
        Attr.ADDRESS_ERROR_CODE,
        bytes.fromhex("02000428"),
        bytes.fromhex("02000228"),
    ),
    (
        "password-algorithm-params",
        Attr.PASSWORD_ALGORITHM,
        bytes.fromhex("0002 0000"),
        bytes.fromhex("0002 0004"),
    ),
    (
        "password-algorithms-tiling",
        Attr.PASSWORD_ALGORITHMS,
        bytes.fromhex("0001 0000 0002 0000"),
        bytes.fromhex("0001 0000 0002 0001"),
    ),
    (
        "password-algorithms-first",
        Attr.PASSWORD_ALGORITHMS,
        bytes.fromhex("0001 0000 0002 0000"),
        bytes.fromhex("0001 0008 0002 0000"),
    ),
    (
        "password-algorithms-long",
        Attr.PASSWORD_ALGORITHMS,
        bytes.fromhex("0001 0000") * 10 + bytes.fromhex("0002 0000"),
        bytes.fromhex("0001 0000") * 10 + bytes.fromhex("0002 0003"),
    ),
]


@pytest.mark.parametrize(
    ("attr", "valid", "invalid"),
    [p[1:] for p in SAME_LAYOUT_PAIRS],
    ids=[p[0] for p in SAME_LAYOUT_PAIRS],
)
def test_same_layout_different_validity(attr: int, valid: bytes, invalid: bytes) -> None:
    assert len(valid) == len(invalid)
    good = raw_message([(Attr.USERNAME, b"user"), (attr, valid), (Attr.PRIORITY, bytes(4))])
    bad = raw_message([(Attr.USERNAME, b"user"), (attr, invalid), (Attr.PRIORITY, bytes(4))])
    for _ in range(3):
        msg = stun.decode(good)
        msg.get(attr)
        with pytest.raises(stun.ParseError):
            stun.decode(bad)
    assert stun.decode(good).attributes == msg.attributes


def test_same_layout_different_cookie() -> None:
    good = raw_message([(Attr.PRIORITY, bytes(4))])
    stun.decode(good)
    with pytest.raises(stun.ParseError):
        stun.decode(good[:4] + b"\x21\x12\xa4\x43" + good[8:])


def test_same_layout_values_belong_to_each_message() -> None:
    # Two messages with identical layouts but different values and transaction ids: each
    # one's values, read after both were decoded, are its own.
    def make(tid: bytes, peer: tuple[str, int], name: str, prio: int) -> bytes:
        return stun.Message(
            Method.BINDING,
            Class.SUCCESS,
            tid,
            [
                (Attr.XOR_MAPPED_ADDRESS, peer),
                (Attr.USERNAME, name),
                (Attr.PRIORITY, prio),
                (Attr.ERROR_CODE, (487, name)),
            ],
        ).encode(integrity_key=name.encode(), fingerprint=True)

    a = stun.decode(make(b"A" * 12, ("2001:db8::a", 1111), "aaaa", 1))
    b = stun.decode(make(b"B" * 12, ("2001:db8::b", 2222), "bbbb", 2))
    assert a.get(Attr.XOR_MAPPED_ADDRESS) == ("2001:db8::a", 1111)
    assert b.get(Attr.XOR_MAPPED_ADDRESS) == ("2001:db8::b", 2222)
    assert (a.get(Attr.USERNAME), b.get(Attr.USERNAME)) == ("aaaa", "bbbb")
    assert (a.get(Attr.PRIORITY), b.get(Attr.PRIORITY)) == (1, 2)
    assert a.get(Attr.ERROR_CODE) == (487, "aaaa")
    assert a.transaction_id == b"A" * 12
    assert b.transaction_id == b"B" * 12
    assert a.check_integrity(b"aaaa") and not a.check_integrity(b"bbbb")
    assert b.check_integrity(b"bbbb") and not b.check_integrity(b"aaaa")
    assert a.check_fingerprint() and b.check_fingerprint()
    assert a.attributes != b.attributes


def test_same_layout_different_mac_and_fingerprint() -> None:
    data = base_request().encode(integrity_key=KEY, fingerprint=True)
    stun.decode(data)
    bad_mac = bytearray(data)
    bad_mac[-12] ^= 0xFF  # inside MESSAGE-INTEGRITY
    bad_fp = bytearray(data)
    bad_fp[-1] ^= 0xFF
    msg = stun.decode(bytes(bad_mac))
    assert not msg.check_integrity(KEY)
    assert not msg.check_fingerprint()
    msg = stun.decode(bytes(bad_fp))
    assert msg.check_integrity(KEY)
    assert not msg.check_fingerprint()
    assert stun.decode(data).check_integrity(KEY)


def test_same_length_different_trailer_order() -> None:
    # Same header word, same sizes; only attribute types after MESSAGE-INTEGRITY differ:
    # a SOFTWARE there is ignored, a FINGERPRINT counts.
    signed = sha1_mac_attr(signed_base(), KEY)
    ignored = append_raw(signed, (Attr.SOFTWARE, b"late"))
    counted = fingerprint_attr(signed)
    assert len(ignored) == len(counted)
    for first, second in ((ignored, counted), (counted, ignored)):
        for data in (first, second):
            msg = stun.decode(data)
            if data is counted:
                assert msg.check_fingerprint()
                assert msg.get(Attr.FINGERPRINT) is not None
            else:
                assert not msg.check_fingerprint()
                assert msg.get(Attr.SOFTWARE) is None
            assert msg.check_integrity(KEY)


def test_same_length_known_and_unknown_type() -> None:
    unknown = raw_message([(0x8077, bytes.fromhex("0009 a147 e112a643"))])
    known = raw_message([(Attr.XOR_MAPPED_ADDRESS, bytes.fromhex("0009 a147 e112a643"))])
    assert stun.decode(unknown).get(0x8077) == bytes.fromhex("0009 a147 e112a643")
    with pytest.raises(stun.ParseError):
        stun.decode(known)
    stun.decode(unknown)
    with pytest.raises(stun.ParseError):
        stun.decode(known)


def test_ignored_then_counted_value_is_checked() -> None:
    # After MESSAGE-INTEGRITY-SHA256 a bad MESSAGE-INTEGRITY is ignored; after a good
    # MESSAGE-INTEGRITY the same position holds a MESSAGE-INTEGRITY-SHA256 that counts and
    # must be checked (here: a 20-byte value, allowed, vs. an 18-byte one, not allowed).
    first = append_raw(sha256_mac_attr(signed_base(), KEY, 20), (Attr.MESSAGE_INTEGRITY, bytes(19)))
    stun.decode(first)
    second = append_raw(
        sha1_mac_attr(signed_base(), KEY), (Attr.MESSAGE_INTEGRITY_SHA256, bytes(18))
    )
    with pytest.raises(stun.ParseError):
        stun.decode(second)


def test_decoded_message_survives_reuse_of_the_receive_buffer() -> None:
    data = stun.Message(
        Method.BINDING,
        Class.SUCCESS,
        TID,
        [(Attr.XOR_MAPPED_ADDRESS, ("2001:db8::7", 7)), (Attr.SOFTWARE, "server")],
    ).encode(integrity_key=KEY, fingerprint=True)
    buffer = bytearray(data)
    for view in (buffer, memoryview(buffer)):
        msg = stun.decode(view)
        buffer[8:] = bytes(len(buffer) - 8)  # the next recv_into() overwrites it
        assert msg.transaction_id == TID
        assert msg.get(Attr.XOR_MAPPED_ADDRESS) == ("2001:db8::7", 7)
        assert msg.get(Attr.SOFTWARE) == "server"
        assert msg.check_integrity(KEY)
        assert msg.check_fingerprint()
        buffer[:] = data


def test_encoder_takes_lists_and_bytes_like_values() -> None:
    # Values need not be hashable: lists for the list attributes, bytearray/memoryview for
    # the byte attributes.
    attrs: list[tuple[int, Any]] = [
        (Attr.PASSWORD_ALGORITHMS, [1, 2]),
        (Attr.UNKNOWN_ATTRIBUTES, [0x0042]),
        (Attr.DATA, bytearray(b"data")),
        (Attr.USERHASH, bytearray(32)),
        (Attr.RESERVATION_TOKEN, memoryview(b"12345678")),
        (0x8123, bytearray(b"raw")),
    ]
    for _ in range(2):
        msg = stun.decode(stun.Message(Method.ALLOCATE, Class.REQUEST, TID, attrs).encode())
        assert msg.attributes == [
            (Attr.PASSWORD_ALGORITHMS, (1, 2)),
            (Attr.UNKNOWN_ATTRIBUTES, (0x0042,)),
            (Attr.DATA, b"data"),
            (Attr.USERHASH, bytes(32)),
            (Attr.RESERVATION_TOKEN, b"12345678"),
            (0x8123, b"raw"),
        ]


def test_encoding_does_not_depend_on_earlier_messages() -> None:
    values: list[tuple[int, Any]] = [
        (Attr.XOR_MAPPED_ADDRESS, ("2001:db8::1", 5)),
        (Attr.XOR_PEER_ADDRESS, ("192.0.2.1", 5)),
        (Attr.USERNAME, "u"),
        (Attr.EVEN_PORT, False),
        (Attr.EVEN_PORT, True),
        (Attr.PRIORITY, 7),
        (Attr.ICE_CONTROLLING, 7),
    ]
    first = {
        tid: stun.Message(Method.BINDING, Class.REQUEST, tid, values).encode()
        for tid in (bytes(12), b"\xff" * 12, TID)
    }
    for tid, data in first.items():
        again = stun.Message(Method.BINDING, Class.REQUEST, tid, values).encode()
        assert again == data
        assert stun.decode(again).attributes == values
    # Two different transactions: the IPv6 XOR address differs on the wire.
    assert first[bytes(12)][24:44] != first[b"\xff" * 12][24:44]


@pytest.mark.parametrize(
    ("attr", "good", "bad"),
    [
        (Attr.LIFETIME, 600, 600.0),
        (Attr.PRIORITY, 12345, 12345.0),
        (Attr.ERROR_CODE, (401, "Unauthorized"), (401.0, "Unauthorized")),
        (Attr.UNKNOWN_ATTRIBUTES, (1, 2), (1.0, 2.0)),
        (Attr.MAPPED_ADDRESS, ("192.0.2.1", 3478), ("192.0.2.1", 3478.0)),
    ],
    ids=["lifetime", "priority", "error-code", "unknown-attributes", "mapped-address"],
)
def test_encoder_validation_does_not_depend_on_earlier_messages(
    attr: Attr, good: Any, bad: Any
) -> None:
    # A float is not an integer field value: the encoder refuses it (ValueError), and it
    # must go on refusing it after an equal-comparing integer value was encoded once.
    assert good == bad
    stun.Message(Method.BINDING, Class.REQUEST, TID, [(attr, good)]).encode()
    with pytest.raises(ValueError):
        stun.Message(Method.BINDING, Class.REQUEST, TID, [(attr, bad)]).encode()


def test_largest_message() -> None:
    # The length field is 16 bits and a multiple of 4: at most 0xfffc attribute bytes.
    largest = stun.Message(Method.SEND, Class.INDICATION, TID, [(Attr.DATA, bytes(0xFFF8))])
    data = largest.encode()
    assert len(data) == 20 + 0xFFFC
    assert stun.decode(data).get(Attr.DATA) == bytes(0xFFF8)
    with pytest.raises(ValueError):
        largest.encode(fingerprint=True)
    with pytest.raises(ValueError):
        largest.encode(integrity_key=KEY)
    smaller = stun.Message(Method.SEND, Class.INDICATION, TID, [(Attr.DATA, bytes(0xFFF8 - 32))])
    signed = stun.decode(smaller.encode(integrity_key=KEY, fingerprint=True))
    assert signed.check_integrity(KEY)
    assert signed.check_fingerprint()
    too_long = stun.Message(
        Method.SEND, Class.INDICATION, TID, [(Attr.DATA, bytes(0xFFF8)), (Attr.PRIORITY, 1)]
    )
    with pytest.raises(ValueError):
        too_long.encode()


@pytest.mark.parametrize("attr", [stun.Attr.DATA, 0x7F00, 0xBEEF])
def test_raw_attributes_take_only_bytes(attr: int) -> None:
    for value in (5, 10**12, "text"):
        message = stun.Message(
            stun.Method.BINDING, stun.Class.INDICATION, attributes=[(attr, value)]
        )
        with pytest.raises(ValueError, match="bytes-like"):
            message.encode()
    raw = stun.Message(stun.Method.BINDING, stun.Class.INDICATION, attributes=[(attr, b"ab")])
    assert stun.decode(raw.encode()).get(attr) == b"ab"
