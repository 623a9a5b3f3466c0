"""``python -m stun`` as a user runs it: real processes against real servers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from tests.coturn import Coturn


def _stun(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stun", *args], capture_output=True, text=True, timeout=timeout
    )


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        return int(placeholder.getsockname()[1])


def test_help_shows_commands_and_examples() -> None:
    result = _stun("--help")
    assert result.returncode == 0
    for word in ("probe", "nat", "serve", "examples:", "exit codes"):
        assert word in result.stdout


def test_probe_prints_the_mapped_address(coturn: Coturn) -> None:
    result = _stun("probe", f"127.0.0.1:{coturn.port}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mapped 127.0.0.1:")


def test_probe_json_over_tcp(coturn: Coturn) -> None:
    result = _stun("probe", f"127.0.0.1:{coturn.port}", "--tcp", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["transport"] == "tcp"
    assert record["mapped"] == record["local"]
    assert record["rtt_ms"] > 0


def test_nat_against_local_server_reports_no_nat(coturn_5780: Coturn) -> None:
    result = _stun("nat", f"127.0.0.1:{coturn_5780.port}", "--json", "--timeout", "2")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["behind_nat"] is False
    assert record["mapping"] == "endpoint-independent"
    assert record["filtering"] == "endpoint-independent"


def test_unreachable_server_gives_one_line_error_and_exit_1() -> None:
    result = _stun("probe", f"127.0.0.1:{_closed_udp_port()}", "--timeout", "5")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("stun: ") and "unreachable" in result.stderr


def test_unreachable_server_with_json_prints_an_error_object() -> None:
    result = _stun("probe", f"127.0.0.1:{_closed_udp_port()}", "--json", "--timeout", "5")
    assert result.returncode == 1
    assert "unreachable" in json.loads(result.stdout)["error"]


def test_bad_usage_exits_2() -> None:
    assert _stun("probe", "host:notaport").returncode == 2
    assert _stun("frobnicate").returncode == 2
