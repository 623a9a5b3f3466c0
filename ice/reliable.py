"""Ordered, acknowledged messages over ICE's unreliable datagrams, sans I/O: what the
chat and the file transfer of ``ice connect`` run on (:mod:`ice.channel` is the shell).

Two datagram shapes (version 1, which an ``icestack1`` offer line implies)::

    D seq:u32 kind:u8 payload    a message; seq counts from 0
    A next:u32                   every message below ``next`` has arrived

A receiver acknowledges every message datagram, duplicates too, with its cumulative
``next``; it keeps messages that arrive early (up to two windows ahead) and hands them
over in order, each once. A sender keeps at most ``window`` messages unacknowledged and
sends each again when its retransmission timeout passes: RFC 6298's estimate, seeded
with the RTT of the ICE check, doubled per retry up to ``MAX_RTO``. There is no
congestion control beyond the window.

Kind 0 belongs to the channel: a hello at :meth:`Reliable.start` and a keepalive after
``keepalive`` seconds without sending, never handed over. The channel fails (and says
why in :attr:`Reliable.failed`) when nothing came from the peer within
``contact_timeout`` of the start - its side may not have connected yet, so until then
nothing is given up on - or, once it has answered, when a message stays unacknowledged
for ``give_up`` seconds.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

MAX_PAYLOAD = 1100
"""Bytes of payload per message: a datagram stays under 1200 bytes, relayed or not."""
WINDOW = 32
MIN_RTO = 0.05
MAX_RTO = 2.0
INITIAL_RTO = 0.5
KEEPALIVE = 5.0
GIVE_UP = 15.0
CONTROL = 0
"""The channel's own kind (hello, keepalive)."""

_DATA = struct.Struct("!cIB")
_ACK = struct.Struct("!cI")


@dataclass(slots=True)
class _Unacked:
    datagram: bytes
    first_sent: float
    due: float
    rto: float
    retries: int = 0


@dataclass(slots=True)
class ReliableStats:
    """Counters for a report: datagrams sent again, duplicates and malformed ones."""

    messages_sent: int = 0
    retransmissions: int = 0
    messages_received: int = 0
    duplicates: int = 0
    dropped_malformed: int = 0


