"""One ICE peer of the NAT lab, run in a namespace as its own process::

    ip netns exec NS python -m tests.natlab.peer --signal PATH --cell NAME --side a ...

It gathers, sends its offer (ufrag, pwd, candidate lines) as one JSON line over the unix
socket the test provides, reads the other side's offer, connects, reports the selected
pair (or the failure and when it came), exchanges datagrams both ways over ICE, reports
that, and closes when the test says so. ``--impl aioice`` runs aioice 0.13 instead of
:class:`ice.Connection`. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ice
from ice import Candidate, Connection, ConnectionFailed, TurnServer
from tests.natlab.lab import client_ssl_context

DATA_INTERVAL = 0.1
"""Seconds between retransmissions of our hello until the peer acknowledges it."""
DATA_ROUNDS = 100
SIGNAL_TIMEOUT = 60.0
"""Seconds any wait on the test's socket may take."""
AIOICE_CONNECT_TIMEOUT = 30.0
"""aioice's own checks give up only after ~63.5 s; we stop waiting sooner."""
PR_SET_PDEATHSIG = 1


@dataclass
class Peer:
    """What the rest of the run needs of an ICE implementation."""

    ufrag: str
    pwd: str
    candidates: list[str]
    accept: Callable[[str, str, list[str]], Awaitable[None]]
    connect: Callable[[], Awaitable[dict[str, Any]]]
    send: Callable[[bytes], Awaitable[None]]
    recv: Callable[[], Awaitable[bytes]]
    close: Callable[[], Awaitable[None]]
    failures: list[str]


def _describe(candidate: Candidate) -> dict[str, Any]:
    return {"type": str(candidate.type), "address": str(candidate), "server": candidate.server}


async def ours(args: argparse.Namespace) -> Peer:
    """An :class:`ice.Connection` with the servers on the command line."""
    context = client_ssl_context(args.cafile) if args.cafile else None
    turn = [TurnServer(url, args.turn_user, args.turn_password, ssl=context) for url in args.turn]
    conn = Connection(
        args.controlling,
        stun_servers=[args.stun] if args.stun else [],
        turn_servers=turn,
        ipv6=False,
        ice_timeout=args.ice_timeout,
        gather_timeout=args.gather_timeout,
    )
    candidates = await conn.gather_all()

    async def accept(ufrag: str, pwd: str, lines: list[str]) -> None:
        conn.set_remote_credentials(ufrag, pwd)
        for line in lines:
            conn.add_remote_candidate(Candidate.from_sdp(line))
        conn.add_remote_candidate(None)

    async def connect() -> dict[str, Any]:
        pair = await conn.connect()
        pairs = [
            f"{row['local']} -> {row['remote']}: {row['state']} sent {row['requests_sent']}"
            f" answered {row['responses_received']}{' nominated' if row['nominated'] else ''}"
            for row in conn.stats()
        ]
        return {"local": _describe(pair.local), "remote": _describe(pair.remote), "pairs": pairs}

    return Peer(
        conn.local_ufrag,
        conn.local_pwd,
        [c.to_sdp() for c in candidates],
        accept,
        connect,
        conn.send,
        conn.recv,
        conn.close,
        [str(f) for f in conn.failures],
    )


def _aioice_describe(candidate: Any) -> dict[str, Any]:
    return {"type": candidate.type, "address": candidate.to_sdp(), "server": None}


async def with_aioice(args: argparse.Namespace) -> Peer:
    """An aioice 0.13 connection: one STUN and one TURN server at most (UDP or TCP)."""
    import aioice  # only this peer pays for the import

    options: dict[str, Any] = {"components": 1, "use_ipv6": False}
    if args.stun:
        host, port = args.stun.rsplit(":", 1)
        options["stun_server"] = (host, int(port))
    if args.turn:
        server = ice.TurnServer(args.turn[0], args.turn_user, args.turn_password).address
        options.update(
            turn_server=(server.host, server.port),
            turn_username=args.turn_user,
            turn_password=args.turn_password,
            turn_transport=server.transport,
        )
    conn = aioice.Connection(ice_controlling=args.controlling, **options)
    await conn.gather_candidates()

    async def accept(ufrag: str, pwd: str, lines: list[str]) -> None:
        conn.remote_username, conn.remote_password = ufrag, pwd
        for line in lines:
            await conn.add_remote_candidate(aioice.Candidate.from_sdp(line.split(":", 1)[1]))
        await conn.add_remote_candidate(None)

    async def connect() -> dict[str, Any]:
        async with asyncio.timeout(AIOICE_CONNECT_TIMEOUT):
            await conn.connect()
        pair = conn._nominated[1]  # aioice 0.13 keeps the selected pair here
        return {
            "local": _aioice_describe(pair.local_candidate),
            "remote": _aioice_describe(pair.remote_candidate),
        }

    return Peer(
        conn.local_username,
        conn.local_password,
        ["candidate:" + c.to_sdp() for c in conn.local_candidates],
        accept,
        connect,
        conn.send,
        conn.recv,
        conn.close,
        [],
    )


