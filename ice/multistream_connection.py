"""Several data streams over one ICE agent, with asyncio: :class:`MultiStreamConnection`.

Each stream is a :class:`~ice.Connection` for what belongs to a stream (its sockets and
candidates, the selected pairs of its components, its data and statistics), while one
:class:`~ice.MultiStreamAgent` and one timer run the checks of all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .agent import Agent
from .candidate import Candidate
from .checklist import CandidatePair
from .connection import Connection
from .driver import Driver
from .events import ConnectionState
from .multistream import MultiStreamAgent


class MultiStreamConnection(Driver[list[CandidatePair]]):
    """One ICE session with a data stream per entry of ``components`` (its number of
    components): ``components=(2, 2, 1)`` for audio and video with RTP and RTCP each,
    and a data channel, without BUNDLE.

    The streams share what RFC 8445 makes one per agent: the role and tie-breaker, one
    ufrag and pwd (:attr:`local_ufrag`, :attr:`local_pwd`), one ICE restart, one Ta for
    the checks of all streams, the frozen-pair rules and the pair cap (``max_pairs``
    for all check lists together). ``options`` are :class:`~ice.Connection`'s (servers,
    host addresses, Ta, nomination, timeouts, ``lite``, ``mdns`` ...), for every stream.

    ``streams[i]`` is stream ``i``: gather its candidates, give it the peer's candidates
    of that stream, then :meth:`send` and :meth:`recv` on it, per component, like a
    :class:`~ice.Connection`. Its ``state`` is the stream's; :attr:`state` aggregates
    them as RTCIceConnectionState does. Credentials, :meth:`connect`, :meth:`restart`
    and :meth:`close` are the session's: called on a stream, they act on the session.
    When the consent of any stream expires (RFC 7675), the session closes with that
    reason, its state FAILED.
    """

    __slots__ = ("_components", "agent", "streams")

    agent: MultiStreamAgent

    def __init__(self, controlling: bool, components: Sequence[int], **options: Any) -> None:
        if not components:
            raise ValueError("a MultiStreamConnection needs at least one stream")
        self._components = tuple(components)
        self.streams: list[Connection] = [
            _Stream(self, index, controlling, count, options)
            for index, count in enumerate(self._components)
        ]
        super().__init__(self.agent)

    def _stream_agent(self, index: int, controlling: bool, options: dict[str, Any]) -> Agent:
        """Stream ``index``'s agent; the first stream's agent options (all streams get
        the same) make the session's agent."""
        if index == 0:
            self.agent = MultiStreamAgent(controlling, components=self._components, **options)
        return self.agent.streams[index]

    # -- what we offer ---------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The session's state, aggregated from the streams'."""
        return self.agent.state

    async def gather_all(self) -> list[list[Candidate]]:
        """Gather every candidate of every stream, all at once; the candidates per
        stream."""
        return list(await asyncio.gather(*(stream.gather_all() for stream in self.streams)))

    # -- the remote side -------------------------------------------------------------------

    def set_remote_credentials(
        self, ufrag: str, pwd: str, *, ta: float | None = None, lite: bool = False
    ) -> None:
        """The peer's credentials, for every stream (see
        :meth:`Connection.set_remote_credentials`); new ones once connecting are the
        peer's ICE restart, which restarts every stream."""
        self.agent.set_remote_credentials(ufrag, pwd, ta=ta, lite=lite)
        self._service()

    def add_remote_candidate(self, stream: int, candidate: Candidate | None) -> None:
        """A candidate the peer signalled for stream ``stream`` (None: it has no more)."""
        self.streams[stream].add_remote_candidate(candidate)

    async def restart(self) -> None:
        """ICE restart of the session (see :meth:`Connection.restart`): one new ufrag and
        pwd for every stream; each component's old selected pair carries its data until
        the new checks select its new one. Refused (IceError) while a restart has moved
        some components to new pairs but not all yet."""
        if self._closed:
            raise self._closed_error()
        self.agent.restart()
        self._service()

    # -- connecting ------------------------------------------------------------------------

    async def connect(self) -> list[CandidatePair]:
        """Run the checks of all streams until every component of every stream has a
        selected pair; the component 1 pair of each stream. Raises
        :class:`~ice.ConnectionFailed` after ``ice_timeout``."""
        return await self._connect()

    def _start_gathering(self) -> None:
        if self._closed:
            raise self._closed_error()
        self._bind_loop()
        for stream in self.streams:
            stream._start_gathering()

    async def _ready_to_start(self) -> BaseException | None:
        for stream in self.streams:
            error = await stream._ready_to_start()
            if error is not None:
                return error
        return None

    def _selected(self) -> list[CandidatePair]:
        return [stream.agent.selected[1] for stream in self.streams]

    def _service(self) -> None:
        """Send what every stream wants sent, act on the events and re-arm the timer."""
        streams = self.streams
        for stream in streams:
            stream._send_transmits()
        for index, event in self.agent.poll_events():
            if index is not None:
                streams[index]._stream_event(event)
            self._session_event(event)
        self._arm()

    # -- the end ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the agent, close every stream's sockets and release its TURN
        allocations (after a failure closed it, the releases the failure began)."""
        if self._closed:
            await asyncio.gather(*(stream._finish_tasks() for stream in self.streams))
            return
        self.agent.close()
        self._service()
        self._closed = True
        self._stop_timer()
        remains = [stream._shut_transport() for stream in self.streams]  # before any await
        await asyncio.gather(
            *(s._release_transport(*r) for s, r in zip(self.streams, remains, strict=True))
        )

    def _consent_expired(self, reason: BaseException | None) -> None:
        """A stream's consent expired (RFC 7675): the session closes, every stream with
        it, and ``reason`` is what send, recv, connect and restart raise from then on;
        the session's state stays FAILED."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        self._stop_timer()
        for stream in self.streams:
            if stream.agent.state is not ConnectionState.FAILED:
                stream.agent.close()
            stream._shut_for(reason)
        self._settle(self._closed_error())

    async def __aenter__(self) -> MultiStreamConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def stats(self) -> list[dict[str, Any]]:
        """Every stream's :meth:`Connection.stats` rows, each with its ``stream``."""
        return [
            {"stream": index, **row}
            for index, stream in enumerate(self.streams)
            for row in stream.stats()
        ]

    def __repr__(self) -> str:
        role = "controlling" if self.agent.controlling else "controlled"
        return f"<ice.MultiStreamConnection {role} {self.state} {len(self.streams)} streams>"


