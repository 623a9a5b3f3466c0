"""ICE candidates: SDP parsing and serialising, priorities, foundations, pruning."""

from __future__ import annotations

import socket
import string
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ice.candidate import (
    MAX_PRIORITY,
    TYPE_PREFERENCE,
    Candidate,
    CandidateType,
    address_family_index,
    candidate_priority,
    local_preference,
    make_foundation,
    prflx_priority,
    prune,
)
from ice.errors import CandidateError, IceError

HOST, SRFLX, PRFLX, RELAY = (
    CandidateType.HOST,
    CandidateType.SRFLX,
    CandidateType.PRFLX,
    CandidateType.RELAY,
)
MDNS = "2c8e6a0e-4b2d-4f8f-9a53-23b7c9b3a2e1.local"
LIBWEBRTC_SRFLX = (
    "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 10.0.0.5 "
    "rport 46154 generation 0 ufrag EsAw network-id 1 network-cost 10"
)
FIREFOX_HOST = "candidate:0 1 UDP 2122252543 192.168.1.5 53133 typ host"
TCP_ACTIVE = "candidate:1 1 TCP 1518280447 192.0.2.1 9 typ host tcptype active"
VALID = "candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host"


def host(ip: str = "192.0.2.1", port: int = 5000, **kwargs: Any) -> Candidate:
    """A host candidate with defaults for every field not of interest."""
    fields: dict[str, Any] = {
        "foundation": "1",
        "component": 1,
        "protocol": "udp",
        "priority": 2130706431,
        "host": ip,
        "port": port,
        "type": HOST,
    }
    fields.update(kwargs)
    return Candidate(**fields)


# -- parsing real-world lines ------------------------------------------------------------------


def test_libwebrtc_srflx() -> None:
    c = Candidate.from_sdp(LIBWEBRTC_SRFLX)
    assert c == Candidate(
        foundation="842163049",
        component=1,
        protocol="udp",
        priority=1677729535,
        host="203.0.113.7",
        port=46154,
        type=SRFLX,
        related_address=("10.0.0.5", 46154),
        extensions=(
            ("generation", "0"),
            ("ufrag", "EsAw"),
            ("network-id", "1"),
            ("network-cost", "10"),
        ),
    )
    assert c.address == ("203.0.113.7", 46154)
    assert c.to_sdp() == LIBWEBRTC_SRFLX


def test_firefox_host_transport_is_lower_cased() -> None:
    c = Candidate.from_sdp(FIREFOX_HOST)
    assert (c.foundation, c.protocol, c.type) == ("0", "udp", HOST)
    assert c.address == ("192.168.1.5", 53133)
    assert c.related_address is None and c.extensions == ()
    assert c.to_sdp() == "candidate:0 1 udp 2122252543 192.168.1.5 53133 typ host"


def test_tcp_active_keeps_tcptype_out_of_extensions() -> None:
    c = Candidate.from_sdp(TCP_ACTIVE + " generation 0")
    assert (c.protocol, c.tcptype, c.port) == ("tcp", "active", 9)
    assert c.extensions == (("generation", "0"),)
    assert c.to_sdp() == TCP_ACTIVE.replace("TCP", "tcp") + " generation 0"


def test_tcptype_is_written_right_after_raddr_rport() -> None:
    line = (
        "candidate:3 1 tcp 1686052607 203.0.113.7 9 typ srflx generation 0 "
        "tcptype PASSIVE raddr 10.0.0.5 rport 9"
    )
    c = Candidate.from_sdp(line)
    assert c.tcptype == "passive" and c.related_address == ("10.0.0.5", 9)
    assert c.to_sdp() == (
        "candidate:3 1 tcp 1686052607 203.0.113.7 9 typ srflx raddr 10.0.0.5 rport 9 "
        "tcptype passive generation 0"
    )


def test_tcp_port_zero_is_accepted() -> None:
    assert Candidate.from_sdp("candidate:1 1 tcp 1 192.0.2.1 0 typ host tcptype active").port == 0


