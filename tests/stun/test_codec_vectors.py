"""Published STUN test vectors: RFC 5769 and RFC 8489 Appendix B.1 (with errata 6268).

Every vector is written out byte for byte. Each one is decoded, every attribute value is
checked, its integrity is verified with the right key (and fails with a wrong one) and its
fingerprint is verified. Re-encoding is compared by decoded values (and, where the vector
pads with zeros as our encoder does, byte for byte).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import unicodedata
import zlib

import pytest

import stun
from stun import Attr, Class, Method

TRAILERS = frozenset((Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256, Attr.FINGERPRINT))

# -- RFC 5769 ------------------------------------------------------------------------------

RFC5769_TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_SHORT_TERM_PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"

# Section 2.1: Sample Request. USERNAME "evtj:h6vY" (9 bytes) is padded with three 0x20
# bytes, not zeros; padding is not part of the value and must be ignored.
RFC5769_REQUEST = bytes.fromhex(
    """
    00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
    00 24 00 04  6e 00 01 ff
    80 29 00 08  93 2f f9 b1  51 26 3b 36
    00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
    00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
    80 28 00 04  e5 7a 3b cf
    """
)

# Section 2.2: Sample IPv4 Response. SOFTWARE "test vector" (11 bytes) is padded with 0x20.
RFC5769_IPV4_RESPONSE = bytes.fromhex(
    """
    01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 08  00 01 a1 47  e1 12 a6 43
    00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
    80 28 00 04  c0 7d 4c 96
    """
)

# Section 2.3: Sample IPv6 Response.
RFC5769_IPV6_RESPONSE = bytes.fromhex(
    """
    01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
    00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
    80 28 00 04  c8 fb 0b 4c
    """
)

# Section 2.4: Sample Request with Long-Term Authentication (padding here is zeros).
RFC5769_LONG_TERM_REQUEST = bytes.fromhex(
    """
    00 01 00 60  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 06 00 12  e3 83 9e e3  83 88 e3 83  aa e3 83 83  e3 82 af e3  82 b9 00 00
    00 15 00 1c  66 2f 2f 34  39 39 6b 39  35 34 64 36  4f 4c 33 34  6f 4c 39 46
                 53 54 76 79  36 34 73 41
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 08 00 14  f6 70 24 65  6d d6 4a 3e  02 b8 e0 71  2e 85 c9 a2  8c a8 96 66
    """
)

# The username of RFC 5769 section 2.4 and RFC 8489 appendix B.1: U+30DE U+30C8 U+30EA
# U+30C3 U+30AF U+30B9 ("matorikkusu", katakana).
MATRIX_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
MATRIX_REALM = "example.org"
# The password as published: "The" SOFT HYPHEN "M" FEMININE ORDINAL INDICATOR "tr" ROMAN
# NUMERAL NINE. SASLprep (and OpaqueString) maps it to "TheMatrIX".
MATRIX_RAW_PASSWORD = "The\u00adM\u00aatr\u2168"
MATRIX_PASSWORD = "TheMatrIX"


def padding_zeroed(data: bytes) -> bytes:
    """``data`` with every attribute's padding bytes set to zero (the header is kept)."""
    out = bytearray(data)
    off = 20
    while off < len(out):
        (length,) = struct.unpack_from("!H", out, off + 2)
        end = off + 4 + length
        padded = (end + 3) & ~3
        out[end:padded] = bytes(padded - end)
        off = padded
    return bytes(out)


def without_trailers(msg: stun.Message) -> list[tuple[int, object]]:
    return [(t, v) for t, v in msg.attributes if t not in TRAILERS]


def test_saslprep_of_the_published_password_is_thematrix() -> None:
    # SASLprep: U+00AD is "commonly mapped to nothing" (RFC 3454 table B.1), then NFKC turns
    # U+00AA into "a" and U+2168 into "IX". The library takes the prepared password.
    prepared = unicodedata.normalize("NFKC", MATRIX_RAW_PASSWORD.replace("\u00ad", ""))
    assert prepared == MATRIX_PASSWORD


# -- 2.1 sample request ---------------------------------------------------------------------


