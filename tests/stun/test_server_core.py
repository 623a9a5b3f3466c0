"""The sans-I/O STUN server core: bytes in, one response (or silence) out, no sockets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stun import Attr, Class, Message, Method, decode
from stun.server import MAX_DATAGRAM, StunServer, Transmit

A1, A2, P1, P2 = "192.0.2.1", "192.0.2.2", 3478, 3479
Addr = tuple[str, int]
LOCAL = (A1, P1)
REMOTE = ("198.51.100.7", 40000)
CHANGE_IP, CHANGE_PORT = 0x4, 0x2


def request(*attributes: tuple[int, object], method: int = Method.BINDING) -> Message:
    return Message(method, Class.REQUEST, attributes=list(attributes))


def answer(
    server: StunServer,
    msg: Message,
    local: Addr = LOCAL,
    remote: Addr = REMOTE,
    fingerprint: bool = True,
) -> tuple[Transmit, Message]:
    transmit = server.handle_datagram(msg.encode(fingerprint=fingerprint), local, remote)
    assert transmit is not None
    response = decode(transmit.data)
    assert response.transaction_id == msg.transaction_id
    assert response.method == msg.method
    return transmit, response


def rfc5780(*, response_port: bool = False, padding: bool = False) -> StunServer:
    return StunServer((A1, P1), (A2, P2), response_port=response_port, padding=padding)


def test_binding_answer_is_xor_mapped_address_and_fingerprint() -> None:
    server = StunServer()
    transmit, response = answer(server, request())
    assert (transmit.local, transmit.remote) == (LOCAL, REMOTE)
    assert response.cls is Class.SUCCESS
    assert [t for t, _ in response.attributes] == [Attr.XOR_MAPPED_ADDRESS, Attr.FINGERPRINT]
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == REMOTE
    assert response.check_fingerprint()
    assert server.stats.answered == 1


def test_fingerprint_only_when_the_request_has_one() -> None:
    _, response = answer(StunServer(), request(), fingerprint=False)
    assert not response.has_fingerprint
    assert len(response.raw or b"") == 20 + 12


def test_ipv6_remote_with_scope() -> None:
    remote = ("fe80::1%eth0", 5000)
    transmit, response = answer(StunServer(), request(), local=("fe80::2", P1), remote=remote)
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == ("fe80::1", 5000)
    assert transmit.remote == remote


def test_software_is_off_by_default_and_added_to_every_response_when_set() -> None:
    assert Attr.SOFTWARE not in answer(StunServer(), request())[1]
    server = StunServer(software="icestack")
    for msg in (request(), request(method=0x0FF), request((0x7777, b"x"))):
        assert answer(server, msg)[1].get(Attr.SOFTWARE) == "icestack"


@pytest.mark.parametrize("method", [Method.ALLOCATE, Method.REFRESH, 0x0FF, 0xFFF])
def test_other_methods_get_400(method: int) -> None:
    server = StunServer()
    _, response = answer(server, request(method=method))
    assert response.cls is Class.ERROR
    assert response.get(Attr.ERROR_CODE) == (400, "Bad Request")
    assert response.check_fingerprint()
    assert server.stats.errors_400 == 1


def test_unknown_comprehension_required_attributes_get_420() -> None:
    server = StunServer()
    msg = request((0x7777, b"abc"), (Attr.USERNAME, "u"), (0x0033, b""), (0x7777, b"again"))
    transmit, response = answer(server, msg)
    assert transmit.remote == REMOTE
    assert response.get(Attr.ERROR_CODE) == (420, "Unknown Attribute")
    assert response.get(Attr.UNKNOWN_ATTRIBUTES) == (0x7777, 0x0033)
    assert server.stats.errors_420 == 1


def test_unknown_comprehension_optional_attributes_are_ignored() -> None:
    _, response = answer(StunServer(), request((0x8777, b"whatever")))
    assert response.cls is Class.SUCCESS


@pytest.mark.parametrize(
    ("attribute", "value"),
    [(Attr.CHANGE_REQUEST, CHANGE_IP), (Attr.RESPONSE_PORT, 5000), (Attr.PADDING, bytes(8))],
)
def test_rfc5780_attributes_not_offered_get_420(attribute: Attr, value: object) -> None:
    _, response = answer(StunServer(), request((attribute, value)))
    assert response.get(Attr.ERROR_CODE) == (420, "Unknown Attribute")
    assert response.get(Attr.UNKNOWN_ATTRIBUTES) == (attribute,)


def test_responses_stay_small() -> None:
    """No reason-phrase bloat: each answer is the smallest the RFCs allow."""
    server = StunServer()

    def size(msg: Message) -> int:
        return len(answer(server, msg, fingerprint=False)[0].data)

    assert size(request()) == 20 + 12
    assert size(request(method=0x0FF)) == 20 + 20
    assert size(request((0x7777, b""))) == 20 + 28 + 8


def _with_bad_fingerprint() -> bytes:
    data = bytearray(request().encode(fingerprint=True))
    data[-1] ^= 1
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "counter"),
    [
        (b"", "dropped_malformed"),
        (b"\x00\x01\x00\x00" + bytes(16), "dropped_malformed"),
        (request().encode()[:-1], "dropped_malformed"),
        (Message(Method.BINDING, Class.INDICATION).encode(), "dropped_not_request"),
        (Message(Method.BINDING, Class.SUCCESS).encode(), "dropped_not_request"),
        (Message(Method.BINDING, Class.ERROR).encode(), "dropped_not_request"),
        (_with_bad_fingerprint(), "dropped_bad_fingerprint"),
    ],
)
def test_silent_drops_are_counted(data: bytes, counter: str) -> None:
    server = StunServer()
    assert server.handle_datagram(data, LOCAL, REMOTE) is None
    assert getattr(server.stats, counter) == 1
    assert server.stats.received == 1


# -- RFC 5780 ------------------------------------------------------------------------------

OPPOSITE = {(A1, P1): (A2, P2), (A1, P2): (A2, P1), (A2, P1): (A1, P2), (A2, P2): (A1, P1)}


@pytest.mark.parametrize("local", list(OPPOSITE))
@pytest.mark.parametrize("flags", [0, CHANGE_IP, CHANGE_PORT, CHANGE_IP | CHANGE_PORT])
def test_rfc5780_change_request(local: Addr, flags: int) -> None:
    other = OPPOSITE[local]
    source = (
        other[0] if flags & CHANGE_IP else local[0],
        other[1] if flags & CHANGE_PORT else local[1],
    )
    transmit, response = answer(rfc5780(), request((Attr.CHANGE_REQUEST, flags)), local)
    assert (transmit.local, transmit.remote) == (source, REMOTE)
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == REMOTE
    assert response.get(Attr.MAPPED_ADDRESS) == REMOTE
    assert response.get(Attr.RESPONSE_ORIGIN) == source
    assert response.get(Attr.OTHER_ADDRESS) == other


def test_rfc5780_without_change_request_still_has_origin_and_other_address() -> None:
    transmit, response = answer(rfc5780(), request(), (A2, P1))
    assert transmit.local == (A2, P1)
    assert response.get(Attr.RESPONSE_ORIGIN) == (A2, P1)
    assert response.get(Attr.OTHER_ADDRESS) == (A1, P2)


def test_rfc5780_ipv6() -> None:
    server = StunServer(("2001:db8::1", 3478), ("2001:db8:0::2", 3479))
    msg = request((Attr.CHANGE_REQUEST, CHANGE_IP))
    remote = ("2001:db8::99", 1234)
    transmit, response = answer(server, msg, ("2001:db8::1", 3478), remote)
    assert transmit.local == ("2001:db8::2", 3478)
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == remote


def test_datagram_on_another_socket_is_answered_without_rfc5780() -> None:
    _, response = answer(rfc5780(), request((Attr.CHANGE_REQUEST, 0)), local=(A1, 9999))
    assert response.get(Attr.UNKNOWN_ATTRIBUTES) == (Attr.CHANGE_REQUEST,)


@pytest.mark.parametrize("server", [StunServer(response_port=True), rfc5780(response_port=True)])
def test_response_port(server: StunServer) -> None:
    transmit, response = answer(server, request((Attr.RESPONSE_PORT, 5000)))
    assert transmit.remote == (REMOTE[0], 5000)
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == REMOTE


def test_response_port_zero_gets_400() -> None:
    server = StunServer(response_port=True)
    _, response = answer(server, request((Attr.RESPONSE_PORT, 0)))
    assert response.get(Attr.ERROR_CODE) == (400, "Bad Request")


@pytest.mark.parametrize("size", [0, 1, 4, 1001, 1500])
def test_padding_is_echoed_at_the_same_length(size: int) -> None:
    transmit, response = answer(rfc5780(padding=True), request((Attr.PADDING, b"\xff" * size)))
    assert response.get(Attr.PADDING) == bytes(size)
    assert response.check_fingerprint()
    assert transmit.local == (A1, P1)


def test_padding_never_grows_a_response_beyond_a_datagram() -> None:
    msg = request((Attr.PADDING, bytes(MAX_DATAGRAM - 20 - 4 - 8)))
    transmit, response = answer(rfc5780(padding=True), msg)
    assert len(transmit.data) <= MAX_DATAGRAM
    assert response.check_fingerprint()


def test_padding_with_response_port_gets_400() -> None:
    server = StunServer(response_port=True, padding=True)
    msg = request((Attr.PADDING, bytes(100)), (Attr.RESPONSE_PORT, 5000))
    transmit, response = answer(server, msg)
    assert transmit.remote == REMOTE
    assert response.get(Attr.ERROR_CODE) == (400, "Bad Request")
    assert server.stats.errors_400 == 1


# -- streams -------------------------------------------------------------------------------


def test_stream_answers_go_back_on_the_stream() -> None:
    server = rfc5780(padding=True)
    transmit = server.handle_frame(request((Attr.PADDING, bytes(8))).encode(), LOCAL, REMOTE)
    assert transmit is not None
    assert (transmit.local, transmit.remote) == (LOCAL, REMOTE)
    response = decode(transmit.data)
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == REMOTE
    assert Attr.RESPONSE_ORIGIN not in response


@pytest.mark.parametrize(
    ("attribute", "value"), [(Attr.CHANGE_REQUEST, 0), (Attr.RESPONSE_PORT, 5000)]
)
def test_stream_cannot_change_where_answers_go(attribute: Attr, value: int) -> None:
    server = rfc5780(response_port=True)
    transmit = server.handle_frame(request((attribute, value)).encode(), LOCAL, REMOTE)
    assert transmit is not None
    assert decode(transmit.data).get(Attr.UNKNOWN_ATTRIBUTES) == (attribute,)


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "alternate"),
    [
        ((A1, P1), None),
        (None, (A2, P2)),
        ((A1, P1), (A1, P2)),
        ((A1, P1), (A2, P1)),
        ((A1, P1), ("2001:db8::1", P2)),
        (("0.0.0.0", P1), (A2, P2)),
        ((A1, 0), (A2, P2)),
        (("localhost", P1), (A2, P2)),
    ],
)
def test_bad_rfc5780_addresses(primary: Addr | None, alternate: Addr | None) -> None:
    with pytest.raises(ValueError):
        StunServer(primary, alternate)


def test_addresses_are_canonical() -> None:
    server = StunServer(("2001:db8:0:0::1", P1), ("2001:DB8::2", P2))
    _, response = answer(server, request(), ("2001:db8::1", P1), ("2001:db8::99", 1))
    assert response.get(Attr.OTHER_ADDRESS) == ("2001:db8::2", P2)


# -- never raises --------------------------------------------------------------------------

ALL_ON = StunServer((A1, P1), (A2, P2), response_port=True, padding=True, software="x")

_attribute = st.tuples(
    st.sampled_from([*Attr, 0x0000, 0x7FFF, 0x8000, 0xFFFF]),
    st.binary(max_size=24),
)


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    """A STUN header with a correct length and cookie, then arbitrary attribute TLVs."""
    body = b"".join(
        struct.pack("!HH", t, len(v)) + v + bytes(-len(v) % 4)
        for t, v in draw(st.lists(_attribute, max_size=6))
    )
    mtype = draw(st.sampled_from([0x0001, 0x0011, 0x0101, 0x0111, 0x0003, 0x3FFF]))
    tid = draw(st.binary(min_size=12, max_size=12))
    return struct.pack("!HHI", mtype, len(body), 0x2112A442) + tid + body


@given(st.one_of(st.binary(max_size=64), _messages()))
def test_any_input_is_answered_or_dropped_never_raised(data: bytes) -> None:
    for local in ((A1, P1), (A2, P2), (A1, 1)):
        transmit = ALL_ON.handle_datagram(data, local, REMOTE)
        if transmit is not None:
            assert decode(transmit.data).transaction_id == data[8:20]
    ALL_ON.handle_frame(data, LOCAL, REMOTE)
