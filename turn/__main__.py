"""``python -m turn check``: test a TURN server from the terminal, like the Trickle ICE page.

Allocates a relayed address, installs a permission, relays a few probes to a UDP echo and
back, and times every step. The echo is ``--peer`` or, by default, one this command runs
on the local address of its connection to the TURN server; nothing else is contacted.
Exit codes (see :mod:`stun.cli`): 0 ok, 1 the check failed, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import ssl
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from stun import StunError, cli
from stun.attributes import Address
from stun.client import resolve
from stun.uri import ServerAddress, format_address, split_host_port

from .aio import Allocation, allocate
from .credentials import rest_credentials
from .errors import AuthenticationError, PeerPermissionError, TurnError
from .events import ChannelBound, Event, PeerIcmp
from .uri import parse_turn_uri

EXAMPLES = [
    "turn check turn:127.0.0.1:3478 -u alice -p secret",
    "turn check 'turn:127.0.0.1:3478?transport=tcp' -u alice --password-env TURN_PASSWORD",
    "turn check turns:127.0.0.1:5349 -u alice -p secret --cafile ca.pem --json",
    "turn check 127.0.0.1:3478 --secret SHARED_SECRET      # coturn REST API credentials",
    "turn check turn:127.0.0.1:3478 -u alice -p secret --peer 127.0.0.1:7 --count 20",
]

NOTES = """\
Without --peer the probes go through the relay to a UDP echo this command runs on the
local address of its connection to the server: that works when the server can reach this
machine (loopback, a LAN, a public address), not from behind a NAT; then name an echo
with --peer. Only the server and --peer are contacted."""

EXIT_CODES = cli.exit_codes("the check failed (one line on stderr says why)")

DEFAULT_TIMEOUT = 10.0
"""Seconds the whole check may take (--timeout); closing the allocation comes on top."""
CLOSE_WAIT = 2.0
"""Seconds to wait for the server to confirm that the allocation is released."""
FIRST_PROBE_RTO = 0.5
"""The first probe is sent again after 0.5, 1, 2, ... s without an echo (UDP may lose it)."""
PROBE_WAIT = 1.0
"""Seconds each later probe waits for its echo before it counts as lost."""
CHANNEL_WAIT = 1.0
"""Seconds to wait for the channel binding after the first echo (none: Send indications)."""
MAGIC = b"icestack turn check "


# -- command line ------------------------------------------------------------------------------


_server = cli.parsed(parse_turn_uri)


def _peer(text: str) -> Address:
    try:
        address = split_host_port(text, 0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if address[1] == 0:
        raise argparse.ArgumentTypeError(f"--peer needs HOST:PORT, got {text!r}")
    return address


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"a number of probes from 1 to 1000, not {text!r}")
    return int(text)


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``turn`` parser and its ``check`` subparser."""
    parser = cli.parser("turn", "TURN (RFC 8656) tools.", EXAMPLES, EXIT_CODES)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = cli.add_command(
        commands,
        "check",
        help="allocate, relay probes to an echo and back, time every step",
        description="Allocate a relayed address, relay probes through it to a UDP echo and\n"
        "back, release it; print the addresses, the lifetime and the time of each step.",
        timeout=f"give up the whole check after S seconds (default {DEFAULT_TIMEOUT:g};"
        f" releasing the allocation may take {CLOSE_WAIT:g} s more)",
        default_timeout=DEFAULT_TIMEOUT,
        examples=EXAMPLES,
        exit_codes=EXIT_CODES,
        notes=NOTES + "\n\n-v prints the allocation's events and statistics on stderr.",
    )
    check.add_argument(
        "server",
        type=_server,
        help="turn:HOST[:PORT][?transport=udp|tcp], turns:HOST[:PORT] (TLS) or HOST[:PORT] (UDP)",
    )
    check.add_argument("-u", "--username", help="TURN username (with --secret: the user part)")
    secret = check.add_mutually_exclusive_group(required=True)
    secret.add_argument("-p", "--password", help="TURN password")
    secret.add_argument(
        "--password-env", metavar="NAME", help="read the password from environment variable NAME"
    )
    secret.add_argument(
        "--secret", help="coturn REST API shared secret (--use-auth-secret): makes credentials"
    )
    check.add_argument(
        "--peer",
        type=_peer,
        metavar="HOST:PORT",
        help="a UDP echo server to relay the probes to (default: one run here)",
    )
    check.add_argument(
        "--count", type=_count, default=5, metavar="N", help="probes to relay (default 5)"
    )
    check.add_argument("--cafile", metavar="PEM", help="trust this CA bundle for turns:")
    check.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    return parser, check


