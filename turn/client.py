"""The TURN client (RFC 8656): one allocation on one server, sans-I/O.

A :class:`TurnClient` is fed what the server sends (:meth:`~TurnClient.handle_data`) and
the current time (:meth:`~TurnClient.handle_timeout`); it hands back the bytes to send to
the server (:meth:`~TurnClient.poll_transmit`), what happened
(:meth:`~TurnClient.poll_event`) and when it wants to be woken
(:meth:`~TurnClient.poll_timeout`). Every byte it sends goes to the server, on the one
5-tuple the allocation belongs to.

Policies (RFC 8656 leaves these to the client):

* **Channels.** A channel is bound to a peer on the first :meth:`~TurnClient.send` to it
  (``channels=False`` turns channels off: Send indications only). Until the binding is
  confirmed, data goes out in Send indications if the peer's permission is installed, and
  otherwise waits in a bounded queue. A channel is refreshed before it expires while data
  is being sent on it; an idle one is left to expire, and its number is not given to
  another peer until 5 minutes after that (RFC 8656 section 12).
* **Permissions.** :meth:`~TurnClient.create_permission` installs permissions ahead of
  time (several peers in one request); sending to a peer without one installs it. Every
  permission is refreshed for as long as the allocation lives, the refreshes that fall
  due together batched into one request. A batch refused with 403 (which does not say
  which peer is forbidden) is retried one peer per request.
* **Timers.** The allocation is refreshed min(60 s, lifetime / 2) before it ends;
  permissions every 240 s (of 300) and channels every 540 s (of 600) unless configured
  otherwise (to match a server with shorter lifetimes, such as coturn's
  ``--permission-lifetime``: the server's answers do not carry these lifetimes).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from stun import Attr, Class, ErrorResponse, Message, Method, ParseError, decode
from stun.attributes import Address, AddressFamily, PasswordAlgorithm, attribute_name
from stun.auth import long_term_key, nonce_features, userhash
from stun.transaction import DEFAULT_RTO, RELIABLE_TIMEOUT, ClientTransaction
from stun.uri import ip_literal

from .errors import (
    AllocationError,
    AllocationLostError,
    AlternateServer,
    AuthenticationError,
    PeerPermissionError,
    TurnError,
    TurnTimeout,
)
from .events import (
    Allocated,
    AllocationFailed,
    AllocationLost,
    ChannelBound,
    Closed,
    DataDropped,
    Event,
    PeerIcmp,
    PermissionCreated,
    PermissionFailed,
    Refreshed,
)
from .framing import FIRST_CHANNEL, HEADER, LAST_CHANNEL, MAX_DATA, MAX_UDP_DATA, PADDING

UDP = 17
"""REQUESTED-TRANSPORT for a UDP relay, the only kind RFC 8656 defines."""

PERMISSION_LIFETIME = 300.0
CHANNEL_LIFETIME = 600.0
PERMISSION_REFRESH = 240.0
"""Seconds between permission refreshes by default (a minute before the 300 s lifetime)."""
CHANNEL_REFRESH = 540.0
"""Seconds between channel refreshes by default (a minute before the 600 s lifetime)."""
CHANNEL_QUARANTINE = 300.0
"""Seconds after a channel expires before its number may go to another peer."""
REFRESH_MARGIN = 60.0
"""The allocation is refreshed min(this, lifetime / 2) seconds before it ends."""
REFRESH_RETRY = 5.0
"""Seconds before retrying a Refresh the server answered with a 5xx error."""
STALE_NONCE_RETRIES = 3
"""438 Stale Nonce answers to one request that are retried with the new nonce."""
PERMISSION_BATCH = 32
"""Most peers in one CreatePermission request."""
PERMISSION_HOLD = 10.0
"""Seconds a refused peer is refused locally before another CreatePermission is tried."""
CHANNEL_HOLD = 30.0
"""Seconds before binding a channel to a peer again after the server refused it."""
COALESCE = 10.0
"""Permission refreshes due within this many seconds of one another go in one request."""
QUEUE_BYTES = 256 * 1024
"""Bytes that may wait, over all peers, for permissions."""
QUEUE_AGE = 10.0
"""Seconds a datagram may wait for its permission before it is dropped (and reported)."""
CLOSE_TIMEOUT = 5.0
"""Seconds to wait for the answer to the Refresh that releases the allocation."""

_ERROR_HINTS = {
    300: "the server redirects us to another server",
    400: "the server found the request malformed",
    403: "the server refuses this for administrative reasons (a forbidden peer address?)",
    420: "the server does not understand a required attribute",
    437: "the server already has an allocation for this client address and port",
    440: "the server does not support the requested address family (not retried)",
    441: "the credentials differ from those the allocation was made with",
    442: "the server does not support the requested transport protocol",
    443: "the peer address family does not match the relayed address family",
    486: "the allocation quota for this user is reached (wait at least a minute)",
    508: "the server has no relay capacity left (wait at least a minute)",
}


def describe(code: int, reason: str) -> str:
    """``"<code> <reason>: <what it means>"`` for a TURN error response."""
    text = f"{code} {reason}".strip()
    hint = _ERROR_HINTS.get(code)
    return f"{text}: {hint}" if hint else text


@dataclass(frozen=True, slots=True)
class AllocateOptions:
    """What to ask of the server in the Allocate request (RFC 8656 section 7.1).

    ``family``: the relayed address family; ``"ipv6"`` sends REQUESTED-ADDRESS-FAMILY,
    ``"ipv4"`` (the protocol's default) sends nothing, which old servers understand too.
    ``dual_stack``: ask for an IPv6 relayed address as well (ADDITIONAL-ADDRESS-FAMILY).
    ``lifetime``: the LIFETIME to ask for, in seconds (None: the server's default).
    ``dont_fragment``: ask for DONT-FRAGMENT; dropped if the server does not know it.
    ``even_port``: None for no EVEN-PORT, False for an even port, True for an even port
    with the next port reserved (the server then returns a RESERVATION-TOKEN).
    ``reservation_token``: allocate the port reserved by an earlier EVEN-PORT allocation.

    The combinations a server must refuse with 400 (RFC 8656 section 7.2) raise
    :class:`ValueError` here.
    """

    family: Literal["ipv4", "ipv6"] = "ipv4"
    dual_stack: bool = False
    lifetime: int | None = None
    dont_fragment: bool = False
    even_port: bool | None = None
    reservation_token: bytes | None = None

    def __post_init__(self) -> None:
        if self.family not in ("ipv4", "ipv6"):
            raise ValueError(f"family must be 'ipv4' or 'ipv6', not {self.family!r}")
        if self.dual_stack and self.family == "ipv6":
            raise ValueError(
                "a dual-stack allocation asks for IPv4 plus IPv6: it cannot also request"
                " IPv6 only (REQUESTED-ADDRESS-FAMILY with ADDITIONAL-ADDRESS-FAMILY)"
            )
        if self.dual_stack and self.even_port:
            raise ValueError("a dual-stack allocation cannot reserve the next port (EVEN-PORT R=1)")
        if self.reservation_token is not None:
            if len(self.reservation_token) != 8:
                raise ValueError("a reservation token is 8 bytes")
            if self.even_port is not None or self.dual_stack or self.family != "ipv4":
                raise ValueError(
                    "a reservation token goes alone: not with EVEN-PORT or an address family"
                )
        if self.lifetime is not None and not 0 < self.lifetime <= 0xFFFFFFFF:
            raise ValueError("lifetime must be a positive number of seconds")

    def attributes(self, dont_fragment: bool) -> list[tuple[int, Any]]:
        """The Allocate attributes these options ask for."""
        items: list[tuple[int, Any]] = [(Attr.REQUESTED_TRANSPORT, UDP)]
        if self.family == "ipv6":
            items.append((Attr.REQUESTED_ADDRESS_FAMILY, AddressFamily.IPV6))
        if self.dual_stack:
            items.append((Attr.ADDITIONAL_ADDRESS_FAMILY, AddressFamily.IPV6))
        if self.lifetime is not None:
            items.append((Attr.LIFETIME, self.lifetime))
        if dont_fragment:
            items.append((Attr.DONT_FRAGMENT, True))
        if self.even_port is not None:
            items.append((Attr.EVEN_PORT, self.even_port))
        if self.reservation_token is not None:
            items.append((Attr.RESERVATION_TOKEN, self.reservation_token))
        return items


@dataclass(slots=True)
class TurnStats:
    """What the client received that it could not use, and what it relayed."""

    dropped_malformed: int = 0
    """Bytes from the server that were neither STUN nor ChannelData, or malformed."""
    dropped_unmatched: int = 0
    """Well-formed messages that answer no pending request (late, duplicate, forged)."""
    dropped_unknown_channel: int = 0
    """ChannelData on a channel number we never bound."""
    dropped_queued: int = 0
    """Datagrams that waited for a permission and were dropped (reported by
    :class:`DataDropped` or :class:`PermissionFailed` events too)."""
    dropped_unverified: int = 0
    """Responses that failed their integrity check (forged, or signed with another key),
    and error responses without an ERROR-CODE."""
    sent_channel_data: int = 0
    sent_indications: int = 0


def canonical_ip(host: str) -> str:
    """An IP address literal in its canonical form (a ``%scope`` dropped); ValueError for
    anything else."""
    ip = ip_literal(host.partition("%")[0])
    if ip is None:
        raise ValueError(f"a TURN peer must be an IP address, not {host!r}")
    return ip


class _Request:
    """A request in flight: what it is for, so that it can be retried or concluded."""

    __slots__ = ("attributes", "authenticated", "context", "kind", "method", "stale", "tx")

    def __init__(
        self,
        kind: str,
        method: Method,
        attributes: list[tuple[int, Any]],
        context: Any,
        tx: ClientTransaction,
        authenticated: bool,
        stale: int,
    ) -> None:
        self.kind = kind
        self.method = method
        self.attributes = attributes
        self.context = context
        self.tx = tx
        self.authenticated = authenticated
        self.stale = stale


class _Permission:
    """A permission for one peer IP address, and the data waiting for it."""

    __slots__ = ("failed_until", "in_flight", "ip", "queue", "refresh_at", "state")

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.state: Literal["pending", "installed", "failed"] = "pending"
        self.in_flight = False
        self.refresh_at = 0.0
        self.failed_until = 0.0
        self.queue: deque[tuple[float, bytes, Address]] = deque()


class _Channel:
    """A channel number bound (or being bound) to one peer transport address."""

    __slots__ = (
        "bound",
        "expires_at",
        "failed_until",
        "in_flight",
        "number",
        "peer",
        "refresh_at",
        "used",
    )

    def __init__(self, number: int, peer: Address) -> None:
        self.number = number
        self.peer = peer
        self.bound = False
        """Whether ChannelData may be sent: bound and not left to expire."""
        self.in_flight = False
        self.used = False
        """Whether data was sent on it since it was last bound."""
        self.refresh_at = 0.0
        self.expires_at = 0.0
        self.failed_until = 0.0


def _channel_release(channel: _Channel) -> float:
    """When an unused channel's number may go to another peer (or be bound afresh)."""
    return max(channel.expires_at + CHANNEL_QUARANTINE, channel.failed_until)


_CHANNEL_ONLY_ERRORS = frozenset((400, 508))
"""ChannelBind errors about the channel, not the peer: a permission may still work."""


class TurnClient:
    """One TURN allocation, sans-I/O.

    ``username`` and ``password`` are the long-term credentials (see
    :func:`turn.rest_credentials` for the TURN REST API scheme). ``reliable`` is True over
    TCP and TLS (one send per request, padded ChannelData). ``follow_alternate=False``
    turns a 300 redirect into a plain :class:`AllocationError` (a client that has
    already been redirected once must not follow another). ``random_bytes`` makes
    transaction ids.
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        reliable: bool = False,
        options: AllocateOptions | None = None,
        channels: bool = True,
        permission_refresh: float = PERMISSION_REFRESH,
        channel_refresh: float = CHANNEL_REFRESH,
        software: str | None = None,
        rto: float = DEFAULT_RTO,
        follow_alternate: bool = True,
        queue_bytes: int = QUEUE_BYTES,
        queue_age: float = QUEUE_AGE,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not 0 < permission_refresh <= PERMISSION_LIFETIME:
            raise ValueError("permission_refresh must be in (0, 300] seconds")
        if not 0 < channel_refresh <= CHANNEL_LIFETIME:
            raise ValueError("channel_refresh must be in (0, 600] seconds")
        self.username = username
        self._password = password
        self.reliable = reliable
        self.max_data = MAX_DATA if reliable else MAX_UDP_DATA
        """The largest datagram :meth:`send` relays over this transport."""
        self.options = options or AllocateOptions()
        self._use_channels = channels
        self._permission_refresh = permission_refresh
        self._channel_refresh = channel_refresh
        self._software = software
        self._rto = rto
        self._follow_alternate = follow_alternate
        self._queue_limit = queue_bytes
        self._queue_age = queue_age
        self._random = random_bytes
        self.stats = TurnStats()
        self.state: Literal["new", "allocating", "allocated", "closing", "closed", "failed"] = "new"
        self.error: TurnError | None = None
        """Why the client failed, was lost or closed abnormally."""
        self.allocation: Allocated | None = None
        self._dont_fragment = self.options.dont_fragment
        # Credentials learnt from the server's 401.
        self.realm: str | None = None
        self._nonce: str | None = None
        self._key: bytes | None = None
        self._sha256 = False
        self._algorithm = PasswordAlgorithm.MD5
        self._algorithms: tuple[int, ...] | None = None
        self._anonymous = False
        self._auth: list[tuple[int, Any]] = []
        # Allocation timers.
        self._expires_at = 0.0
        self._refresh_at: float | None = None
        self._refreshing = False
        self._close_after_allocate = False
        # Requests, output.
        self._requests: dict[bytes, _Request] = {}
        self._transmits: deque[bytes] = deque()
        self._events: deque[Event] = deque()
        # Permissions by peer IP, channels by peer address and by number.
        self._permissions: dict[str, _Permission] = {}
        self._queued_bytes = 0
        self._channels: dict[Address, _Channel] = {}
        self.channel_peers: dict[int, Address] = {}
        """The peer of every channel number whose ChannelData may arrive (read only). A
        shell may deliver ChannelData with it without calling :meth:`handle_data`: the
        2-byte number and length, then the payload; anything else goes to handle_data."""
        self._next_channel = FIRST_CHANNEL

    # -- the sans-I/O interface ----------------------------------------------------------

    def allocate(self, now: float) -> None:
        """Send the Allocate request (once)."""
        if self.state != "new":
            raise RuntimeError(f"allocate() on a client that is {self.state}")
        self.state = "allocating"
        self._send_allocate(now, stale=0)

    def close(self, now: float) -> None:
        """Release the allocation (Refresh with LIFETIME 0); :class:`Closed` follows."""
        if self.state in ("closed", "failed", "closing"):
            return
        if self.state == "new":
            self._finish("closed", None, Closed("closed before allocating"))
            return
        self._drop_all_queues("the client was closed")
        if self.state == "allocating":
            self.state = "closing"
            self._close_after_allocate = True
            return
        self.state = "closing"
        self._cancel_requests()
        self._stop_relaying()
        self._start(now, "close", Method.REFRESH, [(Attr.LIFETIME, 0)], None, timeout=CLOSE_TIMEOUT)

    def handle_data(self, now: float, data: bytes) -> tuple[Address, bytes] | None:
        """Take one datagram (or one framed message) from the server.

        Relayed application data is returned as ``(peer, payload)``; everything else
        (responses, malformed or stray packets) returns None and may produce events,
        transmissions and a new timeout.
        """
        if data and 0x40 <= data[0] <= 0x4F:  # ChannelData: the fast path
            if len(data) >= 4:
                number, size = HEADER.unpack_from(data)
                peer = self.channel_peers.get(number)
                if peer is not None and size <= len(data) - 4:
                    return peer, data[4 : 4 + size]
                if peer is None:
                    self.stats.dropped_unknown_channel += 1
                    return None
            self.stats.dropped_malformed += 1
            return None
        try:
            message = decode(data)
        except ParseError:
            self.stats.dropped_malformed += 1
            return None
        if message.cls is Class.INDICATION:
            if message.method == Method.DATA:
                return self._data_indication(message)
            self.stats.dropped_unmatched += 1
            return None
        request = self._requests.get(message.transaction_id)
        if (
            request is None
            or message.cls is Class.REQUEST
            or not request.tx.handle_response(message, now)
        ):
            self.stats.dropped_unmatched += 1
            return None
        if request.tx.done:
            del self._requests[request.tx.transaction_id]
            try:
                self._conclude(now, request)
            except Exception as exc:  # network input must never raise into the caller
                self.stats.dropped_malformed += 1
                self._fail_request(
                    now, request, TurnError(f"unusable answer from the server: {exc!r}")
                )
        else:
            self.stats.dropped_unverified += 1  # failed its integrity check, or malformed
        return None

    def handle_timeout(self, now: float) -> None:
        """Advance the clock: retransmit, refresh, expire, time out."""
        for request in list(self._requests.values()):
            tx = request.tx
            tx.handle_timeout(now)
            data = tx.poll_transmit()
            if data is not None:
                self._transmits.append(data)
            if tx.done and self._requests.pop(tx.transaction_id, None) is not None:
                self._conclude(now, request)
        if self.state != "allocated":
            return
        if now >= self._expires_at:
            self._lose(AllocationLostError("the allocation expired: no refresh succeeded in time"))
            return
        if self._refresh_at is not None and now >= self._refresh_at and not self._refreshing:
            self._refresh(now)
        self._refresh_permissions(now)
        self._tend_channels(now)
        self._age_queues(now)

    def handle_connection_lost(self, reason: str) -> None:
        """The TCP/TLS connection (or the socket) to the server is gone: so is the
        allocation."""
        if self.state in ("closed", "failed"):
            return
        if self.state == "closing":
            self._finish("closed", None, Closed(f"the connection closed while releasing: {reason}"))
        elif self.state in ("new", "allocating"):
            self._fail_allocation(TurnError(reason))
        else:
            self._lose(AllocationLostError(reason))

    def poll_transmit(self) -> bytes | None:
        """The next message to send to the server, or None."""
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> Event | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` must next be called (None: nothing scheduled)."""
        times = [t for r in self._requests.values() if (t := r.tx.poll_timeout()) is not None]
        if self.state == "allocated":
            times.append(self._expires_at)
            if self._refresh_at is not None and not self._refreshing:
                times.append(self._refresh_at)
            for permission in self._permissions.values():
                if permission.state == "installed" and not permission.in_flight:
                    times.append(permission.refresh_at)
                if permission.queue:
                    times.append(permission.queue[0][0] + self._queue_age)
            for channel in self._channels.values():
                if channel.bound and not channel.in_flight:
                    times.append(channel.refresh_at)
                elif not channel.in_flight:
                    times.append(_channel_release(channel))
        return min(times) if times else None

    # -- sending to peers ----------------------------------------------------------------

    def send(self, now: float, data: bytes, peer: Address) -> bytes | None:
        """Relay ``data`` to ``peer`` (an ``(ip, port)`` tuple).

        On a bound channel (the fast path) this returns the ChannelData to send to the
        server right away. Otherwise it returns None and the data leaves through
        :meth:`poll_transmit`: at once in a Send indication when the peer's permission
        exists, else once the permission (or channel binding) requested for it there is
        installed. Raises :class:`PeerPermissionError` while the server refuses ``peer``,
        :class:`AllocationLostError` after the allocation is gone and
        :class:`TurnError` before it exists.
        """
        return self.channel_data(data, peer) or self._send_slow(now, data, peer)

    def channel_data(self, data: bytes, peer: Address) -> bytes | None:
        """The ChannelData carrying ``data`` to ``peer`` if a channel is bound to it, else
        None (then :meth:`send` it). The clock-free fast path for shells."""
        channel = self._channels.get(peer)
        if channel is None or not channel.bound:
            return None
        channel.used = True
        size = len(data)
        if size > self.max_data:
            raise ValueError(f"{size} bytes do not fit in one relayed datagram")
        self.stats.sent_channel_data += 1
        if self.reliable:
            return HEADER.pack(channel.number, size) + data + PADDING[size & 3]
        return HEADER.pack(channel.number, size) + data

    def create_permission(self, now: float, *peers: str | Address) -> set[str]:
        """Install permissions for these peers (IP addresses, or addresses whose port is
        ignored), in as few requests as possible.

        Returns the IP addresses still to be installed: :class:`PermissionCreated` or
        :class:`PermissionFailed` follows for each of them (the others already are).
        """
        self._require_allocation()
        fresh: list[str] = []
        waiting: set[str] = set()
        for peer in peers:
            ip = self._check_peer_ip(peer[0] if isinstance(peer, tuple) else peer)
            permission = self._permissions.get(ip)
            if permission is None or permission.state == "failed":
                permission = self._permissions[ip] = _Permission(ip)
            if permission.state == "pending":
                waiting.add(ip)
                if not permission.in_flight and ip not in fresh:
                    fresh.append(ip)
        self._request_permissions(now, fresh)
        return waiting

    # -- the slow data path ------------------------------------------------------------------

    def _send_slow(self, now: float, data: bytes, peer: Address) -> bytes | None:
        self._require_allocation()
        if len(data) > self.max_data:
            raise ValueError(f"{len(data)} bytes do not fit in one relayed datagram")
        ip = self._check_peer_ip(peer[0])
        address = (ip, int(peer[1]))
        alias = self._channels.get(address) if address != peer else None
        if alias is not None and alias.bound:
            return self.send(now, data, address)
        permission = self._permissions.get(ip)
        if permission is not None and permission.state == "failed":
            if now < permission.failed_until:
                raise PeerPermissionError(
                    f"the server refused a permission for {ip}", ip, None, "refused earlier"
                )
            permission = None
        if permission is None:
            permission = self._permissions[ip] = _Permission(ip)
        channel = self._channels.get(address)
        if self._use_channels and (
            channel is None
            or not (channel.bound or channel.in_flight or now < channel.failed_until)
        ):
            self._bind_channel(now, address, channel, permission)
        if permission.state == "pending" and not permission.in_flight:
            self._request_permissions(now, [ip])
        if permission.state == "installed":
            self.stats.sent_indications += 1
            self._transmits.append(self._send_indication(data, address))
            return None
        if self._queued_bytes + len(data) > self._queue_limit:
            self.stats.dropped_queued += 1
            self._events.append(
                DataDropped(address, 1, "too much data is already waiting for permissions")
            )
            return None
        permission.queue.append((now, data, address))
        self._queued_bytes += len(data)
        return None

    def _send_indication(self, data: bytes, peer: Address) -> bytes:
        message = Message(
            Method.SEND,
            Class.INDICATION,
            self._random(12),
            [(Attr.XOR_PEER_ADDRESS, peer), (Attr.DATA, data)],
        )
        return message.encode()

    def _wire(self, data: bytes, peer: Address) -> bytes:
        """The bytes that carry ``data`` to ``peer`` now that its permission exists."""
        wire = self.channel_data(data, peer)
        if wire is not None:
            return wire
        self.stats.sent_indications += 1
        return self._send_indication(data, peer)

    def _flush_queue(self, permission: _Permission) -> None:
        while permission.queue:
            _, data, peer = permission.queue.popleft()
            self._queued_bytes -= len(data)
            self._transmits.append(self._wire(data, peer))

    def _drop_queue(self, permission: _Permission) -> int:
        dropped = len(permission.queue)
        self._queued_bytes -= sum(len(data) for _, data, _ in permission.queue)
        permission.queue.clear()
        return dropped

    def _drop_all_queues(self, reason: str) -> None:
        for permission in self._permissions.values():
            by_peer: dict[Address, int] = {}
            for _, _, peer in permission.queue:
                by_peer[peer] = by_peer.get(peer, 0) + 1
            self._drop_queue(permission)
            for peer, count in by_peer.items():
                self._events.append(DataDropped(peer, count, reason))
                self.stats.dropped_queued += count

    def _age_queues(self, now: float) -> None:
        limit = now - self._queue_age
        for permission in self._permissions.values():
            queue = permission.queue
            while queue and queue[0][0] <= limit:
                _, data, peer = queue.popleft()
                self._queued_bytes -= len(data)
                self.stats.dropped_queued += 1
                self._events.append(
                    DataDropped(
                        peer, 1, f"waited {self._queue_age:g} s for a permission to {permission.ip}"
                    )
                )

    def _data_indication(self, message: Message) -> tuple[Address, bytes] | None:
        peer = message.get(Attr.XOR_PEER_ADDRESS)
        icmp = message.get(Attr.ICMP)
        if peer is not None and icmp is not None:
            self._events.append(PeerIcmp(peer, icmp))
            return None
        payload = message.get(Attr.DATA)
        if peer is None or payload is None:
            self.stats.dropped_malformed += 1
            return None
        return peer, payload

    # -- requests ------------------------------------------------------------------------

    def _start(
        self,
        now: float,
        kind: str,
        method: Method,
        attributes: list[tuple[int, Any]],
        context: Any,
        *,
        stale: int = 0,
        timeout: float | None = None,
    ) -> None:
        items = list(attributes)
        if self._software is not None:
            items.append((Attr.SOFTWARE, self._software))
        items += self._auth
        message = Message(method, Class.REQUEST, self._random(12), items)
        data = message.encode(self._key, sha256=self._sha256)
        tx = ClientTransaction(
            data,
            now,
            integrity_key=self._key,
            reliable=self.reliable,
            rto=self._rto,
            timeout=timeout,
        )
        self._requests[tx.transaction_id] = _Request(
            kind, method, attributes, context, tx, self._key is not None, stale
        )
        first = tx.poll_transmit()
        if first is not None:
            self._transmits.append(first)

    def _retry(self, now: float, request: _Request, stale: int) -> None:
        """Send ``request`` again with the current credentials (a new transaction)."""
        timeout = None
        if request.kind == "refresh":
            timeout = self._refresh_timeout(now)
        elif request.kind == "close":
            timeout = CLOSE_TIMEOUT
        self._start(
            now,
            request.kind,
            request.method,
            request.attributes,
            request.context,
            stale=stale,
            timeout=timeout,
        )

    def _conclude(self, now: float, request: _Request) -> None:
        """Act on the outcome of a finished request."""
        error = request.tx.error
        if (
            isinstance(error, ErrorResponse)
            and error.code == 438
            and error.response is not None
            and request.stale < STALE_NONCE_RETRIES
        ):
            try:
                self._learn_nonce(error.response)
            except AuthenticationError as exc:
                self._fail_request(now, request, exc)
                return
            self._retry(now, request, request.stale + 1)
            return
        if request.kind == "allocate":
            self._allocate_done(now, request)
        elif request.kind == "refresh":
            self._refresh_done(now, request)
        elif request.kind == "permission":
            self._permission_done(now, request)
        elif request.kind == "channel":
            self._channel_done(now, request)
        else:
            self._close_done(request)

    def _fail_request(self, now: float, request: _Request, error: TurnError) -> None:
        """Conclude ``request`` with ``error`` instead of its own outcome."""
        if request.kind == "allocate":
            self._fail_allocation(error)
        elif request.kind == "refresh":
            self._lose(error)
        elif request.kind == "permission":
            for ip in request.context:
                self._permission_failed(now, ip, error.code, str(error))
        elif request.kind == "channel":
            self._channel_failed(now, request.context, error.code, str(error))
        else:
            self._finish("closed", error, Closed(f"release not confirmed: {error}"))

    def _turn_error(self, request: _Request, what: str) -> TurnError:
        """The :class:`TurnError` for a request that failed (not with 438)."""
        error = request.tx.error
        if isinstance(error, ErrorResponse):
            if error.code == 401:
                return self._auth_error(error)
            return TurnError(
                f"{what}: {describe(error.code, error.reason)}", error.code, error.reason
            )
        if error is not None and isinstance(error, TimeoutError):
            return TurnTimeout(f"{what}: the TURN server did not answer ({error})")
        return TurnError(f"{what}: {error}")

    def _auth_error(self, error: ErrorResponse) -> AuthenticationError:
        realm = self.realm
        return AuthenticationError(
            f"{describe(error.code, error.reason)}: the server refused the credentials of"
            f" {self.username!r} in realm {realm!r} (wrong username or password?)",
            realm,
            error.code,
            error.reason,
        )

    # -- credentials -----------------------------------------------------------------------

    def _learn_challenge(self, response: Message) -> None:
        """Take REALM, NONCE and the RFC 8489 security features from a 401."""
        realm = response.get(Attr.REALM)
        nonce = response.get(Attr.NONCE)
        if realm is None or nonce is None:
            raise AuthenticationError(
                "the server asked for authentication (401) without a REALM and NONCE", realm, 401
            )
        self.realm = realm
        features = nonce_features(nonce)
        algorithms = response.get(Attr.PASSWORD_ALGORITHMS)
        if features is not None and features.password_algorithms:
            if not algorithms:
                raise AuthenticationError(
                    "the server announced password algorithms in its nonce but sent none"
                    " (a downgrade attempt?)",
                    realm,
                    401,
                )
            # SHA-256 whenever offered. RFC 8489 section 9.2.5 asks for the first
            # supported algorithm of the list; RFC 8489 servers list SHA-256 first, and
            # a server that lists it must accept it, so the stronger one wins here.
            if PasswordAlgorithm.SHA256 in algorithms:
                self._algorithm = PasswordAlgorithm.SHA256
            elif PasswordAlgorithm.MD5 in algorithms:
                self._algorithm = PasswordAlgorithm.MD5
            else:
                raise AuthenticationError(
                    f"the server offers no password algorithm we know: {algorithms}", realm, 401
                )
            self._algorithms = tuple(algorithms)
            self._sha256 = True
        self._anonymous = features is not None and features.username_anonymity
        self._key = long_term_key(self.username, realm, self._password, self._algorithm)
        self._set_nonce(nonce)

    def _learn_nonce(self, response: Message) -> None:
        """Take the new NONCE (and REALM) of a 438 Stale Nonce answer."""
        nonce = response.get(Attr.NONCE)
        if nonce is None:
            raise AuthenticationError("438 Stale Nonce without a new NONCE", self.realm, 438)
        features = nonce_features(nonce)
        if self._algorithms is not None and not (features and features.password_algorithms):
            raise AuthenticationError(
                "the server's new nonce drops the password algorithms feature (a downgrade"
                " attempt?)",
                self.realm,
                438,
            )
        realm = response.get(Attr.REALM)
        if realm is not None and realm != self.realm:
            self.realm = realm
            self._key = long_term_key(self.username, realm, self._password, self._algorithm)
        self._set_nonce(nonce)

    def _set_nonce(self, nonce: str) -> None:
        assert self.realm is not None
        self._nonce = nonce
        user: tuple[int, Any] = (
            (Attr.USERHASH, userhash(self.username, self.realm))
            if self._anonymous
            else (Attr.USERNAME, self.username)
        )
        self._auth = [user, (Attr.REALM, self.realm), (Attr.NONCE, nonce)]
        if self._algorithms is not None:
            self._auth += [
                (Attr.PASSWORD_ALGORITHMS, self._algorithms),
                (Attr.PASSWORD_ALGORITHM, self._algorithm),
            ]

    # -- the allocation ----------------------------------------------------------------------

    def _send_allocate(self, now: float, stale: int) -> None:
        self._start(
            now,
            "allocate",
            Method.ALLOCATE,
            self.options.attributes(self._dont_fragment),
            None,
            stale=stale,
        )

    def _allocate_done(self, now: float, request: _Request) -> None:
        tx = request.tx
        if tx.response is None and self._close_after_allocate:
            self._finish("closed", None, Closed("closed before the allocation was granted"))
            return
        if tx.response is not None:
            self._allocated(now, tx.response)
            return
        error = tx.error
        if isinstance(error, ErrorResponse) and error.response is not None:
            response = error.response
            if error.code == 401 and not request.authenticated:
                try:
                    self._learn_challenge(response)
                except AuthenticationError as exc:
                    self._fail_allocation(exc)
                    return
                self._send_allocate(now, stale=0)
                return
            if error.code == 401:
                self._fail_allocation(self._auth_error(error))
                return
            unknown = response.get(Attr.UNKNOWN_ATTRIBUTES) or ()
            if error.code == 420 and self._dont_fragment and Attr.DONT_FRAGMENT in unknown:
                self._dont_fragment = False  # RFC 8656 section 7.4: retry without it
                self._send_allocate(now, stale=0)
                return
            if error.code == 420:
                names = ", ".join(attribute_name(t) for t in unknown) or "?"
                self._fail_allocation(
                    AllocationError(
                        f"Allocate failed: {describe(420, error.reason)} ({names})",
                        420,
                        error.reason,
                    )
                )
                return
            alternate = response.get(Attr.ALTERNATE_SERVER)
            if error.code == 300 and alternate is not None and self._follow_alternate:
                self._fail_allocation(
                    AlternateServer(
                        f"the server redirects us to {alternate[0]} port {alternate[1]}",
                        alternate,
                        response.get(Attr.ALTERNATE_DOMAIN),
                    )
                )
                return
            if error.code == 300:
                reason = "redirected again" if alternate is not None else "without ALTERNATE-SERVER"
                self._fail_allocation(
                    AllocationError(
                        f"Allocate failed: 300 Try Alternate {reason}", 300, error.reason
                    )
                )
                return
            self._fail_allocation(
                AllocationError(
                    f"Allocate failed: {describe(error.code, error.reason)}",
                    error.code,
                    error.reason,
                )
            )
            return
        base = self._turn_error(request, "Allocate failed")
        self._fail_allocation(
            base
            if isinstance(base, TurnTimeout)
            else AllocationError(str(base), base.code, base.reason)
        )

    def _allocated(self, now: float, response: Message) -> None:
        relayed = response.get_all(Attr.XOR_RELAYED_ADDRESS)
        mapped = response.get(Attr.XOR_MAPPED_ADDRESS)
        lifetime = response.get(Attr.LIFETIME)
        if not relayed or mapped is None or lifetime is None:
            missing = [
                name
                for name, value in (
                    ("XOR-RELAYED-ADDRESS", relayed),
                    ("XOR-MAPPED-ADDRESS", mapped),
                    ("LIFETIME", lifetime),
                )
                if not value and value != 0
            ]
            self._fail_allocation(
                AllocationError(f"the Allocate success response lacks {', '.join(missing)}")
            )
            return
        additional: Address | None = None
        additional_error: str | None = None
        if self.options.dual_stack:
            ipv6 = [address for address in relayed[1:] if ":" in address[0]]
            address_error = response.get(Attr.ADDRESS_ERROR_CODE)
            if ipv6:
                additional = ipv6[0]
            elif address_error is not None:
                additional_error = f"{address_error.code} {address_error.reason}".strip()
            else:
                additional_error = "the server ignored ADDITIONAL-ADDRESS-FAMILY (no IPv6 relay)"
        self.allocation = Allocated(
            relayed=relayed[0],
            mapped=mapped,
            lifetime=lifetime,
            additional_relayed=additional,
            additional_error=additional_error,
            reservation_token=response.get(Attr.RESERVATION_TOKEN),
            dont_fragment=self._dont_fragment,
        )
        self.state = "allocated"
        self._granted(now, lifetime)
        self._events.append(self.allocation)
        if self._close_after_allocate:
            self.close(now)

    def _granted(self, now: float, lifetime: int) -> None:
        self._expires_at = now + lifetime
        self._refresh_at = now + lifetime - min(REFRESH_MARGIN, lifetime / 2)

    def _fail_allocation(self, error: TurnError) -> None:
        if self._close_after_allocate:
            self._finish("closed", error, Closed(f"closed before allocating ({error})"))
            return
        self._finish("failed", error, AllocationFailed(error))

    def _refresh_timeout(self, now: float) -> float:
        return max(0.001, min(RELIABLE_TIMEOUT, self._expires_at - now))

    def _refresh(self, now: float) -> None:
        self._refreshing = True
        attributes: list[tuple[int, Any]] = []
        if self.options.lifetime is not None:
            attributes.append((Attr.LIFETIME, self.options.lifetime))
        self._start(
            now, "refresh", Method.REFRESH, attributes, None, timeout=self._refresh_timeout(now)
        )

    def _refresh_done(self, now: float, request: _Request) -> None:
        self._refreshing = False
        tx = request.tx
        if tx.response is not None:
            lifetime = tx.response.get(Attr.LIFETIME)
            if lifetime is None:
                lifetime = self.allocation.lifetime if self.allocation else 0
            self._granted(now, lifetime)
            self._events.append(Refreshed(lifetime))
            return
        error = self._turn_error(request, "Refresh failed")
        if error.code == 437:
            self._lose(
                AllocationLostError(
                    "the server no longer has our allocation (437 Allocation Mismatch on"
                    " Refresh: did it restart?)",
                    437,
                    error.reason,
                )
            )
        elif (
            error.code is not None and error.code >= 500 and now + REFRESH_RETRY < self._expires_at
        ):
            self._refresh_at = now + REFRESH_RETRY  # a server-side problem: try again
        else:
            self._lose(error)

    def _lose(self, error: TurnError) -> None:
        if self.state in ("closed", "failed"):
            return
        lost = (
            error
            if isinstance(error, AllocationLostError)
            else AllocationLostError(f"the allocation is lost: {error}", error.code, error.reason)
        )
        self._cancel_requests()
        self._drop_all_queues("the allocation is lost")
        self._finish("failed", lost, AllocationLost(lost))

    def _close_done(self, request: _Request) -> None:
        tx = request.tx
        error = tx.error
        if tx.response is not None or (isinstance(error, ErrorResponse) and error.code == 437):
            self._finish("closed", None, Closed("the allocation was released"))
            return
        failure = self._turn_error(request, "releasing the allocation failed")
        self._finish("closed", failure, Closed(str(failure)))

    def _finish(
        self, state: Literal["closed", "failed"], error: TurnError | None, event: Event
    ) -> None:
        self.state = state
        self.error = error
        self._refresh_at = None
        self._cancel_requests()
        self._stop_relaying()
        self._events.append(event)

    def _stop_relaying(self) -> None:
        """Take every channel off the fast path, so that :meth:`send` raises from now on."""
        for channel in self._channels.values():
            channel.bound = False

    def _cancel_requests(self) -> None:
        self._requests.clear()

    def _require_allocation(self) -> None:
        if self.state == "allocated":
            return
        if self.error is not None:
            raise self.error.with_traceback(None)  # raised again and again: no growing trace
        raise TurnError(f"there is no allocation to relay through (the client is {self.state})")

    def _check_peer_ip(self, host: str) -> str:
        ip = canonical_ip(host)
        allocation = self.allocation
        if allocation is not None:
            families = {":" in allocation.relayed[0]}
            if allocation.additional_relayed is not None:
                families.add(True)
            if (":" in ip) not in families:
                kind = "IPv6" if ":" in ip else "IPv4"
                raise ValueError(
                    f"peer {ip} is {kind} but the allocation relays only the other family"
                    " (the server would answer 443 Peer Address Family Mismatch)"
                )
        return ip

    # -- permissions -----------------------------------------------------------------------

    def _request_permissions(self, now: float, ips: Iterable[str]) -> None:
        batch = list(ips)
        for start in range(0, len(batch), PERMISSION_BATCH):
            chunk = tuple(batch[start : start + PERMISSION_BATCH])
            for ip in chunk:
                self._permissions[ip].in_flight = True
            attributes: list[tuple[int, Any]] = [(Attr.XOR_PEER_ADDRESS, (ip, 0)) for ip in chunk]
            self._start(now, "permission", Method.CREATE_PERMISSION, attributes, chunk)

    def _permission_done(self, now: float, request: _Request) -> None:
        ips: tuple[str, ...] = request.context
        tx = request.tx
        if tx.response is not None:
            installed = []
            for ip in ips:
                permission = self._permissions.get(ip)
                if permission is None or permission.state == "failed":
                    continue
                self._installed(now, permission)
                installed.append(ip)
            if installed:
                self._events.append(PermissionCreated(tuple(installed)))
            return
        error = self._turn_error(request, "CreatePermission failed")
        if error.code == 437:
            self._lose(AllocationLostError(f"the allocation is gone: {error}", 437, error.reason))
            return
        if error.code == 403 and len(ips) > 1:
            for ip in ips:  # a batch fails as a whole: find the forbidden peer(s)
                self._request_permissions(now, [ip])
            return
        for ip in ips:
            self._permission_failed(now, ip, error.code, str(error))

    def _installed(self, now: float, permission: _Permission) -> None:
        permission.state = "installed"
        permission.in_flight = False
        permission.refresh_at = now + self._permission_refresh
        self._flush_queue(permission)

    def _permission_failed(self, now: float, ip: str, code: int | None, reason: str) -> None:
        permission = self._permissions.get(ip)
        if permission is None:
            return
        permission.state = "failed"
        permission.in_flight = False
        permission.failed_until = now + PERMISSION_HOLD
        dropped = self._drop_queue(permission)
        for address, channel in list(self._channels.items()):
            if address[0] == ip:
                self._retire_channel(now, channel)
        self.stats.dropped_queued += dropped
        self._events.append(PermissionFailed(ip, code, reason, dropped))

    def _refresh_permissions(self, now: float) -> None:
        due = [
            p.ip
            for p in self._permissions.values()
            if p.state == "installed" and not p.in_flight and p.refresh_at <= now + COALESCE
        ]
        if due and any(self._permissions[ip].refresh_at <= now for ip in due):
            self._request_permissions(now, due)

    # -- channels --------------------------------------------------------------------------

    def _free_channel_number(self) -> int | None:
        span = LAST_CHANNEL - FIRST_CHANNEL + 1
        for _ in range(span):
            number = self._next_channel
            self._next_channel = FIRST_CHANNEL + (number + 1 - FIRST_CHANNEL) % span
            if number not in self.channel_peers:
                return number
        return None

    def _bind_channel(
        self, now: float, peer: Address, channel: _Channel | None, permission: _Permission
    ) -> None:
        if channel is None:
            number = self._free_channel_number()
            if number is None:
                return  # every number is taken: Send indications it is
            channel = self._channels[peer] = _Channel(number, peer)
            self.channel_peers[number] = peer
        channel.in_flight = True
        if permission.state == "pending":
            permission.in_flight = True  # a ChannelBind installs the permission too
        self._start(
            now,
            "channel",
            Method.CHANNEL_BIND,
            [(Attr.CHANNEL_NUMBER, channel.number), (Attr.XOR_PEER_ADDRESS, peer)],
            channel,
        )

    def _channel_done(self, now: float, request: _Request) -> None:
        channel: _Channel = request.context
        channel.in_flight = False
        if self._channels.get(channel.peer) is not channel:
            return  # retired meanwhile
        tx = request.tx
        permission = self._permissions.get(channel.peer[0])
        if tx.response is not None:
            channel.expires_at = now + self._channel_lifetime()
            if permission is None or permission.state == "failed":
                channel.bound = False  # the peer was refused meanwhile: retired
                return
            first = not channel.bound and not channel.used
            channel.bound = True
            channel.used = False
            channel.refresh_at = now + self._channel_refresh
            newly = permission.state == "pending"
            self._installed(now, permission)
            if newly:
                self._events.append(PermissionCreated((permission.ip,)))
            if first:
                self._events.append(ChannelBound(channel.peer, channel.number))
            return
        error = self._turn_error(request, "ChannelBind failed")
        if error.code == 437:
            self._lose(AllocationLostError(f"the allocation is gone: {error}", 437, error.reason))
            return
        self._channel_failed(now, channel, error.code, str(error))

    def _channel_failed(self, now: float, channel: _Channel, code: int | None, reason: str) -> None:
        channel.in_flight = False
        channel.bound = False
        channel.failed_until = now + CHANNEL_HOLD
        if code is None:  # unanswered: the server may have bound it all the same
            channel.expires_at = max(channel.expires_at, now + self._channel_lifetime())
        permission = self._permissions.get(channel.peer[0])
        if permission is None or permission.state != "pending":
            return
        if code in _CHANNEL_ONLY_ERRORS:
            permission.in_flight = False
            self._request_permissions(now, [permission.ip])  # no channel, but a permission
        else:
            self._permission_failed(now, permission.ip, code, reason)

    def _channel_lifetime(self) -> float:
        """How long a binding is assumed to live: never less than the RFC's 600 s, so
        that a number is not handed to another peer too early."""
        return max(CHANNEL_LIFETIME, self._channel_refresh + REFRESH_MARGIN)

    def _retire_channel(self, now: float, channel: _Channel) -> None:
        """Stop using ``channel``; its number stays reserved until the binding has
        surely expired on the server and the quarantine after that has passed."""
        channel.bound = False
        channel.failed_until = max(channel.failed_until, now + PERMISSION_HOLD)

    def _tend_channels(self, now: float) -> None:
        for peer, channel in list(self._channels.items()):
            if channel.in_flight:
                continue
            if channel.bound and now >= channel.refresh_at:
                permission = self._permissions.get(peer[0])
                if channel.used and permission is not None:
                    self._bind_channel(now, peer, channel, permission)
                else:
                    channel.bound = False  # idle: let it expire
            elif not channel.bound and now >= _channel_release(channel):
                del self._channels[peer]
                del self.channel_peers[channel.number]
