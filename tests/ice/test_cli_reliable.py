"""The channel under ``ice connect`` (sans I/O, virtual time): order, exactly once,
retransmission through loss, reordering and duplication, and when it gives up."""

from __future__ import annotations

import random

import pytest

from ice.reliable import CONTROL, MAX_PAYLOAD, MIN_RTO, WINDOW, Reliable

TEXT = ord("T")


class Link:
    """Two cores joined by a lossy, reordering, duplicating wire, on a virtual clock."""

    def __init__(self, loss: float = 0.0, seed: int = 7, **options: float) -> None:
        self.a = Reliable(**options)  # type: ignore[arg-type]
        self.b = Reliable(**options)  # type: ignore[arg-type]
        self.now = 0.0
        self.loss = loss
        self.rng = random.Random(seed)
        self.a.start(self.now)
        self.b.start(self.now)

    def deliver(self) -> None:
        """Carry everything in flight (each datagram maybe lost, doubled or swapped)."""
        while True:
            flights = [(self.b, d) for d in self.a.poll_transmits()]
            flights += [(self.a, d) for d in self.b.poll_transmits()]
            if not flights:
                return
            self.rng.shuffle(flights)
            for core, datagram in flights:
                copies = 2 if self.rng.random() < self.loss / 2 else 1
                for _ in range(copies):
                    if self.rng.random() >= self.loss:
                        core.handle_datagram(self.now, datagram)

    def advance(self) -> None:
        """Move the clock to the next deadline of either side and serve it."""
        deadlines = [t for t in (self.a.poll_timeout(), self.b.poll_timeout()) if t is not None]
        self.now = max(self.now, min(deadlines))
        for core in (self.a, self.b):
            deadline = core.poll_timeout()
            if deadline is not None and deadline <= self.now:
                core.handle_timeout(self.now)


def _received(core: Reliable) -> list[bytes]:
    messages = []
    while (message := core.poll_message()) is not None:
        assert message[0] == TEXT
        messages.append(message[1])
    return messages


def test_messages_arrive_in_order_once_without_loss() -> None:
    link = Link()
    link.deliver()
    for n in range(WINDOW):
        link.a.send(link.now, TEXT, b"%d" % n)
    link.deliver()
    assert _received(link.b) == [b"%d" % n for n in range(WINDOW)]
    assert link.a.settled and link.a.stats.retransmissions == 0


@pytest.mark.parametrize("loss", [0.1, 0.3])
def test_loss_reordering_and_duplicates_still_deliver_everything_in_order(loss: float) -> None:
    link = Link(loss=loss)
    sent = [bytes([n % 256]) * (1 + n % MAX_PAYLOAD) for n in range(300)]
    queue = list(sent)
    got: list[bytes] = []
    while len(got) < len(sent):
        while queue and link.a.writable:
            link.a.send(link.now, TEXT, queue.pop(0))
        link.deliver()
        got += _received(link.b)
        if len(got) < len(sent):
            link.advance()
        assert link.a.failed is None and link.now < 600
    assert got == sent
    assert link.a.stats.retransmissions > 0 and link.b.stats.duplicates > 0


def test_the_window_limits_what_is_unacknowledged() -> None:
    core = Reliable(window=2)
    core.start(0.0)
    core.send(0.0, TEXT, b"x")
    assert not core.writable
    with pytest.raises(RuntimeError, match="not writable"):
        core.send(0.0, TEXT, b"y")


def test_a_message_too_large_for_one_datagram_is_refused() -> None:
    core = Reliable()
    with pytest.raises(ValueError, match="at most"):
        core.send(0.0, TEXT, bytes(MAX_PAYLOAD + 1))


def test_retransmission_starts_from_the_ice_rtt_and_doubles() -> None:
    core = Reliable(rtt=0.01)
    core.start(0.0)
    assert core.poll_timeout() == pytest.approx(max(MIN_RTO, 0.03))
    core.poll_transmits()
    core.handle_timeout(MIN_RTO)
    assert core.poll_transmits() == [b"D\x00\x00\x00\x00\x00"]
    assert core.poll_timeout() == pytest.approx(3 * MIN_RTO)


def test_no_answer_yet_is_waited_for_until_the_contact_timeout() -> None:
    core = Reliable(give_up=1.0, contact_timeout=30.0)
    core.start(0.0)
    core.handle_timeout(29.0)
    assert core.failed is None
    core.handle_timeout(30.0)
    assert core.failed == "nothing came from the peer's side within 30 s"


def test_a_peer_that_answered_then_went_silent_is_given_up_on() -> None:
    link = Link(give_up=3.0)
    link.deliver()
    link.a.send(link.now, TEXT, b"anyone?")
    link.a.poll_transmits()  # lost, and so is every retransmission
    for _ in range(100):  # a bound: a regression fails here instead of hanging
        if link.a.failed is not None:
            break
        link.now = link.a.poll_timeout() or link.now
        link.a.handle_timeout(link.now)
        link.a.poll_transmits()
    assert link.now == pytest.approx(3.0)
    assert link.a.failed == "the peer stopped answering (nothing acknowledged for 3 s)"
    assert link.a.poll_timeout() is None and not link.a.writable


def test_an_idle_channel_sends_a_keepalive_that_is_not_delivered() -> None:
    link = Link(keepalive=5.0)
    link.deliver()
    assert link.a.poll_timeout() == 5.0
    link.advance()
    link.deliver()
    assert link.a.stats.messages_sent == 2 and link.b.poll_message() is None
    assert link.a.settled


def test_malformed_datagrams_are_dropped_and_counted() -> None:
    core = Reliable()
    core.start(0.0)
    for datagram in (b"", b"Z", b"A\x00", b"D\x00\x00", b"A\x00\x00\x00\x09"):
        core.handle_datagram(0.0, datagram)
    assert core.stats.dropped_malformed == 5 and not core.heard
    assert core.poll_message() is None


def test_the_channel_kind_is_reserved() -> None:
    core = Reliable()
    core.handle_datagram(0.0, bytes([ord("D"), 0, 0, 0, 0, CONTROL]) + b"hello")
    assert core.heard and core.poll_message() is None
