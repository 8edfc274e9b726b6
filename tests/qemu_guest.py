"""The one guest harness: a Debian kernel booted under QEMU TCG on a Debian root.

Used by tests/vm (the module's cases), tests/e2e (the operator's flow) and,
through scripts/release-root, by both on the other Debian release.  What a
boot gets is a parameter (`GuestSpec`): the kernel, the root shared read-only
over 9p (this machine's `/`, which inside a release root is that root), the
drives, the memory, the extra 9p shares and the runner script with its plan;
`tests/guest/init`, the one /init of every initramfs, mounts what the kernel
command line names and runs the runner in a chroot.  The runner writes each
step's exit code, output and kernel log into the run directory, a 9p share
read back here (`GuestRun.result`).

What the matrix is: `scripts/kernels` (found through apt, nothing written here).
"""

from __future__ import annotations

import dataclasses
import lzma
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from esca_pkg.proc import run

REPO = Path(__file__).resolve().parents[1]
GUEST_DIR = Path(__file__).resolve().parent / "guest"

# What every initramfs needs to mount the root over 9p (some are built in).
MODULES_9P = ("virtio_pci", "9pnet_virtio", "9p")
# ... and a writable layer on a disk (an overlay root that survives reboots).
MODULES_DISK = ("virtio_blk", "crc32c_generic", "ext4", "overlay")
# Modules a kernel may not have: ext4 asks the crypto API for "crc32c" by
# name up to 6.x (a soft dependency, not in modules.dep), while 7.x computes
# it in the library and has no crc32c_generic.
MODULES_OPTIONAL = frozenset({"crc32c_generic"})

BAD_DMESG = re.compile(
    r"WARNING:|BUG:|BUG |Oops|general protection|Call Trace|RIP: |Kernel panic|"
    r"UBSAN|KASAN|refcount_t|list_add corruption|possible circular locking|"
    r"sleeping function called|INFO: task .* blocked|stack-protector|Missing ENDBR"
)


class HarnessError(Exception):
    """The harness itself could not do its job (missing package, boot failure)."""


def log(msg: str) -> None:
    sys.stderr.write(f"[guest {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --- kernels -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A kernel installed in a root: image in /boot, modules and headers."""

    release: str
    root: Path = Path("/")

    @property
    def series(self) -> str:
        """6.1, 6.12, 7.3: what tests are named after."""
        m = re.match(r"(\d+\.\d+)", self.release)
        return m.group(1) if m else self.release

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def moddir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    @property
    def build(self) -> Path:
        return self.moddir / "build"

    def check(self, headers: bool = True) -> Kernel:
        wanted = [(self.vmlinuz, "linux-image")]
        if headers:
            wanted.append((self.build, "linux-headers"))
        for path, pkg in wanted:
            if not path.exists():
                raise HarnessError(
                    f"{path} missing: apt-get install {pkg}-{self.release} "
                    "(scripts/test installs the kernels scripts/kernels names)"
                )
        return self


def matrix_releases() -> list[str]:
    """The kernel releases of this release's test matrix (scripts/kernels)."""
    proc = run([REPO / "scripts" / "kernels"], capture=True, check=False)
    releases = proc.stdout.split()
    if proc.returncode != 0 or not releases:
        raise HarnessError(f"scripts/kernels found no kernel: {proc.stderr.strip()}")
    return releases


def matrix_kernels() -> list[Kernel]:
    return [Kernel(r).check() for r in matrix_releases()]


# --- initramfs -----------------------------------------------------------------


def _module_paths(kernel: Kernel, wanted: Iterable[str]) -> list[Path]:
    """The .ko files of wanted (not built in), dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (kernel.moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[re.sub(r"\.ko(\.\w+)?$", "", Path(path).name).replace("-", "_")] = path
    builtin = {
        re.sub(r"\.ko$", "", Path(p).name).replace("-", "_")
        for p in (kernel.moddir / "modules.builtin").read_text().split()
    }
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name in builtin:
            continue
        if name not in by_name:
            if name in MODULES_OPTIONAL:
                continue
            raise HarnessError(f"{kernel.release} has no module {name}")
        visit(by_name[name])
    return [kernel.moddir / p for p in order]


def _cpio_newc(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A newc cpio archive of (name, mode, data, rdev) entries."""
    out = bytearray()

    def pad() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], 1):
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(name) + 1, 0]
        out.extend(b"070701" + "".join(f"{f:08x}" for f in fields).encode())
        out.extend(name.encode() + b"\0")
        pad()
        out.extend(data)
        pad()
    return bytes(out)


