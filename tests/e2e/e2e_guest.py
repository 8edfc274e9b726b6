"""Host side of the end-to-end suite: a Debian guest under QEMU TCG.

The guest's root is an overlay: this machine's root (shared read-only over
9p; inside scripts/release-root, that release's root) below, an ext4 disk
image of the test's own above.  The image keeps everything the guest does
(apt, dpkg, dkms, the second kernel) across the reboot into the second
kernel.  The guest harness (tests/qemu_guest.py, shared with tests/vm) builds
the initramfs and boots; guest/runner.sh runs in a chroot of the overlay and
its results come back through a 9p run directory, one step at a time.

What is the suite's own, and therefore here: the packages it installs, the
local repository of the second kernel's packages, and the second boot's
kernel being the one the guest installed (its /boot/vmlinuz, copied out).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import time
from pathlib import Path

import qemu_guest as guest

from esca_pkg.packaging.release import host_release
from esca_pkg.proc import run

E2E_DIR = Path(__file__).resolve().parent
REPO = guest.REPO
GUEST_DIR = E2E_DIR / "guest"
# Cached between runs (ignored by git): packages, the dependency repository.
BUILD = Path(os.environ.get("ESCA_E2E_BUILD", REPO / "tests" / "_build" / "e2e"))

INITRAMFS_MODULES = (*guest.MODULES_9P, *guest.MODULES_DISK)
# The packages esca-pkg builds for the operator's install, and the servers.
PACKAGE_TARGETS = ("esca", "nginx")

HarnessError = guest.HarnessError
GuestRun = guest.GuestRun
StepResult = guest.StepResult
BAD_DMESG = guest.BAD_DMESG


def kernels() -> tuple[guest.Kernel, guest.Kernel]:
    """First kernel: the guest boots it and has its headers; second kernel:
    purged from the guest at first, installed there later with apt.  The
    release's matrix (scripts/kernels): Debian's default kernel, the newest."""
    releases = guest.matrix_releases()
    if len(releases) < 2:
        raise HarnessError(f"the e2e suite needs two kernels; scripts/kernels found {releases}")
    return guest.Kernel(releases[0]).check(), guest.Kernel(releases[1]).check()


def log(msg: str) -> None:
    sys.stderr.write(f"[e2e {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --- packages ------------------------------------------------------------------


def _esca_pkg() -> list[str]:
    esca_pkg = Path(sys.executable).parent / "esca-pkg"
    return [str(esca_pkg)] if esca_pkg.exists() else [sys.executable, "-m", "esca_pkg.packaging"]


def codename() -> str:
    """The release the guest runs: this machine's (the release root's, in one)."""
    return host_release().codename


def build_packages(dist: Path, codename: str, build_dir: Path) -> float:
    """esca-pkg build of the operator's packages into dist/<codename> (reused when
    unchanged), and esca-pkg repo of dist (one suite per release built there).
    esca-pkg takes nginx from ESCA_NGINX_SOURCE (a .dsc) when it is set, for a
    mirror that lists a version it does not serve."""
    argv = _esca_pkg()
    t0 = time.monotonic()
    proc = run(
        [
            *argv,
            "build",
            *PACKAGE_TARGETS,
            "--project",
            REPO,
            "--dist",
            dist / codename,
            "--build-dir",
            build_dir,
        ],
        capture=True,
        check=False,
        system_path=False,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise HarnessError(
            f"esca-pkg build {' '.join(PACKAGE_TARGETS)} failed:\n"
            f"{(proc.stdout + proc.stderr)[-4000:]}"
        )
    repo = run([*argv, "repo", "--dist", dist], capture=True, check=False, system_path=False)
    if repo.returncode != 0:
        raise HarnessError(f"esca-pkg repo failed:\n{repo.stdout}{repo.stderr}")
    return time.monotonic() - t0


@dataclasses.dataclass(frozen=True)
class Pkg:
    name: str
    version: str


def installed_kernel_packages(release: str, series: str) -> list[Pkg]:
    """The host's installed packages of one kernel: image, headers, common, kbuild, metas."""
    proc = run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n"], capture=True
    )
    pattern = re.compile(
        rf"^linux-(image|headers|kbuild|base|binary|modules)-({re.escape(release)}|"
        rf"{re.escape(release.removesuffix('-amd64'))}(-common)?|"
        rf"{re.escape(series)}-amd64|{re.escape(series)}|"
        rf"{re.escape(_abi(release))}(-common)?)$"
    )
    pkgs = []
    for line in proc.stdout.splitlines():
        name, version, status = line.split()
        if status.startswith("ii") and pattern.match(name):
            pkgs.append(Pkg(name, version))
    return pkgs


