"""The asyncio ICE connection: sockets, gathering and one timer around an :class:`Agent`.

Every datagram arriving on a host socket or a TURN allocation is sorted in one place:
answers to our own gathering requests, then STUN (first byte 0-3, a matching length and
the magic cookie) for the agent, then application data - delivered only when it comes
over a valid pair, or from a remote address whose checks to that base authenticated
with our password (the peer may send as soon as the pair is valid on its side, RFC 8445
section 12.1, before our own check of it succeeded), so that nothing else can inject
data into the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from stun.attributes import Attr
from stun.client import resolve
from stun.datagram import DatagramSocket, IcmpError
from stun.errors import StunError
from stun.message import Class, Message, Method, decode
from stun.transaction import ClientTransaction
from stun.uri import format_address
from turn.aio import Allocation, allocate
from turn.errors import TurnError

from .agent import (
    DEFAULT_CONSENT_TIMEOUT,
    DEFAULT_DISCONNECT_TIMEOUT,
    DEFAULT_ICE_TIMEOUT,
    DEFAULT_TA,
    KEEPALIVE_INTERVAL,
    Agent,
    Nomination,
    is_stun,
)
from .candidate import Address, Candidate
from .checklist import CandidatePair
from .driver import ConnectionClosed, Driver, wake
from .errors import IceError
from .events import CandidateLearned, ConnectionState, ConsentExpired, Event
from .gather import (
    DEFAULT_GATHER_TIMEOUT,
    ServerFailure,
    TurnServer,
    failure_reason,
    host_candidate,
    host_preference,
    reflexive_candidate,
    relayed_candidate,
    stun_server,
)
from .interfaces import HostAddress, bind_udp, host_addresses
from .mdns import MdnsService
from .mdns_candidates import MdnsCandidates
from .pacer import GLOBAL_PACER

RECEIVE_QUEUE = 1024
"""Datagrams per component waiting for :meth:`Connection.recv`; beyond that they are
dropped (and counted), as a full socket buffer would."""

_GATHER_RTO = 0.5

_COUNTERS = (
    "total_rtt",
    "requests_sent",
    "requests_received",
    "responses_sent",
    "responses_received",
    "consent_requests_sent",
    "consent_requests_received",
    "bytes_sent",
    "bytes_received",
    "packets_sent",
    "packets_received",
)
"""The per-pair counters :meth:`Connection.stats` reports."""


def _latest(times: Iterable[float | None]) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _ignore_socket_error(exc: OSError) -> None:
    """Errors that name no peer; ICMP errors come through ``_Host.unreachable``."""


_Remains = tuple[asyncio.Task[None] | None, list[asyncio.Task[None]], list[Allocation]]


class _Host:
    """A bound UDP socket of one component: the base of a host candidate."""

    __slots__ = ("address", "component", "connection", "preference", "socket")

    def __init__(
        self,
        connection: Connection,
        address: Address,
        component: int,
        preference: int,
        sock: socket.socket,
    ) -> None:
        self.connection = connection
        self.address = address
        self.component = component
        self.preference = preference
        self.socket = DatagramSocket(
            sock, self.receive, _ignore_socket_error, on_unreachable=self.unreachable
        )

    def receive(self, data: bytes, source: Any) -> None:
        """A datagram from the socket: a gathering answer, or the connection's."""
        if len(source) > 2:
            source = (source[0].partition("%")[0], source[1])
        connection = self.connection
        if data and data[0] < 4 and connection._queries and connection._answer(data):
            return
        connection._received_datagram(data, self.address, source)

    def unreachable(self, destination: Address, payload: bytes, error: OSError) -> None:
        """An ICMP error for a datagram sent from this socket (Linux)."""
        self.connection._unreachable(self.address, destination, payload, error)


