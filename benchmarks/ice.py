"""ICE speed: icestack's ``ice.Connection`` / ``ice.Agent`` vs aioice 0.13, in one run.

aioice's behaviour is fixed: Ta 20 ms (a 20 ms sleep between checks in ``connect()``),
aggressive nomination, no process-wide 5 ms rule. Where we compare like with like we run
ours the same way: ``ta=0.020, negotiate_ta=False, nomination="aggressive",
global_pacing=False`` ("aioice-like" below). Both peers of a session run in this process
(so the CPU of both is counted), on 127.0.0.1 unless said otherwise. Every time is taken
after gathering and the exchange of credentials and candidates (end-of-candidates
included) and stops when *both* ``connect()`` calls have returned; sessions of the two
libraries alternate run by run; each row is a median over runs.

1. Time to connected, one host candidate per side (127.0.0.1), aioice-like.
2. Scheduler overhead with regular nomination (ours): connect time minus the pacing
   floor, for Ta = 50 ms (the default), 20 and 5 ms (proposed by both sides and signalled,
   as ``a=ice-pacing`` would), without and with the process-wide 5 ms rule. One host
   candidate each: the controlling agent checks at 0 and nominates at Ta, the floor. With
   the rule on, the second agent of the process takes the 5 ms slot for its first check,
   so the nomination can leave at 10 ms at the earliest: the floor is max(Ta, 10 ms).
   aioice has no regular nomination, so these rows have no aioice column; the first
   one's note gives aioice's own overhead over its 20 ms pacing (its aggressive connect
   time minus 20 ms), for reference. A negative overhead is the timer lead of
   ``ice.driver.TIMER_LEAD``: the nomination left before the floor on the wall clock
   (at it on the agent's clock). The "machine" rows time the same wake-up without ICE:
   a loop timer of Ta (through :mod:`ice.timers`, as our agents' are), then one UDP
   request and answer between two bare sockets whose handlers do nothing else. What
   they show (a virtual machine's CPU runs several times slower for the first
   milliseconds after an idle stretch) is part of every overhead row.
3. N host addresses per side (N = 4, 16, 64): a network namespace created for the run
   (a veth pair, 10.77.0.1..N on one end, 10.77.1.1..N on the other; see
   :mod:`benchmarks.netns`), both agents in a worker process inside it; ours with
   ``address_filter``, aioice with ``get_host_addresses`` patched, each side on its N
   addresses; aioice-like. Skipped (with the reason) without root or namespaces.
4. A relay-only side (TURN over UDP, coturn on 127.0.0.1) vs a host-only side: ours
   ``relay_only=True`` with ``turn_servers``; aioice ``transport_policy=RELAY`` with
   ``turn_server``; aioice-like; the relay-only side is controlling. The clock starts
   after gathering (the allocation) and the exchange.
5. Scale: P pairs of connections (2P ``Connection`` objects) in one fresh worker process,
   aioice-like, on 127.0.0.1. Wall time and process CPU (``time.process_time``) from the
   first constructor to the last ``connect()`` returning: construction, gathering
   (socket binding), the exchange and the checks; CPU per connection divides by 2P.
   Memory per connection: ``tracemalloc`` (Python heap) with every connection connected,
   after ``gc.collect()``, minus the baseline, / 2P, in a separate run (tracemalloc
   slows everything down); the RSS growth of the timed run is in the details. ours and
   aioice each run in their own process, one after the other. Also from that process:
   idle CPU per connected connection-second (consent freshness, RFC 7675), measured over
   a window that starts 3 s after connecting and holds our first consent checks (the run
   fails if there are none). The details count cyclic-GC collections and our agents'
   checks and retransmissions per connection.
6. CPU per connectivity check. Ours, sans-I/O: two ``ice.Agent`` objects wired directly
   (no sockets, virtual clock), 10 host candidates each, so 100 pairs; regular nomination
   with a nomination wait that never ends, and the datagrams of the top pair dropped, so
   that every other pair is checked (both agents' ordinary and triggered checks);
   ``process_time`` from ``start()`` until neither agent has a check left to send,
   divided by the checks answered (responses received and processed by the checker);
   the loop that carries datagrams and drains events is counted too, as a shell's is.
   It covers building and signing the request (transaction id, HMAC, CRC), the peer's
   parse + fingerprint + integrity + username check + role check, its signed
   response, the checker's parse + verification + pair bookkeeping, plus the scheduler
   (pacing, heaps, timers), transactions and events. aioice cannot run without sockets
   and tasks, so its column is its codec path alone: ``Connection.build_request`` +
   ``add_message_integrity`` (which adds FINGERPRINT) + ``bytes()``, then
   ``parse_message`` (fingerprint) + ``_valid_username`` + ``check_message_integrity``,
   the response (XOR-MAPPED-ADDRESS, integrity, fingerprint), ``parse_message`` +
   ``check_message_integrity`` of it - no transaction, future, timer, task or check list:
   a lower bound of aioice's real cost, so the ratio flatters aioice. The same codec path
   on our ``stun`` codec is in the details.

    python -m benchmarks.ice [--quick] [--json] [--only 1,2,...]

Traffic stays on loopback (and inside the namespace of 3, which is removed afterwards);
every loop that sends is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import gc
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aioice
import aioice.ice
from aioice import stun as aio

import ice
import stun
from benchmarks import netns
from ice.agent import DEFAULT_TA
from ice.candidate import CandidateType, candidate_priority, make_foundation
from ice.pacer import GLOBAL_INTERVAL
from ice.timers import timer_queue
from tests.coturn import Coturn, turnserver_path
from tests.ice.aioice_peer import gather_loopback, loopback_only, make_aioice

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
AIOICE_TA = 0.020
AIOICE_LIKE: dict[str, Any] = {
    "ta": AIOICE_TA,
    "negotiate_ta": False,
    "nomination": "aggressive",
    "global_pacing": False,
}
"""Our settings that match aioice's fixed behaviour."""

