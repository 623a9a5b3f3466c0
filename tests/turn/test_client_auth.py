"""The TURN client's long-term credentials (RFC 8489 section 9.2) against the scripted server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stun import (
    Attr,
    Class,
    Message,
    Method,
    NonceFeatures,
    PasswordAlgorithm,
    decode,
    userhash,
)
from tests.turn.harness import PEER, PEER2, REALM, Link, connected, make_client, make_server
from tests.turn.scripted import Received
from turn import (
    Allocated,
    AllocationFailed,
    AllocationLost,
    AuthenticationError,
    ChannelBound,
    Closed,
    PermissionCreated,
    PermissionFailed,
    Refreshed,
)

SHA256, MD5 = PasswordAlgorithm.SHA256, PasswordAlgorithm.MD5
TURN_METHODS = (Method.ALLOCATE, Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND)


def exercise(link: Link) -> None:
    """Make the client send every kind of authenticated request after the Allocate."""
    link.client.create_permission(link.now, PEER)
    link.send(b"x", PEER2)  # ChannelBind
    link.advance(540.0)  # Refresh (and permission refreshes)
    assert link.of(Refreshed)
    assert link.of(ChannelBound)
    assert link.of(PermissionCreated)


def authenticated(link: Link) -> list[Received]:
    return [r for r in link.requests() if r.message is not None and r.message.has_integrity]


def test_401_then_long_term_credentials_with_realm_and_nonce() -> None:
    link = connected()
    first, second = link.requests(Method.ALLOCATE)
    for attr in (Attr.USERNAME, Attr.REALM, Attr.NONCE, Attr.MESSAGE_INTEGRITY):
        assert attr not in first
    assert second.get(Attr.USERNAME) == "alice"
    assert second.get(Attr.REALM) == REALM
    assert second.get(Attr.NONCE) is not None
    assert Attr.MESSAGE_INTEGRITY in second
    # An RFC 5389 server: no algorithm negotiation, no SHA-256.
    for attr in (Attr.MESSAGE_INTEGRITY_SHA256, Attr.PASSWORD_ALGORITHM, Attr.USERHASH):
        assert attr not in second
    assert link.client.realm == REALM
    exercise(link)
    for request in authenticated(link)[1:]:
        assert request.get(Attr.USERNAME) == "alice"
        assert request.get(Attr.NONCE) == second.get(Attr.NONCE)


def stale_allocate(link: Link) -> None:
    link.server.fail_next(Method.ALLOCATE, 438)
    link.allocate()


def stale_refresh(link: Link) -> None:
    link.allocate()
    link.server.invalidate_nonces()
    link.advance(540.0)
    assert link.of(Refreshed) == [Refreshed(600)]


def stale_permission(link: Link) -> None:
    link.allocate()
    link.server.invalidate_nonces()
    link.client.create_permission(link.now, PEER)
    link.pump()
    assert link.of(PermissionCreated) == [PermissionCreated((PEER[0],))]


def stale_channel(link: Link) -> None:
    link.allocate()
    link.server.invalidate_nonces()
    link.send(b"x", PEER)
    assert link.of(ChannelBound)
    assert link.server.relayed == [((link.expect(Allocated).relayed), PEER, b"x")]


def stale_close(link: Link) -> None:
    link.allocate()
    link.server.invalidate_nonces()
    link.client.close(link.now)
    link.pump()
    assert link.expect(Closed) and link.client.error is None
    assert not link.server.allocations


@pytest.mark.parametrize(
    ("method", "scenario"),
    [
        (Method.ALLOCATE, stale_allocate),
        (Method.REFRESH, stale_refresh),
        (Method.CREATE_PERMISSION, stale_permission),
        (Method.CHANNEL_BIND, stale_channel),
        (Method.REFRESH, stale_close),
    ],
)
def test_438_stale_nonce_is_retried_with_the_new_nonce(
    method: Method, scenario: Callable[[Link], None]
) -> None:
    link = Link(make_client(), make_server())
    scenario(link)
    stale, retry = [r for r in link.requests(method) if Attr.NONCE in r][-2:]
    assert stale.get(Attr.NONCE) != retry.get(Attr.NONCE)
    assert retry.get(Attr.NONCE) == link.server.nonce_for()
    assert retry.message is not None and stale.message is not None
    assert retry.message.transaction_id != stale.message.transaction_id
    assert retry.attributes[:2] == stale.attributes[:2]  # the same request again
    assert not link.of(AllocationFailed) and not link.of(AllocationLost)


def test_nonce_expiring_on_the_server_is_renewed_transparently() -> None:
    link = connected(make_server(nonce_lifetime=100.0))
    link.send(b"x", PEER)
    link.advance(1200.0)
    assert len(link.of(Refreshed)) == 2
    assert not link.of(AllocationLost) and not link.of(PermissionFailed)
    nonces = {r.get(Attr.NONCE) for r in authenticated(link)}
    assert len(nonces) >= 4  # renewed by 438s along the way


def test_endless_stale_nonces_end_the_allocate() -> None:
    server = make_server()
    server.fail_next(Method.ALLOCATE, 438, count=100)
    link = Link(make_client(), server)
    link.client.allocate(0.0)
    link.advance(100.0)
    error = link.expect(AllocationFailed).error
    assert error.code == 438
    assert 3 <= len(server.requests(Method.ALLOCATE)) <= 6


def test_wrong_password_fails_after_exactly_two_allocates() -> None:
    server = make_server()
    link = Link(make_client(password="wrong"), server)
    link.client.allocate(0.0)
    link.advance(100.0)
    error = link.expect(AllocationFailed).error
    assert isinstance(error, AuthenticationError)
    assert error.realm == REALM and REALM in str(error)
    assert error.code == 401
    assert len(server.requests(Method.ALLOCATE)) == 2
    assert link.client.state == "failed" and link.client.error is error


def test_401_to_an_authenticated_refresh_is_not_retried() -> None:
    link = connected()
    link.server.fail_next(Method.REFRESH, 401)
    link.advance(600.0)
    assert len(link.requests(Method.REFRESH)) == 1
    lost = link.expect(AllocationLost)
    assert lost.error.code == 401


def test_401_to_an_authenticated_create_permission_is_not_retried() -> None:
    link = connected()
    link.server.fail_next(Method.CREATE_PERMISSION, 401)
    link.client.create_permission(link.now, PEER)
    link.advance(5.0)
    assert len(link.requests(Method.CREATE_PERMISSION)) == 1
    failed = link.expect(PermissionFailed)
    assert failed.peer == PEER[0] and failed.code == 401


@pytest.mark.parametrize("offered", [(SHA256, MD5), (MD5, SHA256)])
def test_sha256_negotiated_when_offered(offered: tuple[PasswordAlgorithm, ...]) -> None:
    link = connected(make_server(password_algorithms=offered))
    exercise(link)
    requests = authenticated(link)
    assert {r.method for r in requests} == set(TURN_METHODS)
    for request in requests:
        assert Attr.MESSAGE_INTEGRITY_SHA256 in request
        assert Attr.MESSAGE_INTEGRITY not in request
        assert tuple(request.get(Attr.PASSWORD_ALGORITHMS)) == offered
        assert request.get(Attr.PASSWORD_ALGORITHM) == SHA256
        assert request.get(Attr.USERNAME) == "alice"


def test_md5_when_only_md5_is_offered() -> None:
    link = connected(make_server(password_algorithms=(MD5,)))
    exercise(link)
    for request in authenticated(link):
        assert request.get(Attr.PASSWORD_ALGORITHM) == MD5
        assert tuple(request.get(Attr.PASSWORD_ALGORITHMS)) == (MD5,)


@pytest.mark.parametrize("algorithms", [None, (SHA256,)])
def test_userhash_instead_of_username_when_the_nonce_asks(
    algorithms: tuple[PasswordAlgorithm, ...] | None,
) -> None:
    link = connected(make_server(userhash=True, password_algorithms=algorithms))
    exercise(link)
    for request in authenticated(link):
        assert request.get(Attr.USERHASH) == userhash("alice", REALM)
        assert Attr.USERNAME not in request


def answer_first_allocate(attributes: list[tuple[int, object]]) -> Link:
    """A client whose first Allocate is answered with a 401 carrying ``attributes``."""
    link = Link(make_client(), make_server())
    link.client.allocate(0.0)
    data = link.client.poll_transmit()
    assert data is not None
    request = decode(data)
    challenge = Message(
        Method.ALLOCATE,
        Class.ERROR,
        request.transaction_id,
        [(Attr.ERROR_CODE, (401, "Unauthenticated")), *attributes],
    )
    link.to_client(challenge.encode())
    return link


def test_downgrade_nonce_cookie_without_password_algorithms_is_refused() -> None:
    nonce = NonceFeatures(password_algorithms=True).cookie() + "abcdef"
    link = answer_first_allocate([(Attr.REALM, REALM), (Attr.NONCE, nonce)])
    error = link.expect(AllocationFailed).error
    assert isinstance(error, AuthenticationError)
    assert "downgrade" in str(error)
    assert link.client.poll_transmit() is None  # no authenticated Allocate
    assert link.client.state == "failed"


def test_401_without_realm_or_nonce_fails() -> None:
    link = answer_first_allocate([(Attr.REALM, REALM)])
    error = link.expect(AllocationFailed).error
    assert isinstance(error, AuthenticationError)
    assert link.client.poll_transmit() is None


def test_downgrade_on_a_stale_nonce_is_refused() -> None:
    link = connected(make_server(password_algorithms=(SHA256, MD5)))
    link.server.silent = True
    link.advance(540.0)
    refresh = decode(link.sent[-1][1])
    assert refresh.method == Method.REFRESH
    stale = Message(
        Method.REFRESH,
        Class.ERROR,
        refresh.transaction_id,
        [
            (Attr.ERROR_CODE, (438, "Stale Nonce")),
            (Attr.REALM, REALM),
            (Attr.NONCE, "plain-nonce-without-cookie"),
        ],
    )
    sent = len(link.sent)
    link.to_client(stale.encode())
    error = link.expect(AllocationLost).error
    assert "downgrade" in str(error)
    link.pump()
    assert len(link.sent) == sent  # no retry with the downgraded nonce
