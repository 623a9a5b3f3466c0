"""The exceptions raised by the STUN layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Message


class StunError(Exception):
    """Base class of every error the ``stun`` package raises on purpose."""


class ParseError(StunError, ValueError):
    """Bytes that are not a well-formed STUN message (or a well-formed attribute value)."""


class IntegrityError(StunError):
    """A message failed its MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT check."""


class TransactionTimeout(StunError, TimeoutError):
    """A request got no usable response before the transaction's deadline."""


class ResolutionError(StunError, OSError):
    """A server's host name could not be resolved."""


class ErrorResponse(StunError):
    """The peer answered a request with an error response (ERROR-CODE)."""

    def __init__(self, code: int, reason: str, response: Message | None = None) -> None:
        reason = reason.rstrip("\0")  # coturn pads its reason phrases with NUL bytes
        super().__init__(f"{code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.response = response
