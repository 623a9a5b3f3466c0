"""The resolving half of an mDNS endpoint, sans I/O: one-shot lookups of A and AAAA for a
name (RFC 6762 section 5), shared by concurrent askers, retransmitted a bounded number of
times, and a bounded cache that honours TTLs, cache-flush bits and goodbyes (10.1, 10.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from .message import TYPE_A, TYPE_AAAA, Message, Question, encode
from .types import MdnsStats, Transmit

QUERY_INTERVAL = 1.0
"""Seconds to the first retransmission; each later interval doubles (RFC 6762 section 5.2)."""
MAX_QUERIES = 3
"""Transmissions of one lookup at most: at 0, 1 and 3 seconds."""
MAX_LOOKUPS = 64
"""Names looked up at once at most; more fail at once (a peer's candidate list is no
reason to flood the link)."""
MAX_CACHE = 256
"""Names cached at most; the one that expires first makes room."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """A lookup found ``addresses`` (in the order they came) for ``name``."""

    name: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResolveFailed:
    """A lookup of ``name`` reached its deadline (or could not start) without an answer."""

    name: str


ResolverEvent = Resolved | ResolveFailed


@dataclass(slots=True)
class _Lookup:
    deadline: float
    next_query: float | None
    sent: int = 0


# (record type, address) -> when it expires
_Entries = dict[tuple[int, str], float]


class Resolver:
    """Lookups of ``<uuid>.local`` names and the cache of their answers.

    Only answers for names being looked up, or already cached, are kept, so the cache holds
    nothing a peer did not make us ask for. The first query of a lookup asks for a unicast
    answer (QU, RFC 6762 section 5.4), retransmissions for multicast ones.
    """

    def __init__(
        self,
        stats: MdnsStats,
        *,
        max_queries: int = MAX_QUERIES,
        max_lookups: int = MAX_LOOKUPS,
        max_cache: int = MAX_CACHE,
    ) -> None:
        self._stats = stats
        self._max_queries = max_queries
        self._max_lookups = max_lookups
        self._max_cache = max_cache
        self._lookups: dict[str, _Lookup] = {}
        self._cache: dict[str, _Entries] = {}
        self._transmits: list[Transmit] = []
        self._events: list[ResolverEvent] = []

    @property
    def pending(self) -> frozenset[str]:
        """The names being looked up."""
        return frozenset(self._lookups)

    def lookup(self, now: float, name: str, deadline: float) -> None:
        """Look ``name`` up until ``deadline``. The answer comes as a :class:`Resolved` or
        :class:`ResolveFailed` event: at once from the cache, or later. A lookup of a name
        already being looked up sends nothing more and ends at the later deadline."""
        name = name.lower()
        addresses = self.cached(now, name)
        lookup = self._lookups.get(name)
        if addresses:
            self._events.append(Resolved(name, addresses))
        elif lookup is not None:
            lookup.deadline = max(lookup.deadline, deadline)
        elif len(self._lookups) >= self._max_lookups:
            self._events.append(ResolveFailed(name))
        else:
            self._lookups[name] = lookup = _Lookup(deadline, now)
            self._query(now, name, lookup)

    def cached(self, now: float, name: str) -> tuple[str, ...]:
        """The unexpired cached addresses of ``name``."""
        entries = self._cache.get(name.lower(), {})
        return tuple(address for (_, address), expiry in entries.items() if expiry > now)

    def handle_response(self, now: float, response: Message) -> None:
        """Cache the A and AAAA records of ``response`` for names we asked about, and end
        the lookups they answer."""
        flushed: set[tuple[str, int]] = set()
        touched: set[str] = set()
        for record in (*response.answers, *response.additionals):
            address = record.address
            name = record.name.lower()
            if address is None or (name not in self._lookups and name not in self._cache):
                continue
            entries = self._cache.setdefault(name, {})
            if record.cache_flush and (name, record.type) not in flushed:
                flushed.add((name, record.type))
                for key in [key for key in entries if key[0] == record.type]:
                    del entries[key]
            if record.ttl:
                entries[(record.type, address)] = now + record.ttl
            else:
                entries.pop((record.type, address), None)
            touched.add(name)
        for name in touched:
            self._settle(now, name)
        self._trim(now)

    def handle_timeout(self, now: float) -> None:
        """Retransmit the queries that are due; fail the lookups past their deadline."""
        for name, lookup in list(self._lookups.items()):
            if lookup.deadline <= now:
                del self._lookups[name]
                self._events.append(ResolveFailed(name))
            elif lookup.next_query is not None and lookup.next_query <= now:
                self._query(now, name, lookup)

    def poll_timeout(self) -> float | None:
        """The next retransmission or deadline, None without lookups."""
        times = [
            min(lookup.deadline, lookup.next_query or lookup.deadline)
            for lookup in self._lookups.values()
        ]
        return min(times, default=None)

    def poll_transmits(self) -> list[Transmit]:
        """The queries to multicast, oldest first; the list is handed over and cleared."""
        transmits, self._transmits = self._transmits, []
        return transmits

    def poll_events(self) -> list[ResolverEvent]:
        """The lookups that ended, in order; the list is handed over and cleared."""
        events, self._events = self._events, []
        return events

    def _query(self, now: float, name: str, lookup: _Lookup) -> None:
        unicast = lookup.sent == 0
        questions = (Question(name, TYPE_A, unicast), Question(name, TYPE_AAAA, unicast))
        self._transmits.append(Transmit(encode(Message(questions=questions))))
        self._stats.queries_sent += 1
        lookup.sent += 1
        next_query = now + QUERY_INTERVAL * 2 ** (lookup.sent - 1)
        more = lookup.sent < self._max_queries and next_query < lookup.deadline
        lookup.next_query = next_query if more else None

    def _settle(self, now: float, name: str) -> None:
        """Drop an emptied cache entry, or end the lookup it answers."""
        addresses = self.cached(now, name)
        if not self._cache[name]:
            del self._cache[name]
        elif addresses and self._lookups.pop(name, None) is not None:
            self._events.append(Resolved(name, addresses))

    def _trim(self, now: float) -> None:
        """Keep the cache within its bound: expired names first, then the soonest to expire."""
        if len(self._cache) <= self._max_cache:
            return
        for name in [name for name in self._cache if not self.cached(now, name)]:
            del self._cache[name]
        while len(self._cache) > self._max_cache:
            del self._cache[min(self._cache, key=lambda n: max(self._cache[n].values()))]
