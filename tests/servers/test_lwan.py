"""lwan from an upstream source (ESCA_LWAN_SOURCE: a tree or a tarball):
built with a generated debian/, installed, serving under esca-run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian.debfile import DebFile
from httpcheck import Expected, concurrent_load, fetch_all
from servers_support import TEST_BUILD, Site, apt_install, esca_pkg, require_root

from esca_pkg.servers import hooks, runtime, stats

pytestmark = pytest.mark.servers

SOURCE = os.environ.get("ESCA_LWAN_SOURCE")
needs_source = pytest.mark.skipif(
    not SOURCE, reason="lwan is in no package registry: set ESCA_LWAN_SOURCE to an lwan "
                       "source tree or tarball to build and test it")


@pytest.fixture(scope="module")
def lwan_deb() -> Path:
    require_root()
    assert SOURCE
    dist = TEST_BUILD / "dist-lwan"
    esca_pkg("build", "lwan", "--source", SOURCE, "--dist", dist, "--build-dir",
             TEST_BUILD / "build")
    debs = sorted(dist.glob("lwan_*+esca1_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@needs_source
def test_lwan_package_carries_the_hooks(lwan_deb: Path, tmp_path: Path) -> None:
    deb = DebFile(str(lwan_deb))
    assert deb.debcontrol()["Version"].endswith("+esca1")
    names = deb.data.tgz().getnames()
    assert "./usr/bin/lwan" in names and "./usr/share/man/man1/lwan.1.gz" in names
    member = deb.data.tgz().extractfile("./usr/bin/lwan")
    assert member is not None
    exe = tmp_path / "lwan"
    exe.write_bytes(member.read())
    assert hooks.hook_state(exe)[0] is hooks.HookState.HOOKED


@pytest.fixture
def lwan_server(lwan_deb: Path, library: Path, site: Site) -> Iterator[tuple[int, Path]]:
    apt_install(lwan_deb)
    port = runtime.free_port()
    stats_dir = runtime.new_base("esca-lwan-stats-")
    stats_dir.chmod(0o1777)
    log = stats_dir / "lwan.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "esca_pkg.run_cli", "lwan",
             "--backend", "uring", "--stats", "--stats-dir", stats_dir, "--library", library,
             "--", "-r", site.www, "-l", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    yield port, stats_dir
    proc.terminate()
    proc.wait(10)


@needs_source
def test_lwan_serves_byte_exact_under_esca(lwan_server: tuple[int, Path], site: Site) -> None:
    port, stats_dir = lwan_server
    expected = Expected(site.files)
    for keepalive in (True, False):
        problems = fetch_all(port, expected, keepalive=keepalive, ranges=True)
        assert not problems, problems[:10]
    requests, problems = concurrent_load(port, expected, clients=16, rounds=2)
    assert not problems, f"{len(problems)} of {requests}: {problems[:10]}"
    live = stats.read_dir(stats_dir)
    assert live and sum(s.deferred_total for s in live) > 0, [s.line() for s in live]
    assert all(s.counters["bytes_lost"] == 0 for s in live)
