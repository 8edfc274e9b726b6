"""The previous release's packages, built from git history, for the upgrade tests
(test_upgrade.py on this machine, test_piuparts.py in a clean chroot).

The previous release is the tree just before the commit that set VERSION to
what it is now (`git log -1 -- VERSION`, its parent); while that bump is not
committed yet, HEAD; ESCA_PREVIOUS_COMMIT overrides both.  Its packages are
built the way that release built them, by its own tool with this Debian
release's python3 (`python3 -m esca_pkg.packaging build esca`, or `build
dkms libesca tool` for a tree without debian/ at the top; docs/upgrades.md),
once per commit and Debian release: the result is an apt repository written
by esca-pkg repo's writer (suite: the codename) in
/var/cache/esca/previous/<commit>-<codename> (ESCA_PREVIOUS_CACHE), reused by
every later run.  A build that failed leaves its log in
<cache>/<commit>-<codename>.failed.log.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pkg_helpers import PACKAGES, ROOT, SYSTEM_PATH

from esca_pkg import proc
from esca_pkg.log import EscaError
from esca_pkg.packaging.repo import build_repo

#: the targets of a release's own esca-pkg that make PACKAGES: "esca" since
#: the packaging is one source package (debian/ at the top), before that three
#: (0.2.0 and earlier, generated from esca_pkg/templates)
TARGETS = ("esca",)
LEGACY_TARGETS = ("dkms", "libesca", "tool")
CACHE = Path(os.environ.get("ESCA_PREVIOUS_CACHE", "/var/cache/esca/previous"))


@dataclass(frozen=True)
class Previous:
    commit: str
    version: str  # that tree's VERSION (0.2.0)
    package_version: str  # its packages' version (0.2.0+deb12)
    codename: str  # the Debian release they were built on
    repo: Path  # an apt repository of esca-pkg's (repo.py), one suite: codename
    build_seconds: float  # 0 when they came from the cache

    def deb(self, package: str) -> Path:
        found = sorted(self.pool.glob(f"{package}_{self.package_version}_*.deb"))
        assert len(found) == 1, f"expected one {package} .deb in {self.repo}, found {found}"
        return found[0]

    def debs(self) -> list[Path]:
        return [self.deb(p) for p in PACKAGES]

    @property
    def pool(self) -> Path:
        return self.repo / "pool" / self.codename

    @property
    def apt_source(self) -> str:
        """The one-line apt source of the repository (file:, unsigned)."""
        return f"deb [trusted=yes] file://{self.repo} {self.codename} main"


def _git(*args: str) -> str:
    res = subprocess.run(
        ["git", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": SYSTEM_PATH},
    )
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout.strip()


def previous_commit() -> str:
    """The commit of the previous release's tree (see the module's doc)."""
    override = os.environ.get("ESCA_PREVIOUS_COMMIT")
    if override:
        return _git("rev-parse", "--verify", f"{override}^{{commit}}")
    current = (ROOT / "VERSION").read_text().strip()
    bump = _git("log", "-1", "--format=%H", "--", "VERSION")
    if not bump:
        raise RuntimeError("no commit touches VERSION: no previous release")
    if _git("show", f"{bump}:VERSION") == current:
        return _git("rev-parse", f"{bump}^")
    return _git("rev-parse", "HEAD")  # the bump is not committed yet


def _codename() -> str:
    env = os.environ.get("ESCA_DEBIAN_CODENAME")
    if env:
        return env
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("/etc/os-release names no VERSION_CODENAME")


def _package_version(repo: Path) -> str:
    versions = set()
    for package in PACKAGES:
        found = list(repo.glob(f"{package}_*.deb"))
        if len(found) != 1:
            raise RuntimeError(f"expected one {package} .deb in {repo}, found {found}")
        versions.add(found[0].name.split("_")[1])
    if len(versions) != 1:
        raise RuntimeError(f"the previous packages have several versions: {versions}")
    return versions.pop()


def _build(commit: str, codename: str, dest: Path, log: Path) -> None:
    """Build the packages of commit's tree into dest (a new directory)."""
    work = dest.with_name(dest.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    src, dist, build = work / "src", work / "dist", work / "build"
    src.mkdir(parents=True)
    # The tree as committed (no .git: the tool takes every file but build products).
    proc.run(["sh", "-c", f"git archive --format=tar {commit} | tar -x -C {src}"], cwd=ROOT)
    targets = TARGETS if (src / "debian" / "control").is_file() else LEGACY_TARGETS
    # That release's tool, with this Debian release's python3 and its modules
    # (proc.run: Debian's PATH, no PYTHONPATH or venv of ours).
    proc.run(
        [
            "/usr/bin/python3",
            "-m",
            "esca_pkg.packaging",
            "build",
            *targets,
            "--project",
            str(src),
            "--dist",
            str(dist),
            "--build-dir",
            str(build),
            "--no-lint",
        ],
        cwd=src,
        log=log,
        env={"DEBIAN_FRONTEND": "noninteractive", "MAKEFLAGS": "", "MFLAGS": ""},
        timeout=1800,
    )
    repo = work / "repo"
    debs = [d for d in dist.glob("*.deb") if "-dbgsym_" not in d.name]
    build_repo({codename: debs}, repo)  # esca-pkg repo's writer (apt-ftparchive)
    _package_version(repo / "pool" / codename)
    shutil.copy2(log, repo / "build.log")
    repo.rename(dest)
    shutil.rmtree(work, ignore_errors=True)


@functools.cache
def previous_release() -> Previous:
    """The previous release's packages for this Debian release: from the cache,
    else built (a few seconds to a minute) and cached.  Skips the test when
    this is no git checkout; fails it when the build fails."""
    if shutil.which("git", path=SYSTEM_PATH) is None or not (ROOT / ".git").exists():
        pytest.skip("the previous release is built from git history: not a git checkout")
    try:
        commit = previous_commit()
    except RuntimeError as e:
        pytest.skip(f"no previous release: {e}")
    codename = _codename()
    CACHE.mkdir(parents=True, exist_ok=True)
    key = f"{commit[:12]}-{codename}"
    dest = CACHE / key
    seconds = 0.0
    # One build at a time (two test runs may share the cache).
    with (CACHE / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (dest / "dists" / codename / "Release").is_file():
            shutil.rmtree(dest, ignore_errors=True)
            log = CACHE / f"{key}.failed.log"
            log.unlink(missing_ok=True)
            t0 = time.monotonic()
            try:
                _build(commit, codename, dest, log)
            except (EscaError, RuntimeError, subprocess.SubprocessError, OSError) as e:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                pytest.fail(
                    f"building the previous release ({commit[:12]}) failed: {e}\nlog: {log}\n{tail}"
                )
            log.unlink(missing_ok=True)
            seconds = time.monotonic() - t0
    version = _git("show", f"{commit}:VERSION")
    pool = dest / "pool" / codename
    return Previous(commit, version, _package_version(pool), codename, dest, seconds)
