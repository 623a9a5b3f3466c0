"""Survey STUN servers: success rate, RTT distribution, mapped-address consistency.

Each server gets ``--count`` Binding requests from one socket of our client
(:class:`stun.StunClient`; a TLS connection for ``stuns:`` URIs), one every ``--interval`` ms
whether or not earlier ones were answered, each with the RFC 8489 retransmissions cut at
``--timeout``. A request is sent only if its timeout ends before the server's
``--deadline``, so every server takes that long at most. The RTT runs from a request's
first transmission to its response; the mapping is consistent when every response
carries the same XOR-MAPPED-ADDRESS (MAPPED-ADDRESS from servers without it).

    python -m benchmarks.stun_servers [--server HOST[:PORT] | stun:URI ...] [--count N]
        [--interval MS] [--timeout S] [--deadline S] [--json]

Without ``--server`` it starts our server (``python -m stun serve``) and coturn, when
installed, on 127.0.0.1 and surveys those: nothing else is contacted unless you name it.
Exit codes: 0 every server answered, 1 one did not answer at all, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import stun
from benchmarks.servers import COTURN_MISSING, coturn, our_server
from benchmarks.table import aligned
from stun import cli
from stun.client import StunClient, resolve
from stun.uri import ServerAddress, format_address, parse_server

Address = tuple[str, int]
PERCENTILES = (50, 90, 99)
RTT_COLUMNS = ("min", *(f"p{p}" for p in PERCENTILES), "max")


@dataclass(frozen=True)
class Plan:
    """How hard to probe each server."""

    count: int
    interval: float
    timeout: float
    deadline: float


@dataclass
class Survey:
    """What one server answered."""

    label: str
    target: ServerAddress
    address: str = ""
    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    mapped: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def record(self) -> dict[str, Any]:
        """The JSON form; RTTs in milliseconds."""
        answered = len(self.rtts)
        return {
            "label": self.label,
            "server": str(self.target),
            "transport": self.target.transport,
            "address": self.address,
            "sent": self.sent,
            "answered": answered,
            "success_rate": answered / self.sent if self.sent else 0.0,
            "rtt_ms": _distribution(self.rtts),
            "mapped_addresses": dict(self.mapped),
            "distinct_mapped": len(self.mapped),
            "consistent": len(self.mapped) == 1,
            "errors": dict(self.errors),
        }


def _distribution(rtts: list[float]) -> dict[str, float] | None:
    """min, nearest-rank percentiles and max, in ms; None without samples."""
    if not rtts:
        return None
    ordered = sorted(rtts)
    figures = {"min": ordered[0]}
    for p in PERCENTILES:
        figures[f"p{p}"] = ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
    figures["max"] = ordered[-1]
    return {name: value * 1e3 for name, value in figures.items()}


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _open(target: ServerAddress, remote: Address) -> StunClient:
    """One client for every request to ``target``: a connected UDP socket (ICMP errors
    fail requests at once), or one TLS connection (``stuns:``) checked against the name."""
    if target.transport == "udp":
        return await StunClient.open_udp(remote_address=remote)
    return await StunClient.connect(
        remote[0], remote[1], ssl_context=ssl.create_default_context(), server_hostname=target.host
    )


async def _binding(client: StunClient, survey: Survey, timeout: float) -> None:
    """One Binding request; its RTT and mapped address, or its error, go into ``survey``."""
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    start = time.perf_counter()
    try:
        response = await client.request(request, timeout=timeout)
    except (stun.StunError, OSError) as exc:
        survey.errors[_describe(exc)] += 1
        return
    rtt = time.perf_counter() - start
    mapped = response.get(stun.Attr.XOR_MAPPED_ADDRESS) or response.get(stun.Attr.MAPPED_ADDRESS)
    if mapped is None:
        survey.errors["no mapped address"] += 1
        return
    survey.rtts.append(rtt)
    survey.mapped[format_address(mapped)] += 1


async def _probe(client: StunClient, survey: Survey, plan: Plan, deadline: float) -> None:
    """Send the paced requests that fit before ``deadline`` and wait for them all."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending: list[asyncio.Task[None]] = []
    for index in range(plan.count):
        send_at = start + index * plan.interval
        if send_at + plan.timeout > deadline:
            break
        await asyncio.sleep(send_at - loop.time())
        pending.append(asyncio.create_task(_binding(client, survey, plan.timeout)))
        survey.sent += 1
    await asyncio.gather(*pending)


