"""Build and tear down the NAT lab: namespaces, veth pairs, the bridge, NAT routers, and
the servers on the public segment (coturn and our RFC 5780 STUN server).

``with Lab(workdir) as lab:`` builds everything (a fraction of a second) and removes it
all on the way out, also after a failure. The address plan is in
:mod:`tests.natlab.topology`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import selectors
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from tests.coturn import Coturn

from . import netns
from .topology import (
    SINK_IP,
    STUN_ALT_IP,
    STUN_ALT_PORT,
    STUN_IP,
    STUN_PORT,
    TURN_IP,
    Host,
    Kind,
    plan,
)

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 10.0
"""Seconds a helper process (STUN server, delay queue) may take to say it is ready."""
STOP_TIMEOUT = 5.0
TURN_USER = "lab"

_PREFIX_RE = re.compile(r"^nl(\d+)-")


def _router_rules(host: Host) -> str:
    """iptables-restore input for a host's router: NAT, and a firewall that drops what
    arrives on the WAN side unsolicited (INPUT too: otherwise a peer's check that arrives
    first creates a conntrack entry that makes MASQUERADE pick another port)."""
    masquerade = "-j MASQUERADE --random-fully" if host.kind is Kind.SYMMETRIC else "-j MASQUERADE"
    forward = [
        "-A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A FORWARD -i wan0 -j DROP",
    ]
    if host.kind is Kind.UDP_BLOCKED:
        forward += [
            f"-A FORWARD -i lan0 -o wan0 -p tcp -d {TURN_IP} -j ACCEPT",
            "-A FORWARD -i lan0 -j DROP",
        ]
    lines = [
        "*nat",
        f"-A POSTROUTING -o wan0 {masquerade}",
        "COMMIT",
        "*filter",
        "-A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -i wan0 -j DROP",
        *forward,
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"


def _write_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        Path("/proc/sys", key.replace(".", "/")).write_text(value)


_QUIET = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}


class Lab:
    """The namespaces, links, routers and servers of one lab run.

    Namespace names are ``nl<pid>-<n>-<role>``, so two runs (or two labs of one run)
    never collide; stale ones of a process that no longer exists are removed first.
    """

    _made = 0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        Lab._made += 1
        self.prefix = f"nl{os.getpid()}-{Lab._made}"
        self.hosts, self.switch, self.server = plan(self.prefix)
        self.routers = [h.router for h in self.hosts.values() if h.router is not None]
        self.namespaces = [
            self.switch,
            self.server,
            *self.routers,
            *(h.netns for h in self.hosts.values()),
        ]
        self.turn_password = secrets.token_hex(8)
        self.coturn: Coturn | None = None
        self._stun: subprocess.Popen[bytes] | None = None
        self._delays: list[subprocess.Popen[bytes]] = []
        self._impaired: list[str] = []
        self.build_seconds: float | None = None
        """How long the network (namespaces, links, routes, rules) took to build."""
        self.servers_seconds: float | None = None
        """How long coturn and the STUN server took to become ready."""

    # -- what peers need -------------------------------------------------------------------

    @property
    def stun_server(self) -> str:
        return f"{STUN_IP}:{STUN_PORT}"

    def turn_url(self, transport: str) -> str:
        """coturn's URI for ``udp``, ``tcp`` or ``tls``."""
        assert self.coturn is not None
        if transport == "tls":
            return f"turns:{TURN_IP}:{self.coturn.tls_address[1]}?transport=tcp"
        return f"turn:{TURN_IP}:{self.coturn.port}?transport={transport}"

    @property
    def turn_cafile(self) -> Path:
        """coturn's self-signed certificate (it names localhost, not the lab address:
        peers verify the chain against it but not the host name)."""
        assert self.coturn is not None and self.coturn.tls_cert is not None
        return self.coturn.tls_cert

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.build()
            self.start_servers()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    def build(self) -> None:
        """Create the namespaces, links, addresses, routes and router rules."""
        began = time.monotonic()
        _remove_stale()
        netns.ip_batch([f"netns add {name}" for name in self.namespaces])
        for name in self.namespaces:
            netns.call_in(name, lambda: _write_sysctls(_QUIET))
        switch = [
            "link set lo up",
            "link add br0 type bridge",
            f"addr add {SINK_IP}/24 dev br0",
            "link set br0 up",
        ]
        public: list[tuple[str, str, list[str]]] = [
            (self.server, "eth0", [f"{TURN_IP}/24", f"{STUN_IP}/24", f"{STUN_ALT_IP}/24"])
        ]
        for host in self.hosts.values():
            if host.router is not None:
                public.append((host.router, "wan0", [f"{host.public_ip}/24"]))
            else:
                public.append((host.netns, "eth0", [f"{host.ip}/24"]))
        for port, (name, device, _) in enumerate(public):
            switch += [
                f"link add p{port} type veth peer name {device} netns {name}",
                f"link set p{port} master br0",
                f"link set p{port} up",
            ]
        netns.ip_batch(switch, self.switch)
        for name, device, addresses in public:
            lines = ["link set lo up", f"link set {device} up"]
            lines += [f"addr add {a} dev {device}" for a in addresses]
            lines.append(f"route add default via {SINK_IP}")
            netns.ip_batch(lines, name)
        for host in self.hosts.values():
            if host.router is None:
                continue
            lan = f"10.0.{host.lan}"
            netns.ip_batch(
                [
                    f"link add lan0 type veth peer name eth0 netns {host.netns}",
                    f"addr add {lan}.1/24 dev lan0",
                    "link set lan0 up",
                ],
                host.router,
            )
            netns.ip_batch(
                [
                    "link set lo up",
                    f"addr add {host.ip}/24 dev eth0",
                    "link set eth0 up",
                    f"route add default via {lan}.1",
                ],
                host.netns,
            )
            netns.call_in(host.router, lambda: _write_sysctls({"net.ipv4.ip_forward": "1"}))
            netns.run(["iptables-restore"], stdin=_router_rules(host), netns=host.router)
        self.build_seconds = time.monotonic() - began

    def start_servers(self) -> None:
        """coturn on TURN_IP (UDP, TCP, TLS) and our STUN server on STUN_IP and
        STUN_ALT_IP, both in the server namespace."""
        began = time.monotonic()
        workdir = self.workdir / "coturn"
        workdir.mkdir(parents=True, exist_ok=True)
        coturn = Coturn(
            users={TURN_USER: self.turn_password}, tls=True, host=TURN_IP, workdir=workdir
        )
        self.coturn = coturn
        netns.call_in(self.server, coturn.start)
        self._stun = self.spawn(
            self.server,
            "-m",
            "stun",
            "serve",
            "--bind",
            f"{STUN_IP}:{STUN_PORT}",
            "--alt",
            f"{STUN_ALT_IP}:{STUN_ALT_PORT}",
        )
        wait_for_line(self._stun, b"listening", "the STUN server")
        self.servers_seconds = time.monotonic() - began

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``python args...`` in namespace ``name`` (stdout piped, unbuffered)."""
        return subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def teardown(self) -> None:
        """Stop every process the lab started and delete every namespace; idempotent."""
        self.unimpair()
        if self._stun is not None:
            stop(self._stun)
            self._stun = None
        if self.coturn is not None:
            self.coturn.stop()
        left = netns.delete(self.namespaces)
        if left:
            raise netns.NetnsError(f"could not delete the namespaces {left}")

    # -- impairment ------------------------------------------------------------------------

    def impair(self, hosts: list[Host], *, delay: float, loss: float) -> None:
        """Drop ``loss`` of the packets and delay the rest by ``delay`` seconds, in both
        directions of each host's link (its router's LAN and WAN side, or its own
        interface): ``iptables -m statistic`` and an NFQUEUE delay helper. The drops are
        every (1 / ``loss``)-th packet of a chain, not random ones: never two in a row,
        so a run cannot meet a streak of losses that no timeout allows for."""
        every = round(1 / loss) if loss else 0
        for host in hosts:
            name, chains = host.impairment
            rules = ["*raw"]
            for chain in chains:
                if every:
                    drop = f"-m statistic --mode nth --every {every} --packet 0 -j DROP"
                    rules.append(f"-A {chain} {drop}")
                rules.append(f"-A {chain} -j NFQUEUE --queue-num 0")
            helper = self.spawn(
                name, "-m", "tests.natlab.nfqdelay", "--queue", "0", "--delay", str(delay)
            )
            self._delays.append(helper)
            self._impaired.append(name)
            wait_for_line(helper, b"ready", f"the delay queue in {name}")
            netns.run(
                ["iptables-restore", "--noflush"],
                stdin="\n".join([*rules, "COMMIT"]) + "\n",
                netns=name,
            )

    def unimpair(self) -> None:
        """Remove every impairment: rules first, then the helpers that serve the queue."""
        for name in self._impaired:
            with contextlib.suppress(netns.NetnsError):
                netns.run(["iptables", "-t", "raw", "-F"], netns=name)
        self._impaired.clear()
        for helper in self._delays:
            stop(helper)
        self._delays.clear()


def wait_for_line(process: subprocess.Popen[bytes], marker: bytes, what: str) -> bytes:
    """Read ``process``'s output until a line containing ``marker``; raise with the
    output if it exits or :data:`READY_TIMEOUT` passes first."""
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while marker not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                stop(process)
                raise netns.NetnsError(f"{what} was not ready in {READY_TIMEOUT} s: {seen!r}")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                process.wait(STOP_TIMEOUT)
                raise netns.NetnsError(f"{what} exited ({process.returncode}): {seen!r}")
            seen += chunk
    return seen


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process we started, SIGKILL it if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    if process.stdout is not None:
        process.stdout.close()


def _remove_stale() -> None:
    """Delete lab namespaces left behind by a run whose process no longer exists."""
    stale = []
    for name in netns.existing():
        match = _PREFIX_RE.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            stale.append(name)
    netns.delete(stale)


def client_ssl_context(cafile: Path) -> ssl.SSLContext:
    """Trust coturn's certificate; its names are not the lab's address, so the chain is
    checked and the host name is not."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False
    return context
