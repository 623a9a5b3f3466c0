"""``python -m ice``: gather candidates, connect to a peer and chat or move a file, or
watch two agents connect on this machine."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from stun import cli
from stun.service import serve
from stun.uri import format_address
from turn.uri import parse_turn_uri

from .candidate import Candidate
from .channel import Channel
from .checklist import CandidatePair
from .connection import Connection
from .errors import IceError
from .gather import DEFAULT_GATHER_TIMEOUT, TurnServer, stun_server
from .interfaces import HostAddress
from .offer import Mode, Offer, check_modes, choose_role, tie_breaker
from .progress import Progress, server_names
from .reliable import MAX_PAYLOAD, Reliable
from .session import BYE, Transfer, chat, receive_file, send_file
from .signalling import exchange, parse_signal
from .stdio import Lines

CONNECT_TIMEOUT = 30.0
"""Seconds ICE may take to connect once the peer's line is in, and the peer's side to
answer on the channel after that (``--timeout``): long enough for a person to paste our
line on the other side."""
DEMO_TIMEOUT = 10.0
"""Seconds the demo's agents may take to connect (``--timeout``)."""

EXAMPLES = [
    "ice demo                        # two agents on loopback: gather, connect, exchange data",
    "ice gather --include-loopback   # the host candidates of this machine",
    "ice connect --include-loopback --signal unix:/tmp/ice.sock    # in two terminals here",
]
EXIT_CODES = cli.exit_codes("a server failed or ICE failed (one line on stderr says why)")

GATHER_NOTES = """\
With no --stun or --turn only host candidates are gathered and no server is contacted.
While servers are pending a status line names them (redrawn in place on a terminal, a
plain line each second otherwise, none with --json). Every server that failed is named
with the reason (timeout, 401, 403, DNS, refused); the exit code is then 1, and one line
on stderr counts them."""
GATHER_EXAMPLES = [
    "ice gather --include-loopback                                # host candidates only",
    "ice gather --address 127.0.0.1 --stun stun:127.0.0.1:3478    # and a reflexive one",
    "ice gather --address 127.0.0.1 --turn turn:127.0.0.1:3478 -u alice -p secret",
    "ice gather --turn 'turn:127.0.0.1:3478?transport=tcp' -u alice -p secret --json",
]
GATHER_EXIT_CODES = cli.exit_codes(
    "a server failed (named with the reason), or no usable local address"
)

CONNECT_NOTES = """\
Prints our offer as one line, reads the peer's (from stdin, or over --signal), connects,
prints the selected pair and the time it took, then chats: lines typed here go to the
peer, the peer's lines are printed, until end of input (Ctrl-D) or Ctrl-C on either side.
--send FILE / --receive FILE move one file instead, checked end to end with SHA-256.

With no --stun or --turn the offer has host candidates only: that connects two machines
on the same LAN (or this machine, with --include-loopback). Across NATs add a STUN
server; where even that fails (symmetric NAT, UDP blocked) a TURN server relays. Only
the servers you name and the peer you pair with are contacted.

Who controls ICE is settled for you: the side whose line carries the higher ICE
tie-breaker; --controlling or --controlled picks a tie-breaker that wins or loses
against any side that picked none. --signal unix:PATH or tcp:HOST:PORT: both sides name
the same place; the first there listens, the other connects. The line carries the ICE
password: signal over TCP only across a network you trust.

-v shows the local and remote candidates, and the pairs tried when ICE fails."""
CONNECT_EXAMPLES = [
    "ice connect --include-loopback           # then paste the peer's line here",
    "ice connect --include-loopback --signal unix:/tmp/ice.sock   # in two terminals here",
    "ice connect --include-loopback --signal tcp:127.0.0.1:7000 --receive copy.jpg  # first",
    "ice connect --include-loopback --signal tcp:127.0.0.1:7000 --send photo.jpg    # then",
    "ice connect --stun stun:127.0.0.1:3478 --turn turn:127.0.0.1:3478 -u alice -p secret",
]
CONNECT_EXIT_CODES = cli.exit_codes(
    "failed: ICE, the transfer, or the peer's line (one line on stderr says why)",
    interrupted="interrupted (Ctrl-C; the peer is told)",
)

