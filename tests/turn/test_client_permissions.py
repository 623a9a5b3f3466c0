"""The TURN client's permissions (RFC 8656 section 9) and its queue of data waiting for them."""

from __future__ import annotations

import itertools

import pytest

from stun import Attr, Method
from tests.turn.harness import (
    FORBIDDEN,
    PEER,
    PEER2,
    PEER3,
    RELAY_IP,
    connected,
    make_server,
    peers_of,
    send_indication,
)
from tests.turn.scripted import DEFAULT_CLIENT, REASONS
from turn import (
    AllocateOptions,
    AllocationLost,
    DataDropped,
    PeerPermissionError,
    PermissionCreated,
    PermissionFailed,
)
from turn.client import PERMISSION_HOLD

RELAY = (RELAY_IP, 49152)
IPS = (PEER[0], PEER2[0], PEER3[0])


def test_several_peers_in_one_create_permission() -> None:
    link = connected()
    waiting = link.client.create_permission(link.now, PEER, PEER2[0], PEER3)
    assert waiting == set(IPS)
    link.pump()
    (request,) = link.requests(Method.CREATE_PERMISSION)
    assert peers_of(request) == list(IPS)
    assert link.of(PermissionCreated) == [PermissionCreated(IPS)]
    assert {ip for _, ip in link.server.permissions} == set(IPS)
    # Installed ones are not asked for again.
    assert link.client.create_permission(link.now, PEER, PEER2) == set()
    link.pump()
    assert len(link.requests(Method.CREATE_PERMISSION)) == 1


def test_peers_are_ip_addresses_in_canonical_form() -> None:
    server = make_server(relay_ipv6="2001:db8::1")
    link = connected(server, options=AllocateOptions(dual_stack=True))
    assert link.client.create_permission(link.now, "2001:DB8:0:0::5") == {"2001:db8::5"}
    link.pump()
    assert link.of(PermissionCreated) == [PermissionCreated(("2001:db8::5",))]
    with pytest.raises(ValueError, match="IP address"):
        link.client.create_permission(link.now, "peer.example.org")


def test_batch_refused_with_403_falls_back_to_one_request_per_peer() -> None:
    link = connected()
    link.client.create_permission(link.now, PEER, FORBIDDEN, PEER3)
    link.pump()
    batch, *singles = link.requests(Method.CREATE_PERMISSION)
    assert peers_of(batch) == [PEER[0], FORBIDDEN[0], PEER3[0]]
    assert sorted(peers_of(r)[0] for r in singles) == sorted(peers_of(batch))
    assert all(len(peers_of(r)) == 1 for r in singles)
    created = [ip for event in link.of(PermissionCreated) for ip in event.peers]
    assert sorted(created) == sorted([PEER[0], PEER3[0]])
    (failed,) = link.of(PermissionFailed)
    assert failed.peer == FORBIDDEN[0] and failed.code == 403
    assert "403" in failed.reason and REASONS[403] in failed.reason
    assert {ip for _, ip in link.server.permissions} == {PEER[0], PEER3[0]}
    with pytest.raises(PeerPermissionError):
        link.client.send(link.now, b"x", FORBIDDEN)


def test_443_names_code_and_reason() -> None:
    link = connected()
    link.server.fail_next(Method.CREATE_PERMISSION, 443)
    link.client.create_permission(link.now, PEER)
    link.pump()
    (failed,) = link.of(PermissionFailed)
    assert failed.code == 443 and f"443 {REASONS[443]}" in failed.reason


def test_437_on_create_permission_means_the_allocation_is_gone() -> None:
    link = connected()
    link.server.restart()
    link.client.create_permission(link.now, PEER)
    link.pump()
    assert link.expect(AllocationLost).error.code == 437


@pytest.mark.parametrize("channels", [False, True])
def test_data_waits_for_its_permission_and_is_flushed_when_installed(channels: bool) -> None:
    link = connected(channels=channels)
    for payload in (b"one", b"two"):
        assert link.client.send(link.now, payload, PEER) is None
    # Nothing left before the permission: only its request.
    sent = []
    while (data := link.client.poll_transmit()) is not None:
        sent.append(data)
    assert len(sent) == 1
    link.deliver(sent[0])
    link.pump()
    assert link.server.relayed == [(RELAY, PEER, b"one"), (RELAY, PEER, b"two")]
    assert link.server.dropped["no_permission"] == 0
    assert link.of(PermissionCreated) == [PermissionCreated((PEER[0],))]
    assert not link.of(DataDropped)


