"""The TURN client's allocation timers: refreshes, release, a lost or restarted server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stun import Attr, Method
from tests.turn.harness import PEER, PEER2, Link, connected, make_client, make_server
from tests.turn.scripted import DEFAULT_CLIENT
from turn import (
    AllocateOptions,
    AllocationLost,
    AllocationLostError,
    Closed,
    PermissionCreated,
    Refreshed,
    TurnError,
)


def state(link: Link) -> str:
    """The client's state, unnarrowed (it changes behind mypy's back)."""
    return link.client.state


@pytest.mark.parametrize(
    ("lifetime", "first", "period"),
    [(600, 540.0, 540.0), (30, 15.0, 15.0), (100, 50.0, 50.0), (3600, 3540.0, 3540.0)],
)
def test_refresh_before_the_lifetime_ends(lifetime: int, first: float, period: float) -> None:
    server = make_server(default_lifetime=lifetime, max_lifetime=max(lifetime, 3600))
    link = connected(server)
    assert link.client.poll_timeout() == first
    link.advance(first - 0.001)
    assert not link.requests(Method.REFRESH)
    link.advance(first + 2 * period)
    assert link.request_times(Method.REFRESH) == [first, first + period, first + 2 * period]
    assert link.of(Refreshed) == [Refreshed(lifetime)] * 3
    assert link.times(Refreshed) == link.request_times(Method.REFRESH)
    assert server.allocations[DEFAULT_CLIENT].expires == first + 2 * period + lifetime


def test_refresh_asks_for_the_configured_lifetime() -> None:
    link = connected(options=AllocateOptions(lifetime=1200))
    link.advance(1140.0)
    (refresh,) = link.requests(Method.REFRESH)
    assert refresh.time == 1140.0 and refresh.get(Attr.LIFETIME) == 1200


def test_refresh_follows_the_lifetime_the_server_grants_then() -> None:
    server = make_server()
    link = connected(server)
    server.default_lifetime = 300
    link.advance(540.0)
    assert link.of(Refreshed) == [Refreshed(300)]
    assert link.client.poll_timeout() == 540.0 + 240.0
    link.advance(800.0)
    assert link.request_times(Method.REFRESH) == [540.0, 780.0]


def test_refresh_error_is_retried_before_expiry() -> None:
    link = connected()
    link.server.fail_next(Method.REFRESH, 500)
    link.advance(600.0)
    assert link.request_times(Method.REFRESH) == [540.0, 545.0]
    assert link.of(Refreshed) == [Refreshed(600)]
    assert not link.of(AllocationLost)


def test_close_sends_refresh_with_lifetime_zero() -> None:
    link = connected()
    link.send(b"x", PEER)
    link.client.close(link.now)
    link.pump()
    (refresh,) = link.requests(Method.REFRESH)
    assert refresh.get(Attr.LIFETIME) == 0
    assert link.expect(Closed)
    assert link.client.state == "closed" and link.client.error is None
    assert not link.server.allocations
    assert link.client.poll_timeout() is None
    with pytest.raises(TurnError):
        link.client.send(link.now, b"y", PEER2)


def test_close_whose_answer_is_lost_gets_437_and_is_a_success() -> None:
    link = connected()
    link.server.lose_next(1)
    link.client.close(link.now)
    link.advance(10.0)
    assert len(link.requests(Method.REFRESH)) == 2  # the retransmission gets 437
    assert link.times(Closed) == [0.5]
    assert link.client.state == "closed" and link.client.error is None


def test_437_to_the_release_is_a_success() -> None:
    link = connected()
    link.server.fail_next(Method.REFRESH, 437)
    link.client.close(link.now)
    link.pump()
    assert link.expect(Closed) and link.client.error is None
    assert link.client.state == "closed"


def test_close_on_a_silent_server_gives_up_after_a_few_seconds() -> None:
    link = connected()
    link.server.silent = True
    link.client.close(link.now)
    link.advance(100.0)
    assert link.times(Closed) == [5.0]
    assert link.client.state == "closed" and link.client.error is not None


def test_close_while_allocating_releases_once_granted() -> None:
    server = make_server()
    link = Link(make_client(), server)
    link.client.allocate(0.0)
    link.client.close(0.0)
    link.advance(10.0)
    assert link.expect(Closed) and link.client.state == "closed"
    assert not server.allocations


def test_close_after_the_challenge_releases_the_allocation_once_granted() -> None:
    server = make_server()
    link = Link(make_client(), server)
    link.client.allocate(0.0)
    first = link.client.poll_transmit()
    assert first is not None
    link.deliver(first)  # the 401: the authenticated Allocate is now waiting to go
    link.client.close(0.0)
    assert state(link) == "closing"
    link.advance(10.0)
    assert [r.get(Attr.LIFETIME) for r in link.requests(Method.REFRESH)] == [0]
    assert link.expect(Closed) and state(link) == "closed"
    assert link.client.error is None
    assert not server.allocations


def test_437_on_refresh_loses_the_allocation() -> None:
    link = connected()
    link.send(b"x", PEER)
    link.server.fail_next(Method.REFRESH, 437)
    link.advance(1000.0)
    lost = link.expect(AllocationLost)
    assert link.times(AllocationLost) == [540.0]
    assert isinstance(lost.error, AllocationLostError) and lost.error.code == 437
    assert len(link.requests(Method.REFRESH)) == 1
    assert link.client.state == "failed"
    with pytest.raises(AllocationLostError):
        link.client.send(link.now, b"y", PEER2)
    with pytest.raises(AllocationLostError):
        link.client.create_permission(link.now, PEER2)


def test_silent_server_loses_the_allocation_when_the_refresh_times_out() -> None:
    link = connected()  # lifetime 600: the Refresh at 540 times out at 579.5, before 600
    link.client.create_permission(link.now, PEER)
    link.advance(1.0)
    link.server.silent = True
    link.advance(2000.0)
    (lost,) = link.of(AllocationLost)
    assert link.times(AllocationLost) == [579.5]
    assert isinstance(lost.error, AllocationLostError)
    assert link.request_times(Method.REFRESH) == [540.0, 540.5, 541.5, 543.5, 547.5, 555.5, 571.5]
    assert link.client.poll_timeout() is None
    with pytest.raises(AllocationLostError):
        link.client.send(link.now, b"x", PEER)


def test_silent_server_loses_a_short_allocation_when_it_expires() -> None:
    server = make_server(default_lifetime=30)
    link = connected(server)  # refresh at 15: its 39.5 s would end after expiry at 30
    server.silent = True
    link.advance(100.0)
    (lost,) = link.of(AllocationLost)
    assert link.times(AllocationLost) == [30.0]
    assert link.request_times(Method.REFRESH)[0] == 15.0
    assert max(link.request_times(Method.REFRESH)) < 30.0
    assert isinstance(lost.error, AllocationLostError) and lost.error.code is None
    with pytest.raises(AllocationLostError):
        link.client.send(link.now, b"x", PEER)


def test_silent_server_after_a_refresh_error_loses_the_allocation_at_expiry() -> None:
    server = make_server(default_lifetime=30)
    link = connected(server)
    server.fail_next(Method.REFRESH, 500)
    link.advance(15.0)  # refused: tried again 5 s later
    server.silent = True
    link.advance(100.0)
    assert link.request_times(Method.REFRESH)[:2] == [15.0, 20.0]
    assert link.times(AllocationLost) == [30.0]  # not 20 + 39.5


def test_lost_refresh_answers_are_recovered_by_retransmission() -> None:
    link = connected()
    link.server.lose_next(3)
    link.advance(600.0)
    assert link.times(Refreshed) == [543.5]
    assert not link.of(AllocationLost)


def test_server_restart_is_noticed_at_the_next_refresh() -> None:
    server = make_server()
    link = connected(server)
    link.send(b"x", PEER)
    link.advance(100.0)
    server.restart()
    link.advance(2000.0)
    lost = link.expect(AllocationLost)
    assert lost.error.code == 437
    assert link.times(AllocationLost) == [240.0]  # the permission refresh comes first
    with pytest.raises(AllocationLostError):
        link.client.send(link.now, b"y", PEER2)


def test_server_restart_without_permissions_is_noticed_by_the_refresh() -> None:
    server = make_server()
    link = connected(server)
    server.restart()
    link.advance(2000.0)
    lost = link.expect(AllocationLost)
    assert lost.error.code == 437 and "437" in str(lost.error)
    assert link.times(AllocationLost) == [540.0]
    assert len(link.requests(Method.REFRESH)) == 1
    with pytest.raises(AllocationLostError):
        link.client.send(link.now, b"y", PEER)


def test_connection_lost_loses_the_allocation() -> None:
    link = connected()
    link.client.handle_connection_lost("reset by peer")
    link.pump()
    lost = link.expect(AllocationLost)
    assert "reset by peer" in str(lost.error)
    with pytest.raises(AllocationLostError):
        link.client.send(link.now, b"x", PEER)


def test_permission_refresh_and_allocation_refresh_keep_everything_alive() -> None:
    server = make_server()
    link = connected(server)
    link.send(b"x", PEER)
    link.client.create_permission(link.now, PEER2)
    for t in range(60, 3601, 60):
        link.advance(float(t))
        link.send(b"x", PEER)
    assert not link.of(AllocationLost)
    assert len(link.of(Refreshed)) == 6
    assert {ip for _, ip in server.permissions} == {PEER[0], PEER2[0]}
    assert link.server.dropped["no_channel"] == 0
    assert link.server.dropped["no_permission"] == 0
    assert len(link.of(PermissionCreated)) >= 15


def lose_by_refresh_437(link: Link) -> None:
    link.server.fail_next(Method.REFRESH, 437)
    link.advance(540.0)


def lose_by_restart(link: Link) -> None:
    link.server.restart()
    link.advance(540.0)


def lose_by_silence(link: Link) -> None:
    link.server.silent = True
    link.advance(600.0)


def lose_connection(link: Link) -> None:
    link.client.handle_connection_lost("reset")
    link.pump()


@pytest.mark.parametrize(
    "lose",
    [
        lose_by_refresh_437,
        lose_by_restart,
        lose_by_silence,
        lose_connection,
    ],
)
def test_send_on_a_bound_channel_raises_once_the_allocation_is_lost(
    lose: Callable[[Link], None],
) -> None:
    link = connected()
    link.send(b"x", PEER)
    assert link.send(b"fast", PEER) is not None  # ChannelData
    lose(link)
    assert link.of(AllocationLost)
    with pytest.raises(AllocationLostError):
        link.client.send(link.now, b"y", PEER)


def test_send_on_a_bound_channel_raises_once_closed() -> None:
    link = connected()
    link.send(b"x", PEER)
    link.client.close(link.now)
    link.pump()
    assert link.client.state == "closed"
    with pytest.raises(TurnError):
        link.client.send(link.now, b"y", PEER)
