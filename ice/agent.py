"""The ICE agent (RFC 8445), sans-I/O: candidates and datagrams in, checks and events out.

An :class:`Agent` owns no socket and no clock. The shell feeds it every STUN datagram
that arrives on a local candidate's base (``handle_datagram``) and the current time
(``handle_timeout``), sends what ``poll_transmits`` returns from ``Transmit.local`` to
``Transmit.remote``, and wakes it at ``poll_timeout``: one timer per agent.

The scheduler adds no wait of its own. A response is acted on when it arrives; a check
that becomes due (triggered, unfrozen, nominating) leaves at the first instant that the
pacing allows - Ta after this agent's previous new transaction and, when the
process-wide rule is on, 5 ms after anyone's - and ``poll_timeout`` names that instant.
"""

from __future__ import annotations

import base64
import heapq
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from stun.attributes import MAGIC_COOKIE, Attr, encode_attribute
from stun.auth import short_term_key
from stun.errors import ErrorResponse, ParseError
from stun.message import Class, Message, Method, decode, encode_body
from stun.server import Transmit as Transmit  # re-exported: ice.Transmit
from stun.transaction import ClientTransaction

from .candidate import (
    TYPE_PREFERENCE,
    Address,
    Candidate,
    CandidateType,
    is_credential,
    make_foundation,
)
from .checklist import (
    FAILED,
    FROZEN,
    IN_PROGRESS,
    SUCCEEDED,
    WAITING,
    CandidatePair,
    CheckList,
    PairKey,
    PairState,
)
from .errors import ConnectionFailed, IceError
from .events import (
    CandidateLearned,
    ConnectionState,
    ConnectionStateChanged,
    ConsentExpired,
    Event,
    PairNominated,
    PairStateChanged,
    Restarted,
    RoleChanged,
    SelectedPairChanged,
)
from .pacer import GLOBAL_PACER, Pacer

if TYPE_CHECKING:
    from .multistream import MultiStreamAgent

DEFAULT_TA = 0.050
"""Ta, the pacing of new transactions (RFC 8445 section 14.2)."""
MIN_RTO = 0.5
"""The floor of a check's retransmission timeout (RFC 8445 section 14.3)."""
DEFAULT_ICE_TIMEOUT = 10.0
CONSENT_INTERVAL = 5.0
"""The mean time between consent checks on a selected pair (RFC 7675 section 5.1)."""
CONSENT_MIN_INTERVAL = 4.0
DEFAULT_CONSENT_TIMEOUT = 30.0
DEFAULT_DISCONNECT_TIMEOUT = 2 * CONSENT_INTERVAL
"""No consent answer for this long makes the agent DISCONNECTED (until one comes)."""
KEEPALIVE_INTERVAL = 15.0
"""Tr (RFC 8445 section 11): the default, and the least allowed, time without a packet
on a selected pair before a keepalive goes out on it."""
DEFAULT_NOMINATION_WAIT = 1.0
PEER_REFLEXIVE_LIMIT = 8
"""Peer-reflexive remote candidates learned at most per local base (also before the
remote credentials are known): room for a peer with several interfaces and relays
whose candidates have not arrived yet. Between two NATs that map every check to a new
port and let the peer's new ports in, each check would otherwise teach the other side
a new candidate and a triggered check, forever, starving the ordinary checks of every
other pair; with 8 that exchange ends about 0.4 s in (at Ta 50 ms)."""
PRFLX_PREFERENCE = TYPE_PREFERENCE[CandidateType.PRFLX]

Nomination = Literal["regular", "aggressive"]

_UFRAG_BYTES = 6  # 48 random bits, 8 ice-chars (at least 24 bits required; a multiple of 3)
_PWD_BYTES = 18  # 144 random bits, 24 ice-chars (at least 128 bits required)
_COOKIE = MAGIC_COOKIE.to_bytes(4, "big")
_SYSTEM_RANDOM = random.SystemRandom()  # one for all agents: each instance costs 2.5 KiB

_BINDING = Method.BINDING
_REQUEST = Class.REQUEST
_SUCCESS = Class.SUCCESS
_ERROR = Class.ERROR
_INDICATION = Class.INDICATION
_USERNAME = Attr.USERNAME
_PRIORITY = Attr.PRIORITY
_USE_CANDIDATE = Attr.USE_CANDIDATE
_CONTROLLING = Attr.ICE_CONTROLLING
_CONTROLLED = Attr.ICE_CONTROLLED
_XOR_MAPPED = Attr.XOR_MAPPED_ADDRESS
_ERROR_CODE = Attr.ERROR_CODE
_UNKNOWN_ATTRIBUTES = Attr.UNKNOWN_ATTRIBUTES


def is_stun(data: bytes) -> bool:
    """Whether a datagram is STUN rather than application data: first byte 0-3, a
    length field that matches the datagram, and the magic cookie (RFC 7983 style)."""
    return (
        len(data) >= 20
        and data[0] < 4
        and (data[2] << 8 | data[3]) == len(data) - 20
        and data[4:8] == _COOKIE
    )


@dataclass(slots=True)
class AgentStats:
    """Counters of what the agent sent, answered and dropped."""

    checks_sent: int = 0
    consent_checks_sent: int = 0
    retransmissions: int = 0
    requests_received: int = 0
    responses_sent: int = 0
    errors_sent: int = 0
    indications_received: int = 0
    keepalives_sent: int = 0
    dropped_malformed: int = 0
    dropped_unauthenticated: int = 0
    dropped_unmatched: int = 0
    dropped_unknown_local: int = 0


class _Check:
    """One connectivity-check transaction in flight."""

    __slots__ = ("cancelled", "controlling", "pair", "priority", "transaction", "use_candidate")

    def __init__(
        self,
        pair: CandidatePair,
        transaction: ClientTransaction,
        use_candidate: bool,
        controlling: bool,
        priority: int,
    ) -> None:
        self.pair = pair
        self.transaction = transaction
        self.use_candidate = use_candidate
        self.controlling = controlling
        self.priority = priority
        self.cancelled = False


class _Component:
    """What the agent keeps per component."""

    __slots__ = (
        "best",
        "consent_due",
        "consent_until",
        "first_valid_at",
        "heard_at",
        "nominating",
    )

    def __init__(self) -> None:
        self.first_valid_at: float | None = None
        self.best: CandidatePair | None = None
        """The Succeeded pair whose valid pair has the highest priority."""
        self.nominating: CandidatePair | None = None
        self.consent_due: float | None = None
        self.consent_until: float | None = None
        self.heard_at: float | None = None
        """When the latest consent answer on the selected pair arrived."""


class _Generation:
    """The credentials of the checks that selected the pairs in use, kept through an ICE
    restart until new checks have selected a pair for every component: consent on the
    old pairs goes on under them, and the peer's consent requests under them are
    answered."""

    __slots__ = ("bodies", "local_key", "local_ufrag", "remote_key", "remote_ufrag", "selected")

    def __init__(self, agent: Agent) -> None:
        assert agent._remote_key is not None and agent.remote_ufrag is not None
        self.local_ufrag = agent.local_ufrag
        self.local_key = agent._local_key
        self.remote_ufrag = agent.remote_ufrag
        self.remote_key = agent._remote_key
        self.bodies = agent._bodies
        self.selected = dict(agent.selected)

    def owns(self, pair: CandidatePair) -> bool:
        """Whether ``pair`` is a selected pair of this generation."""
        return self.selected.get(pair.component) is pair


def _check_priority(pair: CandidatePair) -> int:
    """The PRIORITY of a check on ``pair``: what a peer-reflexive candidate of its local
    candidate would get (RFC 8445 section 7.1.1)."""
    return (PRFLX_PREFERENCE << 24) | (pair.local.priority & 0xFFFFFF)