@pytest.mark.parametrize("channels", [False, True])
def test_data_for_a_forbidden_peer_is_reported_dropped(channels: bool) -> None:
    link = connected(channels=channels)
    for data in (b"one", b"two"):
        link.client.send(link.now, data, FORBIDDEN)
    link.pump()
    (failed,) = link.of(PermissionFailed)
    assert failed.peer == FORBIDDEN[0] and failed.code == 403 and failed.dropped == 2
    assert link.server.relayed == []
    with pytest.raises(PeerPermissionError):
        link.client.send(link.now, b"three", FORBIDDEN)
    # The refusal is remembered for a while, then the peer may be tried again.
    link.advance(link.now + PERMISSION_HOLD)
    link.send(b"four", FORBIDDEN)
    assert len(link.of(PermissionFailed)) == 2
    assert link.of(PermissionFailed)[-1].dropped == 1


def test_queue_byte_limit_drops_what_does_not_fit() -> None:
    server = make_server()
    link = connected(server, queue_bytes=1000)
    server.silent = True
    link.send(b"a" * 600, PEER)
    assert not link.of(DataDropped)
    link.send(b"b" * 600, PEER2)
    (dropped,) = link.of(DataDropped)
    assert dropped.peer == PEER2 and dropped.datagrams == 1
    link.send(b"c" * 400, PEER3)  # still fits
    assert len(link.of(DataDropped)) == 1


def test_queue_age_limit_drops_old_data() -> None:
    server = make_server()
    link = connected(server, queue_age=10.0)
    server.silent = True
    link.send(b"old", PEER)
    link.advance(5.0)
    link.send(b"newer", PEER)
    link.advance(20.0)
    drops = link.of(DataDropped)
    assert [d.peer for d in drops] == [PEER, PEER]
    assert link.times(DataDropped) == [10.0, 15.0]
    assert "10 s" in drops[0].reason


def test_permission_refreshed_at_240_seconds_by_default() -> None:
    link = connected()
    link.client.create_permission(link.now, PEER)
    link.advance(1000.0)
    assert link.request_times(Method.CREATE_PERMISSION) == [0.0, 240.0, 480.0, 720.0, 960.0]
    assert (DEFAULT_CLIENT, PEER[0]) in link.server.permissions


def test_permission_refresh_configured() -> None:
    link = connected(permission_refresh=100.0)
    link.client.create_permission(link.now, PEER)
    link.advance(350.0)
    assert link.request_times(Method.CREATE_PERMISSION) == [0.0, 100.0, 200.0, 300.0]


def test_permission_refreshed_before_300_seconds_even_with_a_bound_channel() -> None:
    link = connected()
    link.send(b"x", PEER)  # ChannelBind at 0 installs the permission
    assert link.request_times(Method.CHANNEL_BIND) == [0.0]
    link.advance(1000.0)
    creates = link.request_times(Method.CREATE_PERMISSION)
    assert creates[0] == 240.0
    # A ChannelBind refreshes the permission as well: no gap of more than 240 s.
    times = sorted([*creates, *link.request_times(Method.CHANNEL_BIND), 1000.0])
    assert all(b - a <= 240.0 for a, b in itertools.pairwise(times))
    assert (DEFAULT_CLIENT, PEER[0]) in link.server.permissions
    # The channel was used once only; send again long after: it goes through.
    link.send(b"late", PEER)
    assert link.server.relayed[-1] == (RELAY, PEER, b"late")


def test_refreshes_falling_due_together_are_batched() -> None:
    link = connected()
    link.client.create_permission(link.now, PEER)
    link.advance(5.0)
    link.client.create_permission(link.now, PEER2)
    link.advance(250.0)
    requests = link.requests(Method.CREATE_PERMISSION)
    assert [r.time for r in requests] == [0.0, 5.0, 240.0]
    assert sorted(peers_of(requests[-1])) == sorted([PEER[0], PEER2[0]])


def test_failed_refresh_of_a_permission_is_reported() -> None:
    link = connected()
    link.client.create_permission(link.now, PEER)
    link.server.forbidden_peers.add(PEER[0])
    link.advance(250.0)
    (failed,) = link.of(PermissionFailed)
    assert failed.peer == PEER[0] and failed.code == 403


def test_send_indication_once_the_permission_exists() -> None:
    link = connected(channels=False)
    link.client.create_permission(link.now, PEER)
    link.pump()
    assert link.client.send(link.now, b"now", PEER) is None
    message = link.client.poll_transmit()
    assert message is not None
    link.deliver(message)
    (indication,) = [m for m in link.transmitted(Method.SEND) if send_indication(m)]
    assert indication.get(Attr.XOR_PEER_ADDRESS) == PEER
    assert indication.get(Attr.DATA) == b"now"
    assert link.server.relayed == [(RELAY, PEER, b"now")]
    assert link.client.stats.sent_indications == 1
    assert not link.requests(Method.CHANNEL_BIND)
