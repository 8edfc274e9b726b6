"""The rebuilt nginx and lighttpd packages, inspected with python-debian."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from debian.changelog import Changelog
from debian.deb822 import Dsc
from debian.debfile import DebFile
from debian.debian_support import Version
from servers_support import ROOT, SERVER_PACKAGES, SERVERS, Built, esca_pkg, sh

from esca_pkg.packaging.release import host_release
from esca_pkg.packaging.targets.base import source_env
from esca_pkg.runtime import hooks
from esca_pkg.servers import recipe

pytestmark = pytest.mark.servers

BINARIES = {
    k: v
    for k, v in {
        "nginx": ("nginx", "./usr/sbin/nginx"),
        "lighttpd": ("lighttpd", "./usr/sbin/lighttpd"),
    }.items()
    if k in SERVERS
}


@pytest.mark.parametrize("kind", sorted(BINARIES))
def test_package_version_changelog_and_hooks(
    kind: str, built_servers: Built, tmp_path: Path
) -> None:
    package, member = BINARIES[kind]
    (deb_path,) = built_servers.debs(package)
    deb = DebFile(str(deb_path))
    version = Version(deb.debcontrol()["Version"])
    assert str(version).endswith("+esca1")

    names = deb.data.tgz().getnames()
    log_member = f"./usr/share/doc/{package}/changelog.Debian.gz"
    assert log_member in names
    raw = deb.data.tgz().extractfile(log_member)
    assert raw is not None
    log = Changelog(gzip.decompress(raw.read()).decode())
    assert log.version == version
    assert "ESCA hooks" in "\n".join(log[0].changes())
    original = log[1].version
    assert version > original
    sh("dpkg", "--compare-versions", str(version), "gt", str(original))

    exe = deb.data.tgz().extractfile(member)
    assert exe is not None
    path = tmp_path / kind
    path.write_bytes(exe.read())
    state, present = hooks.hook_state(path)
    assert state is hooks.HookState.HOOKED
    # the loop's wait is the flush: batch_flush_wait, not batch_flush
    assert present == ["esca_init", "batch_start", "batch_flush_wait"], present
    # no link dependency on libesca: the hooks are weak references
    syms = hooks.dynamic_symbols(path)
    assert all(syms[h].weak for h in present)
    assert "libesca" not in deb.debcontrol().get("Depends", "")


def test_patch_is_a_quilt_patch_of_the_build_trees(built_servers: Built) -> None:
    """The recipe's patches for this release (lighttpd on Debian 13:
    esca-hooks-trixie.patch) end the quilt series, the hook patch last."""
    codename = host_release().codename
    for kind in BINARIES:
        series = sorted((built_servers.build_dir / kind).glob("*/debian/patches/series"))
        assert len(series) == 1, series
        wanted = recipe.load(recipe.source_dir(ROOT), kind).for_release(codename).patches
        listed = series[0].read_text().split()
        assert listed[-len(wanted) :] == [p.name for p in wanted], listed


def test_only_the_needed_packages_are_kept(built_servers: Built) -> None:
    names = sorted(p.name.split("_")[0] for p in built_servers.dist.glob("*.deb"))
    assert not [n for n in names if n.endswith("-doc") or n.endswith("-dbgsym")], names
    assert {p for pkgs in SERVER_PACKAGES.values() for p in pkgs} <= set(names)


def test_second_build_reuses_the_packages(built_servers: Built) -> None:
    res = esca_pkg(
        "build",
        *SERVERS,
        "--dist",
        built_servers.dist,
        "--build-dir",
        built_servers.build_dir,
    )
    out = res.stdout + res.stderr
    assert all(f"{kind:<10} reused" in out for kind in SERVERS), out


def test_source_is_the_newest_the_archive_serves(built_servers: Built, tmp_path: Path) -> None:
    """The rebuilt version is <the newest downloadable source version>+esca1, and no
    newer version the lists name can be downloaded."""
    from esca_pkg.packaging.debian_source import SourceArchive

    archive = SourceArchive.for_build_dir(built_servers.build_dir)
    for kind in BINARIES:
        local = os.environ.get(source_env(kind))
        if local:  # the archive lists versions it does not serve: a local .dsc
            with open(local) as f:
                version = Version(Dsc(f)["Version"])
        else:
            version, dsc = archive.download(kind, tmp_path / kind)
            assert dsc.is_file()
        (deb_path,) = built_servers.debs(BINARIES[kind][0])
        assert DebFile(str(deb_path)).debcontrol()["Version"] == f"{version}+esca1"
        for v in (v for v in archive.versions(kind) if v > version):
            res = sh(
                "apt-get",
                *archive.options(),
                "-q",
                "--download-only",
                "--only-source",
                "source",
                f"{kind}={v}",
                check=False,
                cwd=tmp_path,
            )
            assert res.returncode != 0, f"{kind} {v} downloads, but {version} was built"
