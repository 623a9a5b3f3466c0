"""A failing user callback is reported to the loop and stops nothing."""

from __future__ import annotations

import asyncio

import turn
from tests.coturn import CoturnFactory


async def test_an_on_event_that_raises_does_not_stop_the_refreshes(
    coturn_factory: CoturnFactory,
) -> None:
    server = coturn_factory(users={"alice": "pw"}, max_allocate_lifetime=1)
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    refreshed = asyncio.Event()
    seen: list[turn.Event] = []

    def on_event(event: turn.Event) -> None:
        seen.append(event)
        if sum(isinstance(e, turn.Refreshed) for e in seen) >= 2:
            refreshed.set()
        raise RuntimeError("a bug in the application")

    try:
        async with asyncio.timeout(5):
            allocation = await turn.allocate(
                server.address, "alice", "pw", lifetime=600, on_event=on_event
            )
            async with allocation:
                await refreshed.wait()  # each refresh raised in on_event, yet they go on
                assert not allocation.closed
    finally:
        loop.set_exception_handler(None)
    assert isinstance(seen[0], turn.Allocated)
    assert all(isinstance(c.get("exception"), RuntimeError) for c in reported)
    assert len(reported) == len(seen)
