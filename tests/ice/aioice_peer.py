"""aioice as an independent ICE peer for interop tests and benchmarks, on loopback only.

aioice gathers its host candidates from ``aioice.ice.get_host_addresses``, which skips
127.0.0.1 and ::1, so it must be patched for a loopback-only peer: ``loopback_only()`` makes
it return ``["127.0.0.1"]`` (gathering happens in ``gather_candidates()``, so that call is
what must run inside the context). The adapters speak ``candidate:...`` lines, the RFC 8839
attribute value without ``a=``; ``aioice.Candidate.from_sdp`` wants them *without* the
``candidate:`` prefix (it would silently keep it in the foundation).

Typical use::

    conn = make_aioice(controlling=False)
    await gather_loopback(conn)
    ufrag, pwd, candidates = aioice_offer(conn)
    ...  # hand them to our agent, get its credentials and candidates back
    await aioice_accept(conn, their_ufrag, their_pwd, their_candidates)
    await conn.connect()
    await conn.send(b"ping")
    await conn.close()

Timing facts worth knowing (aioice 0.13): ``connect()`` paces checks with a 20 ms sleep and
returns no sooner than 20 ms; a check retransmits at 0.5, 1, 2, 4, 8, 16 s and times out
after 63.5 s, so a dead remote candidate fails ``connect()`` only after ~63.5 s.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from typing import Any

import aioice
import aioice.ice

LOOPBACK = "127.0.0.1"

_CANDIDATE_PREFIX = "candidate:"


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [LOOPBACK] if use_ipv4 else []


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Make aioice gather only 127.0.0.1 host candidates while the context is active.

    Patches ``aioice.ice.get_host_addresses`` (looked up as a module global by
    ``Connection.gather_candidates``) and restores it on exit. Usable as a fixture body::

        @pytest.fixture
        def aioice_loopback() -> Iterator[None]:
            with loopback_only():
                yield
    """
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = _loopback_host_addresses
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def _require_loopback(host: str, what: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{what} {host!r} is not a loopback address")


def make_aioice(controlling: bool, **kwargs: Any) -> aioice.Connection:
    """Create an aioice Connection for one component, IPv4 only.

    ``kwargs`` go to ``aioice.Connection`` and may override ``components`` and
    ``use_ipv6``; a ``stun_server`` or ``turn_server`` must be on loopback. Candidates are
    not gathered yet: call ``gather_loopback()`` (or ``gather_candidates()`` inside
    ``loopback_only()``).
    """
    for key in ("stun_server", "turn_server"):
        server = kwargs.get(key)
        if server is not None:
            _require_loopback(server[0], key)
    options: dict[str, Any] = {"components": 1, "use_ipv6": False}
    options.update(kwargs)
    return aioice.Connection(ice_controlling=controlling, **options)


async def gather_loopback(conn: aioice.Connection) -> None:
    """Gather ``conn``'s candidates with ``loopback_only()`` and check they are loopback."""
    with loopback_only():
        await conn.gather_candidates()
    for candidate in conn.local_candidates:
        _require_loopback(candidate.host, "aioice gathered candidate")


def aioice_offer(conn: aioice.Connection) -> tuple[str, str, list[str]]:
    """Return ``conn``'s ufrag, pwd and candidates as ``candidate:...`` lines.

    The candidates must have been gathered. aioice's lines carry no ``generation``; its
    foundations are 32 hex digits (an MD5), its host priority is 2130706431 - component + 1.
    """
    candidates = conn.local_candidates
    if not candidates:
        raise RuntimeError("aioice has no local candidates: gather them first")
    return (
        conn.local_username,
        conn.local_password,
        [_CANDIDATE_PREFIX + candidate.to_sdp() for candidate in candidates],
    )


def _parse_candidate(line: str) -> aioice.Candidate:
    line = line.strip()
    line = line.removeprefix("a=")
    line = line.removeprefix(_CANDIDATE_PREFIX)
    candidate = aioice.Candidate.from_sdp(line)
    _require_loopback(candidate.host, "remote candidate")
    return candidate


async def aioice_accept(
    conn: aioice.Connection, ufrag: str, pwd: str, candidates: list[str]
) -> None:
    """Give ``conn`` the remote credentials and candidates, then end-of-candidates.

    ``candidates`` are ``candidate:...`` lines (an ``a=`` prefix or none at all is also
    accepted); each must be on loopback. aioice ignores, with only a log line, candidates of
    a type other than host/srflx/relay and candidates it cannot pair (e.g. TCP).
    """
    parsed = [_parse_candidate(line) for line in candidates]
    conn.remote_username = ufrag
    conn.remote_password = pwd
    for candidate in parsed:
        await conn.add_remote_candidate(candidate)
    await conn.add_remote_candidate(None)
