"""The sans-I/O TURN client against the scripted server: Allocate, its options and its errors.

Authentication, permissions, channels and timers have their own files (test_client_*.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from stun import AddressFamily, Attr, Class, Message, Method, decode
from stun.attributes import Icmp
from tests.turn.harness import (
    PEER,
    PEER_V6,
    RELAY_IP,
    RELAY_IPV6,
    Link,
    connected,
    make_client,
    make_server,
    success,
)
from tests.turn.scripted import DEFAULT_CLIENT, REASONS
from turn import (
    Allocated,
    AllocateOptions,
    AllocationError,
    AllocationFailed,
    AlternateServer,
    PeerIcmp,
    PermissionCreated,
    PermissionFailed,
    Refreshed,
    ServerBackoff,
    TurnError,
)
from turn.backoff import MISMATCH_HOLD, QUOTA_HOLD

OTHER_CLIENT = ("10.0.0.2", 6000)


def failure(link: Link) -> TurnError:
    return link.expect(AllocationFailed).error


# -- Allocate and its options ------------------------------------------------------------------


def test_allocate_udp_after_a_401() -> None:
    link = connected()
    first, second = link.requests(Method.ALLOCATE)
    for request in (first, second):
        assert request.get(Attr.REQUESTED_TRANSPORT) == 17
        for attr in (
            Attr.REQUESTED_ADDRESS_FAMILY,
            Attr.ADDITIONAL_ADDRESS_FAMILY,
            Attr.DONT_FRAGMENT,
            Attr.EVEN_PORT,
            Attr.RESERVATION_TOKEN,
            Attr.LIFETIME,
        ):
            assert attr not in request
    allocated = link.expect(Allocated)
    assert allocated == Allocated(relayed=(RELAY_IP, 49152), mapped=DEFAULT_CLIENT, lifetime=600)
    assert link.client.state == "allocated" and link.client.allocation == allocated
    assert link.server.allocations[DEFAULT_CLIENT].relayed == [(RELAY_IP, 49152)]


def test_allocate_asks_for_the_configured_lifetime() -> None:
    link = connected(options=AllocateOptions(lifetime=1200))
    assert link.requests(Method.ALLOCATE)[-1].get(Attr.LIFETIME) == 1200
    assert link.expect(Allocated).lifetime == 1200


def test_allocate_ipv6_with_requested_address_family() -> None:
    server = make_server(relay_ipv6=RELAY_IPV6)
    link = connected(server, options=AllocateOptions(family="ipv6"))
    request = link.requests(Method.ALLOCATE)[-1]
    assert request.get(Attr.REQUESTED_ADDRESS_FAMILY) == AddressFamily.IPV6
    assert Attr.ADDITIONAL_ADDRESS_FAMILY not in request
    allocated = link.expect(Allocated)
    assert allocated.relayed == (RELAY_IPV6, 49152)
    assert allocated.additional_relayed is None and allocated.additional_error is None
    with pytest.raises(ValueError, match="443"):
        link.client.send(link.now, b"x", PEER)  # an IPv4 peer on an IPv6-only relay
    link.send(b"six", PEER_V6)
    assert link.server.relayed == [((RELAY_IPV6, 49152), PEER_V6, b"six")]


def test_dual_stack_gets_two_relayed_addresses() -> None:
    server = make_server(relay_ipv6=RELAY_IPV6)
    link = connected(server, options=AllocateOptions(dual_stack=True))
    request = link.requests(Method.ALLOCATE)[-1]
    assert request.get(Attr.ADDITIONAL_ADDRESS_FAMILY) == AddressFamily.IPV6
    assert Attr.REQUESTED_ADDRESS_FAMILY not in request
    allocated = link.expect(Allocated)
    assert allocated.relayed == (RELAY_IP, 49152)
    assert allocated.additional_relayed == (RELAY_IPV6, 49152)
    assert allocated.additional_error is None
    link.send(b"four", PEER)
    link.send(b"six", PEER_V6)
    assert sorted(link.server.relayed) == sorted(
        [((RELAY_IP, 49152), PEER, b"four"), ((RELAY_IPV6, 49152), PEER_V6, b"six")]
    )


def test_dual_stack_partial_success_reports_the_address_error() -> None:
    link = connected(make_server(), options=AllocateOptions(dual_stack=True))  # no IPv6 relay
    allocated = link.expect(Allocated)
    assert allocated.relayed == (RELAY_IP, 49152)
    assert allocated.additional_relayed is None
    assert allocated.additional_error is not None
    assert "440" in allocated.additional_error
    assert REASONS[440] in allocated.additional_error
    with pytest.raises(ValueError):
        link.client.send(link.now, b"x", PEER_V6)


def test_dual_stack_on_a_server_that_ignores_additional_address_family() -> None:
    server = make_server(relay_ipv6=RELAY_IPV6, supports_additional_family=False)
    link = connected(server, options=AllocateOptions(dual_stack=True))
    allocated = link.expect(Allocated)
    assert allocated.relayed == (RELAY_IP, 49152)
    assert allocated.additional_relayed is None
    assert allocated.additional_error is not None
    assert "ADDITIONAL-ADDRESS-FAMILY" in allocated.additional_error


def test_dont_fragment_accepted() -> None:
    link = connected(options=AllocateOptions(dont_fragment=True))
    assert Attr.DONT_FRAGMENT in link.requests(Method.ALLOCATE)[-1]
    assert link.expect(Allocated).dont_fragment is True
    assert link.server.allocations[DEFAULT_CLIENT].dont_fragment


def test_dont_fragment_unknown_to_the_server_is_dropped_on_retry() -> None:
    server = make_server(supports_dont_fragment=False)
    link = connected(server, options=AllocateOptions(dont_fragment=True))
    requests = link.requests(Method.ALLOCATE)
    assert len(requests) == 3  # 401, 420 listing DONT-FRAGMENT, success
    assert Attr.DONT_FRAGMENT in requests[1]
    assert Attr.DONT_FRAGMENT not in requests[2]
    assert requests[2].get(Attr.REQUESTED_TRANSPORT) == 17
    assert link.expect(Allocated).dont_fragment is False
    assert not server.allocations[DEFAULT_CLIENT].dont_fragment


def test_420_for_another_attribute_fails_naming_it() -> None:
    server = make_server()
    server.fail_next(
        Method.ALLOCATE, 420, attributes=[(Attr.UNKNOWN_ATTRIBUTES, (Attr.EVEN_PORT,))]
    )
    link = Link(make_client(options=AllocateOptions(even_port=False)), server)
    link.client.allocate(0.0)
    link.advance(100.0)
    error = failure(link)
    assert isinstance(error, AllocationError)
    assert error.code == 420 and "EVEN-PORT" in str(error)
    assert len(server.requests(Method.ALLOCATE)) == 2


def test_even_port() -> None:
    server = make_server()
    connected(server)  # takes 49152: the next free port is odd
    link = Link(make_client(options=AllocateOptions(even_port=False)), server, address=OTHER_CLIENT)
    allocated = link.allocate()
    assert link.requests(Method.ALLOCATE)[-1].get(Attr.EVEN_PORT) is False
    assert allocated.relayed == (RELAY_IP, 49154)
    assert allocated.reservation_token is None


def test_even_port_reserving_the_next_one_and_its_reservation_token() -> None:
    server = make_server()
    first = Link(make_client(options=AllocateOptions(even_port=True)), server)
    allocated = first.allocate()
    assert first.requests(Method.ALLOCATE)[-1].get(Attr.EVEN_PORT) is True
    token = allocated.reservation_token
    assert token is not None and len(token) == 8
    port = allocated.relayed[1]
    assert port % 2 == 0

    options = AllocateOptions(reservation_token=token)
    second = Link(make_client(options=options), server, address=OTHER_CLIENT)
    reserved = second.allocate()
    request = second.requests(Method.ALLOCATE)[-1]
    assert request.get(Attr.RESERVATION_TOKEN) == token
    assert Attr.EVEN_PORT not in request and Attr.REQUESTED_ADDRESS_FAMILY not in request
    assert reserved.relayed == (RELAY_IP, port + 1)


@pytest.mark.parametrize(
    "options",
    [
        {"family": "ipv6", "dual_stack": True},  # REQUESTED- with ADDITIONAL-ADDRESS-FAMILY
        {"reservation_token": b"12345678", "even_port": False},
        {"reservation_token": b"12345678", "even_port": True},
        {"reservation_token": b"12345678", "family": "ipv6"},
        {"reservation_token": b"12345678", "dual_stack": True},
        {"even_port": True, "dual_stack": True},  # EVEN-PORT R=1 with ADDITIONAL
        {"reservation_token": b"short"},
        {"family": "ipv5"},
        {"lifetime": 0},
    ],
)
def test_options_a_server_refuses_with_400_are_refused_locally(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AllocateOptions(**options)


def test_even_port_without_reservation_goes_with_dual_stack() -> None:
    options = AllocateOptions(even_port=False, dual_stack=True)  # only R=1 is refused
    server = make_server(relay_ipv6=RELAY_IPV6)
    allocated = connected(server, options=options).expect(Allocated)
    assert allocated.additional_relayed is not None


# -- Allocate errors ---------------------------------------------------------------------------


def test_300_alternate_server_with_domain() -> None:
    server = make_server()
    alternate = ("192.0.2.2", 3479)
    server.fail_next(
        Method.ALLOCATE,
        300,
        alternate=alternate,
        attributes=[(Attr.ALTERNATE_DOMAIN, "turn2.example.org")],
        before_auth=True,
    )
    link = Link(make_client(), server)
    link.client.allocate(0.0)
    link.advance(100.0)
    error = failure(link)
    assert isinstance(error, AlternateServer)
    assert error.server == alternate and error.domain == "turn2.example.org"
    assert error.code == 300
    assert len(server.requests(Method.ALLOCATE)) == 1
    assert link.client.state == "failed" and link.client.error is error


def test_300_after_authentication_without_domain() -> None:
    server = make_server()
    server.fail_next(Method.ALLOCATE, 300, alternate=("192.0.2.2", 3478))
    link = Link(make_client(), server)
    link.client.allocate(0.0)
    link.pump()
    error = failure(link)
    assert isinstance(error, AlternateServer)
    assert error.server == ("192.0.2.2", 3478) and error.domain is None


def test_300_not_followed_when_told_not_to() -> None:
    server = make_server()
    server.fail_next(Method.ALLOCATE, 300, alternate=("192.0.2.2", 3478), before_auth=True)
    link = Link(make_client(follow_alternate=False), server)
    link.client.allocate(0.0)
    link.pump()
    error = failure(link)
    assert type(error) is AllocationError
    assert error.code == 300


def test_437_on_allocate() -> None:
    server = make_server()
    connected(server)
    link = Link(make_client(), server)  # the same 5-tuple: the server has an allocation
    link.client.allocate(0.0)
    link.advance(100.0)
    error = failure(link)
    assert isinstance(error, AllocationError)
    assert error.code == 437 and "437" in str(error)
    assert len(server.requests(Method.ALLOCATE)) == 4  # 2 + (401, 437), no retry


def test_440_is_never_retried() -> None:
    server = make_server()  # no IPv6 relay
    link = Link(make_client(options=AllocateOptions(family="ipv6")), server)
    link.client.allocate(0.0)
    link.advance(1000.0)
    error = failure(link)
    assert isinstance(error, AllocationError)
    assert error.code == 440 and "440" in str(error)
    allocates = server.requests(Method.ALLOCATE)
    assert len(allocates) == 2
    assert [Attr.MESSAGE_INTEGRITY in r for r in allocates] == [False, True]


@pytest.mark.parametrize("code", [403, 441, 442, 486, 500, 508])
def test_allocate_errors_name_code_and_reason(code: int) -> None:
    server = make_server()
    server.fail_next(Method.ALLOCATE, code)
    link = Link(make_client(), server)
    link.client.allocate(0.0)
    link.advance(100.0)
    error = failure(link)
    assert isinstance(error, AllocationError)
    assert error.code == code and error.reason == REASONS[code]
    assert f"{code} {REASONS[code]}" in str(error)
    assert len(server.requests(Method.ALLOCATE)) == 2


def test_allocate_timeout() -> None:
    server = make_server()
    server.silent = True
    link = Link(make_client(), server)
    link.client.allocate(0.0)
    link.advance(100.0)
    error = failure(link)
    assert error.code is None
    assert link.times(AllocationFailed) == [39.5]
    assert len(server.requests(Method.ALLOCATE)) == 7


def test_lost_allocate_answer_gets_the_same_allocation_on_retransmission() -> None:
    server = make_server()
    link = Link(make_client(), server)
    link.client.allocate(0.0)
    first = link.client.poll_transmit()
    assert first is not None
    link.deliver(first)  # the 401
    server.lose_next(1)  # the server allocates, its answer is lost
    link.advance(10.0)
    assert link.times(Allocated) == [0.5]
    authenticated = server.requests(Method.ALLOCATE)[1:]
    assert len(authenticated) == 2
    assert authenticated[0].message is not None and authenticated[1].message is not None
    assert authenticated[0].message.transaction_id == authenticated[1].message.transaction_id
    assert len(server.allocations) == 1


# -- ServerBackoff (RFC 8656 section 7.4) ------------------------------------------------------

SERVER = ("192.0.2.1", 3478)
PLAIN = AllocateOptions()
EVEN = AllocateOptions(even_port=True)
TOKEN = AllocateOptions(reservation_token=b"12345678")


def test_backoff_437_after_every_port_holds_two_minutes() -> None:
    backoff = ServerBackoff()
    backoff.record(SERVER, AllocationError("437", 437), 10.0, PLAIN)
    assert MISMATCH_HOLD == 120.0
    with pytest.raises(AllocationError, match="437"):
        backoff.check(SERVER, 129.9, PLAIN)
    with pytest.raises(AllocationError):
        backoff.check(SERVER, 129.9, EVEN)
    backoff.check(("192.0.2.2", 3478), 11.0, PLAIN)  # other servers are not held
    backoff.check(SERVER, 130.0, PLAIN)


@pytest.mark.parametrize("code", [486, 508])
def test_backoff_quota_and_capacity_hold_at_least_a_minute(code: int) -> None:
    backoff = ServerBackoff()
    backoff.record(SERVER, AllocationError("x", code), 0.0, PLAIN)
    assert QUOTA_HOLD >= 60.0
    with pytest.raises(AllocationError, match=str(code)):
        backoff.check(SERVER, 59.9, PLAIN)
    backoff.check(SERVER, QUOTA_HOLD, PLAIN)


@pytest.mark.parametrize("special", [EVEN, TOKEN])
def test_backoff_508_to_even_port_or_token_holds_only_such_requests(
    special: AllocateOptions,
) -> None:
    backoff = ServerBackoff()
    backoff.record(SERVER, AllocationError("508", 508), 0.0, special)
    backoff.check(SERVER, 1.0, PLAIN)
    for options in (EVEN, TOKEN):
        with pytest.raises(AllocationError, match="508"):
            backoff.check(SERVER, 59.0, options)
    backoff.check(SERVER, 60.0, EVEN)


@pytest.mark.parametrize("code", [300, 401, 403, 440, 500, None])
def test_backoff_other_failures_hold_nothing(code: int | None) -> None:
    backoff = ServerBackoff()
    backoff.record(SERVER, TurnError("x", code), 0.0, PLAIN)
    backoff.check(SERVER, 0.0, PLAIN)


# -- malformed and forged input -------------------------------------------------------------


def snapshot(link: Link) -> tuple[Any, ...]:
    client = link.client
    return (client.state, client.allocation, client.error, client.poll_timeout(), link.events[:])


def test_garbage_and_truncated_input_is_counted_and_ignored() -> None:
    link = connected()
    link.send(b"hi", PEER)
    before = snapshot(link)
    valid = Message(Method.DATA, Class.INDICATION, attributes=[(Attr.XOR_PEER_ADDRESS, PEER)])
    for data in (
        b"",
        b"\xff" * 40,
        b"\x00\x01",
        valid.encode()[:22],  # truncated STUN
        b"\x00\x01\x00\x08" + b"\x21\x12\xa4\x42" + b"\x00" * 12,  # length beyond the end
        b"\x40",  # a ChannelData header cut short
        b"\x40\x00\x00\x10abc",  # ChannelData longer than what came
        valid.encode(),  # a Data indication without DATA
    ):
        assert link.client.handle_data(link.now, data) is None
    assert link.client.stats.dropped_malformed == 8
    assert link.client.poll_transmit() is None and link.client.poll_event() is None
    assert snapshot(link) == before


def test_unmatched_and_stray_messages_are_counted_and_ignored() -> None:
    link = connected()
    link.client.create_permission(link.now, PEER)
    pending = decode(link.client.poll_transmit() or b"")
    before = snapshot(link)
    refresh = Message(Method.REFRESH, Class.SUCCESS, b"\x01" * 12, [(Attr.LIFETIME, 600)])
    request = Message(Method.BINDING, Class.REQUEST, b"\x02" * 12)
    indication = Message(Method.SEND, Class.INDICATION, b"\x03" * 12)
    messages = [refresh.encode(), request.encode(), indication.encode()]
    # The transaction id of a pending request, but another method.
    messages.append(Message(Method.REFRESH, Class.SUCCESS, pending.transaction_id).encode())
    for data in messages:
        assert link.client.handle_data(link.now, data) is None
    assert link.client.stats.dropped_unmatched == 4
    assert link.client.stats.dropped_malformed == 0
    assert snapshot(link) == before
    link.advance(600.0)  # the CreatePermission is retransmitted and answered
    assert link.times(PermissionCreated)[0] == 0.5
    assert link.of(Refreshed) == [Refreshed(600)]  # still working


def test_duplicate_response_is_unmatched() -> None:
    link = connected()
    link.client.create_permission(link.now, PEER)
    request = link.client.poll_transmit()
    assert request is not None
    (answer,) = link.server.handle(link.now, request)
    link.to_client(answer)
    assert link.of(PermissionCreated) == [PermissionCreated((PEER[0],))]
    assert link.client.handle_data(link.now, answer) is None
    assert link.client.stats.dropped_unmatched == 1
    assert link.of(PermissionCreated) == [PermissionCreated((PEER[0],))]


def forged_refresh_answers(link: Link) -> list[bytes]:
    """Answers to the pending Refresh it must discard: signed with the wrong key, unsigned,
    and an error response without ERROR-CODE."""
    link.server.silent = True
    link.advance(540.0)  # the Refresh goes out unanswered
    refresh = decode(link.sent[-1][1])
    assert refresh.method == Method.REFRESH
    forged = success(refresh, [(Attr.LIFETIME, 600)], b"not the key")
    unsigned = success(refresh, [(Attr.LIFETIME, 600)], None)
    no_code = Message(Method.REFRESH, Class.ERROR, refresh.transaction_id).encode()
    return [forged, unsigned, no_code]


def test_response_with_a_wrong_message_integrity_is_ignored() -> None:
    link = connected()
    forged = forged_refresh_answers(link)
    before = snapshot(link)
    for data in forged:
        assert link.client.handle_data(link.now, data) is None
    assert snapshot(link) == before
    link.server.silent = False
    link.advance(541.0)  # the retransmission at 540.5 gets the real answer
    assert link.of(Refreshed) == [Refreshed(600)]
    assert link.times(Refreshed) == [540.5]


def test_response_with_a_wrong_message_integrity_is_counted() -> None:
    link = connected()
    for data in forged_refresh_answers(link):
        link.client.handle_data(link.now, data)
    stats = link.client.stats
    assert stats.dropped_unverified == 3


def test_data_indication_with_icmp_is_an_event() -> None:
    link = connected()
    indication = Message(
        Method.DATA,
        Class.INDICATION,
        b"\x05" * 12,
        [(Attr.XOR_PEER_ADDRESS, PEER), (Attr.ICMP, Icmp(3, 3, 0))],
    )
    assert link.to_client(indication.encode()) is None
    assert link.of(PeerIcmp) == [PeerIcmp(PEER, Icmp(3, 3, 0))]
    assert not link.of(PermissionFailed)