def _pairable(remote: Candidate) -> bool:
    """Whether a remote candidate can be checked: UDP, an IP address (not an mDNS name
    yet to be resolved) and a port."""
    return remote.protocol == "udp" and not remote.is_mdns and remote.port != 0


def _binding_success(transaction_id: bytes, remote: Address, key: bytes) -> bytes:
    """A signed, fingerprinted Binding success response that maps ``remote``."""
    return encode_body(
        _BINDING,
        _SUCCESS,
        transaction_id,
        encode_attribute(_XOR_MAPPED, remote, transaction_id),
        key,
        True,
    )


def _random_credentials(rng: random.Random) -> tuple[str, str]:
    """A new ufrag and pwd from one draw of random bytes, as base64, whose alphabet is
    exactly the ice-chars (A-Z a-z 0-9 + /)."""
    chars = base64.b64encode(rng.randbytes(_UFRAG_BYTES + _PWD_BYTES)).decode("ascii")
    split = _UFRAG_BYTES * 4 // 3
    return chars[:split], chars[split:]


def _check_tie_breaker(value: int | None, rng: random.Random) -> int:
    """``value`` if it is a 64-bit unsigned number; a random one for None."""
    if value is None:
        return rng.getrandbits(64)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise ValueError(f"tie_breaker must be an int from 0 to 2**64 - 1, not {value!r}")
    return value


def _check_credential(value: str, what: str, low: int) -> str:
    if not is_credential(value, low):
        raise IceError(f"{what} must be {low} to 256 ice-chars (A-Z a-z 0-9 + /), got {value!r}")
    return value


