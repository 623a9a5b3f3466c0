"""Whatever the server sends, the core raises nothing: odd text, mutated answers, and the
size limits of the transport it relays over."""

from __future__ import annotations

import random

import pytest

from stun import Attr, Class, Message, Method
from tests.turn.harness import PEER, Link, connected, make_client, make_server
from turn import AllocationFailed


def test_a_realm_that_is_not_utf8_is_used_as_its_bytes() -> None:
    client = make_client()
    client.allocate(0.0)
    request = client.poll_transmit()
    assert request is not None
    challenge = Message(
        Method.ALLOCATE,
        Class.ERROR,
        request[8:20],
        [
            (Attr.ERROR_CODE, (401, "Unauthorized")),
            (Attr.REALM, "r\udcffalm"),  # the byte 0xff, kept as a surrogate escape
            (Attr.NONCE, "n\udcfe"),
        ],
    ).encode()
    assert client.handle_data(0.0, challenge) is None
    retry = client.poll_transmit()
    assert retry is not None
    assert b"r\xffalm" in retry and b"n\xfe" in retry  # echoed byte for byte
    assert client.poll_event() is None and client.state == "allocating"


def _mutated(data: bytes, rng: random.Random) -> bytes:
    """``data`` with a few bytes changed, cut short or extended."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    if rng.random() < 0.2:
        del out[rng.randrange(len(out) + 1) :]
    if rng.random() < 0.1:
        out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


@pytest.mark.parametrize("seed", range(8))
def test_mutated_answers_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    dropped = 0
    for _ in range(60):
        server = make_server(password_algorithms=(2, 1), userhash=rng.random() < 0.5)
        link = Link(make_client(), server)
        link.client.allocate(link.now)
        for step in range(40):
            data = link.client.poll_transmit()
            if data is None:
                deadline = link.client.poll_timeout()
                if deadline is None:
                    break
                link.now = max(link.now, deadline)
                link.client.handle_timeout(link.now)
                continue
            for reply in server.handle(link.now, data, link.address):
                link.client.handle_data(link.now, _mutated(reply, rng) if step % 2 else reply)
            if link.client.state == "allocated" and step % 5 == 0:
                link.client.send(link.now, b"x", PEER)
        stats = link.client.stats
        assert link.client.state in ("allocating", "allocated", "failed")
        dropped += stats.dropped_malformed + stats.dropped_unmatched + stats.dropped_unverified
    assert dropped > 0  # the mutations did reach the client, and were counted


@pytest.mark.parametrize(("reliable", "limit"), [(False, 65507 - 48), (True, 0xFFFF)])
def test_datagrams_larger_than_the_transport_carries_are_refused(
    reliable: bool, limit: int
) -> None:
    link = connected(reliable=reliable, server=make_server(reliable=reliable))
    assert link.client.max_data == limit
    link.send(b"bind", PEER)
    assert link.send(bytes(limit), PEER) is not None  # ChannelData, as large as it gets
    with pytest.raises(ValueError, match="do not fit"):
        link.client.send(link.now, bytes(limit + 1), PEER)
    assert not link.of(AllocationFailed)
