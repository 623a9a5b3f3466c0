"""A virtual-clock link between a sans-I/O :class:`TurnClient` and a :class:`ScriptedTurnServer`.

:class:`Link` owns the clock. :meth:`Link.pump` carries every pending message between the
two at the current instant (the network has no delay); :meth:`Link.advance` wakes the
client at each :meth:`~TurnClient.poll_timeout` up to a given time, pumping after each
wake-up. Events are collected with the virtual time they were polled at, so that tests can
assert both what happened and when. Loss towards the server is scripted with
:meth:`Link.drop_next`; loss towards the client with the server's ``lose_next``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from stun import Attr, Class, Message, Method, decode
from tests.turn.scripted import DEFAULT_CLIENT, Address, Received, ScriptedTurnServer
from turn import Allocated, Event, TurnClient

USERS = {"alice": "pw", "bob": "pw2"}
REALM = "example.org"
RELAY_IP = "198.51.100.1"
RELAY_IPV6 = "2001:db8::1"
PEER = ("203.0.113.5", 9000)
PEER2 = ("203.0.113.6", 9000)
PEER3 = ("203.0.113.7", 9000)
PEER_V6 = ("2001:db8::5", 9000)
FORBIDDEN = ("203.0.113.9", 9000)

E = TypeVar("E")


_CLIENTS = itertools.count(1)


def fixed_random() -> Callable[[int], bytes]:
    """Deterministic transaction ids (a counter), distinct from the server's own and from
    those of every other client (a server takes a repeated id for a retransmission)."""
    prefix = next(_CLIENTS) << 32
    counter = itertools.count(1)

    def random_bytes(size: int) -> bytes:
        return (0xC0DE << 80 | prefix | next(counter)).to_bytes(size, "big")[-size:]

    return random_bytes


def make_server(**options: Any) -> ScriptedTurnServer:
    """A scripted server for alice and bob, forbidding :data:`FORBIDDEN`."""
    options.setdefault("forbidden_peers", {FORBIDDEN[0]})
    return ScriptedTurnServer(USERS, REALM, **options)


def make_client(password: str = "pw", **options: Any) -> TurnClient:
    """A client for alice with deterministic transaction ids."""
    options.setdefault("random_bytes", fixed_random())
    return TurnClient("alice", password, **options)


class Link:
    """Pumps bytes between one client and one server on a virtual clock."""

    def __init__(
        self,
        client: TurnClient,
        server: ScriptedTurnServer,
        *,
        address: Address = DEFAULT_CLIENT,
        now: float = 0.0,
    ) -> None:
        self.client = client
        self.server = server
        self.address = address
        self.now = now
        self.events: list[tuple[float, Event]] = []
        """Every event polled so far, with the virtual time it was polled at."""
        self.received: list[tuple[float, Address, bytes]] = []
        """Relayed data the client returned from ``handle_data``."""
        self.sent: list[tuple[float, bytes]] = []
        """Every message the client transmitted (dropped ones included)."""
        self._drop = 0
        self.dropped_to_server = 0

    # -- driving ---------------------------------------------------------------------------

    def drop_next(self, count: int = 1) -> None:
        """Lose the next ``count`` messages the client sends to the server."""
        self._drop += count

    def deliver(self, data: bytes) -> None:
        """Send ``data`` (e.g. what ``send`` returned) from the client to the server."""
        self.sent.append((self.now, data))
        if self._drop:
            self._drop -= 1
            self.dropped_to_server += 1
            return
        for reply in self.server.handle(self.now, data, self.address):
            self.to_client(reply)

    def to_client(self, data: bytes) -> tuple[Address, bytes] | None:
        """Hand ``data`` to the client as if the server had sent it; pump what follows."""
        result = self.client.handle_data(self.now, data)
        if result is not None:
            self.received.append((self.now, *result))
        self._collect()
        return result

    def pump(self) -> None:
        """Carry every pending message both ways until the client has nothing to send."""
        for _ in range(100_000):
            data = self.client.poll_transmit()
            if data is None:
                self._collect()
                return
            self.deliver(data)
        raise AssertionError("the client never stops transmitting")

    def advance(self, until: float) -> None:
        """Wake the client at every deadline up to ``until``, then set the clock to it."""
        self.pump()
        for _ in range(100_000):
            deadline = self.client.poll_timeout()
            if deadline is None or deadline > until:
                break
            self.now = max(self.now, deadline)
            self.client.handle_timeout(self.now)
            self.pump()
        else:
            raise AssertionError(f"the client keeps asking to be woken at {deadline}")
        self.now = max(self.now, until)
        self.client.handle_timeout(self.now)
        self.pump()

    def advance_by(self, seconds: float) -> None:
        self.advance(self.now + seconds)

    def run_until(self, predicate: Callable[[], bool], limit: float = 10_000.0) -> None:
        """Advance deadline by deadline until ``predicate()`` holds (fail past ``limit``)."""
        self.pump()
        while not predicate():
            deadline = self.client.poll_timeout()
            if deadline is None or deadline > limit:
                raise AssertionError(f"nothing more happens before {limit} s")
            self.now = max(self.now, deadline)
            self.client.handle_timeout(self.now)
            self.pump()

    def allocate(self) -> Allocated:
        """Start the allocation and run until it is granted (or fail)."""
        self.client.allocate(self.now)
        self.pump()
        return self.expect(Allocated)

    def send(self, data: bytes, peer: Address) -> bytes | None:
        """``client.send``; ChannelData it returns goes to the server at once."""
        wire = self.client.send(self.now, data, peer)
        if wire is not None:
            self.deliver(wire)
        self.pump()
        return wire

    def from_peer(self, data: bytes, peer: Address) -> None:
        """A datagram from ``peer`` to the relay, carried to the client."""
        for frame in self.server.peer_data(self.now, peer, data):
            self.to_client(frame)

    # -- looking -----------------------------------------------------------------------------

    def _collect(self) -> None:
        while (event := self.client.poll_event()) is not None:
            self.events.append((self.now, event))

    def of(self, kind: type[E]) -> list[E]:
        """The events of ``kind`` so far."""
        return [event for _, event in self.events if isinstance(event, kind)]

    def times(self, kind: type[Any]) -> list[float]:
        """When the events of ``kind`` were polled."""
        return [time for time, event in self.events if isinstance(event, kind)]

    def expect(self, kind: type[E]) -> E:
        """The one event of ``kind`` so far."""
        found = self.of(kind)
        assert len(found) == 1, f"expected one {kind.__name__}, got {self.events}"
        return found[0]

    def requests(self, method: int | None = None) -> list[Received]:
        """The requests the server received (of ``method``)."""
        return self.server.requests(method)

    def request_times(self, method: int) -> list[float]:
        return [r.time for r in self.server.requests(method)]

    def transmitted(self, method: int | None = None) -> Iterator[Message]:
        """The STUN messages the client transmitted (of ``method``), lost ones included."""
        for _, data in self.sent:
            if data and data[0] < 0x40:
                message = decode(data)
                if method is None or message.method == method:
                    yield message


def connected(
    server: ScriptedTurnServer | None = None,
    client: TurnClient | None = None,
    **client_options: Any,
) -> Link:
    """A link whose allocation is granted at time 0."""
    link = Link(client or make_client(**client_options), server or make_server())
    link.allocate()
    return link


def peers_of(request: Received) -> list[str]:
    """The peer IPs of a CreatePermission or ChannelBind request."""
    assert request.message is not None
    return [address[0] for address in request.message.get_all(Attr.XOR_PEER_ADDRESS)]


def success(request: Message, attributes: list[tuple[int, Any]], key: bytes | None) -> bytes:
    """A success response to ``request`` (signed with ``key`` if given)."""
    answer = Message(request.method, Class.SUCCESS, request.transaction_id, attributes)
    return answer.encode(key)


def send_indication(message: Message) -> bool:
    return message.method == Method.SEND and message.cls is Class.INDICATION
