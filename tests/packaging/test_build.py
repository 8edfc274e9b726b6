"""esca-pkg build-all: real dpkg-buildpackage builds, reuse, lintian, metadata."""

from __future__ import annotations

import shutil
import tarfile
import time
from pathlib import Path

import pytest
from debian.deb822 import Changes
from debian.debfile import DebFile
from pkg_helpers import PACKAGES, ROOT, SYSTEM_PATH, TARGETS, Built, esca_pkg, sh, snapshot

pytestmark = pytest.mark.packaging


def test_build_all_builds_every_package(built: Built) -> None:
    for pkg in PACKAGES:
        assert built.deb(pkg).stat().st_size > 0
    sizes = {p.name: p.stat().st_size for p in sorted(built.dist.glob("*.deb"))}
    print("packages:", sizes)


def test_second_build_reuses_everything_quickly(built: Built) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in built.dist.glob("*.deb")}
    t0 = time.monotonic()
    res = esca_pkg(
        "build",
        *TARGETS,
        "--project",
        built.project,
        "--dist",
        built.dist,
        "--build-dir",
        built.build_dir,
    )
    secs = time.monotonic() - t0
    print(f"second build with nothing changed: {secs:.2f} s")
    out = res.stdout + res.stderr
    for target in TARGETS:
        assert f"{target}: up to date" in out, out
    assert {p.name: p.stat().st_mtime_ns for p in built.dist.glob("*.deb")} == before
    assert secs < 5, f"second build-all took {secs:.1f} s"