def test_ipv6_upper_case_hex_is_made_canonical() -> None:
    c = Candidate.from_sdp(
        "candidate:2 1 udp 2122262783 2001:DB8:0:0:0:0:0:ABCD 50000 typ srflx "
        "raddr FE80:0:0:0:0:0:0:1 rport 50001"
    )
    assert c.host == "2001:db8::abcd"
    assert c.related_address == ("fe80::1", 50001)
    assert c == Candidate.from_sdp(
        "candidate:2 1 udp 2122262783 2001:db8::abcd 50000 typ srflx raddr fe80::1 rport 50001"
    )


def test_mdns_host_name_is_kept_as_given() -> None:
    c = Candidate.from_sdp(f"candidate:1 1 udp 2113937151 {MDNS} 54400 typ host generation 0")
    assert c.host == MDNS and c.is_mdns
    assert not Candidate.from_sdp(FIREFOX_HOST).is_mdns
    upper = Candidate.from_sdp(f"candidate:1 1 udp 1 {MDNS.upper()} 54400 typ host")
    assert upper.host == MDNS.upper() and upper.is_mdns


def test_related_address_zero_is_accepted() -> None:
    c = Candidate.from_sdp("candidate:1 1 udp 1 203.0.113.7 1 typ srflx raddr 0.0.0.0 rport 0")
    assert c.related_address == ("0.0.0.0", 0)


def test_keywords_and_candidate_type_are_case_insensitive() -> None:
    c = Candidate.from_sdp("candidate:1 1 udp 1 192.0.2.1 1 TYP Relay RADDR 192.0.2.2 RPORT 2")
    assert c.type is RELAY and c.related_address == ("192.0.2.2", 2)


def test_duplicate_plain_extensions_are_kept_in_order() -> None:
    c = Candidate.from_sdp(VALID + " x-a 1 generation 0 x-a 2")
    assert c.extensions == (("x-a", "1"), ("generation", "0"), ("x-a", "2"))
    assert c.to_sdp() == VALID + " x-a 1 generation 0 x-a 2"