class Exchange:
    """Datagrams both ways over ICE: each side repeats ``hello from <side>`` until the
    other acknowledges it, and acknowledges every hello it gets (until closed)."""

    def __init__(self, peer: Peer, side: str) -> None:
        self.peer = peer
        self.hello = f"hello from {side}".encode()
        self.received: str | None = None
        self.acked = False
        self.changed = asyncio.Event()

    async def receive(self) -> None:
        while True:
            data = await self.peer.recv()
            if data.startswith(b"hello from "):
                self.received = data.decode()
                await self.peer.send(b"ack " + data)
            elif data == b"ack " + self.hello:
                self.acked = True
            self.changed.set()

    async def run(self) -> bool:
        """True once we got the peer's hello and it acknowledged ours."""
        for _ in range(DATA_ROUNDS):
            if self.received is not None and self.acked:
                return True
            if not self.acked:
                await self.peer.send(self.hello)
            self.changed.clear()
            try:
                async with asyncio.timeout(DATA_INTERVAL):
                    await self.changed.wait()
            except TimeoutError:
                continue
        return self.received is not None and self.acked


async def _send(writer: asyncio.StreamWriter, record: dict[str, Any]) -> None:
    writer.write(json.dumps(record).encode() + b"\n")
    await writer.drain()


async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
    async with asyncio.timeout(SIGNAL_TIMEOUT):
        line = await reader.readline()
    if not line:
        raise ConnectionError("the test closed the signalling socket")
    record: dict[str, Any] = json.loads(line)
    return record


async def run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    peer = await (with_aioice(args) if args.impl == "aioice" else ours(args))
    gathered = time.monotonic() - began
    reader, writer = await asyncio.open_unix_connection(args.signal)
    try:
        await _send(
            writer,
            {
                "cell": args.cell,
                "side": args.side,
                "ufrag": peer.ufrag,
                "pwd": peer.pwd,
                "candidates": peer.candidates,
                "gather_s": gathered,
                "failures": peer.failures,
            },
        )
        offer = await _read(reader)
        await peer.accept(offer["ufrag"], offer["pwd"], offer["candidates"])
        # Both sides start checking together, once both know each other's candidates:
        # every run of a cell starts alike (no check learned as peer-reflexive first).
        await _send(writer, {"accepted": True})
        await _read(reader)
        started = time.monotonic()
        try:
            pair = await peer.connect()
        except (ConnectionFailed, TimeoutError) as exc:
            elapsed = time.monotonic() - started
            await _send(
                writer,
                {
                    "outcome": "failed",
                    "error": type(exc).__name__,
                    "message": str(exc),
                    "elapsed_s": elapsed,
                },
            )
            return 0
        connect_s = time.monotonic() - started
        await _send(writer, {"outcome": "connected", "connect_s": connect_s, **pair})
        exchange = Exchange(peer, args.side)
        receiving = asyncio.create_task(exchange.receive())
        ok = await exchange.run()
        await _send(writer, {"data": ok, "received": exchange.received})
        await _read(reader)  # the test says close once both sides are done
        receiving.cancel()
        return 0
    finally:
        writer.close()
        await peer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="natlab-peer")
    parser.add_argument("--signal", required=True, help="the test's unix socket")
    parser.add_argument("--cell", required=True)
    parser.add_argument("--side", required=True, choices=["a", "b"])
    parser.add_argument("--controlling", action="store_true")
    parser.add_argument("--impl", choices=["ours", "aioice"], default="ours")
    parser.add_argument("--stun", help="HOST:PORT of the STUN server")
    parser.add_argument("--turn", action="append", default=[], help="turn:/turns: URI")
    parser.add_argument("--turn-user", default="")
    parser.add_argument("--turn-password", default="")
    parser.add_argument("--cafile", help="trust this certificate for turns:")
    parser.add_argument("--ice-timeout", type=float, required=True)
    parser.add_argument("--gather-timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
