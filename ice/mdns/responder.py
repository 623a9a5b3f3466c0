"""The publishing half of an mDNS endpoint, sans I/O: the ``<uuid4>.local`` names we own
(draft-ietf-mmusic-mdns-ice-candidates section 3.1.1), answers to queries for them (RFC 6762
sections 5.4, 6 and 6.7), announcements (8.3) and goodbyes (10.1).

Names are unique by construction, so they are announced without probing (as the draft
allows) and a conflicting answer from elsewhere is not looked for.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field, replace

from stun.attributes import Address

from .errors import MdnsError
from .message import (
    CLASS_ANY,
    CLASS_IN,
    FLAG_AA,
    FLAG_QR,
    TYPE_ANY,
    Message,
    Question,
    Record,
    address_record,
    encode,
)
from .names import new_name
from .types import DEFAULT_TTL, MDNS_PORT, Link, MdnsStats, Transmit

ANNOUNCE_INTERVAL = 1.0
"""Seconds between the announcements of a new name (RFC 6762 section 8.3)."""
RATE_LIMIT = 1.0
"""Seconds before a record may be multicast again on the same link (RFC 6762 section 6)."""
LEGACY_TTL = 10
"""The TTL cap of answers to legacy unicast queries (RFC 6762 section 6.7)."""

_SYSTEM_RANDOM = random.SystemRandom()


@dataclass(slots=True)
class _Name:
    """One owned name: its address, record, and when it was last multicast on each link."""

    ip: str
    record: Record
    announcements_left: int
    next_announcement: float | None
    last_multicast: dict[Link, float] = field(default_factory=dict)


class Responder:
    """The names we publish and the answers, announcements and goodbyes for them.

    Answers follow RFC 6762: a legacy query (source port other than the mDNS port) gets a
    unicast reply echoing its id and questions; a QU question gets a unicast reply when the
    record was multicast on that link within a quarter of its TTL; everything else is
    multicast, at most once a second per record and link. Announcements do not count as
    such multicasts: the peer that learned the name by signalling asks right after it, and
    may not have been listening.
    """

    def __init__(
        self,
        stats: MdnsStats,
        *,
        port: int = MDNS_PORT,
        ttl: int = DEFAULT_TTL,
        announcements: int = 2,
        rng: random.Random | None = None,
    ) -> None:
        self._stats = stats
        self._port = port
        self._ttl = ttl
        self._announcements = announcements
        self._rng = rng if rng is not None else _SYSTEM_RANDOM
        self._names: dict[str, _Name] = {}
        self._by_ip: dict[str, str] = {}
        self._transmits: list[Transmit] = []

    @property
    def names(self) -> dict[str, str]:
        """Every published name and its IP address."""
        return {name: entry.ip for name, entry in self._names.items()}

    def register(self, now: float, ip: str) -> str:
        """Publish ``ip`` under a fresh ``<uuid4>.local`` name and return the name; an
        address already published keeps its name. MdnsError if ``ip`` is not an IP."""
        canonical = _canonical_ip(ip)
        name = self._by_ip.get(canonical)
        if name is not None:
            return name
        name = new_name(self._rng)
        record = address_record(name, canonical, self._ttl, cache_flush=True)
        entry = _Name(canonical, record, self._announcements, now if self._announcements else None)
        self._names[name] = entry
        self._by_ip[canonical] = name
        if entry.next_announcement is not None:
            self._announce(now, entry)
        return name

    def unregister(self, name: str) -> None:
        """Stop answering for ``name`` and multicast its goodbye (TTL 0); unknown names are
        ignored."""
        entry = self._names.pop(name.lower(), None)
        if entry is None:
            return
        del self._by_ip[entry.ip]
        goodbye = replace(entry.record, ttl=0)
        message = Message(flags=FLAG_QR | FLAG_AA, answers=(goodbye,))
        self._transmits.append(Transmit(encode(message)))
        self._stats.goodbyes_sent += 1

    def close(self) -> None:
        """Unregister every name."""
        for name in list(self._names):
            self.unregister(name)

    def handle_query(self, now: float, query: Message, source: Address, link: Link) -> None:
        """Answer the questions of ``query`` that are about our names, if any."""
        wanted: dict[str, tuple[Question, bool]] = {}
        for question in query.questions:
            name = question.name.lower()
            if self._matches(question, name):
                asked = wanted.get(name, (question, True))[1] and question.unicast_response
                wanted[name] = (question, asked)
        if not wanted:
            return
        if source[1] != self._port:
            self._reply_legacy(query, [question for question, _ in wanted.values()], source, link)
            return
        unicast: list[Record] = []
        multicast: list[Record] = []
        for name, (_, unicast_asked) in wanted.items():
            self._route(now, self._names[name], unicast_asked, link, unicast, multicast)
        if unicast:
            self._answer(unicast, link, source)
        if multicast:
            self._answer(multicast, link, None)

    def handle_timeout(self, now: float) -> None:
        """Send the announcements that are due."""
        for entry in self._names.values():
            due = entry.next_announcement
            if due is not None and due <= now:
                self._announce(now, entry)

    def poll_timeout(self) -> float | None:
        """When the next announcement is due, None when none is."""
        due = [e.next_announcement for e in self._names.values() if e.next_announcement is not None]
        return min(due, default=None)

    def poll_transmits(self) -> list[Transmit]:
        """The datagrams to send, oldest first; the list is handed over and cleared."""
        transmits, self._transmits = self._transmits, []
        return transmits

    def _matches(self, question: Question, name: str) -> bool:
        entry = self._names.get(name)
        return (
            entry is not None
            and question.qclass in (CLASS_IN, CLASS_ANY)
            and question.type in (entry.record.type, TYPE_ANY)
        )

    def _route(
        self,
        now: float,
        entry: _Name,
        unicast_asked: bool,
        link: Link,
        unicast: list[Record],
        multicast: list[Record],
    ) -> None:
        """Put the record of ``entry`` on the unicast or multicast answer, or hold it back."""
        last = entry.last_multicast.get(link)
        since = now - last if last is not None else None
        if unicast_asked and since is not None and since < self._ttl / 4:
            unicast.append(entry.record)
        elif since is not None and since < RATE_LIMIT:
            self._stats.answers_held_back += 1
        else:
            entry.last_multicast[link] = now
            multicast.append(entry.record)

    def _answer(self, records: list[Record], link: Link, remote: Address | None) -> None:
        message = Message(flags=FLAG_QR | FLAG_AA, answers=tuple(records))
        self._transmits.append(Transmit(encode(message), link, remote))
        self._stats.answers_sent += 1

    def _reply_legacy(
        self, query: Message, questions: list[Question], source: Address, link: Link
    ) -> None:
        records = tuple(
            replace(
                self._names[q.name.lower()].record,
                name=q.name,
                ttl=min(self._ttl, LEGACY_TTL),
                cache_flush=False,
            )
            for q in questions
        )
        reply = Message(query.id, FLAG_QR | FLAG_AA, tuple(questions), records)
        self._transmits.append(Transmit(encode(reply), link, source))
        self._stats.answers_sent += 1

    def _announce(self, now: float, entry: _Name) -> None:
        message = Message(flags=FLAG_QR | FLAG_AA, answers=(entry.record,))
        self._transmits.append(Transmit(encode(message)))
        self._stats.announcements_sent += 1
        entry.announcements_left -= 1
        entry.next_announcement = now + ANNOUNCE_INTERVAL if entry.announcements_left else None


def _canonical_ip(ip: str) -> str:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, ip))
    except (OSError, ValueError):
        raise MdnsError(f"not an IP address: {ip!r}") from None
