"""A scripted TURN server (RFC 8656) for the TURN client's virtual-clock tests.

:class:`ScriptedTurnServer` is a plain object: no sockets, no asyncio, no clock. It is fed
what a client sends, with the current time in seconds, and returns what the server would
send back to that client. It implements the RFC 8489 long-term credential features coturn
4.6 lacks (PASSWORD-ALGORITHMS negotiation, MESSAGE-INTEGRITY-SHA256, USERHASH), and it can
be scripted to fail (:meth:`ScriptedTurnServer.fail_next`), to go silent, to lose answers
after acting on the requests, or to forget its allocations.

What it does, in the order it does it, for a request from a client 5-tuple:

1. RFC 8489 section 9.2.4 long-term credentials: no MESSAGE-INTEGRITY(-SHA256) -> 401 with
   REALM, NONCE (behind the nonce cookie when an RFC 8489 feature is on) and
   PASSWORD-ALGORITHMS (when negotiation is on); MESSAGE-INTEGRITY but no USERNAME/USERHASH,
   REALM or NONCE -> 400; PASSWORD-ALGORITHMS not echoed unchanged or PASSWORD-ALGORITHM not
   among them -> 400; unknown user or wrong key -> 401; stale, unknown or another client's
   nonce -> 438 with a new NONCE. None of these answers is signed.
2. 420 with UNKNOWN-ATTRIBUTES for comprehension-required attributes it does not know (an
   RFC 5389-style server does not know PASSWORD-ALGORITHM nor USERHASH).
3. 441 when the request's user is not the one that made the allocation (RFC 8656 section 5).
4. A scripted failure, if one is pending for that method.
5. The method (RFC 8656 sections 7.2, 7.3, 9.2, 11.2).

Every answer after step 1 carries MESSAGE-INTEGRITY-SHA256 when the client chose a password
algorithm or sent MESSAGE-INTEGRITY-SHA256, else MESSAGE-INTEGRITY, with the request's key;
answers carry FINGERPRINT when the request did. Indications are never answered. Allocate
successes are remembered, so that a retransmitted Allocate (same transaction id) gets the
same bytes again; no other answer is (a retransmitted Refresh that deleted the allocation
gets 437, as from coturn).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stun import (
    AddressError,
    AddressFamily,
    Attr,
    Class,
    Message,
    Method,
    NonceFeatures,
    ParseError,
    PasswordAlgorithm,
    StreamFramer,
    decode,
    long_term_key,
    nonce_features,
    userhash,
)
from stun.errors import REASON_PHRASES

REASONS = REASON_PHRASES
"""The reason phrase of each error code this server sends."""

Address = tuple[str, int]

DEFAULT_CLIENT: Address = ("10.0.0.1", 5000)
UDP = 17
PERMISSION_LIFETIME = 300.0
"""Seconds a permission lasts (RFC 8656 section 9)."""
CHANNEL_LIFETIME = 600.0
"""Seconds a channel binding lasts (RFC 8656 section 12)."""
RESERVATION_LIFETIME = 30.0
"""Seconds a port reserved by EVEN-PORT with the R bit is held (RFC 8656 section 7.2)."""
FIRST_RELAY_PORT = 49152


_TURN_METHODS = frozenset(
    (Method.ALLOCATE, Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND)
)
_RFC8489_ONLY = (Attr.PASSWORD_ALGORITHM, Attr.USERHASH)
"""Comprehension-required attributes an RFC 5389 server does not know."""
_CHANNEL_HEADER = struct.Struct("!HH")


def family_of(address: Address) -> AddressFamily:
    """The address family of an address tuple."""
    return AddressFamily.IPV6 if ":" in address[0] else AddressFamily.IPV4


@dataclass(slots=True)
class Relay:
    """One relayed transport address of an allocation, with its own expiry (RFC 8656 8.1)."""

    address: Address
    expires: float


@dataclass(slots=True)
class Channel:
    """A channel binding: the peer transport address and when the binding expires."""

    peer: Address
    expires: float


@dataclass(slots=True)
class Allocation:
    """An allocation, keyed in :attr:`ScriptedTurnServer.allocations` by the client address."""

    client: Address
    username: str
    relays: dict[AddressFamily, Relay]
    transaction_id: bytes
    """The Allocate request that made it: a retransmission gets :attr:`response` again."""
    response: bytes
    dont_fragment: bool = False
    permissions: dict[str, float] = field(default_factory=dict)
    """Peer IP -> expiry time."""
    channels: dict[int, Channel] = field(default_factory=dict)

    @property
    def relayed(self) -> list[Address]:
        """The relayed transport addresses, IPv4 first."""
        return [relay.address for _, relay in sorted(self.relays.items())]

    @property
    def expires(self) -> float:
        """When the last of the relayed addresses expires."""
        return max(relay.expires for relay in self.relays.values())

    def channel_of(self, peer: Address) -> int | None:
        """The channel bound to ``peer``, if any."""
        for number, channel in self.channels.items():
            if channel.peer == peer:
                return number
        return None


@dataclass(frozen=True, slots=True)
class Received:
    """One message the server received: a STUN message or a ChannelData message."""

    time: float
    client: Address
    message: Message | None
    """The decoded STUN message; None for ChannelData."""
    channel: int | None = None
    """The channel number of a ChannelData message."""
    data: bytes = b""
    """The application data of a ChannelData message."""

    @property
    def method(self) -> int | None:
        return None if self.message is None else self.message.method

    @property
    def cls(self) -> Class | None:
        return None if self.message is None else self.message.cls

    @property
    def attributes(self) -> list[tuple[int, Any]]:
        """The attributes that count, decoded, in wire order."""
        return [] if self.message is None else self.message.attributes

    def get(self, attr: int, default: Any = None) -> Any:
        """The decoded value of the first ``attr`` attribute, or ``default``."""
        return default if self.message is None else self.message.get(attr, default)

    def __contains__(self, attr: int) -> bool:
        return self.message is not None and attr in self.message


@dataclass(slots=True)
class _Script:
    method: int
    code: int
    reason: str
    count: int
    attributes: tuple[tuple[int, Any], ...]
    before_auth: bool


@dataclass(frozen=True, slots=True)
class _Auth:
    username: str
    key: bytes
    sha256: bool


class ScriptedTurnServer:
    """A sans-I/O TURN server (UDP relaying) to test TURN clients against.

    ``users`` maps usernames to passwords of ``realm``. ``password_algorithms`` switches
    on RFC 8489 password algorithm negotiation (listed in that order of preference);
    None makes an RFC 5389-style server, whose nonce has no cookie. ``userhash``
    announces username anonymity in the nonce cookie and accepts USERHASH instead of
    USERNAME. A nonce is stale ``nonce_lifetime`` seconds after it was issued (never,
    when None). ``reliable`` says the client talks over a stream (TCP, TLS): input is a
    byte stream cut into frames per client, and ChannelData sent is padded to a
    multiple of 4. ``forbidden_peers`` (IPs) get 403 in CreatePermission and ChannelBind.

    Public state for assertions: :attr:`log` (every message received), :attr:`allocations`
    (by client address), :attr:`permissions`, :attr:`channels`, :attr:`relayed` (what
    went out to peers as ``(relay, peer, data)``) and :attr:`dropped` (counts by reason).
    """

    def __init__(
        self,
        users: Mapping[str, str],
        realm: str = "example.org",
        *,
        address: Address = ("192.0.2.1", 3478),
        relay_ip: str = "198.51.100.1",
        relay_ipv6: str | None = None,
        password_algorithms: Iterable[int] | None = None,
        userhash: bool = False,
        nonce_lifetime: float | None = None,
        max_lifetime: int = 3600,
        default_lifetime: int = 600,
        supports_additional_family: bool = True,
        supports_dont_fragment: bool = True,
        forbidden_peers: Iterable[str] = (),
        reliable: bool = False,
    ) -> None:
        self.users = dict(users)
        self.realm = realm
        self.address = address
        self.relay_ip = relay_ip
        self.relay_ipv6 = None if relay_ipv6 is None else _canonical(relay_ipv6)
        self.password_algorithms: tuple[PasswordAlgorithm, ...] | None = (
            None
            if password_algorithms is None
            else tuple(PasswordAlgorithm(a) for a in password_algorithms)
        )
        if self.password_algorithms == ():
            raise ValueError("password_algorithms must list at least one algorithm")
        self.userhash = userhash
        self.nonce_lifetime = nonce_lifetime
        self.max_lifetime = max_lifetime
        self.default_lifetime = default_lifetime
        self.supports_additional_family = supports_additional_family
        self.supports_dont_fragment = supports_dont_fragment
        self.forbidden_peers = {_canonical(ip) for ip in forbidden_peers}
        self.reliable = reliable
        self.silent = False
        """Receive (and log) but do nothing and answer nothing: a lost server."""
        self._expired_at: float | None = None

        self.log: list[Received] = []
        self.allocations: dict[Address, Allocation] = {}
        self.relayed: list[tuple[Address, Address, bytes]] = []
        self.dropped: Counter[str] = Counter()

        features = NonceFeatures(
            password_algorithms=self.password_algorithms is not None,
            username_anonymity=userhash,
        )
        self._features = features
        self._cookie = features.cookie() if features.bits else ""
        self._nonces: dict[str, tuple[Address, float]] = {}
        self._scripts: list[_Script] = []
        self._lose = 0
        self._counter = 0
        self._next_port = FIRST_RELAY_PORT
        self._reservations: dict[bytes, tuple[int, float]] = {}
        self._framers: dict[Address, StreamFramer] = {}

    # -- scripting -------------------------------------------------------------------------

    def fail_next(
        self,
        method: int,
        code: int,
        reason: str | None = None,
        *,
        count: int = 1,
        alternate: Address | None = None,
        attributes: Iterable[tuple[int, Any]] = (),
        before_auth: bool = False,
    ) -> None:
        """Answer the next ``count`` requests of ``method`` with error ``code``.

        The answer comes after authentication and is signed, unless ``before_auth``
        (then unsigned, to whatever request comes, with or without credentials). 401 and
        438 carry REALM, a new NONCE and PASSWORD-ALGORITHMS like real ones and are never
        signed. ``alternate`` adds ALTERNATE-SERVER (for 300), ``attributes`` anything
        else. The request is not processed otherwise: nothing changes on the server.
        """
        items = list(attributes)
        if alternate is not None:
            items.insert(0, (Attr.ALTERNATE_SERVER, alternate))
        self._scripts.append(
            _Script(method, code, reason or REASONS.get(code, ""), count, tuple(items), before_auth)
        )

    def lose_next(self, count: int = 1) -> None:
        """Act on what comes in, but lose the next ``count`` messages the server sends."""
        self._lose += count

    def restart(self, *, keep_nonces: bool = True) -> None:
        """Forget every allocation, reservation and stream (and the nonces, if asked)."""
        self.allocations.clear()
        self._reservations.clear()
        self._framers.clear()
        if not keep_nonces:
            self._nonces.clear()

    def invalidate_nonces(self) -> None:
        """Make every nonce issued so far stale: the next request of each client gets 438."""
        self._nonces.clear()

    # -- inspection --------------------------------------------------------------------------

    def requests(self, method: int | None = None) -> list[Received]:
        """The requests received (of ``method``), in order."""
        return [
            r for r in self.log if r.cls is Class.REQUEST and (method is None or r.method == method)
        ]

    @property
    def permissions(self) -> dict[tuple[Address, str], float]:
        """``(client, peer IP) -> expiry`` over every allocation."""
        return {
            (client, ip): expires
            for client, allocation in self.allocations.items()
            for ip, expires in allocation.permissions.items()
        }

    @property
    def channels(self) -> dict[tuple[Address, int], Channel]:
        """``(client, channel number) -> Channel`` over every allocation."""
        return {
            (client, number): channel
            for client, allocation in self.allocations.items()
            for number, channel in allocation.channels.items()
        }

    def nonce_for(self, client: Address = DEFAULT_CLIENT) -> str | None:
        """The last nonce issued to ``client`` that is still known, if any."""
        nonces = [n for n, (c, _) in self._nonces.items() if c == client]
        return nonces[-1] if nonces else None

    # -- input -------------------------------------------------------------------------------

    def handle(self, now: float, data: bytes, client: Address = DEFAULT_CLIENT) -> list[bytes]:
        """Feed what ``client`` sent; return what the server sends back to it.

        ``data`` is one datagram or, when ``reliable``, bytes of the client's stream
        (whole frames or not).
        """
        self.expire(now)
        if self.reliable:
            framer = self._framers.setdefault(client, StreamFramer())
            try:
                frames = framer.feed(data)
            except ParseError:
                del self._framers[client]
                self.dropped["corrupt_stream"] += 1
                return []
        else:
            frames = [data]
        out: list[bytes] = []
        for frame in frames:
            out += self._handle_frame(now, bytes(frame), client)
        return self._send(out)

    def peer_data(
        self, now: float, peer: Address, data: bytes, relay: Address | None = None
    ) -> list[bytes]:
        """A datagram from ``peer`` to a relayed address; return what goes to its client.

        ``relay`` may be left out when exactly one allocation has a relayed address of
        the peer's family. Without a permission for the peer's IP nothing is sent (the
        drop is counted); with a channel bound to the peer the data goes as ChannelData,
        else as a Data indication.
        """
        self.expire(now)
        if self.silent:
            return []
        family = family_of(peer)
        peer = (_canonical(peer[0]), peer[1])
        if relay is None:
            found = [a for a in self.allocations.values() if family in a.relays]
            if len(found) > 1:
                raise ValueError("several allocations could receive this: say which relay")
            allocation = found[0] if found else None
        else:
            allocation = next(
                (a for a in self.allocations.values() if tuple(relay) in a.relayed), None
            )
        if allocation is None or family not in allocation.relays:
            self.dropped["no_allocation"] += 1
            return []
        if peer[0] not in allocation.permissions:
            self.dropped["no_permission"] += 1
            return []
        number = allocation.channel_of(peer)
        if number is not None:
            frame = _CHANNEL_HEADER.pack(number, len(data)) + data
            if self.reliable:
                frame += bytes(-len(data) % 4)
        else:
            frame = Message(
                Method.DATA,
                Class.INDICATION,
                self._transaction_id(),
                [(Attr.XOR_PEER_ADDRESS, peer), (Attr.DATA, data)],
            ).encode()
        return self._send([frame])

    def expire(self, now: float) -> None:
        """Drop allocations, permissions, channels and reservations whose time is up."""
        if now == self._expired_at:
            return  # nothing was added that could have expired at this same instant
        self._expired_at = now
        for client, allocation in list(self.allocations.items()):
            for family, relay in list(allocation.relays.items()):
                if relay.expires <= now:
                    self._remove_family(allocation, family)
            if not allocation.relays:
                del self.allocations[client]
                continue
            for ip, expires in list(allocation.permissions.items()):
                if expires <= now:
                    del allocation.permissions[ip]
            for number, channel in list(allocation.channels.items()):
                if channel.expires <= now:
                    del allocation.channels[number]
        for token, (_, expires) in list(self._reservations.items()):
            if expires <= now:
                del self._reservations[token]

    # -- plumbing ------------------------------------------------------------------------------

    def _send(self, out: list[bytes]) -> list[bytes]:
        if self.silent:
            return []
        kept = []
        for data in out:
            if self._lose:
                self._lose -= 1
            else:
                kept.append(data)
        return kept

    def _handle_frame(self, now: float, data: bytes, client: Address) -> list[bytes]:
        if data and 0x40 <= data[0] <= 0x4F:
            self._channel_data(now, data, client)
            return []
        try:
            msg = decode(data)
        except ParseError:
            self.dropped["malformed"] += 1
            return []
        self.log.append(Received(now, client, msg))
        if self.silent:
            return []
        if msg.has_fingerprint and not msg.check_fingerprint():
            self.dropped["bad_fingerprint"] += 1
            return []
        if msg.cls is Class.INDICATION:
            if msg.method == Method.SEND:
                self._send_indication(msg, client)
            else:
                self.dropped["indication"] += 1
            return []
        if msg.cls is not Class.REQUEST:
            self.dropped["response"] += 1
            return []
        if msg.method == Method.BINDING:
            return [self._answer(msg, Class.SUCCESS, [(Attr.XOR_MAPPED_ADDRESS, client)])]
        if msg.method not in _TURN_METHODS:
            return [self._error(msg, 400)]
        script = self._script(msg.method, before_auth=True)
        if script is not None:
            return [self._scripted(now, msg, client, script, None)]
        auth = self._authenticate(now, msg, client)
        if isinstance(auth, bytes):
            return [auth]
        unknown = msg.unknown_required()
        if not self._features.bits:
            unknown += [t for t in _RFC8489_ONLY if t in msg]
        if unknown:
            return [self._error(msg, 420, auth, [(Attr.UNKNOWN_ATTRIBUTES, tuple(unknown))])]
        allocation = self.allocations.get(client)
        if allocation is not None and auth.username != allocation.username:
            return [self._error(msg, 441, auth)]
        script = self._script(msg.method, before_auth=False)
        if script is not None:
            return [self._scripted(now, msg, client, script, auth)]
        if msg.method == Method.ALLOCATE:
            return [self._allocate(now, msg, client, auth)]
        if allocation is None:
            return [self._error(msg, 437, auth)]
        if msg.method == Method.REFRESH:
            return [self._refresh(now, msg, allocation, auth)]
        if msg.method == Method.CREATE_PERMISSION:
            return [self._create_permission(now, msg, allocation, auth)]
        return [self._channel_bind(now, msg, allocation, auth)]

    def _answer(
        self,
        request: Message,
        cls: Class,
        attributes: list[tuple[int, Any]],
        auth: _Auth | None = None,
    ) -> bytes:
        answer = Message(request.method, cls, request.transaction_id, attributes)
        fingerprint = request.has_fingerprint
        if auth is None:
            return answer.encode(fingerprint=fingerprint)
        return answer.encode(auth.key, fingerprint=fingerprint, sha256=auth.sha256)

    def _error(
        self,
        request: Message,
        code: int,
        auth: _Auth | None = None,
        extra: Iterable[tuple[int, Any]] = (),
        reason: str | None = None,
    ) -> bytes:
        attributes = [(Attr.ERROR_CODE, (code, reason or REASONS.get(code, ""))), *extra]
        return self._answer(request, Class.ERROR, attributes, auth)

    def _transaction_id(self) -> bytes:
        self._counter += 1
        return self._counter.to_bytes(12, "big")

    # -- credentials (RFC 8489 section 9.2.4) ------------------------------------------------

    def _new_nonce(self, now: float, client: Address) -> str:
        self._counter += 1
        nonce = f"{self._cookie}nonce{self._counter:06d}"
        self._nonces[nonce] = (client, now)
        return nonce

    def _nonce_valid(self, nonce: str, now: float, client: Address) -> bool:
        issued = self._nonces.get(nonce)
        if issued is None or issued[0] != client:
            return False
        return self.nonce_lifetime is None or now < issued[1] + self.nonce_lifetime

    def _challenge(
        self, now: float, request: Message, client: Address, code: int, reason: str | None = None
    ) -> bytes:
        """A 401 or 438: REALM, a new NONCE and PASSWORD-ALGORITHMS, never signed."""
        extra: list[tuple[int, Any]] = [
            (Attr.REALM, self.realm),
            (Attr.NONCE, self._new_nonce(now, client)),
        ]
        if self.password_algorithms is not None:
            extra.append((Attr.PASSWORD_ALGORITHMS, self.password_algorithms))
        return self._error(request, code, None, extra, reason)

    def _authenticate(self, now: float, msg: Message, client: Address) -> _Auth | bytes:
        rfc5389 = not self._features.bits
        # An RFC 5389 server knows only MESSAGE-INTEGRITY (and ignores what follows it).
        signed = Attr.MESSAGE_INTEGRITY in msg if rfc5389 else msg.has_integrity
        if not signed:
            return self._challenge(now, msg, client, 401)
        username: str | None = msg.get(Attr.USERNAME)
        hashed: bytes | None = msg.get(Attr.USERHASH) if self.userhash else None
        realm, nonce = msg.get(Attr.REALM), msg.get(Attr.NONCE)
        if (username is None) == (hashed is None) or realm is None or nonce is None:
            return self._error(msg, 400)
        algorithm = PasswordAlgorithm.MD5
        chosen = False
        features = nonce_features(nonce)
        if self.password_algorithms is not None and features and features.password_algorithms:
            offered = msg.get(Attr.PASSWORD_ALGORITHMS)
            choice = msg.get(Attr.PASSWORD_ALGORITHM)
            if offered is not None or choice is not None:
                if (
                    offered is None
                    or choice is None
                    or tuple(offered) != self.password_algorithms
                    or choice not in offered
                ):
                    return self._error(msg, 400)
                algorithm = PasswordAlgorithm(choice)
                chosen = True
        if hashed is not None:
            username = next((u for u in self.users if userhash(u, self.realm) == hashed), None)
        password = None if username is None else self.users.get(username)
        if username is None or password is None:
            return self._challenge(now, msg, client, 401)
        key = long_term_key(username, self.realm, password, algorithm)
        valid = _check_sha1(msg, key) if rfc5389 else msg.check_integrity(key)
        if not valid:
            return self._challenge(now, msg, client, 401)
        if not self._nonce_valid(nonce, now, client):
            return self._challenge(now, msg, client, 438)
        sha256 = chosen or (not rfc5389 and Attr.MESSAGE_INTEGRITY_SHA256 in msg)
        return _Auth(username, key, sha256)

    # -- scripted failures ---------------------------------------------------------------------

    def _script(self, method: int, *, before_auth: bool) -> _Script | None:
        for script in self._scripts:
            if script.method == method and script.before_auth == before_auth:
                script.count -= 1
                if script.count <= 0:
                    self._scripts.remove(script)
                return script
        return None

    def _scripted(
        self, now: float, msg: Message, client: Address, script: _Script, auth: _Auth | None
    ) -> bytes:
        if script.code in (401, 438):
            return self._challenge(now, msg, client, script.code, script.reason)
        return self._error(msg, script.code, auth, script.attributes, script.reason)

    # -- methods -------------------------------------------------------------------------------

    def _desired_lifetime(self, requested: int | None) -> int:
        """RFC 8656 sections 7.2 and 7.3: min(requested, max), but not below the default."""
        if requested is None:
            return self.default_lifetime
        return max(self.default_lifetime, min(requested, self.max_lifetime))

    def _allocate(self, now: float, msg: Message, client: Address, auth: _Auth) -> bytes:
        """RFC 8656 section 7.2, steps 2 to 9."""
        existing = self.allocations.get(client)
        if existing is not None:
            if existing.transaction_id == msg.transaction_id:
                return existing.response
            return self._error(msg, 437, auth)
        transport = msg.get(Attr.REQUESTED_TRANSPORT)
        if transport is None:
            return self._error(msg, 400, auth)
        if transport != UDP:
            return self._error(msg, 442, auth)
        if Attr.DONT_FRAGMENT in msg and not self.supports_dont_fragment:
            unknown = (Attr.UNKNOWN_ATTRIBUTES, (Attr.DONT_FRAGMENT,))
            return self._error(msg, 420, auth, [unknown])
        token: bytes | None = msg.get(Attr.RESERVATION_TOKEN)
        even = Attr.EVEN_PORT in msg
        reserve = bool(msg.get(Attr.EVEN_PORT))
        requested: int | None = msg.get(Attr.REQUESTED_ADDRESS_FAMILY)
        additional: int | None = None
        if self.supports_additional_family:
            additional = msg.get(Attr.ADDITIONAL_ADDRESS_FAMILY)
        port = None
        if token is not None:
            if even or requested is not None or additional is not None:
                return self._error(msg, 400, auth)
            reservation = self._reservations.pop(token, None)
            if reservation is None:
                return self._error(msg, 508, auth)
            port = reservation[0]
        if requested is not None and additional is not None:
            return self._error(msg, 400, auth)
        family = AddressFamily.IPV4 if requested is None else requested
        if family not in (AddressFamily.IPV4, AddressFamily.IPV6) or (
            family == AddressFamily.IPV6 and self.relay_ipv6 is None
        ):
            return self._error(msg, 440, auth)
        if additional is not None and (reserve or additional != AddressFamily.IPV6):
            return self._error(msg, 400, auth)
        if port is None:
            port = self._take_port(even, reserve)
        lifetime = self._desired_lifetime(msg.get(Attr.LIFETIME))
        expires = now + lifetime
        relays: dict[AddressFamily, Relay] = {}
        attributes: list[tuple[int, Any]] = []
        families = [AddressFamily(family)] if additional is None else list(AddressFamily)
        for fam in families:
            ip = self.relay_ip if fam == AddressFamily.IPV4 else self.relay_ipv6
            if ip is None:
                error = AddressError(fam, 440, REASONS[440])
                attributes.append((Attr.ADDRESS_ERROR_CODE, error))
                continue
            relays[fam] = Relay((ip, port), expires)
            attributes.insert(len(relays) - 1, (Attr.XOR_RELAYED_ADDRESS, (ip, port)))
        attributes.append((Attr.LIFETIME, lifetime))
        if reserve:
            token = self._transaction_id()[4:]
            self._reservations[token] = (port + 1, now + RESERVATION_LIFETIME)
            attributes.append((Attr.RESERVATION_TOKEN, token))
        attributes.append((Attr.XOR_MAPPED_ADDRESS, client))
        response = self._answer(msg, Class.SUCCESS, attributes, auth)
        self.allocations[client] = Allocation(
            client,
            auth.username,
            relays,
            msg.transaction_id,
            response,
            dont_fragment=Attr.DONT_FRAGMENT in msg,
        )
        return response

    def _take_port(self, even: bool, reserve: bool) -> int:
        port = self._next_port
        if even and port % 2:
            port += 1
        self._next_port = port + (2 if reserve else 1)
        return port

    def _refresh(self, now: float, msg: Message, allocation: Allocation, auth: _Auth) -> bytes:
        """RFC 8656 section 7.3 (REQUESTED-ADDRESS-FAMILY picks one half of a dual one)."""
        family: int | None = msg.get(Attr.REQUESTED_ADDRESS_FAMILY)
        if family is not None and family not in allocation.relays:
            return self._error(msg, 443, auth)
        families = list(allocation.relays) if family is None else [AddressFamily(family)]
        requested: int | None = msg.get(Attr.LIFETIME)
        lifetime = 0 if requested == 0 else self._desired_lifetime(requested)
        for fam in families:
            if lifetime:
                allocation.relays[fam].expires = now + lifetime
            else:
                self._remove_family(allocation, fam)
        if not allocation.relays:
            del self.allocations[allocation.client]
        return self._answer(msg, Class.SUCCESS, [(Attr.LIFETIME, lifetime)], auth)

    def _remove_family(self, allocation: Allocation, family: AddressFamily) -> None:
        del allocation.relays[family]
        for ip in [ip for ip in allocation.permissions if family_of((ip, 0)) == family]:
            del allocation.permissions[ip]
        for number, channel in list(allocation.channels.items()):
            if family_of(channel.peer) == family:
                del allocation.channels[number]

    def _create_permission(
        self, now: float, msg: Message, allocation: Allocation, auth: _Auth
    ) -> bytes:
        """RFC 8656 section 9.2: all the peers or none."""
        peers: list[Address] = msg.get_all(Attr.XOR_PEER_ADDRESS)
        if not peers:
            return self._error(msg, 400, auth)
        if any(family_of(peer) not in allocation.relays for peer in peers):
            return self._error(msg, 443, auth)
        if any(peer[0] in self.forbidden_peers for peer in peers):
            return self._error(msg, 403, auth)
        for peer in peers:
            allocation.permissions[peer[0]] = now + PERMISSION_LIFETIME
        return self._answer(msg, Class.SUCCESS, [], auth)

    def _channel_bind(self, now: float, msg: Message, allocation: Allocation, auth: _Auth) -> bytes:
        """RFC 8656 section 11.2."""
        number: int | None = msg.get(Attr.CHANNEL_NUMBER)
        peer: Address | None = msg.get(Attr.XOR_PEER_ADDRESS)
        if number is None or peer is None or not 0x4000 <= number <= 0x4FFF:
            return self._error(msg, 400, auth)
        bound = allocation.channels.get(number)
        if bound is not None and bound.peer != peer:
            return self._error(msg, 400, auth)
        if allocation.channel_of(peer) not in (None, number):
            return self._error(msg, 400, auth)
        if peer[0] in self.forbidden_peers:
            return self._error(msg, 403, auth)
        if family_of(peer) not in allocation.relays:
            return self._error(msg, 443, auth)
        allocation.channels[number] = Channel(peer, now + CHANNEL_LIFETIME)
        allocation.permissions[peer[0]] = now + PERMISSION_LIFETIME
        return self._answer(msg, Class.SUCCESS, [], auth)

    # -- data from the client ------------------------------------------------------------------

    def _send_indication(self, msg: Message, client: Address) -> None:
        """RFC 8656 section 10.2: relayed only to a peer with a permission."""
        allocation = self.allocations.get(client)
        peer: Address | None = msg.get(Attr.XOR_PEER_ADDRESS)
        data: bytes | None = msg.get(Attr.DATA)
        if allocation is None:
            self.dropped["no_allocation"] += 1
        elif peer is None or data is None or family_of(peer) not in allocation.relays:
            self.dropped["bad_send"] += 1
        elif peer[0] not in allocation.permissions:
            self.dropped["no_permission"] += 1
        else:
            self.relayed.append((allocation.relays[family_of(peer)].address, peer, data))

    def _channel_data(self, now: float, data: bytes, client: Address) -> None:
        """RFC 8656 section 12.6: relayed only on a bound channel with a permission."""
        if len(data) < 4:
            self.dropped["malformed"] += 1
            return
        number, length = _CHANNEL_HEADER.unpack_from(data)
        if 4 + length > len(data):
            self.dropped["malformed"] += 1
            return
        payload = data[4 : 4 + length]
        self.log.append(Received(now, client, None, number, payload))
        if self.silent:
            return
        allocation = self.allocations.get(client)
        channel = None if allocation is None else allocation.channels.get(number)
        if allocation is None or channel is None:
            self.dropped["no_channel"] += 1
        elif channel.peer[0] not in allocation.permissions:
            self.dropped["no_permission"] += 1
        else:
            relay = allocation.relays[family_of(channel.peer)].address
            self.relayed.append((relay, channel.peer, payload))


def _canonical(ip: str) -> str:
    """An IP address in the text form the codec decodes to."""
    return str(ipaddress.ip_address(ip))


def _check_sha1(msg: Message, key: bytes) -> bool:
    """Verify MESSAGE-INTEGRITY alone, as an RFC 5389 server does.

    (``Message.check_integrity`` verifies MESSAGE-INTEGRITY-SHA256 when both are there.)
    """
    raw = msg.raw or b""
    off = 20
    while off + 4 <= len(raw):
        attr_type, length = _CHANNEL_HEADER.unpack_from(raw, off)
        if attr_type == Attr.MESSAGE_INTEGRITY and length == 20:
            head = raw[:2] + (off + 24 - 20).to_bytes(2, "big") + raw[4:off]
            mac = hmac.new(key, head, hashlib.sha1).digest()
            return hmac.compare_digest(mac, raw[off + 4 : off + 24])
        off += 4 + ((length + 3) & ~3)
    return False
