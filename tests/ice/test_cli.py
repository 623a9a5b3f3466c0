"""``python -m ice`` as a user runs it: the demo and candidate gathering, on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

import pytest

from ice.__main__ import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    try:
        code = main([*args, "--json"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, _ = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()]


def _dead_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_connects_two_agents_and_exchanges_data(capsys: pytest.CaptureFixture[str]) -> None:
    code, records = _run(capsys, "demo")
    assert code == 0
    summary = records[-1]
    assert summary["data"] == ["ping from left", "pong from right"]
    assert "127.0.0.1" in summary["selected"]["local"]
    checks = [r for r in records if "state" in r]
    assert {r["agent"] for r in checks} == {"left", "right"}
    assert any(r["nominated"] and r["state"] == "succeeded" for r in checks)


def test_demo_runs_as_a_command_with_no_arguments() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ice", "demo"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "connected in" in done.stdout and "selected" in done.stdout


def test_gather_lists_loopback_host_candidates(capsys: pytest.CaptureFixture[str]) -> None:
    code, records = _run(capsys, "gather", "--include-loopback")
    assert code == 0
    hosts = [r for r in records if r.get("type") == "host"]
    assert any(r["address"].startswith("127.0.0.1:") for r in hosts)
    assert records[-1] == {"candidates": len(hosts), "failed": 0}


def test_gather_names_a_silent_stun_server_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"stun:127.0.0.1:{_dead_udp_port()}"
    code, records = _run(capsys, "gather", "--include-loopback", "--stun", dead, "--timeout", "0.6")
    assert code == 1
    failures = [r for r in records if "error" in r]
    assert failures and failures[0]["server"].endswith(dead.removeprefix("stun:"))
    assert any(r.get("type") == "host" for r in records)


def test_gather_turn_without_credentials_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["gather", "--turn", "turn:127.0.0.1:3478"])
    assert exit_info.value.code == 2
    assert "-u USER" in capsys.readouterr().err
