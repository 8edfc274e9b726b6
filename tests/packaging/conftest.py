"""Fixtures of the packaging suite: one clean build shared by every test."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from pkg_helpers import ROOT, TARGETS, Built, esca_pkg, snapshot

from esca_pkg.packaging.release import host_release


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The packages of TARGETS built from clean (into a fresh dist) by `esca-pkg build`."""
    base = tmp_path_factory.mktemp("pkg")
    project = snapshot(base / "project")
    dist, build_dir = base / "dist", base / "build"
    t0 = time.monotonic()
    res = esca_pkg(
        "build", *TARGETS, "--project", project, "--dist", dist, "--build-dir", build_dir
    )
    secs = time.monotonic() - t0
    sys.stderr.write(f"\nbuild {' '.join(TARGETS)} from clean: {secs:.1f} s\n")
    version = (ROOT / "VERSION").read_text().strip()
    release = host_release()
    return Built(
        project,
        dist,
        build_dir,
        version,
        release.package_version(version),
        release.codename,
        secs,
        res.stdout + res.stderr,
    )


@pytest.fixture(scope="session")
def headers_kernels() -> list[str]:
    """Kernels with headers installed (scripts/deps/packaging.txt installs linux-headers-amd64)."""
    base = Path("/lib/modules")
    kernels = (
        sorted(p.name for p in base.iterdir() if (p / "build" / "include").exists())
        if base.is_dir()
        else []
    )
    assert kernels, "no kernel headers installed: scripts/test installs linux-headers-amd64"
    return kernels