CONNECT_TIMEOUT = 15.0
"""Seconds both connect() calls of one session may take (a failure, not a sample)."""
SETTLE = 0.010
"""Pause before each session's exchange: the previous session's last check must not hold
the process-wide 5 ms slot (with ``global_pacing``) when the next one starts."""
RETRIES = 5
"""aioice sessions retried when a TURN allocation fails (coturn answers 437 to a new
socket on a released allocation's port); the failed attempt is not timed."""
WORKER_TIMEOUT = 900.0
USER, PASSWORD = "alice", "benchmark-password"

SANSIO_CANDIDATES = 10
"""Host candidates per agent in metric 6 (10 x 10 = 100 pairs, the default cap)."""
MAX_STEPS = 1_000_000
"""A bound on the virtual-clock steps of one sans-I/O session."""
IDLE_SETTLE = 3.0

Goal = tuple[str, str, float]
"""(kind, op, limit): kind "ratio" compares icestack/aioice, "value" icestack's figure."""


# -- rows and the table ----------------------------------------------------------------------


def _goal_text(goal: Goal | None, unit: str) -> str:
    if goal is None:
        return ""
    kind, op, limit = goal
    return f"{op}{limit:.2f}x" if kind == "ratio" else f"{op}{limit:g} {unit}"


def _row(
    metric: str,
    unit: str,
    ours: float | None,
    theirs: float | None,
    goal: Goal | None = None,
    note: str = "",
    detail: Any = None,
) -> dict[str, Any]:
    ratio = ours / theirs if ours is not None and theirs else None
    met: bool | None = None
    if goal is not None:
        kind, op, limit = goal
        value = ratio if kind == "ratio" else ours
        if value is not None:
            met = value <= limit if op == "<=" else value >= limit
    return {
        "metric": metric,
        "unit": unit,
        "icestack": ours,
        "aioice": theirs,
        "ratio": ratio,
        "better": "lower",  # every ICE metric is a time, a CPU cost or a size
        "goal": _goal_text(goal, unit),
        "met": met,
        "note": note,
        "detail": detail,
    }


