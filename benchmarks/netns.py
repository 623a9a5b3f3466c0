"""A throwaway network namespace for benchmarks: one veth pair, N IPv4 addresses per end.

Everything lives inside the namespace, which this module creates and removes: the veth
pair (``va`` and ``vb``), its addresses (``10.77.0.1..N/16`` on ``va`` for side A,
``10.77.1.1..N/16`` on ``vb`` for side B) and its own loopback. Both ends are in the same
namespace, so every address can reach every other (the kernel delivers between local
addresses itself); nothing is routed outside and the host's interfaces are not touched.
Needs root and iproute2; :func:`unavailable` says why not, before anything is created.

    with Namespace(16) as ns:
        subprocess.run(ns.command([sys.executable, "-c", "..."]), check=True)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from types import TracebackType

PREFIX_A = "10.77.0."
PREFIX_B = "10.77.1."
MAX_ADDRESSES = 254

_TIMEOUT = 30.0


def unavailable() -> str | None:
    """Why a namespace cannot be created here (None when it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "needs iproute2 (the ip command)"
    if not os.path.isdir("/proc/self/ns") or not os.path.exists("/proc/self/ns/net"):
        return "the kernel has no network namespaces"
    return None


def _ip(*args: str, stdin: str | None = None) -> None:
    result = subprocess.run(
        ["ip", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")


class Namespace:
    """``ip netns add`` on entry, ``ip netns del`` on exit (which also removes the veth
    pair and every address)."""

    def __init__(self, count: int, name: str | None = None) -> None:
        if not 1 <= count <= MAX_ADDRESSES:
            raise ValueError(f"1 to {MAX_ADDRESSES} addresses per side, not {count}")
        self.count = count
        self.name = name or f"icestack-bench-{os.getpid()}"
        self.side_a = [f"{PREFIX_A}{i}" for i in range(1, count + 1)]
        self.side_b = [f"{PREFIX_B}{i}" for i in range(1, count + 1)]
        self._created = False

    def __enter__(self) -> Namespace:
        reason = unavailable()
        if reason is not None:
            raise OSError(reason)
        _ip("netns", "add", self.name)
        self._created = True
        try:
            lines = [
                "link set lo up",
                "link add va type veth peer name vb",
                "link set va up",
                "link set vb up",
            ]
            lines += [f"addr add {ip}/16 dev va" for ip in self.side_a]
            lines += [f"addr add {ip}/16 dev vb" for ip in self.side_b]
            _ip("-n", self.name, "-batch", "-", stdin="\n".join(lines) + "\n")
        except BaseException:
            self.close()
            raise
        return self

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def close(self) -> None:
        if self._created:
            self._created = False
            _ip("netns", "del", self.name)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
