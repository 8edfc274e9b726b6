"""Debian's CI for the esca source: its autopkgtest (debian/tests/control,
DEP-8) run by the real `autopkgtest` on the packages of the `built` fixture,
in a throwaway testbed of this machine's release (docs/autopkgtest.md).

The testbed: autopkgtest-virt-unshare on a minimal root of the release
(mmdebstrap --variant=apt from the Debian mirror of this machine's apt
sources, `scripts/release-root mirrors`), kept as a tarball in
/var/cache/esca/autopkgtest/ and made again when a day old.  Each test, and
each revert after one that breaks the testbed, unpacks it afresh into a
directory of its own that autopkgtest removes at the end; the packages the
tests install are downloaded once into a cache bind-mounted over the
testbed's /var/cache/apt/archives.  The run changes nothing of this machine
but those caches (checked: autopkgtest's own package, autopkgtest-satdep,
never reaches its dpkg database, and the run leaves no file behind).

virt-unshare runs the testbed in namespaces of its own (mount, pid, ipc,
uts) under a user namespace that maps root to a range of /etc/subuid.  As
root no user namespace is needed, and none can be made inside the other
release's root (scripts/release-root chroots: the kernel refuses
CLONE_NEWUSER to a chrooted process), so the run puts an `unshare` first on
PATH that drops the options asking for one.  In a chroot, moreover, "/" is
no mount point and unshare cannot make it private: there autopkgtest runs in
a mount namespace of its own, chrooted into a bind mount of the chroot.

On Debian 13 (`scripts/test --release trixie tests/packaging/test_autopkgtest.py`)
the same runs inside the trixie root with its own autopkgtest and mmdebstrap,
on the trixie packages the fixture builds there.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from debian.deb822 import Deb822

if TYPE_CHECKING:
    from pkg_helpers import Built

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

CACHE = Path(os.environ.get("ESCA_AUTOPKGTEST_CACHE", "/var/cache/esca/autopkgtest"))
#: a testbed root older than this (seconds) is made again (release-root's variable)
MAX_AGE = int(os.environ.get("ESCA_ROOT_MAX_AGE", "86400"))
#: cached .debs older than this are dropped when the root is made again
ARCHIVE_MAX_AGE = 7 * 86400
#: where the run's output stays (tests/_build is per release under scripts/release-root)
KEPT = ROOT / "tests" / "_build" / "autopkgtest"

#: Real root needs no user namespace (and none can be made in a chroot): drop
#: the options asking for one, among the leading options only.
UNSHARE_WRAPPER = """#!/bin/sh
# autopkgtest-virt-unshare as real root: no user namespace (tests/packaging/test_autopkgtest.py).
n=$#
opts=1
while [ "$n" -gt 0 ]; do
	a=$1
	shift
	n=$((n - 1))
	if [ "$opts" = 1 ]; then
		case $a in
		--map-auto | --map-root-user | --user) continue ;;
		--) opts=0 ;;
		-*) ;;
		*) opts=0 ;;
		esac
	fi
	set -- "$@" "$a"