def _skipped(metric: str, reason: str) -> dict[str, Any]:
    return _row(metric, "", None, None, note=f"skipped: {reason}")


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def _sides(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Medians (ms) of each side's connect time and of the later of the two."""
    return {
        "controlling_ms": _median_ms([a for a, _ in samples]),
        "controlled_ms": _median_ms([b for _, b in samples]),
        "both_ms": _median_ms([max(s) for s in samples]),
        "runs": len(samples),
    }


# -- sessions ----------------------------------------------------------------------------------


def _is_loopback(host: ice.HostAddress) -> bool:
    return host.ip == LOOPBACK


def _ours_loopback(controlling: bool, **options: Any) -> ice.Connection:
    """Our connection with one host candidate, 127.0.0.1."""
    return ice.Connection(
        controlling, include_loopback=True, ipv6=False, address_filter=_is_loopback, **options
    )


def _introduce(conn: ice.Connection, peer: ice.Connection, candidates: list[ice.Candidate]) -> None:
    """What signalling would do: the peer's credentials and Ta (``a=ice-pacing`` is only
    sent when not 50 ms), its candidates through their SDP form, end-of-candidates."""
    ta = None if peer.ta == DEFAULT_TA else peer.ta
    conn.set_remote_credentials(peer.local_ufrag, peer.local_pwd, ta=ta)
    for candidate in candidates:
        conn.add_remote_candidate(ice.Candidate.from_sdp(candidate.to_sdp()))
    conn.add_remote_candidate(None)


async def _timed(*connects: Callable[[], Awaitable[object]]) -> list[float]:
    """Run the connect() calls concurrently; seconds from now until each returned."""
    start = time.perf_counter()

    async def one(connect: Callable[[], Awaitable[object]]) -> float:
        await connect()
        return time.perf_counter() - start

    gathered = asyncio.gather(*(one(connect) for connect in connects))
    return list(await asyncio.wait_for(gathered, CONNECT_TIMEOUT))


async def _ours_session(a: ice.Connection, b: ice.Connection) -> tuple[float, float]:
    """Gather, exchange, then time both connect() calls; both are closed after."""
    try:
        local_a = await asyncio.wait_for(a.gather_all(), CONNECT_TIMEOUT)
        local_b = await asyncio.wait_for(b.gather_all(), CONNECT_TIMEOUT)
        if not local_a or not local_b:
            raise RuntimeError(f"icestack gathered nothing: {a.failures} {b.failures}")
        await asyncio.sleep(SETTLE)
        _introduce(a, b, local_b)
        _introduce(b, a, local_a)
        time_a, time_b = await _timed(a.connect, b.connect)
    finally:
        await a.close()
        await b.close()
    return time_a, time_b


class _Wake:
    """A sleeper for :class:`ice.timers.TimerQueue` that sends one datagram."""

    def __init__(self, send: Callable[[], object]) -> None:
        self._timer_seq = 0
        self._send = send

    def _on_timer(self) -> None:
        self._send()


async def _bare_wake(ta: float) -> tuple[float, float]:
    """The machine's part of metric 2: a loop timer of ``ta``, then one request and answer
    between two bare UDP sockets on 127.0.0.1; seconds from arming to the answer (twice,
    in the shape of a session's sample)."""
    loop = asyncio.get_running_loop()
    asker, answerer = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    answered: asyncio.Future[float] = loop.create_future()

    def answer() -> None:
        data, source = answerer.recvfrom(2048)
        answerer.sendto(data, source)

    def receive() -> None:
        asker.recvfrom(2048)
        if not answered.done():
            answered.set_result(loop.time())

    try:
        for sock in (asker, answerer):
            sock.setblocking(False)
            sock.bind((LOOPBACK, 0))
        loop.add_reader(answerer.fileno(), answer)
        loop.add_reader(asker.fileno(), receive)
        await asyncio.sleep(SETTLE)
        start = loop.time()
        wake = _Wake(lambda: asker.sendto(bytes(100), answerer.getsockname()))
        timer_queue(loop).schedule(wake, start + ta)
        elapsed = await asyncio.wait_for(answered, CONNECT_TIMEOUT) - start
    finally:
        for sock in (asker, answerer):
            loop.remove_reader(sock.fileno())
            sock.close()
    return elapsed, elapsed


def _aioice_lines(conn: aioice.Connection) -> list[str]:
    return [candidate.to_sdp() for candidate in conn.local_candidates]


async def _aioice_introduce(conn: aioice.Connection, peer: aioice.Connection) -> None:
    conn.remote_username = peer.local_username
    conn.remote_password = peer.local_password
    for line in _aioice_lines(peer):
        await conn.add_remote_candidate(aioice.Candidate.from_sdp(line))
    await conn.add_remote_candidate(None)


Gather = Callable[[aioice.Connection], Awaitable[None]]


Session = Callable[[], Awaitable[tuple[float, float]]]


async def _alternate(
    ours: Session, theirs: Session, runs: int
) -> dict[str, list[tuple[float, float]]]:
    """One warm-up session each, then ``runs`` sessions of each side, taking turns."""
    samples: dict[str, list[tuple[float, float]]] = {"icestack": [], "aioice": []}
    await ours()
    await theirs()
    for _ in range(runs):
        samples["icestack"].append(await ours())
        samples["aioice"].append(await theirs())
    return samples


async def _aioice_session(
    make: Callable[[], tuple[aioice.Connection, aioice.Connection]],
    gather_a: Gather,
    gather_b: Gather,
) -> tuple[float, float]:
    """aioice's counterpart of :func:`_ours_session` (retried when gathering yields no
    candidate: a failed TURN allocation)."""
    for _ in range(RETRIES):
        a, b = make()
        try:
            await asyncio.wait_for(gather_a(a), CONNECT_TIMEOUT)
            await asyncio.wait_for(gather_b(b), CONNECT_TIMEOUT)
            if not a.local_candidates or not b.local_candidates:
                continue
            await asyncio.sleep(SETTLE)
            await _aioice_introduce(a, b)
            await _aioice_introduce(b, a)
            time_a, time_b = await _timed(a.connect, b.connect)
            return time_a, time_b
        finally:
            await a.close()
            await b.close()
    raise RuntimeError(f"aioice gathered no candidate in {RETRIES} attempts")


def _aioice_loopback_pair() -> tuple[aioice.Connection, aioice.Connection]:
    return make_aioice(True), make_aioice(False)


# -- 1 and 2: loopback, aggressive and regular nomination ---------------------------------------

PACING_CONFIGS = [(ta, pacing) for pacing in (False, True) for ta in (0.050, 0.020, 0.005)]
MACHINE_TAS = (0.050, 0.020, 0.005)


async def _loopback(runs: int, regular: bool) -> dict[str, list[tuple[float, float]]]:
    """Metric 1 (and, with ``regular``, metric 2), the sessions interleaved."""

    def ours_aggressive() -> Awaitable[tuple[float, float]]:
        return _ours_session(
            _ours_loopback(True, **AIOICE_LIKE), _ours_loopback(False, **AIOICE_LIKE)
        )

    def aioice_session() -> Awaitable[tuple[float, float]]:
        return _aioice_session(_aioice_loopback_pair, gather_loopback, gather_loopback)

    def ours_regular(ta: float, pacing: bool) -> Callable[[], Awaitable[tuple[float, float]]]:
        options = {"ta": ta, "nomination": "regular", "global_pacing": pacing}

        async def session() -> tuple[float, float]:
            a, b = _ours_loopback(True, **options), _ours_loopback(False, **options)
            result = await _ours_session(a, b)
            if a.agent.ta != ta or b.agent.ta != ta:
                raise AssertionError(f"Ta was {a.agent.ta}/{b.agent.ta}, not {ta}")
            return result

        return session

    sessions: dict[str, Callable[[], Awaitable[tuple[float, float]]]] = {
        "icestack": ours_aggressive,
        "aioice": aioice_session,
    }
    if regular:
        for ta, pacing in PACING_CONFIGS:
            sessions[f"regular {ta * 1e3:g} {pacing}"] = ours_regular(ta, pacing)
        for ta in MACHINE_TAS:
            sessions[f"machine {ta * 1e3:g}"] = functools.partial(_bare_wake, ta)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in sessions}
    for session in sessions.values():  # warm up
        await session()
    for _ in range(runs):
        for name, session in sessions.items():
            samples[name].append(await session())
    return samples


