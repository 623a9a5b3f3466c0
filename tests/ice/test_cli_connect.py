"""``python -m ice connect`` as people run it: two processes on loopback exchange offer
lines (over stdin/stdout, a Unix socket or TCP), connect, chat and move a file.

Every wait is on a line of output, bounded by ``WAIT``; processes left running at the
end of a test are killed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.coturn import Coturn

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0
"""Seconds any one expected line may take (a process starts in well under a second)."""
LOOPBACK = ("--address", "127.0.0.1", "--timeout", "15")


class Side:
    """One ``ice connect`` process: its stdout read line by line, its stdin written."""

    def __init__(self, process: asyncio.subprocess.Process, as_json: bool) -> None:
        self.process = process
        self.as_json = as_json
        self.seen: list[str] = []

    async def line(self) -> str:
        """The next line of stdout (an AssertionError at its end)."""
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), WAIT)
        assert raw, f"stdout ended; saw {self.seen}, stderr {await self._stderr()!r}"
        text = raw.decode().rstrip("\n")
        self.seen.append(text)
        return text

    async def record(self, key: str) -> Any:
        """The value of the next JSON record that has ``key``."""
        while True:
            record = json.loads(await self.line())
            if key in record:
                return record[key]

    async def until(self, wanted: Callable[[str], bool]) -> str:
        """The next line ``wanted`` accepts."""
        while not wanted(line := await self.line()):
            pass
        return line

    def write(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())

    def end_input(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    async def exit(self) -> tuple[int, str]:
        """Wait for the end: exit code and standard error."""
        code = await asyncio.wait_for(self.process.wait(), WAIT)
        return code, await self._stderr()

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        return (await asyncio.wait_for(self.process.stderr.read(), WAIT)).decode()


Start = Callable[..., Any]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start ``ice connect`` with these arguments (on 127.0.0.1, JSON unless human=True)."""
    sides: list[Side] = []

    async def launch(*args: str, human: bool = False) -> Side:
        flags = [*LOOPBACK, *([] if human else ["--json"])]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ice",
            "connect",
            *flags,
            *args,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        sides.append(Side(process, not human))
        return sides[-1]

    yield launch
    for side in sides:
        if side.process.returncode is None:
            side.process.kill()
            await side.process.wait()


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pair_over_signal(
    start: Start, meeting: str, a_args: Sequence[str] = (), b_args: Sequence[str] = ()
) -> tuple[Side, Side]:
    """Start A, wait until it listens at ``meeting``, then start B: A listens, B connects."""
    a = await start("--signal", meeting, *a_args)
    assert (await a.record("signal")) == "listening"
    b = await start("--signal", meeting, *b_args)
    return a, b


async def _chat_both_ways(a: Side, b: Side) -> None:
    a.write("hello from a\n")
    b.write("héllo from b\n")
    if a.as_json:
        assert await b.record("chat") == "hello from a"
        assert await a.record("chat") == "héllo from b"
    else:
        assert await b.until(lambda line: "from a" in line) == "hello from a"
        assert await a.until(lambda line: "from b" in line) == "héllo from b"


async def _a_leaves_and_b_follows(a: Side, b: Side) -> tuple[str, str]:
    a.end_input()
    (a_code, a_err), (b_code, b_err) = await asyncio.gather(a.exit(), b.exit())
    assert (a_code, b_code) == (0, 0), (a_err, b_err)
    return a_err, b_err


async def test_chat_over_a_unix_socket_in_json(start: Start, tmp_path: Path) -> None:
    a, b = await _pair_over_signal(start, f"unix:{tmp_path / 'meet.sock'}")
    a_connected, b_connected = await a.record("connected"), await b.record("connected")
    assert {a_connected["role"], b_connected["role"]} == {"controlling", "controlled"}
    assert "127.0.0.1" in a_connected["local"] and "127.0.0.1" in a_connected["remote"]
    assert a_connected["ms"] > 0
    await _chat_both_ways(a, b)
    a.end_input()
    assert await a.record("end") == "end of input"
    assert await b.record("end") == "peer left"
    await _a_leaves_and_b_follows(a, b)


async def test_ctrl_c_exits_130_and_the_peer_hears_why(start: Start, tmp_path: Path) -> None:
    a, b = await _pair_over_signal(start, f"unix:{tmp_path / 'meet.sock'}")
    await a.record("connected")
    await b.record("connected")
    a.process.send_signal(signal.SIGINT)
    assert await b.record("end") == "peer left"
    assert b.seen[-1] == json.dumps({"end": "peer left", "reason": "interrupted"})
    (a_code, a_err), (b_code, _) = await asyncio.gather(a.exit(), b.exit())
    assert (a_code, a_err, b_code) == (130, "", 0)


async def test_chat_over_tcp_for_people(start: Start) -> None:
    meeting = f"tcp:127.0.0.1:{_free_tcp_port()}"
    a = await start("--signal", meeting, human=True)
    b = await start("--signal", meeting, human=True)
    for side in (a, b):
        assert (await side.line()).startswith("icestack1 ")
        connected = await side.line()
        assert connected.startswith("connected in ") and " ms as controll" in connected
    await _chat_both_ways(a, b)
    a_err, b_err = await _a_leaves_and_b_follows(a, b)
    assert "end of input" in a_err and "the peer left" in b_err


