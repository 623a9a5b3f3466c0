"""Run every benchmark and print one table: icestack vs aioice, side by side.

    python -m benchmarks [--quick] [--only NAME,...] [--json] [--json-file PATH]

Each benchmark runs in its own process, one after the other (so that none disturbs
another's figures), as ``python -m benchmarks.NAME --json [--quick]``; this gathers their
rows. The ratio is icestack / aioice (or / the baseline a metric names, e.g. "vs plain
UDP"); the "better" column says which way is good: lower for times, CPU and memory,
higher for rates (units ending in "/s"). A benchmark that needs coturn reports its rows as
skipped when ``turnserver`` is not installed. Only loopback (and the network namespace of
``benchmarks.ice``) is used. Exit code 1 if a benchmark failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.table import aligned

BENCHMARKS = ("codec", "stun_rtt", "turn", "ice")
ROOT = Path(__file__).resolve().parent.parent
QUICK_TIMEOUT, FULL_TIMEOUT = 300.0, 3600.0
"""Seconds one benchmark may run, with and without --quick."""

DEFAULTS: dict[str, Any] = {
    "metric": "",
    "unit": "",
    "better": None,
    "icestack": None,
    "aioice": None,
    "ratio": None,
    "vs": "aioice",
    "baseline": None,
    "goal": "",
    "met": None,
    "note": "",
    "failed": False,
    "detail": None,
}
"""Every row has these keys; the benchmarks leave out some of them."""


def run_benchmark(name: str, quick: bool) -> list[dict[str, Any]]:
    """Run one benchmark in its own process; its rows, or one row saying why there are none."""
    argv = [sys.executable, "-m", f"benchmarks.{name}", "--json", *(["--quick"] if quick else [])]
    timeout = QUICK_TIMEOUT if quick else FULL_TIMEOUT
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return [_failed(name, f"no result within {timeout:g} s")]
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        last = done.stderr.strip().splitlines()[-1:] or [""]
        return [_failed(name, f"exit code {done.returncode}: {last[0]}")]
    try:
        rows = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        return [_failed(name, f"its output is not JSON ({exc})")]
    return [_complete(name, row) for row in rows]


def _complete(name: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the benchmark's name and every key of :data:`DEFAULTS`."""
    full = {"benchmark": name, **DEFAULTS, **row}
    if full["better"] is None:
        full["better"] = "higher" if full["unit"].endswith("/s") else "lower"
    return full


def _failed(name: str, reason: str) -> dict[str, Any]:
    return _complete(
        name, {"metric": "(every figure)", "note": f"FAILED: {reason}", "failed": True}
    )


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    digits = 2 if abs(value) < 100 else 1 if abs(value) < 10_000 else 0
    return f"{value:,.{digits}f}{'' if unit.startswith('/') else ' '}{unit}".rstrip()


def _line(row: dict[str, Any]) -> list[str]:
    ratio, met = row["ratio"], row["met"]
    return [
        f"{row['benchmark']}: {row['metric']}",
        _value(row["icestack"], row["unit"]),
        _value(row["aioice"], row["unit"]),
        "-" if ratio is None else f"{ratio:.{3 if abs(ratio) < 1 else 2}f}x",
        row["better"] if ratio is not None else "",
        row["goal"],
        "" if met is None else "yes" if met else "NO",
    ]


def table(rows: list[dict[str, Any]]) -> str:
    """The table of every row, then the rows' notes."""
    header = ["metric", "icestack", "aioice", "ratio", "better", "goal", "met"]
    notes = [f"  {r['benchmark']}: {r['metric']}: {r['note']}" for r in rows if r["note"]]
    return aligned([header, *map(_line, rows)]) + ("\nnotes:\n" + "\n".join(notes) if notes else "")


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown) or text!r}; choose from {', '.join(BENCHMARKS)}"
        )
    return [name for name in BENCHMARKS if name in names]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute in all)")
    parser.add_argument(
        "--only",
        type=_names,
        default=list(BENCHMARKS),
        metavar="NAME,...",
        help=f"run only these, of {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--json-file", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    for name in args.only:
        start = time.perf_counter()
        rows += run_benchmark(name, args.quick)
        timings[name] = time.perf_counter() - start
        print(f"[{name}] {timings[name]:.1f} s", file=sys.stderr, flush=True)
    document = {"quick": args.quick, "seconds": timings, "rows": rows}
    if args.json_file:
        args.json_file.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2) if args.json else table(rows))
    sys.exit(1 if any(row["failed"] for row in rows) else 0)


if __name__ == "__main__":
    main()