def _loopback_rows(samples: dict[str, list[tuple[float, float]]]) -> list[dict[str, Any]]:
    ours, theirs = _sides(samples["icestack"]), _sides(samples["aioice"])
    rows = [
        _row(
            "1. connect, 1 host cand./side (loopback)",
            "ms",
            ours["both_ms"],
            theirs["both_ms"],
            ("ratio", "<=", 0.10),
            detail={"icestack": ours, "aioice": theirs},
        )
    ]
    aioice_overhead = theirs["both_ms"] - AIOICE_TA * 1e3
    for ta, pacing in PACING_CONFIGS:
        name = f"regular {ta * 1e3:g} {pacing}"
        if name not in samples:
            continue
        sides = _sides(samples[name])
        rule = "5 ms rule on" if pacing else "no 5 ms rule"
        rows.append(
            _row(
                f"2. sched. overhead, regular, Ta {ta * 1e3:g} ms, {rule}",
                "ms",
                sides["both_ms"] - max(ta, 2 * GLOBAL_INTERVAL if pacing else 0) * 1e3,
                None,  # aioice has no regular nomination: nothing to divide by
                ("value", "<=", 1.0),
                note=(
                    f"connect: controlling {sides['controlling_ms']:.2f} ms, controlled"
                    f" {sides['controlled_ms']:.2f} ms"
                    + (
                        ""
                        if len(rows) > 1
                        else f"; for reference, aioice's overhead over its own 20 ms"
                        f" pacing (aggressive): {aioice_overhead:.2f} ms"
                    )
                ),
                detail={"icestack": sides, "aioice": theirs},
            )
        )
    for ta in MACHINE_TAS:
        name = f"machine {ta * 1e3:g}"
        if name in samples:
            sides = _sides(samples[name])
            rows.append(
                _row(
                    f"2. machine: timer of Ta {ta * 1e3:g} ms + bare UDP round trip",
                    "ms",
                    sides["both_ms"] - ta * 1e3,
                    None,
                    note=f"Ta {ta * 1e3:g} ms: part of the overhead rows above (see doc)",
                    detail={"icestack": sides},
                )
            )
    return rows


# -- 3: N addresses per side, in a network namespace ---------------------------------------------


def _only(addresses: list[str]) -> Callable[[ice.HostAddress], bool]:
    wanted = frozenset(addresses)
    return lambda host: host.ip in wanted


def _aioice_gather_on(addresses: list[str]) -> Gather:
    async def gather(conn: aioice.Connection) -> None:
        original = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)
        try:
            await conn.gather_candidates()
        finally:
            aioice.ice.get_host_addresses = original
        if len(conn.local_candidates) != len(addresses):
            raise RuntimeError(f"aioice gathered {len(conn.local_candidates)} candidates")

    return gather


async def _addresses_worker(side_a: list[str], side_b: list[str], runs: int) -> dict[str, Any]:
    """Inside the namespace: sessions with ``len(side_a)`` addresses per side."""

    async def ours() -> tuple[float, float]:
        a = ice.Connection(True, ipv6=False, address_filter=_only(side_a), **AIOICE_LIKE)
        b = ice.Connection(False, ipv6=False, address_filter=_only(side_b), **AIOICE_LIKE)
        result = await _ours_session(a, b)
        if len(a.local_candidates) != len(side_a) or len(b.local_candidates) != len(side_b):
            raise RuntimeError(f"icestack gathered {len(a.local_candidates)} candidates")
        return result

    async def theirs() -> tuple[float, float]:
        return await _aioice_session(
            _aioice_loopback_pair, _aioice_gather_on(side_a), _aioice_gather_on(side_b)
        )

    return await _alternate(ours, theirs, runs)


def _addresses(counts: list[int], runs: dict[int, int]) -> dict[int, Any] | str:
    """Metric 3: one namespace, a worker process per N; the skip reason if impossible."""
    reason = netns.unavailable()
    if reason is not None:
        return reason
    results: dict[int, Any] = {}
    try:
        with netns.Namespace(max(counts)) as space:
            for count in counts:
                argv = [
                    sys.executable,
                    "-m",
                    "benchmarks.ice",
                    "--worker",
                    "addresses",
                    "--runs",
                    str(runs[count]),
                    "--side-a",
                    ",".join(space.side_a[:count]),
                    "--side-b",
                    ",".join(space.side_b[:count]),
                ]
                results[count] = _run_worker(space.command(argv))
    except OSError as exc:
        return f"no network namespace: {exc}"
    return results


def _run_worker(argv: list[str]) -> Any:
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=WORKER_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"worker {argv[-8:]} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _address_rows(results: dict[int, Any] | str, counts: list[int]) -> list[dict[str, Any]]:
    if isinstance(results, str):
        return [_skipped("3. connect, N host addresses per side", results)]
    goals: dict[int, Goal] = {16: ("ratio", "<=", 0.25), 64: ("ratio", "<=", 0.10)}
    rows = []
    for count in counts:
        samples = results[count]
        ours = _sides([(a, b) for a, b in samples["icestack"]])
        theirs = _sides([(a, b) for a, b in samples["aioice"]])
        rows.append(
            _row(
                f"3. connect, N={count} addresses/side (netns)",
                "ms",
                ours["both_ms"],
                theirs["both_ms"],
                goals.get(count),
                detail={"icestack": ours, "aioice": theirs},
            )
        )
    return rows


# -- 4: relay-only side vs host-only side through coturn -----------------------------------------


async def _relay_sessions(server: tuple[str, int], runs: int) -> dict[str, Any]:
    url = f"turn:{server[0]}:{server[1]}?transport=udp"

    async def ours() -> tuple[float, float]:
        a = ice.Connection(
            True,
            relay_only=True,
            turn_servers=[ice.TurnServer(url, USER, PASSWORD)],
            ipv6=False,
            **AIOICE_LIKE,
        )
        b = _ours_loopback(False, **AIOICE_LIKE)
        result = await _ours_session(a, b)
        types = {c.type for c in a.local_candidates}
        if types != {ice.CandidateType.RELAY}:
            raise AssertionError(f"the relay-only side gathered {types}")
        return result

    def aioice_pair() -> tuple[aioice.Connection, aioice.Connection]:
        a = make_aioice(
            True,
            turn_server=server,
            turn_username=USER,
            turn_password=PASSWORD,
            transport_policy=aioice.TransportPolicy.RELAY,
        )
        return a, make_aioice(False)

    async def gather_relay(conn: aioice.Connection) -> None:
        await conn.gather_candidates()
        types = {c.type for c in conn.local_candidates}
        if types - {"relay"}:
            raise AssertionError(f"aioice's relay-only side gathered {types}")

    async def theirs() -> tuple[float, float]:
        return await _aioice_session(aioice_pair, gather_relay, gather_loopback)

    return await _alternate(ours, theirs, runs)


