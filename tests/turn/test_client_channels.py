"""The TURN client's channels (RFC 8656 sections 11 and 12) and its data paths."""

from __future__ import annotations

import pytest

from stun import Attr, Class, Method
from tests.turn.harness import (
    PEER,
    PEER2,
    PEER3,
    RELAY_IP,
    Link,
    connected,
    make_server,
    send_indication,
)
from tests.turn.scripted import DEFAULT_CLIENT
from turn import ChannelBound, PermissionCreated, PermissionFailed
from turn.framing import FIRST_CHANNEL, HEADER, LAST_CHANNEL

RELAY = (RELAY_IP, 49152)


def bound_number(link: Link, peer: tuple[str, int]) -> int:
    numbers = [event.number for event in link.of(ChannelBound) if event.peer == peer]
    assert len(numbers) == 1, link.events
    return numbers[0]


def test_channel_bound_on_first_send_then_channel_data() -> None:
    link = connected()
    assert link.send(b"first", PEER) is None
    (bind,) = link.requests(Method.CHANNEL_BIND)
    number = bind.get(Attr.CHANNEL_NUMBER)
    assert FIRST_CHANNEL <= number <= LAST_CHANNEL
    assert bind.get(Attr.XOR_PEER_ADDRESS) == PEER
    assert link.of(ChannelBound) == [ChannelBound(PEER, number)]
    assert link.of(PermissionCreated) == [PermissionCreated((PEER[0],))]
    assert not link.requests(Method.CREATE_PERMISSION)  # the ChannelBind installs it
    wire = link.send(b"fast", PEER)
    assert wire == HEADER.pack(number, 4) + b"fast"
    assert link.server.relayed == [(RELAY, PEER, b"first"), (RELAY, PEER, b"fast")]
    assert link.server.log[-1].channel == number
    assert link.client.stats.sent_channel_data == 2
    assert len(link.requests(Method.CHANNEL_BIND)) == 1


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5])
def test_channel_data_padded_to_four_over_a_stream(size: int) -> None:
    server = make_server(reliable=True)
    link = connected(server, reliable=True)
    link.send(b"bind", PEER)
    number = bound_number(link, PEER)
    data = bytes(range(1, size + 1))
    wire = link.send(data, PEER)
    assert wire is not None
    assert len(wire) % 4 == 0 and len(wire) == 4 + size + (-size % 4)
    assert wire == HEADER.pack(number, size) + data + bytes(-size % 4)
    assert link.server.relayed[-1] == (RELAY, PEER, data)


def test_channel_data_unpadded_over_udp() -> None:
    link = connected()
    link.send(b"bind", PEER)
    assert link.send(b"abc", PEER) == HEADER.pack(bound_number(link, PEER), 3) + b"abc"


def test_channel_numbers_stay_in_range_for_many_peers() -> None:
    link = connected()
    peers = [(f"203.0.113.{i}", 1000 + i) for i in range(10, 50)]
    peers += [("203.0.113.10", port) for port in range(2000, 2040)]  # one IP, many ports
    for peer in peers:
        link.send(b"x", peer)
    numbers = [bound_number(link, peer) for peer in peers]
    assert len(set(numbers)) == len(peers)
    assert all(0x4000 <= n <= 0x4FFF for n in numbers)
    requested = [r.get(Attr.CHANNEL_NUMBER) for r in link.requests(Method.CHANNEL_BIND)]
    assert all(0x4000 <= n <= 0x4FFF for n in requested)
    assert len(link.server.channels) == len(peers)


def test_every_rfc_8656_channel_number_and_no_other() -> None:
    # RFC 8656 narrowed RFC 5766's 0x4000-0x7FFE to 0x4000-0x4FFF, and coturn accepts
    # both: only this pins the client to the new range.
    assert (FIRST_CHANNEL, LAST_CHANNEL) == (0x4000, 0x4FFF)
    link = connected()
    peers = [(f"198.18.{i // 250}.{i % 250 + 1}", 5000) for i in range(0x1000 + 1)]
    for peer in peers:
        link.client.create_permission(link.now, peer)
    link.pump()
    for peer in peers:
        link.send(b"x", peer)
    numbers = {r.get(Attr.CHANNEL_NUMBER) for r in link.requests(Method.CHANNEL_BIND)}
    assert numbers == set(range(0x4000, 0x5000))  # all 4096, then Send indications
    assert link.client.stats.sent_indications >= 1