@pytest.mark.parametrize(
    "text",
    [
        VALID,
        "a=" + VALID,
        VALID.removeprefix("candidate:"),
        f"  a={VALID}\r\n",
        f"{VALID}\n",
        "Candidate:" + VALID.removeprefix("candidate:"),
        "candidate: " + VALID.removeprefix("candidate:"),
        VALID.replace(" ", "  ").replace("udp", "udp\t"),
    ],
)
def test_prefix_and_whitespace_variants(text: str) -> None:
    assert Candidate.from_sdp(text) == Candidate.from_sdp(VALID)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least 8 fields, not 0"),
        ("a=candidate:", "at least 8 fields, not 0"),
        ("candidate:1 1 udp 1 192.0.2.1 5000 typ", "at least 8 fields, not 7"),
        ("candidate:f\u00f6o 1 udp 1 192.0.2.1 5000 typ host", "character '\u00f6'"),
        ("candidate:1 1 udp 1 192.0.2.1 5000 typ host\x00", "character '\\\\x00'"),
        ("candidate:1\x0b1 udp 1 192.0.2.1 5000 typ host", "character '\\\\x0b'"),
        ("candidate:f-o 1 udp 1 192.0.2.1 5000 typ host", "foundation 'f-o'"),
        ("candidate:" + "a" * 33 + " 1 udp 1 192.0.2.1 5000 typ host", "foundation 'a{33}'"),
        ("candidate:1 x udp 1 192.0.2.1 5000 typ host", "component 'x'"),
        ("candidate:1 0 udp 1 192.0.2.1 5000 typ host", "component 0 is not in 1..256"),
        ("candidate:1 257 udp 1 192.0.2.1 5000 typ host", "component 257"),
        ("candidate:1 0001 udp 1 192.0.2.1 5000 typ host", "component '0001'"),
        ("candidate:1 1 ud(p 1 192.0.2.1 5000 typ host", "transport 'ud\\(p'"),
        ("candidate:1 1 udp 0 192.0.2.1 5000 typ host", "priority 0 is not in"),
        ("candidate:1 1 udp 2147483648 192.0.2.1 5000 typ host", "priority 2147483648"),
        ("candidate:1 1 udp 99999999999 192.0.2.1 5000 typ host", "priority '99999999999'"),
        ("candidate:1 1 udp -1 192.0.2.1 5000 typ host", "priority '-1'"),
        ("candidate:1 1 udp 1 192.0.2.1 65536 typ host", "port 65536 is not in 0..65535"),
        ("candidate:1 1 udp 1 192.0.2.1 5k typ host", "port '5k'"),
        ("candidate:1 1 udp 1 192.0.2.999 5000 typ host", "address '192.0.2.999'"),
        ("candidate:1 1 udp 1 2001:db8::g 5000 typ host", "address '2001:db8::g'"),
        ("candidate:1 1 udp 1 [::1] 5000 typ host", "address '\\[::1\\]'"),
        ("candidate:1 1 udp 1 192.0.2.1 5000 type host", "expected 'typ' .* found 'type'"),
        ("candidate:1 1 udp 1 192.0.2.1 5000 host typ", "expected 'typ' .* found 'host'"),
        ("candidate:1 1 udp 1 192.0.2.1 5000 typ nat", "unknown candidate type 'nat'"),
        ("candidate:1 1 udp 1 192.0.2.1 5000 typ srflx raddr 10.0.0.5", "raddr .10.0.0.5. without"),
        (VALID + " generation", "extension 'generation' has no value"),
        (VALID + " generation 0 ufrag", "extension 'ufrag' has no value"),
        (VALID + " raddr 10.0.0.5 generation 0", "raddr '10.0.0.5' without rport"),
        (VALID + " rport 5000 generation 0", "rport '5000' without raddr"),
        (VALID + " raddr 10.0.0.5 rport 65536", "related port 65536"),
        (VALID + " raddr 10.0.0.5 rport x", "related port 'x'"),
        (VALID + " raddr 10.0.0.300 rport 1", "related address '10.0.0.300'"),
        (VALID + " raddr 10.0.0.5 rport 1 raddr 10.0.0.6", "'raddr' appears twice"),
        (TCP_ACTIVE.replace("active", "listen"), "tcptype 'listen' is not"),
        (VALID + " tcptype active", "tcptype 'active' on a 'udp' candidate"),
        (TCP_ACTIVE + " tcptype passive", "'tcptype' appears twice"),
        (VALID + " x=y 1", "extension name 'x=y'"),
    ],
)
def test_malformed_candidates(text: str, message: str) -> None:
    with pytest.raises(CandidateError, match=message) as caught:
        Candidate.from_sdp(text)
    assert isinstance(caught.value, IceError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "nat"}, "unknown candidate type 'nat'"),
        ({"protocol": ""}, "transport ''"),
        ({"port": -1}, "port -1"),
        ({"host": ""}, "address ''"),
        ({"host": "a" * 254}, "neither an IP address"),
        ({"related_address": ("192.0.2.2", 70000)}, "related port 70000"),
        ({"extensions": (("raddr", "192.0.2.2"),)}, "'raddr' is a field of its own"),
        ({"extensions": (("TcpType", "active"),)}, "'TcpType' is a field of its own"),
        ({"extensions": (("x", ""),)}, "extension 'x' has a malformed value ''"),
        ({"extensions": (("x", "a b"),)}, "extension 'x' has a malformed value 'a b'"),
        ({"extensions": (("", "1"),)}, "extension name ''"),
    ],
)
def test_constructor_validates(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(CandidateError, match=message):
        host(**kwargs)


def test_constructor_normalises() -> None:
    c = host("2001:DB8::1", protocol="TCP", tcptype="SO", type="host")
    assert (c.host, c.protocol, c.tcptype, c.type) == ("2001:db8::1", "tcp", "so", HOST)
    assert type(c.type) is CandidateType


def test_unknown_transport_is_carried() -> None:
    c = Candidate.from_sdp("candidate:1 1 SCTP-DTLS 1 192.0.2.1 5000 typ host")
    assert c.protocol == "sctp-dtls"
    assert Candidate.from_sdp(c.to_sdp()) == c


# -- serialising and display -------------------------------------------------------------------


def test_base_and_server_are_not_serialised_or_compared() -> None:
    plain = host()
    local = host(base=("192.0.2.1", 5000), server="stun:stun.example.org")
    assert plain == local and hash(plain) == hash(local)
    assert local.to_sdp() == VALID


def test_str() -> None:
    assert str(host("192.168.1.5", 5000)) == "host udp 192.168.1.5:5000"
    srflx = Candidate(
        "2", 1, "udp", 1, "203.0.113.7", 6000, SRFLX, ("192.168.1.5", 5000),
        base=("192.168.1.5", 5000), server="stun:stun.example.org",
    )  # fmt: skip
    assert str(srflx) == (
        "srflx udp 203.0.113.7:6000 (base 192.168.1.5:5000) via stun:stun.example.org"
    )
    relay = Candidate(
        "3", 1, "udp", 1, "203.0.113.9", 50000, RELAY, ("198.51.100.1", 4000),
        base=("203.0.113.9", 50000), server="turn:turn.example.org",
    )  # fmt: skip
    assert str(relay) == "relay udp 203.0.113.9:50000 via turn:turn.example.org"
    remote = Candidate.from_sdp(
        "candidate:1 1 tcp 1 2001:db8::1 9 typ srflx raddr 2001:db8::2 rport 7 tcptype so"
    )
    assert str(remote) == "srflx tcp/so [2001:db8::1]:9 (raddr [2001:db8::2]:7)"


# -- priorities --------------------------------------------------------------------------------


def test_type_preferences() -> None:
    assert TYPE_PREFERENCE == {HOST: 126, PRFLX: 110, SRFLX: 100, RELAY: 0}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((HOST, 65535, 1), 2130706431),
        (("host", 65535, 2), 2130706430),
        ((SRFLX, 65535, 1), 1694498815),
        ((PRFLX, 0, 1), 110 << 24 | 255),
        ((RELAY, 65535, 1), 16777215),
        ((RELAY, 0, 256), 0),
        ((HOST, 1, 256), 126 << 24 | 256),
    ],
)
def test_candidate_priority(args: tuple[CandidateType | str, int, int], expected: int) -> None:
    assert candidate_priority(*args) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((HOST, 65536, 1), "local preference 65536"),
        ((HOST, -1, 1), "local preference -1"),
        ((HOST, 0, 0), "component 0"),
        ((HOST, 0, 257), "component 257"),
        (("nat", 0, 1), "candidate type 'nat'"),
    ],
)
def test_candidate_priority_rejects(args: tuple[str, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        candidate_priority(*args)


def test_prflx_priority() -> None:
    assert prflx_priority(65535, 1) == (110 << 24) + (65535 << 8) + 255
    assert prflx_priority(100, 2) == candidate_priority(PRFLX, 100, 2)
    assert candidate_priority(HOST, 65535, 1) > prflx_priority(65535, 1)
    assert prflx_priority(0, 1) > candidate_priority(SRFLX, 65535, 1)


def test_local_preference_interleaves_families_ipv6_first() -> None:
    order = [local_preference(f, i) for i in range(3) for f in (0, 1)]
    assert order == [65535, 65534, 65533, 65532, 65531, 65530]
    assert local_preference(1, 40000) == 0
    assert local_preference(0, 32767) == 1


@pytest.mark.parametrize(("family", "interface"), [(2, 0), (-1, 0), (0, -1)])
def test_local_preference_rejects(family: int, interface: int) -> None:
    with pytest.raises(CandidateError):
        local_preference(family, interface)


def test_address_family_index() -> None:
    assert address_family_index("2001:db8::1") == 0
    assert address_family_index("::ffff:192.0.2.1") == 0
    assert address_family_index("192.0.2.1") == 1
    for bad in ("example.org", "", "1.2.3.4\x00"):
        with pytest.raises(CandidateError, match="not an IP address"):
            address_family_index(bad)


# -- foundations -------------------------------------------------------------------------------


def test_foundation_is_short_stable_ice_chars() -> None:
    foundation = make_foundation(HOST, "192.0.2.1", "udp")
    assert foundation == make_foundation(HOST, "192.0.2.1", "udp")
    assert 1 <= len(foundation) <= 10 and foundation.isdigit()
    assert host(foundation=foundation).foundation == foundation


def test_foundation_equality_rules() -> None:
    stun_a, stun_b = "stun:a.example.org:3478", "stun:b.example.org:3478"
    base = make_foundation(SRFLX, "192.0.2.1", "udp", stun_a)
    assert base == make_foundation(SRFLX, "192.0.2.1", "UDP", stun_a)
    assert base != make_foundation(SRFLX, "192.0.2.1", "udp", stun_b)
    assert base != make_foundation(SRFLX, "192.0.2.2", "udp", stun_a)
    assert base != make_foundation(SRFLX, "192.0.2.1", "tcp", stun_a)
    assert base != make_foundation(RELAY, "192.0.2.1", "udp", stun_a)
    assert base != make_foundation(SRFLX, "192.0.2.1", "udp")
    # host and peer reflexive candidates have no server; the base is compared canonically
    assert make_foundation(HOST, "2001:DB8::1", "udp", stun_a) == make_foundation(
        HOST, "2001:db8:0::1", "udp"
    )
    assert make_foundation(PRFLX, "192.0.2.1", "udp", stun_a) == make_foundation(
        PRFLX, "192.0.2.1", "udp", stun_b
    )
    assert make_foundation(HOST, "192.0.2.1", "udp") != make_foundation(PRFLX, "192.0.2.1", "udp")


def test_foundation_is_the_same_across_processes() -> None:
    # a fixed value: CRC-32 does not vary with PYTHONHASHSEED as hash() does
    assert make_foundation(HOST, "192.0.2.1", "udp") == str(
        zlib.crc32(b"host\x00192.0.2.1\x00udp\x00")
    )


# -- pruning -----------------------------------------------------------------------------------


def test_prune_keeps_distinct_candidates_in_order() -> None:
    a, b = host("192.0.2.1"), host("192.0.2.2")
    tcp = host("192.0.2.1", protocol="tcp", tcptype="passive")
    rtcp = host("192.0.2.1", component=2)
    assert prune([a, b, tcp, rtcp]) == [a, b, tcp, rtcp]
    assert prune([]) == []


def test_prune_srflx_without_nat_gives_way_to_host() -> None:
    h = host("192.0.2.1", 5000, base=("192.0.2.1", 5000))
    srflx = Candidate(
        "2", 1, "udp", candidate_priority(SRFLX, 65535, 1), "192.0.2.1", 5000, SRFLX,
        ("192.0.2.1", 5000), base=("192.0.2.1", 5000),
    )  # fmt: skip
    behind_nat = Candidate(
        "2", 1, "udp", candidate_priority(SRFLX, 65535, 1), "203.0.113.7", 6000, SRFLX,
        ("192.0.2.1", 5000), base=("192.0.2.1", 5000),
    )  # fmt: skip
    assert prune([srflx, behind_nat, h]) == [h, behind_nat]
    assert prune([h, srflx, behind_nat]) == [h, behind_nat]


def test_prune_same_address_different_base_is_kept() -> None:
    one = Candidate("2", 1, "udp", 5, "203.0.113.7", 6000, SRFLX, base=("10.0.0.1", 1))
    other = Candidate("3", 1, "udp", 6, "203.0.113.7", 6000, SRFLX, base=("10.0.0.2", 1))
    assert prune([one, other]) == [one, other]


def test_prune_without_base_uses_the_implied_one() -> None:
    # remote-style candidates: a srflx's base is its related address, a host's is itself
    h = host("192.0.2.1", 5000, priority=10)
    srflx = Candidate("2", 1, "udp", 20, "192.0.2.1", 5000, SRFLX, ("192.0.2.1", 5000))
    other_base = Candidate("2", 1, "udp", 30, "192.0.2.1", 5000, SRFLX, ("10.0.0.9", 5000))
    assert prune([h, srflx, other_base]) == [srflx, other_base]


def test_prune_ties_keep_the_first() -> None:
    first, second = host(foundation="a"), host(foundation="b")
    assert prune(iter([first, second])) == [first]


# -- properties --------------------------------------------------------------------------------

ICE_CHARS = string.ascii_letters + string.digits + "+/"
TOKEN_CHARS = "".join(
    c for c in map(chr, range(0x21, 0x7F)) if c not in '"(),/:;<=>?@[\\]'
)  # fmt: skip
VCHARS = "".join(map(chr, range(0x21, 0x7F)))

ipv4 = st.binary(min_size=4, max_size=4).map(lambda b: socket.inet_ntop(socket.AF_INET, b))
ipv6 = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))
mdns = st.uuids().map(lambda u: f"{u}.local")
hosts = st.one_of(ipv4, ipv6, mdns)
ports = st.integers(0, 0xFFFF)
token = st.text(TOKEN_CHARS, min_size=1, max_size=12)
extension = st.tuples(
    token.filter(lambda n: n.lower() not in ("raddr", "rport", "tcptype")),
    st.text(VCHARS, min_size=1, max_size=12),
)