done
exec /usr/bin/unshare "$@"
"""

#: In a chroot (scripts/release-root's) unshare cannot make "/" private, it is no
#: mount point (EINVAL): autopkgtest runs in a mount namespace of its own, chrooted
#: into a recursive bind mount of the chroot, whose root is one.
REROOT = """set -e
mnt=$1
shift
mount --rbind / "$mnt"
# shellcheck disable=SC2016 # expanded by the inner shell
exec chroot "$mnt" /bin/sh -c 'cd "$0" && exec "$@"' "$PWD" "$@"
"""

RESULT = re.compile(r"^(\S+)\s+(PASS|FAIL|SKIP|FLAKY|NEUTRAL|ERROR)\b ?(.*)$")


def run(argv: list[str], timeout: float) -> str:
    res = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        env={**os.environ, "PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
    )
    if res.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def mirrors() -> tuple[str, str]:
    """The Debian and security mirrors of this machine's apt sources (release-root's logic)."""
    out = run([str(ROOT / "scripts" / "release-root"), "mirrors"], timeout=60).split()
    assert len(out) == 2, out
    return out[0], out[1]


def release_tarball(codename: str) -> Path:
    """The release's minimal root as a tarball: made with mmdebstrap, again when
    older than MAX_AGE (the caller holds the release's lock).  Keeps apt's lists
    (autopkgtest runs no apt-get update unless told: the run's setup command
    does, cheaply on fresh lists)."""
    tarball = CACHE / f"{codename}.tar"
    if tarball.exists() and time.time() - tarball.stat().st_mtime < MAX_AGE:
        return tarball
    main, security = mirrors()
    new = CACHE / f"{codename}.tar.new"
    new.unlink(missing_ok=True)
    t0 = time.monotonic()
    run(
        [
            "mmdebstrap",
            "--variant=apt",
            "--format=tar",
            "--include=eatmydata",  # autopkgtest installs through it: no fsync
            "--skip=cleanup/apt/lists",
            '--aptopt=Acquire::Retries "3"',
            codename,
            str(new),
            f"deb {main} {codename} main",
            f"deb {main} {codename}-updates main",
            f"deb {security} {codename}-security main",
        ],
        timeout=1200,
    )
    new.rename(tarball)
    sys.stderr.write(f"\nautopkgtest testbed root {tarball}: {time.monotonic() - t0:.0f} s\n")
    archives = CACHE / f"{codename}.archives"
    if archives.is_dir():
        for deb in archives.glob("*.deb"):
            if time.time() - deb.stat().st_mtime > ARCHIVE_MAX_AGE:
                deb.unlink()
    return tarball


def this_release() -> str:
    """The release this machine runs (the fixture builds the packages for it)."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    pytest.fail("/etc/os-release names no VERSION_CODENAME")


def in_chroot() -> bool:
    """Whether "/" is no mount point (os.path.ismount says True for "/" in a chroot)."""
    res = subprocess.run(["mountpoint", "-q", "/"], check=False, env={"PATH": SYSTEM_PATH})
    return res.returncode != 0


def host_touched(since: str) -> list[str]:
    """Signs that the testbed was this machine: autopkgtest installs the test
    dependencies through a package of its own, autopkgtest-satdep (checked
    this way, and not by comparing the whole dpkg database: other runs may
    install packages here meanwhile)."""
    signs = []
    log = Path("/var/log/dpkg.log")
    if log.exists():
        signs += [
            line
            for line in log.read_text(errors="replace").splitlines()
            if line[:19] >= since and "autopkgtest-satdep" in line
        ]
    status = Path("/var/lib/dpkg/status").read_text(errors="replace")
    if "\nPackage: autopkgtest-satdep\n" in "\n" + status:
        signs.append("/var/lib/dpkg/status lists autopkgtest-satdep")
    return signs


def control_tests(project: Path) -> list[str]:
    with (project / "debian" / "tests" / "control").open() as fh:
        return [
            name
            for stanza in Deb822.iter_paragraphs(fh)
            if "Tests" in stanza
            for name in re.split(r"[\s,]+", stanza["Tests"].strip())
        ]


def binary_packages(project: Path) -> list[str]:
    with (project / "debian" / "control").open() as fh:
        return [p["Package"] for p in Deb822.iter_paragraphs(fh) if "Package" in p]


def run_autopkgtest(
    built: Built, codename: str, tarball: Path, out: Path, tmp: Path
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """autopkgtest on built's tree and .debs in a testbed unpacked from tarball,
    its output into out; with what it left in its temporary directory."""
    archives = CACHE / f"{codename}.archives"
    archives.mkdir(parents=True, exist_ok=True)
    wrapper = tmp / "bin" / "unshare"
    wrapper.parent.mkdir()
    wrapper.write_text(UNSHARE_WRAPPER)
    wrapper.chmod(0o755)
    # The testbed's unpacked root and autopkgtest's files: on disk (in the
    # release root /tmp is a tmpfs), and empty again after the run.
    work = Path(tempfile.mkdtemp(prefix="esca-autopkgtest.", dir="/var/tmp"))
    argv = [
        "autopkgtest",
        *("--output-dir", str(out)),
        *("--setup-commands", "apt-get update -q"),
        str(built.project),
        *(str(built.deb(p)) for p in binary_packages(built.project)),
        "--",
        "unshare",
        *("--tarball", str(tarball)),
        *("--bind", str(archives), "/var/cache/apt/archives"),
    ]
    if in_chroot():
        # The new mount namespace keeps the chroot's propagation: private, or the
        # bind mount would show in the namespaces it shares mounts with.
        if " shared:" in Path("/proc/self/mountinfo").read_text():
            pytest.fail("a chroot with shared mounts: run it in a private mount namespace")
        (work / "root").mkdir()
        argv = [
            *("unshare", "--mount", "--propagation", "unchanged", "--"),
            *("sh", "-c", REROOT, "sh", str(work / "root"), *argv),
        ]
    try:
        res = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=1800,
            stdin=subprocess.DEVNULL,
            check=False,
            env={
                **os.environ,
                "PATH": f"{wrapper.parent}:{SYSTEM_PATH}",
                "LANG": "C.UTF-8",
                "TMPDIR": str(work),
            },
            cwd=tmp,
        )
        return res, sorted(p.name for p in work.iterdir() if p.name != "root")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_autopkgtest(built: Built, tmp_path: Path) -> None:
    """Every test of debian/tests/control passes in a throwaway testbed."""
    if os.geteuid() != 0:
        pytest.skip("runs autopkgtest-virt-unshare as root (CI runs as root)")
    for tool in ("autopkgtest", "mmdebstrap"):
        if shutil.which(tool, path=SYSTEM_PATH) is None:
            pytest.fail(
                f"{tool} is not installed: apt-get install {tool} (scripts/deps/packaging.txt)"
            )
    codename = this_release()
    names = control_tests(built.project)
    assert names, "debian/tests/control names no test"
    out = KEPT / codename
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)

    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{codename}.lock").open("w") as lock:
        # One run per release at a time: they share the root and the package cache.
        fcntl.flock(lock, fcntl.LOCK_EX)
        tarball = release_tarball(codename)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        t0 = time.monotonic()
        res, left = run_autopkgtest(built, codename, tarball, out, tmp_path)
        secs = time.monotonic() - t0
    sys.stderr.write(f"\nautopkgtest on {codename}: {secs:.0f} s, output in {out}\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "autopkgtest.out").write_text(res.stdout + res.stderr)

    summary = (out / "summary").read_text() if (out / "summary").exists() else ""
    results = {
        m.group(1): (m.group(2), m.group(3)) for m in map(RESULT.match, summary.splitlines()) if m
    }
    failed = {n: r for n, r in results.items() if r[0] != "PASS"}
    if res.returncode != 0 or failed or sorted(results) != sorted(names):
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-80:])
        pytest.fail(
            f"autopkgtest exited {res.returncode} in {secs:.0f} s; tests {names}, "
            f"results {results}\nsummary:\n{summary}\nkept: {out} (log, <test>-stdout, "
            f"<test>-stderr, artifacts/)\n--- the last lines:\n{tail}"
        )
    assert left == [], f"autopkgtest left {left} in its temporary directory"
    touched = host_touched(since)
    assert not touched, f"the tests ran on this machine, not in the testbed: {touched}"
