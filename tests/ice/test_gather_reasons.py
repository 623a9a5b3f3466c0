"""``ice.gather.failure_reason``: why a STUN or TURN server gave no candidate, in a few
words that always start the same way (timeout, DNS, refused, unreachable, "<code>
<reason>", TLS, error). The exceptions are the ones the clients raise: built here, or
caught from a real request to a closed loopback port."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import pytest

from ice.gather import failure_reason
from stun import Attr, Class, Message, Method
from stun.client import binding
from stun.errors import (
    ErrorResponse,
    IntegrityError,
    ParseError,
    ResolutionError,
    StunError,
    TransactionTimeout,
)
from stun.transaction import ClientTransaction
from turn.aio import allocate
from turn.errors import (
    AllocationError,
    AllocationLostError,
    AlternateServer,
    AuthenticationError,
    PeerPermissionError,
    TurnError,
    TurnTimeout,
)


def _closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        return int(placeholder.getsockname()[1])


# -- timeouts ------------------------------------------------------------------------------


def test_a_stun_transaction_that_runs_out_of_time() -> None:
    request = Message(Method.BINDING, Class.REQUEST).encode()
    transaction = ClientTransaction(request, 0.0, timeout=1.5)
    transaction.handle_timeout(100.0)  # virtual time: no waiting
    assert isinstance(transaction.error, TransactionTimeout)
    reason = failure_reason(transaction.error)
    assert reason.startswith("timeout: no response after ")


def test_a_turn_timeout_says_timeout() -> None:
    exc = TurnTimeout("no allocation from 127.0.0.1:3478 within 1 s")
    assert failure_reason(exc) == "timeout: no allocation from 127.0.0.1:3478 within 1 s"


def test_a_bare_timeout_is_just_timeout() -> None:
    # asyncio.TimeoutError and socket.timeout are TimeoutError since Python 3.11
    assert failure_reason(TimeoutError()) == "timeout"


def test_asyncio_timeout_caught_for_real() -> None:
    async def wait_forever() -> BaseException:
        try:
            async with asyncio.timeout(0):
                await asyncio.Event().wait()
        except TimeoutError as exc:
            return exc
        raise AssertionError("no timeout")

    assert failure_reason(asyncio.run(wait_forever())) == "timeout"


def test_timeout_is_not_said_twice() -> None:
    assert failure_reason(TransactionTimeout("timeout: no answer")) == "timeout: no answer"


# -- error responses -----------------------------------------------------------------------


def test_an_error_response_is_its_code_and_reason() -> None:
    response = Message(Method.BINDING, Class.ERROR, attributes=[(Attr.ERROR_CODE, (403, ""))])
    assert failure_reason(ErrorResponse(401, "Unauthorized")) == "401 Unauthorized"
    assert failure_reason(ErrorResponse(403, "Forbidden\0\0\0")) == "403 Forbidden"
    assert failure_reason(ErrorResponse(403, "", response)) == "403 Forbidden"
    assert failure_reason(ErrorResponse(599, "")) == "599"


def test_an_error_response_from_a_real_transaction() -> None:
    request = Message(Method.BINDING, Class.REQUEST)
    transaction = ClientTransaction(request.encode(), 0.0)
    answer = Message(
        Method.BINDING,
        Class.ERROR,
        request.transaction_id,
        [(Attr.ERROR_CODE, (403, "Forbidden"))],
    )
    transaction.handle_response(answer, 0.01)
    assert isinstance(transaction.error, ErrorResponse)
    assert failure_reason(transaction.error) == "403 Forbidden"


def test_wrong_credentials_are_a_401_with_the_realm() -> None:
    exc = AuthenticationError(
        "401 Unauthorized: the server refused the credentials of 'alice' in realm"
        " 'example.org' (wrong username or password?)",
        "example.org",
        401,
        "Unauthorized",
    )
    assert failure_reason(exc) == (
        "401 Unauthorized: the server refused the credentials of 'alice' in realm"
        " 'example.org' (wrong username or password?)"
    )


def test_a_turn_error_response_leads_with_the_code() -> None:
    exc = AllocationError(
        "Allocate failed: 403 Forbidden: the server refuses this for administrative reasons",
        403,
        "Forbidden",
    )
    assert failure_reason(exc) == (
        "403 Forbidden: Allocate failed: the server refuses this for administrative reasons"
    )
    quota = AllocationError("Allocate failed: 486 Allocation Quota Reached", 486, "")
    assert failure_reason(quota) == "486 Allocation Quota Reached: Allocate failed"


def test_a_code_without_a_reason_gets_the_rfc_phrase() -> None:
    exc = AuthenticationError("438 Stale Nonce without a new NONCE", None, 438)
    assert failure_reason(exc) == "438 Stale Nonce: without a new NONCE"
    bare = AuthenticationError(
        "the server asked for authentication (401) without a REALM and NONCE", None, 401
    )
    assert failure_reason(bare) == (
        "401 Unauthorized: the server asked for authentication (401) without a REALM and NONCE"
    )


def test_other_coded_turn_errors() -> None:
    redirect = AlternateServer(
        "the server redirects us to 127.0.0.2 port 3478", ("127.0.0.2", 3478), None
    )
    assert failure_reason(redirect) == (
        "300 Try Alternate: the server redirects us to 127.0.0.2 port 3478"
    )
    peer = PeerPermissionError(
        "CreatePermission failed: 403 Forbidden", "127.0.0.1", 403, "Forbidden"
    )
    assert failure_reason(peer) == "403 Forbidden: CreatePermission failed"


# -- DNS -----------------------------------------------------------------------------------


def test_a_name_that_does_not_resolve() -> None:
    exc = ResolutionError("cannot resolve 'nonexistent.invalid': Name or service not known")
    assert failure_reason(exc) == (
        "DNS: cannot resolve 'nonexistent.invalid': Name or service not known"
    )
    raw = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert failure_reason(raw) == "DNS: Name or service not known"


def test_a_turn_error_caused_by_dns() -> None:
    exc = TurnError("could not reach the server")
    exc.__cause__ = ResolutionError("cannot resolve 'x.invalid': Name or service not known")
    assert failure_reason(exc) == "DNS: cannot resolve 'x.invalid': Name or service not known"


# -- refused and unreachable ---------------------------------------------------------------


def test_a_refused_tcp_connection_for_real() -> None:
    port = _closed_port(socket.SOCK_STREAM)

    async def connect() -> BaseException:
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            return exc
        raise AssertionError("connected to a closed port")

    exc = asyncio.run(connect())
    assert isinstance(exc, ConnectionRefusedError)
    assert "Connect call failed" in str(exc)  # the raw text that must not show
    assert failure_reason(exc) == "refused"


def test_a_refused_turn_tcp_allocation_for_real() -> None:
    url = f"turn:127.0.0.1:{_closed_port(socket.SOCK_STREAM)}?transport=tcp"

    async def attempt() -> BaseException:
        try:
            await allocate(url, "alice", "secret", timeout=5)
        except OSError as exc:
            return exc
        raise AssertionError("allocated on a closed port")

    assert failure_reason(asyncio.run(attempt())) == "refused"


def test_a_closed_udp_port_for_real_stun_and_turn() -> None:
    """ICMP port unreachable on a connected UDP socket: the clients wrap it in text."""
    port = _closed_port(socket.SOCK_DGRAM)

    async def attempts() -> list[BaseException]:
        caught: list[BaseException] = []
        for request in (
            binding(f"127.0.0.1:{port}", timeout=5),
            allocate(f"turn:127.0.0.1:{port}", "alice", "secret", timeout=5),
        ):
            try:
                await request
            except StunError as exc:
                caught.append(exc)
        return caught

    stun_error, turn_error = asyncio.run(attempts())
    assert isinstance(turn_error, TurnError)
    assert failure_reason(stun_error) == "refused"
    assert failure_reason(turn_error) == "refused"


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (errno.EHOSTUNREACH, "No route to host"),
        (errno.ENETUNREACH, "Network is unreachable"),
    ],
)
def test_unreachable(number: int, text: str) -> None:
    assert failure_reason(OSError(number, text)) == f"unreachable: {text}"
    wrapped = TurnError(f"the TURN server is unreachable: [Errno {number}] {text}")
    assert failure_reason(wrapped) == f"unreachable: {text}"
    lost = AllocationLostError(f"the allocation is lost: {OSError(number, text)}")
    assert failure_reason(lost) == f"unreachable: {text}"


def test_refused_text_from_several_addresses() -> None:
    exc = OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('::1', 3478), "
        "[Errno 111] Connect call failed ('127.0.0.1', 3478)"
    )
    assert failure_reason(exc) == "refused"


# -- the rest ------------------------------------------------------------------------------


def test_tls_failures() -> None:
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify")
    verify.verify_message = "self-signed certificate"
    assert failure_reason(verify) == "TLS: self-signed certificate"
    assert failure_reason(ssl.SSLError(1, "handshake failure")).startswith("TLS: ")


def test_anything_else_is_an_error_with_its_text() -> None:
    assert failure_reason(IntegrityError("all 3 responses failed their integrity check")) == (
        "error: all 3 responses failed their integrity check"
    )
    assert failure_reason(ParseError("not STUN")) == "error: not STUN"
    assert failure_reason(TurnError("the allocation is closed")) == (
        "error: the allocation is closed"
    )
    assert failure_reason(OSError(errno.EMSGSIZE, "Message too long")) == (
        "error: [Errno 90] Message too long"
    )
    assert failure_reason(RuntimeError()) == "error: RuntimeError"


def test_every_reason_is_one_line() -> None:
    exc = TurnError("first line\n  second line")
    assert failure_reason(exc) == "error: first line second line"
