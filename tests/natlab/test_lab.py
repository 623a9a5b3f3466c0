"""The lab itself: the NAT is real (no way back into the private ranges, unsolicited
packets do not disturb mappings) and nothing is left behind, even after a failure."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from . import netns
from .lab import Lab

pytestmark = [pytest.mark.natlab, pytest.mark.coturn]

POLLS = 200
"""``iptables -L`` calls (a few ms each) while waiting for a router to count a drop."""


def _udp_socket(name: str, address: tuple[str, int]) -> socket.socket:
    """A UDP socket in namespace ``name``, bound to ``address``, with a receive timeout."""
    sock = netns.call_in(name, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sock.bind(address)
    sock.settimeout(5.0)
    return sock


def _wan_input_drops(router: str) -> int:
    """Packets the router's INPUT chain dropped as unsolicited from the WAN side."""
    for line in netns.run(["iptables", "-L", "INPUT", "-v", "-x", "-n"], netns=router).splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[2] == "DROP" and fields[5] == "wan0":
            return int(fields[0])
    raise AssertionError(f"no WAN drop rule in {router}")


def test_the_public_side_has_no_route_into_the_private_ranges(lab: Lab) -> None:
    for host in lab.hosts.values():
        if host.router is None:
            continue
        with pytest.raises(netns.NetnsError, match="unreachable"):
            netns.run(["ip", "route", "get", host.ip], netns=lab.switch)
        route = netns.run(["ip", "route", "get", host.ip], netns=lab.server)
        assert route.split()[:3] == [host.ip, "via", "203.0.113.1"]  # the sink, a dead end
    forwarding = netns.call_in(lab.switch, Path("/proc/sys/net/ipv4/ip_forward").read_text)
    assert forwarding.strip() == "0"


def test_an_unsolicited_packet_does_not_move_the_mapping(lab: Lab) -> None:
    """A peer's check that reaches the router before our first packet to that peer is
    dropped, and our packet then leaves on the port it would have had anyway."""
    host, peer = lab.hosts["cone-a"], lab.hosts["open-a"]
    assert host.router is not None
    with (
        _udp_socket(host.netns, ("0.0.0.0", 0)) as inside,
        _udp_socket(peer.netns, (peer.ip, 0)) as outside,
    ):
        port = inside.getsockname()[1]
        before = _wan_input_drops(host.router)
        outside.sendto(b"early", (host.public_ip, port))
        for _ in range(POLLS):
            if _wan_input_drops(host.router) > before:
                break
        else:
            pytest.fail("the router never counted the unsolicited packet")
        inside.sendto(b"late", outside.getsockname())
        assert outside.recvfrom(64) == (b"late", (host.public_ip, port))


def test_a_lab_removes_everything_also_after_a_failure(tmp_path: Path, lab: Lab) -> None:
    second = Lab(tmp_path)
    assert not set(second.namespaces) & set(lab.namespaces)
    with pytest.raises(RuntimeError, match="boom"), second:
        assert set(second.namespaces) <= netns.existing()
        raise RuntimeError("boom")
    assert not set(second.namespaces) & netns.existing()
    assert second.coturn is not None and second.coturn.pid is None
    assert set(lab.namespaces) <= netns.existing()