class Agent:
    """One ICE agent: one data stream of ``components`` components.

    ``ta`` is the pacing this agent proposes (signal it with ``a=ice-pacing``); with
    ``negotiate_ta`` (the default) the higher of ours and the peer's proposal is used,
    a peer that proposed nothing counting as 50 ms. ``negotiate_ta=False`` uses ``ta``
    as given: a deviation for controlled networks and test rigs, as are
    ``nomination="aggressive"`` (USE-CANDIDATE on every check, RFC 5245 style) and
    ``pacer=None`` (no process-wide 5 ms rule).

    The agent fails with :class:`~ice.ConnectionFailed` when there is no selected pair
    for every component ``ice_timeout`` seconds after :meth:`start`; no check list is
    declared failed before that, even when every pair has failed (the PAC timer of
    RFC 8863). The controlling agent with regular nomination nominates the best valid
    pair once no higher-priority pair is still pending, or ``nomination_wait`` seconds
    after the first valid pair, whichever is first.

    Once connected, consent to send is checked on every selected pair (RFC 7675): one
    Binding request every 5 s x uniform(0.8, 1.2), each sent once; consent holds while
    an authenticated answer to a request sent within the last ``consent_timeout``
    seconds has arrived, late answers included. Without it the agent fails with
    :class:`~ice.ConnectionFailed`; without an answer for ``disconnect_timeout`` it is
    DISCONNECTED until the next answer. ``consent=False`` turns consent checks off
    (for peers that cannot answer them); then a Binding indication keeps each selected
    pair's NAT bindings alive when nothing was sent on it for ``keepalive_interval``
    (Tr, RFC 8445 section 11). With consent on, every selected pair carries a request at
    least every 6 s, less than Tr can be, so no keepalive is ever due.

    The state is COMPLETED once it is CONNECTED, both sides have signalled their last
    candidate (``add_local_candidate(None)``, ``add_remote_candidate(None)``) and no
    check is left in flight or queued.

    :meth:`restart` is an ICE restart (RFC 8445 section 9): new credentials and a new
    check list, the roles kept; the peer's restart is detected when
    :meth:`set_remote_credentials` brings changed credentials after :meth:`start`, and
    reported with a :class:`~ice.Restarted` event (signal our new credentials then).
    Either way :meth:`start` begins the new checks. Until they have selected a pair for
    every component, the pairs selected before keep carrying data and consent under the
    old credentials; the peer's consent requests under them are answered.

    ``lite=True`` makes this an ICE-lite agent (RFC 8445 sections 2.5 and 6.1.1): host
    candidates only; it answers checks and takes the pair of a check with USE-CANDIDATE
    as selected, but sends no check, consent check included (a Binding indication keeps
    the selected pair alive instead). Against a full peer it is controlled whatever
    ``controlling`` says; against a lite peer (``set_remote_credentials(lite=True)``)
    ``controlling`` names the initiator, and both sides select, without checks, the pair
    of the peer's highest-priority candidate and ours of its address family, per
    component. A full agent whose peer is lite takes the controlling role.

    ``tie_breaker`` (0 to 2**64 - 1, random by default) settles role conflicts
    (RFC 8445 section 7.3.1.1): the higher one keeps the controlling role.

    Resources are bounded: at most ``max_pairs`` pairs, one check in flight per pair
    (plus cancelled ones waiting out their last answer), ``PEER_REFLEXIVE_LIMIT``
    learned candidates per local base, and consent transactions for the last
    ``consent_timeout`` seconds only.
    """

    __slots__ = (
        "_bodies",
        "_checking",
        "_checks",
        "_components",
        "_consent",
        "_consenting",
        "_deadline",
        "_events",
        "_group",
        "_keepalive_due",
        "_local_by_address",
        "_local_by_base",
        "_local_key",
        "_negotiate_ta",
        "_next_slot",
        "_ordinary",
        "_pacer",
        "_pair_checks",
        "_previous",
        "_prflx_by_base",
        "_prflx_count",
        "_remote_by_address",
        "_remote_key",
        "_resume_state",
        "_rng",
        "_select_due",
        "_started_at",
        "_succeeded_foundations",
        "_timer_seq",
        "_timers",
        "_transmits",
        "_username",
        "aggressive",
        "checklist",
        "components",
        "consent",
        "consent_timeout",
        "controlling",
        "disconnect_timeout",
        "error",
        "ice_timeout",
        "keepalive_interval",
        "lite",
        "local_candidates",
        "local_end_of_candidates",
        "local_pwd",
        "local_ufrag",
        "nomination_wait",
        "proposed_ta",
        "remote_candidates",
        "remote_end_of_candidates",
        "remote_lite",
        "remote_pwd",
        "remote_ufrag",
        "selected",
        "state",
        "stats",
        "ta",
        "tie_breaker",
        "valid_pairs",
    )

    def __init__(
        self,
        controlling: bool,
        *,
        components: int = 1,
        ta: float = DEFAULT_TA,
        negotiate_ta: bool = True,
        nomination: Nomination = "regular",
        pacer: Pacer | None = GLOBAL_PACER,
        ice_timeout: float = DEFAULT_ICE_TIMEOUT,
        nomination_wait: float = DEFAULT_NOMINATION_WAIT,
        consent_timeout: float = DEFAULT_CONSENT_TIMEOUT,
        consent: bool = True,
        disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        max_pairs: int = 100,
        lite: bool = False,
        local_ufrag: str | None = None,
        local_pwd: str | None = None,
        tie_breaker: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= components <= 256:
            raise ValueError("components must be 1 to 256")
        if ta <= 0:
            raise ValueError("ta must be positive")
        if nomination not in ("regular", "aggressive"):
            raise ValueError(f"nomination must be 'regular' or 'aggressive', not {nomination!r}")
        if ice_timeout <= 0 or nomination_wait < 0 or consent_timeout <= 0:
            raise ValueError(
                "ice_timeout and consent_timeout must be positive, nomination_wait not negative"
            )
        if disconnect_timeout <= 0:
            raise ValueError("disconnect_timeout must be positive")
        if keepalive_interval < KEEPALIVE_INTERVAL:
            raise ValueError(
                f"keepalive_interval must be at least {KEEPALIVE_INTERVAL:g} s (RFC 8445 Tr)"
            )
        self._rng = rng if rng is not None else _SYSTEM_RANDOM
        rng = self._rng
        self.controlling = controlling
        self.components = components
        self.proposed_ta = ta
        self._negotiate_ta = negotiate_ta
        self.ta = ta if not negotiate_ta else max(ta, DEFAULT_TA)
        self.aggressive = nomination == "aggressive"
        self._pacer = pacer
        self.ice_timeout = ice_timeout
        self.nomination_wait = nomination_wait
        self.consent_timeout = consent_timeout
        self.consent = consent and not lite
        self.disconnect_timeout = disconnect_timeout
        self.keepalive_interval = keepalive_interval
        self.lite = lite
        self.remote_lite = False
        self._previous: _Generation | None = None
        self._select_due = False
        self._group: MultiStreamAgent | None = None
        self.tie_breaker = _check_tie_breaker(tie_breaker, rng)
        ufrag, pwd = _random_credentials(rng)
        self.local_ufrag = (
            ufrag if local_ufrag is None else _check_credential(local_ufrag, "the ufrag", 4)
        )
        self.local_pwd = local_pwd = (
            pwd if local_pwd is None else _check_credential(local_pwd, "the pwd", 22)
        )
        self._local_key = short_term_key(local_pwd)
        self.remote_ufrag: str | None = None
        self.remote_pwd: str | None = None
        self._remote_key: bytes | None = None
        self._username = ""
        self._bodies: dict[tuple[int, bool, bool], bytes] = {}

        self.local_candidates: list[Candidate] = []
        self.remote_candidates: list[Candidate] = []
        self._local_by_address: dict[tuple[int, Address], Candidate] = {}
        self._local_by_base: dict[Address, Candidate] = {}
        self._remote_by_address: dict[tuple[int, Address], Candidate] = {}
        self._prflx_count = 0
        self._prflx_by_base: dict[Address, int] = {}
        self.remote_end_of_candidates = False
        self.local_end_of_candidates = False

        self.checklist = CheckList(max_pairs)
        self.valid_pairs: dict[PairKey, CandidatePair] = {}
        """Valid pairs by (local base, remote address): the data path accepts datagrams
        from these."""
        self.selected: dict[int, CandidatePair] = {}
        """The selected pair of each component that has one."""
        self._succeeded_foundations: set[str] = set()
        self._checks: dict[bytes, _Check] = {}
        self._pair_checks: dict[PairKey, _Check] = {}
        self._timers: list[tuple[float, int, _Check]] = []
        self._timer_seq = 0
        self._components = [_Component() for _ in range(components)]
        self._consent: dict[bytes, tuple[CandidatePair, float, bytes]] = {}
        self._consenting = False
        self._keepalive_due: float | None = None
        self._resume_state = ConnectionState.CONNECTED  # what DISCONNECTED returns to

        self.state = ConnectionState.NEW
        self.error: ConnectionFailed | None = None
        self.stats = AgentStats()
        self._started_at: float | None = None
        self._deadline: float | None = None
        self._checking = False
        self._ordinary = False
        self._next_slot = float("-inf")
        self._transmits: list[Transmit] = []
        self._events: list[Event] = []  # a list: a deque costs 600 bytes per agent

    # -- configuration ---------------------------------------------------------------------

    def set_remote_credentials(
        self, ufrag: str, pwd: str, *, ta: float | None = None, lite: bool = False
    ) -> None:
        """The peer's ufrag and pwd, the Ta it proposed (``a=ice-pacing``, None when it
        proposed nothing) and whether it is an ICE-lite agent (``a=ice-lite``).

        Credentials that differ from the peer's current ones once checks have started
        are the peer's ICE restart: this agent restarts too (see :meth:`restart`) and
        emits :class:`~ice.Restarted` with the new credentials to signal back.
        """
        _check_credential(ufrag, "the remote ufrag", 4)
        _check_credential(pwd, "the remote pwd", 22)
        if ta is not None and ta <= 0:
            raise ValueError("the peer's ta must be positive")
        if (
            self._started_at is not None
            and self.state is not ConnectionState.CLOSED
            and self.remote_ufrag is not None
            and (ufrag, pwd) != (self.remote_ufrag, self.remote_pwd)
        ):
            self._restart(None, None, by_peer=True)
        self.remote_ufrag = ufrag
        self.remote_pwd = pwd
        self._remote_key = short_term_key(pwd)
        self._username = f"{ufrag}:{self.local_ufrag}"
        self._bodies = {}
        if self._negotiate_ta:
            self.ta = max(self.proposed_ta, ta if ta is not None else DEFAULT_TA)
        self.remote_lite = lite
        if lite and not self.lite and not self.controlling:
            self._switch_role(True)  # a full agent controls a lite one (section 6.1.1)
        elif self.lite and not lite and self.controlling:
            self._switch_role(False)

    def restart(self, *, local_ufrag: str | None = None, local_pwd: str | None = None) -> None:
        """ICE restart (RFC 8445 section 9): a new ufrag and pwd (both change), a new
        check list and the peer's candidates forgotten; the roles, our candidates (but
        the learned ones) and the pacing are kept. Give the peer the new credentials,
        then :meth:`set_remote_credentials` and the peer's candidates, and :meth:`start`.

        The pairs selected so far keep carrying data and consent, under the old
        credentials, until the new checks have selected a pair for every component; a
        restart of a FAILED agent starts afresh. The ICE timeout then covers the new
        checks: without a new selected pair for every component by then, the agent
        fails, old pairs or not.
        """
        if self.state is ConnectionState.CLOSED:
            raise IceError("cannot restart a closed agent")
        self._restart(local_ufrag, local_pwd, by_peer=False)

    def _restart(self, local_ufrag: str | None, local_pwd: str | None, by_peer: bool) -> None:
        ufrag, pwd = _random_credentials(self._rng)
        ufrag = ufrag if local_ufrag is None else _check_credential(local_ufrag, "the ufrag", 4)
        pwd = pwd if local_pwd is None else _check_credential(local_pwd, "the pwd", 22)
        if ufrag == self.local_ufrag or pwd == self.local_pwd:
            raise IceError("an ICE restart needs a new ufrag and a new pwd")
        self._check_restartable()
        if self.state is ConnectionState.FAILED:
            self.selected.clear()
            self._stop_consent()
            self.error = None
            self._previous = None
            self._set_state(ConnectionState.NEW)
        elif self._previous is None and self.selected:
            self._previous = _Generation(self)
        self.local_ufrag, self.local_pwd = ufrag, pwd
        self._local_key = short_term_key(pwd)
        self.remote_ufrag = self.remote_pwd = self._remote_key = None
        self._username = ""
        self._bodies = {}
        self._timers.clear()
        self._checks.clear()
        self._pair_checks.clear()
        self.checklist = CheckList(self.checklist.max_pairs)
        previous = self._previous
        self.valid_pairs = (
            {} if previous is None else {p.key: p for p in previous.selected.values()}
        )
        self._succeeded_foundations = set()
        for part in self._components:
            part.first_valid_at = part.best = part.nominating = None
        learned = [c for c in self.local_candidates if c.type is CandidateType.PRFLX]
        for candidate in learned:
            self.local_candidates.remove(candidate)
            del self._local_by_address[(candidate.component, candidate.address)]
        self.remote_candidates = []
        self._remote_by_address = {}
        self._prflx_by_base = {}
        self.remote_end_of_candidates = False
        self.remote_lite = False
        self._started_at = self._deadline = None
        self._checking = self._ordinary = False
        if self.state is ConnectionState.COMPLETED:
            self._set_state(ConnectionState.CONNECTED)
        self._events.append(Restarted(ufrag, pwd, by_peer))

    def _check_restartable(self) -> None:
        """Raise IceError while a restart has moved some components to new pairs but not
        all yet: the old generation could not be kept whole."""
        previous = self._previous
        if (
            previous is not None
            and self.state is not ConnectionState.FAILED
            and any(not previous.owns(pair) for pair in self.selected.values())
        ):
            raise IceError(
                "the previous ICE restart has moved some components to new pairs but not "
                "all yet: restart again once it has completed"
            )

    def add_local_candidate(self, candidate: Candidate | None) -> bool:
        """A gathered candidate of ours (with its ``base``); False when redundant. None
        means gathering has ended (returns False)."""
        if candidate is None:
            self.local_end_of_candidates = True
            self._maybe_complete()
            return False
        if not 1 <= candidate.component <= self.components:
            raise ValueError(f"component {candidate.component} of {self.components}")
        if candidate.base is None:
            raise ValueError("a local candidate needs its base")
        if self.lite and candidate.type is not CandidateType.HOST:
            raise ValueError("an ICE-lite agent has host candidates only")
        key = (candidate.component, candidate.address)
        if key in self._local_by_address:
            return False
        self.local_candidates.append(candidate)
        self._local_by_address[key] = candidate
        if candidate.type is CandidateType.SRFLX or candidate.protocol != "udp":
            return True  # a server-reflexive candidate is checked through its base
        self._local_by_base[candidate.base] = candidate
        for remote in self.remote_candidates:
            if _pairable(remote):
                self._form_pair(candidate, remote)
        return True

    def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """A candidate the peer signalled; None means the peer has no more (RFC 8838)."""
        if candidate is None:
            self.remote_end_of_candidates = True
            self._maybe_complete()
            return
        key = (candidate.component, candidate.address)
        if not 1 <= candidate.component <= self.components:
            return
        known = self._remote_by_address.get(key)
        if known is not None:
            if known.type is CandidateType.PRFLX and candidate.type is not CandidateType.PRFLX:
                self._replace_learned(known, candidate)
            else:
                return
        else:
            self.remote_candidates.append(candidate)
        self._remote_by_address[key] = candidate
        if not _pairable(candidate):
            return  # carried, never paired: no ICE-TCP; mDNS names are the shell's to resolve
        for local in self._local_by_base.values():
            self._form_pair(local, candidate)
        if self.lite and self.remote_lite and self._checking:
            self._select_due = True  # at the next handle_timeout, which is due at once

    def _replace_learned(self, learned: Candidate, signalled: Candidate) -> None:
        """A signalled candidate at an address first learned from the peer's checks takes
        the learned one's place: its type and priority, in every pair with it (the pairs
        keep their foundation, and with it their place among the frozen ones)."""
        candidates = self.remote_candidates
        candidates[candidates.index(learned)] = signalled
        pairs = [p for p in self.checklist.pairs.values() if p.remote is learned]
        pairs += [p.valid for p in pairs if p.valid is not None and p.valid is not p]
        for pair in pairs:
            pair.remote = signalled
            pair.set_role(self.controlling)
        self.checklist.reprioritise(self.controlling)
        self._rank_valid_pairs()

    def _form_pair(self, local: Candidate, remote: Candidate) -> CandidatePair | None:
        if local.component != remote.component or (":" in local.host) != (":" in remote.host):
            return None
        checklist = self.checklist
        pair = CandidatePair(local, remote, self.controlling, checklist.next_seq())
        if not checklist.add(pair):
            return None
        if self._started_at is not None and not self.lite:
            foundation = pair.foundation
            if foundation in self._succeeded_foundations:
                checklist.set_state(pair, WAITING)
            else:
                checklist.set_state(pair, checklist.state_for_new_pair(foundation))
        return pair

    # -- the clock -------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin the connectivity checks (and the ICE timeout)."""
        if self._started_at is not None:
            return
        self._started_at = now
        self._deadline = now + self.ice_timeout
        self._checking = True
        self._ordinary = not self.lite
        if self.state is ConnectionState.NEW:
            self._set_state(ConnectionState.CHECKING)
        if self.lite:
            if self.remote_lite:
                self._select_without_checks(now)
            return
        for pair in self.checklist.initial_states():
            self._events.append(PairStateChanged(pair, FROZEN, WAITING))
        self._pace(now)

    def close(self) -> None:
        """Stop: no more checks, timers or answers."""
        self._checking = self._ordinary = False
        self._timers.clear()
        self._checks.clear()
        self._pair_checks.clear()
        self._stop_consent()
        self._set_state(ConnectionState.CLOSED)

    def handle_timeout(self, now: float, early: float = 0.0) -> None:
        """Advance the clock: retransmissions, failures, the ICE timeout, paced checks.

        ``early`` also does now what falls due within that many seconds (checks,
        retransmissions, consent checks; never the ICE timeout, consent expiry or
        DISCONNECTED): a shell whose timers fire late (asyncio's selectors wait whole
        milliseconds) arms them that much early, so that no check leaves late, while
        ``now`` stays the true time for RTTs and the record.
        """
        if self.state is ConnectionState.CLOSED:
            return
        soon = now + early
        timers = self._timers
        while timers and timers[0][0] <= soon:
            check = heapq.heappop(timers)[2]
            transaction = check.transaction
            if transaction.done:
                continue
            transaction.handle_timeout(soon)
            error = transaction.error  # set when the transaction timed out just now
            if error is not None:
                self._forget(check)
                if not check.cancelled:
                    self._check_failed(now, check, str(error))
                continue
            data = transaction.poll_transmit()
            if data is not None and not check.cancelled:
                pair = check.pair
                pair.requests_sent += 1
                pair.last_sent_at = now
                self.stats.retransmissions += 1
                self._transmits.append(Transmit(data, pair.key[0], pair.key[1]))
            self._arm(check)
        if self._deadline is not None and now >= self._deadline:
            self._timed_out()
        if self._select_due:
            self._select_due = False
            self._select_without_checks(now)
        if self._consenting:
            self._keep_consent(now, soon)
        if self._keepalive_due is not None and soon >= self._keepalive_due:
            self._keep_alive(now, soon)
        if self._checking:
            due = self._nomination_due() if self.controlling and not self.aggressive else None
            if due is not None and soon >= due:
                self._consider_nomination(soon)
            self._pace(now, soon)
        if self.state is ConnectionState.CONNECTED:
            self._maybe_complete()

    @property
    def restarting(self) -> bool:
        """Whether an ICE restart is under way: pairs selected before it still carry the
        data while the new checks have not selected a pair for every component."""
        return self._previous is not None

    @property
    def ice_deadline(self) -> float | None:
        """When the ICE timeout fails the agent if it has not connected (or completed
        its ICE restart) by then."""
        if self.state is ConnectionState.CHECKING or self._previous is not None:
            return self._deadline
        return None

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` must next be called; None when nothing is due."""
        timers = self._timers
        while timers and timers[0][2].transaction.done:
            heapq.heappop(timers)
        deadline = timers[0][0] if timers else None
        if self._consenting:
            disconnect = self.state is not ConnectionState.DISCONNECTED
            for part in self._components:
                heard = part.heard_at
                for wake in (
                    part.consent_due,
                    part.consent_until,
                    heard + self.disconnect_timeout if disconnect and heard is not None else None,
                ):
                    if wake is not None and (deadline is None or wake < deadline):
                        deadline = wake
        keepalive = self._keepalive_due
        if keepalive is not None and (deadline is None or keepalive < deadline):
            deadline = keepalive
        if not self._checking:
            return deadline
        if self._select_due:
            return self._started_at
        if self._deadline is not None and (deadline is None or self._deadline < deadline):
            deadline = self._deadline
        if self._group is None and self._has_work():
            slot = self._next_slot
            pacer = self._pacer
            if pacer is not None:
                slot = pacer.slot(slot)
            if deadline is None or slot < deadline:
                deadline = slot
        if self.controlling and not self.aggressive:
            nominate_at = self._nomination_due()
            if nominate_at is not None and (deadline is None or nominate_at < deadline):
                deadline = nominate_at
        return deadline

    def poll_transmits(self) -> list[Transmit]:
        """The datagrams to send now (the list is handed over, not copied)."""
        transmits = self._transmits
        if transmits:
            self._transmits = []
        return transmits

    def poll_event(self) -> Event | None:
        """The next event, or None."""
        return self._events.pop(0) if self._events else None

    def poll_events(self) -> list[Event]:
        """Every event so far, oldest first (the list is handed over, not copied)."""
        events = self._events
        if events:
            self._events = []
        return events

    # -- datagrams -------------------------------------------------------------------------

    def handle_datagram(self, now: float, data: bytes, local: Address, remote: Address) -> None:
        """A STUN datagram that arrived on the local base ``local`` from ``remote``.

        Anything malformed, unauthenticated or unexpected is dropped and counted. Answers
        go out at once; a check the datagram makes possible waits for the next
        :meth:`handle_timeout`, which :meth:`poll_timeout` then reports due, so that every
        datagram read in one go is seen before the next check is chosen (two agents that
        check a pair at the same moment then need no second check of it).
        """
        if self.state is ConnectionState.CLOSED:
            return
        try:
            message = decode(data)
        except ParseError:
            self.stats.dropped_malformed += 1
            return
        if message.method != _BINDING or (
            message.has_fingerprint and not message.check_fingerprint()
        ):
            self.stats.dropped_malformed += 1
            return
        cls = message.cls
        if cls is _REQUEST:
            self._handle_request(now, message, local, remote)
        elif cls is _SUCCESS or cls is _ERROR:
            self._handle_response(now, message, local, remote)
            if self.state is ConnectionState.CONNECTED:
                self._maybe_complete()
        else:
            self.stats.indications_received += 1

    def handle_unreachable(self, now: float, local: Address, remote: Address, reason: str) -> None:
        """The network reported ``remote`` unreachable from ``local`` (ICMP): the check in
        flight on that path fails now rather than at its timeout."""
        check = self._pair_checks.get((local, remote))
        if check is not None and not check.transaction.done:
            check.transaction.cancel(ErrorResponse(0, reason))
            self._forget(check)
            self._check_failed(now, check, reason)

    def _handle_request(
        self, now: float, message: Message, local: Address, remote: Address
    ) -> None:
        stats = self.stats
        stats.requests_received += 1
        local_candidate = self._local_by_base.get(local)
        if local_candidate is None:
            stats.dropped_unknown_local += 1
            return
        username = message.get(_USERNAME)
        if username is None or not message.has_integrity:
            self._reply_error(message, local, remote, 400, "Bad Request", sign=False)
            return
        ours, colon, theirs = username.partition(":")
        previous = self._previous
        if (
            previous is not None
            and ours == previous.local_ufrag
            and theirs == previous.remote_ufrag
            and message.check_integrity(previous.local_key)
        ):
            self._answer_old_generation(now, message, local, remote, previous.local_key)
            return
        if (
            ours != self.local_ufrag
            or not colon
            or (self.remote_ufrag is not None and theirs != self.remote_ufrag)
            or not message.check_integrity(self._local_key)
        ):
            stats.dropped_unauthenticated += 1
            self._reply_error(message, local, remote, 401, "Unauthorized", sign=False)
            return
        unknown = message.unknown_required()
        if unknown:
            self._reply_error(message, local, remote, 420, "Unknown Attribute", unknown=unknown)
            return
        priority = message.get(_PRIORITY)
        if priority is None:
            self._reply_error(message, local, remote, 400, "Bad Request: no PRIORITY")
            return
        if self.controlling:
            theirs_tb = message.get(_CONTROLLING)
            if theirs_tb is not None:
                if self.tie_breaker >= theirs_tb and not self.lite:
                    self._reply_error(message, local, remote, 487, "Role Conflict")
                    return
                self._switch_role(False)
        else:
            theirs_tb = message.get(_CONTROLLED)
            if theirs_tb is not None:
                if self.tie_breaker < theirs_tb or self.lite:  # a lite agent stays controlled
                    self._reply_error(message, local, remote, 487, "Role Conflict")
                    return
                self._switch_role(True)
        self._transmits.append(
            Transmit(
                _binding_success(message.transaction_id, remote, self._local_key), local, remote
            )
        )
        stats.responses_sent += 1
        if self.state is ConnectionState.FAILED:  # answered, never paired (CLOSED: no answer)
            return

        pair = self.checklist.pairs.get((local, remote))
        if pair is None:
            pair = self._pair_for_request(local_candidate, remote, priority)
            if pair is None:
                return
        pair.requests_received += 1
        pair.responses_sent += 1
        pair.last_received_at = pair.last_sent_at = now
        if self._consenting:
            selected = self.selected.get(pair.component)
            if selected is not None and selected.key == pair.key:
                pair.consent_requests_received += 1
        if self.lite:
            if not self.controlling and _USE_CANDIDATE in message:
                self._accept_nomination(now, pair)
            return
        state = pair.state
        if (
            state is not SUCCEEDED
            and self._checking
            and (self._ordinary or self._may_improve(pair))
        ):
            if state is IN_PROGRESS:
                check = self._pair_checks.get(pair.key)
                if check is not None:
                    check.cancelled = True  # its response still counts, its silence does not
            self._set_pair_state(pair, WAITING)
            self.checklist.enqueue_triggered(pair)
        if not self.controlling and _USE_CANDIDATE in message:
            if state is SUCCEEDED and pair.valid is not None:
                self._nominate(now, pair.valid)
            else:
                pair.nominate_on_success = True

    def _pair_for_request(
        self, local: Candidate, remote: Address, priority: int
    ) -> CandidatePair | None:
        """The pair for a check from a transport address we have no pair for (7.3.1.4),
        learning the sender as a peer-reflexive candidate if it is new (7.3.1.3)."""
        component = local.component
        candidate = self._remote_by_address.get((component, remote))
        if candidate is None:
            base = local.base or local.address
            learned = self._prflx_by_base.get(base, 0)
            if learned >= PEER_REFLEXIVE_LIMIT:
                return None
            self._prflx_by_base[base] = learned + 1
            self._prflx_count += 1
            candidate = Candidate(
                foundation=f"prflx{self._prflx_count}",
                component=component,
                protocol="udp",
                priority=priority,
                host=remote[0],
                port=remote[1],
                type=CandidateType.PRFLX,
            )
            self._remote_by_address[(component, remote)] = candidate
            self.remote_candidates.append(candidate)
            self._events.append(CandidateLearned(candidate, local=False))
        pair = self._form_pair(local, candidate)
        if pair is not None and pair.state is FROZEN and not self.lite:
            self.checklist.set_state(pair, WAITING)
        return pair

    def _answer_old_generation(
        self, now: float, message: Message, local: Address, remote: Address, key: bytes
    ) -> None:
        """A consent request under the credentials from before our ICE restart, on a
        pair selected then: answered under them."""
        self._transmits.append(
            Transmit(_binding_success(message.transaction_id, remote, key), local, remote)
        )
        self.stats.responses_sent += 1
        pair = self.valid_pairs.get((local, remote))
        if pair is not None:
            pair.requests_received += 1
            pair.consent_requests_received += 1
            pair.responses_sent += 1
            pair.last_received_at = pair.last_sent_at = now

    def _accept_nomination(self, now: float, pair: CandidatePair) -> None:
        """ICE-lite (RFC 8445 section 7.3.1.5): the pair of a check with USE-CANDIDATE
        is valid and nominated, without a check of ours."""
        if pair.state is not SUCCEEDED:
            self._set_pair_state(pair, SUCCEEDED)
        pair.valid = pair
        self.valid_pairs[pair.key] = pair
        self._nominate(now, pair)

    def _select_without_checks(self, now: float) -> None:
        """Both agents lite (RFC 8445 section 6.1.1): no checks; per component, the pair
        of the peer's highest-priority candidate and our highest-priority candidate of
        its address family is selected, by both sides alike."""
        for component in range(1, self.components + 1):
            if self._settled(component):
                continue
            remotes = [
                c for c in self.remote_candidates if c.component == component and _pairable(c)
            ]
            if not remotes:
                continue
            remote = max(remotes, key=lambda c: c.priority)
            ipv6 = ":" in remote.host
            locals_ = [
                c
                for c in self._local_by_base.values()
                if c.component == component and (":" in c.host) == ipv6
            ]
            if not locals_:
                continue
            local = max(locals_, key=lambda c: c.priority)
            assert local.base is not None
            pair = self.checklist.pairs.get((local.base, remote.address))
            if pair is None:
                pair = self._form_pair(local, remote)
            if pair is not None:
                self._accept_nomination(now, pair)

    def _reply_error(
        self,
        request: Message,
        local: Address,
        remote: Address,
        code: int,
        reason: str,
        *,
        sign: bool = True,
        unknown: list[int] | None = None,
    ) -> None:
        attributes: list[tuple[int, object]] = [(_ERROR_CODE, (code, reason))]
        if unknown:
            attributes.append((_UNKNOWN_ATTRIBUTES, unknown))
        response = Message(_BINDING, _ERROR, request.transaction_id, attributes)
        data = response.encode(self._local_key if sign else None, fingerprint=True)
        self._transmits.append(Transmit(data, local, remote))
        self.stats.errors_sent += 1

    def _handle_response(
        self, now: float, message: Message, local: Address, remote: Address
    ) -> None:
        check = self._checks.get(message.transaction_id)
        if check is None:
            if not self._consent_answered(now, message, local, remote):
                self.stats.dropped_unmatched += 1
            return
        transaction = check.transaction
        if not transaction.handle_response(message, now):
            self.stats.dropped_unmatched += 1
            return
        if not transaction.done:
            self.stats.dropped_unauthenticated += 1
            return
        self._forget(check)
        pair = check.pair
        pair.responses_received += 1
        pair.last_received_at = now
        if pair.removed or (not self._checking and not check.use_candidate):
            return
        if remote != pair.key[1] or local != pair.key[0]:
            self._check_failed(now, check, f"asymmetric response from {remote[0]}:{remote[1]}")
            return
        error = transaction.error
        if error is not None:
            if isinstance(error, ErrorResponse) and error.code == 487:
                self._role_conflict(pair, check)
                return
            self._check_failed(now, check, str(error))
            return
        mapped = message.get(_XOR_MAPPED)
        if mapped is None:
            self._check_failed(now, check, "success response without XOR-MAPPED-ADDRESS")
            return
        rtt = transaction.rtt
        if rtt is not None:
            pair.rtt = rtt
            pair.total_rtt += rtt
        self._check_succeeded(now, pair, check, mapped)

    # -- outcomes --------------------------------------------------------------------------

    def _check_succeeded(
        self, now: float, pair: CandidatePair, check: _Check, mapped: Address
    ) -> None:
        """RFC 8445 section 7.2.5.3: the valid pair, unfreezing, nomination."""
        self._set_pair_state(pair, SUCCEEDED)
        component = pair.component
        local = self._local_by_address.get((component, mapped))
        if local is None:
            local = Candidate(
                foundation=make_foundation(CandidateType.PRFLX, pair.key[0][0], "udp"),
                component=component,
                protocol="udp",
                priority=check.priority,
                host=mapped[0],
                port=mapped[1],
                type=CandidateType.PRFLX,
                base=pair.key[0],
            )
            self.local_candidates.append(local)
            self._local_by_address[(component, mapped)] = local
            self._events.append(CandidateLearned(local, local=True))
        valid = pair.valid
        if valid is None or valid.local is not local:
            if local is pair.local:
                valid = pair
            else:
                valid = CandidatePair(local, pair.remote, self.controlling, pair.seq)
                valid.key = pair.key
                valid.state = SUCCEEDED
            pair.valid = valid
        valid.rtt = pair.rtt
        self.valid_pairs[pair.key] = valid
        part = self._components[component - 1]
        if part.first_valid_at is None:
            part.first_valid_at = now
        best = part.best
        if best is None or valid.priority > best.valid.priority:  # type: ignore[union-attr]
            part.best = pair
        elif best is pair:
            part.best = self._best_succeeded(component)
        foundation = pair.foundation
        self._succeeded_foundations.add(foundation)
        for stream in (self,) if self._group is None else self._group.streams:
            for unfrozen in stream.checklist.unfreeze_foundation(foundation):
                stream._events.append(PairStateChanged(unfrozen, FROZEN, WAITING))
        if check.use_candidate or (not self.controlling and pair.nominate_on_success):
            self._nominate(now, valid)
        elif self.controlling and not self.aggressive:
            self._consider_nomination(now)

    def _check_failed(self, now: float, check: _Check, reason: str) -> None:
        pair = check.pair
        if pair.removed or self.state is ConnectionState.CLOSED:
            return
        pair.failure = reason
        self._set_pair_state(pair, FAILED, reason)
        valid = self.valid_pairs.get(pair.key)
        if valid is not None and (valid is pair or valid is pair.valid):
            del self.valid_pairs[pair.key]
        part = self._components[pair.component - 1]
        if part.nominating is pair:
            part.nominating = None
        if self._checking:
            self._consider_nomination(now)  # a pending better pair may just have failed

    def _role_conflict(self, pair: CandidatePair, check: _Check) -> None:
        """A 487 answer (RFC 8445 section 7.2.5.1): switch away from the role the check
        claimed (unless already done) and check the pair again."""
        if check.controlling == self.controlling:
            self._switch_role(not self.controlling)
        self._set_pair_state(pair, WAITING)
        self.checklist.enqueue_triggered(pair)

    def _switch_role(self, controlling: bool) -> None:
        if controlling == self.controlling:
            return
        self.controlling = controlling
        self.checklist.reprioritise(controlling)
        for valid in self.valid_pairs.values():
            valid.set_role(controlling)
        self._rank_valid_pairs()
        for part in self._components:
            part.nominating = None
        self._events.append(RoleChanged(controlling))
        if self._group is not None:
            for stream in self._group.streams:
                stream._switch_role(controlling)  # one role for all data streams

    def _nominate(self, now: float, valid: CandidatePair) -> None:
        if valid.nominated:
            return
        valid.nominated = True
        self._events.append(PairNominated(valid))
        component = valid.component
        current = self.selected.get(component)
        previous = self._previous
        if (
            current is None
            or valid.priority > current.priority
            or (previous is not None and previous.owns(current))
        ):
            self.selected[component] = valid
            self._events.append(SelectedPairChanged(component, valid))
            if self.consent:
                part = self._components[component - 1]
                part.consent_until = now + self.consent_timeout
                part.consent_due = now + self._consent_interval()
                part.heard_at = now
                self._consenting = True
            elif self._keepalive_due is None:
                self._keepalive_due = now + self.keepalive_interval
        if len(self.selected) < self.components:
            return
        if previous is not None:
            if any(map(previous.owns, self.selected.values())):
                return
            self._previous = None  # the ICE restart is complete
            self._completed()
        elif self.state is ConnectionState.CHECKING:
            self._completed()

    def _completed(self) -> None:
        """Every component has a selected pair: no more ordinary checks. What could still
        replace a selected pair (a better pair the peer may yet nominate, when it can
        nominate again) keeps its check and its place in the triggered-check queue."""
        self._ordinary = False
        for check in self._checks.values():
            pair = check.pair
            if not pair.nominated and not check.use_candidate and not self._may_improve(pair):
                check.cancelled = True
        checklist = self.checklist
        kept = []
        for pair in checklist.triggered:
            if pair.nominating or self._may_improve(pair):
                kept.append(pair)
            else:
                pair.queued = False
        checklist.triggered = kept
        self._set_state(ConnectionState.CONNECTED)

    def _settled(self, component: int) -> bool:
        """Whether ``component`` has a selected pair from the current checks (not one
        from before an ICE restart)."""
        pair = self.selected.get(component)
        if pair is None:
            return False
        previous = self._previous
        return previous is None or not previous.owns(pair)

    def _may_improve(self, pair: CandidatePair) -> bool:
        """Whether ``pair`` could still be nominated over its component's selected pair:
        only a better pair, and only while nomination is not final (the controlled side,
        which follows the peer, or aggressive nomination, RFC 5245 section 8.1.2)."""
        if self.controlling and not self.aggressive:
            return False
        selected = self.selected.get(pair.component)
        return selected is not None and pair.priority > selected.priority

    def _nomination_due(self) -> float | None:
        """When the regular-nomination wait of some component ends, if one is running
        and the component still has a valid pair to nominate."""
        due = None
        for component, part in enumerate(self._components, 1):
            first = part.first_valid_at
            if first is None or part.best is None or part.nominating is not None:
                continue  # no valid pair (yet), or nothing to nominate: no need to wake
            if self._settled(component):
                continue
            wake = first + self.nomination_wait
            if due is None or wake < due:
                due = wake
        return due

    def _consider_nomination(self, now: float) -> None:
        """Regular nomination (RFC 8445 section 8.1.1): per component, once the best valid
        pair cannot be beaten by a pending one (or the wait is over), send its check
        again with USE-CANDIDATE through the triggered-check queue."""
        if not self.controlling or self.aggressive:
            return
        for component, part in enumerate(self._components, 1):
            best = part.best
            if best is None or part.nominating is not None or self._settled(component):
                continue
            assert best.valid is not None and part.first_valid_at is not None
            if (
                self.checklist.highest_pending(component) > best.valid.priority
                and now < part.first_valid_at + self.nomination_wait
            ):
                continue
            best.nominating = True
            part.nominating = best
            self.checklist.enqueue_triggered(best)

    def _best_succeeded(self, component: int) -> CandidatePair | None:
        """The Succeeded pair of ``component`` whose valid pair ranks highest."""
        best: CandidatePair | None = None
        for pair in self.checklist.pairs.values():
            if pair.component == component and pair.state is SUCCEEDED:
                valid = pair.valid
                if valid is not None and (best is None or valid.priority > best.valid.priority):  # type: ignore[union-attr]
                    best = pair
        return best

    def _rank_valid_pairs(self) -> None:
        """After priorities changed (a role switch, a learned candidate replaced)."""
        for component, part in enumerate(self._components, 1):
            part.best = self._best_succeeded(component)

    def _timed_out(self) -> None:
        self._deadline = None
        previous = self._previous
        if self.state is not ConnectionState.CHECKING and previous is None:
            return
        self._checking = False
        self._stop_consent()
        self._previous = None
        unverified = {}
        for check in list(self._checks.values()):
            check.transaction.cancel(ErrorResponse(0, "ICE timeout"))
            self._forget(check)
            if check.transaction.discarded:
                unverified[check.pair.key] = check.transaction.discarded
        for pair in list(self.checklist.pairs.values()):
            state = pair.state
            if state is IN_PROGRESS:
                count = unverified.get(pair.key)
                why_pair = (
                    f"no answer to {pair.requests_sent} requests within the ICE timeout"
                    if count is None
                    else f"{count} answers failed their integrity check (wrong password?)"
                )
            elif state is WAITING or state is FROZEN:
                why_pair = "not checked before the ICE timeout"
            else:
                continue
            pair.failure = why_pair
            self._set_pair_state(pair, FAILED, why_pair)
        selected = self.selected
        missing = [
            c
            for c in range(1, self.components + 1)
            if c not in selected or (previous is not None and previous.owns(selected[c]))
        ]
        valid = {p.component for p in self.checklist.pairs.values() if p.state is SUCCEEDED}
        why = "no nominated pair" if all(c in valid for c in missing) else "no valid pair"
        names = ", ".join(map(str, missing))
        reports = sorted(self.checklist.pairs.values(), key=lambda p: -p.priority)
        what = "ICE restart failed" if previous is not None else "ICE failed"
        self.error = ConnectionFailed(
            f"{what}: {why} for component {names} within {self.ice_timeout:g} s",
            [p.report() for p in reports],
        )
        self._set_state(ConnectionState.FAILED)

    # -- consent freshness (RFC 7675) ------------------------------------------------------

    def _consent_interval(self) -> float:
        return max(CONSENT_MIN_INTERVAL, CONSENT_INTERVAL * self._rng.uniform(0.8, 1.2))

    def _keep_consent(self, now: float, soon: float) -> None:
        """Send the consent checks that are due; fail when consent has expired."""
        for component, part in enumerate(self._components, 1):
            until = part.consent_until
            if until is not None and now >= until:
                self._consent_expired(component)
                return
        if self.state is not ConnectionState.DISCONNECTED and not self._heard_lately(now):
            self._resume_state = self.state
            self._set_state(ConnectionState.DISCONNECTED)
        horizon = now - self.consent_timeout
        consent = self._consent
        for transaction_id in [t for t, (_, sent, _) in consent.items() if sent <= horizon]:
            del consent[transaction_id]
        for component, part in enumerate(self._components, 1):
            due = part.consent_due
            if due is None or soon < due:
                continue
            pair = self.selected[component]
            transaction_id = self._rng.randbytes(12)
            previous = self._previous
            generation = previous if previous is not None and previous.owns(pair) else None
            data = self._request(transaction_id, pair, False, _check_priority(pair), generation)
            self._transmits.append(Transmit(data, pair.key[0], pair.key[1]))
            key = self._remote_key if generation is None else generation.remote_key
            assert key is not None
            consent[transaction_id] = (pair, now, key)
            pair.requests_sent += 1
            pair.consent_requests_sent += 1
            pair.last_sent_at = now
            self.stats.consent_checks_sent += 1
            part.consent_due = now + self._consent_interval()

    def _consent_answered(
        self, now: float, message: Message, local: Address, remote: Address
    ) -> bool:
        """Take an answer to a consent check; False when it answers none."""
        entry = self._consent.get(message.transaction_id)
        if entry is None:
            return False
        pair, sent, key = entry
        if (
            message.cls is not _SUCCESS
            or not message.check_integrity(key)
            or (local, remote) != pair.key
        ):
            self.stats.dropped_unauthenticated += 1
            return True
        del self._consent[message.transaction_id]
        pair.responses_received += 1
        pair.last_received_at = now
        pair.rtt = rtt = now - sent
        pair.total_rtt += rtt
        component = pair.component
        if self.selected.get(component) is pair:
            until = sent + self.consent_timeout
            part = self._components[component - 1]
            if part.consent_until is None or until > part.consent_until:
                part.consent_until = until
            part.heard_at = now
            if self.state is ConnectionState.DISCONNECTED and self._heard_lately(now):
                self._set_state(self._resume_state)
                self._maybe_complete()
        return True

    def _heard_lately(self, now: float) -> bool:
        """Whether every selected pair had a consent answer within ``disconnect_timeout``."""
        timeout = self.disconnect_timeout
        return all(
            part.heard_at is None or now < part.heard_at + timeout for part in self._components
        )

    def _consent_expired(self, component: int) -> None:
        pair = self.selected[component]
        self._stop_consent()
        self._events.append(ConsentExpired(pair))
        self._checking = False
        self.error = ConnectionFailed(
            f"consent to send expired: no answer from {pair.remote} to any consent check "
            f"sent in the last {self.consent_timeout:g} s",
            [pair.report()],
        )
        self._set_state(ConnectionState.FAILED)

    def _stop_consent(self) -> None:
        self._consent.clear()
        self._consenting = False
        self._keepalive_due = None
        for part in self._components:
            part.consent_due = part.consent_until = part.heard_at = None

    # -- keepalives (RFC 8445 section 11) and the end of checking ---------------------------

    def _keep_alive(self, now: float, soon: float) -> None:
        """A Binding indication on each selected pair nothing was sent on for Tr."""
        interval = self.keepalive_interval
        due = None
        for pair in self.selected.values():
            last = pair.last_sent_at
            if last is None or last + interval <= soon:
                data = Message(_BINDING, _INDICATION).encode(fingerprint=True)
                self._transmits.append(Transmit(data, pair.key[0], pair.key[1]))
                pair.last_sent_at = last = now
                self.stats.keepalives_sent += 1
            if due is None or last + interval < due:
                due = last + interval
        self._keepalive_due = due

    def _maybe_complete(self) -> None:
        """CONNECTED becomes COMPLETED once both sides have signalled their last
        candidate and no check is left in flight or queued."""
        if (
            self.state is ConnectionState.CONNECTED
            and self.local_end_of_candidates
            and self.remote_end_of_candidates
            and self._previous is None
            and not self.checklist.triggered
            and all(check.cancelled for check in self._checks.values())
        ):
            self._set_state(ConnectionState.COMPLETED)

    # -- sending checks --------------------------------------------------------------------

    def _pace(self, now: float, soon: float | None = None) -> None:
        """Send the next check if the pacing allows it by ``soon`` (``now`` if None).
        The next slot is Ta after this one, however early the check left."""
        if self._group is not None:
            self._group._pace(now, soon)
            return
        if soon is None:
            soon = now
        if soon < self._next_slot or self._remote_key is None:
            return
        pacer = self._pacer
        if pacer is not None and pacer.slot(soon) > soon:
            return
        if not self._send_next(now):
            return
        self._next_slot = max(now, self._next_slot) + self.ta
        if pacer is not None:
            pacer.take(pacer.slot(now))

    def _send_next(self, now: float) -> bool:
        """Send the check next in line, triggered first; False when there is none."""
        checklist = self.checklist
        pair = checklist.pop_triggered()
        if pair is None:
            pair = checklist.pop_waiting() if self._ordinary else None
            if pair is None:
                return False
        self._send_check(now, pair)
        return True

    def _has_work(self) -> bool:
        """Whether a check could go out now, pacing aside."""
        return (
            self._checking
            and self._remote_key is not None
            and self.checklist.has_work(self._ordinary)
        )

    def _send_check(self, now: float, pair: CandidatePair) -> None:
        assert self._remote_key is not None
        controlling = self.controlling
        use_candidate = controlling and (pair.nominating or self.aggressive)
        pair.nominating = False
        transaction_id = self._rng.randbytes(12)
        priority = _check_priority(pair)
        data = self._request(transaction_id, pair, use_candidate, priority)
        checklist = self.checklist
        busy = checklist.count(WAITING) + checklist.count(IN_PROGRESS)
        if self._group is not None:
            busy *= self._group.active_lists()  # N in RFC 8445 section 14.3
        rto = max(MIN_RTO, self.ta * busy)
        transaction = ClientTransaction(data, now, integrity_key=self._remote_key, rto=rto)
        transaction.poll_transmit()
        check = _Check(pair, transaction, use_candidate, controlling, priority)
        old = self._pair_checks.get(pair.key)
        if old is not None:
            old.cancelled = True
        self._checks[transaction_id] = check
        self._pair_checks[pair.key] = check
        self._arm(check)
        if pair.state is not SUCCEEDED:
            self._set_pair_state(pair, IN_PROGRESS)
        if pair.checked_at is None:
            pair.checked_at = now
        pair.last_sent_at = now
        pair.requests_sent += 1
        self.stats.checks_sent += 1
        self._transmits.append(Transmit(data, pair.key[0], pair.key[1]))

    def _request(
        self,
        transaction_id: bytes,
        pair: CandidatePair,
        use_candidate: bool,
        priority: int,
        generation: _Generation | None = None,
    ) -> bytes:
        """A signed, fingerprinted Binding request for ``pair`` (RFC 8445 section 7.1)
        carrying ``priority``, under the credentials of ``generation`` (from before an
        ICE restart) if given.

        Its attributes differ only by priority, role and USE-CANDIDATE, so each variant
        is encoded once and then only signed afresh.
        """
        variant = (priority, self.controlling, use_candidate)
        if generation is None:
            bodies, key, username = self._bodies, self._remote_key, self._username
        else:
            bodies, key = generation.bodies, generation.remote_key
            username = f"{generation.remote_ufrag}:{generation.local_ufrag}"
        body = bodies.get(variant)
        if body is None:
            role = _CONTROLLING if self.controlling else _CONTROLLED
            body = (
                encode_attribute(_USERNAME, username, transaction_id)
                + encode_attribute(_PRIORITY, priority, transaction_id)
                + encode_attribute(role, self.tie_breaker, transaction_id)
            )
            if use_candidate:
                body += encode_attribute(_USE_CANDIDATE, True, transaction_id)
            bodies[variant] = body
        return encode_body(_BINDING, _REQUEST, transaction_id, body, key, True)

    def _arm(self, check: _Check) -> None:
        transaction = check.transaction
        wake = transaction.poll_timeout()
        if wake is not None and check.cancelled:  # it sends nothing more: only its answer
            wake = transaction.deadline  # may still come, until the deadline
        if wake is not None:
            self._timer_seq += 1
            heapq.heappush(self._timers, (wake, self._timer_seq, check))

    def _forget(self, check: _Check) -> None:
        checks = self._checks
        checks.pop(check.transaction.transaction_id, None)
        key = check.pair.key
        pair_checks = self._pair_checks
        if pair_checks.get(key) is check:
            del pair_checks[key]
        if not checks:  # clear() gives an emptied dict's table back: 160 bytes each
            checks.clear()
            pair_checks.clear()

    # -- bookkeeping -----------------------------------------------------------------------

    def _set_pair_state(
        self, pair: CandidatePair, state: PairState, reason: str | None = None
    ) -> None:
        old = self.checklist.set_state(pair, state)
        if old is not state:
            if old is SUCCEEDED:
                part = self._components[pair.component - 1]
                if part.best is pair:
                    part.best = self._best_succeeded(pair.component)
            self._events.append(PairStateChanged(pair, old, state, reason))

    def _set_state(self, state: ConnectionState) -> None:
        if self.state is not state:
            self.state = state
            error = self.error if state is ConnectionState.FAILED else None
            self._events.append(ConnectionStateChanged(state, error))

    def pairs(self) -> list[CandidatePair]:
        """Every pair of the check list, highest priority first."""
        return sorted(self.checklist.pairs.values(), key=lambda p: (-p.priority, p.seq))
