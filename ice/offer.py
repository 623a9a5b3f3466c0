"""The ``ice connect`` offer: all a peer needs to connect to us, on one line.

An offer line is the version token, a space, and ``;``-separated items::

    icestack1 ice-ufrag:Jd8q;ice-pwd:4Rp...;ice-options:ice2;tiebreaker:8815...;mode:chat;
    candidate:1 1 udp 2130706175 192.0.2.7 50000 typ host;...;end-of-candidates

(one line; wrapped here). Every item but ``tiebreaker`` and ``mode`` is the value of an
SDP attribute (RFC 8839: ``ice-ufrag``, ``ice-pwd``, ``ice-options``, ``ice-pacing`` in
milliseconds when Ta is not 50 ms, ``candidate``, ``end-of-candidates``), so ``a=``
before each item makes SDP of it. Why text rather than base64 of JSON: it is as compact
(no base64 growth), a person can read which addresses they are about to share, and no
SDP attribute value contains ``;``. The version token comes first so that a later format
is told apart at once; unknown items are skipped, so version 1 can grow items that older
readers ignore.

``tiebreaker`` is the agent's ICE tie-breaker: the higher one controls
(:func:`choose_role`; :func:`tie_breaker` makes a forced role win). ``mode`` says what
the side does once connected (``chat``, ``send`` or ``receive`` a file), so that a
mismatch is reported before connecting (:func:`check_modes`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Literal, get_args

from .agent import DEFAULT_TA
from .candidate import Candidate, is_credential
from .errors import CandidateError, IceError

VERSION = "icestack1"
MAX_CANDIDATES = 100
"""More candidates than RFC 8445's pair limit would be of no use."""

Role = Literal["auto", "controlling", "controlled"]
Mode = Literal["chat", "send", "receive"]

_END = "end-of-candidates"
_RANDOM = random.SystemRandom()
_QUARTER = 2**62
_TIE_BREAKER_RANGES: dict[Role, tuple[int, int]] = {
    "controlled": (0, _QUARTER),
    "auto": (_QUARTER, 2 * _QUARTER),
    "controlling": (3 * _QUARTER, _QUARTER),
}
"""(lowest, how many) tie-breakers per role."""


class OfferError(IceError, ValueError):
    """A line that is not a well-formed offer."""


@dataclass(frozen=True, slots=True)
class Offer:
    """One side's ICE credentials, tie-breaker, plan and candidates."""

    ufrag: str
    pwd: str
    tie_breaker: int
    candidates: tuple[Candidate, ...]
    mode: Mode = "chat"
    """What the side will do once connected: chat, send a file or receive one."""
    ta: float = DEFAULT_TA
    """Seconds; signalled as ``ice-pacing`` only when it is not 50 ms."""
    complete: bool = True
    """Whether the line ends with ``end-of-candidates`` (no more candidates will come)."""

    def encode(self) -> str:
        """The offer line (no line ending)."""
        items = [f"ice-ufrag:{self.ufrag}", f"ice-pwd:{self.pwd}", "ice-options:ice2"]
        if round(self.ta * 1000) != round(DEFAULT_TA * 1000):
            items.append(f"ice-pacing:{round(self.ta * 1000)}")
        items += [f"tiebreaker:{self.tie_breaker}", f"mode:{self.mode}"]
        for candidate in self.candidates:
            sdp = candidate.to_sdp()
            if ";" in sdp:
                raise OfferError(f"a candidate with ';' cannot be offered: {sdp!r}")
            items.append(sdp)
        if self.complete:
            items.append(_END)
        return f"{VERSION} {';'.join(items)}"

    @classmethod
    def parse(cls, text: str) -> Offer:
        """Read an offer line, or the ``{"offer": LINE}`` object ``--json`` prints.

        Raises :class:`OfferError` saying what is wrong, in one line.
        """
        line = _unwrap(text.strip())
        version, _, body = line.partition(" ")
        if version != VERSION:
            raise OfferError(_not_an_offer(version, line))
        fields: dict[str, str] = {}
        candidates: list[Candidate] = []
        complete = False
        for item in filter(None, (part.strip() for part in body.split(";"))):
            name, _, value = item.partition(":")
            if name == "candidate":
                candidates.append(_candidate(item, len(candidates) + 1))
            elif item == _END:
                complete = True
            else:
                fields.setdefault(name, value)
        if len(candidates) > MAX_CANDIDATES:
            raise OfferError(f"the offer has {len(candidates)} candidates, more than 100")
        return cls(
            ufrag=_credential(fields, "ice-ufrag", 4),
            pwd=_credential(fields, "ice-pwd", 22),
            tie_breaker=_tie_breaker(fields.get("tiebreaker")),
            candidates=tuple(candidates),
            mode=_choice(fields, "mode", Mode),
            ta=_pacing(fields.get("ice-pacing")),
            complete=complete,
        )


