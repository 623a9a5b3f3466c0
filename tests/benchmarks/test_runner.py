"""``python -m benchmarks``, the runner of every benchmark, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["metric", "icestack", "aioice", "ratio", "better", "goal", "met"]


def _benchmarks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_help_names_the_options_and_benchmarks() -> None:
    result = _benchmarks("--help")
    assert result.returncode == 0, result.stderr
    for word in ("--quick", "--only", "--json", "codec", "stun_rtt", "turn", "ice"):
        assert word in result.stdout


def test_an_unknown_benchmark_is_a_usage_error() -> None:
    result = _benchmarks("--only", "codec,nonesuch")
    assert result.returncode == 2
    assert "nonesuch" in result.stderr


def test_quick_codec_run_prints_one_table_and_writes_every_row(tmp_path: Path) -> None:
    json_file = tmp_path / "rows.json"
    result = _benchmarks("--quick", "--only", "codec", "--json-file", str(json_file))
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == COLUMNS
    assert len(lines) == 4
    assert all(line.startswith("codec: (") and line.endswith("higher") for line in lines)
    document = json.loads(json_file.read_text())
    assert document["quick"] is True
    assert list(document["seconds"]) == ["codec"]
    rows = document["rows"]
    assert [row["metric"][:3] for row in rows] == ["(a)", "(b)", "(c)", "(d)"]
    for row in rows:
        assert (row["benchmark"], row["unit"], row["better"], row["vs"]) == (
            "codec",
            "msg/s",
            "higher",
            "aioice",
        )
        assert row["icestack"] > 0 and row["aioice"] > 0
        assert row["ratio"] == row["icestack"] / row["aioice"]
        assert row["failed"] is False