async def test_offer_lines_pasted_through_stdin_and_stdout(start: Start) -> None:
    a, b = await start(human=True), await start(human=True)
    a_offer, b_offer = await a.line(), await b.line()
    assert a_offer.startswith("icestack1 ") and a_offer != b_offer
    a.write(b_offer + "\n")
    b.write(a_offer + "\n")
    for side in (a, b):
        assert (await side.line()).startswith("connected in ")
    await _chat_both_ways(a, b)
    await _a_leaves_and_b_follows(a, b)


async def test_the_json_offer_record_can_be_piped_as_it_is(start: Start) -> None:
    a, b = await start("--controlled"), await start()
    a_line, b_line = await a.line(), await b.line()
    a.write(b_line + "\n")
    b.write(a_line + "\n")
    assert (await a.record("connected"))["role"] == "controlled"
    assert (await b.record("connected"))["role"] == "controlling"
    a.end_input()
    await _a_leaves_and_b_follows(a, b)


async def test_a_peer_that_reads_our_line_late_still_gets_what_we_said(start: Start) -> None:
    """A forced controlling side connects on the peer's answers alone, before the peer has
    read its line; what it says meanwhile arrives once the peer connects too."""
    a, b = await start("--controlling"), await start()
    a_line, b_line = await a.line(), await b.line()
    a.write(b_line + "\n")
    assert (await a.record("connected"))["role"] == "controlling"
    a.write("said early\n")
    b.write(a_line + "\n")
    assert (await b.record("connected"))["role"] == "controlled"
    assert await b.record("chat") == "said early"
    a.end_input()
    await _a_leaves_and_b_follows(a, b)


async def test_a_turn_server_adds_a_relayed_candidate_to_the_offer(
    start: Start, tmp_path: Path, coturn: Coturn
) -> None:
    turn = ["--turn", "turn:{}:{}".format(*coturn.address), "-u", "alice"]
    turn += ["-p", coturn.users["alice"]]
    a, b = await _pair_over_signal(start, f"unix:{tmp_path / 'meet.sock'}", turn, turn)
    assert " typ relay raddr 127.0.0.1 " in a.seen[0]
    await a.record("connected")
    await b.record("connected")
    await _chat_both_ways(a, b)
    await _a_leaves_and_b_follows(a, b)


async def test_a_file_goes_across_and_is_checked(start: Start, tmp_path: Path) -> None:
    data = random.Random(2024).randbytes(100_000)
    source, target = tmp_path / "random.bin", tmp_path / "copy.bin"
    source.write_bytes(data)
    a, b = await _pair_over_signal(
        start, f"unix:{tmp_path / 'meet.sock'}", ["--send", str(source)], ["--receive", str(target)]
    )
    sent, received = await a.record("sent"), await b.record("received")
    digest = hashlib.sha256(data).hexdigest()
    assert sent["sha256"] == received["sha256"] == digest
    assert sent["bytes"] == received["bytes"] == len(data)
    assert target.read_bytes() == data
    assert not Path(f"{target}.part").exists()
    assert [code for code, _ in await asyncio.gather(a.exit(), b.exit())] == [0, 0]


async def test_a_mode_mismatch_is_reported_before_connecting(start: Start, tmp_path: Path) -> None:
    source = tmp_path / "file.txt"
    source.write_text("x")
    a, b = await _pair_over_signal(
        start, f"unix:{tmp_path / 'meet.sock'}", ["--send", str(source)], []
    )
    (a_code, a_err), (b_code, b_err) = await asyncio.gather(a.exit(), b.exit())
    assert (a_code, b_code) == (1, 1)
    assert (a_err, b_err) == (
        "ice connect: error: the peer is not receiving a file: run it with --receive FILE\n",
        "ice connect: error: the peer sends a file: run this side with --receive FILE\n",
    )


async def test_a_bad_offer_line_fails_with_one_clear_line(start: Start) -> None:
    a = await start(human=True)
    await a.line()
    a.write("hello, is this the offer?\n")
    code, err = await a.exit()
    assert code == 1
    assert err == (
        "ice connect: error: not an offer line (it should start with 'icestack1 '): "
        "'hello, is this the offer?'\n"
    )


async def test_a_bad_offer_line_in_json_is_an_error_record(start: Start) -> None:
    a = await start()
    await a.record("offer")
    a.write("icestack1 ice-ufrag:abcd\n")
    assert await a.record("error") == "the offer has no ice-pwd"
    assert (await a.exit())[0] == 1


async def test_our_own_line_pasted_back_is_refused(start: Start) -> None:
    a = await start()
    a.write(json.dumps({"offer": await a.record("offer")}) + "\n")
    assert await a.record("error") == "that is our own offer line, not the peer's"
    assert (await a.exit())[0] == 1


def test_help_says_host_only_without_servers_and_shows_examples() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ice", "connect", "--help"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=ROOT,
    )
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "With no --stun or --turn the offer has host candidates only" in text
    assert "examples:" in text and "--stun stun:" in text and "--turn turn:" in text
    assert "--signal unix:" in text and "--send" in text and "--receive" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--send", "/nonexistent/file"], "--send /nonexistent/file: no such file"),
        (["--receive", "/nonexistent/dir/file"], "no such directory"),
        (["--signal", "udp:1.2.3.4:5"], "is not unix:PATH or tcp:HOST:PORT"),
        (["--stun", "stun:host:99999"], "bad port"),
        (["--turn", "turn:127.0.0.1"], "--turn needs -u USER and -p PASS"),
        (["--controlling", "--controlled"], "not allowed with argument"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ice", "connect", *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert message in done.stderr
