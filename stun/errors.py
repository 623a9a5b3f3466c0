"""The exceptions raised by the STUN layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Message


REASON_PHRASES: dict[int, str] = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    486: "Allocation Quota Reached",
    487: "Role Conflict",
    500: "Server Error",
    508: "Insufficient Capacity",
}
"""The reason phrases of the error codes of STUN (RFC 8489 section 14.8), TURN
(RFC 8656 section 19) and ICE (487, RFC 8445 section 7.3.1.1); 401 as RFC 5389, coturn
and ICE agents word it (RFC 8489 says "Unauthenticated")."""


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