def _credentials(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, str]:
    if args.secret is not None:
        try:
            return rest_credentials(args.secret, args.username or "")
        except ValueError as exc:
            parser.error(str(exc))
    if not args.username:
        parser.error("-u/--username is needed with -p/--password or --password-env")
    if args.password_env is not None:
        password = os.environ.get(args.password_env)
        if password is None:
            parser.error(f"environment variable {args.password_env} is not set")
        return args.username, password
    return args.username, str(args.password)


# -- the echo ----------------------------------------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    """A UDP echo for our own probes only (``prefix``): never a reflector for others."""

    def __init__(self, prefix: bytes) -> None:
        self._prefix = prefix
        self.transport: asyncio.DatagramTransport | None = None
        self.echoed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data.startswith(self._prefix) and self.transport is not None:
            self.echoed += 1
            self.transport.sendto(data, addr)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        sockname = self.transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# -- the check ---------------------------------------------------------------------------------


@dataclass
class _Check:
    args: argparse.Namespace
    username: str
    password: str
    record: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    step: str = "resolve"
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    allocation: Allocation | None = None
    echo: _Echo | None = None
    peer: Address | None = None
    prefix: bytes = field(default_factory=lambda: MAGIC + secrets.token_hex(8).encode() + b" ")
    sent: dict[int, float] = field(default_factory=dict)
    rtts: dict[int, float] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    channel: asyncio.Event = field(default_factory=asyncio.Event)
    icmp: list[str] = field(default_factory=list)
    channel_asked: float | None = None
    """When the first probe went out, which asks for the channel binding."""
    channel_bound: float = 0.0
    behind_nat: bool = False
    """The server sees another IP than our local one: it may not reach our own echo."""

    def done(self, name: str, began: float, detail: str, *, ms: float | None = None) -> None:
        """Record a step that took from ``began`` until now; print its line (not --json)."""
        took = (self.loop.time() - began) * 1000 if ms is None else ms
        self.steps[name] = round(took, 3)
        if not self.args.json:
            print(f"{name:<11}{took:>10.2f} ms  {detail}", flush=True)

    # -- the steps ---------------------------------------------------------------------------

    async def run(self, deadline: float) -> None:
        args = self.args
        server: ServerAddress = args.server
        self.record.update(
            server=f"{'turns' if server.transport == 'tls' else 'turn'}:{server}",
            transport=server.transport,
            username=self.username,
        )
        began = self.loop.time()
        async with asyncio.timeout_at(deadline):
            remote = await resolve(server.host, server.port, server.transport)
            if args.peer is not None:
                self.peer = await resolve(args.peer[0], args.peer[1], "udp")
        self.record["server_address"] = format_address(remote)
        detail = f"{server.host} is {format_address(remote)} over {server.transport}"
        if self.peer is not None:
            detail += f"; peer {args.peer[0]} is {format_address(self.peer)}"
        self.done("resolve", began, detail)

        self.step = "allocate"
        family: Literal["ipv4", "ipv6"] = "ipv6" if ":" in (self.peer or remote)[0] else "ipv4"
        context = None
        if server.transport == "tls":
            context = ssl.create_default_context(cafile=args.cafile)
            if args.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        began = self.loop.time()
        async with asyncio.timeout_at(deadline):
            allocation = self.allocation = await allocate(
                ServerAddress(remote[0], remote[1], server.transport),
                self.username,
                self.password,
                ssl=context,
                server_hostname=server.host,
                family=family,
                on_event=self._event,
            )
        allocation.set_data_handler(self._echoed)
        relayed, mapped = allocation.relayed_address, allocation.mapped_address
        local = allocation.local_address
        self.behind_nat = local[0] != mapped[0]
        self.record.update(
            local=format_address(local),
            relayed=format_address(relayed),
            mapped=format_address(mapped),
            lifetime=allocation.lifetime,
        )
        self.done(
            "allocate",
            began,
            f"relayed {format_address(relayed)}, mapped {format_address(mapped)},"
            f" lifetime {allocation.lifetime} s",
        )

        self.step = "permission"
        if self.peer is None:
            echo = self.echo = _Echo(self.prefix)
            await self.loop.create_datagram_endpoint(lambda: echo, local_addr=(local[0], 0))
            self.peer = echo.address
            whose = "our echo"
        else:
            whose = "the peer"
        detail = f"for {self.peer[0]} ({whose} at {format_address(self.peer)})"
        if self.echo is not None and self.behind_nat:
            detail += f"; we are behind a NAT ({format_address(mapped)}): it may be out of reach"
        self.record["peer"] = format_address(self.peer)
        self.record["echo"] = "peer" if args.peer is not None else "self"
        began = self.loop.time()
        async with asyncio.timeout_at(deadline):
            await allocation.create_permission(self.peer)
        self.done("permission", began, detail)

        self.step = "probe"
        began = self.loop.time()
        first = await self._first_probe(deadline)
        self.done(
            "probe",
            began,
            f"first echo through the relay after {len(self.sent)} send(s)",
            ms=self.rtts[first] * 1000,
        )

        self.step = "channel"
        began = self.loop.time()
        remaining = deadline - self.loop.time()
        try:
            async with asyncio.timeout(max(0.0, min(CHANNEL_WAIT, remaining))):
                await self.channel.wait()
        except TimeoutError:
            self.record["channel"] = False
            self.done("channel", began, "not bound: the probes go in Send indications")
        else:
            self.record["channel"] = True
            asked = self.channel_asked or began
            took = (self.channel_bound - asked) * 1000
            self.done("channel", asked, f"bound to {format_address(self.peer)}", ms=took)

        self.step = "rtt"
        for _ in range(args.count - 1):
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                break
            await self._probe(min(PROBE_WAIT, remaining))
        rtts = sorted(rtt * 1000 for rtt in self.rtts.values())
        probes = {
            "sent": len(self.sent),
            "received": len(self.rtts),
            "min_ms": round(rtts[0], 3),
            "median_ms": round(statistics.median(rtts), 3),
            "max_ms": round(rtts[-1], 3),
        }
        self.record["probes"] = probes
        self.done(
            "rtt",
            0.0,
            f"median of {len(rtts)} echoes (min {rtts[0]:.2f}, max {rtts[-1]:.2f} ms);"
            f" {len(self.rtts)}/{len(self.sent)} probes came back",
            ms=statistics.median(rtts),
        )

    async def _first_probe(self, deadline: float) -> int:
        """Send the first probe again and again (RTO doubling) until an echo of any of
        the sends comes back; the number of the send that came back first."""
        self.channel_asked = self.loop.time()
        wait = FIRST_PROBE_RTO
        while not self.rtts:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise TimeoutError
            await self._probe(min(wait, remaining), any_echo=True)
            wait *= 2
        return min(self.rtts, key=self.rtts.__getitem__)

    async def _probe(self, wait: float, *, any_echo: bool = False) -> None:
        """Relay one probe and wait up to ``wait`` s for its echo (or any, ``any_echo``)."""
        assert self.allocation is not None and self.peer is not None
        seq = len(self.sent)
        self.sent[seq] = self.loop.time()
        self.arrived.clear()
        self.allocation.sendto(self.prefix + str(seq).encode(), self.peer)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while seq not in self.rtts and not (any_echo and self.rtts):
                    await self.arrived.wait()
                    self.arrived.clear()

    def _echoed(self, data: bytes, peer: Address) -> None:
        now = self.loop.time()
        if not data.startswith(self.prefix):
            return
        try:
            seq = int(data[len(self.prefix) :])
        except ValueError:
            return
        if seq in self.sent and seq not in self.rtts:
            self.rtts[seq] = now - self.sent[seq]
            self.arrived.set()

    def _event(self, event: Event) -> None:
        if self.args.verbose:
            print(f"event: {event}", file=sys.stderr, flush=True)
        if isinstance(event, ChannelBound) and event.peer == self.peer:
            if not self.channel.is_set():
                self.channel_bound = self.loop.time()
            self.channel.set()
        elif isinstance(event, PeerIcmp):
            icmp = event.icmp
            self.icmp.append(
                f"ICMP type {icmp.type} code {icmp.code} from {format_address(event.peer)}"
            )

    async def close(self, *, report: bool) -> None:
        if self.echo is not None:
            self.echo.close()
        allocation, self.allocation = self.allocation, None
        if allocation is None:
            return
        began = self.loop.time()
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await allocation.close()
        except TimeoutError:
            if report:
                self.done("close", began, "no answer: the allocation expires by itself")
        else:
            if report:
                self.done("close", began, "released")
        if self.args.verbose:
            print(f"stats: {allocation.stats}", file=sys.stderr, flush=True)

    # -- failures ----------------------------------------------------------------------------

    def describe(self, exc: BaseException) -> str:
        """The one line saying why the check failed at ``self.step``."""
        server: ServerAddress = self.args.server
        where = f"{server} ({server.transport})"
        if isinstance(exc, TimeoutError) and not isinstance(exc, TurnError):
            timeout = self.args.timeout
            if self.step == "resolve":
                return f"timeout: could not resolve the names within {timeout:g} s"
            if self.step == "allocate":
                return f"timeout: no answer to Allocate from {where} within {timeout:g} s"
            if self.step == "permission":
                return f"timeout: no answer to CreatePermission from {where} within {timeout:g} s"
            return self._no_echo()
        if isinstance(exc, AuthenticationError):
            return str(exc)
        if isinstance(exc, PeerPermissionError) and self.echo is not None:
            return (
                f"{exc} (the address of our own echo; servers often refuse private and"
                f" loopback peers: use --peer)"
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"{cli.describe_error(exc)} (--cafile PEM trusts a test CA, --insecure skips)"
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {where}"
        message = cli.describe_error(exc)
        if self.step == "allocate" and str(server) not in message:
            message += f" ({where})"
        return message

    def _no_echo(self) -> str:
        assert self.peer is not None
        icmp = f"; the relay got {self.icmp[-1]}" if self.icmp else ""
        sent = f"no echo came back within {self.args.timeout:g} s ({len(self.sent)} probes sent"
        if self.echo is None:
            return f"{sent}{icmp}): is {format_address(self.peer)} a UDP echo the relay can reach?"
        nat = ""
        if self.behind_nat:
            nat = f"; we are behind a NAT: the server sees us as {self.record['mapped']}"
        return (
            f"{sent}{icmp}): the server may not reach {format_address(self.peer)}{nat};"
            f" use --peer HOST:PORT with a UDP echo it can reach"
        )


# -- entry point -------------------------------------------------------------------------------


async def _check(args: argparse.Namespace, username: str, password: str) -> int:
    loop = asyncio.get_running_loop()
    check = _Check(args, username, password)
    deadline = loop.time() + args.timeout
    try:
        await check.run(deadline)
    except (StunError, OSError, ValueError) as exc:  # TimeoutError is an OSError
        message = check.describe(exc)
        await check.close(report=False)
        failed = {**check.record, "steps_ms": check.steps, "ok": False, "failed_step": check.step}
        return cli.fail("turn check", message, as_json=args.json, record=failed)
    except BaseException:
        await check.close(report=False)
        raise
    await check.close(report=True)
    if args.json:
        print(json.dumps({**check.record, "steps_ms": check.steps, "ok": True}), flush=True)
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``turn`` command."""
    parser, check = _parser()
    args = parser.parse_args(argv)
    username, password = _credentials(check, args)
    return cli.run(
        lambda: _check(args, username, password),
        "turn check",
        as_json=args.json,
        verbose=args.verbose,
    )


if __name__ == "__main__":
    sys.exit(main())