class _Stream(Connection):
    """A stream of a :class:`MultiStreamConnection`: its own sockets, candidates and
    data; the session's agent, timer and outcome."""

    __slots__ = ("_index", "_session")

    def __init__(
        self,
        session: MultiStreamConnection,
        index: int,
        controlling: bool,
        components: int,
        options: dict[str, Any],
    ) -> None:
        self._session = session
        self._index = index
        super().__init__(controlling, components, **options)
        self._core = session.agent

    def _make_agent(self, controlling: bool, components: int, options: dict[str, Any]) -> Agent:
        return self._session._stream_agent(self._index, controlling, options)

    def _add_local(self, candidate: Candidate | None) -> bool:
        return self._session.agent.add_local_candidate(self._index, candidate)

    def _add_remote(self, candidate: Candidate | None) -> None:
        self._session.agent.add_remote_candidate(self._index, candidate)

    def _service(self) -> None:
        self._session._service()

    def _consent_expired(self) -> None:
        self._session._consent_expired(self.agent.error)

    def set_remote_credentials(
        self, ufrag: str, pwd: str, *, ta: float | None = None, lite: bool = False
    ) -> None:
        self._session.set_remote_credentials(ufrag, pwd, ta=ta, lite=lite)

    async def restart(self) -> None:
        await self._session.restart()

    async def connect(self) -> CandidatePair:
        """Connect the session; this stream's component 1 pair."""
        return (await self._session.connect())[self._index]

    async def close(self) -> None:
        """Close the session, every stream with it."""
        await self._session.close()

    def __repr__(self) -> str:
        return f"<ice.MultiStreamConnection stream {self._index} {self.state}>"


__all__ = ["MultiStreamConnection"]
