"""TURN client speed: icestack's vs aioice 0.13's, against the same coturn, in one run.

(a) Allocation time over UDP, TCP and TLS: the median of fresh allocations (new socket
    or connection each, 401 challenge included, released after), the two clients taking
    turns allocation by allocation.
(b) Relayed round trips per second: 100-byte datagrams in batches in flight, client ->
    coturn -> UDP echo peer -> coturn -> client, through a ChannelData channel, received
    by a callback (ours: ``Allocation.set_data_handler``; aioice: the protocol's
    ``datagram_received``); and the client's CPU per round-tripped datagram
    (``time.process_time``, user + system, of this process only: coturn and the echo
    peer run in their own processes; the peer is coturn's ``turnutils_peer`` when
    installed, else a Python one). The same loop straight to the echo peer over a plain
    asyncio UDP endpoint is the baseline: our CPU per relayed datagram may be at most
    1.15x that. For transparency the same loop also runs over ``stun.datagram``, the
    leaner socket loop our TURN client itself uses (the cost of TURN alone). The four
    clients take turns, round by round, after a warm-up that binds the channels
    (checked: ours counts ChannelData sent, aioice has a channel).

    python -m benchmarks.turn [--quick] [--json]

Only loopback is contacted: coturn and the echo peer are started on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aioice import stun as aioice_stun
from aioice import turn as aioice_turn

import turn
from benchmarks.servers import COTURN_MISSING
from stun.datagram import DatagramSocket, open_datagram_socket
from tests.coturn import Coturn, free_port, turnserver_path

Address = tuple[str, int]
Send = Callable[[bytes, Address], None]
"""``sendto(data, peer)``: each client's own send method, called directly."""

USER, PASSWORD = "alice", "benchmark-password"
PAYLOAD = bytes(range(100))
BATCH = 32
"""Datagrams in flight per batch."""
BATCH_TIMEOUT = 1.0
"""Seconds to wait for a batch's echoes before counting the missing ones as lost."""
MAX_BATCHES = 1_000_000
"""A bound on the batches of one timed section (the time budget ends it long before)."""

MISMATCH_RETRIES = 5
"""aioice allocations retried after a 437 (see :func:`_allocate_aioice`)."""

ECHO_PEER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
recvfrom, sendto = s.recvfrom, s.sendto
while True:
    data, addr = recvfrom(2048)
    sendto(data, addr)
"""


# -- the receiving side, identical for the three clients -------------------------------------


class _Counter:
    """Counts echoes; wakes the sender when a batch is complete."""

    __slots__ = ("received", "target", "waiter")

    def __init__(self) -> None:
        self.received = 0
        self.target = 0
        self.waiter: asyncio.Future[None] | None = None

    def on_data(self, data: bytes, addr: object) -> None:
        self.received += 1
        if self.received >= self.target:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


class _Receiver(asyncio.DatagramProtocol):
    """The application protocol of the plain UDP endpoint and of aioice's relay."""

    def __init__(self, counter: _Counter) -> None:
        self.datagram_received = counter.on_data  # type: ignore[method-assign]
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


@dataclass
class _Sample:
    received: int
    lost: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.received / self.wall

    @property
    def cpu_per_datagram(self) -> float:
        return self.cpu / max(1, self.received)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _batches(send: Send, peer: Address, counter: _Counter, seconds: float) -> _Sample:
    """Send batches of :data:`BATCH` to ``peer`` and wait for their echoes until
    ``seconds`` pass (one batch at least)."""
    loop = asyncio.get_running_loop()
    payload, batch, timeout = PAYLOAD, BATCH, BATCH_TIMEOUT
    lost = 0
    counter.received = counter.target = 0
    start_cpu, start = time.process_time(), time.perf_counter()
    deadline = start + seconds
    for _ in range(MAX_BATCHES):
        counter.target += batch
        waiter = counter.waiter = loop.create_future()
        guard = loop.call_later(timeout, _expire, waiter)
        for _ in range(batch):
            send(payload, peer)
        await waiter
        guard.cancel()
        if counter.received < counter.target:  # timed out: the rest count as lost
            lost += counter.target - counter.received
            counter.received = counter.target
        if time.perf_counter() >= deadline:
            break
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    counter.waiter = None
    return _Sample(counter.received - lost, lost, wall, cpu)


# -- the three clients -----------------------------------------------------------------------


