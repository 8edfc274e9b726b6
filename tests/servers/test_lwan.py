"""lwan from an upstream source (ESCA_LWAN_SOURCE: a tree or a tarball):
built with a generated debian/, installed, serving under esca-run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from debian.debfile import DebFile
from httpcheck import Expected, concurrent_load, fetch_all
from servers_support import TEST_BUILD, Site, apt_install, esca_pkg, require_root

from esca_pkg.runtime import hooks, stats
from esca_pkg.servers import recipe, serve
from esca_pkg.servers.serve import Esca, ServerRun

pytestmark = pytest.mark.servers

SOURCE = os.environ.get("ESCA_LWAN_SOURCE")
needs_source = pytest.mark.skipif(
    not SOURCE,
    reason="lwan is in no package registry: set ESCA_LWAN_SOURCE to an lwan "
    "source tree or tarball to build and test it",
)


@pytest.fixture(scope="module")
def lwan_deb() -> Path:
    require_root()
    assert SOURCE
    dist = TEST_BUILD / "dist-lwan"
    esca_pkg(
        "build", "lwan", "--source", SOURCE, "--dist", dist, "--build-dir", TEST_BUILD / "build"
    )
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


def start_lwan(www: Path, base: Path, esca: bool, library: Path) -> ServerRun:
    variant = Esca(backend="uring", library=library, stats_dir=base / "stats") if esca else None
    return serve.start(recipe.get("lwan"), base / ("esca" if esca else "vanilla"), www, 1, variant)


@needs_source
def test_lwan_serves_byte_exact_under_esca(lwan_deb: Path, library: Path, site: Site) -> None:
    """Whatever this lwan serves correctly on its own (upstream master has answered
    500 for files above ~16 KB on some kernels), it serves byte for byte under ESCA."""
    apt_install(lwan_deb)
    base = serve.new_base("esca-lwan-")
    run = start_lwan(site.www, base, False, library)
    port = run.port
    try:
        working = {
            n: d
            for n, d in site.files.items()
            if not fetch_all(port, Expected({n: d}), keepalive=True, ranges=False)
        }
        ranges = not fetch_all(port, Expected(working), keepalive=True, ranges=True)
    finally:
        run.stop()
    assert "f1k.bin" in working and "f5k.bin" in working, sorted(working)
    expected = Expected(working)

    run = start_lwan(site.www, base, True, library)
    port = run.port
    try:
        for keepalive in (True, False):
            problems = fetch_all(port, expected, keepalive=keepalive, ranges=ranges)
            assert not problems, problems[:10]
        requests, problems = concurrent_load(port, expected, clients=16, rounds=2, ranges=ranges)
        assert not problems, f"{len(problems)} of {requests}: {problems[:10]}"
        assert run.stats_dir is not None
        live = stats.read_dir(run.stats_dir)
        assert live and sum(s.deferred_total for s in live) > 0, [s.line() for s in live]
        assert all(s.counters["bytes_lost"] == 0 for s in live)
    finally:
        run.stop()
