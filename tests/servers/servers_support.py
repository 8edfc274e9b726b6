"""Helpers of the servers suite (imported by its conftest and tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from esca_pkg.servers.measure import Measurement

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TEST_BUILD = ROOT / "build" / "servers-test"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
ALL_SERVER_PACKAGES = {"nginx": ("nginx", "nginx-common"), "lighttpd": ("lighttpd",)}


def selected_servers() -> tuple[str, ...]:
    """The servers this run builds and serves: ESCA_TEST_SERVERS (comma-separated;
    default every one), e.g. lighttpd alone where the mirror serves no nginx source."""
    value = os.environ.get("ESCA_TEST_SERVERS", "")
    names = tuple(n for n in (x.strip() for x in value.split(",")) if n) or tuple(
        ALL_SERVER_PACKAGES
    )
    unknown = [n for n in names if n not in ALL_SERVER_PACKAGES]
    if unknown:
        raise pytest.UsageError(
            f"ESCA_TEST_SERVERS={value}: unknown server {', '.join(unknown)} "
            f"(choose from {', '.join(ALL_SERVER_PACKAGES)})"
        )
    return names


SERVERS = selected_servers()
SERVER_PACKAGES = {k: ALL_SERVER_PACKAGES[k] for k in SERVERS}
# The A/B table printed at the end of the session (conftest's terminal summary).
AB_RESULTS: list[tuple[str, int, Measurement, Measurement]] = []


def sh(
    *argv: str | os.PathLike[str],
    check: bool = True,
    timeout: float = 1800,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "PATH": SYSTEM_PATH,
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
        **(env or {}),
    }
    res = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=cwd,
    )
    if check and res.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, argv))} exited {res.returncode}:\n"
            f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res


def esca_pkg(
    *args: str | os.PathLike[str], check: bool = True, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    return sh(
        sys.executable, "-m", "esca_pkg.packaging", *args, check=check, timeout=timeout, cwd=ROOT
    )


def esca_run(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return sh(
        sys.executable, "-m", "esca_pkg.run", *args, check=check, cwd=ROOT, env=env, timeout=60
    )


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the servers suite installs packages: run it as root (scripts/test does)")


@dataclass(frozen=True)
class Built:
    dist: Path
    build_dir: Path
    output: str

    def debs(self, *packages: str) -> list[Path]:
        out = []
        for p in packages:
            found = sorted(self.dist.glob(f"{p}_*+esca*.deb"))
            assert len(found) == 1, f"expected one {p} .deb in {self.dist}, found {found}"
            out.append(found[0])
        return out


@dataclass(frozen=True)
class Site:
    www: Path
    files: dict[str, bytes]


def apt_install(*debs: Path) -> None:
    """apt-get install of local .debs without starting their services (policy-rc.d,
    created only when the machine has none, and removed again)."""
    created = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text("#!/bin/sh\n# esca tests: no service starts\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        created = True
    try:
        sh(
            "apt-get",
            "install",
            "--reinstall",
            "-y",
            "-q",
            "-o",
            "DPkg::Lock::Timeout=600",
            "--no-install-recommends",
            *debs,
        )
    finally:
        if created:
            POLICY_RC_D.unlink()
