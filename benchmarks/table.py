"""Plain-text tables: columns as wide as their widest cell."""

from __future__ import annotations


def aligned(lines: list[list[str]], left: int = 1) -> str:
    """``lines`` (the first is the header) as text; the first ``left`` columns are
    left-aligned, the others right-aligned."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )
