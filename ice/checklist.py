"""Candidate pairs and the check list (RFC 8445 section 6.1.2), sans-I/O.

A :class:`CheckList` holds the pairs of one data stream, indexed by (local base, remote
address), and answers the scheduler's one question - which pair to check next - in
O(log n): triggered checks first (FIFO), then the highest-priority Waiting pair, then a
Frozen pair unfrozen by the rule of section 6.1.4.2. Nothing here scans every pair per
packet.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from dataclasses import dataclass
from enum import StrEnum

from .candidate import Address, Candidate


class PairState(StrEnum):
    """The states of a candidate pair (RFC 8445 section 6.1.2.6)."""

    FROZEN = "frozen"
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FROZEN = PairState.FROZEN
WAITING = PairState.WAITING
IN_PROGRESS = PairState.IN_PROGRESS
SUCCEEDED = PairState.SUCCEEDED
FAILED = PairState.FAILED
_INDEX = {state: index for index, state in enumerate(PairState)}

PairKey = tuple[Address, Address]
"""(local base, remote address): the transport addresses a check travels between."""


def pair_priority(controlling: int, controlled: int) -> int:
    """RFC 8445 section 6.1.2.3: the priority of a pair from the candidate priorities of
    the controlling and the controlled agent."""
    low, high = (controlling, controlled) if controlling < controlled else (controlled, controlling)
    return (low << 32) + (high << 1) + (1 if controlling > controlled else 0)


class CandidatePair:
    """A local and a remote candidate of one component, with the state of their checks.

    ``local`` is the candidate the pair was formed from (a host or relayed candidate; for
    a valid pair learned from a response, the server- or peer-reflexive candidate the
    peer saw); data and checks leave from ``local.base``. The counters, in the spirit of
    RTCIceCandidatePairStats, are kept by the agent (STUN: requests, responses, consent,
    RTT, last activity) and by the shell that carries the application's data (bytes,
    packets, last activity). Times are the agent's clock.
    """

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "checked_at",
        "component",
        "consent_requests_received",
        "consent_requests_sent",
        "failure",
        "foundation",
        "key",
        "last_received_at",
        "last_sent_at",
        "local",
        "nominate_on_success",
        "nominated",
        "nominating",
        "packets_received",
        "packets_sent",
        "priority",
        "queued",
        "remote",
        "removed",
        "requests_received",
        "requests_sent",
        "responses_received",
        "responses_sent",
        "rtt",
        "seq",
        "state",
        "total_rtt",
        "valid",
    )

    def __init__(self, local: Candidate, remote: Candidate, controlling: bool, seq: int) -> None:
        self.local = local
        self.remote = remote
        self.component = local.component
        self.foundation = f"{local.foundation}:{remote.foundation}"
        self.key: PairKey = (local.base or local.address, remote.address)
        self.priority = 0
        self.set_role(controlling)
        self.state = FROZEN
        self.seq = seq
        self.valid: CandidatePair | None = None
        """The valid pair this pair's successful check produced (often the pair itself)."""
        self.nominated = False
        self.nominating = False
        """Controlling side: the next check of this pair carries USE-CANDIDATE."""
        self.nominate_on_success = False
        """Controlled side: the peer nominated this pair before our check succeeded."""
        self.queued = False
        self.removed = False
        self.failure: str | None = None
        self.rtt: float | None = None
        """The round-trip time of the latest answered check or consent request."""
        self.total_rtt = 0.0
        """The sum of every measured round-trip time (over ``responses_received``)."""
        self.checked_at: float | None = None
        self.requests_sent = 0
        self.requests_received = 0
        self.responses_sent = 0
        self.responses_received = 0
        self.consent_requests_sent = 0
        self.consent_requests_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.packets_sent = 0
        self.packets_received = 0
        self.last_sent_at: float | None = None
        """When a packet (STUN or data) last left on this pair."""
        self.last_received_at: float | None = None

    def set_role(self, controlling: bool) -> None:
        """Recompute the priority for the agent's (new) role."""
        mine, theirs = self.local.priority, self.remote.priority
        self.priority = pair_priority(mine, theirs) if controlling else pair_priority(theirs, mine)

    @property
    def base(self) -> Address:
        """The local transport address checks and data of this pair leave from."""
        return self.key[0]

    def report(self) -> PairReport:
        """A summary of this pair for error messages and statistics."""
        return PairReport(
            local=str(self.local),
            remote=str(self.remote),
            state=self.state,
            nominated=self.nominated,
            reason=self.failure,
            requests_sent=self.requests_sent,
            responses_received=self.responses_received,
            rtt=self.rtt,
        )

    def __repr__(self) -> str:
        flags = " nominated" if self.nominated else ""
        return f"<CandidatePair {self.local} -> {self.remote} {self.state}{flags}>"