class _Client:
    """One way of getting datagrams to the echo peer and back."""

    name = ""

    def __init__(self, echo: Address) -> None:
        self.echo = echo
        self.counter = _Counter()
        self.send: Send = lambda data, peer: None

    async def open(self) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Raise unless the warm-up went the way the measurement assumes."""

    async def close(self) -> None:
        raise NotImplementedError


class _Ours(_Client):
    name = "icestack"

    def __init__(self, server: Address, echo: Address) -> None:
        super().__init__(echo)
        self.server = server
        self.allocation: turn.Allocation | None = None
        self.sent_before = 0
        self.indications: int | None = None

    async def open(self) -> None:
        allocation = self.allocation = await turn.allocate(self.server, USER, PASSWORD)
        allocation.set_data_handler(self.counter.on_data)
        self.send = allocation.sendto

    def check(self) -> None:
        assert self.allocation is not None
        stats = self.allocation.stats
        if self.indications is None:  # after the warm-up: no Send indication from now on
            self.indications = stats.sent_indications
        if stats.sent_channel_data <= self.sent_before or stats.sent_indications > self.indications:
            raise AssertionError(f"icestack did not relay through ChannelData: {stats}")
        self.sent_before = stats.sent_channel_data

    async def close(self) -> None:
        if self.allocation is not None:
            await self.allocation.close()


class _Aioice(_Client):
    name = "aioice"

    def __init__(self, server: Address, echo: Address) -> None:
        super().__init__(echo)
        self.server = server
        self.transport: Any = None
        self.receiver: _Receiver | None = None

    async def open(self) -> None:
        self.transport, self.receiver = await aioice_turn.create_turn_endpoint(
            lambda: _Receiver(self.counter), self.server, USER, PASSWORD
        )
        self.send = self.transport.sendto

    def check(self) -> None:
        inner = self.transport._TurnTransport__inner_protocol
        if inner.peer_to_channel.get(self.echo) is None:
            raise AssertionError("aioice did not bind a channel")

    async def close(self) -> None:
        if self.transport is not None and self.receiver is not None:
            self.transport.close()
            await asyncio.wait_for(self.receiver.lost, 10)


class _Plain(_Client):
    name = "plain UDP"

    def __init__(self, echo: Address) -> None:
        super().__init__(echo)
        self.transport: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self.counter), remote_addr=self.echo
        )
        self.send = self.transport.sendto  # connected: (data, the echo peer) is allowed

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _LeanPlain(_Client):
    """Plain UDP on the socket loop our TURN client itself runs on (``stun.datagram``):
    the like-for-like floor, where :class:`_Plain` is what asyncio users have."""

    name = "plain UDP, lean socket"

    def __init__(self, echo: Address) -> None:
        super().__init__(echo)
        self.socket: DatagramSocket | None = None

    async def open(self) -> None:
        self.socket = await open_datagram_socket(
            self.counter.on_data, _raise, remote_address=self.echo
        )
        send = self.socket.send
        self.send = lambda data, peer: send(data)

    async def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


def _raise(exc: OSError) -> None:
    raise exc


async def _relay(server: Address, echo: Address, seconds: float, rounds: int) -> dict[str, Any]:
    """Round trips/s and CPU per datagram of the four clients, their rounds interleaved."""
    clients: list[_Client] = [
        _Ours(server, echo),
        _Aioice(server, echo),
        _Plain(echo),
        _LeanPlain(echo),
    ]
    samples: dict[str, list[_Sample]] = {client.name: [] for client in clients}
    try:
        for client in clients:
            await client.open()
            for _ in range(3):  # the first batch binds the channel; then warm up
                if (await _batches(client.send, client.echo, client.counter, 0.0)).received == 0:
                    raise AssertionError(f"{client.name}: no echo came back")
            await _batches(client.send, client.echo, client.counter, min(0.2, seconds))
            client.check()
        for _ in range(rounds):
            for client in clients:
                sample = await _batches(client.send, client.echo, client.counter, seconds)
                samples[client.name].append(sample)
                client.check()
    finally:
        for client in clients:
            await client.close()
    return {name: _relay_summary(values) for name, values in samples.items()}


def _relay_summary(values: list[_Sample]) -> dict[str, Any]:
    return {
        "rate": statistics.median(s.rate for s in values),
        "cpu_per_datagram": statistics.median(s.cpu_per_datagram for s in values),
        "rates": [s.rate for s in values],
        "cpu_per_datagram_all": [s.cpu_per_datagram for s in values],
        "received": sum(s.received for s in values),
        "lost": sum(s.lost for s in values),
    }


# -- allocation time -------------------------------------------------------------------------


async def _allocate_ours(server: Address, transport: str, context: ssl.SSLContext | None) -> float:
    start = time.perf_counter()
    allocation = await turn.allocate(
        server,
        USER,
        PASSWORD,
        transport="tls" if transport == "tls" else "tcp" if transport == "tcp" else "udp",
        ssl=context,
        timeout=10,
    )
    elapsed = time.perf_counter() - start
    await allocation.close()
    return elapsed


async def _allocate_aioice(
    server: Address, transport: str, context: ssl.SSLContext | None
) -> float:
    """One aioice allocation, timed; released before returning.

    coturn keeps a released UDP allocation's 5-tuple for a while, so a new socket that
    happens to get the same local port is answered 437. Ours retries from a new port by
    itself (and that attempt is in its time); aioice gives up, so it is retried here and
    only the attempt that succeeded is timed.
    """
    for attempt in range(MISMATCH_RETRIES):
        start = time.perf_counter()
        try:
            relay, receiver = await asyncio.wait_for(
                aioice_turn.create_turn_endpoint(
                    lambda: _Receiver(_Counter()),
                    server,
                    USER,
                    PASSWORD,
                    ssl=context if transport == "tls" else None,
                    transport="udp" if transport == "udp" else "tcp",
                ),
                10,
            )
        except aioice_stun.TransactionFailed as exc:
            if exc.response.error_code != 437 or attempt == MISMATCH_RETRIES - 1:
                raise
            continue
        break
    elapsed = time.perf_counter() - start
    relay.close()
    await asyncio.wait_for(receiver.lost, 10)
    return elapsed


async def _allocations(
    servers: dict[str, Address], context: ssl.SSLContext, count: int
) -> dict[str, dict[str, list[float]]]:
    """``count`` allocations per client and transport, the clients alternating."""
    Allocator = Callable[[Address, str, ssl.SSLContext | None], Awaitable[float]]
    clients: dict[str, Allocator] = {"icestack": _allocate_ours, "aioice": _allocate_aioice}
    times: dict[str, dict[str, list[float]]] = {
        transport: {name: [] for name in clients} for transport in servers
    }
    for transport, server in servers.items():
        for allocator in clients.values():  # warm up (imports, first handshakes)
            await allocator(server, transport, context)
        for _ in range(count):
            for name, allocator in clients.items():
                times[transport][name].append(await allocator(server, transport, context))
    return times


# -- running it ------------------------------------------------------------------------------


def _echo_peer() -> tuple[subprocess.Popen[str], Address]:
    """A UDP echo on loopback in its own process: coturn's ``turnutils_peer`` (C) when
    installed, which leaves more of the machine to the client, else a Python one."""
    peer = shutil.which("turnutils_peer")
    if peer is not None:
        port = free_port(["127.0.0.1"])
        process = subprocess.Popen(
            [peer, "-L", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if _echoes(("127.0.0.1", port)):
            return process, ("127.0.0.1", port)
        process.kill()
        process.wait(10)
    process = subprocess.Popen(
        [sys.executable, "-c", ECHO_PEER],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip():
        process.kill()
        raise RuntimeError("the echo peer did not start")
    return process, ("127.0.0.1", int(line))


def _echoes(peer: Address, seconds: float = 5.0) -> bool:
    """Whether ``peer`` echoes a datagram within ``seconds`` (probing every 50 ms)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.05)
        sock.connect(peer)
        for _ in range(int(seconds / 0.05)):
            try:
                sock.send(b"ping")
                if sock.recv(64) == b"ping":
                    return True
            except OSError:  # nothing listening yet (ICMP port unreachable), or no answer
                time.sleep(0.05)
    return False


