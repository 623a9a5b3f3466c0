"""100 ms delay and 10 % loss each way on one end's link (every ``-a`` host's): every
cell that connects on the clean network still connects, in every run, and carries data
both ways. The pair may differ: with checks lost, the controlling side may nominate a
relayed pair before a better one became valid (nomination waits 1 s, not forever); the
summary table shows what was selected."""

from __future__ import annotations

import pytest

from .cells import AIOICE, MATRIX, Cell
from .runner import CellResult
from .test_matrix import check_connected

pytestmark = [pytest.mark.natlab, pytest.mark.coturn]


@pytest.mark.parametrize("cell", [c for c in MATRIX + AIOICE if c.connects], ids=lambda c: c.name)
def test_connects_in_every_impaired_run(impaired: list[dict[str, CellResult]], cell: Cell) -> None:
    for run in impaired:
        check_connected(run[cell.name], types=False)