def _relay(runs: int) -> dict[str, Any] | str:
    if turnserver_path() is None:
        return "coturn (turnserver) is not installed"
    with Coturn(users={USER: PASSWORD}, tcp=False) as coturn:
        return asyncio.run(_relay_sessions(coturn.address, runs))


def _relay_rows(results: dict[str, Any] | str) -> list[dict[str, Any]]:
    name = "4. connect, relay-only vs host side (coturn)"
    if isinstance(results, str):
        return [_skipped(name, results)]
    ours, theirs = _sides(results["icestack"]), _sides(results["aioice"])
    note = (
        f"relay side (controlling) {ours['controlling_ms']:.2f} / {theirs['controlling_ms']:.2f}"
        f" ms, host side {ours['controlled_ms']:.2f} / {theirs['controlled_ms']:.2f} ms"
    )
    detail = {"icestack": ours, "aioice": theirs}
    return [
        _row(name, "ms", ours["both_ms"], theirs["both_ms"], ("ratio", "<=", 0.20), note, detail)
    ]


# -- 5: scale ------------------------------------------------------------------------------------


def _raise_file_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _rss() -> int:
    """Resident set size in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Scale:
    """P pairs of one library's connections: build, gather, exchange, connect, close."""

    def __init__(self, impl: str, count: int) -> None:
        self.impl = impl
        self.count = count
        self.ours: list[tuple[ice.Connection, ice.Connection]] = []
        self.theirs: list[tuple[aioice.Connection, aioice.Connection]] = []

    async def setup(self) -> None:
        """Construct, gather and exchange."""
        if self.impl == "icestack":
            self.ours = [
                (_ours_loopback(True, **AIOICE_LIKE), _ours_loopback(False, **AIOICE_LIKE))
                for _ in range(self.count)
            ]
            gathered = await asyncio.gather(
                *(conn.gather_all() for pair in self.ours for conn in pair)
            )
            for i, (a, b) in enumerate(self.ours):
                _introduce(a, b, gathered[2 * i + 1])
                _introduce(b, a, gathered[2 * i])
        else:
            self.theirs = [_aioice_loopback_pair() for _ in range(self.count)]
            with loopback_only():
                await asyncio.gather(
                    *(conn.gather_candidates() for pair in self.theirs for conn in pair)
                )
            for first, second in self.theirs:
                await _aioice_introduce(first, second)
                await _aioice_introduce(second, first)

    async def connect(self) -> None:
        if self.impl == "icestack":
            connects: list[Awaitable[object]] = [c.connect() for p in self.ours for c in p]
        else:
            connects = [c.connect() for p in self.theirs for c in p]
        await asyncio.wait_for(asyncio.gather(*connects), WORKER_TIMEOUT / 3)
        if self.impl == "icestack" and any(c.selected_pair() is None for p in self.ours for c in p):
            raise AssertionError("an icestack connection has no selected pair")

    def agent_stats(self) -> dict[str, float]:
        """Our agents' counters (checks sent, retransmissions, ...) per connection."""
        totals: dict[str, float] = {}
        for pair in self.ours:
            for conn in pair:
                for name, value in dataclasses.asdict(conn.agent.stats).items():
                    totals[name] = totals.get(name, 0) + value
        return {name: value / (2 * self.count) for name, value in totals.items() if value}

    def consent_checks(self) -> int | None:
        """Consent checks our agents have sent (None for aioice, which does not count)."""
        if not self.ours:
            return None
        return sum(c.agent.stats.consent_checks_sent for p in self.ours for c in p)

    async def close(self) -> None:
        closes = [c.close() for p in self.ours for c in p]
        closes += [c.close() for p in self.theirs for c in p]
        await asyncio.gather(*closes)
        self.ours, self.theirs = [], []


async def _scale_worker(impl: str, count: int, idle: float, memory: bool) -> dict[str, Any]:
    """In a fresh process: the timed run (or, with ``memory``, the tracemalloc run)."""
    limits = _raise_file_limit()
    warm = _Scale(impl, 5)
    await warm.setup()
    await warm.connect()
    await warm.close()
    gc.collect()
    result: dict[str, Any] = {"impl": impl, "pairs": count, "nofile": limits}
    scale = _Scale(impl, count)
    if memory:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        await scale.setup()
        await scale.connect()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        result["traced_bytes_per_connection"] = used / (2 * count)
        await scale.close()
        return result
    collections0 = [generation["collections"] for generation in gc.get_stats()]
    rss0, cpu0, wall0 = _rss(), time.process_time(), time.perf_counter()
    await scale.setup()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    await scale.connect()
    cpu2, wall2 = time.process_time(), time.perf_counter()
    collections = [generation["collections"] for generation in gc.get_stats()]
    result["gc_collections"] = [b - a for a, b in zip(collections0, collections, strict=True)]
    result["agent_stats_per_connection"] = scale.agent_stats()
    gc.collect()
    result.update(
        wall=wall2 - wall0,
        cpu=cpu2 - cpu0,
        setup_wall=wall1 - wall0,
        setup_cpu=cpu1 - cpu0,
        connect_wall=wall2 - wall1,
        connect_cpu=cpu2 - cpu1,
        rss_bytes_per_connection=(_rss() - rss0) / (2 * count),
    )
    if idle > 0:
        await asyncio.sleep(IDLE_SETTLE)
        consent0, cpu3 = scale.consent_checks(), time.process_time()
        await asyncio.sleep(idle)
        cpu = time.process_time() - cpu3
        consent = scale.consent_checks()
        result["idle_cpu_per_connection_second"] = cpu / (2 * count * idle)
        result["idle_seconds"] = idle
        result["idle_consent_checks"] = None if consent is None else consent - (consent0 or 0)
    cpu4, wall4 = time.process_time(), time.perf_counter()
    await scale.close()
    result["close_wall"] = time.perf_counter() - wall4
    result["close_cpu"] = time.process_time() - cpu4
    return result


