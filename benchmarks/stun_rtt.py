"""Binding RTT on loopback: icestack's client vs aioice 0.13's, against our server and coturn.

Each client sends sequential Binding requests on one UDP socket; the two clients take
turns in rounds so that both see the same machine state. Our server runs in its own
process (``python -m stun serve``), coturn too, so the server's work is not on the
clients' event loop.

    python -m benchmarks.stun_rtt [--quick] [--json] [--count N] [--server HOST:PORT ...]

With ``--server`` (repeatable) only the servers named are measured, e.g. public ones:
nothing but loopback is contacted unless you name it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aioice import ice as aioice_ice
from aioice import stun as aioice_stun

import stun
from benchmarks.servers import COTURN_MISSING, coturn, our_server
from stun.client import StunClient, resolve
from stun.uri import parse_server

Address = tuple[str, int]
Probe = Callable[[], Awaitable[None]]


class _AioiceReceiver:
    """The three callbacks aioice's StunProtocol needs from its owner; all unused here."""

    def data_received(self, data: bytes, component: int) -> None:
        pass

    def request_received(self, message: object, addr: object, protocol: object) -> None:
        pass

    def protocol_lost(self, protocol: object) -> None:
        pass


@contextlib.asynccontextmanager
async def _ours(server: Address) -> AsyncIterator[Probe]:
    async with await StunClient.open_udp(("127.0.0.1", 0) if "." in server[0] else None) as c:

        async def probe() -> None:
            request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            response = await c.request(request, server, timeout=5)
            if response.get(stun.Attr.XOR_MAPPED_ADDRESS) is None:
                raise AssertionError("no mapped address")

        yield probe


@contextlib.asynccontextmanager
async def _aioice(server: Address) -> AsyncIterator[Probe]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: aioice_ice.StunProtocol(_AioiceReceiver()),  # type: ignore[arg-type]
        local_addr=("127.0.0.1", 0) if "." in server[0] else None,
    )
    try:

        async def probe() -> None:
            request = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST)
            response, _ = await asyncio.wait_for(protocol.request(request, server), 5)
            if "XOR-MAPPED-ADDRESS" not in response.attributes:
                raise AssertionError("no mapped address")

        yield probe
    finally:
        transport.close()


async def _measure(server: Address, count: int, rounds: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {"icestack": [], "aioice": []}
    async with _ours(server) as ours, _aioice(server) as theirs:
        probes = {"icestack": ours, "aioice": theirs}
        for probe in probes.values():  # warm up both
            for _ in range(20):
                await probe()
        per_round = max(1, count // rounds)
        for _ in range(rounds):
            for name, probe in probes.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    await probe()
                    samples[name].append(time.perf_counter() - start)
    return {name: _summary(values) for name, values in samples.items()}


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_us": statistics.median(ordered) * 1e6,
        "p90_us": ordered[int(len(ordered) * 0.9)] * 1e6,
        "mean_us": statistics.fmean(ordered) * 1e6,
        "count": float(len(ordered)),
    }


def run(count: int = 2000, servers: list[str] | None = None) -> list[dict[str, Any]]:
    """Measure each server; return one row per server with both clients' figures."""
    rows: list[dict[str, Any]] = []

    def measure(label: str, address: Address) -> None:
        result = asyncio.run(_measure(address, count, rounds=10))
        ours, theirs = result["icestack"]["median_us"], result["aioice"]["median_us"]
        rows.append(_row(f"Binding RTT median, {label}", ours, theirs, "", result))

    if servers:
        for text in servers:
            target = parse_server(text)
            address = asyncio.run(resolve(target.host, target.port))
            measure(str(target), address)
        return rows
    with our_server() as address:
        measure("our server", address)
    with coturn() as coturn_address:
        if coturn_address is None:
            skipped = f"skipped: {COTURN_MISSING}"
            rows.append(_row("Binding RTT median, coturn", None, None, skipped))
        else:
            measure("coturn", coturn_address)
    return rows


def _row(
    metric: str, ours: float | None, theirs: float | None, note: str, detail: Any = None
) -> dict[str, Any]:
    return {
        "metric": metric,
        "unit": "us",
        "better": "lower",
        "icestack": ours,
        "aioice": theirs,
        "ratio": ours / theirs if ours is not None and theirs else None,
        "note": note,
        "detail": detail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200 requests per client")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--count", type=int, default=2000, help="requests per client")
    parser.add_argument(
        "--server", action="append", metavar="HOST:PORT", help="survey this server instead"
    )
    args = parser.parse_args()
    count = 200 if args.quick else args.count
    if args.server:
        count = min(count, 50)  # be gentle with servers that are not ours
    rows = run(count, args.server)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'metric':40} {'icestack':>10} {'aioice':>10} {'ratio':>7}   (lower is better)")
    for row in rows:
        if row["ratio"] is None:
            print(f"{row['metric']:40} {row['note']}")
            continue
        print(
            f"{row['metric']:40} {row['icestack']:>8.1f}us {row['aioice']:>8.1f}us"
            f" {row['ratio']:>6.2f}x"
        )


if __name__ == "__main__":
    main()
