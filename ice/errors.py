"""The exceptions raised by the ICE layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checklist import PairReport


class IceError(Exception):
    """Base class of every error the ``ice`` package raises on purpose."""


class CandidateError(IceError, ValueError):
    """A candidate (or its SDP ``candidate:`` attribute) that is not well formed."""


class ConnectionFailed(IceError):
    """ICE ended without a selected pair for every component.

    ``pairs`` lists every candidate pair that was checked and how it ended.
    """

    def __init__(self, reason: str, pairs: Sequence[PairReport] = ()) -> None:
        self.reason = reason
        self.pairs = tuple(pairs)
        lines = [reason]
        lines.extend(f"  {report}" for report in self.pairs)
        if not self.pairs:
            lines.append("  (no candidate pair was formed)")
        super().__init__("\n".join(lines))
