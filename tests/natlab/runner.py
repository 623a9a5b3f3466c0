"""Run matrix cells: two peer processes per cell (``ip netns exec``), their signalling
over one unix socket this module serves, and what each side reported.

Each peer connects to the socket and sends its offer; once both ends of a cell have,
each gets the other's. Then each reports its outcome (the selected pair and the connect
time, or the failure and when it came) and, if connected, whether data went both ways;
once both ends are done the test tells them to close. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cells import Cell, Side
from .lab import REPO, TURN_USER, Lab

CELL_SLACK = 30.0
"""Seconds a cell may run beyond its ICE timeout before its peers are killed."""
PARALLEL = 8
"""Cells running at once (two processes each)."""


@dataclass
class SideResult:
    """What one peer reported."""

    offer: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    output: str = ""
    returncode: int | None = None

    @property
    def connected(self) -> bool:
        return self.outcome is not None and self.outcome.get("outcome") == "connected"

    @property
    def types(self) -> tuple[str, str] | None:
        """(local type, remote type) of the selected pair."""
        if not self.connected:
            return None
        assert self.outcome is not None
        return self.outcome["local"]["type"], self.outcome["remote"]["type"]

    def summary(self) -> str:
        if self.outcome is None:
            return "no outcome"
        if not self.connected:
            return f"{self.outcome['error']} after {self.outcome['elapsed_s']:.2f} s"
        local, remote = self.types or ("?", "?")
        return f"{local} -> {remote} in {self.outcome['connect_s'] * 1000:.0f} ms"


@dataclass
class CellResult:
    cell: Cell
    ice_timeout: float
    sides: dict[str, SideResult] = field(
        default_factory=lambda: {"a": SideResult(), "b": SideResult()}
    )

    def diagnostics(self) -> str:
        parts = []
        for name, side in self.sides.items():
            parts.append(
                f"--- side {name} (exit {side.returncode}) outcome={json.dumps(side.outcome)} "
                f"data={json.dumps(side.data)}\n{side.output}"
            )
        return "\n".join(parts)


class _Signalling:
    """The unix socket server all peers of a run talk to."""

    def __init__(self, results: dict[str, CellResult]) -> None:
        self.results = results
        loop = asyncio.get_running_loop()
        self.offers = {(c, s): loop.create_future() for c in results for s in "ab"}
        self.accepted = {(c, s): loop.create_future() for c in results for s in "ab"}
        self.done = {(c, s): loop.create_future() for c in results for s in "ab"}
        self.close = {c: asyncio.Event() for c in results}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key: tuple[str, str] | None = None
        try:
            offer = await _read(reader)
            key = (offer["cell"], offer["side"])
            result = self.results[key[0]].sides[key[1]]
            result.offer = offer
            self.offers[key].set_result(offer)
            other = (key[0], "b" if key[1] == "a" else "a")
            await _write(writer, await self.offers[other])
            await _read(reader)  # accepted
            self.accepted[key].set_result(None)
            await self.accepted[other]
            await _write(writer, {"go": True})
            result.outcome = await _read(reader)
            if result.connected:
                result.data = await _read(reader)
            self.done[key].set_result(None)
            await self.close[key[0]].wait()
            await _write(writer, {"close": True})
        except (ConnectionError, json.JSONDecodeError, KeyError):
            pass  # the peer died or spoke nonsense: its cell reports what is missing
        finally:
            if key is not None and not self.done[key].done():
                self.done[key].set_result(None)
            writer.close()


async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise ConnectionError("peer closed the socket")
    record: dict[str, Any] = json.loads(line)
    return record


async def _write(writer: asyncio.StreamWriter, record: dict[str, Any]) -> None:
    writer.write(json.dumps(record).encode() + b"\n")
    await writer.drain()


def peer_command(
    lab: Lab,
    cell: Cell,
    name: str,
    side: Side,
    socket_path: Path,
    ice_timeout: float,
    gather_timeout: float,
) -> list[str]:
    """``ip netns exec ... python -m tests.natlab.peer ...`` for one end of a cell."""
    host = lab.hosts[side.host]
    args = [
        "ip", "netns", "exec", host.netns, sys.executable, "-m", "tests.natlab.peer",
        "--signal", str(socket_path), "--cell", cell.name, "--side", name,
        "--impl", side.impl, "--ice-timeout", str(ice_timeout),
        "--gather-timeout", str(gather_timeout),
    ]  # fmt: skip
    if name == "a":
        args.append("--controlling")
    if side.stun:
        args += ["--stun", lab.stun_server]
    for transport in side.turn:
        args += ["--turn", lab.turn_url(transport)]
    if side.turn:
        args += ["--turn-user", TURN_USER, "--turn-password", lab.turn_password]
    if "tls" in side.turn:
        args += ["--cafile", str(lab.turn_cafile)]
    return args


async def _run_cell(
    lab: Lab,
    result: CellResult,
    signalling: _Signalling,
    socket_path: Path,
    gather_timeout: float,
    limit: asyncio.Semaphore,
) -> None:
    cell = result.cell
    async with limit:
        processes = {
            name: await asyncio.create_subprocess_exec(
                *peer_command(
                    lab, cell, name, side, socket_path, result.ice_timeout, gather_timeout
                ),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            for name, side in (("a", cell.a), ("b", cell.b))
        }
        outputs = {
            name: asyncio.ensure_future(process.communicate())
            for name, process in processes.items()
        }
        try:
            async with asyncio.timeout(result.ice_timeout + gather_timeout + CELL_SLACK):
                await asyncio.gather(*(signalling.done[(cell.name, s)] for s in "ab"))
                signalling.close[cell.name].set()
                await asyncio.gather(*outputs.values())
        except TimeoutError:
            for process in processes.values():
                if process.returncode is None:
                    process.kill()
        for name, process in processes.items():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CELL_SLACK):
                    stdout, _ = await outputs[name]
                    result.sides[name].output = stdout.decode(errors="replace")
            result.sides[name].returncode = process.returncode


async def run_cells(
    lab: Lab,
    cells: list[Cell],
    workdir: Path,
    *,
    ice_timeout: float,
    gather_timeout: float = 3.0,
) -> dict[str, CellResult]:
    """Run ``cells`` (up to :data:`PARALLEL` at once) and return their results by name."""
    results = {cell.name: CellResult(cell, ice_timeout) for cell in cells}
    signalling = _Signalling(results)
    socket_path = workdir / "signal.sock"
    server = await asyncio.start_unix_server(signalling.handle, path=str(socket_path))
    limit = asyncio.Semaphore(PARALLEL)
    try:
        async with server:
            await asyncio.gather(
                *(
                    _run_cell(lab, result, signalling, socket_path, gather_timeout, limit)
                    for result in results.values()
                )
            )
    finally:
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
    return results