def build_initramfs(kernel: Kernel, out: Path, modules: Sequence[str] = MODULES_9P) -> Path:
    """busybox, tests/guest/init and the kernel's own modules (decompressed)."""
    entries: list[tuple[str, int, bytes, int]] = []
    for d in ("bin", "dev", "proc", "sys", "root", "lower", "rw", "modules"):
        entries.append((d, stat.S_IFDIR | 0o755, b"", 0))
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", (5 << 8) | 1))
    busybox = kernel.root / "bin" / "busybox"
    if not busybox.exists():
        raise HarnessError(f"{busybox} missing: apt-get install busybox-static")
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), 0))
    entries.append(("init", stat.S_IFREG | 0o755, (GUEST_DIR / "init").read_bytes(), 0))
    names = []
    for path in _module_paths(kernel, modules):
        data = path.read_bytes()
        if path.suffix == ".xz":
            data = lzma.decompress(data)
        elif path.suffix != ".ko":
            raise HarnessError(f"{path}: only plain and xz-compressed modules are handled")
        name = re.sub(r"\.ko(\.\w+)?$", ".ko", path.name)
        names.append(name)
        entries.append((f"modules/{name}", stat.S_IFREG | 0o644, data, 0))
    entries.append(("modules.list", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode(), 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_cpio_newc(entries))
    return out


def make_disk(path: Path, size_gb: int = 8) -> Path:
    """A sparse ext4 image: an overlay root's writable layer."""
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.truncate(size_gb << 30)
    run(
        ["mkfs.ext4", "-q", "-F", "-L", "guest-rw", path],
        capture=True,
        hint="apt-get install e2fsprogs",
    )
    return path


# --- booting -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GuestSpec:
    """One boot: what the guest gets.

    The root (read-only over 9p) is mounted as the guest's root, or, with an
    overlay disk, as the lower layer under an ext4 disk's upper one.  The
    runner script is copied into the run directory with `files` and runs in
    a chroot of the root with the run directory as $1 and `plan` in
    `$run/plan.env`; it must write `$run/finished` when done.
    """

    name: str
    vmlinuz: Path
    initramfs: Path
    rundir: Path
    runner: Path
    plan: Mapping[str, str] = dataclasses.field(default_factory=dict)
    files: Sequence[Path] = ()
    root: Path = Path("/")
    overlay_disk: Path | None = None
    share_repo: bool = True
    memory_mb: int = 2048
    cpus: int = 2
    kaslr: bool = True
    timeout: float = 1800
    #: more QEMU options (scripts/guest-bench: -icount)
    qemu_args: Sequence[str] = ()


@dataclasses.dataclass
class StepResult:
    step: str
    rc: int | None
    out: str
    dmesg: str
    seconds: float | None = None

    def bad_dmesg(self) -> list[str]:
        return [line for line in self.dmesg.splitlines() if BAD_DMESG.search(line)]

    def describe(self) -> str:
        return (
            f"{self.step}: exit {self.rc}\n--- output\n{self.out[-4000:]}\n--- dmesg\n"
            + self.dmesg[-4000:]
        )


@dataclasses.dataclass
class GuestRun:
    spec: GuestSpec
    seconds: float
    finished: bool
    host_changed: bool = False

    @property
    def rundir(self) -> Path:
        return self.spec.rundir

    @property
    def console_log(self) -> Path:
        return self.rundir / "console.log"

    @property
    def console(self) -> str:
        return self.console_log.read_text(errors="replace") if self.console_log.exists() else ""

    @property
    def aborted(self) -> str:
        p = self.rundir / "aborted"
        return p.read_text().strip() if p.exists() else ""

    def result(self, step: str) -> StepResult:
        res = self.rundir / "results"
        rc_file = res / f"{step}.rc"
        if not rc_file.exists():
            return StepResult(step, None, "", "")
        seconds = res / f"{step}.seconds"
        return StepResult(
            step,
            int(rc_file.read_text().strip() or "-1"),
            (res / f"{step}.out").read_text(errors="replace"),
            (res / f"{step}.dmesg").read_text(errors="replace"),
            float(seconds.read_text()) if seconds.exists() else None,
        )

    def bad_dmesg(self) -> list[str]:
        log_file = self.rundir / "dmesg.txt"
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        return [ln for ln in text.splitlines() if BAD_DMESG.search(ln)]

    def require_finished(self) -> GuestRun:
        if not self.finished:
            raise HarnessError(
                f"guest {self.spec.name} did not finish within {self.spec.timeout:.0f} s "
                f"(ran {self.seconds:.0f} s); console {self.console_log}, tail:\n"
                f"{self.console[-3000:]}"
            )
        return self


def _packages_stamp(root: Path) -> tuple[int, int]:
    """Changes when dpkg changes the root's packages (the guest's lower layer)."""
    st = (root / "var" / "lib" / "dpkg" / "status").stat()
    return st.st_mtime_ns, st.st_size


def boot(spec: GuestSpec) -> GuestRun:
    """Boot spec's kernel under TCG, run its runner; wait for poweroff."""
    rundir = spec.rundir
    # The run directory may hold the caller's inputs (built modules): only
    # what a previous boot left there goes.
    shutil.rmtree(rundir / "results", ignore_errors=True)
    for stale in ("finished", "aborted", "dmesg.txt", "console.log"):
        (rundir / stale).unlink(missing_ok=True)
    (rundir / "results").mkdir(parents=True)
    shutil.copy(spec.runner, rundir / "runner.sh")
    for f in spec.files:
        shutil.copy(f, rundir / f.name)
    shutil.copy(GUEST_DIR / "steps.sh", rundir / "steps.sh")
    plan = {**spec.plan, "REPO": str(REPO), "RUN": str(rundir)}
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
    if spec.overlay_disk:
        append.append("esca.overlay=/dev/vda")
    if not spec.kaslr:
        append.append("nokaslr")
    argv: list[str] = [
        qemu,
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        str(spec.cpus),
        "-m",
        str(spec.memory_mb),
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        str(spec.vmlinuz),
        "-initrd",
        str(spec.initramfs),
        "-append",
        " ".join(append),
        "-virtfs",
        f"local,path={spec.root},mount_tag=hostroot,security_model=none,readonly=on,"
        "multidevs=remap",
        "-virtfs",
        f"local,path={rundir},mount_tag=run,security_model=none,multidevs=remap",
    ]
    if spec.share_repo:
        argv += ["-virtfs", f"local,path={REPO},mount_tag=repo,security_model=none,multidevs=remap"]
    argv += list(spec.qemu_args)
    if spec.overlay_disk:
        argv += ["-drive", f"file={spec.overlay_disk},format=raw,if=virtio,cache=unsafe"]
    log(f"boot {spec.name}: {spec.vmlinuz.name} (console: {rundir / 'console.log'})")
    start = time.monotonic()
    stamp = _packages_stamp(spec.root)
    with (rundir / "console.log").open("w") as fh:
        # Not proc.run(): the console streams to a file while we wait.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=spec.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - start
    guest = GuestRun(
        spec, seconds, (rundir / "finished").exists(), _packages_stamp(spec.root) != stamp
    )
    if guest.host_changed:
        log(f"boot {spec.name}: the root's packages changed during the boot (dpkg ran on it)")
    log(f"boot {spec.name}: {seconds:.0f} s, finished={guest.finished}")
    return guest