DEMO_EXAMPLES = [
    "ice demo",
    "ice demo --json --timeout 5",
]


_stun_url = cli.validated(stun_server)
_turn_url = cli.validated(parse_turn_uri)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


_signal = cli.parsed(parse_signal)


def _pacing(text: str) -> int:
    if not (text.isdigit() and 50 <= int(text) <= 10_000):
        raise argparse.ArgumentTypeError(f"{text!r} is not 50 to 10000 milliseconds")
    return int(text)


def _candidate_options() -> argparse.ArgumentParser:
    """The flags that say which candidates to gather (gather and connect)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--stun",
        action="append",
        default=[],
        type=_stun_url,
        metavar="URL",
        help="STUN server, stun:HOST[:PORT] (repeatable)",
    )
    parent.add_argument(
        "--turn",
        action="append",
        default=[],
        type=_turn_url,
        metavar="URL",
        help="TURN server, turn:HOST[:PORT][?transport=tcp] or turns:HOST[:PORT] "
        "(repeatable; with -u and -p)",
    )
    parent.add_argument("-u", "--username", help="TURN username")
    parent.add_argument("-p", "--password", help="TURN password")
    parent.add_argument("--ipv6", action="store_true", help="gather IPv6 candidates too")
    parent.add_argument(
        "--include-loopback", action="store_true", help="offer 127.0.0.1 (and ::1) too"
    )
    parent.add_argument(
        "--address",
        action="append",
        default=[],
        type=_ip,
        metavar="IP",
        help="gather host candidates on this local address only (repeatable; a loopback "
        "address needs no --include-loopback)",
    )
    return parent


def _connect_options(connect: argparse.ArgumentParser) -> None:
    role = connect.add_mutually_exclusive_group()
    for name in ("controlling", "controlled"):
        role.add_argument(
            f"--{name}",
            dest="role",
            action="store_const",
            const=name,
            default="auto",
            help=f"be the {name} agent (default: whichever side the tie-breakers say)",
        )
    connect.add_argument(
        "--signal",
        type=_signal,
        metavar="unix:PATH|tcp:HOST:PORT",
        help="exchange the offer lines there instead of stdin/stdout",
    )
    transfer = connect.add_mutually_exclusive_group()
    transfer.add_argument("--send", metavar="FILE", help="send FILE, then exit")
    transfer.add_argument(
        "--receive", metavar="FILE", help="write the file the peer sends to FILE, then exit"
    )
    connect.add_argument(
        "--ta",
        type=_pacing,
        default=50,
        metavar="MS",
        help="pace checks at MS ms or slower (50 to 10000, default 50; the higher "
        "proposal of the two sides is used)",
    )


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``ice`` parser and its subcommands' parsers."""
    candidates = _candidate_options()
    parser = cli.parser(
        "ice",
        "ICE (RFC 8445) tools: gather candidates, connect to a peer, demonstrate a connection.\n"
        "Only the servers you name (and the peer you connect to) are contacted.",
        EXAMPLES,
        EXIT_CODES,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gather = cli.add_command(
        commands,
        "gather",
        help="print local candidates as they are gathered",
        description="Print local candidates as they are gathered; name every server that "
        "failed, and why.",
        timeout=f"give each STUN and TURN server S seconds (default {DEFAULT_GATHER_TIMEOUT:g})",
        examples=GATHER_EXAMPLES,
        exit_codes=GATHER_EXIT_CODES,
        notes=GATHER_NOTES,
        parents=[candidates],
    )
    connect = cli.add_command(
        commands,
        "connect",
        help="connect to a peer (offer lines by copy and paste or --signal), then chat or "
        "send a file",
        description="Connect to a peer with ICE, on the same LAN or (with servers) across NATs.",
        timeout="wait at most S seconds for the peer's line (default: no limit), then S"
        f" for ICE to connect and the peer to answer (default {CONNECT_TIMEOUT:g})",
        examples=CONNECT_EXAMPLES,
        exit_codes=CONNECT_EXIT_CODES,
        notes=CONNECT_NOTES,
        parents=[candidates],
    )
    _connect_options(connect)
    demo = cli.add_command(
        commands,
        "demo",
        help="two agents on loopback with our STUN server: gather, connect, exchange data",
        description="Start our STUN server on loopback and two agents; gather, connect them\n"
        "and exchange data, then print each check, the selected pair and the times.\n"
        "No network is needed.",
        timeout=f"give the agents S seconds to connect (default {DEMO_TIMEOUT:g})",
        examples=DEMO_EXAMPLES,
        exit_codes=cli.exit_codes("the agents did not connect"),
        notes="-v prints each agent's statistics on stderr.",
    )
    return parser, {"gather": gather, "connect": connect, "demo": demo}


def _candidate_record(candidate: Candidate, elapsed: float) -> dict[str, Any]:
    related = candidate.related_address
    return {
        "type": str(candidate.type),
        "protocol": candidate.protocol,
        "address": format_address(candidate.address),
        "related": format_address(related) if related else None,
        "priority": candidate.priority,
        "server": candidate.server,
        "ms": round(elapsed * 1000, 2),
    }


def _connection_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Connection settings of the candidate flags."""
    wanted = set(args.address)
    return {
        "stun_servers": args.stun,
        "turn_servers": [TurnServer(url, args.username, args.password) for url in args.turn],
        "include_loopback": args.include_loopback or bool(wanted),
        "ipv6": args.ipv6,
        "address_filter": (lambda address: address.ip in wanted) if wanted else None,
    }


def _progress(args: argparse.Namespace, conn: Connection, stream: TextIO) -> Progress:
    servers = server_names(args.stun, args.turn)
    return Progress(conn, servers, stream, enabled=not args.json)


async def _gather(args: argparse.Namespace) -> int:
    conn = Connection(True, gather_timeout=args.timeout or 3.0, **_connection_options(args))
    start = time.monotonic()
    count = 0
    try:
        async with _progress(args, conn, sys.stdout) as progress:
            async for candidate in conn.gather():
                count += 1
                with progress.paused():
                    _print_candidate(args, candidate, time.monotonic() - start)
    finally:
        await conn.close()
    for failure in conn.failures:
        cli.emit(args, {"server": failure.server, "error": failure.reason}, f"failed: {failure}")
    failed = len(conn.failures)
    summary = f"{_plural(count, 'candidate')}, {_plural(failed, 'server')} failed"
    cli.emit(args, {"candidates": count, "failed": len(conn.failures)}, summary)
    if not conn.failures:
        return cli.EXIT_OK
    # the failures are records above (--json too): stderr gets the one error line
    names = ", ".join(failure.server for failure in conn.failures)
    total = len(args.stun) + len(args.turn)
    return cli.fail("ice gather", f"{len(conn.failures)} of {total} servers failed ({names})")


def _print_candidate(args: argparse.Namespace, candidate: Candidate, elapsed: float) -> None:
    record = _candidate_record(candidate, elapsed)
    related = f"  (from {record['related']})" if record["related"] else ""
    via = f"  via {candidate.server}" if candidate.server else ""
    cli.emit(
        args,
        record,
        f"{record['ms']:8.2f} ms  {record['type']:<6} {record['protocol']} "
        f"{record['address']:<24} priority {candidate.priority}{related}{via}",
    )


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
        "ice_timeout": args.timeout or DEMO_TIMEOUT,
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
            if args.verbose:
                print(f"{name} stats: {conn.agent.stats}", file=sys.stderr, flush=True)
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


def _notice(args: argparse.Namespace, record: dict[str, Any], text: str) -> None:
    """Say how things stand: a JSON line on stdout with --json, else a line on stderr
    (stdout carries the offer, the connection and the peer's lines)."""
    if args.json:
        cli.emit(args, record, text)
    else:
        print(text, file=sys.stderr, flush=True)


def _mode(args: argparse.Namespace) -> Mode:
    return "send" if args.send else "receive" if args.receive else "chat"


async def _connect(args: argparse.Namespace) -> int:
    conn = _new_connection(args)
    lines = Lines()
    try:
        ours = await _offer(args, conn)
        cli.emit(args, {"offer": ours.encode()}, ours.encode())
        theirs = await _peer_offer(args, ours, lines)
        check_modes(ours, theirs)
        _take_role(conn, choose_role(ours, theirs))
        if args.verbose:
            _show_candidates(args, "remote", theirs.candidates)
        pair = await _connected(args, conn, theirs)
        core = Reliable(rtt=pair.rtt, contact_timeout=args.timeout or CONNECT_TIMEOUT)
        channel = Channel(conn, core)
        try:
            return await _session(args, channel, lines)
        finally:
            await channel.close()
    finally:
        await conn.close()


def _new_connection(args: argparse.Namespace) -> Connection:
    """The connection, its role a first guess until the peer's line settles it (a forced
    role is set for good: see :func:`ice.offer.tie_breaker`)."""
    conn = Connection(
        args.role != "controlled",
        ice_timeout=args.timeout or CONNECT_TIMEOUT,
        ta=args.ta / 1000,
        tie_breaker=tie_breaker(args.role),
        **_connection_options(args),
    )
    return conn


async def _offer(args: argparse.Namespace, conn: Connection) -> Offer:
    """Gather (showing pending servers on a terminal), report failed servers, make our offer."""
    async with _progress(args, conn, sys.stderr):
        candidates = await conn.gather_all()
    for failure in conn.failures:
        _notice(args, {"server": failure.server, "error": failure.reason}, f"failed: {failure}")
    if args.verbose:
        _show_candidates(args, "local", candidates)
    return Offer(
        conn.local_ufrag,
        conn.local_pwd,
        conn.agent.tie_breaker,
        tuple(candidates),
        mode=_mode(args),
        ta=conn.ta,
    )


def _show_candidates(args: argparse.Namespace, side: str, candidates: Iterable[Candidate]) -> None:
    for candidate in candidates:
        _notice(args, {side: candidate.to_sdp()}, f"{side:<6} {candidate}")


async def _peer_offer(args: argparse.Namespace, ours: Offer, lines: Lines) -> Offer:
    """The peer's offer: from stdin, or over the --signal channel."""
    try:
        async with asyncio.timeout(args.timeout):
            if args.signal is None:
                text = await _pasted_line(lines)
            else:
                text = await _signalled_line(args, ours)
    except TimeoutError:
        raise IceError(f"no offer line from the peer within {args.timeout:g} s") from None
    return Offer.parse(text)


async def _pasted_line(lines: Lines) -> str:
    if sys.stdin.isatty():
        print("give the line above to the peer, then paste theirs here:", file=sys.stderr)
    while (line := await lines.readline()) is not None:
        if line.strip():
            return line.decode("utf-8", "replace")
    raise IceError("the input ended before the peer's offer line")


async def _signalled_line(args: argparse.Namespace, ours: Offer) -> str:
    address = args.signal

    def listening() -> None:
        text = f"waiting for the peer at {address}"
        _notice(args, {"signal": "listening", "at": str(address)}, text)

    exchanged = await exchange(address, ours.encode(), listening)
    how = "listened" if exchanged.listened else "connected"
    if args.verbose:
        _notice(
            args, {"signal": how, "at": str(address)}, f"offers exchanged at {address} (we {how})"
        )
    return exchanged.line


def _take_role(conn: Connection, controlling: bool) -> None:
    """Set the agent's role before it has any pair (Connection has no method for this
    yet). A pair already there came from a check of the peer's that beat its line here;
    ICE's role-conflict rule then set the role, to the same result (see tie_breaker)."""
    agent = conn.agent
    if agent.controlling != controlling and not agent.checklist.pairs:
        agent.controlling = controlling


async def _connected(args: argparse.Namespace, conn: Connection, theirs: Offer) -> CandidatePair:
    conn.set_remote_credentials(theirs.ufrag, theirs.pwd, ta=theirs.ta)
    for candidate in theirs.candidates:
        conn.add_remote_candidate(candidate)
    if theirs.complete:
        conn.add_remote_candidate(None)
    began = time.monotonic()
    pair = await conn.connect()
    ms = (time.monotonic() - began) * 1000
    role = "controlling" if conn.agent.controlling else "controlled"
    record = {
        "ms": round(ms, 2),
        "role": role,
        "local": str(pair.local),
        "remote": str(pair.remote),
        "rtt_ms": None if pair.rtt is None else round(pair.rtt * 1000, 3),
    }
    text = f"connected in {ms:.2f} ms as {role}: {pair.local} <-> {pair.remote}"
    cli.emit(args, {"connected": record}, text)
    return pair


async def _session(args: argparse.Namespace, channel: Channel, lines: Lines) -> int:
    """Chat, or move the file; tell the peer we are leaving if that goes wrong."""
    try:
        if args.send:
            _report(args, "sent", await send_file(channel, args.send))
        elif args.receive:
            _report(args, "received", await receive_file(channel, args.receive))
        else:
            await _chat(args, channel, lines)
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, asyncio.CancelledError) else str(exc)
        channel.send_now(BYE, reason.encode()[:MAX_PAYLOAD])
        raise
    return cli.EXIT_OK


async def _chat(args: argparse.Namespace, channel: Channel, lines: Lines) -> None:
    def show(line: str) -> None:
        cli.emit(args, {"chat": line}, line)

    reason = await chat(channel, lines, show)
    if reason is None:
        _notice(args, {"end": "end of input"}, "end of input: chat closed")
    else:
        because = f" ({reason})" if reason else ""
        _notice(args, {"end": "peer left", "reason": reason}, f"the peer left the chat{because}")


def _report(args: argparse.Namespace, verb: str, transfer: Transfer) -> None:
    ms = transfer.seconds * 1000
    rate = transfer.size / transfer.seconds / 1e6 if transfer.seconds > 0 else 0.0
    record = {
        "file": transfer.path,
        "bytes": transfer.size,
        "sha256": transfer.sha256,
        "ms": round(ms, 2),
    }
    check = "the peer confirmed it" if verb == "sent" else "as the sender announced"
    text = (
        f"{verb} {transfer.path}: {transfer.size} bytes in {ms:.1f} ms ({rate:.2f} MB/s), "
        f"SHA-256 {transfer.sha256}, {check}"
    )
    cli.emit(args, {verb: record}, text)


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if getattr(args, "turn", None) and (args.username is None or args.password is None):
        parser.error("--turn needs -u USER and -p PASS")
    if args.command != "connect":
        return
    if args.send and not os.path.isfile(args.send):
        parser.error(f"--send {args.send}: no such file")
    if args.receive and os.path.isdir(args.receive):
        parser.error(f"--receive {args.receive}: is a directory (name the file to write)")
    if args.receive and not os.path.isdir(os.path.dirname(os.path.abspath(args.receive))):
        parser.error(f"--receive {args.receive}: no such directory")


def main(argv: list[str] | None = None) -> int:
    """The ``ice`` command."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    _check_usage(commands[args.command], args)
    command = {"gather": _gather, "connect": _connect, "demo": _demo}[args.command]
    return cli.run(
        lambda: command(args),
        f"ice {args.command}",
        as_json=args.json,
        verbose=args.verbose,
        expected=(IceError,),
    )


if __name__ == "__main__":
    sys.exit(main())
