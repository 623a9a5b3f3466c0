"""``python -m stun``: probe a STUN server, discover NAT behaviour, run a server.

Exit codes (see :mod:`stun.cli`): 0 ok, 1 the server failed or could not be reached
(``serve``: could not start), 2 bad usage, 130 interrupted (``serve`` stops on Ctrl-C
with 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Callable

from . import cli
from .attributes import Address
from .client import binding
from .errors import TransactionTimeout
from .nat import discover
from .service import serve
from .uri import (
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    Transport,
    format_address,
    parse_server,
    split_host_port,
)

EXIT_CODES = cli.exit_codes(
    "the server failed or could not be reached (one line on stderr says why)"
)
TOP_EXIT_CODES = cli.exit_codes(
    "the server failed or could not be reached (serve: could not start)"
)
SERVE_EXIT_CODES = cli.exit_codes(
    "the server could not start (an address in use, a bad certificate)",
    ok="stopped by Ctrl-C, SIGTERM or --timeout",
    interrupted=None,
)

PROBE_EXAMPLES = [
    "stun probe 127.0.0.1:3478                        # over UDP: the mapped address, the RTT",
    "stun probe stun:127.0.0.1:3478 --tcp --json      # over TCP, as one JSON object",
    "stun probe stuns:127.0.0.1:5349 --cafile ca.pem  # over TLS, trusting a test CA",
    "stun probe 127.0.0.1:3478 --timeout 2 -v         # give up after 2 s; show the response",
]
NAT_EXAMPLES = [
    "stun nat 127.0.0.1:3478                    # an RFC 5780 server (stun serve --alt)",
    "stun nat 127.0.0.1:3478 --json --timeout 1",
]
SERVE_EXAMPLES = [
    "stun serve --bind 127.0.0.1:3478 --alt 127.0.0.2:3479     # RFC 5780 mode: four sockets",
    "stun serve --bind 127.0.0.1:0 --json --timeout 60         # any free port, for 60 s",
    "stun serve --bind 127.0.0.1:3478 --tcp --tls-cert cert.pem --tls-key key.pem",
]
EXAMPLES = [
    "stun serve --bind 127.0.0.1:3478 --alt 127.0.0.2:3479 --timeout 60  # RFC 5780 mode, 60 s",
    "stun probe 127.0.0.1:3478                   # the mapped address and the RTT",
    "stun nat 127.0.0.1:3478                     # NAT mapping and filtering behaviour",
]


_address = cli.parsed(parse_server)


def _bind_address(default_port: int) -> Callable[[str], Address]:
    return cli.parsed(lambda text: split_host_port(text, default_port, allow_zero=True))


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``stun`` parser and its subcommands' parsers."""
    parser = cli.parser(
        "stun",
        "STUN (RFC 8489) tools: probe servers, discover NAT behaviour, serve.\n"
        "Only the servers you name are contacted.",
        EXAMPLES,
        TOP_EXIT_CODES,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    probe = cli.add_command(
        commands,
        "probe",
        help="send a Binding request, print the mapped address",
        description="Send one Binding request; print the mapped address and the round trip.",
        timeout="give up after S seconds without an answer (default 39.5, RFC 8489's"
        " retransmission schedule)",
        examples=PROBE_EXAMPLES,
        exit_codes=EXIT_CODES,
        notes="-v prints the response on stderr.",
    )
    probe.add_argument("server", type=_address, help="HOST[:PORT] or stun:/stuns: URI")
    kind = probe.add_mutually_exclusive_group()
    kind.add_argument("--tcp", action="store_const", const="tcp", dest="transport", help="over TCP")
    kind.add_argument("--tls", action="store_const", const="tls", dest="transport", help="over TLS")
    probe.add_argument("--cafile", metavar="PEM", help="trust this CA bundle for --tls")
    probe.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")

    nat = cli.add_command(
        commands,
        "nat",
        help="RFC 5780 NAT mapping and filtering discovery",
        description="Discover the mapping and filtering behaviour of the NAT between here\n"
        "and an RFC 5780 server (one with an alternate address: stun serve --alt).",
        timeout="give each request S seconds (default 3); a filtering test that gets no"
        " answer takes that long",
        examples=NAT_EXAMPLES,
        exit_codes=EXIT_CODES,
    )
    nat.add_argument("server", type=_address, help="HOST[:PORT] of an RFC 5780 server")

    server = cli.add_command(
        commands,
        "serve",
        help="run a STUN server (RFC 5780 mode with --alt)",
        description="Run a STUN server until Ctrl-C, SIGTERM or --timeout (exit code 0).\n"
        "It prints the addresses it listens on once every socket is bound.",
        timeout="stop serving after S seconds (default: serve until Ctrl-C or SIGTERM)",
        examples=SERVE_EXAMPLES,
        exit_codes=SERVE_EXIT_CODES,
        notes="-v prints the server's statistics on stderr when it stops.",
    )
    server.add_argument(
        "--bind",
        type=_bind_address(DEFAULT_PORT),
        action="append",
        metavar="ADDR:PORT",
        help="UDP address to listen on, repeatable (default 0.0.0.0:3478; port 0 = any)",
    )
    server.add_argument(
        "--alt",
        type=_bind_address(DEFAULT_PORT + 1),
        metavar="ADDR:PORT",
        help="RFC 5780 alternate address: other IP and other port than --bind",
    )
    server.add_argument("--tcp", action="store_true", help="also listen on TCP, same addresses")
    server.add_argument(
        "--tls-bind",
        type=_bind_address(DEFAULT_TLS_PORT),
        action="append",
        metavar="ADDR:PORT",
        help="TLS address, repeatable (default: the --bind hosts on port 5349)",
    )
    server.add_argument("--tls-cert", metavar="PEM", help="certificate chain: enables TLS")
    server.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    server.add_argument("--software", metavar="TEXT", help="add SOFTWARE to responses")
    server.add_argument(
        "--response-port", action="store_true", help="honour RESPONSE-PORT (RFC 5780)"
    )
    server.add_argument(
        "--padding", action="store_true", help="honour PADDING (RFC 5780; enlarges responses)"
    )
    return parser, {"probe": probe, "nat": nat, "serve": server}


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _probe(args: argparse.Namespace) -> int:
    transport: Transport = args.transport or args.server.transport
    context = _tls_context(args) if transport == "tls" else None
    try:
        async with asyncio.timeout(args.timeout):  # DNS and TCP/TLS set-up included
            result = await binding(
                args.server, transport=transport, ssl_context=context, timeout=args.timeout
            )
    except TimeoutError as exc:
        if isinstance(exc, TransactionTimeout):
            raise
        raise TransactionTimeout(f"no answer within {args.timeout:g} s") from None
    record = {
        "server": str(args.server),
        "transport": transport,
        "server_address": format_address(result.server),
        "local": format_address(result.local),
        "mapped": format_address(result.mapped_address),
        "rtt_ms": round(result.rtt * 1000, 3),
    }
    text = (
        f"mapped {record['mapped']} (local {record['local']}) from {transport}"
        f" {record['server_address']} in {record['rtt_ms']} ms"
    )
    cli.emit(args, record, text)
    if args.verbose:
        print(f"response: {result.response!r}", file=sys.stderr, flush=True)
    return cli.EXIT_OK


async def _nat(args: argparse.Namespace) -> int:
    report = await discover(args.server, timeout=args.timeout or 3.0)
    record = {
        "server": str(args.server),
        "local": format_address(report.local_address),
        "mapped": format_address(report.mapped_address),
        "other_address": format_address(report.other_address),
        "behind_nat": report.behind_nat,
        "mapping": report.mapping.value,
        "filtering": report.filtering.value,
    }
    nat_line = "behind a NAT" if report.behind_nat else "no NAT (the server sees our own address)"
    text = (
        f"{nat_line}\n"
        f"mapping:   {report.mapping.value}\n"
        f"filtering: {report.filtering.value}\n"
        f"local {record['local']}, mapped {record['mapped']}, server's other address"
        f" {record['other_address']}"
    )
    cli.emit(args, record, text)
    return cli.EXIT_OK


async def _serve(args: argparse.Namespace) -> int:
    udp = args.bind or [("0.0.0.0", DEFAULT_PORT)]
    context = None
    tls: list[Address] = []
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        tls = args.tls_bind or [(host, DEFAULT_TLS_PORT) for host, _ in udp]
    server = await serve(
        udp,
        tcp=udp if args.tcp else (),
        tls=tls,
        ssl_context=context,
        alternate=args.alt,
        software=args.software,
        response_port=args.response_port,
        padding=args.padding,
    )
    addresses = server.addresses
    record = {
        kind: [format_address(a) for a in getattr(addresses, kind)]
        for kind in ("udp", "tcp", "tls")
    }
    text = "listening " + ", ".join(
        f"{kind} {' '.join(where)}" for kind, where in record.items() if where
    )
    cli.emit(args, {"listening": record}, text)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        with contextlib.suppress(TimeoutError):  # --timeout: serve that long, then stop
            await asyncio.wait_for(stop.wait(), args.timeout)
    if args.verbose:
        print(f"stopped: {server.stats}", file=sys.stderr)
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stun`` command."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and bool(args.tls_cert) != bool(args.tls_key):
        commands["serve"].error("--tls-cert and --tls-key go together")
    command = {"probe": _probe, "nat": _nat, "serve": _serve}[args.command]
    return cli.run(
        lambda: command(args), f"stun {args.command}", as_json=args.json, verbose=args.verbose
    )


if __name__ == "__main__":
    sys.exit(main())