@st.composite
def candidates(draw: st.DrawFn) -> Candidate:
    protocol = draw(st.one_of(st.sampled_from(["udp", "tcp"]), token.map(str.lower)))
    tcptypes = [None, "active", "passive", "so"] if protocol == "tcp" else [None]
    return Candidate(
        foundation=draw(st.text(ICE_CHARS, min_size=1, max_size=32)),
        component=draw(st.integers(1, 256)),
        protocol=protocol,
        priority=draw(st.integers(1, MAX_PRIORITY)),
        host=draw(hosts),
        port=draw(ports),
        type=draw(st.sampled_from(CandidateType)),
        related_address=draw(st.none() | st.tuples(st.one_of(ipv4, ipv6), ports)),
        tcptype=draw(st.sampled_from(tcptypes)),
        extensions=tuple(draw(st.lists(extension, max_size=4))),
    )


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(candidates())
def test_round_trip(candidate: Candidate) -> None:
    line = candidate.to_sdp()
    assert Candidate.from_sdp(line) == candidate
    assert Candidate.from_sdp(f"a={line}\r\n") == candidate
    assert "\n" not in line and line.startswith("candidate:")


def _parse_or_error(text: str) -> None:
    try:
        parsed = Candidate.from_sdp(text)
    except CandidateError as error:
        assert str(error)
    else:
        assert Candidate.from_sdp(parsed.to_sdp()) == parsed


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=120))
def test_any_text_parses_or_raises_candidate_error(text: str) -> None:
    _parse_or_error(text)


FIELD_POOL = [
    "", "0", "1", "-1", "256", "257", "65535", "65536", "2147483647", "2147483648", "udp",
    "TCP", "typ", "host", "srflx", "nat", "raddr", "rport", "tcptype", "active", "so",
    "generation", "192.0.2.1", "::1", "[::1]", "1.2.3.999", MDNS, "\x00", "\u00e9", "x:y",
]  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    candidates(),
    st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from(["drop", "replace", "insert"])),
        max_size=3,
    ),
    st.lists(st.sampled_from(FIELD_POOL), min_size=3, max_size=3),
)
def test_mutated_lines_parse_or_raise_candidate_error(
    candidate: Candidate, edits: list[tuple[int, str]], pool: list[str]
) -> None:
    tokens = candidate.to_sdp().split(" ")
    for (index, edit), word in zip(edits, pool, strict=False):
        where = index % (len(tokens) + 1)
        if edit == "insert":
            tokens.insert(where, word)
        elif where < len(tokens):
            if edit == "drop":
                del tokens[where]
            else:
                tokens[where] = word
    _parse_or_error(" ".join(tokens))