def _row(metric: str, unit: str, ours: float, other: float, vs: str, goal: str) -> dict[str, Any]:
    """One figure; ``other`` is aioice's, or a baseline's (``vs`` names it) in
    ``baseline``; the ratio is always icestack / ``other``."""
    ratio = ours / other
    limit = float(goal[2:].rstrip("x")) if goal else 0.0
    met = None if not goal else ratio <= limit if goal.startswith("<=") else ratio >= limit
    against_aioice, digits = vs == "aioice", 0 if unit == "/s" else 2
    return {
        "metric": metric,
        "unit": unit,
        "better": "higher" if unit == "/s" else "lower",
        "icestack": ours,
        "aioice": other if against_aioice else None,
        "vs": vs,
        "baseline": None if against_aioice else other,
        "ratio": ratio,
        "goal": goal,
        "met": met,
        "note": "" if against_aioice else f"ratio is icestack / {vs} ({other:,.{digits}f} {unit})",
    }


def _skipped(reason: str) -> dict[str, Any]:
    return {
        "metric": "TURN client (every figure)",
        "unit": "",
        "better": "lower",
        "icestack": None,
        "aioice": None,
        "vs": "aioice",
        "baseline": None,
        "ratio": None,
        "goal": "",
        "met": None,
        "note": f"skipped: {reason}",
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Start coturn and the echo peer, measure, return one row per figure (one skipped
    row when coturn is not installed)."""
    if turnserver_path() is None:
        return [_skipped(COTURN_MISSING)]
    count, seconds, rounds = (5, 0.4, 3) if quick else (20, 1.5, 6)
    echo_process, echo = _echo_peer()
    try:
        with Coturn(users={USER: PASSWORD}, tls=True) as coturn:
            servers = {"udp": coturn.address, "tcp": coturn.address, "tls": coturn.tls_address}
            context = coturn.client_ssl_context()
            times = asyncio.run(_allocations(servers, context, count))
            relay = asyncio.run(_relay(coturn.address, echo, seconds, rounds))
    finally:
        echo_process.terminate()
        echo_process.wait(10)
    rows = []
    for transport, by_client in times.items():
        ours, theirs = (statistics.median(by_client[n]) * 1e3 for n in ("icestack", "aioice"))
        rows.append(
            _row(f"allocation median, {transport.upper()}", "ms", ours, theirs, "aioice", "<=1.00x")
        )
        rows[-1]["detail"] = by_client
    ours, aio, plain = relay["icestack"], relay["aioice"], relay["plain UDP"]
    lean = relay["plain UDP, lean socket"]
    what = f"{len(PAYLOAD)} B, {BATCH} in flight"
    rows.append(
        _row(
            f"relayed round trips/s ({what})", "/s", ours["rate"], aio["rate"], "aioice", ">=1.30x"
        )
    )
    rows.append(
        _row("same, vs plain UDP (no relay)", "/s", ours["rate"], plain["rate"], "plain UDP", "")
    )
    rows.append(
        _row(
            "client CPU per relayed datagram",
            "us",
            ours["cpu_per_datagram"] * 1e6,
            aio["cpu_per_datagram"] * 1e6,
            "aioice",
            "",
        )
    )
    rows.append(
        _row(
            "client CPU per datagram vs plain UDP",
            "us",
            ours["cpu_per_datagram"] * 1e6,
            plain["cpu_per_datagram"] * 1e6,
            "plain UDP",
            "<=1.15x",
        )
    )
    rows.append(
        _row(
            "same, vs plain UDP on our lean socket",
            "us",
            ours["cpu_per_datagram"] * 1e6,
            lean["cpu_per_datagram"] * 1e6,
            "lean UDP",
            "",
        )
    )
    rows[-1]["detail"] = relay
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run (about 10 s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows = run(args.quick)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'metric':44} {'icestack':>10} {'other':>10} {'(other is)':11} {'ratio':>7}"
        f" {'goal':>8}  met"
    )
    for row in rows:
        if row["ratio"] is None:
            print(f"{row['metric']:44} {row['note']}")
            return
        met = "" if row["met"] is None else "yes" if row["met"] else "NO"
        unit = row["unit"]
        digits = 0 if unit == "/s" else 2
        other = row["aioice"] if row["baseline"] is None else row["baseline"]
        print(
            f"{row['metric']:44} {row['icestack']:>8,.{digits}f}{unit:2}"
            f" {other:>8,.{digits}f}{unit:2} {row['vs']:11} {row['ratio']:>6.2f}x"
            f" {row['goal']:>8}  {met}"
        )
    lost = {name: values["lost"] for name, values in rows[-1]["detail"].items()}
    if any(lost.values()):
        print(f"datagrams lost (counted as not round-tripped): {lost}")


if __name__ == "__main__":
    main()
