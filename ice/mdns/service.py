"""mDNS for ICE candidates on the running asyncio loop: publish our host addresses under
``<uuid4>.local`` names and resolve the peer's (draft-ietf-mmusic-mdns-ice-candidates).

:class:`MdnsService` is the thin shell around :class:`~ice.mdns.endpoint.MdnsEndpoint`: it
owns one socket per address family (see :mod:`ice.mdns.sockets`), reads them with
``add_reader``, and keeps exactly one timer. It starts no tasks.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from .endpoint import MdnsEndpoint
from .errors import MdnsError
from .names import is_mdns_name
from .resolver import Resolved
from .sockets import default_interfaces, interface_index, open_socket, receive, send
from .types import DEFAULT_TTL, MDNS_GROUP4, MDNS_GROUP6, MDNS_PORT, Link, MdnsStats, Transmit

DEFAULT_RESOLVE_TIMEOUT = 5.0
"""Seconds :meth:`MdnsService.resolve` waits by default: its three queries go out at 0, 1
and 3 seconds."""
READ_BATCH = 64
"""Datagrams read per wake-up of the loop at most."""


@dataclass(frozen=True, slots=True)
class _Family:
    sock: socket.socket
    group: str
    interfaces: tuple[int, ...]


class MdnsService:
    """An mDNS responder and resolver sharing one socket per address family.

    Make one with :meth:`open` inside a running loop; :meth:`close` sends the goodbyes and
    releases the sockets and the timer. Lookups still waiting then return ``[]``.
    """

    def __init__(self, endpoint: MdnsEndpoint, families: dict[int, _Family], port: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._endpoint = endpoint
        self._families = families
        self._port = port
        self._pending: dict[str, asyncio.Future[tuple[str, ...]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0
        self._closed = False
        for family in families.values():
            self._loop.add_reader(family.sock.fileno(), self._readable, family)

    @classmethod
    def open(
        cls,
        *,
        interfaces: Sequence[str | int] | None = None,
        ipv4: bool = True,
        ipv6: bool = True,
        port: int = MDNS_PORT,
        group4: str = MDNS_GROUP4,
        group6: str = MDNS_GROUP6,
        ttl: int = DEFAULT_TTL,
        announcements: int = 2,
        rng: random.Random | None = None,
    ) -> MdnsService:
        """Open the sockets and start serving on the running loop.

        ``interfaces`` (names or indexes) default to those with a host address of each
        family. A family whose socket cannot be bound or joined on any of them is left
        out; MdnsError when no family is left. ``port`` and the groups are there so that
        tests can isolate; ``announcements`` is how many times a new name is announced.
        """
        asyncio.get_running_loop()  # before any socket exists
        chosen = None if interfaces is None else [interface_index(i) for i in interfaces]
        families: dict[int, _Family] = {}
        problems: list[str] = []
        for family, enabled, group in (
            (socket.AF_INET, ipv4, group4),
            (socket.AF_INET6, ipv6, group6),
        ):
            if not enabled:
                continue
            indices = chosen if chosen is not None else default_interfaces(family)
            try:
                sock, joined = open_socket(family, group, port, indices)
            except OSError as exc:
                problems.append(f"{group}: {exc}")
                continue
            families[family] = _Family(sock, group, joined)
        if not families:
            raise MdnsError(f"mDNS is unavailable: {'; '.join(problems) or 'no family enabled'}")
        endpoint = MdnsEndpoint(port=port, ttl=ttl, announcements=announcements, rng=rng)
        return cls(endpoint, families, port)

    @property
    def stats(self) -> MdnsStats:
        return self._endpoint.stats

    @property
    def names(self) -> dict[str, str]:
        """Every published name and its IP address."""
        return self._endpoint.responder.names

    @property
    def links(self) -> tuple[Link, ...]:
        """Each ``(address family, interface index)`` the service listens and sends on."""
        return tuple(
            (family, index) for family, f in self._families.items() for index in f.interfaces
        )

    def register(self, ip: str) -> str:
        """Publish ``ip`` (no ``%scope``) and return its ``<uuid4>.local`` name: a fresh one,
        or the one it already has. The name is announced right away."""
        self._check_open()
        name = self._endpoint.responder.register(self._loop.time(), ip)
        self._service()
        return name

    def unregister(self, name: str) -> None:
        """Stop answering for ``name`` and send its goodbye; unknown names are ignored."""
        self._check_open()
        self._endpoint.responder.unregister(name)
        self._service()

    async def resolve(self, name: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT) -> list[str]:
        """The addresses of ``name`` (IPv4 and/or IPv6, in the order the answer gave them),
        or ``[]`` when no answer came within ``timeout`` seconds or the service closed.

        Answers are cached for their TTL; concurrent calls for one name share one query.
        MdnsError if ``name`` is not a ``<uuid>.local`` name or the service is closed.
        """
        self._check_open()
        if not is_mdns_name(name):
            raise MdnsError(f"{name!r} is not an mDNS ICE name (<uuid>.local)")
        key = name.lower()
        future = self._pending.get(key)
        if future is None:
            future = self._pending[key] = self._loop.create_future()
        now = self._loop.time()
        self._endpoint.resolver.lookup(now, key, now + timeout)
        self._service()
        try:
            return list(await asyncio.wait_for(asyncio.shield(future), timeout))
        except TimeoutError:
            return []

    def close(self) -> None:
        """Send a goodbye for every name, end every lookup with ``[]``, and release the
        sockets and the timer. Idempotent."""
        if self._closed:
            return
        self._endpoint.responder.close()
        self._service()
        self._closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_result(())
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for family in self._families.values():
            self._loop.remove_reader(family.sock.fileno())
            family.sock.close()

    def _check_open(self) -> None:
        if self._closed:
            raise MdnsError("the mDNS service is closed")

    def _readable(self, family: _Family) -> None:
        endpoint = self._endpoint
        for _ in range(READ_BATCH):
            try:
                data, source, index = receive(family.sock)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.stats.send_errors += 1  # an ICMP error about an earlier reply
                break
            if index in family.interfaces:
                link = (family.sock.family, index)
                endpoint.handle_datagram(self._loop.time(), data, source, link)
            else:
                self.stats.received += 1
                self.stats.dropped_ignored += 1
        self._service()

    def _service(self) -> None:
        """Send what the endpoint wants sent, settle ended lookups, re-arm the timer."""
        for transmit in self._endpoint.poll_transmits():
            self._transmit(transmit)
        for event in self._endpoint.poll_events():
            future = self._pending.pop(event.name, None)
            if future is not None and not future.done():
                future.set_result(event.addresses if isinstance(event, Resolved) else ())
        self._rearm()

    def _transmit(self, transmit: Transmit) -> None:
        if transmit.remote is not None:
            assert transmit.link is not None, "a unicast reply leaves by the link it answers"
            targets = [(transmit.link, transmit.remote)]
        else:
            links = [transmit.link] if transmit.link is not None else self.links
            targets = [(link, (self._families[link[0]].group, self._port)) for link in links]
        for (family, index), remote in targets:
            try:
                send(self._families[family].sock, transmit.data, remote, index)
            except OSError:
                self.stats.send_errors += 1

    def _rearm(self) -> None:
        deadline = None if self._closed else self._endpoint.poll_timeout()
        if self._timer is not None and deadline != self._timer_deadline:
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer_deadline = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._endpoint.handle_timeout(max(self._loop.time(), self._timer_deadline))
        self._service()
