"""``ice gather``: every failing server is named with its reason, and while servers are
pending a status line says which (redrawn in place on a terminal, plain lines otherwise,
never with --json)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ice.__main__ import main
from stun import Attr, Class, Message, decode
from tests.coturn import Coturn
from tests.ports import silent_port
from tests.udp_responder import udp_responder

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


def _gather(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["gather", "--address", "127.0.0.1", "--timeout", "1", "--json", *args])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _turn(url: str) -> list[str]:
    return ["--turn", url, "-u", "alice", "-p", "secret"]


def _failures(records: list[dict[str, Any]]) -> dict[str, str]:
    return {r["server"]: r["error"] for r in records if "error" in r}


def _closed_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _forbidden(data: bytes) -> bytes:
    """A 403 Forbidden answer to any STUN/TURN request."""
    request = decode(data)
    error = [(Attr.ERROR_CODE, (403, "Forbidden"))]
    return Message(request.method, Class.ERROR, request.transaction_id, error).encode()


def test_json_gives_an_ipv6_address_in_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gather", "--address", "::1", "--ipv6", "--timeout", "1", "--json"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    (candidate,) = [r for r in records if "address" in r]
    assert re.fullmatch(r"\[::1\]:\d+", candidate["address"]), candidate


def test_a_silent_server_is_named_with_a_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with silent_port() as port:
        turn = _turn(f"turn:127.0.0.1:{port}")
        code, records = _gather(capsys, "--stun", f"stun:127.0.0.1:{port}", *turn)
    assert code == 1
    assert _failures(records) == {
        f"127.0.0.1:{port}": "timeout: no response after 2 transmissions in 1 s",
        f"turn:127.0.0.1:{port}": f"timeout: no allocation from 127.0.0.1:{port} within 1 s",
    }
    assert records[-1] == {"candidates": 1, "failed": 2}


def test_wrong_turn_credentials_are_a_401(
    capsys: pytest.CaptureFixture[str], coturn: Coturn
) -> None:
    url = "turn:{}:{}".format(*coturn.address)
    code, records = _gather(capsys, "--turn", url, "-u", "alice", "-p", "wrong")
    assert code == 1
    reason = _failures(records)[url]
    assert reason.startswith("401 Unauthorized: the server refused the credentials of 'alice'")


def test_a_forbidding_server_is_a_403(capsys: pytest.CaptureFixture[str]) -> None:
    with udp_responder(_forbidden) as (_, port):
        turn = _turn(f"turn:127.0.0.1:{port}")
        code, records = _gather(capsys, "--stun", f"127.0.0.1:{port}", *turn)
    assert code == 1
    failures = _failures(records)
    assert failures[f"127.0.0.1:{port}"] == "403 Forbidden"
    assert failures[f"turn:127.0.0.1:{port}"].startswith("403 Forbidden: Allocate failed")


def test_an_unresolvable_name_is_a_dns_failure(capsys: pytest.CaptureFixture[str]) -> None:
    began = time.monotonic()
    with contextlib.suppress(OSError):
        socket.getaddrinfo("nonexistent.invalid", 3478)
    if time.monotonic() - began > 0.5:
        pytest.skip("this resolver asks the network about .invalid names")
    turn = _turn("turn:nonexistent.invalid")
    code, records = _gather(capsys, "--stun", "stun:nonexistent.invalid", *turn)
    assert code == 1
    failures = _failures(records)
    assert failures["nonexistent.invalid:3478"].startswith(
        "DNS: cannot resolve 'nonexistent.invalid'"
    )
    turn_reason = failures["turn:nonexistent.invalid"]
    assert turn_reason.startswith("DNS: cannot resolve 'nonexistent.invalid'")


def test_a_refused_tcp_connection_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"turn:127.0.0.1:{_closed_tcp_port()}?transport=tcp"
    code, records = _gather(capsys, *_turn(url))
    assert code == 1
    reason = _failures(records)[url]
    assert reason == "refused"


def test_no_usable_address_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gather", "--address", "192.0.2.199"])
    assert code == 1
    assert capsys.readouterr().err == (
        "ice gather: error: no usable interface address (include_loopback for tests?)\n"
    )


def _run_gather(stdout: Any, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ice", "gather", "--address", "127.0.0.1", *args]
    return subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT)


def test_a_terminal_sees_the_pending_servers_on_one_redrawn_line() -> None:
    master, slave = os.openpty()
    with silent_port() as port:
        process = _run_gather(slave, "--stun", f"stun:127.0.0.1:{port}", "--timeout", "1")
        os.close(slave)
        output = _read_terminal(master, process)
    assert process.returncode == 1
    status = re.findall(rb"\r\x1b\[Kwaiting (\d+\.\d) s for 127\.0\.0\.1:(\d+)", output)
    assert status and {int(p) for _, p in status} == {port}
    assert [float(t) for t, _ in status] == sorted(float(t) for t, _ in status)
    failed = rb"\r\x1b\[Kfailed: 127\.0\.0\.1:\d+: timeout: no response after .*\r\n"
    assert re.search(failed, output)


def _read_terminal(master: int, process: subprocess.Popen[bytes]) -> bytes:
    """Everything the process writes to the terminal until it exits."""
    output = b""
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(master, 4096) if ready else b""
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            output += chunk
        process.wait(WAIT)
    finally:
        os.close(master)
        if process.returncode is None:
            process.kill()
            process.wait()
    return output


def test_a_pipe_gets_a_plain_line_per_second_and_json_none() -> None:
    with silent_port() as port:
        server = f"stun:127.0.0.1:{port}"
        plain = _run_gather(subprocess.PIPE, "--stun", server, "--timeout", "1.5")
        as_json = _run_gather(subprocess.PIPE, "--stun", server, "--timeout", "1.5", "--json")
        outputs = [process.communicate(timeout=WAIT)[0].decode() for process in (plain, as_json)]
    waiting = [line for line in outputs[0].splitlines() if line.startswith("waiting")]
    assert waiting and all(
        re.fullmatch(rf"waiting \d+\.\d s for 127\.0\.0\.1:{port}", line) for line in waiting
    )
    assert "\r" not in outputs[0] and "\x1b" not in outputs[0]
    assert "waiting" not in outputs[1]
    assert all(json.loads(line) for line in outputs[1].splitlines())