def _abi(release: str) -> str:
    # 6.12.117+deb12-amd64 -> 6.12.117+deb12 (headers-common, kbuild)
    return release.rsplit("-", 1)[0]


def operator_dependencies(debs: list[Path], dest: Path) -> None:
    """Download into dest the Debian packages the operator's `apt install` of debs
    pulls in that this machine lacks (trixie's nginx needs iproute2, which a
    buildd root has not): the guest is offline, so they go to its local repository."""
    archives = dest.parent / "operator-archives"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    run(
        [
            "apt-get",
            "-o",
            f"Dir::Cache::archives={archives}",
            "-o",
            "DPkg::Lock::Timeout=600",
            "install",
            "--download-only",
            "--no-install-recommends",  # as the guest installs (guest/runner.sh)
            "-y",
            "-q",
            *(str(d) for d in debs),
        ],
        capture=True,
        timeout=900,
        hint="the Debian archive must be reachable (apt-get update)",
    )
    for deb in archives.glob("*.deb"):
        if not (dest / deb.name).exists():
            shutil.copy(deb, dest)


def local_deps_repo(dest: Path, pkgs: list[Pkg], operator_debs: list[Path]) -> Path:
    """A repository of the Debian packages the guest installs offline (the second
    kernel, what the operator's install pulls in), downloaded once and cached."""
    debs = dest / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    operator_dependencies(operator_debs, debs)
    for p in pkgs:
        if list(debs.glob(f"{p.name}_*.deb")):
            continue
        cached = list(
            Path("/var/cache/apt/archives").glob(f"{p.name}_{p.version.replace(':', '%3a')}_*.deb")
        )
        if cached:
            shutil.copy(cached[0], debs)
        else:
            log(f"apt-get download {p.name}={p.version}")
            run(
                ["apt-get", "download", f"{p.name}={p.version}"],
                cwd=debs,
                capture=True,
                timeout=900,
                hint="the Debian archive must be reachable (apt-get update)",
            )
    repo = dest / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    proc = run(
        [
            *_esca_pkg(),
            "repo",
            "--dist",
            debs,
            "--output",
            repo,
            "--origin",
            "e2e-local",
            "--label",
            "e2e-local",
            "--suite",
            "local",
        ],
        capture=True,
        check=False,
        system_path=False,
    )
    if proc.returncode != 0:
        raise HarnessError(f"esca-pkg repo of {debs} failed:\n{proc.stdout}{proc.stderr}")
    return repo


# --- booting -------------------------------------------------------------------


def initramfs(kernel: guest.Kernel, out: Path) -> Path:
    return guest.build_initramfs(kernel, out, INITRAMFS_MODULES)


def boot(
    name: str,
    vmlinuz: Path,
    initramfs: Path,
    disk: Path,
    rundir: Path,
    plan: dict[str, str],
    timeout: float,
) -> GuestRun:
    """Boot under TCG, run guest/runner.sh with plan in the overlay root; wait for poweroff."""
    shutil.rmtree(rundir, ignore_errors=True)
    return guest.boot(
        guest.GuestSpec(
            name=name,
            vmlinuz=vmlinuz,
            initramfs=initramfs,
            rundir=rundir,
            runner=GUEST_DIR / "runner.sh",
            plan=plan,
            files=[GUEST_DIR / "serve_check.py"],
            overlay_disk=disk,
            share_repo=False,
            memory_mb=3072,
            timeout=timeout,
        )
    )
