"""The STUN codec against a real coturn, over real UDP and TCP sockets on loopback.

Only the codec (``stun.Message``, ``encode``, ``stun.decode``, integrity checks and the
stream framer) and plain asyncio are used here: every byte coturn sends must decode
strictly, and what we encode must be accepted by coturn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import stun
from stun import Attr, Class, Message, Method
from stun.framing import StreamFramer
from tests.coturn import Coturn, CoturnFactory

Address = tuple[str, int]

TIMEOUT = 2.0
"""Seconds to wait for coturn's answer on loopback (it comes in well under a millisecond)."""
UDP = 17


def _rejected(data: bytes, exc: Exception) -> AssertionError:
    return AssertionError(f"our decoder rejected what coturn sent: {exc}\n  bytes: {data.hex()}")


def _strictly_decoded(data: bytes) -> Message:
    """Decode coturn's bytes and every attribute value; fail loudly with the bytes if not."""
    try:
        message = stun.decode(data)
        attributes = message.attributes
    except Exception as exc:  # ParseError, or a bug that lets a value decoder blow up
        raise _rejected(data, exc) from exc
    assert message.unknown_required() == [], data.hex()
    if not (message.has_integrity or message.has_fingerprint):
        # coturn pads with zeros, as we do: decoding then encoding must give its bytes back.
        rebuilt = Message(message.method, message.cls, message.transaction_id, attributes)
        assert rebuilt.encode() == data, f"re-encoded {rebuilt.encode().hex()} != {data.hex()}"
    return message


# -- transports ----------------------------------------------------------------------------


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.pending: dict[bytes, asyncio.Future[tuple[Message, Address]]] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        future = self.pending.pop(data[8:20], None)
        if future is None or future.done():
            return
        try:
            future.set_result((_strictly_decoded(data), (addr[0], addr[1])))
        except AssertionError as exc:
            future.set_exception(exc)

    def error_received(self, exc: Exception) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(exc)
        self.pending.clear()


class Udp:
    """An unconnected UDP socket on 127.0.0.1: answers may come from any server address."""

    name = "udp"

    def __init__(self, server: Address) -> None:
        self.server = server
        self.local: Address = ("", 0)
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol = _UdpProtocol()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self._protocol, local_addr=("127.0.0.1", 0)
        )
        host, port = self._transport.get_extra_info("sockname")[:2]
        self.local = (host, port)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def exchange(
        self, request: Message, key: bytes | None = None, to: Address | None = None, **kw: Any
    ) -> tuple[Message, Address]:
        """Send ``request`` (encoded with ``key`` and ``kw``); the response and its source."""
        assert self._transport is not None
        future: asyncio.Future[tuple[Message, Address]] = asyncio.get_running_loop().create_future()
        self._protocol.pending[request.transaction_id] = future
        self._transport.sendto(request.encode(key, **kw), to or self.server)
        async with asyncio.timeout(TIMEOUT):
            return await future

    async def request(self, request: Message, key: bytes | None = None, **kw: Any) -> Message:
        response, source = await self.exchange(request, key, **kw)
        assert source == self.server
        return response


