"""Never publish a server without the hooks: a hook patch dpkg-source skipped stops
the build (naming the patch and the hunk) before anything is compiled, and a built
server whose binary lacks the hooks is refused before it reaches dist.

Real parts: the tool's own flow (`esca-pkg build lighttpd` on a copy of the tree
whose patch is stale, Debian's source from the archive) and Debian's own nginx
and lighttpd binary packages (apt-get download), which carry no hooks."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from libesca_support import compile_c
from pkg_helpers import SYSTEM_PATH, esca_pkg, sh, snapshot

from esca_pkg.log import EscaError
from esca_pkg.packaging import debbuild, debian_source, rebuild
from esca_pkg.runtime import hooks
from esca_pkg.servers import recipe

pytestmark = pytest.mark.packaging

STALE = " /* a context line no version of this source has */"


def make_stale(patch: Path) -> tuple[str, str]:
    """Replace the first context line of the patch's first hunk (so that hunk cannot
    apply, the others still can); returns the patched file and that hunk's number."""
    lines = patch.read_text().splitlines(keepends=True)
    target, hunk = "", 0
    for i, line in enumerate(lines):
        if line.startswith("+++ "):
            target = line.split()[1].split("/", 1)[1]
        elif line.startswith("@@"):
            hunk += 1
        elif hunk == 1 and line.startswith(" "):
            lines[i] = STALE + "\n"
            break
    patch.write_text("".join(lines))
    return target, "hunk #1"


def test_stale_patch_stops_the_build_before_compiling(tmp_path: Path) -> None:
    project = snapshot(tmp_path / "project")
    release = debian_source.codename()
    patch = recipe.load(project / "servers", "lighttpd").for_release(release).patch
    target, hunk = make_stale(patch)
    dist, build_dir = tmp_path / "dist", tmp_path / "build"
    t0 = time.monotonic()
    res = esca_pkg(
        "build",
        "lighttpd",
        "--project",
        project,
        "--dist",
        dist,
        "--build-dir",
        build_dir,
        check=False,
    )
    secs = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    rel = f"servers/lighttpd/{patch.name}"
    assert f"{rel} was not applied" in out, out
    assert re.search(rf"{re.escape(target)}: {hunk} at line \d+", out), out
    assert f"fix: refresh {rel} for 1.4." in out, out
    # nothing published, nothing compiled (no build dependencies installed either)
    assert not dist.exists() or not any(dist.iterdir()), sorted(dist.iterdir())
    log = (build_dir / "logs" / "lighttpd.log").read_text()
    assert "dpkg-buildpackage" not in log and "build-dep" not in log, log
    assert not list((build_dir / "lighttpd").rglob("*.o"))
    print(f"stale patch refused in {secs:.1f} s")


