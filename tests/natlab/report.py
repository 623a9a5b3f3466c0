"""The NAT lab's summary: build time, the matrix (cell, expected pair types, seen pair
types, connect time), the impaired runs and the NAT behaviour discovered per router."""

from __future__ import annotations

from typing import Any

import pytest

from .runner import CellResult, SideResult

RESULTS = pytest.StashKey[dict[str, Any]]()
"""Where the fixtures leave what they ran, for the summary at the end of the session."""


def _seen(side: SideResult) -> str:
    if side.types is not None:
        return "{} -> {}".format(*side.types)
    if side.outcome is not None:
        return str(side.outcome.get("error"))
    return "no outcome"


def _time(side: SideResult) -> str:
    outcome = side.outcome or {}
    if side.connected:
        return f"{outcome['connect_s'] * 1000:.0f} ms"
    if "elapsed_s" in outcome:
        return f"failed at {outcome['elapsed_s']:.2f} s"
    return "-"


def matrix_rows(results: dict[str, CellResult]) -> list[str]:
    rows = [
        "| cell | a (controlling) | b (controlled) | expected | seen a | seen b "
        "| time a | time b |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        a, b = result.sides["a"], result.sides["b"]
        cell = result.cell
        rows.append(
            f"| {name} | {cell.a.label} | {cell.b.label} | {cell.expected} | {_seen(a)} | "
            f"{_seen(b)} | {_time(a)} | {_time(b)} |"
        )
    return rows


def impaired_rows(runs: list[dict[str, CellResult]]) -> list[str]:
    header = "| cell | " + " | ".join(f"run {i + 1}: seen a; connect a/b" for i in range(len(runs)))
    rows = [header + " |", "|---" * (len(runs) + 1) + "|"]
    for name in runs[0] if runs else ():
        cells = []
        for run in runs:
            a, b = run[name].sides["a"], run[name].sides["b"]
            cells.append(f"{_seen(a)}; {_time(a)} / {_time(b)}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def table(stash: dict[str, Any]) -> list[str]:
    """Markdown lines for whatever parts of the lab ran."""
    lines: list[str] = []
    lab = stash.get("lab")
    if lab is not None and lab.build_seconds is not None:
        lines.append(
            f"lab network built in {lab.build_seconds * 1000:.0f} ms, coturn and the STUN "
            f"server ready {lab.servers_seconds * 1000:.0f} ms later"
        )
    if "matrix" in stash:
        lines += ["", "matrix (ICE timeout per cell as configured):", *matrix_rows(stash["matrix"])]
    if "impaired" in stash:
        lines += [
            "",
            "impaired (100 ms delay, 10 % loss each way on every -a host's link):",
            *impaired_rows(stash["impaired"]),
        ]
    if "nat" in stash:
        lines += ["", "| host | stun nat says |", "|---|---|"]
        lines += [f"| {host} | {said} |" for host, said in stash["nat"].items()]
    return lines