class Tcp:
    """A TCP connection to the server: STUN messages framed back to back on the stream."""

    name = "tcp"

    def __init__(self, server: Address) -> None:
        self.server = server
        self.local: Address = ("", 0)
        self._framer = StreamFramer()
        self._frames: list[bytes] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            self._reader, self._writer = await asyncio.open_connection(*self.server)
        host, port = self._writer.get_extra_info("sockname")[:2]
        self.local = (host, port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            async with asyncio.timeout(TIMEOUT):
                await self._writer.wait_closed()

    async def request(self, request: Message, key: bytes | None = None, **kw: Any) -> Message:
        assert self._reader is not None and self._writer is not None
        self._writer.write(request.encode(key, **kw))
        async with asyncio.timeout(TIMEOUT):
            await self._writer.drain()
            while not self._frames:
                chunk = await self._reader.read(4096)
                assert chunk, "coturn closed the connection"
                self._frames += self._framer.feed(chunk)
        response = _strictly_decoded(self._frames.pop(0))
        assert response.transaction_id == request.transaction_id
        return response


Channel = Udp | Tcp


@pytest.fixture(params=["udp", "tcp"])
async def channel(request: pytest.FixtureRequest, coturn: Coturn) -> AsyncIterator[Channel]:
    """A UDP socket or a TCP connection to the ``coturn`` fixture."""
    chan: Channel = Udp(coturn.address) if request.param == "udp" else Tcp(coturn.address)
    await chan.open()
    yield chan
    await chan.close()


@pytest.fixture
async def udp_5780(coturn_5780: Coturn) -> AsyncIterator[Udp]:
    chan = Udp(coturn_5780.address)
    await chan.open()
    yield chan
    await chan.close()


# -- helpers -------------------------------------------------------------------------------


def binding(*attributes: tuple[int, Any]) -> Message:
    return Message(Method.BINDING, Class.REQUEST, attributes=list(attributes))


def allocate(*attributes: tuple[int, Any]) -> Message:
    return Message(
        Method.ALLOCATE, Class.REQUEST, attributes=[(Attr.REQUESTED_TRANSPORT, UDP), *attributes]
    )


def assert_error(response: Message, request: Message, code: int) -> None:
    assert response.method == request.method
    assert response.cls == Class.ERROR
    assert response.transaction_id == request.transaction_id
    error = response.get(Attr.ERROR_CODE)
    assert error is not None and error[0] == code, error


async def challenge(chan: Channel, server: Coturn) -> str:
    """The unauthenticated Allocate: a 401 with our realm and a nonce. Returns the nonce."""
    request = allocate()
    response = await chan.request(request)
    assert_error(response, request, 401)
    assert response.get(Attr.REALM) == server.realm
    nonce: str = response.get(Attr.NONCE)
    assert nonce
    assert not response.has_integrity
    return nonce


def credentials(user: str, realm: str, nonce: str) -> list[tuple[int, Any]]:
    return [(Attr.USERNAME, user), (Attr.REALM, realm), (Attr.NONCE, nonce)]


async def release(chan: Channel, user: str, realm: str, nonce: str, key: bytes) -> None:
    """Refresh with LIFETIME 0: delete the allocation (and check that answer's integrity)."""
    request = Message(
        Method.REFRESH,
        Class.REQUEST,
        attributes=[(Attr.LIFETIME, 0), *credentials(user, realm, nonce)],
    )
    response = await chan.request(request, key)
    assert response.cls == Class.SUCCESS, response
    assert response.check_integrity(key)
    assert response.get(Attr.LIFETIME) == 0


# -- Binding -------------------------------------------------------------------------------


async def test_binding_maps_our_address(channel: Channel, coturn: Coturn) -> None:
    request = binding()
    response = await channel.request(request)
    assert response.method == Method.BINDING
    assert response.cls == Class.SUCCESS
    assert response.transaction_id == request.transaction_id
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == channel.local
    if Attr.MAPPED_ADDRESS in response:  # coturn adds it for RFC 3489 clients
        assert response.get(Attr.MAPPED_ADDRESS) == channel.local
    if Attr.RESPONSE_ORIGIN in response:
        assert response.get(Attr.RESPONSE_ORIGIN) == coturn.address
    assert Attr.OTHER_ADDRESS not in response  # one listening IP: no RFC 5780
    assert not response.has_integrity


async def test_binding_fingerprint_is_mirrored_and_valid(channel: Channel) -> None:
    response = await channel.request(binding(), fingerprint=True)
    assert response.cls == Class.SUCCESS
    assert response.has_fingerprint
    assert response.check_fingerprint()
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == channel.local


async def test_binding_with_software_and_padding_attributes(channel: Channel) -> None:
    # Unaligned text attributes on our side: coturn must parse our padding.
    request = binding((Attr.SOFTWARE, "icestack \u00e9"))  # 11 bytes: 1 byte of padding
    response = await channel.request(request, fingerprint=True)
    assert response.cls == Class.SUCCESS
    assert response.check_fingerprint()
    software = response.get(Attr.SOFTWARE)
    assert isinstance(software, str) and software


async def test_server_side_fingerprint_option(coturn_factory: CoturnFactory) -> None:
    server = coturn_factory(fingerprint=True, tcp=False)
    chan = Udp(server.address)
    await chan.open()
    try:
        response = await chan.request(binding())  # no FINGERPRINT of ours
        assert response.cls == Class.SUCCESS
        assert response.check_fingerprint()
    finally:
        await chan.close()


# -- long-term credentials (Allocate) ------------------------------------------------------


async def test_allocate_without_credentials_is_challenged(channel: Channel, coturn: Coturn) -> None:
    nonce = await challenge(channel, coturn)
    assert nonce.isprintable()


async def test_allocate_with_long_term_credentials(channel: Channel, coturn: Coturn) -> None:
    nonce = await challenge(channel, coturn)
    key = stun.long_term_key("alice", coturn.realm, coturn.users["alice"])
    request = allocate(*credentials("alice", coturn.realm, nonce))
    response = await channel.request(request, key)
    assert response.cls == Class.SUCCESS, response
    assert response.transaction_id == request.transaction_id
    assert response.has_integrity
    assert response.check_integrity(key)
    assert not response.check_integrity(stun.long_term_key("alice", coturn.realm, "wrong"))
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == channel.local
    relayed_host, relayed_port = response.get(Attr.XOR_RELAYED_ADDRESS)
    assert relayed_host == coturn.host and relayed_port > 0
    assert response.get(Attr.LIFETIME) > 0
    await release(channel, "alice", coturn.realm, nonce, key)


async def test_allocate_with_fingerprint_after_integrity(channel: Channel, coturn: Coturn) -> None:
    nonce = await challenge(channel, coturn)
    key = coturn.long_term_key("bob")
    request = allocate(*credentials("bob", coturn.realm, nonce))
    response = await channel.request(request, key, fingerprint=True)
    assert response.cls == Class.SUCCESS, response
    assert response.check_integrity(key)
    assert response.check_fingerprint()
    await release(channel, "bob", coturn.realm, nonce, key)


async def test_allocate_with_wrong_password_is_challenged_again(
    channel: Channel, coturn: Coturn
) -> None:
    nonce = await challenge(channel, coturn)
    key = stun.long_term_key("alice", coturn.realm, "not-" + coturn.users["alice"])
    request = allocate(*credentials("alice", coturn.realm, nonce))
    response = await channel.request(request, key)
    assert_error(response, request, 401)
    assert response.get(Attr.REALM) == coturn.realm
    assert response.get(Attr.NONCE)
    assert not response.check_integrity(key)


async def test_allocate_with_unknown_user_is_challenged_again(
    channel: Channel, coturn: Coturn
) -> None:
    nonce = await challenge(channel, coturn)
    key = stun.long_term_key("mallory", coturn.realm, "whatever")
    request = allocate(*credentials("mallory", coturn.realm, nonce))
    assert_error(await channel.request(request, key), request, 401)


async def test_sha256_password_algorithm(channel: Channel, coturn: Coturn) -> None:
    """RFC 8489 SHA-256 when coturn offers it; otherwise MESSAGE-INTEGRITY-SHA256 alone
    must not authenticate (a client has to fall back to MESSAGE-INTEGRITY)."""
    request = allocate()
    challenge_response = await channel.request(request)
    assert_error(challenge_response, request, 401)
    nonce: str = challenge_response.get(Attr.NONCE)
    features = stun.nonce_features(nonce)
    offered = challenge_response.get(Attr.PASSWORD_ALGORITHMS)
    sha256_offered = (
        features is not None
        and features.password_algorithms
        and offered is not None
        and stun.PasswordAlgorithm.SHA256 in offered
    )
    auth = credentials("alice", coturn.realm, nonce)
    if sha256_offered:
        key = stun.long_term_key("alice", coturn.realm, coturn.users["alice"], "sha256")
        request = allocate(
            *auth,
            (Attr.PASSWORD_ALGORITHMS, offered),
            (Attr.PASSWORD_ALGORITHM, stun.PasswordAlgorithm.SHA256),
        )
        response = await channel.request(request, key, sha256=True)
        assert response.cls == Class.SUCCESS, response
        assert response.check_integrity(key)
        await release(channel, "alice", coturn.realm, nonce, key)
    else:
        # coturn 4.6 has no RFC 8489 password algorithms: no nonce cookie, no
        # PASSWORD-ALGORITHMS, and it does not verify MESSAGE-INTEGRITY-SHA256.
        assert offered is None
        key = stun.long_term_key("alice", coturn.realm, coturn.users["alice"])
        request = allocate(*auth)
        response = await channel.request(request, key, sha256=True)
        assert_error(response, request, 401)


async def test_rest_api_credentials(coturn_rest: Coturn) -> None:
    username, password = coturn_rest.rest_credentials("carol")
    expired_username, expired_password = coturn_rest.rest_credentials("carol", ttl=-60)
    # Separate 5-tuples: after a Refresh to 0 coturn answers a new Allocate on the same
    # 5-tuple with 437 for a while.
    good, expired = Udp(coturn_rest.address), Udp(coturn_rest.address)
    await good.open()
    await expired.open()
    try:
        nonce = await challenge(good, coturn_rest)
        key = stun.long_term_key(username, coturn_rest.realm, password)
        request = allocate(*credentials(username, coturn_rest.realm, nonce))
        response = await good.request(request, key)
        assert response.cls == Class.SUCCESS, response
        assert response.check_integrity(key)
        await release(good, username, coturn_rest.realm, nonce, key)

        nonce = await challenge(expired, coturn_rest)
        key = stun.long_term_key(expired_username, coturn_rest.realm, expired_password)
        request = allocate(*credentials(expired_username, coturn_rest.realm, nonce))
        assert_error(await expired.request(request, key), request, 401)
    finally:
        await good.close()
        await expired.close()


# -- RFC 5780 ------------------------------------------------------------------------------


async def test_rfc5780_binding_has_other_address_and_response_origin(
    udp_5780: Udp, coturn_5780: Coturn
) -> None:
    response, source = await udp_5780.exchange(binding())
    assert response.cls == Class.SUCCESS
    assert source == coturn_5780.address
    assert response.get(Attr.RESPONSE_ORIGIN) == coturn_5780.address
    assert response.get(Attr.OTHER_ADDRESS) == coturn_5780.other_address
    assert coturn_5780.other_address == ("127.0.0.2", coturn_5780.alt_port)
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == udp_5780.local


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (0, "primary"),
        (stun.ChangeRequest.CHANGE_PORT, "port"),
        (stun.ChangeRequest.CHANGE_IP, "ip"),
        (stun.ChangeRequest.CHANGE_IP | stun.ChangeRequest.CHANGE_PORT, "other"),
    ],
)
async def test_rfc5780_change_request(
    udp_5780: Udp, coturn_5780: Coturn, flags: int, expect: str
) -> None:
    server = coturn_5780
    assert server.alt_host is not None and server.alt_port is not None
    expected = {
        "primary": server.address,
        "port": (server.host, server.alt_port),
        "ip": (server.alt_host, server.port),
        "other": server.other_address,
    }[expect]
    response, source = await udp_5780.exchange(binding((Attr.CHANGE_REQUEST, flags)))
    assert response.cls == Class.SUCCESS, response
    assert source == expected
    assert response.get(Attr.RESPONSE_ORIGIN) == expected
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == udp_5780.local


async def test_rfc5780_binding_to_the_alternate_port(udp_5780: Udp, coturn_5780: Coturn) -> None:
    server = coturn_5780
    assert server.alt_port is not None
    alternate = (server.host, server.alt_port)
    response, source = await udp_5780.exchange(binding(), to=alternate)
    assert source == alternate
    assert response.get(Attr.RESPONSE_ORIGIN) == alternate
    assert response.get(Attr.OTHER_ADDRESS) == (server.alt_host, server.port)


async def test_rfc5780_change_request_over_tcp_is_refused(coturn_5780: Coturn) -> None:
    chan = Tcp(coturn_5780.address)
    await chan.open()
    try:
        response = await chan.request(binding())
        assert response.get(Attr.OTHER_ADDRESS) == coturn_5780.other_address
        flags = stun.ChangeRequest.CHANGE_IP | stun.ChangeRequest.CHANGE_PORT
        request = binding((Attr.CHANGE_REQUEST, flags))
        assert_error(await chan.request(request), request, 400)
    finally:
        await chan.close()