def _scale(counts: list[int], idle: float) -> dict[str, Any]:
    """Metric 5: a worker process per library and size, ours first; then the memory runs."""
    results: dict[str, Any] = {"timed": {}, "memory": {}}
    base = [sys.executable, "-m", "benchmarks.ice", "--worker", "scale"]
    for count in counts:
        for impl in ("icestack", "aioice"):
            argv = [*base, "--impl", impl, "--count", str(count)]
            if count == counts[0]:
                argv += ["--idle", str(idle)]
            results["timed"].setdefault(count, {})[impl] = _run_worker(argv)
    for impl in ("icestack", "aioice"):
        argv = [*base, "--impl", impl, "--count", str(counts[0]), "--memory"]
        results["memory"][impl] = _run_worker(argv)
    return results


def _scale_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for count, by_impl in results["timed"].items():
        ours, theirs = by_impl["icestack"], by_impl["aioice"]
        detail = {"icestack": ours, "aioice": theirs}
        rows.append(
            _row(
                f"5. {count:,} pairs: wall, build to all connected",
                "s",
                ours["wall"],
                theirs["wall"],
                ("ratio", "<=", 1 / 3),
                note=(
                    f"connect phase alone: {ours['connect_wall']:.2f} s vs"
                    f" {theirs['connect_wall']:.2f} s"
                ),
                detail=detail,
            )
        )
        per = 2 * count
        rows.append(
            _row(
                f"5. {count:,} pairs: CPU per connection",
                "us",
                ours["cpu"] / per * 1e6,
                theirs["cpu"] / per * 1e6,
                ("ratio", "<=", 1 / 3),
                note=(
                    f"RSS growth per connection: {ours['rss_bytes_per_connection'] / 1024:.1f}"
                    f" vs {theirs['rss_bytes_per_connection'] / 1024:.1f} KiB"
                ),
            )
        )
    memory = results["memory"]
    pairs = memory["icestack"]["pairs"]
    rows.append(
        _row(
            f"5. memory per connection ({pairs:,} pairs, tracemalloc)",
            "KiB",
            memory["icestack"]["traced_bytes_per_connection"] / 1024,
            memory["aioice"]["traced_bytes_per_connection"] / 1024,
            ("value", "<=", 10.0),
            detail=memory,
        )
    )
    first = next(iter(results["timed"].values()))
    ours, theirs = first["icestack"], first["aioice"]
    if "idle_seconds" in ours and "idle_seconds" in theirs:
        seconds, pairs = theirs["idle_seconds"], theirs["pairs"]
        consent = ours["idle_consent_checks"]
        ours_idle = ours["idle_cpu_per_connection_second"]
        window = f"{seconds:g} s window from {IDLE_SETTLE:g} s after connecting, {pairs:,} pairs"
        if not consent:  # the window always holds the first consent check (4-6 s)
            raise AssertionError(f"no consent check sent in the idle window: {window}")
        rate = consent / (2 * ours["pairs"] * seconds)
        note = f"ours sent {rate:.3f} consent checks per connection-second; {window}"
        rows.append(
            _row(
                "5. idle CPU per connected conn.-second",
                "us",
                ours_idle * 1e6,
                theirs["idle_cpu_per_connection_second"] * 1e6,
                note=note,
                detail={"icestack": ours_idle, "aioice": theirs["idle_cpu_per_connection_second"]},
            )
        )
    return rows


# -- 6: CPU per connectivity check --------------------------------------------------------------


def _host_candidates(prefix: str, count: int) -> list[ice.Candidate]:
    host = CandidateType.HOST
    return [
        ice.Candidate(
            foundation=make_foundation(host, f"{prefix}{i + 1}", "udp"),
            component=1,
            protocol="udp",
            priority=candidate_priority(host, 65535 - i, 1),
            host=f"{prefix}{i + 1}",
            port=5000,
            type=host,
            base=(f"{prefix}{i + 1}", 5000),
        )
        for i in range(count)
    ]


def _deliver(a: ice.Agent, b: ice.Agent, now: float, blocked: set[tuple[Any, Any]]) -> None:
    """Hand every datagram to the other agent at once, until both are quiet; drain events."""
    for _ in range(MAX_STEPS):
        moved = False
        for source, target in ((a, b), (b, a)):
            for transmit in source.poll_transmits():
                moved = True
                if (transmit.local, transmit.remote) not in blocked:
                    target.handle_datagram(now, transmit.data, transmit.remote, transmit.local)
            while source.poll_event() is not None:
                pass
        if not moved:
            return


@dataclass
class _SansIo:
    cpu: float = 0.0
    answered: int = 0
    sent: int = 0
    per_check: list[float] = field(default_factory=list)


