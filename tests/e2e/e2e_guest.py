"""Host side of the end-to-end suite: a Debian 12 guest under QEMU TCG.

The guest's root is an overlay: the host's root (Debian 12, shared read-only
over 9p) below, an ext4 disk image of the test's own above.  The image keeps
everything the guest does (apt, dpkg, dkms, the second kernel) across the
reboot into the second kernel.  A busybox initramfs of our own mounts the
overlay and runs guest/runner.sh in a chroot of it; results come back
through a 9p run directory, one step at a time (NAME.rc, NAME.out,
NAME.dmesg), like tests/vm.

From tests/vm/esca_vm.py (imported, not edited) this reuses the kernel
lookup, the module dependency walk and the cpio writer.  What differs, and
is therefore here: the initramfs carries virtio_blk, ext4 and overlay too and
its own /init, QEMU gets a disk, and the second boot's kernel is the one the
guest installed (its /boot/vmlinuz, copied out by the guest).
"""

from __future__ import annotations

import dataclasses
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(E2E_DIR.parent / "vm"))

import esca_vm as vm  # noqa: E402  (tests/vm is not a package)

from esca_pkg.proc import run  # noqa: E402

REPO = vm.REPO
GUEST_DIR = E2E_DIR / "guest"
# Cached between runs (ignored by git): packages, the dependency repository.
BUILD = Path(os.environ.get("ESCA_E2E_BUILD", REPO / "tests" / "_build" / "e2e"))

# First kernel: the guest boots it and has its headers; second kernel: purged
# from the guest at first, installed there later with apt.
FIRST, SECOND = "6.1", "6.12"

INITRAMFS_MODULES = (
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
    "overlay",
)
# The packages esca-pkg builds for the operator's install, and the servers.
PACKAGE_TARGETS = ("dkms", "libesca", "tool", "nginx")

HarnessError = vm.HarnessError


def log(msg: str) -> None:
    sys.stderr.write(f"[e2e {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --- packages ------------------------------------------------------------------


def _esca_pkg() -> list[str]:
    esca_pkg = Path(sys.executable).parent / "esca-pkg"
    return [str(esca_pkg)] if esca_pkg.exists() else [sys.executable, "-m", "esca_pkg.packaging"]


def build_packages(dist: Path, build_dir: Path) -> float:
    """esca-pkg build of the operator's packages into dist (reused when unchanged)."""
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
            dist,
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
        rf"^linux-(image|headers|kbuild)-({re.escape(release)}|"
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


def local_deps_repo(dest: Path, pkgs: list[Pkg]) -> Path:
    """A flat repository of the Debian packages the guest installs offline
    (the second kernel), downloaded once with apt-get download and cached."""
    debs = dest / "debs"
    debs.mkdir(parents=True, exist_ok=True)
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


# --- initramfs and disk --------------------------------------------------------


def build_initramfs(kernel: vm.Kernel, out: Path) -> Path:
    """esca_vm.build_initramfs with more modules and tests/e2e/guest/init."""
    entries: list[tuple[str, int, bytes, int]] = []
    for d in ("bin", "dev", "proc", "sys", "root", "lower", "rw", "modules"):
        entries.append((d, stat.S_IFDIR | 0o755, b"", 0))
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", (5 << 8) | 1))
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise HarnessError("/bin/busybox missing: apt-get install busybox-static")
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), 0))
    entries.append(("init", stat.S_IFREG | 0o755, (GUEST_DIR / "init").read_bytes(), 0))
    names = []
    for path in vm._module_paths(kernel, INITRAMFS_MODULES):
        data = path.read_bytes()
        if path.suffix == ".xz":
            data = lzma.decompress(data)
        name = re.sub(r"\.ko(\.\w+)?$", ".ko", path.name)
        names.append(name)
        entries.append((f"modules/{name}", stat.S_IFREG | 0o644, data, 0))
    entries.append(("modules.list", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode(), 0))
    out.write_bytes(vm._cpio_newc(entries))
    return out


def make_disk(path: Path, size_gb: int = 8) -> Path:
    """A sparse ext4 image: the overlay's writable layer."""
    path.unlink(missing_ok=True)
    with path.open("wb") as fh:
        fh.truncate(size_gb << 30)
    run(
        ["mkfs.ext4", "-q", "-F", "-L", "e2e-rw", path],
        capture=True,
        hint="apt-get install e2fsprogs",
    )
    return path


# --- booting -------------------------------------------------------------------


DPKG_STATUS = Path("/var/lib/dpkg/status")


def host_packages_stamp() -> tuple[int, int]:
    """Changes when dpkg changes the host's packages (the guest's lower layer)."""
    st = DPKG_STATUS.stat()
    return st.st_mtime_ns, st.st_size


@dataclasses.dataclass
class Boot:
    name: str
    rundir: Path
    console_log: Path
    seconds: float
    finished: bool
    host_changed: bool = False

    def result(self, step: str) -> vm.StepResult:
        return vm.GuestRun(self.rundir, "", self.seconds).result(step)

    @property
    def console(self) -> str:
        return self.console_log.read_text(errors="replace") if self.console_log.exists() else ""

    @property
    def aborted(self) -> str:
        p = self.rundir / "aborted"
        return p.read_text().strip() if p.exists() else ""


def boot(
    name: str,
    vmlinuz: Path,
    initramfs: Path,
    disk: Path,
    rundir: Path,
    plan: dict[str, str],
    timeout: float,
) -> Boot:
    """Boot under TCG, run guest/runner.sh with plan in the overlay root; wait for poweroff."""
    shutil.rmtree(rundir, ignore_errors=True)
    (rundir / "results").mkdir(parents=True)
    for f in GUEST_DIR.iterdir():
        if f.name != "init" and f.is_file():
            shutil.copy(f, rundir / f.name)
    plan = {**plan, "REPO": str(REPO), "RUN": str(rundir)}
    (rundir / "plan.env").write_text("".join(f"{k}='{v}'\n" for k, v in plan.items()))
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise HarnessError("qemu-system-x86_64 missing: apt-get install qemu-system-x86")
    append = [
        "console=ttyS0",
        "panic=-1",
        "loglevel=4",
        "rdinit=/init",
        f"esca.run={rundir}",
        f"esca.repo={REPO}",
    ]
    argv = [
        qemu,
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "2",
        "-m",
        "3072",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        str(vmlinuz),
        "-initrd",
        str(initramfs),
        "-append",
        " ".join(append),
        "-drive",
        f"file={disk},format=raw,if=virtio,cache=unsafe",
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs",
        f"local,path={rundir},mount_tag=run,security_model=none,multidevs=remap",
    ]
    console_log = rundir / "console.log"
    log(f"boot {name}: {vmlinuz.name} (console: {console_log})")
    start = time.monotonic()
    stamp = host_packages_stamp()
    with console_log.open("w") as fh:
        # Not proc.run(): the console streams to a file while we wait.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - start
    result = Boot(
        name,
        rundir,
        console_log,
        seconds,
        (rundir / "finished").exists(),
        host_packages_stamp() != stamp,
    )
    if result.host_changed:
        log(f"boot {name}: the host's packages changed during the boot (dpkg ran on the host)")
    log(f"boot {name}: {seconds:.0f} s, finished={result.finished}")
    return result