class Reliable:
    """One end of the channel: feed it datagrams and the time, send what it hands back."""

    def __init__(
        self,
        *,
        rtt: float | None = None,
        window: int = WINDOW,
        keepalive: float = KEEPALIVE,
        give_up: float = GIVE_UP,
        contact_timeout: float | None = None,
    ) -> None:
        if window < 1 or keepalive <= 0 or give_up <= 0:
            raise ValueError("window, keepalive and give_up must be positive")
        self.window = window
        self.keepalive = keepalive
        self.give_up = give_up
        self.contact_timeout = contact_timeout
        self._srtt = rtt
        self._rttvar = rtt / 2 if rtt is not None else 0.0
        self._rto = INITIAL_RTO if rtt is None else _bounded(3 * rtt)
        self._next_seq = 0
        self._unacked: dict[int, _Unacked] = {}  # in sequence order
        self._expected = 0
        self._early: dict[int, tuple[int, bytes]] = {}
        self._messages: deque[tuple[int, bytes]] = deque()
        self._transmits: list[bytes] = []
        self._started_at = 0.0
        self._last_sent = 0.0
        self.heard = False
        """Whether anything has come from the peer's channel yet."""
        self.failed: str | None = None
        """Why the channel failed, once it has."""
        self.stats = ReliableStats()

    # -- sending ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin: say hello, so that the peer hears from us even when we have nothing to say."""
        self._started_at = now
        self.send(now, CONTROL, b"")

    @property
    def writable(self) -> bool:
        """Whether :meth:`send` may be called: the window has room and nothing failed."""
        return self.failed is None and len(self._unacked) < self.window

    @property
    def settled(self) -> bool:
        """Whether every message sent has been acknowledged."""
        return not self._unacked

    def send(self, now: float, kind: int, payload: bytes) -> None:
        """Queue one message (``kind`` 1-255) for the peer."""
        if not self.writable:
            raise RuntimeError("the channel is not writable (window full or failed)")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"a message carries at most {MAX_PAYLOAD} bytes")
        datagram = _DATA.pack(b"D", self._next_seq, kind) + payload
        self._unacked[self._next_seq] = _Unacked(datagram, now, now + self._rto, self._rto)
        self._next_seq += 1
        self._last_sent = now
        self._transmits.append(datagram)
        self.stats.messages_sent += 1

    # -- receiving -------------------------------------------------------------------------

    def handle_datagram(self, now: float, data: bytes) -> None:
        """A datagram from the peer; anything malformed is dropped and counted."""
        if self.failed is not None:
            return
        tag = data[:1]
        if tag == b"A" and len(data) == _ACK.size:
            self._acknowledged(now, _ACK.unpack(data)[1])
        elif tag == b"D" and len(data) >= _DATA.size:
            _, seq, kind = _DATA.unpack_from(data)
            self._message(seq, kind, data[_DATA.size :])
        else:
            self.stats.dropped_malformed += 1

    def poll_message(self) -> tuple[int, bytes] | None:
        """The next message in order as ``(kind, payload)``, or None."""
        return self._messages.popleft() if self._messages else None

    def _message(self, seq: int, kind: int, payload: bytes) -> None:
        self.heard = True
        if self._expected <= seq < self._expected + 2 * self.window:
            if seq in self._early:
                self.stats.duplicates += 1
            self._early[seq] = (kind, payload)
        else:
            self.stats.duplicates += 1
        while self._expected in self._early:
            message = self._early.pop(self._expected)
            self._expected += 1
            if message[0] != CONTROL:
                self._messages.append(message)
                self.stats.messages_received += 1
        self._transmits.append(_ACK.pack(b"A", self._expected))

    def _acknowledged(self, now: float, next_seq: int) -> None:
        if next_seq > self._next_seq:
            self.stats.dropped_malformed += 1
            return
        self.heard = True
        sample = None
        while self._unacked:
            seq, unacked = next(iter(self._unacked.items()))
            if seq >= next_seq:
                break
            del self._unacked[seq]
            if unacked.retries == 0:
                sample = now - unacked.first_sent
        if sample is not None:
            self._measured(sample)

    def _measured(self, rtt: float) -> None:
        """RFC 6298 section 2."""
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self._rto = _bounded(self._srtt + 4 * self._rttvar)

    # -- time ------------------------------------------------------------------------------

    def handle_timeout(self, now: float) -> None:
        """Send again what is due, keep the peer informed, or fail."""
        if self.failed is not None:
            return
        for unacked in self._unacked.values():
            if unacked.due <= now:
                unacked.retries += 1
                unacked.rto = min(unacked.rto * 2, MAX_RTO)
                unacked.due = now + unacked.rto
                self._transmits.append(unacked.datagram)
                self.stats.retransmissions += 1
        self.failed = self._failure(now)
        if self.failed is None and not self._unacked and now >= self._last_sent + self.keepalive:
            self.send(now, CONTROL, b"")

    def _failure(self, now: float) -> str | None:
        if not self.heard:
            limit = self.contact_timeout
            if limit is not None and now >= self._started_at + limit:
                return f"nothing came from the peer's side within {limit:g} s"
            return None
        oldest = next(iter(self._unacked.values()), None)
        if oldest is not None and now >= oldest.first_sent + self.give_up:
            return f"the peer stopped answering (nothing acknowledged for {self.give_up:g} s)"
        return None

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` is next due; None once failed."""
        if self.failed is not None:
            return None
        deadlines = [unacked.due for unacked in self._unacked.values()]
        if not self.heard:
            if self.contact_timeout is not None:
                deadlines.append(self._started_at + self.contact_timeout)
        elif self._unacked:
            deadlines.append(next(iter(self._unacked.values())).first_sent + self.give_up)
        if not self._unacked:
            deadlines.append(self._last_sent + self.keepalive)
        return min(deadlines)

    def poll_transmits(self) -> list[bytes]:
        """The datagrams to send now, in order."""
        transmits, self._transmits = self._transmits, []
        return transmits


def _bounded(rto: float) -> float:
    return min(max(rto, MIN_RTO), MAX_RTO)