def tie_breaker(role: Role) -> int:
    """A random ICE tie-breaker in the quarter of the range that ``role`` owns: the top
    one for ``controlling``, the bottom one for ``controlled``, the middle half for
    ``auto``. The higher tie-breaker controls, by :func:`choose_role` and by ICE's own
    role-conflict rule (RFC 8445 section 7.3.1.1) alike, so a forced role wins both ways
    - also when a peer's check arrives before its line, while our role is still a guess."""
    low, span = _TIE_BREAKER_RANGES[role]
    return low + _RANDOM.randrange(span)


def choose_role(ours: Offer, theirs: Offer) -> bool:
    """Whether we control: the side with the higher tie-breaker does (see
    :func:`tie_breaker`); two sides that both forced the same role are settled the same
    way. Equal tie-breakers (a 2**-62 chance) fall back to comparing the credentials."""
    if (ours.ufrag, ours.pwd) == (theirs.ufrag, theirs.pwd):
        raise OfferError("that is our own offer line, not the peer's")
    if ours.tie_breaker != theirs.tie_breaker:
        return ours.tie_breaker > theirs.tie_breaker
    return (ours.ufrag, ours.pwd) > (theirs.ufrag, theirs.pwd)


_MISMATCHES: dict[tuple[Mode, Mode], str] = {
    ("send", "send"): "both sides send a file: run the other side with --receive FILE",
    ("send", "chat"): "the peer is not receiving a file: run it with --receive FILE",
    ("receive", "receive"): "both sides wait for a file: run the other side with --send FILE",
    ("receive", "chat"): "the peer is not sending a file: run it with --send FILE",
    ("chat", "send"): "the peer sends a file: run this side with --receive FILE",
    ("chat", "receive"): "the peer waits for a file: run this side with --send FILE",
}


def check_modes(ours: Offer, theirs: Offer) -> None:
    """OfferError unless both chat, or one sends a file and the other receives it."""
    mismatch = _MISMATCHES.get((ours.mode, theirs.mode))
    if mismatch is not None:
        raise OfferError(mismatch)


def _unwrap(line: str) -> str:
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        raise OfferError("the line starts with '{' but is not JSON") from None
    offer = record.get("offer") if isinstance(record, dict) else None
    if not isinstance(offer, str):
        raise OfferError('a JSON line must be an object with an "offer" string')
    return offer.strip()


def _not_an_offer(version: str, line: str) -> str:
    if version.startswith("icestack") and version[8:].isdigit():
        return f"the offer is format {version}; this icestack reads {VERSION} only"
    preview = line if len(line) <= 40 else line[:37] + "..."
    return f"not an offer line (it should start with '{VERSION} '): {preview!r}"


def _candidate(item: str, number: int) -> Candidate:
    try:
        return Candidate.from_sdp(item)
    except CandidateError as exc:
        raise OfferError(f"candidate {number} of the offer: {exc}") from None


def _credential(fields: dict[str, str], name: str, low: int) -> str:
    value = fields.get(name)
    if value is None:
        raise OfferError(f"the offer has no {name}")
    if not is_credential(value, low):
        raise OfferError(f"{name} {value!r} is not {low} to 256 of A-Z a-z 0-9 + /")
    return value


def _tie_breaker(value: str | None) -> int:
    if value is None or not (value.isascii() and value.isdigit() and int(value) < 2**64):
        raise OfferError(f"tiebreaker {value!r} is not a number below 2**64")
    return int(value)


def _choice(fields: dict[str, str], name: str, choices: Any) -> Any:
    """The field's value among the Literal ``choices``; the first when it is absent."""
    allowed: tuple[str, ...] = get_args(choices)
    value = fields.get(name, allowed[0])
    if value not in allowed:
        raise OfferError(f"{name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _pacing(value: str | None) -> float:
    if value is None:
        return DEFAULT_TA
    if not (value.isascii() and value.isdigit() and 0 < int(value) <= 10_000):
        raise OfferError(f"ice-pacing {value!r} is not a number of milliseconds (1-10000)")
    return int(value) / 1000
