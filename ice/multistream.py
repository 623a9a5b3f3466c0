"""Several data streams under one ICE agent (RFC 8445), sans-I/O.

A :class:`MultiStreamAgent` is what RFC 8445 calls the agent of a session with several
data streams (audio, video, data without BUNDLE): one :class:`~ice.Agent` per stream
holds that stream's components, candidates and check list, and the group makes them one
agent. They share:

- one role and tie-breaker (a role switch in any stream switches all), one ufrag and pwd,
  one ICE restart;
- one Ta: new checks of all streams are paced together, the check lists taking turns
  (section 6.1.4.2), and each check's RTO counts the active check lists (section 14.3);
- the frozen-pair rules: a foundation is unfrozen in the first stream that has it only
  (section 6.1.2.6), an idle foundation is one with no Waiting or In-Progress pair in any
  stream, and a success unfreezes its foundation in every stream (section 7.2.5.3.3);
- one pair cap, ``max_pairs`` (100 by default), split evenly between the check lists
  (section 6.1.2.5).

The group has one timer, like a single agent: feed it datagrams (it finds the stream by
the local base) and the time, and read transmits, events (tagged with their stream) and
the next deadline from it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .agent import (
    _SYSTEM_RANDOM,
    DEFAULT_TA,
    Agent,
    AgentStats,
    Nomination,
    Transmit,
    _check_tie_breaker,
    _random_credentials,
)
from .candidate import Address, Candidate
from .checklist import CheckList
from .errors import IceError
from .events import ConnectionState, ConnectionStateChanged, Event
from .pacer import GLOBAL_PACER, Pacer


class MultiStreamAgent:
    """One ICE agent with a data stream per entry of ``components`` (its number of
    components), e.g. ``components=(2, 2, 1)`` for RTP + RTCP audio and video and a data
    channel. The other options are :class:`~ice.Agent`'s, applied to every stream;
    ``max_pairs`` caps all check lists together.

    ``streams[i]`` is stream ``i``'s agent: its ``selected`` pairs, ``stats``, ``pairs()``
    and state. Configure and drive the group, not the streams.
    """

    __slots__ = (
        "_by_base",
        "_events",
        "_next_slot",
        "_pacer",
        "_turn",
        "state",
        "streams",
    )

    def __init__(
        self,
        controlling: bool,
        *,
        components: Sequence[int],
        max_pairs: int = 100,
        ta: float = DEFAULT_TA,
        pacer: Pacer | None = GLOBAL_PACER,
        nomination: Nomination = "regular",
        lite: bool = False,
        local_ufrag: str | None = None,
        local_pwd: str | None = None,
        tie_breaker: int | None = None,
        rng: random.Random | None = None,
        **options: float | bool,
    ) -> None:
        if not components:
            raise ValueError("a MultiStreamAgent needs at least one stream")
        if max_pairs < len(components):
            raise ValueError(f"max_pairs must be at least one per stream ({len(components)})")
        rng = rng if rng is not None else _SYSTEM_RANDOM
        ufrag, pwd = _random_credentials(rng)
        ufrag = ufrag if local_ufrag is None else local_ufrag
        pwd = pwd if local_pwd is None else local_pwd
        tie_breaker = _check_tie_breaker(tie_breaker, rng)
        self.streams = [
            Agent(
                controlling,
                components=count,
                ta=ta,
                pacer=pacer,
                nomination=nomination,
                lite=lite,
                max_pairs=max_pairs // len(components),
                local_ufrag=ufrag,
                local_pwd=pwd,
                tie_breaker=tie_breaker,
                rng=rng,
                **options,  # type: ignore[arg-type]
            )
            for count in components
        ]
        self._share_check_lists()
        for stream in self.streams:
            stream._group = self
        self._pacer = pacer
        self._next_slot = float("-inf")
        self._turn = 0
        self._by_base: dict[Address, int] = {}
        self._events: list[tuple[int | None, Event]] = []
        self.state = ConnectionState.NEW

    def _share_check_lists(self) -> None:
        active: dict[str, int] = {}
        succeeded: set[str] = set()
        for stream in self.streams:
            stream.checklist = CheckList(stream.checklist.max_pairs, active)
            stream._succeeded_foundations = succeeded

    # -- what the streams share ------------------------------------------------------------

    @property
    def local_ufrag(self) -> str:
        return self.streams[0].local_ufrag

    @property
    def local_pwd(self) -> str:
        return self.streams[0].local_pwd

    @property
    def controlling(self) -> bool:
        return self.streams[0].controlling

    @property
    def ta(self) -> float:
        return self.streams[0].ta

    @property
    def proposed_ta(self) -> float:
        return self.streams[0].proposed_ta

    @property
    def stats(self) -> AgentStats:
        """The counters of all streams added up."""
        total = AgentStats()
        for stream in self.streams:
            for name in AgentStats.__dataclass_fields__:
                setattr(total, name, getattr(total, name) + getattr(stream.stats, name))
        return total

    @property
    def restarting(self) -> bool:
        """Whether an ICE restart is under way in some stream (see
        :attr:`Agent.restarting`)."""
        return any(stream.restarting for stream in self.streams)

    @property
    def ice_deadline(self) -> float | None:
        """When the ICE timeout fails a stream that has not connected (or completed its
        ICE restart) by then."""
        deadlines = [d for s in self.streams if (d := s.ice_deadline) is not None]
        return min(deadlines) if deadlines else None

    def active_lists(self) -> int:
        """How many check lists have checks to send or in flight (at least 1)."""
        return max(1, sum(1 for s in self.streams if s._checking and s._ordinary))

    # -- configuration ---------------------------------------------------------------------

    def set_remote_credentials(
        self, ufrag: str, pwd: str, *, ta: float | None = None, lite: bool = False
    ) -> None:
        """The peer's credentials for all streams; changed ones after :meth:`start` are
        the peer's ICE restart, which restarts every stream with one new ufrag and pwd."""
        first = self.streams[0]
        if (
            first._started_at is not None
            and first.state is not ConnectionState.CLOSED
            and first.remote_ufrag is not None
            and (ufrag, pwd) != (first.remote_ufrag, first.remote_pwd)
        ):
            self._restart(by_peer=True)
        for stream in self.streams:
            stream.set_remote_credentials(ufrag, pwd, ta=ta, lite=lite)
        self._update_state()

    def restart(self) -> None:
        """An ICE restart of every stream (see :meth:`Agent.restart`), with one new ufrag
        and pwd; :meth:`start` then begins the new checks."""
        self._restart(by_peer=False)

    def _restart(self, by_peer: bool) -> None:
        if self.state is ConnectionState.CLOSED:
            raise IceError("cannot restart a closed agent")
        for stream in self.streams:  # all or none restart
            stream._check_restartable()
        ufrag, pwd = _random_credentials(self.streams[0]._rng)
        for stream in self.streams:
            stream._restart(ufrag, pwd, by_peer)
        self._share_check_lists()
        self._update_state()

    def add_local_candidate(self, stream: int, candidate: Candidate | None) -> bool:
        """A gathered candidate of stream ``stream`` (None: that stream's gathering has
        ended); False when redundant. Each base belongs to one stream."""
        agent = self.streams[stream]
        if candidate is not None and candidate.base is not None:
            owner = self._by_base.get(candidate.base)
            if owner is not None and owner != stream:
                raise ValueError(f"{candidate.base} is already a base of stream {owner}")
            self._by_base[candidate.base] = stream
        added = agent.add_local_candidate(candidate)
        self._update_state()
        return added

    def add_remote_candidate(self, stream: int, candidate: Candidate | None) -> None:
        """A candidate the peer signalled for stream ``stream`` (None: it has no more)."""
        self.streams[stream].add_remote_candidate(candidate)
        self._update_state()

    # -- the clock and the network ---------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin the checks of every stream, in stream order: a foundation is first
        unfrozen in the first stream that has it."""
        for stream in self.streams:
            stream.start(now)
        self._update_state()

    def close(self) -> None:
        for stream in self.streams:
            stream.close()
        self._update_state()

    def handle_timeout(self, now: float, early: float = 0.0) -> None:
        for stream in self.streams:
            stream.handle_timeout(now, early)
        self._update_state()

    def handle_datagram(self, now: float, data: bytes, local: Address, remote: Address) -> None:
        """A STUN datagram that arrived on ``local``: for the stream with that base."""
        index = self._by_base.get(local)
        if index is None:
            self.streams[0].stats.dropped_unknown_local += 1
            return
        self.streams[index].handle_datagram(now, data, local, remote)
        self._update_state()

    def handle_unreachable(self, now: float, local: Address, remote: Address, reason: str) -> None:
        index = self._by_base.get(local)
        if index is not None:
            self.streams[index].handle_unreachable(now, local, remote, reason)
            self._update_state()

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` must next be called; None when nothing is due."""
        deadline = None
        for stream in self.streams:
            wake = stream.poll_timeout()
            if wake is not None and (deadline is None or wake < deadline):
                deadline = wake
        if any(stream._has_work() for stream in self.streams):
            slot = self._next_slot
            if self._pacer is not None:
                slot = self._pacer.slot(slot)
            if deadline is None or slot < deadline:
                deadline = slot
        return deadline

    def poll_transmits(self) -> list[Transmit]:
        transmits: list[Transmit] = []
        for stream in self.streams:
            transmits += stream.poll_transmits()
        return transmits

    def poll_event(self) -> tuple[int | None, Event] | None:
        """The next event and the stream it concerns (None for the whole agent's
        :class:`~ice.ConnectionStateChanged`), or None."""
        self._collect_events()
        return self._events.pop(0) if self._events else None

    def poll_events(self) -> list[tuple[int | None, Event]]:
        """Every event so far, as :meth:`poll_event` gives them (the list is handed
        over, not copied)."""
        self._collect_events()
        events = self._events
        if events:
            self._events = []
        return events

    def _collect_events(self) -> None:
        for index, stream in enumerate(self.streams):
            if stream._events:
                for event in stream.poll_events():
                    if type(event) is not ConnectionStateChanged:
                        self._events.append((index, event))

    # -- pacing and state ------------------------------------------------------------------

    def _pace(self, now: float, soon: float | None) -> None:
        """One new check per Ta for all streams, the check lists taking turns."""
        if soon is None:
            soon = now
        if soon < self._next_slot:
            return
        pacer = self._pacer
        if pacer is not None and pacer.slot(soon) > soon:
            return
        streams = self.streams
        count = len(streams)
        for step in range(count):
            index = (self._turn + step) % count
            stream = streams[index]
            if stream._checking and stream._remote_key is not None and stream._send_next(now):
                self._turn = (index + 1) % count
                self._next_slot = max(now, self._next_slot) + stream.ta
                if pacer is not None:
                    pacer.take(pacer.slot(now))
                return

    def _update_state(self) -> None:
        """The agent's state from its streams', as RTCIceConnectionState aggregates the
        transports': failed if any failed, else disconnected if any is, else new if all
        are new or closed, else checking if any is new or checking, else completed if
        all are completed (or closed), else connected."""
        states = {stream.state for stream in self.streams}
        if states == {ConnectionState.CLOSED}:
            state = ConnectionState.CLOSED
        elif ConnectionState.FAILED in states:
            state = ConnectionState.FAILED
        elif ConnectionState.DISCONNECTED in states:
            state = ConnectionState.DISCONNECTED
        elif states <= {ConnectionState.NEW, ConnectionState.CLOSED}:
            state = ConnectionState.NEW
        elif states & {ConnectionState.NEW, ConnectionState.CHECKING}:
            state = ConnectionState.CHECKING
        elif states <= {ConnectionState.COMPLETED, ConnectionState.CLOSED}:
            state = ConnectionState.COMPLETED
        else:
            state = ConnectionState.CONNECTED
        if state is not self.state:
            self.state = state
            error = next((s.error for s in self.streams if s.error is not None), None)
            failed = error if state is ConnectionState.FAILED else None
            self._events.append((None, ConnectionStateChanged(state, failed)))
