"""mDNS candidates (draft-ietf-mmusic-mdns-ice-candidates) for one :class:`ice.Connection`:
the ``.local`` names its host candidates are offered under, and the resolution of the
peer's ``.local`` candidates into candidates the agent can pair.

The agent pairs IP addresses only: our host candidates keep theirs inside it (the published
form is made each time a candidate is handed to the user), and the peer's ``.local``
candidates stay carried but unpaired there, next to their resolved copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from .candidate import Candidate, CandidateType
from .mdns import MdnsError, MdnsService, is_mdns_name

_USERS: weakref.WeakKeyDictionary[MdnsService, Counter[str]] = weakref.WeakKeyDictionary()
"""Per shared service, how many connections offer each name: the service gives one IP
address one name, so a name is unregistered only when its last user closes."""


class MdnsCandidates:
    """The mDNS side of one connection, on a ``service`` it does not own.

    With ``publish``, host candidates are offered under a ``<uuid4>.local`` name and
    server-reflexive ones with the related address ``0.0.0.0:0`` (``[::]:0``); the
    foundations of both are re-keyed with a secret of this connection, as a CRC-32 of
    the base address (see :func:`~ice.candidate.make_foundation`) would reveal it.
    """

    __slots__ = (
        "_closed",
        "_end_waiting",
        "_key",
        "_names",
        "_pending",
        "_tasks",
        "publish",
        "service",
        "unresolved",
    )

    def __init__(self, service: MdnsService, publish: bool) -> None:
        self.service = service
        self.publish = publish
        self.unresolved = 0
        """The peer's ``.local`` candidates that did not resolve (no answer in time, or
        not a ``<uuid>.local`` name): left carried but unpaired."""
        self._names: dict[str, str] = {}  # our IP address -> its name
        self._key = os.urandom(16)
        self._pending = 0  # resolutions not yet ended
        self._end_waiting = False  # the peer's end-of-candidates, held back meanwhile
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- publishing -------------------------------------------------------------------------

    def gathered(self, candidate: Candidate) -> None:
        """A candidate the agent took: name its address if it is a host one we publish."""
        if not self.publish or candidate.type is not CandidateType.HOST:
            return
        ip = candidate.host
        if ip not in self._names:
            name = self._names[ip] = self.service.register(ip)
            _USERS.setdefault(self.service, Counter())[name] += 1

    def public(self, candidate: Candidate) -> Candidate:
        """``candidate`` (as the agent has it) in the form offered to the peer."""
        if not self.publish:
            return candidate
        if candidate.type is CandidateType.HOST:
            host = self._names[candidate.host]
            return replace(candidate, host=host, foundation=self._foundation(candidate))
        if candidate.type is CandidateType.SRFLX and candidate.related_address is not None:
            unspecified = ("::", 0) if ":" in candidate.related_address[0] else ("0.0.0.0", 0)
            return replace(
                candidate, related_address=unspecified, foundation=self._foundation(candidate)
            )
        return candidate

    def _foundation(self, candidate: Candidate) -> str:
        digest = hashlib.blake2b(candidate.foundation.encode(), key=self._key, digest_size=4)
        return str(int.from_bytes(digest.digest(), "big"))

    # -- resolving --------------------------------------------------------------------------

    def resolve(self, candidate: Candidate, add: Callable[[Candidate | None], None]) -> None:
        """Resolve the peer's ``.local`` ``candidate`` in a task; ``add`` gets a copy of it
        per address found, then None if the peer's end-of-candidates was held back for
        this resolution (see :meth:`hold_end`). Failure only counts in :attr:`unresolved`."""
        if not is_mdns_name(candidate.host):
            self.unresolved += 1  # never asked: a peer may not make us probe the LAN
            return
        self._pending += 1
        task = asyncio.get_running_loop().create_task(self._resolve(candidate, add))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, candidate: Candidate, add: Callable[[Candidate | None], None]) -> None:
        try:
            addresses = await self.service.resolve(candidate.host)
        except MdnsError:  # the service was closed
            addresses = []
        self._pending -= 1
        if not addresses:
            self.unresolved += 1
        for ip in addresses:
            add(replace(candidate, host=ip))
        if self._end_waiting and not self._pending:
            self._end_waiting = False
            add(None)

    def hold_end(self) -> bool:
        """The peer signalled end-of-candidates: True to hold it back until the
        resolutions under way have ended, False to pass it on now."""
        self._end_waiting = self._pending > 0
        return self._end_waiting

    # -- the end ----------------------------------------------------------------------------

    def close(self) -> list[asyncio.Task[None]]:
        """Cancel the resolutions (returned, to be awaited) and unregister our names (the
        ones no other connection on the service still offers). Idempotent."""
        if self._closed:
            return []
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        users = _USERS[self.service] if self._names else Counter()
        for name in self._names.values():
            users[name] -= 1
            if not users[name]:
                del users[name]
                with contextlib.suppress(MdnsError):  # closed first: its names went with it
                    self.service.unregister(name)
        return tasks