def test_send_indications_until_the_channel_is_bound() -> None:
    link = connected()
    link.client.create_permission(link.now, PEER)
    link.pump()
    assert link.client.send(link.now, b"early", PEER) is None
    outgoing = []
    while (data := link.client.poll_transmit()) is not None:
        outgoing.append(data)
    for data in outgoing:
        link.deliver(data)
    link.pump()
    kinds = [m.method for m in link.transmitted() if m.cls is not Class.SUCCESS]
    assert kinds[-2:] == [Method.CHANNEL_BIND, Method.SEND] or kinds[-2:] == [
        Method.SEND,
        Method.CHANNEL_BIND,
    ]
    (indication,) = [m for m in link.transmitted(Method.SEND) if send_indication(m)]
    assert indication.get(Attr.DATA) == b"early"
    assert link.server.relayed == [(RELAY, PEER, b"early")]
    assert link.send(b"late", PEER) is not None  # now bound: ChannelData
    assert link.client.stats.sent_indications == 1
    assert link.client.stats.sent_channel_data == 1


def test_without_channels_only_send_indications() -> None:
    link = connected(channels=False)
    for data in (b"a", b"b", b"c"):
        assert link.send(data, PEER) is None
    assert not link.requests(Method.CHANNEL_BIND)
    assert [d for _, _, d in link.server.relayed] == [b"a", b"b", b"c"]
    assert link.client.stats.sent_indications == 3


def test_receiving_data_indications_then_channel_data() -> None:
    link = connected()
    link.client.create_permission(link.now, PEER)
    link.pump()
    link.from_peer(b"indicated", PEER)
    link.send(b"bind", PEER)
    link.from_peer(b"channelled", PEER)
    assert [(peer, data) for _, peer, data in link.received] == [
        (PEER, b"indicated"),
        (PEER, b"channelled"),
    ]
    frame = link.server.peer_data(link.now, PEER, b"raw")[0]
    assert frame[:2] == bound_number(link, PEER).to_bytes(2, "big")
    assert link.client.handle_data(link.now, frame) == (PEER, b"raw")


def test_receiving_padded_channel_data_over_a_stream() -> None:
    link = connected(make_server(reliable=True), reliable=True)
    link.send(b"bind", PEER)
    frame = link.server.peer_data(link.now, PEER, b"abcde")[0]
    assert len(frame) == 12
    assert link.client.handle_data(link.now, frame) == (PEER, b"abcde")


def test_channel_data_on_an_unknown_channel_is_counted() -> None:
    link = connected()
    link.send(b"bind", PEER)
    number = bound_number(link, PEER)
    other = number + 1 if number < LAST_CHANNEL else number - 1
    assert link.client.handle_data(link.now, HEADER.pack(other, 3) + b"abc") is None
    assert link.client.handle_data(link.now, HEADER.pack(0x4FFF, 0)) is None
    assert link.client.stats.dropped_unknown_channel == 2
    assert link.client.stats.dropped_malformed == 0
    assert link.received == []


def test_channel_refreshed_before_600_seconds_while_used() -> None:
    link = connected()
    link.send(b"bind", PEER)
    number = bound_number(link, PEER)
    for t in range(100, 1201, 100):
        link.advance(float(t))
        assert link.send(b"tick", PEER) == HEADER.pack(number, 4) + b"tick"
    assert link.request_times(Method.CHANNEL_BIND) == [0.0, 540.0, 1080.0]
    assert link.server.dropped["no_channel"] == 0
    assert len(link.server.relayed) == 13


def test_channel_refresh_configured() -> None:
    link = connected(channel_refresh=300.0)
    link.send(b"bind", PEER)
    for t in range(50, 701, 50):
        link.advance(float(t))
        link.send(b"tick", PEER)
    assert link.request_times(Method.CHANNEL_BIND) == [0.0, 300.0, 600.0]


def idle_channel() -> tuple[Link, int]:
    """A channel bound at 0 and never used: data went out before, in a Send indication."""
    link = connected()
    link.client.create_permission(link.now, PEER)
    link.pump()
    link.send(b"only", PEER)  # a Send indication; the ChannelBind goes along
    return link, bound_number(link, PEER)


def test_idle_channel_is_not_refreshed() -> None:
    link, number = idle_channel()
    link.advance(2000.0)
    assert link.request_times(Method.CHANNEL_BIND) == [0.0]
    assert (DEFAULT_CLIENT, number) not in link.server.channels
    # Used again long after it expired: bound again, data in a Send indication meanwhile.
    assert link.send(b"again", PEER) is None
    assert link.server.relayed[-1] == (RELAY, PEER, b"again")
    assert link.request_times(Method.CHANNEL_BIND) == [0.0, 2000.0]
    assert link.send(b"fast", PEER) is not None


