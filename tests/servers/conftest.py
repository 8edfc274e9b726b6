"""Fixtures of the servers suite: nginx and lighttpd built once per session with
`esca-pkg build`, installed with apt, and a generated site to serve.

Builds go to build/servers-test/ (dist and work directories), so a second
session on the same machine reuses them through esca-pkg's own cache.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers_support import (
    AB_RESULTS,
    SERVER_PACKAGES,
    SERVERS,
    TEST_BUILD,
    Built,
    Site,
    apt_install,
    esca_pkg,
    require_root,
    sh,
)

from esca_pkg.servers import serve


@pytest.fixture(scope="session")
def built_servers() -> Built:
    """esca-pkg build nginx lighttpd (with lintian; ESCA_TEST_SERVERS: some of
    them), once per session."""
    require_root()
    dist, build_dir = TEST_BUILD / "dist", TEST_BUILD / "build"
    res = esca_pkg("build", *SERVERS, "--dist", dist, "--build-dir", build_dir)
    return Built(dist, build_dir, res.stdout + res.stderr)


@pytest.fixture(scope="session")
def installed_servers(built_servers: Built) -> Built:
    debs = [d for pkgs in SERVER_PACKAGES.values() for d in built_servers.debs(*pkgs)]
    apt_install(*debs)
    for kind in SERVER_PACKAGES:
        version = sh("dpkg-query", "-W", "-f=${Version}", kind).stdout
        assert version.endswith("+esca1"), f"{kind} {version} is installed, not our build"
    return built_servers


@pytest.fixture(scope="session")
def library(libesca: Path) -> Path:
    """The libesca the tests preload: the tree's build (make -C libesca)."""
    return libesca.resolve()


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    base = serve.new_base("esca-site-")
    files = serve.make_site(base / "www")
    yield Site(base / "www", files)
    subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.fixture
def workdir() -> Iterator[Path]:
    base = serve.new_base("esca-srv-")
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not AB_RESULTS:
        return
    tr = terminalreporter
    tr.section("ESCA A/B: 20 KB file, wrk -c 50, perf raw_syscalls:sys_enter on the workers")
    tr.write_line(
        f"{'server':<10}{'workers':>8}{'vanilla req/s':>15}{'ESCA req/s':>12}"
        f"{'vanilla sc/req':>16}{'ESCA sc/req':>13}"
    )
    for kind, workers, van, esc in AB_RESULTS:
        tr.write_line(
            f"{kind:<10}{workers:>8}{van.rps:>15.0f}{esc.rps:>12.0f}"
            f"{van.syscalls_per_request:>16.2f}{esc.syscalls_per_request:>13.2f}"
        )