class Connection(Driver[CandidatePair]):
    """One ICE session over UDP: gather, exchange candidates, connect, send and receive.

    ``stun_servers`` are ``stun:`` URIs (or ``host:port``) for server-reflexive
    candidates, ``turn_servers`` :class:`TurnServer` entries for relayed ones. Host
    candidates come from every usable interface address (``include_loopback`` adds
    127.0.0.1 and ::1, ``address_filter`` narrows the choice); ``relay_only`` gathers
    relayed candidates only, so that the peer learns no local or reflexive address.
    ``ta``, ``nomination``, ``global_pacing`` and ``ice_timeout`` are the
    :class:`~ice.agent.Agent`'s settings;
    ``ta`` is proposed to the peer, which signals its own in :meth:`set_remote_credentials`.
    ``local_ufrag``, ``local_pwd`` and ``tie_breaker`` are random unless given (test rigs).

    ``lite=True`` makes this an ICE-lite endpoint (as SFUs and servers with a public
    address are): host candidates only, no STUN or TURN servers, no checks of its own;
    it answers the peer's and uses the pair the peer nominates (see
    :class:`~ice.agent.Agent`). Signal ``a=ice-lite`` to the peer; a peer that is lite
    is announced with ``set_remote_credentials(..., lite=True)``.

    :meth:`restart` is an ICE restart; the peer's restart is detected when
    :meth:`set_remote_credentials` brings new credentials, and this connection then has
    new ones of its own (:attr:`local_ufrag`, :attr:`local_pwd`) to signal back. Data
    keeps flowing on the old selected pair until the new checks select one.

    mDNS (draft-ietf-mmusic-mdns-ice-candidates) is opt-in: nothing is multicast unless
    ``mdns``, an open :class:`~ice.mdns.MdnsService`, is given. The caller owns it
    (connections may share one) and closes it; :meth:`close` only unregisters the names
    this connection registered. With it, each ``.local`` candidate of the peer is resolved
    (bounded by the service's resolve timeout) and a copy per address it resolves to joins
    the checks; one that does not resolve is left unpaired and counted in
    :attr:`mdns_unresolved`, and the peer's end-of-candidates reaches the agent once the
    resolutions under way have ended. Without one, ``.local`` candidates are carried but
    never paired. ``mdns_publish`` (needs ``mdns``) offers our host candidates under
    ``<uuid4>.local`` names, and server-reflexive ones with the related address
    ``0.0.0.0:0`` (``[::]:0``), so that the peer learns no private address; see
    :attr:`local_candidates`.
    """

    __slots__ = (
        "_gather_done",
        "_gather_error",
        "_gather_started",
        "_gather_timeout",
        "_gather_waiters",
        "_gathered",
        "_gathering",
        "_host_options",
        "_hosts",
        "_mdns",
        "_port_range",
        "_queries",
        "_readers",
        "_received",
        "_relay_only",
        "_relays",
        "_stun_servers",
        "_tasks",
        "_turn_servers",
        "agent",
        "dropped_data",
        "failures",
    )

    def __init__(
        self,
        controlling: bool,
        components: int = 1,
        *,
        stun_servers: Sequence[str] = (),
        turn_servers: Sequence[TurnServer] = (),
        include_loopback: bool = False,
        ipv4: bool = True,
        ipv6: bool = True,
        include_link_local: bool = False,
        address_filter: Callable[[HostAddress], bool] | None = None,
        port_range: tuple[int, int] | None = None,
        relay_only: bool = False,
        ta: float = DEFAULT_TA,
        negotiate_ta: bool = True,
        nomination: Nomination = "regular",
        global_pacing: bool = True,
        ice_timeout: float = DEFAULT_ICE_TIMEOUT,
        consent: bool = True,
        consent_timeout: float = DEFAULT_CONSENT_TIMEOUT,
        disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        gather_timeout: float = DEFAULT_GATHER_TIMEOUT,
        max_pairs: int = 100,
        local_ufrag: str | None = None,
        local_pwd: str | None = None,
        tie_breaker: int | None = None,
        mdns: MdnsService | None = None,
        mdns_publish: bool = False,
        lite: bool = False,
    ) -> None:
        self._stun_servers = [stun_server(url) for url in stun_servers]
        self._turn_servers = list(turn_servers)
        for server in self._turn_servers:
            server.address  # noqa: B018 - parse now: a bad URI is the caller's error
        self._host_options: dict[str, Any] = {
            "ipv4": ipv4,
            "ipv6": ipv6,
            "include_loopback": include_loopback,
            "include_link_local": include_link_local,
            "address_filter": address_filter,
        }
        self._port_range = port_range
        if relay_only and not turn_servers:
            raise ValueError("relay_only needs at least one TURN server")
        self._relay_only = relay_only
        if gather_timeout <= 0:
            raise ValueError("gather_timeout must be positive")
        self._gather_timeout = gather_timeout
        if mdns_publish and mdns is None:
            raise ValueError("mdns_publish needs an mdns service")
        self._mdns = None if mdns is None else MdnsCandidates(mdns, mdns_publish)
        if lite and (stun_servers or turn_servers or relay_only):
            raise ValueError("an ICE-lite connection has host candidates only: no servers")
        self.agent = self._make_agent(
            controlling,
            components,
            {
                "ta": ta,
                "negotiate_ta": negotiate_ta,
                "nomination": nomination,
                "pacer": GLOBAL_PACER if global_pacing else None,
                "ice_timeout": ice_timeout,
                "consent": consent,
                "consent_timeout": consent_timeout,
                "disconnect_timeout": disconnect_timeout,
                "keepalive_interval": keepalive_interval,
                "max_pairs": max_pairs,
                "local_ufrag": local_ufrag,
                "local_pwd": local_pwd,
                "tie_breaker": tie_breaker,
                "lite": lite,
            },
        )
        super().__init__(self.agent)
        self._hosts: dict[Address, _Host] = {}
        self._relays: dict[Address, Allocation] = {}
        self._queries: dict[bytes, tuple[ClientTransaction, asyncio.Future[Message | None]]] = {}
        self._gathering: asyncio.Task[None] | None = None  # only with servers to ask
        self._gather_started = False
        self._gather_error: BaseException | None = None
        self._gathered: list[Candidate] = []
        self._gather_done = False
        self._gather_waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[Any]] | None = None  # made when needed
        self._received: dict[int, deque[bytes]] = {}  # made when needed: 600 bytes each
        self._readers: dict[int, list[asyncio.Future[None]]] = {}  # made when needed
        self.failures: list[ServerFailure] = []
        """STUN and TURN servers that gave no candidate, and why."""
        self.dropped_data = 0
        """Application datagrams dropped: not over a valid pair, or the queue was full."""

    def _make_agent(self, controlling: bool, components: int, options: dict[str, Any]) -> Agent:
        """This connection's agent (a stream of a MultiStreamConnection takes its own)."""
        return Agent(controlling, components=components, **options)

    # -- what we offer ---------------------------------------------------------------------

    @property
    def local_candidates(self) -> list[Candidate]:
        """The candidates gathered so far (peer-reflexive ones learned later excluded), as
        offered to the peer: with ``mdns_publish``, under their ``.local`` names (the
        agent's own candidates, in its pairs, keep their IP addresses)."""
        return [self._offered(c) for c in self._gathered]

    @property
    def mdns_unresolved(self) -> int:
        """The peer's ``.local`` candidates that ``mdns`` did not resolve (left unpaired)."""
        return 0 if self._mdns is None else self._mdns.unresolved

    def _offered(self, candidate: Candidate) -> Candidate:
        """One of the agent's candidates in the form the peer is offered."""
        return candidate if self._mdns is None else self._mdns.public(candidate)

    @property
    def state(self) -> ConnectionState:
        return self.agent.state

    # -- gathering -------------------------------------------------------------------------

    async def gather(self) -> AsyncIterator[Candidate]:
        """Yield each local candidate the moment it exists (trickle ICE); ends when every
        server has answered or timed out. Raises :class:`~ice.IceError` when gathering
        could not start (no usable interface address)."""
        self._start_gathering()
        seen = 0
        while True:
            while seen < len(self._gathered):
                seen += 1
                yield self._offered(self._gathered[seen - 1])
            if self._gather_done:
                break
            await self._gathering_progress()
        if self._gather_error is not None:
            raise self._gather_error

    async def gather_all(self) -> list[Candidate]:
        """Gather every candidate and return them."""
        self._start_gathering()
        while not self._gather_done:
            await self._gathering_progress()
        if self._gather_error is not None:
            raise self._gather_error
        return self.local_candidates

    async def _gathering_progress(self) -> None:
        """Until the next candidate, or the end of gathering."""
        waiter = asyncio.get_running_loop().create_future()
        self._gather_waiters.append(waiter)
        await waiter

    def _start_gathering(self) -> None:
        """Open the host sockets now; ask the servers, if any, in a task."""
        if self._closed:
            raise self._closed_error()
        if self._gather_started:
            return
        self._gather_started = True
        loop = self._bind_loop()
        if not self._relay_only:
            try:
                self._open_hosts()
            except (IceError, OSError) as exc:
                self._gather_error = exc
                self._end_gathering()
                return
        if self._turn_servers or (self._stun_servers and not self._relay_only):
            self._gathering = loop.create_task(self._gather_from_servers())
        else:
            self._end_gathering()

    async def _gather_from_servers(self) -> None:
        try:
            jobs = [self._relayed(server) for server in self._turn_servers]
            if not self._relay_only:
                jobs += [self._reflexive(server) for server in self._stun_servers]
            await asyncio.gather(*jobs)
        finally:
            self._end_gathering()

    def _end_gathering(self) -> None:
        self._gather_done = True
        self._wake_gatherers()
        if not self._closed:
            self._add_local(None)
            if self.agent.state is ConnectionState.COMPLETED:
                self._service()

    def _emit(self, candidate: Candidate) -> None:
        if self._closed or not self._add_local(candidate):
            return
        if self._mdns is not None:
            self._mdns.gathered(candidate)
        self._gathered.append(candidate)
        self._wake_gatherers()
        self._service()

    def _add_local(self, candidate: Candidate | None) -> bool:
        """Give the agent a gathered candidate (None: gathering has ended)."""
        return self.agent.add_local_candidate(candidate)

    def _add_remote(self, candidate: Candidate | None) -> None:
        """Give the agent a candidate of the peer (None: the peer has no more)."""
        self.agent.add_remote_candidate(candidate)

    def _wake_gatherers(self) -> None:
        wake(self._gather_waiters)

    def _open_hosts(self) -> None:
        addresses = host_addresses(**self._host_options)
        if not addresses:
            raise IceError("no usable interface address (include_loopback for tests?)")
        for component in range(1, self.agent.components + 1):
            for address in addresses:
                sock = bind_udp(address, port_range=self._port_range)
                base: Address = (address.ip, int(sock.getsockname()[1]))
                host = _Host(self, base, component, host_preference(address), sock)
                self._hosts[base] = host
                self._emit(host_candidate(base, host.preference, component))

    async def _reflexive(self, server_address: Any) -> None:
        server = str(server_address)
        try:
            address = await resolve(server_address.host, server_address.port)
        except StunError as exc:
            self.failures.append(ServerFailure(server, failure_reason(exc)))
            return
        family_v6 = ":" in address[0]
        hosts = [h for h in self._hosts.values() if (":" in h.address[0]) == family_v6]
        if not hosts:
            self.failures.append(ServerFailure(server, "no local address of its family"))
            return
        results = await asyncio.gather(*(self._query(h, address) for h in hosts))
        errors = [r for r in results if isinstance(r, str)]
        if len(errors) == len(results):
            self.failures.append(ServerFailure(server, errors[0]))
            return
        for host, mapped in zip(hosts, results, strict=True):
            if isinstance(mapped, tuple):
                self._emit(
                    reflexive_candidate(
                        mapped, host.address, host.preference, host.component, server
                    )
                )

    async def _query(self, host: _Host, server: Address) -> Address | str:
        """One Binding request from a host socket; the mapped address or why not."""
        assert self._loop is not None
        request = Message(Method.BINDING, Class.REQUEST).encode(fingerprint=True)
        now = self._time()
        transaction = ClientTransaction(request, now, rto=_GATHER_RTO, timeout=self._gather_timeout)
        future: asyncio.Future[Message | None] = self._loop.create_future()
        self._queries[transaction.transaction_id] = (transaction, future)
        sock = host.socket
        try:
            while not transaction.done:
                data = transaction.poll_transmit()
                if data is not None:
                    sock.sendto(data, server)
                wake = transaction.poll_timeout()
                if wake is None:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), max(0.0, wake - self._time()))
                if future.done():
                    break
                transaction.handle_timeout(self._time())
        finally:
            del self._queries[transaction.transaction_id]
        if transaction.response is not None:
            mapped = transaction.response.get(Attr.XOR_MAPPED_ADDRESS)
            if mapped is None:
                return "the answer had no XOR-MAPPED-ADDRESS"
            return (str(mapped[0]), int(mapped[1]))
        error = transaction.error
        return "timeout" if error is None else failure_reason(error)

    def _answer(self, data: bytes) -> bool:
        """Hand a datagram to the gathering query it answers, if any."""
        entry = self._queries.get(data[8:20])
        if entry is None:
            return False
        transaction, future = entry
        try:
            message = decode(data)
        except StunError:
            return False
        handled = transaction.handle_response(message, self._time())
        if handled and transaction.done and not future.done():
            future.set_result(transaction.response)
        return True

    def _unreachable(
        self, base: Address, destination: Address, payload: bytes, error: OSError
    ) -> None:
        """An ICMP error for a datagram sent from ``base``, or the kernel's refusal to send
        it: the gathering query that sent it fails now (``"refused"`` for a closed port),
        else the agent's check in flight on that path, instead of at their timeouts."""
        if self._closed:
            return
        icmp = isinstance(error, IcmpError)
        entry = self._queries.get(payload[8:20]) if len(payload) >= 20 else None
        if entry is not None:
            transaction, future = entry
            where = format_address(destination)
            what = f"{where} sent back ICMP" if icmp else f"sending to {where} failed"
            failure = StunError(f"{what}: {error}")
            failure.__cause__ = error
            transaction.cancel(failure)
            if not future.done():
                future.set_result(None)
            return
        reason = f"ICMP: {error.strerror}" if icmp else f"send failed: {error.strerror}"
        self._core.handle_unreachable(self._time(), base, destination, reason)
        self._service()

    async def _relayed(self, server: TurnServer) -> None:
        address = server.address
        name = server.url
        for component in range(1, self.agent.components + 1):
            try:
                allocation = await allocate(
                    address,
                    server.username,
                    server.password,
                    ssl=server.ssl,
                    timeout=self._gather_timeout,
                )
            except (TurnError, StunError, OSError) as exc:
                self.failures.append(ServerFailure(name, failure_reason(exc)))
                return
            if self._closed:
                await allocation.close()
                return
            relayed = allocation.relayed_address
            self._relays[relayed] = allocation
            allocation.set_data_handler(self._relay_receiver(relayed))
            for remote in self.agent.remote_candidates:
                self._permit(allocation, remote)
            preference = 65535 - self._turn_servers.index(server)
            self._emit(
                relayed_candidate(relayed, allocation.mapped_address, preference, component, name)
            )

    def _relay_receiver(self, relayed: Address) -> Callable[[bytes, Address], None]:
        def receive(data: bytes, peer: Address) -> None:
            self._received_datagram(data, relayed, peer)

        return receive

    def _permit(self, allocation: Allocation, remote: Candidate) -> None:
        """Install the TURN permission for a remote candidate now, so that the peer's
        first check through the relay is not dropped by the server."""
        if remote.protocol != "udp" or remote.is_mdns or allocation.closed:
            return
        if (":" in remote.host) != (":" in allocation.relayed_address[0]):
            return
        self._spawn(self._create_permission(allocation, remote.host))

    async def _create_permission(self, allocation: Allocation, ip: str) -> None:
        with contextlib.suppress(TurnError, StunError, OSError):
            await allocation.create_permission(ip)

    async def _finish_tasks(self) -> None:
        """Wait for what still runs once closed: TURN releases begun by a failure."""
        tasks = list(self._tasks or ())
        if tasks:
            await asyncio.wait(tasks)  # a cancelled close() leaves them running

    def _spawn(self, coroutine: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the remote side -------------------------------------------------------------------

    def set_remote_credentials(
        self, ufrag: str, pwd: str, *, ta: float | None = None, lite: bool = False
    ) -> None:
        """The peer's ufrag and pwd, the Ta it proposed (``a=ice-pacing``), if any, and
        whether it is ICE-lite (``a=ice-lite``). New credentials once connecting are the
        peer's ICE restart: this connection restarts too, and its new
        :attr:`local_ufrag` and :attr:`local_pwd` must be signalled back, with
        :attr:`local_candidates`."""
        self.agent.set_remote_credentials(ufrag, pwd, ta=ta, lite=lite)
        self._service()

    async def restart(self) -> None:
        """ICE restart (RFC 8445 section 9): new local credentials and new checks, the
        candidates and the roles kept. Signal :attr:`local_ufrag`, :attr:`local_pwd`
        and :attr:`local_candidates` to the peer, give its new credentials and
        candidates to :meth:`set_remote_credentials` and :meth:`add_remote_candidate`,
        and :meth:`connect` returns the new selected pair. Until then the old one keeps
        carrying data and consent; without a new one within ``ice_timeout`` the
        connection fails."""
        if self._closed:
            raise self._closed_error()
        self.agent.restart()
        self._service()

    def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """A candidate from the peer; None when the peer has signalled the last one.

        With ``mdns``, a ``.local`` candidate is also resolved in the background, and None
        waits for the resolutions under way (see the class docstring)."""
        mdns = self._mdns
        if mdns is not None and not self._closed:
            if candidate is None:
                if mdns.hold_end():
                    return
            elif candidate.is_mdns:
                mdns.resolve(candidate, self.add_remote_candidate)
        self._add_remote(candidate)
        if candidate is not None:
            for allocation in self._relays.values():
                self._permit(allocation, candidate)
        self._service()

    # -- connecting ------------------------------------------------------------------------

    async def connect(self) -> CandidatePair:
        """Run the checks until a pair is selected for every component; return the
        component 1 pair. Raises :class:`~ice.ConnectionFailed` after ``ice_timeout``."""
        return await self._connect()

    async def _ready_to_start(self) -> BaseException | None:
        while not self._gathered and not self._gather_done:
            await self._gathering_progress()
        return self._gather_error

    def _selected(self) -> CandidatePair:
        return self.agent.selected[1]

    def selected_pair(self, component: int = 1) -> CandidatePair | None:
        """The pair carrying ``component``'s data, once there is one."""
        return self.agent.selected.get(component)

    # -- data ------------------------------------------------------------------------------

    async def send(self, data: bytes, component: int = 1) -> None:
        """Send one datagram to the peer over the selected pair of ``component``."""
        self.send_nowait(data, component)

    def send_nowait(self, data: bytes, component: int = 1) -> None:
        """:meth:`send` without the coroutine."""
        if self._closed:
            raise self._closed_error()
        pair = self.agent.selected.get(component)
        if pair is None:
            raise IceError(f"component {component} has no selected pair yet (await connect())")
        base, remote = pair.key
        host = self._hosts.get(base)
        if host is not None:
            host.socket.sendto(data, remote)
        else:
            self._relays[base].sendto(data, remote)
        pair.bytes_sent += len(data)
        pair.packets_sent += 1
        pair.last_sent_at = self._time()

    async def recv(self, component: int = 1) -> bytes:
        """The next datagram the peer sent on ``component`` (over a valid pair)."""
        if not 1 <= component <= self.agent.components:
            raise ValueError(f"no component {component} (1 to {self.agent.components})")
        queue = self._queue(component)
        while not queue:
            readers = self._readers.setdefault(component, [])
            if self._closed:
                raise self._closed_error()
            reader = asyncio.get_running_loop().create_future()
            readers.append(reader)  # every waiting recv() is woken; one gets the datagram
            try:
                await reader
            finally:
                if reader in readers:  # cancelled while waiting (a woken one is off)
                    readers.remove(reader)
        return queue.popleft()

    def _received_datagram(self, data: bytes, base: Address, source: Address) -> None:
        agent = self.agent
        if is_stun(data):
            self._core.handle_datagram(self._time(), data, base, source)
            self._service()
            return
        key = (base, source)
        pair = agent.valid_pairs.get(key)
        if pair is None:
            pair = agent.checklist.pairs.get(key)
            if pair is None or not pair.requests_received:
                self.dropped_data += 1
                return
        pair.bytes_received += len(data)
        pair.packets_received += 1
        pair.last_received_at = self._time()
        component = pair.component
        queue = self._queue(component)
        if len(queue) >= RECEIVE_QUEUE:
            self.dropped_data += 1
            return
        queue.append(data)
        readers = self._readers.get(component)
        if readers:
            wake(readers)

    def _queue(self, component: int) -> deque[bytes]:
        """``component``'s datagrams waiting for :meth:`recv` (made on first use)."""
        queue = self._received.get(component)
        if queue is None:
            queue = self._received[component] = deque()
        return queue

    # -- the agent's clock and output ------------------------------------------------------

    def _service(self) -> None:
        """Send what the agent wants sent, act on its events and re-arm its one timer."""
        self._send_transmits()
        agent = self.agent
        while agent._events:
            for event in agent.poll_events():
                self._stream_event(event)
                self._session_event(event)
        self._arm()

    def _send_transmits(self) -> None:
        for transmit in self.agent.poll_transmits():
            self._transmit(transmit.data, transmit.local, transmit.remote)

    def _stream_event(self, event: Event) -> None:
        """What an event of the agent means for the sockets and relays."""
        if type(event) is CandidateLearned and not event.local:
            for allocation in self._relays.values():
                self._permit(allocation, event.candidate)
        elif type(event) is ConsentExpired:
            self._consent_expired()

    def _transmit(self, data: bytes, local: Address, remote: Address) -> None:
        host = self._hosts.get(local)
        if host is not None:
            host.socket.sendto(data, remote)
            return
        allocation = self._relays.get(local)
        if allocation is not None:
            with contextlib.suppress(TurnError):
                allocation.sendto(data, remote)

    # -- the end ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the agent, close every socket and release every TURN allocation. After a
        failure closed the connection (consent expired), this waits for the releases
        that the failure started."""
        if self._closed:
            await self._finish_tasks()
            return
        self.agent.close()
        self._service()
        await self._release_transport(*self._shut_transport())

    def _shut_transport(self) -> _Remains:
        """Close the sockets and stop the gathering and every task now (the agent is
        closed already); what is left to await: the gathering task, the mDNS
        resolutions, the TURN allocations to release."""
        if self._closed:
            return None, [], []
        gathering = self._gathering
        resolving = self._mdns.close() if self._mdns is not None else []
        return gathering, resolving, self._shut(None)

    async def _release_transport(
        self,
        gathering: asyncio.Task[None] | None,
        resolving: list[asyncio.Task[None]],
        relays: list[Allocation],
    ) -> None:
        if gathering is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await gathering
        await asyncio.gather(*resolving, return_exceptions=True)
        await self._release(relays)

    def _consent_expired(self) -> None:
        """RFC 7675: nothing more may be sent. Close, keeping the agent's reason for
        :meth:`send` and :meth:`recv` to raise; the agent's state stays FAILED."""
        self._shut_for(self.agent.error)

    def _shut_for(self, reason: BaseException | None) -> None:
        """Close now for ``reason``; the TURN allocations are released in a task."""
        relays = self._shut(reason)
        if relays:
            self._spawn(self._release(relays))

    @staticmethod
    async def _release(relays: list[Allocation]) -> None:
        await asyncio.gather(*(a.close() for a in relays), return_exceptions=True)

    def _shut(self, reason: BaseException | None) -> list[Allocation]:
        """Stop the timer, the gathering and every task, close the host sockets and wake
        every waiter; returns the TURN allocations still to be released."""
        self._closed = True
        self._close_reason = reason
        self._stop_timer()
        for readers in self._readers.values():
            wake(readers)
        if self._gathering is not None and not self._gathering.done():
            self._gathering.cancel()
        # A task cancelled before its first step never runs _gather's ``finally``.
        self._gather_done = True
        self._wake_gatherers()
        for task in list(self._tasks or ()):
            task.cancel()
        if self._mdns is not None:
            self._mdns.close()
        for host in self._hosts.values():
            host.socket.close()
        relays = list(self._relays.values())
        self._relays.clear()
        if self._connect_started:
            self._settle(reason or ConnectionClosed("the connection was closed"))
        return relays

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- statistics ------------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """Per candidate pair, in the spirit of RTCIceCandidatePairStats: state,
        nomination, RTT (latest and total), requests, responses and consent requests sent
        and received, bytes and packets both ways, when a packet was last sent and
        received (agent clock). A pair and the valid pair its check produced are one row."""
        selected = {id(p) for p in self.agent.selected.values()}
        rows = []
        pairs: list[CandidatePair] = self.agent.pairs()
        listed = {id(p.valid or p) for p in pairs}
        pairs += [p for p in self.agent.selected.values() if id(p) not in listed]  # restarting
        for pair in pairs:
            valid = pair.valid or pair
            both = (pair,) if valid is pair else (pair, valid)
            rows.append(
                {
                    "local": str(valid.local),
                    "remote": str(pair.remote),
                    "component": pair.component,
                    "state": str(pair.state),
                    "nominated": valid.nominated,
                    "selected": id(valid) in selected,
                    "priority": pair.priority,
                    "rtt": valid.rtt if valid.rtt is not None else pair.rtt,
                    **{name: sum(getattr(p, name) for p in both) for name in _COUNTERS},
                    "last_sent_at": _latest(p.last_sent_at for p in both),
                    "last_received_at": _latest(p.last_received_at for p in both),
                }
            )
        return rows

    def __repr__(self) -> str:
        role = "controlling" if self.agent.controlling else "controlled"
        return f"<ice.Connection {role} {self.state} {len(self._gathered)} candidates>"


__all__ = ["Connection", "ConnectionClosed", "TurnServer"]
