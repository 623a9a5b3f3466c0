"""The NAT lab's address plan: which namespaces exist, what each host is, how they connect.

::

                          203.0.113.0/24 "public" segment (bridge br0 in <p>-sw)
       .1 sink (default gateway that forwards nothing: the public side has no
          route back into the private ranges, and packets to them vanish)
       .10 coturn (UDP, TCP, TLS)   .11/.12 our STUN server, RFC 5780 mode   <p>-srv
       .21 cone-a router   .22 cone-b router   (MASQUERADE: EIM + APDF)
       .23 sym-a router    .24 sym-b router    (MASQUERADE --random-fully: APDM + APDF)
       .25 blk-a router    .26 blk-b router    (all UDP dropped; TCP to .10 only)
       .31 open-a host     .32 open-b host     (no NAT)
     each router has its own LAN 10.0.N.0/24: router .1, host .2

A host is where a peer runs; for the kinds behind a router, the router is a namespace of
its own. Hosts come in pairs (``-a`` and ``-b``), so that every cell of the matrix has its
two ends behind different routers; impairment goes on the ``-a`` side.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PUBLIC_NET = "203.0.113.0/24"
SINK_IP = "203.0.113.1"
TURN_IP = "203.0.113.10"
STUN_IP = "203.0.113.11"
STUN_ALT_IP = "203.0.113.12"
STUN_PORT = 3478
STUN_ALT_PORT = 3479


class Kind(StrEnum):
    """What stands between a host and the public segment."""

    CONE = "cone"
    """Endpoint-independent mapping, address-and-port-dependent filtering."""
    SYMMETRIC = "symmetric"
    """Address-and-port-dependent mapping and filtering."""
    OPEN = "open"
    """No NAT, no firewall: the host is on the public segment."""
    UDP_BLOCKED = "udp-blocked"
    """A router that drops all UDP and lets only TCP to the TURN server out."""


_SHORT = {Kind.CONE: "cone", Kind.SYMMETRIC: "sym", Kind.OPEN: "open", Kind.UDP_BLOCKED: "blk"}


@dataclass(frozen=True, slots=True)
class Host:
    """One place a peer runs."""

    name: str
    """Such as ``cone-a``."""
    kind: Kind
    netns: str
    """The namespace the peer runs in."""
    ip: str
    """The host's own address (private behind a router)."""
    public_ip: str
    """Where the public segment sees it: its router's WAN address, or its own."""
    router: str | None
    """The router's namespace (None for an open host)."""
    lan: int
    """N of its LAN 10.0.N.0/24 (0 for an open host)."""

    @property
    def impairment(self) -> tuple[str, tuple[str, ...]]:
        """Where to impair this host's link: a namespace and the chains of its ``raw``
        table with the interfaces they match (both directions of the link)."""
        if self.router is not None:
            return self.router, ("PREROUTING -i lan0", "PREROUTING -i wan0")
        return self.netns, ("PREROUTING -i eth0", "OUTPUT -o eth0")


def plan(prefix: str) -> tuple[dict[str, Host], str, str]:
    """The lab's hosts by name, the switch namespace and the server namespace."""
    hosts: dict[str, Host] = {}
    lan = 0
    router_ip = 21
    for kind in (Kind.CONE, Kind.SYMMETRIC, Kind.UDP_BLOCKED):
        for side in "ab":
            lan += 1
            name = f"{_SHORT[kind]}-{side}"
            hosts[name] = Host(
                name=name,
                kind=kind,
                netns=f"{prefix}-{name}",
                ip=f"10.0.{lan}.2",
                public_ip=f"203.0.113.{router_ip}",
                router=f"{prefix}-{name}-r",
                lan=lan,
            )
            router_ip += 1
    for index, side in enumerate("ab"):
        name = f"open-{side}"
        ip = f"203.0.113.{31 + index}"
        hosts[name] = Host(name, Kind.OPEN, f"{prefix}-{name}", ip, ip, None, 0)
    return hosts, f"{prefix}-sw", f"{prefix}-srv"


def host_of(hosts: dict[str, Host], kind: Kind, side: str) -> Host:
    """The ``side`` (``a`` or ``b``) host of ``kind``."""
    return hosts[f"{_SHORT[kind]}-{side}"]
