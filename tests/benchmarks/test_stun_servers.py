"""``python -m benchmarks.stun_servers`` as a user runs it, on loopback only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.coturn import turnserver_path
from tests.ports import dead_port

ROOT = Path(__file__).resolve().parents[2]


def _stun_servers(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.stun_servers", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def _check_answered_all(record: dict[str, Any], count: int) -> None:
    assert (record["sent"], record["answered"], record["success_rate"]) == (count, count, 1.0)
    assert record["errors"] == {}
    assert record["consistent"] is True and record["distinct_mapped"] == 1
    [(mapped, times)] = record["mapped_addresses"].items()
    assert mapped.startswith("127.0.0.1:") and times == count
    rtt = record["rtt_ms"]
    assert 0 < rtt["min"] <= rtt["p50"] <= rtt["p90"] <= rtt["p99"] <= rtt["max"]


def test_default_surveys_our_loopback_servers() -> None:
    result = _stun_servers("--count", "5", "--interval", "1", "--json")
    assert result.returncode == 0, result.stderr
    survey = json.loads(result.stdout)
    coturn = turnserver_path() is not None
    labels = [record["label"] for record in survey["servers"]]
    assert labels == (["icestack", "coturn"] if coturn else ["icestack"])
    assert [s["label"] for s in survey["skipped"]] == ([] if coturn else ["coturn"])
    for record in survey["servers"]:
        assert record["server"].startswith("127.0.0.1:") and record["transport"] == "udp"
        _check_answered_all(record, 5)


def test_a_named_server_that_does_not_answer_fails_with_the_reason() -> None:
    server = f"stun:127.0.0.1:{dead_port()}"
    result = _stun_servers("--server", server, "--count", "2", "--interval", "1")
    assert result.returncode == 1
    header, line, note = result.stdout.splitlines()
    assert header.split()[:3] == ["server", "address", "answered"]
    assert line.startswith(server) and "0/2 (0%)" in line
    assert "unreachable" in note
