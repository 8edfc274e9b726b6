"""What a result was measured on: machine, kernel, CPU placement and versions."""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esca_pkg import __version__, proc
from esca_pkg.runtime import backends

PACKAGES = ("nginx", "lighttpd", "lwan", "libesca0", "esca-dkms", "wrk", "linux-perf")


@dataclass(frozen=True)
class Placement:
    """Which CPUs the server and the load generator run on (None: not pinned)."""

    server_cpus: str | None
    client_cpus: str | None
    workers: int
    wrk_threads: int

    def cpu_list(self, which: str) -> list[int]:
        """The CPUs of the server or the client (all usable ones when not pinned)."""
        text = self.server_cpus if which == "server" else self.client_cpus
        if text is None:
            return sorted(os.sched_getaffinity(0))
        return [int(c) for c in text.split(",")]

    def describe(self) -> str:
        if self.server_cpus is None:
            return f"not pinned (one CPU), {self.workers} worker, wrk -t {self.wrk_threads}"
        return (
            f"server on CPU {self.server_cpus} ({self.workers} worker"
            f"{'s' if self.workers > 1 else ''}), wrk on CPU {self.client_cpus} "
            f"(-t {self.wrk_threads})"
        )


def placement() -> Placement:
    """Half the CPUs this process may use for the server, half for wrk; one
    worker (or I/O thread) per server CPU.  With one CPU nothing is pinned."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Placement(None, None, 1, 1)
    half = len(cpus) // 2
    server, client = cpus[:half], cpus[half:]
    return Placement(
        ",".join(map(str, server)), ",".join(map(str, client)), len(server), len(client)
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _field(text: str, key: str, sep: str = ":") -> str:
    for line in text.splitlines():
        k, _, v = line.partition(sep)
        if k.strip() == key:
            return v.strip().strip('"')
    return ""


def describe() -> dict[str, Any]:
    uname = platform.uname()
    virt = (
        proc.run(["systemd-detect-virt"], capture=True, check=False)
        if Path("/usr/bin/systemd-detect-virt").exists()
        else None
    )
    meminfo = _field(_read("/proc/meminfo"), "MemTotal")
    return {
        "hostname": uname.node,
        "cpu": _field(_read("/proc/cpuinfo"), "model name"),
        "cpus_online": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory": meminfo,
        "kernel": uname.release,
        "kernel_build": uname.version,
        "arch": uname.machine,
        "os": _field(_read("/etc/os-release"), "PRETTY_NAME", "="),
        "virtualization": virt.stdout.strip() if virt is not None else "unknown",
        "io_uring": backends.check_uring().reason,
        "esca_module": backends.check_module().reason,
        "load_average": list(os.getloadavg()),
    }


def versions(library: Path, copy: Path) -> dict[str, Any]:
    """Package versions; library is where libesca came from, copy what the run uses."""
    pkgs: dict[str, str] = {}
    for p in PACKAGES:
        res = proc.run(["dpkg-query", "-W", "-f=${Version}", p], capture=True, check=False)
        pkgs[p] = res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else ""
    return {
        "esca": __version__,
        "packages": pkgs,
        "libesca": {"path": str(library), "sha256": hashlib.sha256(copy.read_bytes()).hexdigest()},
        "python": platform.python_version(),
    }
