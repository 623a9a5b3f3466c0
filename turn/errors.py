"""The exceptions raised by the TURN layer.

Every one is a :class:`stun.StunError`; those caused by a server's error response carry
its ``code`` and ``reason`` (``code`` is None for failures without one, such as a
timeout).
"""

from __future__ import annotations

from stun import StunError, TransactionTimeout
from stun.attributes import Address


class TurnError(StunError):
    """Base class of the errors of the ``turn`` package."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class AuthenticationError(TurnError):
    """The server refused our credentials (or their negotiation failed) in ``realm``."""

    def __init__(
        self, message: str, realm: str | None, code: int | None = None, reason: str = ""
    ) -> None:
        super().__init__(message, code, reason)
        self.realm = realm


class AllocationError(TurnError):
    """The server did not grant the allocation (Allocate failed)."""


class AlternateServer(AllocationError):
    """The server redirected us (300 Try Alternate) to ``server``.

    ``domain`` is the ALTERNATE-DOMAIN a TLS client must check the new server's
    certificate against (None when the server sent none: keep the original name).
    """

    def __init__(self, message: str, server: Address, domain: str | None) -> None:
        super().__init__(message, 300, "Try Alternate")
        self.server = server
        self.domain = domain


class AllocationLostError(TurnError):
    """An allocation that existed is gone (refresh failed, server restarted, expired)."""


class PeerPermissionError(TurnError):
    """The server would not install a permission for ``peer`` (an IP address)."""

    def __init__(self, message: str, peer: str, code: int | None, reason: str = "") -> None:
        super().__init__(message, code, reason)
        self.peer = peer


class TurnTimeout(TurnError, TransactionTimeout):
    """The server did not answer a TURN request in time."""
