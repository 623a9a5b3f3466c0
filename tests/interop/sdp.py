"""Just enough SDP for a WebRTC data channel: read a browser's ICE attributes, write a
description that carries ours.

Chrome applies a remote description only with ``a=fingerprint`` (any well-formed SHA-256
one does: DTLS never completes, ICE is what is tested) and ``a=setup``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ice import Candidate

FINGERPRINT = "sha-256 " + ":".join(f"{i:02X}" for i in range(32))


@dataclass(frozen=True)
class IceDescription:
    """The ICE part of one ``m=application`` section."""

    ufrag: str
    pwd: str
    candidates: list[str]
    """The ``candidate:...`` attribute values, in order."""
    mid: str
    setup: str
    end_of_candidates: bool


def read_ice(sdp: str) -> IceDescription:
    """The ICE credentials, candidate lines, mid and setup role of a single-section SDP
    (session-level ufrag/pwd count too, media-level ones win)."""
    values: dict[str, str] = {}
    candidates: list[str] = []
    end = False
    for line in sdp.splitlines():
        if not line.startswith("a="):
            continue
        name, _, value = line[2:].partition(":")
        if name == "candidate":
            candidates.append(line[2:])
        elif name == "end-of-candidates":
            end = True
        elif name in ("ice-ufrag", "ice-pwd", "mid", "setup"):
            values[name] = value
    missing = {"ice-ufrag", "ice-pwd", "mid", "setup"} - values.keys()
    if missing:
        raise ValueError(f"the description has no {', '.join(sorted(missing))}: {sdp!r}")
    return IceDescription(
        values["ice-ufrag"], values["ice-pwd"], candidates, values["mid"], values["setup"], end
    )


def data_channel_sdp(
    ufrag: str, pwd: str, candidates: Iterable[Candidate], *, setup: str, mid: str = "0"
) -> str:
    """An offer or answer with one data channel section carrying our ICE credentials and
    all our candidates, then end-of-candidates. ``setup`` is ``actpass`` in an offer,
    ``active`` or ``passive`` in an answer."""
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {mid}",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        f"a=fingerprint:{FINGERPRINT}",
        f"a=setup:{setup}",
        f"a=mid:{mid}",
        "a=sctp-port:5000",
    ]
    lines += [f"a={candidate.to_sdp()}" for candidate in candidates]
    lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"
