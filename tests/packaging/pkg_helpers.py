"""Helpers of the packaging suite (a module name of its own: test directories
share one sys.path, so no `from conftest import`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from debian.changelog import Changelog

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def esca_pkg(
    *args: str | os.PathLike[str], check: bool = True, cwd: Path = ROOT, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run the tool from this tree (python -m esca_pkg.packaging), output captured."""
    res = subprocess.run(
        [sys.executable, "-m", "esca_pkg.packaging", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and res.returncode != 0:
        pytest.fail(
            f"esca-pkg {' '.join(map(str, args))} exited {res.returncode}:\n"
            f"{res.stdout}\n{res.stderr}"
        )
    return res


def sh(
    *argv: str | os.PathLike[str],
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "PATH": SYSTEM_PATH,
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
        **(env or {}),
    }
    full.pop("PYTHONPATH", None)
    args = [str(a) for a in argv]
    if args[0] == "apt-get":  # wait for another apt/dpkg run instead of failing at once
        args[1:1] = ["-o", "DPkg::Lock::Timeout=600"]
    res = subprocess.run(
        args,
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
            f"{' '.join(map(str, argv))} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
        )
    return res


SNAPSHOT_PARTS = (
    ".gitignore",
    "VERSION",
    "debian",
    "pyproject.toml",
    "README.md",
    "esca_pkg",
    "libesca",
    "dkms",
    "servers",
)
#: the targets of this suite (the top-level debian/); the servers' are built by tests/servers
TARGETS = ("esca",)
#: the binary packages of debian/control
PACKAGES = ("esca-dkms", "libesca0", "libesca-dev", "esca-microbench", "esca-tools")


def snapshot(dest: Path) -> Path:
    """Copy of the parts of this tree the packages are built from: the builds see
    a fixed tree even while someone edits the working copy."""
    ignore = shutil.ignore_patterns(
        "build", "__pycache__", "*.o", "*.so", "*.so.*", "*.ko", ".*.cmd", "generated"
    )
    dest.mkdir(parents=True, exist_ok=True)
    for part in SNAPSHOT_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=ignore, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / part)
    return dest


def raise_version(tree: Path, version: str) -> None:
    """A release of tree at version: VERSION and a debian/changelog entry (as dch -v)."""
    (tree / "VERSION").write_text(version + "\n")
    path = tree / "debian" / "changelog"
    log = Changelog(path.read_text())
    log.new_block(
        package=log.package,
        version=version,
        distributions="unstable",
        urgency="medium",
        author=log.author,
        date=log.date,
        changes=["", f"  * Test release {version}.", ""],
    )
    path.write_text(str(log))


@dataclass(frozen=True)
class Built:
    project: Path
    dist: Path
    build_dir: Path
    version: str  # VERSION: the module's DKMS version, libesca's file name
    package_version: str  # the packages' version: VERSION + this release's suffix (+deb12)
    codename: str  # the release they were built for (changelog, .changes)
    clean_seconds: float
    clean_output: str

    def deb(self, package: str) -> Path:
        found = sorted(self.dist.glob(f"{package}_{self.package_version}_*.deb"))
        assert len(found) == 1, f"expected one {package} .deb in {self.dist}, found {found}"
        return found[0]


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("installs packages with apt: needs root (CI runs as root)")