def test_deleted_output_is_rebuilt(built: Built, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(built.dist, dist)
    victim = next(dist.glob("esca-dkms_*.deb"))
    victim.unlink()
    res = esca_pkg(
        "build", "esca", "--project", built.project, "--dist", dist, "--build-dir", tmp_path / "b"
    )
    assert "esca: built" in res.stderr
    assert victim.exists()


@pytest.mark.parametrize("package", PACKAGES)
def test_lintian_clean(built: Built, package: str) -> None:
    res = sh(
        "lintian", "--fail-on", "error,warning", "--display-info", built.deb(package), check=False
    )
    print(f"lintian {package}: {res.stdout.strip() or 'no tags'}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [ln for ln in res.stdout.splitlines() if ln.startswith(("E:", "W:"))]


def _names(deb: Path) -> set[str]:
    return {"/" + n.removeprefix(".").lstrip("/") for n in DebFile(str(deb)).data.tgz().getnames()}


def test_versions_come_from_VERSION_and_the_release(built: Built) -> None:
    """VERSION plus +deb<N> of the release built on; changelog and .changes name it."""
    number = {"bookworm": 12, "trixie": 13}[built.codename]
    assert built.package_version == f"{built.version}+deb{number}"
    for pkg in PACKAGES:
        deb = DebFile(str(built.deb(pkg)))
        ctl = deb.debcontrol()
        assert ctl["Version"] == built.package_version
        assert ctl["Package"] == pkg
    sources = {"esca"}
    found = {}
    for path in built.dist.glob("*.changes"):
        with path.open() as fh:
            ch = Changes(fh)
        found[ch["Source"]] = (ch["Version"], ch["Distribution"])
        assert ch["Changes"].splitlines()[1].split(";")[0].endswith(f") {built.codename}")
    assert found == {s: (built.package_version, built.codename) for s in sources}
    # the newer release's build sorts above the older one's: dist-upgrade takes it
    twelve, thirteen = f"{built.version}+deb12", f"{built.version}+deb13"
    assert sh("dpkg", "--compare-versions", thirteen, "gt", twelve).returncode == 0
    # a newer VERSION sorts above, a pre-release (~) below, a local rebuild (+) above
    v = built.version
    for rel, other in (("gt", "0.0.1"), ("lt", v + ".1"), ("gt", v + "~rc1"), ("lt", v + "+esca1")):
        assert sh("dpkg", "--compare-versions", v, rel, other, check=False).returncode == 0, (
            f"{v} {rel} {other}"
        )


def test_dkms_package_contents(built: Built) -> None:
    deb = built.deb("esca-dkms")
    names = _names(deb)
    src = f"/usr/src/esca-{built.version}"
    assert f"{src}/dkms.conf" in names
    assert f"{src}/Kbuild" in names or f"{src}/Makefile" in names
    # the build reads the kernel's image (scripts/esca-symbols.sh)
    assert f"{src}/scripts/esca_image_symbols.py" in names
    assert "/usr/lib/modules-load.d/esca.conf" in names
    # debhelper installs udev rules to /lib (Debian 12) or /usr/lib (Debian 13)
    assert any(
        n.startswith(("/lib/udev/rules.d/", "/usr/lib/udev/rules.d/"))
        and n.endswith("esca-dkms.rules")
        for n in names
    )
    conf = DebFile(str(deb)).data.get_content(f"{src}/dkms.conf", encoding="utf-8")
    assert f'PACKAGE_VERSION="{built.version}"' in conf
    assert 'PACKAGE_NAME="esca"' in conf
    assert "#MODULE_VERSION#" not in conf
    ctl = DebFile(str(deb)).debcontrol()
    assert "dkms" in ctl["Depends"] and ctl["Architecture"] == "all"
    depends = {d.strip().split()[0] for d in ctl["Depends"].split(",")}
    # python3 reads the image; zstd and lz4 decompress Debian's 6.12/7.x and cloud kernels
    assert {"python3", "zstd", "lz4"} <= depends, ctl["Depends"]
    postinst = DebFile(str(deb)).control.get_content("postinst", encoding="utf-8")
    assert "autoinstall_all_kernels=1" in postinst and "addgroup" in postinst


def test_libesca_package_contents(built: Built) -> None:
    arch = sh("dpkg-architecture", "-qDEB_HOST_MULTIARCH").stdout.strip()
    lib = built.deb("libesca0")
    names = _names(lib)
    assert f"/usr/lib/{arch}/libesca.so.0" in names
    assert f"/usr/lib/{arch}/libesca.so.{built.version}" in names
    assert f"/usr/lib/{arch}/libesca.so" not in names
    ctl = DebFile(str(lib)).debcontrol()
    assert ctl["Multi-Arch"] == "same"
    symbols = DebFile(str(lib)).control.get_content("symbols", encoding="utf-8")
    for sym in ("esca_init", "batch_start", "batch_flush", "close", "writev", "sendfile"):
        assert f" {sym}@" in symbols, sym
    shlibs = DebFile(str(lib)).control.get_content("shlibs", encoding="utf-8")
    assert shlibs.startswith("libesca 0 libesca0")
    dev = _names(built.deb("libesca-dev"))
    assert "/usr/include/esca.h" in dev and f"/usr/lib/{arch}/libesca.so" in dev
    assert "/usr/lib/esca/esca-microbench" in _names(built.deb("esca-microbench"))


def test_tool_package_contents(built: Built) -> None:
    deb = built.deb("esca-tools")
    names = _names(deb)
    for command in ("esca-pkg", "esca-run", "esca-bench", "esca-stat"):
        assert f"/usr/bin/{command}" in names
        assert f"/usr/share/man/man1/{command}.1.gz" in names
    pkg = "/usr/lib/python3/dist-packages/esca_pkg"
    assert f"{pkg}/packaging/cli.py" in names
    # esca-run knows the servers from the recipes shipped with it (not their patches)
    for server in ("nginx", "lighttpd", "lwan"):
        assert f"{pkg}/recipes/{server}/recipe.toml" in names
    assert f"{pkg}/recipes/nginx/serve.conf.j2" in names
    assert not [n for n in names if n.startswith(f"{pkg}/recipes/") and n.endswith(".patch")]
    # /run/esca, the live counters' place, made at boot and at installation
    assert "/usr/lib/tmpfiles.d/esca-tools.conf" in names
    tmpfiles = DebFile(str(deb)).data.get_content(
        "./usr/lib/tmpfiles.d/esca-tools.conf", encoding="utf-8"
    )
    assert "d /run/esca 0755 root root" in tmpfiles
    postinst = DebFile(str(deb)).control.get_content("postinst", encoding="utf-8")
    assert "systemd-tmpfiles" in postinst and "esca-tools.conf" in postinst
    # debian/ is the source package's, not the tool's data
    assert not [n for n in names if "/esca_pkg/templates/" in n]
    depends = DebFile(str(deb)).debcontrol()["Depends"]
    for dep in ("python3-click", "python3-jinja2", "python3-debian"):
        assert dep in depends


def test_failed_build_prints_log_tail_and_fails(tmp_path: Path) -> None:
    proj = snapshot(tmp_path / "proj")
    victim = sorted((proj / "libesca" / "src").glob("*.c"))[0]
    victim.write_text(victim.read_text() + "\nthis is not C;\n")
    res = esca_pkg(
        "build",
        "esca",
        "--project",
        proj,
        "--dist",
        tmp_path / "dist",
        "--build-dir",
        tmp_path / "build",
        check=False,
    )
    assert res.returncode != 0
    log = tmp_path / "build" / "logs" / "esca.log"
    assert log.exists()
    assert f"last lines of {log}" in res.stderr
    assert f"full log: {log}" in res.stderr
    assert victim.name in res.stderr  # the compiler error is in the tail shown
    assert not list((tmp_path / "dist").glob("*.deb"))


def test_bad_version_is_refused(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(
        ROOT / "esca_pkg", proj / "esca_pkg", ignore=shutil.ignore_patterns("__pycache__")
    )
    (proj / "VERSION").write_text("1.0-beta\n")
    res = esca_pkg("build", "esca", "--project", proj, check=False)
    assert res.returncode == 1
    assert "VERSION" in res.stderr and "fix:" in res.stderr


def test_unknown_target_names_the_choices() -> None:
    res = esca_pkg("build", "nosuch", check=False)
    assert res.returncode == 1
    assert "unknown target 'nosuch'" in res.stderr and "esca" in res.stderr


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git clone of this tree as it is (its files committed to a repository of
    their own, branch main), as a Debian developer gets it."""
    base = tmp_path_factory.mktemp("checkout")
    origin = snapshot(base / "origin")
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@example.org")
    sh(*git, "init", "-q", "-b", "main", origin)
    sh(*git, "-C", origin, "add", "-A")
    sh(*git, "-C", origin, "commit", "-q", "-m", "snapshot")
    sh("git", "clone", "-q", origin, base / "esca")
    return base / "esca"


def _debs(where: Path) -> dict[str, Path]:
    return {p.name.split("_")[0]: p for p in where.glob("*.deb") if "-dbgsym_" not in p.name}


def _build_in(checkout: Path, *argv: str) -> None:
    """A Debian developer's build command in the clone, with Debian's PATH."""
    res = sh(*argv, cwd=checkout, env={"PATH": SYSTEM_PATH}, check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]


def _lint_changes(changes: Path) -> None:
    res = sh("lintian", "--fail-on", "error,warning", changes, check=False)
    assert res.returncode == 0 and not [
        ln for ln in res.stdout.splitlines() if ln.startswith(("E:", "W:"))
    ], res.stdout + res.stderr


def test_dpkg_buildpackage_in_a_checkout(checkout: Path, built: Built) -> None:
    """`dpkg-buildpackage -us -uc -b` in a clone builds the five packages, lintian-clean,
    with the files esca-pkg's build has (only the version differs: no release entry)."""
    _build_in(checkout, "dpkg-buildpackage", "-us", "-uc", "-b")
    debs = _debs(checkout.parent)
    assert sorted(debs) == sorted(PACKAGES)
    for pkg, deb in debs.items():
        assert DebFile(str(deb)).debcontrol()["Version"] == built.version
        assert _names(deb) == _names(built.deb(pkg)), pkg
    (changes,) = checkout.parent.glob("esca_*.changes")
    _lint_changes(changes)
    # debian/rules clean leaves the checkout as it was
    sh("debian/rules", "clean", cwd=checkout, env={"PATH": SYSTEM_PATH})
    status = sh("git", "-C", checkout, "status", "--porcelain", "--ignored").stdout
    assert not status.strip(), status
    # A source package from a used checkout (a venv, test products) is the tracked files.
    for junk in (".venv/bin/python3", "tests/_build/x", "libesca/build/libesca.so.0", "dist/a"):
        (checkout / junk).parent.mkdir(parents=True, exist_ok=True)
        (checkout / junk).write_text("not source\n")
    _build_in(checkout, "dpkg-buildpackage", "-us", "-uc", "-S", "-d")
    (tarball,) = checkout.parent.glob("esca_*.tar.xz")
    with tarfile.open(tarball) as tar:
        shipped = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    tracked = set(sh("git", "-C", checkout, "ls-files").stdout.split())
    assert shipped == tracked - {".gitignore"}, (
        f"not tracked: {sorted(shipped - tracked)}; left out: {sorted(tracked - shipped)}"
    )
    sh("git", "-C", checkout, "clean", "-fdxq")


def test_gbp_buildpackage_in_a_checkout(checkout: Path, tmp_path: Path) -> None:
    """git-buildpackage (debian/gbp.conf: native, branch main) builds the committed tree,
    source and binaries: the source package (the .dsc, debian/copyright's DEP-5, the
    Build-Depends of the dh sequences) is lintian-clean too."""
    area = tmp_path / "build-area"
    _build_in(checkout, "gbp", "buildpackage", f"--git-export-dir={area}", "-us", "-uc")
    assert sorted(_debs(area)) == sorted(PACKAGES)
    assert list(area.glob("esca_*.dsc")) and list(area.glob("esca_*.tar.xz"))
    (changes,) = area.glob("esca_*.changes")
    _lint_changes(changes)
