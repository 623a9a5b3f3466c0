"""The ``ice connect`` offer line: format, parsing errors, the role rule, the mode check."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import get_args

import pytest

from ice.candidate import Candidate
from ice.offer import VERSION, Offer, OfferError, Role, check_modes, choose_role, tie_breaker

HOST = Candidate.from_sdp("candidate:1 1 udp 2130706175 192.0.2.7 50000 typ host")
SRFLX = Candidate.from_sdp(
    "candidate:2 1 udp 1694498559 203.0.113.9 61000 typ srflx raddr 192.0.2.7 rport 50000"
)
OURS = Offer("Jd8q", "4Rp0aQ2bX9cV7nK1mZ3sT5", 1000, (HOST, SRFLX))
THEIRS = Offer("kW3e", "pL8uY2tR6eW4qA1sD9fG7h", 2000, (HOST,))


def test_the_line_is_one_line_of_sdp_attribute_values_after_the_version() -> None:
    line = OURS.encode()
    assert "\n" not in line
    version, _, body = line.partition(" ")
    assert version == VERSION
    assert body.split(";") == [
        "ice-ufrag:Jd8q",
        "ice-pwd:4Rp0aQ2bX9cV7nK1mZ3sT5",
        "ice-options:ice2",
        "tiebreaker:1000",
        "mode:chat",
        HOST.to_sdp(),
        SRFLX.to_sdp(),
        "end-of-candidates",
    ]


def test_a_line_reads_back_as_the_same_offer() -> None:
    offer = replace(OURS, mode="send", ta=0.08)
    assert Offer.parse(offer.encode()) == offer


def test_ice_pacing_appears_only_when_ta_is_not_50_ms() -> None:
    assert "ice-pacing" not in OURS.encode()
    assert ";ice-pacing:20;" in replace(OURS, ta=0.02).encode()


def test_a_line_without_end_of_candidates_is_incomplete() -> None:
    line = replace(OURS, complete=False).encode()
    assert not line.endswith("end-of-candidates")
    assert Offer.parse(line).complete is False


def test_the_json_record_and_surrounding_blanks_are_accepted() -> None:
    line = json.dumps({"offer": OURS.encode()})
    assert Offer.parse(f"  {line}\r\n") == OURS


def test_unknown_items_are_skipped() -> None:
    assert Offer.parse(OURS.encode().replace(";mode:", ";x-later:1;mode:")) == OURS


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hello there", "not an offer line (it should start with 'icestack1 ')"),
        ("icestack2 ice-ufrag:abcd", "format icestack2; this icestack reads icestack1 only"),
        ("icestack1 ice-pwd:4Rp0aQ2bX9cV7nK1mZ3sT5;tiebreaker:1", "no ice-ufrag"),
        ("icestack1 ice-ufrag:ab;ice-pwd:4Rp0aQ2bX9cV7nK1mZ3sT5", "ice-ufrag 'ab' is not 4"),
        ("icestack1 ice-ufrag:abcd;ice-pwd:short;tiebreaker:1", "ice-pwd 'short'"),
        ('{"offer": 5}', 'a JSON line must be an object with an "offer" string'),
        ("{oops", "starts with '{' but is not JSON"),
    ],
)
def test_malformed_lines_say_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(OfferError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Offer.parse(line)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("tiebreaker:-1", "tiebreaker '-1' is not a number below 2\\*\\*64"),
        (f"tiebreaker:{2**64}", "is not a number below"),
        ("mode:both", "mode 'both' is not one of chat, send, receive"),
        ("ice-pacing:0", "ice-pacing '0' is not a number of milliseconds"),
        (
            "candidate:1 1 udp 1 192.0.2.1 5 typ nope",
            "candidate 1 of the offer: unknown candidate type",
        ),
    ],
)
def test_malformed_items_are_named(item: str, message: str) -> None:
    name = item.partition(":")[0]
    items = [part for part in OURS.encode().split(";") if not part.startswith(f"{name}:")]
    with pytest.raises(OfferError, match=message):
        Offer.parse(";".join([*items[:-1], item, items[-1]]))


def test_the_higher_tie_breaker_controls_on_both_sides() -> None:
    assert choose_role(THEIRS, OURS) is True
    assert choose_role(OURS, THEIRS) is False


@pytest.mark.parametrize("role", ["controlling", "auto", "controlled"])
def test_tie_breakers_are_drawn_from_the_quarters_of_their_role(role: Role) -> None:
    low, high = {"controlled": (0, 1), "auto": (1, 3), "controlling": (3, 4)}[role]
    for _ in range(100):
        assert low * 2**62 <= tie_breaker(role) < high * 2**62


def test_a_forced_role_wins_over_auto_and_opposite_roles_agree() -> None:
    sides = {role: replace(OURS, tie_breaker=tie_breaker(role)) for role in get_args(Role)}
    sides["auto"] = replace(THEIRS, tie_breaker=tie_breaker("auto"))
    assert choose_role(sides["controlling"], sides["auto"]) is True
    assert choose_role(sides["auto"], sides["controlling"]) is False
    assert choose_role(sides["controlled"], sides["auto"]) is False
    assert choose_role(sides["auto"], sides["controlled"]) is True


def test_equal_tie_breakers_fall_back_to_the_credentials() -> None:
    tied = replace(THEIRS, tie_breaker=OURS.tie_breaker)
    assert choose_role(OURS, tied) is not choose_role(tied, OURS)


def test_our_own_line_is_refused() -> None:
    with pytest.raises(OfferError, match="our own offer line"):
        choose_role(OURS, Offer.parse(OURS.encode()))


@pytest.mark.parametrize(("ours", "theirs"), [("chat", "chat"), ("send", "receive")])
def test_matching_modes_pass(ours: str, theirs: str) -> None:
    check_modes(Offer.parse(_with_mode(ours)), Offer.parse(_with_mode(theirs)))
    check_modes(Offer.parse(_with_mode(theirs)), Offer.parse(_with_mode(ours)))


@pytest.mark.parametrize(
    ("ours", "theirs", "advice"),
    [
        ("send", "send", "run the other side with --receive FILE"),
        ("send", "chat", "run it with --receive FILE"),
        ("receive", "receive", "run the other side with --send FILE"),
        ("receive", "chat", "run it with --send FILE"),
        ("chat", "send", "run this side with --receive FILE"),
        ("chat", "receive", "run this side with --send FILE"),
    ],
)
def test_mismatched_modes_say_how_to_fix_them(ours: str, theirs: str, advice: str) -> None:
    with pytest.raises(OfferError, match=advice):
        check_modes(Offer.parse(_with_mode(ours)), Offer.parse(_with_mode(theirs)))


def _with_mode(mode: str) -> str:
    return OURS.encode().replace("mode:chat", f"mode:{mode}")