async def survey_server(label: str, target: ServerAddress, plan: Plan) -> Survey:
    """Resolve ``target``, probe it per ``plan``, all within ``plan.deadline`` seconds."""
    survey = Survey(label, target)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + plan.deadline
    try:
        async with asyncio.timeout_at(deadline):
            remote = await resolve(target.host, target.port, target.transport)
            survey.address = format_address(remote)
            client = await _open(target, remote)
    except (stun.StunError, OSError) as exc:  # TimeoutError is an OSError
        survey.errors[_describe(exc)] += 1
        return survey
    async with client:
        await _probe(client, survey, plan, deadline)
    return survey


async def _survey_all(servers: list[tuple[str, ServerAddress]], plan: Plan) -> list[Survey]:
    """One server after the other, so that none slows another's answers down."""
    return [await survey_server(label, target, plan) for label, target in servers]


def run(plan: Plan, servers: list[str] | None = None) -> dict[str, Any]:
    """Survey ``servers`` (text as users write it), or our loopback servers without any."""
    if servers:
        named = [(text, parse_server(text)) for text in servers]
        return {"servers": _records(named, plan), "skipped": []}
    skipped = []
    with our_server() as ours, coturn() as theirs:
        local = [("icestack", ServerAddress(*ours))]
        if theirs is None:
            skipped.append({"label": "coturn", "reason": COTURN_MISSING})
        else:
            local.append(("coturn", ServerAddress(*theirs)))
        return {"servers": _records(local, plan), "skipped": skipped}


def _records(servers: list[tuple[str, ServerAddress]], plan: Plan) -> list[dict[str, Any]]:
    return [survey.record() for survey in asyncio.run(_survey_all(servers, plan))]


def print_table(result: dict[str, Any]) -> None:
    """One line per server, then each one's mapped address(es) and errors."""
    header = ["server", "address", "answered", *(f"{c} ms" for c in RTT_COLUMNS), "mapping"]
    print(aligned([header, *map(_line, result["servers"])], left=2))
    for record in result["servers"]:
        mapped = ", ".join(f"{a} x{n}" for a, n in record["mapped_addresses"].items())
        errors = ", ".join(f"{e} x{n}" for e, n in record["errors"].items())
        print(f"  {record['label']}: mapped {mapped or 'nothing'}; errors: {errors or 'none'}")
    for skipped in result["skipped"]:
        print(f"  {skipped['label']}: skipped: {skipped['reason']}")


def _line(record: dict[str, Any]) -> list[str]:
    rtt = record["rtt_ms"]
    distinct = record["distinct_mapped"]
    mapping = "consistent" if record["consistent"] else f"{distinct} distinct" if distinct else "-"
    return [
        record["label"],
        f"{record['address'] or record['server']} {record['transport']}",
        f"{record['answered']}/{record['sent']} ({record['success_rate']:.0%})",
        *("-" if rtt is None else f"{rtt[c]:.2f}" for c in RTT_COLUMNS),
        mapping,
    ]


_server = cli.validated(parse_server)
"""A --server argument, checked and kept as written, for its label."""


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"not a positive number: {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stun_servers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Only loopback servers started here, or the servers named, are contacted.",
    )
    parser.add_argument(
        "--server",
        action="append",
        type=_server,
        metavar="SERVER",
        help="survey this server (host[:port], [v6]:port, stun: or stuns: URI); repeatable",
    )
    parser.add_argument("--count", type=int, default=100, help="requests per server (100)")
    parser.add_argument(
        "--interval", type=_positive, default=20.0, metavar="MS", help="between requests (20)"
    )
    parser.add_argument(
        "--timeout", type=_positive, default=2.0, metavar="S", help="per request (2)"
    )
    parser.add_argument(
        "--deadline", type=_positive, default=30.0, metavar="S", help="per server (30)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    plan = Plan(args.count, args.interval / 1e3, args.timeout, args.deadline)
    result = run(plan, args.server)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    sys.exit(0 if all(record["answered"] for record in result["servers"]) else 1)


if __name__ == "__main__":
    main()
