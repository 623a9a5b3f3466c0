"""TURN REST API credentials: time-limited username and password from a shared secret.

The scheme of draft-uberti-behave-turn-rest, as coturn implements it (``--use-auth-secret
--static-auth-secret=SECRET``): the username is ``"<expiry unix time>:<user>"`` and the
password the base64 HMAC-SHA1 of that username keyed with the secret. The server needs no
per-user state: it recomputes the password and refuses usernames whose expiry has passed.
The result is an ordinary long-term credential (RFC 8489 section 9.2): hash it with the
server's realm, e.g. ``stun.long_term_key(username, realm, password)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time

__all__ = ["MAX_EXPIRY", "MAX_USERNAME_BYTES", "rest_credentials"]

MAX_EXPIRY = 2**31 - 1
"""The latest expiry coturn 4.6.1 accepts: 2**31 and later get 401 (a signed 32-bit time)."""

MAX_USERNAME_BYTES = 508
"""A STUN USERNAME is fewer than 509 bytes of UTF-8 (RFC 8489 section 14.3)."""

_FORBIDDEN = frozenset(" \t\r\n\"'\\\x00")
"""Characters coturn refuses in a username: 400 for whitespace, quotes and backslash, 401 for
NUL. Other characters, ``:`` and non-ASCII included, work."""


def rest_credentials(
    secret: str, user: str, ttl: float = 86400.0, *, now: float | None = None
) -> tuple[str, str]:
    """TURN REST API ``(username, password)`` for ``user``, valid for ``ttl`` seconds.

    ``now`` is the current Unix time (default :func:`time.time`); the expiry
    ``int(now + ttl)`` drops the fraction of a second, so the credentials may run out up to
    one second early. ``user`` may be empty and may contain ``:`` (coturn reads the expiry
    from the digits before the first ``:``); the username is ``"<expiry>:<user>"`` and the
    password ``base64(HMAC-SHA1(secret, username))``, both as coturn computes them.

    Raises :class:`ValueError` for an empty ``secret``; a ``ttl`` that is not a positive
    finite number; a ``user`` with whitespace, quotes, a backslash or NUL (coturn answers
    such usernames with 400 or 401); an expiry before 0 or after :data:`MAX_EXPIRY`; a
    username longer than :data:`MAX_USERNAME_BYTES` bytes of UTF-8.
    """
    if not secret:
        raise ValueError("the TURN REST API shared secret is empty")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    bad = sorted(_FORBIDDEN.intersection(user))
    if bad:
        raise ValueError(
            f"TURN servers (coturn) refuse usernames with whitespace, quotes, backslash or "
            f"NUL: {user!r} has {''.join(bad)!r}"
        )
    end = (time.time() if now is None else now) + ttl
    if not 0 <= end < MAX_EXPIRY + 1:
        raise ValueError(
            f"expiry {end!r} is not a Unix time from 0 to {MAX_EXPIRY} (2038-01-19); "
            f"coturn rejects later ones"
        )
    expiry = int(end)
    username = f"{expiry}:{user}"
    if len(username.encode()) > MAX_USERNAME_BYTES:
        raise ValueError(
            f"username {username[:40]!r}... is {len(username.encode())} bytes of UTF-8; "
            f"STUN allows at most {MAX_USERNAME_BYTES}"
        )
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")