def test_idle_channel_is_let_go_a_minute_before_it_expires() -> None:
    link, number = idle_channel()
    link.advance(590.0)  # idle since 0: no longer used for ChannelData, bound anew
    assert link.send(b"late", PEER) is None
    assert link.server.relayed[-1] == (RELAY, PEER, b"late")
    assert link.request_times(Method.CHANNEL_BIND) == [0.0, 590.0]
    assert link.send(b"fast", PEER) == HEADER.pack(number, 4) + b"fast"


@pytest.fixture
def one_channel_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the client's channel range a single number, to see when it is reused."""
    monkeypatch.setattr("turn.client.LAST_CHANNEL", FIRST_CHANNEL)


@pytest.mark.usefixtures("one_channel_number")
def test_expired_channel_number_not_reused_for_another_peer_within_5_minutes() -> None:
    link, number = idle_channel()
    assert number == FIRST_CHANNEL
    # The binding expires at 600 on the server; the number is not reused before 900.
    link.advance(650.0)
    link.send(b"b", PEER2)
    link.advance(899.0)
    link.send(b"b", PEER2)
    assert [r.get(Attr.XOR_PEER_ADDRESS) for r in link.requests(Method.CHANNEL_BIND)] == [PEER]
    assert [d for _, p, d in link.server.relayed if p == PEER2] == [b"b", b"b"]  # indications
    link.advance(900.0)
    link.send(b"c", PEER3)
    binds = link.requests(Method.CHANNEL_BIND)
    assert binds[-1].get(Attr.XOR_PEER_ADDRESS) == PEER3 and binds[-1].time == 900.0
    assert binds[-1].get(Attr.CHANNEL_NUMBER) == number
    assert link.of(ChannelBound)[-1] == ChannelBound(PEER3, number)


@pytest.mark.usefixtures("one_channel_number")
def test_channel_number_of_an_unanswered_bind_is_not_reused_early() -> None:
    server = make_server()
    link = connected(server)
    link.client.create_permission(link.now, PEER)
    link.pump()
    server.lose_next(7)  # the server binds the channel, every answer is lost
    link.send(b"a", PEER)
    link.advance(100.0)
    assert [r.time for r in link.requests(Method.CHANNEL_BIND)][-1] == 31.5
    # The server's binding lasts until 631.5, the quarantine until 931.5.
    for t in (400.0, 700.0, 931.0):
        link.advance(t)
        link.send(b"b", PEER2)
    binds = link.requests(Method.CHANNEL_BIND)
    assert [r.get(Attr.XOR_PEER_ADDRESS) for r in binds] == [PEER] * 7
    assert not link.of(PermissionFailed)


def test_channel_bind_refused_falls_back_to_a_permission() -> None:
    server = make_server()
    link = connected(server)
    server.fail_next(Method.CHANNEL_BIND, 400)
    link.send(b"a", PEER)
    assert not link.of(ChannelBound)
    assert link.of(PermissionCreated) == [PermissionCreated((PEER[0],))]
    assert link.server.relayed == [(RELAY, PEER, b"a")]
    assert link.send(b"b", PEER) is None  # a Send indication, no new ChannelBind yet
    assert len(link.requests(Method.CHANNEL_BIND)) == 1
    assert link.server.relayed[-1] == (RELAY, PEER, b"b")


def test_refused_channel_bind_is_not_retried_at_once_late_in_the_allocation() -> None:
    link = connected()
    link.advance(1000.0)
    link.server.fail_next(Method.CHANNEL_BIND, 400)
    link.send(b"a", PEER)
    deadline = link.client.poll_timeout()
    assert deadline is not None and deadline >= link.now
    link.advance(1001.0)
    link.send(b"b", PEER)
    assert link.request_times(Method.CHANNEL_BIND) == [1000.0]
    assert [d for _, p, d in link.server.relayed if p == PEER] == [b"a", b"b"]


def test_channel_data_from_a_peer_is_returned_not_an_event() -> None:
    link = connected()
    link.send(b"bind", PEER)
    events = len(link.events)
    frame = HEADER.pack(bound_number(link, PEER), 2) + b"hi"
    assert link.client.handle_data(link.now, frame) == (PEER, b"hi")
    assert link.client.poll_event() is None and len(link.events) == events