def test_rfc5769_sample_request_values() -> None:
    msg = stun.decode(RFC5769_REQUEST)
    assert msg.method == Method.BINDING
    assert msg.cls == Class.REQUEST
    assert msg.transaction_id == RFC5769_TID
    assert msg.get(Attr.SOFTWARE) == "STUN test client"
    assert msg.get(Attr.PRIORITY) == 0x6E0001FF
    assert msg.get(Attr.ICE_CONTROLLED) == 0x932FF9B151263B36
    # Three 0x20 padding bytes follow the 9-byte value and are not part of it.
    assert msg.get(Attr.USERNAME) == "evtj:h6vY"
    assert msg.get(Attr.MESSAGE_INTEGRITY) == bytes.fromhex(
        "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    )
    assert msg.get(Attr.FINGERPRINT) == 0xE57A3BCF
    assert [t for t, _ in msg.attributes] == [
        Attr.SOFTWARE,
        Attr.PRIORITY,
        Attr.ICE_CONTROLLED,
        Attr.USERNAME,
        Attr.MESSAGE_INTEGRITY,
        Attr.FINGERPRINT,
    ]
    assert msg.unknown_required() == []


def test_rfc5769_sample_request_integrity_and_fingerprint() -> None:
    msg = stun.decode(RFC5769_REQUEST)
    assert msg.check_integrity(stun.short_term_key(RFC5769_SHORT_TERM_PASSWORD))
    assert msg.check_fingerprint()
    assert not msg.check_integrity(stun.short_term_key("VOkJxbRl1RmTxUk/WvJxBT"))
    assert not msg.check_integrity(b"")


def test_rfc5769_sample_request_reencoded_by_our_encoder_verifies() -> None:
    key = stun.short_term_key(RFC5769_SHORT_TERM_PASSWORD)
    original = stun.decode(RFC5769_REQUEST)
    rebuilt = stun.Message(
        Method.BINDING,
        Class.REQUEST,
        RFC5769_TID,
        [
            (Attr.SOFTWARE, "STUN test client"),
            (Attr.PRIORITY, 0x6E0001FF),
            (Attr.ICE_CONTROLLED, 0x932FF9B151263B36),
            (Attr.USERNAME, "evtj:h6vY"),
        ],
    )
    data = rebuilt.encode(integrity_key=key, fingerprint=True)
    # Same layout as the vector; only the USERNAME padding differs (zeros instead of 0x20),
    # so MESSAGE-INTEGRITY and FINGERPRINT, which cover the padding, differ too.
    assert len(data) == len(RFC5769_REQUEST)
    mi_offset = len(data) - 8 - 24
    assert data[:mi_offset] == padding_zeroed(RFC5769_REQUEST)[:mi_offset]
    decoded = stun.decode(data)
    assert decoded.check_integrity(key)
    assert decoded.check_fingerprint()
    assert not decoded.check_integrity(b"wrong key")
    assert without_trailers(decoded) == without_trailers(original)
    assert decoded.method == original.method
    assert decoded.cls == original.cls
    assert decoded.transaction_id == original.transaction_id
    # Our MI is HMAC-SHA1 over our bytes up to it, with the length covering MI only.
    covered = data[:2] + struct.pack("!H", mi_offset + 24 - 20) + data[4:mi_offset]
    assert decoded.get(Attr.MESSAGE_INTEGRITY) == hmac.new(key, covered, hashlib.sha1).digest()
    crc = zlib.crc32(data[:-8]) ^ 0x5354554E
    assert decoded.get(Attr.FINGERPRINT) == crc


# -- 2.2 / 2.3 sample responses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("vector", "address"),
    [
        (RFC5769_IPV4_RESPONSE, ("192.0.2.1", 32853)),
        (RFC5769_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
    ids=["ipv4", "ipv6"],
)
def test_rfc5769_sample_responses(vector: bytes, address: tuple[str, int]) -> None:
    msg = stun.decode(vector)
    assert msg.method == Method.BINDING
    assert msg.cls == Class.SUCCESS
    assert msg.transaction_id == RFC5769_TID
    # "test vector" is 11 bytes, followed by one 0x20 padding byte.
    assert msg.get(Attr.SOFTWARE) == "test vector"
    assert msg.get(Attr.XOR_MAPPED_ADDRESS) == address
    assert msg.get(Attr.MAPPED_ADDRESS) is None
    assert [t for t, _ in msg.attributes] == [
        Attr.SOFTWARE,
        Attr.XOR_MAPPED_ADDRESS,
        Attr.MESSAGE_INTEGRITY,
        Attr.FINGERPRINT,
    ]
    key = stun.short_term_key(RFC5769_SHORT_TERM_PASSWORD)
    assert msg.check_integrity(key)
    assert not msg.check_integrity(stun.short_term_key("vOkJxbRl1RmTxUk/WvJxBt"))
    assert msg.check_fingerprint()

    # Re-encode: equal by decoded values, integrity and fingerprint verify, and the bytes
    # match the vector once its 0x20 padding is zeroed (up to MESSAGE-INTEGRITY).
    data = msg.encode(integrity_key=key, fingerprint=True)
    again = stun.decode(data)
    assert again.method == msg.method
    assert again.cls == msg.cls
    assert again.transaction_id == msg.transaction_id
    assert without_trailers(again) == without_trailers(msg)
    assert again.check_integrity(key)
    assert again.check_fingerprint()
    mi_offset = len(vector) - 8 - 24
    assert data[:mi_offset] == padding_zeroed(vector)[:mi_offset]


def test_rfc5769_xor_mapped_address_wire_values() -> None:
    # The published x-port 0xa147 is 32853 ^ 0x2112; the IPv4 x-address e112a643 is
    # 192.0.2.1 ^ 0x2112a442. Encode them ourselves and compare with the vector bytes.
    msg = stun.Message(
        Method.BINDING,
        Class.SUCCESS,
        RFC5769_TID,
        [(Attr.XOR_MAPPED_ADDRESS, ("192.0.2.1", 32853))],
    )
    assert msg.encode()[20:] == bytes.fromhex("00200008 0001a147 e112a643")
    msg6 = stun.Message(
        Method.BINDING,
        Class.SUCCESS,
        RFC5769_TID,
        [(Attr.XOR_MAPPED_ADDRESS, ("2001:db8:1234:5678:11:2233:4455:6677", 32853))],
    )
    assert msg6.encode()[20:] == bytes.fromhex(
        "00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9"
    )


# -- 2.4 long-term credentials --------------------------------------------------------------


def test_rfc5769_long_term_request() -> None:
    msg = stun.decode(RFC5769_LONG_TERM_REQUEST)
    assert msg.method == Method.BINDING
    assert msg.cls == Class.REQUEST
    assert msg.transaction_id == bytes.fromhex("78ad3433c6ad72c029da412e")
    assert msg.get(Attr.USERNAME) == MATRIX_USERNAME
    assert msg.get(Attr.NONCE) == "f//499k954d6OL34oL9FSTvy64sA"
    assert msg.get(Attr.REALM) == MATRIX_REALM
    assert msg.get(Attr.FINGERPRINT) is None
    assert not msg.check_fingerprint()

    key = stun.long_term_key(MATRIX_USERNAME, MATRIX_REALM, MATRIX_PASSWORD)
    # MD5("<username>:example.org:TheMatrIX"), username and password as UTF-8.
    assert (
        key == hashlib.md5(f"{MATRIX_USERNAME}:{MATRIX_REALM}:{MATRIX_PASSWORD}".encode()).digest()
    )
    assert key == bytes.fromhex("e8ca7ad59d5eb0518e312911d2dab2a9")
    assert msg.check_integrity(key)
    assert not msg.check_integrity(stun.long_term_key(MATRIX_USERNAME, MATRIX_REALM, "thematrix"))
    sha_key = stun.long_term_key(MATRIX_USERNAME, MATRIX_REALM, MATRIX_PASSWORD, "sha256")
    assert not msg.check_integrity(sha_key)

    # This vector pads with zeros, as our encoder does: re-encoding is byte for byte.
    assert msg.encode(integrity_key=key) == RFC5769_LONG_TERM_REQUEST
    rebuilt = stun.Message(
        Method.BINDING,
        Class.REQUEST,
        bytes.fromhex("78ad3433c6ad72c029da412e"),
        [
            (Attr.USERNAME, MATRIX_USERNAME),
            (Attr.NONCE, "f//499k954d6OL34oL9FSTvy64sA"),
            (Attr.REALM, MATRIX_REALM),
        ],
    )
    assert rebuilt.encode(integrity_key=key) == RFC5769_LONG_TERM_REQUEST


@pytest.mark.parametrize(
    "vector",
    [RFC5769_REQUEST, RFC5769_IPV4_RESPONSE, RFC5769_IPV6_RESPONSE, RFC5769_LONG_TERM_REQUEST],
    ids=["2.1", "2.2", "2.3", "2.4"],
)
def test_rfc5769_vectors_decode_from_bytearray_and_memoryview(vector: bytes) -> None:
    reference = stun.decode(vector)
    for data in (bytearray(vector), memoryview(vector)):
        msg = stun.decode(data)
        assert msg == reference
        assert msg.attributes == reference.attributes


@pytest.mark.parametrize(
    "vector",
    [RFC5769_REQUEST, RFC5769_IPV4_RESPONSE, RFC5769_IPV6_RESPONSE],
    ids=["2.1", "2.2", "2.3"],
)
def test_rfc5769_fingerprint_detects_a_flipped_bit(vector: bytes) -> None:
    # Flip one bit of the SOFTWARE value: still decodes, but neither check passes.
    damaged = bytearray(vector)
    damaged[25] ^= 0x01
    msg = stun.decode(bytes(damaged))
    assert not msg.check_fingerprint()
    assert not msg.check_integrity(stun.short_term_key(RFC5769_SHORT_TERM_PASSWORD))


# -- RFC 8489 Appendix B.1 ------------------------------------------------------------------

RFC8489_TID = bytes.fromhex("78ad3433c6ad72c029da412e")
RFC8489_NONCE = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"

# The bytes as published in RFC 8489 Appendix B.1. Errata 6268 (verified) reports three
# defects: (1) the header's length field is 0x009c, the size of the whole message, where
# it must exclude the 20-byte header (0x9c - 20 = 0x88); (2) the vector hashes the
# password with SHA-256, which is not the default algorithm, but carries no
# PASSWORD-ALGORITHM attribute saying so; (3) the MESSAGE-INTEGRITY-SHA256 value e4686c8f...
# was computed over the header with that wrong length, so it does not verify over a
# correct one.
RFC8489_PUBLISHED = bytes.fromhex(
    """
    00 01 00 9c  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 1e 00 20  4a 3c f3 8f  ef 69 92 bd  a9 52 c6 78  04 17 da 0f
                 24 81 94 15  56 9e 60 b2  05 c4 6e 41  40 7f 17 04
    00 15 00 29  6f 62 4d 61  74 4a 6f 73  32 41 41 41  43 66 2f 2f
                 34 39 39 6b  39 35 34 64  36 4f 4c 33  34 6f 4c 39
                 46 53 54 76  79 36 34 73  41 00 00 00
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 1c 00 20  e4 68 6c 8f  0e de b5 90  13 e0 70 90  01 0a 93 ef
                 cc bc cc 54  4c 0a 45 d9  f8 30 aa 6d  6f 73 5a 01
    """
)

# The corrected vector given in errata 6268: length 0x0090 (the 136 bytes of attributes
# above plus the 8 bytes of the added attribute), a PASSWORD-ALGORITHM attribute
# (SHA-256 = 0x0002, no parameters) inserted before MESSAGE-INTEGRITY-SHA256, and
# MESSAGE-INTEGRITY-SHA256 recomputed over the corrected message (it now begins b5c7bf00).
RFC8489_CORRECTED = bytes.fromhex(
    """
    00 01 00 90  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 1e 00 20  4a 3c f3 8f  ef 69 92 bd  a9 52 c6 78  04 17 da 0f
                 24 81 94 15  56 9e 60 b2  05 c4 6e 41  40 7f 17 04
    00 15 00 29  6f 62 4d 61  74 4a 6f 73  32 41 41 41  43 66 2f 2f
                 34 39 39 6b  39 35 34 64  36 4f 4c 33  34 6f 4c 39
                 46 53 54 76  79 36 34 73  41 00 00 00
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 1d 00 04  00 02 00 00
    00 1c 00 20  b5 c7 bf 00  5b 6c 52 a2  1c 51 c5 e8  92 f8 19 24
                 13 62 96 cb  92 7c 43 14  93 09 27 8c  c6 51 8e 65
    """
)


def _sha256_key() -> bytes:
    # RFC 8489 section 9.2.2: with SHA-256 the key is SHA-256(username ":" realm ":"
    # password); "TheMatrIX" is the already prepared password.
    return stun.long_term_key(MATRIX_USERNAME, MATRIX_REALM, MATRIX_PASSWORD, algorithm="sha256")


def test_rfc8489_published_vector_is_rejected() -> None:
    # Its length field (0x9c = 156) counts the header: 156 + 20 != 156 bytes received.
    assert len(RFC8489_PUBLISHED) == 0x9C
    with pytest.raises(stun.ParseError):
        stun.decode(RFC8489_PUBLISHED)


def test_rfc8489_published_mac_only_verifies_over_the_wrong_header() -> None:
    # Demonstrates defect (3) with plain hmac: with the length fixed to 0x88 the message
    # decodes, but its MESSAGE-INTEGRITY-SHA256 does not verify; it only matches an HMAC
    # over the header that still says 0x9c.
    key = _sha256_key()
    mi_offset = len(RFC8489_PUBLISHED) - 36
    published_mac = RFC8489_PUBLISHED[mi_offset + 4 :]
    over_wrong_header = hmac.new(key, RFC8489_PUBLISHED[:mi_offset], hashlib.sha256).digest()
    assert over_wrong_header == published_mac

    fixed_length = bytearray(RFC8489_PUBLISHED)
    fixed_length[2:4] = struct.pack("!H", len(RFC8489_PUBLISHED) - 20)
    msg = stun.decode(bytes(fixed_length))
    assert msg.get(Attr.MESSAGE_INTEGRITY_SHA256) == published_mac
    assert msg.get(Attr.PASSWORD_ALGORITHM) is None
    assert not msg.check_integrity(key)


def test_rfc8489_corrected_vector_values() -> None:
    msg = stun.decode(RFC8489_CORRECTED)
    assert msg.method == Method.BINDING
    assert msg.cls == Class.REQUEST
    assert msg.transaction_id == RFC8489_TID
    assert msg.get(Attr.USERHASH) == stun.userhash(MATRIX_USERNAME, MATRIX_REALM)
    assert msg.get(Attr.USERHASH) == bytes.fromhex(
        "4a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704"
    )
    assert msg.get(Attr.USERNAME) is None
    assert msg.get(Attr.NONCE) == RFC8489_NONCE
    assert msg.get(Attr.REALM) == MATRIX_REALM
    assert msg.get(Attr.PASSWORD_ALGORITHM) == stun.PasswordAlgorithm.SHA256
    assert msg.get(Attr.MESSAGE_INTEGRITY_SHA256)[:4] == bytes.fromhex("b5c7bf00")
    assert msg.get(Attr.MESSAGE_INTEGRITY) is None
    assert [t for t, _ in msg.attributes] == [
        Attr.USERHASH,
        Attr.NONCE,
        Attr.REALM,
        Attr.PASSWORD_ALGORITHM,
        Attr.MESSAGE_INTEGRITY_SHA256,
    ]
    assert msg.unknown_required() == []


def test_rfc8489_corrected_vector_integrity() -> None:
    msg = stun.decode(RFC8489_CORRECTED)
    key = _sha256_key()
    assert (
        key
        == hashlib.sha256(f"{MATRIX_USERNAME}:{MATRIX_REALM}:{MATRIX_PASSWORD}".encode()).digest()
    )
    assert key == bytes.fromhex("dd295a613b9058c3c23d6dc7165bda072304d989c9d0af3a8c7e184b4f9bb4a1")
    assert (
        stun.long_term_key(
            MATRIX_USERNAME, MATRIX_REALM, MATRIX_PASSWORD, stun.PasswordAlgorithm.SHA256
        )
        == key
    )
    assert msg.check_integrity(key)
    # The MD5 key of the same credentials is the wrong key for this message.
    assert not msg.check_integrity(stun.long_term_key(MATRIX_USERNAME, MATRIX_REALM, "TheMatrIX"))
    assert not msg.check_integrity(
        stun.long_term_key(MATRIX_USERNAME, MATRIX_REALM, "TheMatrix", algorithm="sha256")
    )
    assert not msg.check_fingerprint()


def test_rfc8489_corrected_vector_reencodes_byte_for_byte() -> None:
    msg = stun.decode(RFC8489_CORRECTED)
    key = _sha256_key()
    assert msg.encode(integrity_key=key, sha256=True) == RFC8489_CORRECTED
    rebuilt = stun.Message(
        Method.BINDING,
        Class.REQUEST,
        RFC8489_TID,
        [
            (Attr.USERHASH, stun.userhash(MATRIX_USERNAME, MATRIX_REALM)),
            (Attr.NONCE, RFC8489_NONCE),
            (Attr.REALM, MATRIX_REALM),
            (Attr.PASSWORD_ALGORITHM, stun.PasswordAlgorithm.SHA256),
        ],
    )
    assert rebuilt.encode(integrity_key=key, sha256=True) == RFC8489_CORRECTED


def test_rfc8489_corrected_vector_mac_matches_plain_hmac() -> None:
    # Independent of the codec: HMAC-SHA256 over everything before the attribute, with the
    # header length already covering MESSAGE-INTEGRITY-SHA256 (here the end of the message).
    mi_offset = len(RFC8489_CORRECTED) - 36
    mac = hmac.new(_sha256_key(), RFC8489_CORRECTED[:mi_offset], hashlib.sha256).digest()
    assert mac == RFC8489_CORRECTED[mi_offset + 4 :]


def test_rfc8489_nonce_cookie_features() -> None:
    # "obMatJos2" then 4 base64 characters of a 24-bit feature set: "AAAC" is 0x000002.
    # Bits are numbered from the least significant (errata 6268 reading): bit 0 = password
    # algorithms, bit 1 = username anonymity. The vector uses USERHASH, i.e. anonymity.
    features = stun.nonce_features(RFC8489_NONCE)
    assert features == stun.NonceFeatures(password_algorithms=False, username_anonymity=True)
    assert features is not None
    assert features.bits == 0x000002
    assert features.cookie() == "obMatJos2AAAC"
    assert RFC8489_NONCE.startswith(features.cookie())

    both = stun.nonce_features("obMatJos2AAADxyz")
    assert both == stun.NonceFeatures(password_algorithms=True, username_anonymity=True)
    only_algorithms = stun.nonce_features("obMatJos2AAAB")
    assert only_algorithms == stun.NonceFeatures(password_algorithms=True)
    assert stun.NonceFeatures(password_algorithms=True).cookie() == "obMatJos2AAAB"
    assert stun.nonce_features("obMatJos2AAAA") == stun.NonceFeatures()
    # Nonces without the cookie, or with a malformed feature field, carry no features.
    assert stun.nonce_features("f//499k954d6OL34oL9FSTvy64sA") is None
    assert stun.nonce_features("obMatJos2AA") is None
    assert stun.nonce_features("obMatJos2!!!!rest") is None


def test_rfc8489_corrected_vector_fingerprint_can_be_added() -> None:
    # Adding a FINGERPRINT after MESSAGE-INTEGRITY-SHA256 keeps the MAC valid (the MAC's
    # length field never covers the FINGERPRINT) and the CRC verifies.
    msg = stun.decode(RFC8489_CORRECTED)
    key = _sha256_key()
    data = msg.encode(integrity_key=key, sha256=True, fingerprint=True)
    assert data[: len(RFC8489_CORRECTED)][4:] == RFC8489_CORRECTED[4:]
    assert data[2:4] == struct.pack("!H", 0x90 + 8)
    crc = zlib.crc32(data[:-8]) ^ 0x5354554E
    assert data[-8:] == struct.pack("!HHI", 0x8028, 4, crc)
    again = stun.decode(data)
    assert again.check_integrity(key)
    assert again.check_fingerprint()
