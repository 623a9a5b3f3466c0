"""``ice.Connection`` against Chromium's libwebrtc, on loopback: Chrome offering and
controlling (we answer, controlled), and we offering and controlling (Chrome answers).

DTLS never completes (we do not do DTLS): ICE is what is tested. Chrome's
``iceConnectionState`` must reach "connected" and our ``connect()`` return; on top, the
DTLS ClientHello Chrome sends (it is the DTLS client in both tests) must reach us, our
datagrams must reach Chrome, and Chrome's later checks (consent, RFC 7675) must be
answered while it stays connected.

We give Chrome only our 127.0.0.1 candidate and take only its loopback ones (every line
must parse, though: its TCP candidates on port 9 are carried, never paired). Chrome also
gathers the host's interface addresses and checks from them too, so our side may learn
such an address as peer reflexive and answer it: datagrams to this host's own address
go through the loopback device, never out of the host. Chrome prefers those sockets
(network cost 0 against 50 for loopback) and, controlling, may nominate another pair
after the first, so the two sides' selected pairs can differ: the checks count over
all pairs.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from ice import Candidate, CandidatePair, CandidateType, Connection
from tests.ice.connection_support import bounded, connections
from tests.interop.chromium import Page
from tests.interop.sdp import data_channel_sdp, read_ice

pytestmark = pytest.mark.usefixtures("loop_errors")

DTLS_HANDSHAKE = 22
"""The content type of a DTLS handshake record: the first byte of Chrome's ClientHello."""


def is_loopback(candidate: Candidate) -> bool:
    return ipaddress.ip_address(candidate.host).is_loopback


def chrome_candidates(lines: list[str]) -> list[Candidate]:
    """Chrome's candidate lines, every one parsed; the loopback ones."""
    parsed = [Candidate.from_sdp(line) for line in lines]
    return [candidate for candidate in parsed if is_loopback(candidate)]


async def check_path(ours: Connection, pair: CandidatePair, page: Page) -> dict[str, Any]:
    """Chrome is connected, our selected pair ends at one of its sockets, data flows both
    ways, Chrome's later checks are answered; Chrome's selected pair when connected."""
    state = await bounded(page.call("iceState", ["connected", "completed"]))
    assert state == "connected", await page.evaluate("iceStates")
    theirs: dict[str, Any] = await page.call("selectedPair")
    ip, port = pair.remote.address
    assert f"{ip}:{port}" in await page.call("localAddresses")
    assert (theirs["remote"]["address"], theirs["remote"]["port"]) == pair.local.address
    assert theirs["local"]["protocol"] == "udp"

    hello = await bounded(ours.recv())
    assert hello[0] == DTLS_HANDSHAKE

    sent = [b"icestack %d" % i for i in range(3)]
    for data in sent:
        await ours.send(data)
    total = sum(map(len, sent))
    assert await bounded(page.call("totalReaches", "bytesReceived", total)) == total

    answered = await page.call("total", "responsesReceived")
    answered = await bounded(page.call("totalReaches", "responsesReceived", answered + 2))
    assert await page.evaluate("pc.iceConnectionState") == "connected"
    assert ours.agent.stats.responses_sent >= answered
    return theirs


def report(role: str, pair: CandidatePair, theirs: dict[str, Any]) -> None:
    local, remote = theirs["local"], theirs["remote"]
    print(
        f"chromium {role}: ours {pair.local.type}-{pair.remote.type} {pair}; "
        f"Chrome's {local['type']}-{remote['type']} "
        f"{local['address']}:{local['port']} -> {remote['address']}:{remote['port']}"
    )


async def test_chrome_candidates_parse(page: Page) -> None:
    """Every candidate line of Chrome's offer parses and prints back unchanged: UDP host
    candidates with Chrome's extensions, and TCP active candidates on port 9."""
    offer = read_ice(await page.call("createOffer"))
    parsed = [Candidate.from_sdp(line) for line in offer.candidates]

    assert [candidate.to_sdp() for candidate in parsed] == offer.candidates
    tcp = [candidate for candidate in parsed if candidate.protocol == "tcp"]
    assert tcp and all(c.port == 9 and c.tcptype == "active" for c in tcp)
    loopback = [c for c in parsed if c.protocol == "udp" and is_loopback(c)]
    assert {c.host for c in loopback} >= {"127.0.0.1"}
    assert not any(c.is_mdns for c in parsed)
    assert all(dict(c.extensions).get("generation") == "0" for c in parsed)


async def test_chrome_controlling_icestack_controlled(page: Page) -> None:
    """Chrome offers and controls; we answer (DTLS passive) and accept its nomination."""
    offer = read_ice(await page.call("createOffer"))
    assert offer.setup == "actpass"
    remote = chrome_candidates(offer.candidates)
    async with connections() as make:
        ours = make(False)
        candidates = await bounded(ours.gather_all())
        ours.set_remote_credentials(offer.ufrag, offer.pwd)
        for candidate in remote:
            ours.add_remote_candidate(candidate)
        ours.add_remote_candidate(None)
        answer = data_channel_sdp(
            ours.local_ufrag, ours.local_pwd, candidates, setup="passive", mid=offer.mid
        )
        connecting = asyncio.ensure_future(ours.connect())
        await page.call("acceptAnswer", answer)
        pair = await bounded(connecting)

        assert not ours.agent.controlling and pair.nominated
        assert pair.local.type is CandidateType.HOST
        assert pair.remote.type in (CandidateType.HOST, CandidateType.PRFLX)
        assert all(row["remote"].startswith(("host udp", "prflx udp")) for row in ours.stats())
        report("controlling", pair, await check_path(ours, pair, page))


async def test_icestack_controlling_chrome_controlled(page: Page) -> None:
    """We offer and control (regular nomination); Chrome answers (DTLS active)."""
    async with connections() as make:
        ours = make(True)
        candidates = await bounded(ours.gather_all())
        offer = data_channel_sdp(ours.local_ufrag, ours.local_pwd, candidates, setup="actpass")
        answer = read_ice(await bounded(page.call("acceptOffer", offer)))
        assert answer.setup == "active"
        ours.set_remote_credentials(answer.ufrag, answer.pwd)
        for candidate in chrome_candidates(answer.candidates):
            ours.add_remote_candidate(candidate)
        ours.add_remote_candidate(None)
        pair = await bounded(ours.connect())

        assert ours.agent.controlling and pair.nominated
        assert pair.local.type is CandidateType.HOST
        assert pair.remote.type in (CandidateType.HOST, CandidateType.PRFLX)
        report("controlled", pair, await check_path(ours, pair, page))
