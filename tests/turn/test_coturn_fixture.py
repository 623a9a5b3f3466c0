"""The coturn options the TURN client tests rely on, checked against the real coturn.

Each test drives coturn with a bare TURN client made of the STUN codec and asyncio (no
``turn`` client code), so that what is proven here is coturn's behaviour and the helper's
command line, nothing of ours. Where a lifetime has to run out, the options are set to 1 s,
the checks wait for the real condition with a deadline, and the slow ones run side by side.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pytest

import stun
from stun import Attr, Class, Message, Method
from stun.framing import StreamFramer
from tests.coturn import Coturn, CoturnFactory, peer_range
from turn.credentials import MAX_EXPIRY, rest_credentials

Address = tuple[str, int]

TIMEOUT = 2.0
"""Seconds to wait for an answer from coturn on loopback (it comes in well under 1 ms)."""
DEADLINE = 4.0
"""Seconds a 1-second lifetime may take to run out before the test gives up."""
UDP = 17


class Probe:
    """A bare TURN client over UDP (or TLS with ``ssl_context``): long-term credentials,
    one retry with the fresh nonce of a 401 or 438, and a queue of what the relay sends."""

    def __init__(
        self,
        server: Address,
        username: str = "",
        password: str = "",
        realm: str = "",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.username = username
        self.realm = realm
        self.key = stun.long_term_key(username, realm, password)
        self.nonce: str | None = None
        self.ssl_context = ssl_context
        self.relayed: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        """``("data", DATA)`` of Data indications and ``("channel", payload)`` of
        ChannelData, in order of arrival."""
        self._pending: dict[bytes, asyncio.Future[Message]] = {}
        self._datagrams: asyncio.DatagramTransport | None = None
        self._stream: asyncio.Transport | None = None

    @classmethod
    def of(cls, server: Coturn, user: str, *, tls: ssl.SSLContext | None = None) -> Probe:
        """A probe with one of ``server``'s accounts, to its TLS address when given ``tls``."""
        address = server.address if tls is None else server.tls_address
        return cls(address, user, server.users[user], server.realm, ssl_context=tls)

    async def __aenter__(self) -> Probe:
        loop = asyncio.get_running_loop()
        if self.ssl_context is None:
            self._datagrams, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self._frame), local_addr=("127.0.0.1", 0)
            )
        else:
            async with asyncio.timeout(TIMEOUT):
                self._stream, _ = await loop.create_connection(
                    lambda: _Stream(self._frame),
                    *self.server,
                    ssl=self.ssl_context,
                    server_hostname="127.0.0.1",
                )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for transport in (self._datagrams, self._stream):
            if transport is not None:
                transport.close()

    def _frame(self, data: bytes) -> None:
        if data[0] >= 0x40:  # ChannelData
            self.relayed.put_nowait(("channel", data[4 : 4 + int.from_bytes(data[2:4], "big")]))
            return
        message = stun.decode(data)
        if message.cls == Class.INDICATION and message.method == Method.DATA:
            self.relayed.put_nowait(("data", message.get(Attr.DATA)))
            return
        future = self._pending.pop(message.transaction_id, None)
        if future is not None and not future.done():
            future.set_result(message)

    def send(self, data: bytes) -> None:
        if self._datagrams is not None:
            self._datagrams.sendto(data, self.server)
        else:
            assert self._stream is not None
            self._stream.write(data)

    async def raw(
        self, method: int, attributes: list[tuple[int, Any]], *, authenticate: bool = True
    ) -> Message:
        """One transaction: the request signed with the current nonce (if any and wanted)."""
        attributes = list(attributes)
        key = None
        if authenticate and self.nonce is not None:
            attributes += [
                (Attr.USERNAME, self.username),
                (Attr.REALM, self.realm),
                (Attr.NONCE, self.nonce),
            ]
            key = self.key
        request = Message(method, Class.REQUEST, attributes=attributes)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request.transaction_id] = future
        self.send(request.encode(key))
        async with asyncio.timeout(TIMEOUT):
            return await future

    async def call(self, method: int, *attributes: tuple[int, Any]) -> Message:
        """A request, retried once with the new nonce of a 401 (first time) or a 438."""
        response = await self.raw(method, list(attributes))
        code = _error_code(response)
        if (code == 401 and self.nonce is None) or code == 438:
            self.nonce = response.get(Attr.NONCE)
            response = await self.raw(method, list(attributes))
        return response

    async def allocate(self, *attributes: tuple[int, Any]) -> Message:
        return await self.call(Method.ALLOCATE, (Attr.REQUESTED_TRANSPORT, UDP), *attributes)

    async def next_relayed(self, timeout: float) -> tuple[str, bytes] | None:
        try:
            async with asyncio.timeout(timeout):
                return await self.relayed.get()
        except TimeoutError:
            return None


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_frame: Callable[[bytes], None]) -> None:
        self.on_frame = on_frame

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_frame(data)