@dataclass(frozen=True, slots=True)
class PairReport:
    """How one candidate pair fared, as :class:`~ice.ConnectionFailed` lists it."""

    local: str
    remote: str
    state: PairState
    nominated: bool
    reason: str | None
    requests_sent: int
    responses_received: int
    rtt: float | None

    def __str__(self) -> str:
        outcome = self.reason or str(self.state)
        rtt = f", rtt {self.rtt * 1000:.1f} ms" if self.rtt is not None else ""
        return (
            f"{self.local} -> {self.remote}: {outcome} "
            f"({self.requests_sent} sent, {self.responses_received} answered{rtt})"
        )


def _first_to_unfreeze(pair: CandidatePair) -> tuple[int, int, int]:
    """Within a foundation: the lowest component, then the highest priority."""
    return (pair.component, -pair.priority, pair.seq)


class CheckList:
    """The candidate pairs of one data stream and the order in which they are checked.

    At most ``max_pairs`` pairs are kept: beyond that the lowest-priority pairs that are
    still Frozen or Waiting are dropped (RFC 8445 section 6.1.2.5).
    """

    def __init__(self, max_pairs: int = 100, active: dict[str, int] | None = None) -> None:
        """``active`` counts the Waiting and In-Progress pairs per foundation; check
        lists of one agent's data streams share it, so that the frozen-pair rules see
        all of them (RFC 8445 sections 6.1.2.6 and 6.1.4.2)."""
        if max_pairs < 1:
            raise ValueError("max_pairs must be at least 1")
        self.max_pairs = max_pairs
        self.pairs: dict[PairKey, CandidatePair] = {}
        self.triggered: list[CandidatePair] = []  # FIFO; short, and lighter than a deque
        self._waiting: list[tuple[int, int, int, CandidatePair]] = []
        self._frozen: dict[str, list[CandidatePair]] = {}
        self._active = {} if active is None else active
        self._ranked: list[tuple[int, int, CandidatePair]] = []  # by priority, ascending
        self._counts = [0] * len(_INDEX)  # per state, by _INDEX: a list is half a dict
        self._seq = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def count(self, state: PairState) -> int:
        """How many pairs are in ``state``."""
        return self._counts[_INDEX[state]]

    def next_seq(self) -> int:
        """A number that orders pairs by the time they were created."""
        self._seq += 1
        return self._seq

    # -- membership ------------------------------------------------------------------------

    def add(self, pair: CandidatePair) -> bool:
        """Insert a new Frozen pair; False when it was redundant or below the cap.

        A pair with the key of an existing one is redundant (section 6.1.2.4): the one
        with the higher priority stays, unless the existing one has already been checked.
        """
        existing = self.pairs.get(pair.key)
        if existing is not None:
            if existing.state not in (FROZEN, WAITING) or existing.priority >= pair.priority:
                return False
            self.remove(existing)
        if len(self.pairs) >= self.max_pairs and not self._make_room(pair.priority):
            return False
        self.pairs[pair.key] = pair
        self._counts[_INDEX[FROZEN]] += 1
        self._frozen.setdefault(pair.foundation, []).append(pair)
        insort(self._ranked, (pair.priority, -pair.seq, pair))
        return True

    def _make_room(self, priority: int) -> bool:
        for lowest, _, victim in self._ranked:
            if victim.state is FROZEN or victim.state is WAITING:
                if lowest >= priority:
                    return False
                self.remove(victim)
                return True
        return False

    def remove(self, pair: CandidatePair) -> None:
        """Take a Frozen or Waiting pair out of the list."""
        del self.pairs[pair.key]
        pair.removed = True
        ranked = self._ranked
        del ranked[bisect_left(ranked, (pair.priority, -pair.seq))]
        self._counts[_INDEX[pair.state]] -= 1
        if pair.state is FROZEN:
            self._frozen_discard(pair)
        elif pair.state is WAITING:
            self._active[pair.foundation] -= 1

    def _frozen_discard(self, pair: CandidatePair) -> None:
        group = self._frozen[pair.foundation]
        group.remove(pair)
        if not group:
            del self._frozen[pair.foundation]

    # -- states ----------------------------------------------------------------------------

    def set_state(self, pair: CandidatePair, state: PairState) -> PairState:
        """Move ``pair`` to ``state``, keeping the indexes; returns the old state."""
        old = pair.state
        if old is state:
            return old
        pair.state = state
        counts = self._counts
        counts[_INDEX[old]] -= 1
        counts[_INDEX[state]] += 1
        active = self._active
        if old is FROZEN:
            self._frozen_discard(pair)
        elif old is WAITING or old is IN_PROGRESS:
            active[pair.foundation] -= 1
        if state is WAITING or state is IN_PROGRESS:
            active[pair.foundation] = active.get(pair.foundation, 0) + 1
        elif state is FROZEN:
            self._frozen.setdefault(pair.foundation, []).append(pair)
        if state is WAITING:
            heapq.heappush(self._waiting, (-pair.priority, pair.component, pair.seq, pair))
        return old

    def initial_states(self) -> list[CandidatePair]:
        """Section 6.1.2.6: per foundation, unfreeze the pair with the lowest component
        ID and then the highest priority. Returns the pairs set to Waiting."""
        chosen = [
            group[0] if len(group) == 1 else min(group, key=_first_to_unfreeze)
            for foundation, group in self._frozen.items()
            if not self._active.get(foundation)
        ]
        for pair in chosen:
            self.set_state(pair, WAITING)
        return chosen

    def unfreeze_foundation(self, foundation: str) -> list[CandidatePair]:
        """Section 7.2.5.3.3: every Frozen pair with ``foundation`` goes to Waiting."""
        group = self._frozen.get(foundation)
        if not group:
            return []
        pairs = list(group)
        for pair in pairs:
            self.set_state(pair, WAITING)
        return pairs

    def state_for_new_pair(self, foundation: str) -> PairState:
        """The state of a pair formed while checks run (RFC 8838 section 11): Waiting
        unless another pair with its foundation is already Waiting or In-Progress (then
        it stays Frozen until that foundation succeeds or frees up)."""
        return FROZEN if self._active.get(foundation) else WAITING

    def reprioritise(self, controlling: bool) -> None:
        """After a role switch: every pair's priority changes, and with it the order."""
        for pair in self.pairs.values():
            pair.set_role(controlling)
        self._waiting = [
            (-p.priority, p.component, p.seq, p) for p in self.pairs.values() if p.state is WAITING
        ]
        heapq.heapify(self._waiting)
        self._ranked = sorted((p.priority, -p.seq, p) for p in self.pairs.values())

    def highest_pending(self, component: int) -> int:
        """The highest priority of ``component``'s pairs still Frozen, Waiting or
        In-Progress (0 when there is none)."""
        for priority, _, pair in reversed(self._ranked):
            state = pair.state
            if state is not SUCCEEDED and state is not FAILED and pair.component == component:
                return priority
        return 0

    # -- scheduling ------------------------------------------------------------------------

    def enqueue_triggered(self, pair: CandidatePair) -> None:
        """Append ``pair`` to the triggered-check queue (once)."""
        if not pair.queued:
            pair.queued = True
            self.triggered.append(pair)

    def pop_triggered(self) -> CandidatePair | None:
        """The next pair of the triggered-check queue that still wants a check."""
        queue = self.triggered
        while queue:
            pair = queue.pop(0)
            pair.queued = False
            if not pair.removed and (pair.state is WAITING or pair.nominating):
                return pair
        return None

    def pop_waiting(self) -> CandidatePair | None:
        """The highest-priority Waiting pair (lowest component on ties), unfreezing one
        per idle foundation first when none is Waiting (section 6.1.4.2)."""
        waiting = self._waiting
        while True:
            while waiting:
                pair = heapq.heappop(waiting)[3]
                if pair.state is WAITING and not pair.removed:
                    return pair
            if not self._unfreeze_idle():
                return None

    def has_work(self, ordinary: bool = True) -> bool:
        """Whether a check could be sent now: a triggered one or, with ``ordinary``, a
        Waiting pair or a Frozen pair that the next ordinary check would unfreeze."""
        if self.triggered:
            return True
        if not ordinary:
            return False
        waiting = self._waiting
        while waiting:
            pair = waiting[0][3]
            if pair.state is WAITING and not pair.removed:
                return True
            heapq.heappop(waiting)
        return any(not self._active.get(f) for f in self._frozen)

    def _unfreeze_idle(self) -> bool:
        idle = [f for f in self._frozen if not self._active.get(f)]
        for foundation in idle:
            best = max(self._frozen[foundation], key=lambda p: (p.priority, -p.seq))
            self.set_state(best, WAITING)
        return bool(idle)
