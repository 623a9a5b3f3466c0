"""The scripted TURN server, driven with raw STUN messages, so that it can serve as an oracle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from stun import (
    AddressFamily,
    Attr,
    Class,
    Message,
    Method,
    NonceFeatures,
    PasswordAlgorithm,
    decode,
    long_term_key,
    nonce_features,
    userhash,
)
from tests.turn.scripted import DEFAULT_CLIENT, Address, ScriptedTurnServer

REALM = "example.org"
CLIENT = DEFAULT_CLIENT
PEER = ("203.0.113.5", 9000)
FORBIDDEN = "203.0.113.9"
RELAY = ("198.51.100.1", 49152)
SHA256, MD5 = PasswordAlgorithm.SHA256, PasswordAlgorithm.MD5
UDP = [(Attr.REQUESTED_TRANSPORT, 17)]


def make(**options: Any) -> ScriptedTurnServer:
    options.setdefault("forbidden_peers", {FORBIDDEN})
    return ScriptedTurnServer({"alice": "pw", "bob": "pw2"}, REALM, **options)


def ask(
    server: ScriptedTurnServer, data: bytes, now: float = 0.0, client: Address = CLIENT
) -> Message:
    replies = server.handle(now, data, client)
    assert len(replies) == 1
    return decode(replies[0])


def plain(method: int, attributes: Sequence[tuple[int, Any]] | None = None) -> bytes:
    return Message(method, Class.REQUEST, attributes=attributes or []).encode()


def signed(
    method: int,
    nonce: str,
    attributes: Sequence[tuple[int, Any]] | None = None,
    *,
    user: str = "alice",
    password: str = "pw",
    algorithm: int | None = None,
    offered: tuple[int, ...] | None = None,
    hashed: bool = False,
    sha256: bool | None = None,
    transaction_id: bytes | None = None,
) -> bytes:
    """A request with long-term credentials, as a client builds it after a 401."""
    items: list[tuple[int, Any]] = list(attributes or [])
    if hashed:
        items.append((Attr.USERHASH, userhash(user, REALM)))
    else:
        items.append((Attr.USERNAME, user))
    items += [(Attr.REALM, REALM), (Attr.NONCE, nonce)]
    if offered is not None:
        items.append((Attr.PASSWORD_ALGORITHMS, offered))
    if algorithm is not None:
        items.append((Attr.PASSWORD_ALGORITHM, algorithm))
    key = long_term_key(user, REALM, password, algorithm if algorithm in (MD5, SHA256) else MD5)
    use_sha256 = algorithm is not None if sha256 is None else sha256
    message = Message(method, Class.REQUEST, transaction_id, items)
    return message.encode(key, sha256=use_sha256)


def challenge(server: ScriptedTurnServer, now: float = 0.0, client: Address = CLIENT) -> Message:
    answer = ask(server, plain(Method.ALLOCATE, UDP), now, client)
    assert answer.cls is Class.ERROR
    assert answer.get(Attr.ERROR_CODE)[0] == 401
    return answer


def allocate(server: ScriptedTurnServer, now: float = 0.0, client: Address = CLIENT) -> str:
    """Allocate for ``client`` (MD5, MESSAGE-INTEGRITY); return the nonce in use."""
    nonce: str = challenge(server, now, client).get(Attr.NONCE)
    answer = ask(server, signed(Method.ALLOCATE, nonce, UDP), now, client)
    assert answer.cls is Class.SUCCESS, answer
    return nonce


def code(answer: Message) -> int:
    assert answer.cls is Class.ERROR, answer
    value: int = answer.get(Attr.ERROR_CODE)[0]
    return value


KEY = long_term_key("alice", REALM, "pw")


# -- credentials -----------------------------------------------------------------------------


def test_rfc5389_server_401_then_allocate_with_md5() -> None:
    server = make()
    first = challenge(server)
    nonce = first.get(Attr.NONCE)
    assert first.get(Attr.REALM) == REALM
    assert nonce_features(nonce) is None  # no cookie
    assert Attr.PASSWORD_ALGORITHMS not in first
    assert not first.has_integrity

    request = signed(Method.ALLOCATE, nonce, [*UDP, (Attr.LIFETIME, 1200)])
    replies = server.handle(1.0, request, CLIENT)
    answer = decode(replies[0])
    assert answer.cls is Class.SUCCESS
    assert answer.check_integrity(KEY) and Attr.MESSAGE_INTEGRITY_SHA256 not in answer
    assert answer.get(Attr.XOR_RELAYED_ADDRESS) == RELAY
    assert answer.get(Attr.XOR_MAPPED_ADDRESS) == CLIENT
    assert answer.get(Attr.LIFETIME) == 1200
    assert server.allocations[CLIENT].expires == 1201.0

    assert server.handle(2.0, request, CLIENT) == replies  # a retransmission: same answer
    again = signed(Method.ALLOCATE, nonce, UDP)
    assert code(ask(server, again, 3.0)) == 437
    assert len(server.requests(Method.ALLOCATE)) == 4
    assert Attr.USERNAME not in server.requests()[0] and Attr.USERNAME in server.requests()[1]


def test_wrong_password_and_unknown_user_get_401_with_a_fresh_nonce() -> None:
    server = make()
    nonce = challenge(server).get(Attr.NONCE)
    for request in (
        signed(Method.ALLOCATE, nonce, UDP, password="nope"),
        signed(Method.ALLOCATE, nonce, UDP, user="mallory"),
    ):
        answer = ask(server, request)
        assert code(answer) == 401 and not answer.has_integrity
        assert answer.get(Attr.NONCE) not in (None, nonce)
    no_nonce = Message(Method.ALLOCATE, Class.REQUEST, attributes=[*UDP, (Attr.USERNAME, "alice")])
    assert code(ask(server, no_nonce.encode(KEY))) == 400
    assert not server.allocations


def test_sha256_negotiation_signs_with_message_integrity_sha256() -> None:
    server = make(password_algorithms=(SHA256, MD5))
    first = challenge(server)
    nonce = first.get(Attr.NONCE)
    assert nonce.startswith(NonceFeatures(password_algorithms=True).cookie())
    assert first.get(Attr.PASSWORD_ALGORITHMS) == (SHA256, MD5)

    # PASSWORD-ALGORITHMS must come back unchanged, PASSWORD-ALGORITHM be one of them.
    for offered, chosen in (((MD5, SHA256), SHA256), ((SHA256, MD5), 3), (None, SHA256)):
        bad = signed(Method.ALLOCATE, nonce, UDP, algorithm=chosen, offered=offered)
        answer = ask(server, bad)
        assert code(answer) == 400 and not answer.has_integrity

    good = signed(Method.ALLOCATE, nonce, UDP, algorithm=SHA256, offered=(SHA256, MD5))
    answer = ask(server, good)
    key = long_term_key("alice", REALM, "pw", "sha256")
    assert answer.cls is Class.SUCCESS
    assert Attr.MESSAGE_INTEGRITY_SHA256 in answer and answer.check_integrity(key)
    assert server.requests()[-1].get(Attr.PASSWORD_ALGORITHM) == SHA256

    # Neither attribute: processed as MD5, answered with MESSAGE-INTEGRITY.
    refresh = ask(server, signed(Method.REFRESH, nonce))
    assert refresh.cls is Class.SUCCESS and refresh.check_integrity(KEY)
    assert Attr.MESSAGE_INTEGRITY_SHA256 not in refresh


def test_userhash_replaces_username_when_anonymity_is_announced() -> None:
    server = make(password_algorithms=(SHA256,), userhash=True)
    nonce = challenge(server).get(Attr.NONCE)
    features = nonce_features(nonce)
    assert features == NonceFeatures(password_algorithms=True, username_anonymity=True)

    # USERNAME and USERHASH together: 400.
    request = signed(
        Method.ALLOCATE,
        nonce,
        [*UDP, (Attr.USERNAME, "alice")],
        hashed=True,
        algorithm=SHA256,
        offered=(SHA256,),
    )
    assert code(ask(server, request)) == 400
    wrong = signed(
        Method.ALLOCATE, nonce, UDP, user="carol", hashed=True, algorithm=SHA256, offered=(SHA256,)
    )
    assert code(ask(server, wrong)) == 401
    request = signed(Method.ALLOCATE, nonce, UDP, hashed=True, algorithm=SHA256, offered=(SHA256,))
    assert ask(server, request).cls is Class.SUCCESS
    last = server.requests(Method.ALLOCATE)[-1]
    assert Attr.USERHASH in last and Attr.USERNAME not in last
    assert server.allocations[CLIENT].username == "alice"


def test_stale_nonce_gets_438_with_a_new_nonce() -> None:
    server = make(password_algorithms=(SHA256, MD5), nonce_lifetime=30.0)
    nonce = allocate(server)
    assert ask(server, signed(Method.REFRESH, nonce), 29.0).cls is Class.SUCCESS
    stale = ask(server, signed(Method.REFRESH, nonce), 30.0)
    assert code(stale) == 438 and not stale.has_integrity
    fresh = stale.get(Attr.NONCE)
    assert fresh != nonce and fresh.startswith(NonceFeatures(True).cookie())
    assert stale.get(Attr.PASSWORD_ALGORITHMS) == (SHA256, MD5)
    assert ask(server, signed(Method.REFRESH, fresh), 31.0).cls is Class.SUCCESS
    # A nonce is only good from the client it was given to.
    assert code(ask(server, signed(Method.REFRESH, fresh), 31.0, ("10.0.0.2", 5000))) == 438


def test_unknown_comprehension_required_attributes_get_420() -> None:
    server = make()
    nonce = challenge(server).get(Attr.NONCE)
    answer = ask(server, signed(Method.ALLOCATE, nonce, [*UDP, (0x0030, b"x")]))
    assert code(answer) == 420 and answer.check_integrity(KEY)
    assert answer.get(Attr.UNKNOWN_ATTRIBUTES) == (0x0030,)
    # An RFC 5389 server does not know PASSWORD-ALGORITHM.
    request = signed(Method.ALLOCATE, nonce, UDP, algorithm=MD5, offered=(MD5,), sha256=False)
    assert ask(server, request).get(Attr.UNKNOWN_ATTRIBUTES) == (Attr.PASSWORD_ALGORITHM,)
    # DONT-FRAGMENT, when the server cannot set DF.
    old = make(supports_dont_fragment=False)
    nonce = challenge(old).get(Attr.NONCE)
    answer = ask(old, signed(Method.ALLOCATE, nonce, [*UDP, (Attr.DONT_FRAGMENT, True)]))
    assert answer.get(Attr.UNKNOWN_ATTRIBUTES) == (Attr.DONT_FRAGMENT,)
    assert ask(old, signed(Method.ALLOCATE, nonce, UDP)).cls is Class.SUCCESS
    assert Attr.DONT_FRAGMENT not in old.requests(Method.ALLOCATE)[-1]


# -- Allocate and Refresh --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ([], 400),
        ([(Attr.REQUESTED_TRANSPORT, 6)], 442),
        ([*UDP, (Attr.REQUESTED_ADDRESS_FAMILY, 2)], 440),  # no relay_ipv6
        ([*UDP, (Attr.REQUESTED_ADDRESS_FAMILY, 1), (Attr.ADDITIONAL_ADDRESS_FAMILY, 2)], 400),
        ([*UDP, (Attr.ADDITIONAL_ADDRESS_FAMILY, 1)], 400),
        ([*UDP, (Attr.ADDITIONAL_ADDRESS_FAMILY, 2), (Attr.EVEN_PORT, True)], 400),
        ([*UDP, (Attr.RESERVATION_TOKEN, b"12345678"), (Attr.EVEN_PORT, False)], 400),
        ([*UDP, (Attr.RESERVATION_TOKEN, b"12345678")], 508),
    ],
)
def test_allocate_rejections(attributes: Sequence[tuple[int, Any]], expected: int) -> None:
    server = make()
    nonce = challenge(server).get(Attr.NONCE)
    answer = ask(server, signed(Method.ALLOCATE, nonce, attributes))
    assert code(answer) == expected and answer.check_integrity(KEY)
    assert not server.allocations


def test_dual_allocation_and_address_error_code() -> None:
    dual = [*UDP, (Attr.ADDITIONAL_ADDRESS_FAMILY, AddressFamily.IPV6)]
    server = make(relay_ipv6="2001:db8::1")
    nonce = challenge(server).get(Attr.NONCE)
    answer = ask(server, signed(Method.ALLOCATE, nonce, dual))
    assert answer.get_all(Attr.XOR_RELAYED_ADDRESS) == [RELAY, ("2001:db8::1", 49152)]

    v4_only = make()
    nonce = challenge(v4_only).get(Attr.NONCE)
    answer = ask(v4_only, signed(Method.ALLOCATE, nonce, dual))
    assert answer.get_all(Attr.XOR_RELAYED_ADDRESS) == [RELAY]
    error = (AddressFamily.IPV6, 440, "Address Family not Supported")
    assert answer.get(Attr.ADDRESS_ERROR_CODE) == error

    old = make(relay_ipv6="2001:db8::1", supports_additional_family=False)
    nonce = challenge(old).get(Attr.NONCE)
    answer = ask(old, signed(Method.ALLOCATE, nonce, dual))
    assert answer.get_all(Attr.XOR_RELAYED_ADDRESS) == [RELAY]
    assert Attr.ADDRESS_ERROR_CODE not in answer


def test_even_port_reservation_token_and_lifetimes() -> None:
    server = make()
    nonce = challenge(server).get(Attr.NONCE)
    request = signed(Method.ALLOCATE, nonce, [*UDP, (Attr.EVEN_PORT, True), (Attr.LIFETIME, 60)])
    answer = ask(server, request)
    token = answer.get(Attr.RESERVATION_TOKEN)
    assert answer.get(Attr.XOR_RELAYED_ADDRESS) == RELAY and len(token) == 8
    assert answer.get(Attr.LIFETIME) == 600  # never below the default
    other = ("10.0.0.2", 5001)
    nonce2 = challenge(server, client=other).get(Attr.NONCE)
    request = signed(Method.ALLOCATE, nonce2, [*UDP, (Attr.RESERVATION_TOKEN, token)])
    answer = ask(server, request, client=other)
    assert answer.get(Attr.XOR_RELAYED_ADDRESS) == (RELAY[0], RELAY[1] + 1)
    refresh = ask(server, signed(Method.REFRESH, nonce, [(Attr.LIFETIME, 99999)]), 10.0)
    assert refresh.get(Attr.LIFETIME) == 3600
    assert server.allocations[CLIENT].expires == 3610.0


def test_refresh_deletes_and_allocations_expire() -> None:
    server = make()
    nonce = allocate(server)
    assert code(ask(server, signed(Method.REFRESH, nonce), client=("10.0.0.9", 1))) == 438
    answer = ask(server, signed(Method.REFRESH, nonce, [(Attr.LIFETIME, 0)]), 5.0)
    assert answer.cls is Class.SUCCESS and answer.get(Attr.LIFETIME) == 0
    assert not server.allocations
    assert code(ask(server, signed(Method.REFRESH, nonce), 6.0)) == 437

    allocate(server, 10.0)
    assert CLIENT in server.allocations
    assert code(ask(server, signed(Method.REFRESH, nonce), 610.0)) == 437


# -- permissions, channels and data ------------------------------------------------------------


def test_create_permission_batches_are_all_or_nothing() -> None:
    server = make()
    nonce = allocate(server)
    peers = [(Attr.XOR_PEER_ADDRESS, PEER), (Attr.XOR_PEER_ADDRESS, (FORBIDDEN, 1))]
    assert code(ask(server, signed(Method.CREATE_PERMISSION, nonce, peers))) == 403
    assert not server.permissions
    ipv6 = [(Attr.XOR_PEER_ADDRESS, ("2001:db8::5", 1))]
    assert code(ask(server, signed(Method.CREATE_PERMISSION, nonce, ipv6))) == 443
    assert code(ask(server, signed(Method.CREATE_PERMISSION, nonce))) == 400
    two = [(Attr.XOR_PEER_ADDRESS, PEER), (Attr.XOR_PEER_ADDRESS, ("203.0.113.6", 1))]
    assert ask(server, signed(Method.CREATE_PERMISSION, nonce, two), 7.0).cls is Class.SUCCESS
    assert server.permissions == {(CLIENT, PEER[0]): 307.0, (CLIENT, "203.0.113.6"): 307.0}
    server.expire(307.0)
    assert not server.permissions


def test_channel_bind_range_and_uniqueness() -> None:
    server = make()
    nonce = allocate(server)

    def bind(number: int, peer: tuple[str, int] = PEER, now: float = 0.0) -> Message:
        attributes = [(Attr.CHANNEL_NUMBER, number), (Attr.XOR_PEER_ADDRESS, peer)]
        return ask(server, signed(Method.CHANNEL_BIND, nonce, attributes), now)

    assert code(bind(0x3FFF)) == 400 and code(bind(0x5000)) == 400
    assert code(bind(0x4000, (FORBIDDEN, 1))) == 403
    assert bind(0x4000, now=1.0).cls is Class.SUCCESS
    assert code(bind(0x4000, ("203.0.113.6", 1))) == 400  # the channel is taken
    assert code(bind(0x4001)) == 400  # the peer has a channel
    assert bind(0x4000, now=2.0).cls is Class.SUCCESS  # a refresh
    channel = server.channels[CLIENT, 0x4000]
    assert (channel.peer, channel.expires) == (PEER, 602.0)
    assert server.permissions == {(CLIENT, PEER[0]): 302.0}


def test_other_users_get_441() -> None:
    server = make()
    nonce = allocate(server)
    answer = ask(server, signed(Method.REFRESH, nonce, user="bob", password="pw2"))
    assert code(answer) == 441


def test_data_needs_a_permission_both_ways() -> None:
    server = make()
    nonce = allocate(server)
    send = Message(
        Method.SEND,
        Class.INDICATION,
        attributes=[(Attr.XOR_PEER_ADDRESS, PEER), (Attr.DATA, b"up")],
    ).encode()
    assert server.handle(0.0, send) == [] and not server.relayed
    assert server.peer_data(0.0, PEER, b"down") == []
    assert server.dropped["no_permission"] == 2

    permit = signed(Method.CREATE_PERMISSION, nonce, [(Attr.XOR_PEER_ADDRESS, (PEER[0], 1))])
    assert ask(server, permit).cls is Class.SUCCESS
    assert server.handle(0.0, send) == []
    assert server.relayed == [(RELAY, PEER, b"up")]
    [data] = server.peer_data(1.0, PEER, b"down", relay=RELAY)
    indication = decode(data)
    assert (indication.method, indication.cls) == (Method.DATA, Class.INDICATION)
    assert indication.get(Attr.XOR_PEER_ADDRESS) == PEER and indication.get(Attr.DATA) == b"down"

    bind = [(Attr.CHANNEL_NUMBER, 0x4001), (Attr.XOR_PEER_ADDRESS, PEER)]
    assert ask(server, signed(Method.CHANNEL_BIND, nonce, bind)).cls is Class.SUCCESS
    assert server.peer_data(2.0, PEER, b"abcde") == [b"\x40\x01\x00\x05abcde"]
    assert server.handle(2.0, b"\x40\x01\x00\x02hi") == []
    assert server.relayed[-1] == (RELAY, PEER, b"hi")
    assert server.log[-1].channel == 0x4001 and server.log[-1].data == b"hi"
    assert server.peer_data(400.0, PEER, b"late") == []  # the permission lapsed


def test_stream_transport_frames_and_pads() -> None:
    server = make(reliable=True)
    nonce = challenge(server).get(Attr.NONCE)
    allocation = signed(Method.ALLOCATE, nonce, UDP)
    assert server.handle(0.0, allocation[:10]) == []  # half a frame
    assert decode(server.handle(0.0, allocation[10:])[0]).cls is Class.SUCCESS
    bind = [(Attr.CHANNEL_NUMBER, 0x4000), (Attr.XOR_PEER_ADDRESS, PEER)]
    assert ask(server, signed(Method.CHANNEL_BIND, nonce, bind)).cls is Class.SUCCESS
    assert server.peer_data(0.0, PEER, b"abcde") == [b"\x40\x00\x00\x05abcde\0\0\0"]
    assert server.handle(0.0, b"\x40\x00\x00\x01x\0\0\0\x40\x00\x00\x02yz\0\0") == []
    assert [data for _, _, data in server.relayed] == [b"x", b"yz"]


# -- scripting ------------------------------------------------------------------------------


def test_scripted_failures_silence_losses_and_restart() -> None:
    server = make()
    server.fail_next(Method.ALLOCATE, 300, alternate=("192.0.2.2", 3478), before_auth=True)
    redirect = ask(server, plain(Method.ALLOCATE, UDP))
    assert code(redirect) == 300 and redirect.get(Attr.ALTERNATE_SERVER) == ("192.0.2.2", 3478)

    nonce = challenge(server).get(Attr.NONCE)
    server.fail_next(Method.ALLOCATE, 486, count=2)
    for _ in range(2):
        answer = ask(server, signed(Method.ALLOCATE, nonce, UDP))
        assert answer.get(Attr.ERROR_CODE) == (486, "Allocation Quota Reached")
        assert answer.check_integrity(KEY)
    server.silent = True
    assert server.handle(0.0, signed(Method.ALLOCATE, nonce, UDP)) == []
    assert not server.allocations
    server.silent = False

    server.lose_next()  # the allocation is made, its answer lost
    request = signed(Method.ALLOCATE, nonce, UDP)
    assert server.handle(0.0, request) == []
    assert ask(server, request).cls is Class.SUCCESS  # the retransmission
    assert len(server.requests(Method.ALLOCATE)) == 7

    server.restart()
    assert code(ask(server, signed(Method.REFRESH, nonce))) == 437
