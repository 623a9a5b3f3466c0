"""``python -m ice``: gather candidates, or watch two agents connect on this machine."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from stun import cli
from stun.service import serve

from .candidate import Candidate
from .checklist import CandidatePair
from .connection import Connection
from .gather import TurnServer
from .interfaces import HostAddress

EXAMPLES = """\
examples:
  ice demo                              two agents on loopback: gather, connect, exchange data
  ice gather --include-loopback         host candidates of this machine
  ice gather --stun stun:127.0.0.1:3478 --turn turn:127.0.0.1:3478 -u alice -p secret

Only the servers you name are contacted.
exit codes: 0 ok, 1 a server failed or ICE failed, 2 bad usage, 130 interrupted
"""


def _parser() -> argparse.ArgumentParser:
    common = cli.common_options()
    parser = argparse.ArgumentParser(
        prog="ice",
        description="ICE (RFC 8445) tools: gather candidates, demonstrate a connection.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gather = commands.add_parser(
        "gather", parents=[common], help="print local candidates as they are gathered"
    )
    gather.add_argument("--stun", action="append", default=[], metavar="URL", help="STUN server")
    gather.add_argument("--turn", action="append", default=[], metavar="URL", help="TURN server")
    gather.add_argument("-u", "--username", help="TURN username")
    gather.add_argument("-p", "--password", help="TURN password")
    gather.add_argument("--ipv6", action="store_true", help="gather IPv6 candidates too")
    gather.add_argument(
        "--include-loopback", action="store_true", help="offer 127.0.0.1 (and ::1) too"
    )
    commands.add_parser(
        "demo",
        parents=[common],
        help="two agents on loopback with our STUN server: gather, connect, exchange data",
    )
    return parser


def _candidate_record(candidate: Candidate, elapsed: float) -> dict[str, Any]:
    related = candidate.related_address
    return {
        "type": str(candidate.type),
        "protocol": candidate.protocol,
        "address": f"{candidate.host}:{candidate.port}",
        "related": f"{related[0]}:{related[1]}" if related else None,
        "priority": candidate.priority,
        "server": candidate.server,
        "ms": round(elapsed * 1000, 2),
    }


async def _gather(args: argparse.Namespace) -> int:
    turn = [TurnServer(url, args.username, args.password) for url in args.turn]
    options: dict[str, Any] = {"gather_timeout": args.timeout or 3.0}
    conn = Connection(
        True,
        stun_servers=args.stun,
        turn_servers=turn,
        include_loopback=args.include_loopback,
        ipv6=args.ipv6,
        **options,
    )
    start = time.monotonic()
    count = 0
    try:
        async for candidate in conn.gather():
            count += 1
            record = _candidate_record(candidate, time.monotonic() - start)
            related = f"  (from {record['related']})" if record["related"] else ""
            via = f"  via {candidate.server}" if candidate.server else ""
            cli.emit(
                args,
                record,
                f"{record['ms']:8.2f} ms  {record['type']:<6} {record['protocol']} "
                f"{record['address']:<24} priority {candidate.priority}{related}{via}",
            )
    finally:
        await conn.close()
    for failure in conn.failures:
        cli.emit(
            args,
            {"server": failure.server, "error": failure.reason},
            f"failed: {failure}",
        )
    summary = f"{count} candidates, {len(conn.failures)} servers failed"
    cli.emit(args, {"candidates": count, "failed": len(conn.failures)}, summary)
    return cli.EXIT_FAILED if conn.failures else cli.EXIT_OK


def _loopback(address: HostAddress) -> bool:
    return address.ip == "127.0.0.1"


async def _demo(args: argparse.Namespace) -> int:
    server = await serve([("127.0.0.1", 0)])
    stun_url = "stun:{}:{}".format(*server.addresses.udp[0])
    options: dict[str, Any] = {
        "stun_servers": [stun_url],
        "include_loopback": True,
        "ipv6": False,
        "address_filter": _loopback,
        "ice_timeout": args.timeout or 10.0,
    }
    left, right = Connection(True, **options), Connection(False, **options)
    try:
        start = time.monotonic()
        left_candidates, right_candidates = await asyncio.gather(
            left.gather_all(), right.gather_all()
        )
        gathered = time.monotonic()
        for name, candidates in (("left", left_candidates), ("right", right_candidates)):
            for candidate in candidates:
                record = _candidate_record(candidate, 0.0)
                del record["ms"]
                cli.emit(args, {"agent": name, **record}, f"{name:<5} candidate {candidate}")
        left.set_remote_credentials(right.local_ufrag, right.local_pwd, ta=right.ta)
        right.set_remote_credentials(left.local_ufrag, left.local_pwd, ta=left.ta)
        for mine, theirs in ((left, right_candidates), (right, left_candidates)):
            for candidate in theirs:
                mine.add_remote_candidate(Candidate.from_sdp(candidate.to_sdp()))
            mine.add_remote_candidate(None)
        begin = time.monotonic()
        await asyncio.gather(left.connect(), right.connect())
        connected = time.monotonic()
        await left.send(b"ping from left")
        await right.send(b"pong from right")
        echoes = await asyncio.gather(right.recv(), left.recv())
        for name, conn in (("left", left), ("right", right)):
            _timeline(args, name, conn, begin)
        pair = left.selected_pair()
        assert pair is not None
        cli.emit(
            args,
            {
                "selected": {"local": str(pair.local), "remote": str(pair.remote)},
                "gather_ms": round((gathered - start) * 1000, 2),
                "connect_ms": round((connected - begin) * 1000, 2),
                "data": [e.decode() for e in echoes],
            },
            f"selected  {pair.local} <-> {pair.remote}\n"
            f"gathered in {(gathered - start) * 1000:.2f} ms, connected in "
            f"{(connected - begin) * 1000:.2f} ms (Ta {left.agent.ta * 1000:g} ms, regular "
            f"nomination); data: {echoes[0].decode()!r}, {echoes[1].decode()!r}",
        )
    finally:
        await asyncio.gather(left.close(), right.close())
        await server.close()
    return cli.EXIT_OK


def _timeline(args: argparse.Namespace, name: str, conn: Connection, begin: float) -> None:
    pairs: list[CandidatePair] = conn.agent.pairs()
    for pair in pairs:
        sent = None if pair.checked_at is None else (pair.checked_at - begin) * 1000
        rtt = None if pair.rtt is None else pair.rtt * 1000
        nominated = (pair.valid or pair).nominated
        record = {
            "agent": name,
            "local": str(pair.local),
            "remote": str(pair.remote),
            "sent_ms": None if sent is None else round(sent, 2),
            "rtt_ms": None if rtt is None else round(rtt, 3),
            "state": str(pair.state),
            "nominated": nominated,
        }
        sent_text = "not sent" if sent is None else f"sent at {sent:7.2f} ms"
        rtt_text = "" if rtt is None else f", rtt {rtt:.3f} ms"
        mark = ", nominated" if nominated else ""
        cli.emit(
            args,
            record,
            f"{name:<5} check {pair.local.host}:{pair.local.port} -> "
            f"{pair.remote.host}:{pair.remote.port}: "
            f"{sent_text}{rtt_text}, {pair.state}{mark}",
        )


def main(argv: list[str] | None = None) -> int:
    """The ``ice`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "gather" and args.turn and (args.username is None or args.password is None):
        parser.error("--turn needs -u USER and -p PASS")
    command = _gather if args.command == "gather" else _demo
    return cli.run(lambda: command(args), "ice", as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
