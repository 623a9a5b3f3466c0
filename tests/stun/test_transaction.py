"""Client transactions on a virtual clock: exact send times, timeouts and outcomes."""

from __future__ import annotations

import pytest

import stun
from stun.transaction import ClientTransaction

KEY = b"secret-key"


def _request() -> stun.Message:
    return stun.Message(stun.Method.BINDING, stun.Class.REQUEST, bytes(range(12)))


def _run(tx: ClientTransaction, until: float) -> list[float]:
    """Drive the transaction with a virtual clock; return the times it sent at."""
    sent: list[float] = []
    now = tx.start
    while True:
        if tx.poll_transmit() is not None:
            sent.append(now)
        deadline = tx.poll_timeout()
        if deadline is None or deadline > until:
            return sent
        now = deadline
        tx.handle_timeout(now)


def _response(cls: stun.Class = stun.Class.SUCCESS, **kw: object) -> stun.Message:
    attrs: list[tuple[int, object]] = [(stun.Attr.XOR_MAPPED_ADDRESS, ("192.0.2.1", 4000))]
    if "error" in kw:
        attrs = [(stun.Attr.ERROR_CODE, kw["error"])]
    return stun.Message(stun.Method.BINDING, cls, bytes(range(12)), attrs)


def _signed(message: stun.Message, key: bytes | None) -> stun.Message:
    return stun.decode(message.encode(key, fingerprint=True))


def test_udp_sends_at_rfc_times_and_fails_at_39_5_seconds() -> None:
    tx = ClientTransaction(_request().encode(), now=100.0)
    sent = _run(tx, until=1000.0)
    assert [t - 100.0 for t in sent] == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert tx.done
    assert isinstance(tx.error, stun.TransactionTimeout)
    assert tx.poll_timeout() is None
    assert "7 transmissions" in str(tx.error)


def test_timeout_is_at_39_5_seconds_exactly() -> None:
    tx = ClientTransaction(_request().encode(), now=0.0)
    _run(tx, until=39.4999)
    assert not tx.done
    assert tx.poll_timeout() == 39.5
    tx.handle_timeout(39.5)
    assert isinstance(tx.error, stun.TransactionTimeout)


def test_configurable_rto_scales_the_schedule() -> None:
    tx = ClientTransaction(_request().encode(), now=0.0, rto=0.1, rc=3, rm=4)
    assert _run(tx, until=100.0) == pytest.approx([0, 0.1, 0.3])
    assert tx.error is not None
    assert tx.deadline == pytest.approx(0.3 + 0.4)


def test_reliable_transport_sends_once_and_fails_at_39_5() -> None:
    tx = ClientTransaction(_request().encode(), now=5.0, reliable=True)
    assert _run(tx, until=1000.0) == [5.0]
    assert isinstance(tx.error, stun.TransactionTimeout)
    assert tx.deadline == 44.5


def test_success_response_completes_with_rtt() -> None:
    tx = ClientTransaction(_request().encode(), now=0.0)
    tx.poll_transmit()
    assert tx.handle_response(_signed(_response(), None), now=0.25)
    assert tx.done and tx.error is None
    assert tx.response is not None
    assert tx.response.get(stun.Attr.XOR_MAPPED_ADDRESS) == ("192.0.2.1", 4000)
    assert tx.rtt == 0.25
    assert tx.poll_transmit() is None
    assert tx.poll_timeout() is None


def test_other_transaction_id_or_method_is_not_ours() -> None:
    tx = ClientTransaction(_request().encode(), now=0.0)
    other_tid = stun.Message(stun.Method.BINDING, stun.Class.SUCCESS, b"x" * 12)
    other_method = stun.Message(stun.Method.ALLOCATE, stun.Class.SUCCESS, bytes(range(12)))
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, bytes(range(12)))
    for message in (other_tid, other_method, request):
        assert not tx.handle_response(_signed(message, None), now=0.1)
    assert not tx.done


def test_error_response_surfaces_code_and_reason() -> None:
    tx = ClientTransaction(_request().encode(), now=0.0)
    assert tx.handle_response(_signed(_response(stun.Class.ERROR, error=(400, "Bad")), None), 0.1)
    assert isinstance(tx.error, stun.ErrorResponse)
    assert (tx.error.code, tx.error.reason) == (400, "Bad")
    assert tx.error.response is not None


def test_unsigned_success_is_ignored_when_a_key_is_known_and_retransmission_goes_on() -> None:
    tx = ClientTransaction(_request().encode(KEY), now=0.0, integrity_key=KEY)
    tx.poll_transmit()
    assert tx.handle_response(_signed(_response(), None), now=0.1)
    assert tx.handle_response(_signed(_response(), b"wrong key"), now=0.2)
    assert not tx.done
    assert _run(tx, until=1000.0) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert isinstance(tx.error, stun.IntegrityError)
    assert "2 responses" in str(tx.error)


def test_signed_success_is_accepted() -> None:
    tx = ClientTransaction(_request().encode(KEY), now=0.0, integrity_key=KEY)
    assert tx.handle_response(_signed(_response(), KEY), now=0.1)
    assert tx.response is not None


@pytest.mark.parametrize("code", [401, 438])
def test_unsigned_401_and_438_are_acted_on(code: int) -> None:
    tx = ClientTransaction(_request().encode(KEY), now=0.0, integrity_key=KEY)
    assert tx.handle_response(_signed(_response(stun.Class.ERROR, error=(code, "x")), None), 0.1)
    assert isinstance(tx.error, stun.ErrorResponse)
    assert tx.error.code == code


def test_unsigned_other_error_is_ignored_when_a_key_is_known() -> None:
    tx = ClientTransaction(_request().encode(KEY), now=0.0, integrity_key=KEY)
    assert tx.handle_response(_signed(_response(stun.Class.ERROR, error=(403, "No")), None), 0.1)
    assert not tx.done


def test_reliable_integrity_failure_fails_at_once() -> None:
    tx = ClientTransaction(_request().encode(KEY), now=0.0, integrity_key=KEY, reliable=True)
    assert tx.handle_response(_signed(_response(), b"wrong"), now=0.1)
    assert isinstance(tx.error, stun.IntegrityError)


def test_error_response_without_error_code_is_dropped() -> None:
    tx = ClientTransaction(_request().encode(), now=0.0)
    bare_error = stun.Message(stun.Method.BINDING, stun.Class.ERROR, bytes(range(12)))
    assert tx.handle_response(_signed(bare_error, None), now=0.1)
    assert not tx.done


def test_cancel_ends_the_transaction() -> None:
    tx = ClientTransaction(_request().encode(), now=0.0)
    tx.cancel(stun.StunError("closed"))
    assert tx.done and str(tx.error) == "closed"
    assert tx.poll_timeout() is None


def test_error_reasons_lose_the_nul_padding_coturn_adds() -> None:
    error = stun.ErrorResponse(438, "Stale nonce\x00")
    assert error.reason == "Stale nonce"
    assert str(error) == "438 Stale nonce"
