"""``python -m stun`` as a user runs it: real processes against real servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.certs import write_pem
from tests.coturn import Coturn
from tests.ports import dead_port


def _stun(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stun", *args], capture_output=True, text=True, timeout=timeout
    )


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
    result = _stun("probe", f"127.0.0.1:{dead_port()}", "--timeout", "5")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("stun probe: error: ") and "unreachable" in result.stderr


def test_unreachable_server_with_json_prints_an_error_object() -> None:
    result = _stun("probe", f"127.0.0.1:{dead_port()}", "--json", "--timeout", "5")
    assert result.returncode == 1
    assert "unreachable" in json.loads(result.stdout)["error"]


def test_bad_usage_exits_2() -> None:
    assert _stun("probe", "host:notaport").returncode == 2
    assert _stun("frobnicate").returncode == 2


class _Served:
    """``python -m stun serve`` in a child process, stopped by the test."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stun", "serve", "--json", "--timeout", "60", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # printed once every socket is bound
        assert line, self.process.stderr.read() if self.process.stderr else ""
        self.listening: dict[str, list[str]] = json.loads(line)["listening"]

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=10)


def test_serve_in_rfc5780_mode_and_nat_discovery_against_it() -> None:
    served = _Served("--bind", "127.0.0.1:0", "--alt", "127.0.0.2:0")
    try:
        assert len(served.listening["udp"]) == 4
        primary = served.listening["udp"][0]
        result = _stun("nat", primary, "--json", "--timeout", "2")
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        assert (record["behind_nat"], record["mapping"], record["filtering"]) == (
            False,
            "endpoint-independent",
            "endpoint-independent",
        )
    finally:
        assert served.stop() == 0


def test_serve_over_tls_and_probe_with_the_ca(tmp_path: Path) -> None:
    cert, key = write_pem(tmp_path)
    served = _Served(
        "--bind",
        "127.0.0.1:0",
        "--tls-bind",
        "127.0.0.1:0",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    try:
        where = served.listening["tls"][0]
        trusted = _stun("probe", where, "--tls", "--cafile", str(cert), "--json")
        assert trusted.returncode == 0, trusted.stderr
        assert json.loads(trusted.stdout)["transport"] == "tls"
        untrusted = _stun("probe", where, "--tls")
        assert untrusted.returncode == 1
        assert "TLS failed" in untrusted.stderr
        insecure = _stun("probe", where, "--tls", "--insecure")
        assert insecure.returncode == 0, insecure.stderr
    finally:
        assert served.stop() == 0


def test_serve_rejects_an_alternate_on_the_same_ip() -> None:
    result = _stun("serve", "--bind", "127.0.0.1:0", "--alt", "127.0.0.1:0", "--timeout", "1")
    assert result.returncode == 1
    assert result.stderr == (
        "stun serve: error: the alternate address must differ from the primary in IP and port\n"
    )
