"""When not to ask a server for another allocation (RFC 8656 section 7.4), sans-I/O.

* 437 Allocation Mismatch: retry from another local port, at most three ports in all;
  then no allocation on that server for 2 minutes.
* 486 Allocation Quota Reached and 508 Insufficient Capacity: no allocation on that server
  for at least a minute. A 508 to a request with EVEN-PORT or RESERVATION-TOKEN may be
  retried at once without them, so it holds back only requests that carry them.
"""

from __future__ import annotations

from collections.abc import Hashable

from .client import AllocateOptions
from .errors import AllocationError, TurnError

MISMATCH_PORTS = 3
"""Local ports to try an Allocate from when the server keeps answering 437."""
MISMATCH_HOLD = 120.0
QUOTA_HOLD = 60.0


def _special(options: AllocateOptions) -> bool:
    return options.even_port is not None or options.reservation_token is not None


class ServerBackoff:
    """Remembers which servers refused allocations, and until when."""

    def __init__(self) -> None:
        self._holds: dict[Hashable, tuple[float, bool, str]] = {}

    def check(self, server: Hashable, now: float, options: AllocateOptions) -> None:
        """Raise :class:`AllocationError` if an Allocate to ``server`` must wait."""
        hold = self._holds.get(server)
        if hold is None:
            return
        until, only_special, reason = hold
        if now >= until:
            del self._holds[server]
            return
        if only_special and not _special(options):
            return
        raise AllocationError(
            f"not asking {server} for an allocation for another {until - now:.0f} s: {reason}"
        )

    def record(
        self, server: Hashable, error: TurnError, now: float, options: AllocateOptions
    ) -> None:
        """Note an Allocate failure; 437 is recorded only once every port was tried."""
        if error.code == 437:
            self._holds[server] = (now + MISMATCH_HOLD, False, f"{MISMATCH_PORTS} ports got 437")
        elif error.code == 486:
            self._holds[server] = (now + QUOTA_HOLD, False, "486 Allocation Quota Reached")
        elif error.code == 508:
            self._holds[server] = (now + QUOTA_HOLD, _special(options), "508 Insufficient Capacity")