def _sansio_session(size: int, aggressive: bool) -> tuple[float, int, int]:
    """One check-list run of two wired agents: (CPU seconds, checks answered, requests
    sent). ``size`` candidates each; without ``aggressive``, the top pair's datagrams
    are dropped and nomination waits forever, so that every other pair is checked; with
    it (1 candidate each), the run ends when both are connected."""
    options: dict[str, Any] = {
        "ta": AIOICE_TA,
        "negotiate_ta": False,
        "pacer": None,
        "ice_timeout": 1e6,
        "nomination": "aggressive" if aggressive else "regular",
        "nomination_wait": 1e6,
    }
    a, b = ice.Agent(True, **options), ice.Agent(False, **options)
    local_a, local_b = _host_candidates("10.0.0.", size), _host_candidates("10.0.1.", size)
    for agent, mine, theirs, peer in ((a, local_a, local_b, b), (b, local_b, local_a, a)):
        for candidate in mine:
            agent.add_local_candidate(candidate)
        agent.set_remote_credentials(peer.local_ufrag, peer.local_pwd)
        for candidate in theirs:
            agent.add_remote_candidate(candidate)
        agent.add_remote_candidate(None)
    top = (local_a[0].address, local_b[0].address)
    blocked = set() if aggressive else {top, top[::-1]}
    connected = ice.ConnectionState.CONNECTED
    start = time.process_time()
    now = 0.0
    a.start(now)
    b.start(now)
    for _ in range(MAX_STEPS):
        _deliver(a, b, now, blocked)
        if aggressive:
            if a.state is connected and b.state is connected:
                break
        elif not a.checklist.has_work() and not b.checklist.has_work():
            break
        wakes = [t for t in (a.poll_timeout(), b.poll_timeout()) if t is not None]
        if not wakes:
            break
        now = max(now, min(wakes))
        a.handle_timeout(now)
        b.handle_timeout(now)
    cpu = time.process_time() - start
    answered = sum(p.responses_received for x in (a, b) for p in x.checklist.pairs.values())
    sent = a.stats.checks_sent + b.stats.checks_sent
    sent += a.stats.retransmissions + b.stats.retransmissions
    if aggressive and not (a.state is connected and b.state is connected):
        raise AssertionError("the wired agents did not connect")
    if not aggressive and answered < 2 * (size * size - 1):  # both sides, all but the top
        raise AssertionError(f"only {answered} checks answered")
    return cpu, answered, sent


def _sansio(seconds: float, size: int, aggressive: bool) -> _SansIo:
    total = _SansIo()
    _sansio_session(size, aggressive)  # warm up
    for _ in range(100_000):
        cpu, answered, sent = _sansio_session(size, aggressive)
        total.cpu += cpu
        total.answered += answered
        total.sent += sent
        total.per_check.append(cpu / answered)
        if total.cpu >= seconds and len(total.per_check) >= 5:
            break
    return total


class _PairStub:
    """What ``aioice.Connection.build_request`` reads of a pair."""

    component = 1


def _aioice_check_cycle() -> Callable[[], None]:
    """One aioice check, codec only: request built, signed, parsed, verified, answered;
    the answer parsed and verified (see the module docstring)."""
    a, b = aioice.Connection(True), aioice.Connection(False)
    a.remote_username, a.remote_password = b.local_username, b.local_password
    b.remote_username, b.remote_password = a.local_username, a.local_password
    key_b = b.local_password.encode("utf8")
    pair = cast(Any, _PairStub())
    source = ("10.0.0.1", 5000)
    binding, response_class = aio.Method.BINDING, aio.Class.RESPONSE

    def cycle() -> None:
        request = a.build_request(pair, nominate=False)
        request.add_message_integrity(key_b)  # and FINGERPRINT
        data = bytes(request)
        message = aio.parse_message(data)  # checks FINGERPRINT
        if not (
            b._valid_username(message.attributes["USERNAME"])
            and message.check_message_integrity(key_b)
        ):
            raise AssertionError("aioice check did not verify")
        response = aio.Message(binding, response_class, transaction_id=message.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = source
        response.add_message_integrity(key_b)
        answer = aio.parse_message(bytes(response))
        if not answer.check_message_integrity(key_b):
            raise AssertionError("aioice response did not verify")

    return cycle


def _ours_codec_cycle() -> Callable[[], None]:
    """The same codec-only cycle on our ``stun`` codec (for context, in the details)."""
    key = stun.short_term_key("0123456789abcdefghijkl")
    rng = random.SystemRandom()
    source = ("10.0.0.1", 5000)
    binding, request_class, success = stun.Method.BINDING, stun.Class.REQUEST, stun.Class.SUCCESS
    username, priority, controlling = (
        stun.Attr.USERNAME,
        stun.Attr.PRIORITY,
        stun.Attr.ICE_CONTROLLING,
    )
    mapped = stun.Attr.XOR_MAPPED_ADDRESS
    attributes: list[tuple[int, object]] = [
        (username, "abcdefgh:ijklmnop"),
        (priority, 1853824767),
        (controlling, 0x1234567890ABCDEF),
    ]

    def cycle() -> None:
        data = stun.Message(binding, request_class, rng.randbytes(12), attributes).encode(
            key, fingerprint=True
        )
        message = stun.decode(data)
        if not (message.check_fingerprint() and message.check_integrity(key)):
            raise AssertionError("check did not verify")
        message.get(username)
        message.get(priority)
        message.get(controlling)
        reply = stun.Message(binding, success, message.transaction_id, [(mapped, source)]).encode(
            key, fingerprint=True
        )
        answer = stun.decode(reply)
        if not (answer.check_fingerprint() and answer.check_integrity(key)):
            raise AssertionError("response did not verify")
        answer.get(mapped)

    return cycle


def _per_call(fn: Callable[[], None], seconds: float) -> float:
    """Median CPU seconds per call over five rounds of about ``seconds`` / 5 each."""
    count = 200
    for _ in range(20):
        start = time.process_time()
        for _ in range(count):
            fn()
        if time.process_time() - start >= seconds / 25:
            break
        count *= 2
    rounds = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(count * 5):
            fn()
        rounds.append((time.process_time() - start) / (count * 5))
    return statistics.median(rounds)


def _checks(seconds: float) -> dict[str, Any]:
    ours = _sansio(seconds, SANSIO_CANDIDATES, aggressive=False)
    session = _sansio(seconds / 2, 1, aggressive=True)
    return {
        "icestack": statistics.median(ours.per_check),
        "icestack_sessions": len(ours.per_check),
        "icestack_answered": ours.answered,
        "icestack_requests_sent": ours.sent,
        "icestack_1x1_session": statistics.median(session.per_check),
        "icestack_codec_only": _per_call(_ours_codec_cycle(), seconds),
        "aioice_codec_only": _per_call(_aioice_check_cycle(), seconds),
    }


def _check_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _row(
            "6. CPU per connectivity check (see doc)",
            "us",
            results["icestack"] * 1e6,
            results["aioice_codec_only"] * 1e6,
            note=(
                "ours: two wired sans-I/O Agents, 100 pairs, scheduler included; aioice: its"
                f" codec path only (a lower bound). Ours codec-only:"
                f" {results['icestack_codec_only'] * 1e6:.1f} us; ours per check in a whole"
                f" 1x1 aggressive session: {results['icestack_1x1_session'] * 1e6:.1f} us"
            ),
            detail=results,
        )
    ]