@pytest.fixture(scope="module")
def debian_debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Debian's own nginx and lighttpd binary packages (no hooks), from this
    machine's apt: the newest version Debian serves, never our +esca build
    (which apt would pick once it is installed) and past a listed version its
    mirror does not serve."""
    dest = tmp_path_factory.mktemp("debian-debs")
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    found: dict[str, Path] = {}
    for pkg in ("nginx", "lighttpd"):
        madison = subprocess.run(
            ["apt-cache", "madison", pkg], env=env, capture_output=True, text=True, check=True
        ).stdout
        versions = [ln.split("|")[1].strip() for ln in madison.splitlines() if "|" in ln]
        for version in (v for v in versions if "+esca" not in v):
            res = subprocess.run(
                ["apt-get", "-q", "download", f"{pkg}={version}"],
                cwd=dest,
                env=env,
                capture_output=True,
                check=False,
            )
            if res.returncode == 0:
                found[pkg] = next(dest.glob(f"{pkg}_*.deb"))
                break
        assert pkg in found, f"no Debian version of {pkg} downloads: {versions}"
    return found


@pytest.mark.parametrize("server", ["nginx", "lighttpd"])
def test_deb_without_hooks_is_refused(server: str, debian_debs: dict[str, Path]) -> None:
    binary = recipe.get(server).run.binary
    deb = debian_debs[server]
    with pytest.raises(EscaError) as e:
        rebuild.check_hooks([deb], binary)
    msg = str(e.value)
    assert f"{deb.name}: {binary} does not carry the ESCA hooks" in msg
    assert "references none of them" in msg and "not published" in msg


def test_hooked_binary_passes_and_a_missing_binary_is_named(
    tmp_path: Path, debian_debs: dict[str, Path]
) -> None:
    """The same check accepts a .deb whose binary references the three hooks
    (built here with gcc and dpkg-deb) and names a build that lacks the binary."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: hooked\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@example.org>\n"
        "Description: test\n"
    )
    (root / "usr" / "sbin").mkdir(parents=True)
    src = tmp_path / "hooked.c"
    src.write_text(
        "int esca_init(void) __attribute__((weak));\n"
        "void batch_start(void) __attribute__((weak));\n"
        "int batch_flush(void) __attribute__((weak));\n"
        "int main(void) { if (esca_init) esca_init(); if (batch_start) batch_start();\n"
        "  return batch_flush ? batch_flush() : 0; }\n"
    )
    binary = Path("/usr/sbin/hooked")
    compile_c(src, root / "usr" / "sbin" / "hooked")
    state, _ = hooks.hook_state(root / "usr" / "sbin" / "hooked")
    assert state is hooks.HookState.HOOKED
    deb = tmp_path / "hooked_1_amd64.deb"
    sh("dpkg-deb", "--build", "--root-owner-group", root, deb)
    assert rebuild.check_hooks([debian_debs["nginx"], deb], binary) == deb
    with pytest.raises(EscaError, match="no package of the build installs /usr/sbin/hooked"):
        rebuild.check_hooks([debian_debs["nginx"]], binary)


@pytest.mark.fast
def test_unmet_build_dependencies_of_either_dpkg_are_read(tmp_path: Path) -> None:
    """dpkg 1.21 (Debian 12) says "Unmet build dependencies", 1.22 (Debian 13)
    "unmet build dependencies": the real dpkg-checkbuilddeps of this machine, and
    both wordings."""
    control = tmp_path / "control"
    control.write_text(
        "Source: x\nBuild-Depends: esca-no-such-package (>= 2)\n\nPackage: x\nArchitecture: any\n"
    )
    assert debbuild.unmet_build_depends(control) == "esca-no-such-package (>= 2)"
    for said in ("Unmet", "unmet"):
        text = f"dpkg-checkbuilddeps: error: {said} build dependencies: a (>= 1) b\n"
        assert debbuild.parse_unmet(text) == "a (>= 1) b"
    assert debbuild.parse_unmet("dpkg-checkbuilddeps: error: cannot read control\n") is None


@pytest.mark.fast
def test_failed_hunks_are_read_from_gnu_patch(tmp_path: Path) -> None:
    """The hunk report comes from a real `patch --dry-run` of a stale patch."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.c").write_text("one\ntwo\nthree\nfour\nfive\nsix\nseven\n")
    patch = tmp_path / "p.patch"
    patch.write_text(
        "--- a/src/a.c\n+++ b/src/a.c\n@@ -1,3 +1,3 @@\n one\n-TWO\n+2\n three\n"
        "@@ -5,3 +5,3 @@\n five\n-six\n+6\n seven\n"
    )
    res = subprocess.run(
        ["patch", "--dry-run", "--batch", "-F0", "-p1", "-i", patch],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rebuild.failed_hunks(res.stdout) == {"src/a.c": ["hunk #1 at line 1"]}


@pytest.mark.fast
def test_lintian_failure_of_a_server_names_its_recipe() -> None:
    """A server's lintian warning points at its recipe's overrides, not at a
    templates/ directory servers do not have."""
    from esca_pkg.packaging.targets.server import ServerTarget

    fix = ServerTarget("lighttpd").lint_fix()
    assert "servers/lighttpd/recipe.toml" in fix and "templates" not in fix
