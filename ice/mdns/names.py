"""mDNS host names for ICE candidates: a version 4 UUID under ``.local``
(draft-ietf-mmusic-mdns-ice-candidates section 3.1.1)."""

from __future__ import annotations

import random
import re
import uuid

LOCAL_SUFFIX = ".local"

_NAME = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.local",
    re.ASCII | re.IGNORECASE,
)


def new_name(rng: random.Random) -> str:
    """A fresh ``<uuid4>.local`` name drawn from ``rng``."""
    return f"{uuid.UUID(int=rng.getrandbits(128), version=4)}{LOCAL_SUFFIX}"


def is_mdns_name(name: str) -> bool:
    """Whether ``name`` has the form of an mDNS ICE name: one UUID label, then ``.local``
    (any case). Only such names are resolved, so a peer cannot make us probe the LAN for
    other ``.local`` hosts."""
    return _NAME.fullmatch(name) is not None
