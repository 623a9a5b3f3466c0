"""STUN client transactions (RFC 8489 section 6.2), sans-I/O.

A :class:`ClientTransaction` holds one encoded request. It is fed the current time and the
responses that carry its transaction id, and says when it wants to be woken and what to
send. Over UDP the request is sent at 0, RTO, 3 RTO, 7 RTO, ... (Rc = 7 sends, the
interval doubling each time), and the transaction fails Rm x RTO after the last send:
with the default RTO of 500 ms the sends are at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s
and the failure at 39.5 s. Over TCP and TLS the request is sent once and fails after Ti
(39.5 s).
"""

from __future__ import annotations

from .attributes import Attr
from .errors import ErrorResponse, IntegrityError, StunError, TransactionTimeout
from .message import Class, Message, split_type

DEFAULT_RTO = 0.5
DEFAULT_RC = 7
DEFAULT_RM = 16
RELIABLE_TIMEOUT = 39.5

_UNSIGNED_ERRORS_ACTED_ON = frozenset((401, 438))


class ClientTransaction:
    """One request, its retransmissions and its outcome.

    ``integrity_key`` is the key the request was signed with, if any: a success
    response (or an error other than 401 and 438) that does not verify with it is
    discarded as if never received over UDP (RFC 8489 sections 9.1.5 and 9.2.5), and
    fails the transaction over TCP/TLS.

    After :attr:`done`, exactly one of :attr:`response` (a success) or :attr:`error`
    (an :class:`ErrorResponse`, :class:`TransactionTimeout` or :class:`IntegrityError`)
    is set. ``timeout`` cuts the schedule short: the transaction fails then at the latest.
    """

    __slots__ = (
        "_deadline",
        "_discarded",
        "_interval",
        "_key",
        "_method",
        "_next_send",
        "_pending",
        "_sends_left",
        "data",
        "done",
        "error",
        "reliable",
        "response",
        "rtt",
        "start",
        "transaction_id",
        "transmissions",
    )

    def __init__(
        self,
        request: bytes,
        now: float,
        *,
        integrity_key: bytes | None = None,
        reliable: bool = False,
        rto: float = DEFAULT_RTO,
        rc: int = DEFAULT_RC,
        rm: int = DEFAULT_RM,
        reliable_timeout: float = RELIABLE_TIMEOUT,
        timeout: float | None = None,
    ) -> None:
        if len(request) < 20:
            raise ValueError("a STUN request is at least 20 bytes")
        if rto <= 0 or rc < 1 or rm < 1:
            raise ValueError("rto must be positive and rc, rm at least 1")
        self.data = request
        self.transaction_id = request[8:20]
        self._method = split_type((request[0] << 8) | request[1])[0]
        self._key = integrity_key
        self.reliable = reliable
        self.start = now
        self.done = False
        self.response: Message | None = None
        self.error: StunError | None = None
        self.rtt: float | None = None
        self._discarded = 0
        self._pending = True
        self._interval = rto
        if reliable:
            self._sends_left = 0
            self._next_send: float | None = None
            self._deadline = now + reliable_timeout
        else:
            self._sends_left = rc - 1
            self._next_send = now + rto
            self._deadline = now + rto * (2 ** (rc - 1) - 1) + rm * rto
        if timeout is not None:
            self._deadline = min(self._deadline, now + timeout)
        self.transmissions = 1

    @property
    def discarded(self) -> int:
        """Responses dropped because they failed the integrity check."""
        return self._discarded

    @property
    def deadline(self) -> float:
        """When the transaction fails if nothing usable has arrived."""
        return self._deadline

    def poll_transmit(self) -> bytes | None:
        """The request bytes if a (re)transmission is due now, else None."""
        if self._pending and not self.done:
            self._pending = False
            return self.data
        return None

    def poll_timeout(self) -> float | None:
        """The next time :meth:`handle_timeout` must be called, or None when done."""
        if self.done:
            return None
        if self._next_send is not None and self._next_send < self._deadline:
            return self._next_send
        return self._deadline

    def handle_timeout(self, now: float) -> None:
        """Advance the clock: schedule a retransmission or fail at the deadline."""
        if self.done:
            return
        if now >= self._deadline:
            self._fail()
            return
        if self._next_send is not None and now >= self._next_send:
            self._pending = True
            self.transmissions += 1
            self._sends_left -= 1
            self._interval *= 2
            self._next_send = self._next_send + self._interval if self._sends_left else None

    def handle_response(self, message: Message, now: float) -> bool:
        """Offer a received message; True when it was a response to this transaction.

        A response to this transaction that must be discarded (failed integrity) also
        returns True: it was ours, and nothing else should look at it.
        """
        if (
            self.done
            or message.transaction_id != self.transaction_id
            or message.method != self._method
            or message.cls in (Class.REQUEST, Class.INDICATION)
        ):
            return False
        error_code = message.get(Attr.ERROR_CODE) if message.cls == Class.ERROR else None
        if message.cls == Class.ERROR and error_code is None:
            return True  # malformed: an error response must say which error; dropped
        key = self._key
        if (
            key is not None
            and not (error_code is not None and error_code[0] in _UNSIGNED_ERRORS_ACTED_ON)
            and not message.check_integrity(key)
        ):
            self._discard()
            return True
        self.done = True
        self.rtt = now - self.start
        if error_code is None:
            self.response = message
        else:
            self.error = ErrorResponse(error_code[0], error_code[1], message)
        return True

    def cancel(self, error: StunError) -> None:
        """End the transaction now with ``error`` (socket closed, caller gave up, ...)."""
        if not self.done:
            self.done = True
            self.error = error

    def _discard(self) -> None:
        self._discarded += 1
        if self.reliable:
            self.done = True
            self.error = IntegrityError("the response failed its integrity check (wrong password?)")

    def _fail(self) -> None:
        self.done = True
        if self._discarded:
            self.error = IntegrityError(
                f"all {self._discarded} responses failed their integrity check (wrong password?)"
            )
        else:
            elapsed = self._deadline - self.start
            count = self.transmissions
            self.error = TransactionTimeout(
                f"no response after {count} transmission{'s' * (count != 1)} in {elapsed:g} s"
            )