class _Stream(asyncio.Protocol):
    def __init__(self, on_frame: Callable[[bytes], None]) -> None:
        self.on_frame = on_frame
        self.framer = StreamFramer()

    def data_received(self, data: bytes) -> None:
        for frame in self.framer.feed(data):
            self.on_frame(frame)


def _error_code(response: Message) -> int | None:
    if response.cls != Class.ERROR:
        return None
    code: int = response.get(Attr.ERROR_CODE)[0]
    return code


def _ok(response: Message) -> Message:
    assert response.cls == Class.SUCCESS, response.get(Attr.ERROR_CODE)
    return response


def _peer(address: Address) -> tuple[int, Address]:
    return (Attr.XOR_PEER_ADDRESS, address)


class Peer(asyncio.DatagramProtocol):
    """A UDP peer on loopback that sends to a relayed address."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> tuple[Peer, Address]:
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        peer.transport = transport
        address: Address = transport.get_extra_info("sockname")[:2]
        return peer, address

    def send(self, data: bytes, to: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _relayed_until(
    probe: Probe, peer: Peer, relay: Address, started: float, kind: str = "data"
) -> float:
    """Have ``peer`` send to ``relay`` every 50 ms until its data stops reaching the client
    (as ``kind``: "data" or "channel"); return when the last datagram that got through was
    sent, in seconds since ``started``. Fails if nothing gets through, or it never stops."""
    last = None
    while time.monotonic() - started < DEADLINE:
        sent = time.monotonic()
        peer.send(b"ping", relay)
        got = await probe.next_relayed(0.25)
        if got is None and last is not None:
            return last
        assert got in (None, (kind, b"ping")), got
        if got is not None:
            last = sent - started
            await asyncio.sleep(0.05)  # pacing of the peer's sends, not a wait for a result
    raise AssertionError(f"still relayed after {DEADLINE} s" if last else "never relayed")


# -- turn.credentials ----------------------------------------------------------------------


def test_rest_credentials_are_the_hmac_of_the_username() -> None:
    assert rest_credentials("s3cret", "carol", 600, now=1_700_000_000.9) == (
        "1700000600:carol",
        "XDghTuyOS8mnzsjUD2jnBhok/30=",  # openssl dgst -sha1 -hmac s3cret -binary | base64
    )
    username, _ = rest_credentials("s3cret", "carol")
    assert abs(int(username.split(":")[0]) - (time.time() + 86400)) < 5
    assert rest_credentials("s", "a:b", now=0)[0] == "86400:a:b"  # coturn takes ':' in users


@pytest.mark.parametrize(
    ("secret", "user", "ttl", "now", "message"),
    [
        ("", "carol", 60, None, "secret is empty"),
        ("s", "carol", 0, None, "ttl must be"),
        ("s", "carol", -1, None, "ttl must be"),
        ("s", "carol", math.nan, None, "ttl must be"),
        ("s", "carol", math.inf, None, "ttl must be"),
        ("s", "car ol", 60, None, "whitespace"),
        ("s", 'car"ol', 60, None, "quotes"),
        ("s", "car\\ol", 60, None, "backslash"),
        ("s", "car\x00ol", 60, None, "NUL"),
        ("s", "carol", 60, MAX_EXPIRY, "2038"),
        ("s", "carol", 60, -120, "Unix time"),
        ("s", "x" * 498, 60, 1_700_000_000, "bytes of UTF-8"),  # 509 bytes
    ],
    ids=lambda value: repr(value)[:16],
)
def test_rest_credentials_refuse_what_coturn_would(
    secret: str, user: str, ttl: float, now: float | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rest_credentials(secret, user, ttl, now=now)


def test_rest_credentials_up_to_the_limits() -> None:
    assert rest_credentials("s", "x" * 497, 60, now=1_700_000_000)[0].endswith("x")  # 508 bytes
    assert rest_credentials("s", "carol", 1, now=MAX_EXPIRY - 1)[0] == f"{MAX_EXPIRY}:carol"
    assert rest_credentials("s", "", now=0)[0] == "86400:"


async def test_rest_credentials_work_with_coturn_s_shared_secret(coturn_rest: Coturn) -> None:
    assert coturn_rest.secret is not None
    server = coturn_rest.address, coturn_rest.realm

    async with Probe(server[0], *rest_credentials(coturn_rest.secret, "carol"), server[1]) as ok:
        relay = _ok(await ok.allocate()).get(Attr.XOR_RELAYED_ADDRESS)
        assert relay[0] == "127.0.0.1"

    wrong = rest_credentials(coturn_rest.secret + "x", "carol")
    async with Probe(server[0], *wrong, server[1]) as probe:
        assert _error_code(await probe.allocate()) == 401  # after the authenticated retry
        assert probe.nonce is not None

    expired = rest_credentials(coturn_rest.secret, "carol", 60, now=time.time() - 120)
    async with Probe(server[0], *expired, server[1]) as probe:
        assert _error_code(await probe.allocate()) == 401


# -- TLS -----------------------------------------------------------------------------------


async def test_tls_listener_serves_an_allocate(coturn_tls: Coturn) -> None:
    host, port = coturn_tls.tls_address
    assert host == "127.0.0.1" and port not in (coturn_tls.port, 0)
    assert f"--tls-listening-port={port}" in coturn_tls.command()
    assert "--no-tls" not in coturn_tls.command()
    context = coturn_tls.client_ssl_context()
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED

    async with Probe.of(coturn_tls, "alice", tls=context) as probe:
        unauthenticated = await probe.raw(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, UDP)])
        assert _error_code(unauthenticated) == 401
        assert unauthenticated.get(Attr.REALM) == coturn_tls.realm
        response = _ok(await probe.allocate())
        assert response.get(Attr.XOR_MAPPED_ADDRESS)[0] == "127.0.0.1"
        assert response.get(Attr.LIFETIME) == 600

    untrusting = ssl.create_default_context()  # the system CAs do not know our certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        async with Probe.of(coturn_tls, "alice", tls=untrusting):
            pass


def test_without_tls_coturn_gets_no_tls(coturn: Coturn) -> None:
    assert "--no-tls" in coturn.command()
    assert coturn.tls_listening_addresses == []
    with pytest.raises(ValueError):
        coturn.tls_address  # noqa: B018
    with pytest.raises(ValueError):
        coturn.client_ssl_context()


# -- lifetimes -----------------------------------------------------------------------------


async def test_granted_allocation_lifetime(coturn_factory: CoturnFactory) -> None:
    """coturn grants min(max(asked, 600), max_allocate_lifetime); 600 when not asked."""
    capped = coturn_factory(users={"alice": "pw"}, max_allocate_lifetime=700)
    default = coturn_factory(users={"alice": "pw"})
    cases = [
        (capped, None, 600),
        (capped, 5, 600),
        (capped, 601, 601),
        (capped, 3600, 700),
        (default, 5, 600),
        (default, 7200, 3600),
    ]
    for server, asked, granted in cases:
        async with Probe.of(server, "alice") as probe:
            extra = [] if asked is None else [(Attr.LIFETIME, asked)]
            response = _ok(await probe.allocate(*extra))
            assert response.get(Attr.LIFETIME) == granted, (server.command()[-3:], asked)


async def test_short_lifetimes_run_out(coturn_factory: CoturnFactory) -> None:
    """max_allocate_lifetime, permission_lifetime, channel_lifetime and stale_nonce of 1 s,
    each on its own coturn, checked side by side."""

    async def allocation() -> None:
        server = coturn_factory(users={"alice": "pw"}, max_allocate_lifetime=1)
        peer, peer_address = await Peer.open()
        async with Probe.of(server, "alice") as probe:
            response = _ok(await probe.allocate((Attr.LIFETIME, 3600)))
            started = time.monotonic()
            assert response.get(Attr.LIFETIME) == 1
            _ok(await probe.call(Method.CREATE_PERMISSION, _peer(peer_address)))
            relay = response.get(Attr.XOR_RELAYED_ADDRESS)
            assert 0.7 < await _relayed_until(probe, peer, relay, started) < 2.5
            assert _error_code(await probe.call(Method.REFRESH)) == 437
        peer.close()

    async def permission() -> None:
        server = coturn_factory(users={"alice": "pw"}, permission_lifetime=1)
        peer, peer_address = await Peer.open()
        async with Probe.of(server, "alice") as probe:
            relay = _ok(await probe.allocate()).get(Attr.XOR_RELAYED_ADDRESS)
            _ok(await probe.call(Method.CREATE_PERMISSION, _peer(peer_address)))
            started = time.monotonic()
            assert 0.7 < await _relayed_until(probe, peer, relay, started) < 2.5
            _ok(await probe.call(Method.REFRESH))  # the allocation itself lives on
        peer.close()

    async def channel() -> None:
        server = coturn_factory(users={"alice": "pw"}, channel_lifetime=1)
        peer, peer_address = await Peer.open()
        async with Probe.of(server, "alice") as probe:
            relay = _ok(await probe.allocate()).get(Attr.XOR_RELAYED_ADDRESS)
            bind = (Attr.CHANNEL_NUMBER, 0x4000), _peer(peer_address)
            _ok(await probe.call(Method.CHANNEL_BIND, *bind))
            started = time.monotonic()
            # ChannelData until the channel ends, and then nothing, not even Data
            # indications: the permission the ChannelBind made ends with the channel.
            last = await _relayed_until(probe, peer, relay, started, kind="channel")
            assert 0.7 < last < 2.5
        peer.close()

    async def nonce() -> None:
        server = coturn_factory(users={"alice": "pw"}, stale_nonce=1)
        async with Probe.of(server, "alice") as probe:
            _ok(await probe.allocate())
            first = probe.nonce
            started = time.monotonic()
            while (response := await probe.raw(Method.REFRESH, [])).cls == Class.SUCCESS:
                assert time.monotonic() - started < DEADLINE, "the nonce never went stale"
                await asyncio.sleep(0.05)  # pacing of the requests
            assert response.get(Attr.ERROR_CODE)[0] == 438
            assert 0.5 < time.monotonic() - started < 2.5
            assert response.get(Attr.NONCE) not in (None, first)
            _ok(await probe.call(Method.REFRESH))  # the retry with the new nonce

    await asyncio.gather(allocation(), permission(), channel(), nonce())


# -- peers, quota, STUN --------------------------------------------------------------------


def test_peer_ranges() -> None:
    assert peer_range("127.0.0.9") == "127.0.0.9"
    assert peer_range("10.0.0.1-10.0.0.9") == "10.0.0.1-10.0.0.9"
    assert peer_range("127.0.1.0/24") == "127.0.1.0-127.0.1.255"
    assert peer_range("fe80::/64") == "fe80::-fe80::ffff:ffff:ffff:ffff"
    for bad in ("", "localhost", "10.0.0.9-10.0.0.1", "10.0.0.1-::1", "10.0.0.0/33"):
        with pytest.raises(ValueError):
            peer_range(bad)


@pytest.mark.parametrize(
    "options",
    [
        {"max_allocate_lifetime": 0},
        {"permission_lifetime": -1},
        {"channel_lifetime": 1.5},
        {"stale_nonce": 0},
        {"user_quota": True},
        {"denied_peers": ["127.0.0.0/8 "]},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Coturn(**options)


async def test_denied_and_allowed_peers(coturn_factory: CoturnFactory) -> None:
    server = coturn_factory(
        users={"alice": "pw"},
        denied_peers=["127.0.0.9", "127.0.1.0/24"],
        allowed_peers=["127.0.1.5"],
    )
    assert "--denied-peer-ip=127.0.1.0-127.0.1.255" in server.command()
    async with Probe.of(server, "alice") as probe:
        _ok(await probe.allocate())

        async def permit(*hosts: str) -> Message:
            return await probe.call(
                Method.CREATE_PERMISSION, *(_peer((host, 5000)) for host in hosts)
            )

        _ok(await permit("127.0.0.8"))
        _ok(await permit("127.0.1.5"))  # allowed_peers makes a hole in the denied range
        for denied in (["127.0.0.9"], ["127.0.1.77"], ["127.0.0.10", "127.0.0.9"]):
            response = await permit(*denied)
            assert response.get(Attr.ERROR_CODE) == (403, "Forbidden IP"), denied
        bind = (Attr.CHANNEL_NUMBER, 0x4000), _peer(("127.0.0.9", 5000))
        assert _error_code(await probe.call(Method.CHANNEL_BIND, *bind)) == 403


async def test_user_quota(coturn_factory: CoturnFactory) -> None:
    server = coturn_factory(users={"alice": "pw", "bob": "pw"}, user_quota=1)
    async with Probe.of(server, "alice") as first, Probe.of(server, "alice") as second:
        _ok(await first.allocate())
        assert _error_code(await second.allocate()) == 486
        async with Probe.of(server, "bob") as bob:
            _ok(await bob.allocate())


@pytest.mark.parametrize("no_stun", [False, True])
async def test_no_stun_leaves_binding_unanswered(
    coturn_factory: CoturnFactory, no_stun: bool
) -> None:
    """A Binding and then an Allocate on one socket: the Allocate's 401 comes back, and
    an answer to the Binding came before it unless ``no_stun`` (coturn answers each client
    socket in order: one listener thread per 5-tuple)."""
    server = coturn_factory(users={"alice": "pw"}, no_stun=no_stun)
    assert ("--no-stun" in server.command()) == no_stun
    arrived: asyncio.Queue[bytes] = asyncio.Queue()
    protocol = _Datagrams(arrived.put_nowait)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: protocol, local_addr=("127.0.0.1", 0)
    )
    try:
        transport.sendto(Message(Method.BINDING, Class.REQUEST).encode(), server.address)
        allocate = [(Attr.REQUESTED_TRANSPORT, UDP)]
        transport.sendto(
            Message(Method.ALLOCATE, Class.REQUEST, attributes=allocate).encode(), server.address
        )
        methods: list[int] = []
        async with asyncio.timeout(TIMEOUT):
            while not methods or methods[-1] != Method.ALLOCATE:
                methods.append(stun.decode(await arrived.get()).method)
        assert methods == ([Method.ALLOCATE] if no_stun else [Method.BINDING, Method.ALLOCATE])
    finally:
        transport.close()


def test_tls_with_rfc5780_listens_on_four_tls_addresses(coturn_factory: CoturnFactory) -> None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.2", 0))
    except OSError as exc:
        pytest.skip(f"127.0.0.2 is not usable here: {exc}")
    server = coturn_factory(users={"alice": "pw"}, tls=True, rfc5780=True)
    addresses = server.tls_listening_addresses
    assert len(set(addresses)) == 4  # the readiness probe got a 401 with our realm from each
    assert f"--alt-tls-listening-port={server.alt_tls_port}" in server.command()