# -- running it ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    runs: int
    address_counts: list[int]
    address_runs: dict[int, int]
    scale_counts: list[int]
    idle: float
    check_seconds: float


FULL = Plan(30, [4, 16, 64], {4: 30, 16: 30, 64: 10}, [1000, 5000], 10.0, 2.0)
QUICK = Plan(10, [4, 16], {4: 10, 16: 10}, [200], 5.0, 0.5)


@contextlib.contextmanager
def _phase(name: str, verbose: bool) -> Iterator[None]:
    start = time.perf_counter()
    if verbose:
        print(f"[{name}] ...", file=sys.stderr, flush=True)
    yield
    if verbose:
        print(f"[{name}] {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def run(
    quick: bool = False, only: set[int] | None = None, verbose: bool = False
) -> list[dict[str, Any]]:
    """Measure the selected metrics (all by default); one row per figure."""
    plan = QUICK if quick else FULL
    wanted = only or {1, 2, 3, 4, 5, 6}
    _raise_file_limit()
    rows: list[dict[str, Any]] = []
    if wanted & {1, 2}:
        with _phase("1-2 loopback", verbose):
            samples = asyncio.run(_loopback(plan.runs, regular=2 in wanted))
        rows += _loopback_rows(samples)
    if 3 in wanted:
        with _phase("3 addresses", verbose):
            rows += _address_rows(
                _addresses(plan.address_counts, plan.address_runs), plan.address_counts
            )
    if 4 in wanted:
        with _phase("4 relay", verbose):
            rows += _relay_rows(_relay(plan.runs))
    if 5 in wanted:
        with _phase("5 scale", verbose):
            rows += _scale_rows(_scale(plan.scale_counts, plan.idle))
    if 6 in wanted:
        with _phase("6 checks", verbose):
            rows += _check_rows(_checks(plan.check_seconds))
    return rows


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    digits = 2 if abs(value) < 100 else 1 if abs(value) < 10_000 else 0
    return f"{value:,.{digits}f} {unit}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'metric':52} {'icestack':>13} {'aioice':>13} {'ratio':>7} {'goal':>9}  met")
    notes = []
    for row in rows:
        met = "" if row["met"] is None else "yes" if row["met"] else "NO"
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.3f}x"
        unit = row["unit"]
        print(
            f"{row['metric']:52} {_cell(row['icestack'], unit):>13}"
            f" {_cell(row['aioice'], unit):>13} {ratio:>7} {row['goal']:>9}  {met}"
        )
        if row["note"]:
            notes.append(f"  {row['metric']}: {row['note']}")
    if notes:
        print("notes:")
        print("\n".join(notes))


def _worker(args: argparse.Namespace) -> None:
    if args.worker == "addresses":
        side_a, side_b = args.side_a.split(","), args.side_b.split(",")
        result: Any = asyncio.run(_addresses_worker(side_a, side_b, args.runs))
    else:
        result = asyncio.run(_scale_worker(args.impl, args.count, args.idle, args.memory))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run (about a minute)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--only", help="comma-separated metric numbers (1-6) to run")
    parser.add_argument("--json-file", help="also write the JSON rows to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    hidden = argparse.SUPPRESS
    parser.add_argument("--worker", choices=["addresses", "scale"], help=hidden)
    parser.add_argument("--side-a", help=hidden)
    parser.add_argument("--side-b", help=hidden)
    parser.add_argument("--runs", type=int, default=10, help=hidden)
    parser.add_argument("--impl", choices=["icestack", "aioice"], help=hidden)
    parser.add_argument("--count", type=int, default=0, help=hidden)
    parser.add_argument("--idle", type=float, default=0.0, help=hidden)
    parser.add_argument("--memory", action="store_true", help=hidden)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    only = {int(n) for n in args.only.split(",")} if args.only else None
    rows = run(args.quick, only, args.verbose)
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(rows, indent=2) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)


if __name__ == "__main__":
    main()
