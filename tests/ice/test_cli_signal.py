"""``ice connect --signal``: two sides meet at one address, whoever comes first listens;
and the stdin reader the offer and the chat come through."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from ice import signalling
from ice.signalling import SignalAddress, exchange, parse_signal
from ice.stdio import Lines

WAIT = 10.0


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_signal_addresses_parse_and_print_back() -> None:
    assert str(parse_signal("unix:/tmp/x.sock")) == "unix:/tmp/x.sock"
    assert parse_signal("tcp:127.0.0.1:7000") == SignalAddress("tcp", host="127.0.0.1", port=7000)
    assert str(parse_signal("tcp:[::1]:7000")) == "tcp:[::1]:7000"


@pytest.mark.parametrize("text", ["unix:", "tcp:127.0.0.1", "udp:1.2.3.4:5", "/tmp/x"])
def test_bad_signal_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_signal(text)


async def test_the_first_side_listens_and_the_second_connects(tmp_path: Path) -> None:
    address = parse_signal(f"unix:{tmp_path / 'meet.sock'}")
    listening = asyncio.Event()
    first = asyncio.create_task(exchange(address, "line one", listening.set))
    await asyncio.wait_for(listening.wait(), WAIT)
    second = await asyncio.wait_for(exchange(address, "line two"), WAIT)
    assert (second.line, second.listened) == ("line one", False)
    got = await asyncio.wait_for(first, WAIT)
    assert (got.line, got.listened) == ("line two", True)
    assert not (tmp_path / "meet.sock").exists()


@pytest.mark.parametrize("kind", ["unix", "tcp"])
async def test_two_sides_starting_together_pair_up(tmp_path: Path, kind: str) -> None:
    where = tmp_path / "meet.sock" if kind == "unix" else f"127.0.0.1:{_free_tcp_port()}"
    address = parse_signal(f"{kind}:{where}")
    a, b = await asyncio.wait_for(
        asyncio.gather(exchange(address, "from a"), exchange(address, "from b")), WAIT
    )
    assert (a.line, b.line) == ("from b", "from a")
    assert a.listened != b.listened


async def test_a_stale_socket_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signalling, "STALE_AFTER", 0.1)
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    address = parse_signal(f"unix:{path}")
    with pytest.raises(OSError, match="a socket file nobody listens on"):
        await asyncio.wait_for(exchange(address, "line"), WAIT)


async def test_a_peer_that_hangs_up_without_a_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "meet.sock"
    listening = asyncio.Event()
    side = asyncio.create_task(exchange(parse_signal(f"unix:{path}"), "line", listening.set))
    await asyncio.wait_for(listening.wait(), WAIT)
    _, writer = await asyncio.open_unix_connection(str(path))
    writer.close()
    with pytest.raises(ConnectionError, match="hung up without sending its line"):
        await asyncio.wait_for(side, WAIT)


async def test_lines_come_from_a_pipe_as_they_are_written() -> None:
    read_end, write_end = os.pipe()
    lines = Lines(read_end)
    try:
        os.write(write_end, b"first\nsec")
        assert await asyncio.wait_for(lines.readline(), WAIT) == b"first\n"
        pending = asyncio.create_task(lines.readline())
        os.write(write_end, b"ond\nlast")
        assert await asyncio.wait_for(pending, WAIT) == b"second\n"
        os.close(write_end)
        assert await asyncio.wait_for(lines.readline(), WAIT) == b"last"
        assert await asyncio.wait_for(lines.readline(), WAIT) is None
    finally:
        os.close(read_end)


async def test_lines_come_from_a_regular_file_and_dev_null(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"a\nb\n")
    with open(path, "rb") as file, open(os.devnull, "rb") as null:
        lines, nothing = Lines(file.fileno()), Lines(null.fileno())
        assert [await lines.readline() for _ in range(3)] == [b"a\n", b"b\n", None]
        assert await nothing.readline() is None
