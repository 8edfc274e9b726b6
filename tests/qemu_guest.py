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

A kernel without 9p (Debian's cloud kernels: `# CONFIG_NET_9P is not set`)
boots a self-contained guest instead (`GuestSpec.self_contained`, a
`SelfContained`): the initramfs carries the guest's root under /root, copied
from this machine's root as it is (inside scripts/release-root, the release
root's): the given programs and files at their own paths, with the shared
libraries `ldd` names and the dynamic loader, busybox for every other tool
(its applets as symbolic links), the runner, its plan and tests/guest/steps.sh
in the run directory's path, and the kernel modules the runner may modprobe
with the kernel's modules.* indexes.  `esca.selfcontained=/dev/vda` tells
tests/guest/init to mount nothing over 9p (the initramfs loads virtio_pci and
virtio_blk, `MODULES_SELF`) and, after the runner, to write the run directory
as a tar archive onto a raw virtio disk, which `boot` unpacks into the run
directory here: `GuestRun.result` reads it as after a 9p boot.  Nothing else
of the root is there: a runner uses what it was given (bash, busybox, ...).

What the matrix is: `scripts/kernels` (found through apt, nothing written here;
`--cloud`: Debian's cloud kernel).
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
import tarfile
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
# What a self-contained guest needs: its results disk (virtio_pci is built
# into some kernels, a module in others).
MODULES_SELF = ("virtio_pci", "virtio_blk")
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


def matrix_releases(cloud: bool = False) -> list[str]:
    """The kernel releases of this release's test matrix (scripts/kernels),
    or its cloud kernel (scripts/kernels --cloud: no 9p)."""
    argv = [REPO / "scripts" / "kernels", *(["--cloud"] if cloud else [])]
    proc = run(argv, capture=True, check=False)
    releases = proc.stdout.split()
    if proc.returncode != 0 or not releases:
        what = "cloud kernel" if cloud else "kernel"
        raise HarnessError(f"scripts/kernels found no {what}: {proc.stderr.strip()}")
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
            # (Debian's kernels, cloud ones included: plain on 6.1, xz from 6.12.)
            raise HarnessError(f"{path}: only plain and xz-compressed modules are handled")
        name = re.sub(r"\.ko(\.\w+)?$", ".ko", path.name)
        names.append(name)
        entries.append((f"modules/{name}", stat.S_IFREG | 0o644, data, 0))
    entries.append(("modules.list", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode(), 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_cpio_newc(entries))
    return out


@dataclasses.dataclass(frozen=True)
class SelfContained:
    """A guest whose root is in its initramfs (a kernel without 9p).

    From this machine's root, at their own paths: `programs` and `paths`
    (files, or directories with everything in them), every ELF executable
    among them with the shared libraries and loader `ldd` names, and
    symbolic links as they are (/bin -> usr/bin, /usr/sbin/insmod ->
    /bin/kmod: their targets come too).  busybox's applets fill in every
    tool none of these provides.  `modules` (with their dependencies) and
    the kernel's modules.* indexes go to /lib/modules/<release>, for the
    runner's modprobe.  The results leave on a raw disk of `results_mb`.
    """

    kernel: Kernel
    programs: Sequence[Path] = ()
    paths: Sequence[Path] = ()
    modules: Sequence[str] = ()
    results_mb: int = 512


class _RootTree:
    """The entries of a cpio archive of a root under `prefix`, copied from
    this machine's root (symbolic links kept, followed and their targets
    copied too)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.entries: dict[str, tuple[int, bytes]] = {}

    def _put(self, path: Path, mode: int, data: bytes = b"") -> None:
        key = f"{self.prefix}{path}"
        if key not in self.entries:
            self.entries[key] = (mode, data)

    def has(self, path: Path) -> bool:
        return f"{self.prefix}{path}" in self.entries

    def add(self, path: Path, contents: bool = True, depth: int = 0) -> Path:
        """Adds absolute path (a directory with its contents unless not
        contents); returns where it is once its symbolic links are followed."""
        if depth > 40:
            raise HarnessError(f"{path}: too many levels of symbolic links")
        parts = Path(os.path.normpath(path)).parts[1:]
        cur = Path("/")
        self._put(cur, stat.S_IFDIR | 0o755)
        for i, part in enumerate(parts):
            nxt = cur / part
            if nxt.is_symlink():
                target = os.readlink(nxt)
                self._put(nxt, stat.S_IFLNK | 0o777, target.encode())
                resolved = Path(os.path.normpath(cur / target)).joinpath(*parts[i + 1 :])
                return self.add(resolved, contents, depth + 1)
            if not nxt.exists():
                raise HarnessError(f"{nxt} missing (for the self-contained guest)")
            if i < len(parts) - 1 or nxt.is_dir():
                self._put(nxt, stat.S_IFDIR | 0o755)
            cur = nxt
        if cur.is_dir():
            if contents:
                for child in sorted(cur.iterdir()):
                    self.add(child, True, depth)
        else:
            self._put(cur, stat.S_IFREG | stat.S_IMODE(cur.stat().st_mode), cur.read_bytes())
        return cur

    def add_link(self, path: Path, target: Path) -> None:
        self._put(path, stat.S_IFLNK | 0o777, str(target).encode())

    def add_dirs(self, *dirs: str) -> None:
        for d in dirs:
            self._put(Path(d), stat.S_IFDIR | 0o755)

    def cpio_entries(self) -> list[tuple[str, int, bytes, int]]:
        return [(name, mode, data, 0) for name, (mode, data) in self.entries.items()]


def _elf_libraries(path: Path) -> list[Path]:
    """The shared libraries and the loader of a dynamic ELF executable."""
    with path.open("rb") as fh:
        if fh.read(4) != b"\x7fELF" or not path.stat().st_mode & 0o111:
            return []
    proc = run(["ldd", path], capture=True, check=False)
    if proc.returncode != 0:
        return []  # static (busybox-static), or not an executable
    libs = []
    for line in proc.stdout.splitlines():
        if "not found" in line:
            raise HarnessError(f"{path}: a library is missing: {line.strip()}")
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def _busybox_applets() -> list[str]:
    proc = run(["/bin/busybox", "--list-full"], capture=True, check=False)
    if proc.returncode != 0:
        raise HarnessError("/bin/busybox --list-full failed: apt-get install busybox-static")
    return proc.stdout.split()


def build_self_contained_root(sc: SelfContained, rundir: Path, inputs: Iterable[Path]) -> bytes:
    """The cpio archive of a self-contained guest's root, under /root: what
    sc names, inputs (the run directory's runner, plan, steps.sh), busybox."""
    tree = _RootTree("root")
    tree.add_dirs("/dev", "/proc", "/sys", "/tmp", "/run", "/var", "/var/tmp", "/mnt")
    tree.add(rundir, contents=False)
    for path in inputs:
        tree.add(path)
    for path in [*sc.paths, *sc.programs]:
        real = tree.add(path)
        for f in sorted(real.rglob("*")) if real.is_dir() else [real]:
            if f.is_file() and not f.is_symlink():
                for lib in _elf_libraries(f):
                    tree.add(lib)
    busybox = tree.add(Path("/bin/busybox"))
    for applet in _busybox_applets():
        where = Path(os.path.realpath(Path("/", applet).parent))
        tree.add(where, contents=False)
        link = where / Path(applet).name
        if not tree.has(link):
            tree.add_link(link, busybox)
    moddir = sc.kernel.moddir
    if sc.modules or moddir.exists():
        tree.add(moddir, contents=False)
        for index in sorted(moddir.glob("modules.*")):
            tree.add(index)
        for mod in _module_paths(sc.kernel, sc.modules):
            tree.add(mod)
    return _cpio_newc(tree.cpio_entries())


def _unpack_results(disk: Path, rundir: Path) -> int:
    """Unpacks the tar archive a self-contained guest wrote onto its results
    disk into rundir (regular files and directories only, nothing outside
    it); returns how many files."""
    count = 0
    try:
        with tarfile.open(disk, "r:") as tar:
            for member in tar:
                name = os.path.normpath(member.name)
                if name.startswith(("/", "..")):
                    raise HarnessError(f"{disk}: {member.name} is outside the run directory")
                dest = rundir / name
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.unlink(missing_ok=True)
                    dest.write_bytes(src.read())
                    count += 1
    except tarfile.ReadError as err:
        log(f"{disk}: no results archive ({err})")
    return count


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
    `$run/plan.env`; it must write `$run/finished` when done.  A
    self-contained guest (`self_contained`) has its root in the initramfs
    (`initramfs` holds init and the modules `MODULES_SELF`; `boot` appends
    the root) and no shares: its run directory comes back as a tar archive.
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
    #: a root in the initramfs, no 9p (then root and share_repo are unused)
    self_contained: SelfContained | None = None
    memory_mb: int = 2048
    cpus: int = 2
    kaslr: bool = True
    timeout: float = 1800
    #: more QEMU options (scripts/guest-bench: -icount)
    qemu_args: Sequence[str] = ()
    #: more kernel command-line arguments (tests/vm/test_module_signing.py:
    #: module.sig_enforce=1)
    cmdline: Sequence[str] = ()


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
    # The oops of a first boot the emulator killed (see `stale_int3`).
    emulator_fault: str = ""

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

    def fault_note(self) -> str:
        if not self.emulator_fault:
            return ""
        return (
            f" (the first attempt died of an emulator fault, {self.emulator_fault!r}, "
            "and this is the second)"
        )

    def require_finished(self) -> GuestRun:
        if not self.finished:
            raise HarnessError(
                f"guest {self.spec.name} did not finish within {self.spec.timeout:.0f} s "
                f"(ran {self.seconds:.0f} s){self.fault_note()}; console {self.console_log}, "
                "tail:\n"
                f"{self.console[-3000:]}"
            )
        return self


def _packages_stamp(root: Path) -> tuple[int, int]:
    """Changes when dpkg changes the root's packages (the guest's lower layer)."""
    st = (root / "var" / "lib" / "dpkg" / "status").stat()
    return st.st_mtime_ns, st.st_size


# QEMU's multi-threaded TCG (seen with Debian 12's 7.2) can run a stale
# translation of kernel text that another vCPU has just patched: the guest
# kernel's text_poke_bp() puts an int3 on a static-key site (perf flips
# perf_sched_events in __schedule), syncs every CPU, restores the site and
# forgets the breakpoint, yet a vCPU still executes the old int3 and the guest
# dies with "Oops: int3" although the byte at the trap is no longer int3 (the
# oops's "Code:" line shows it).  A real CPU cannot do that (the kernel's
# IPIs serialise it), so such a death is the emulator's, and the boot is run
# again once from the same state; any other death, or this one twice, stands.
_INT3_OOPS = re.compile(r"(?:Oops: )?int3: [0-9a-f]{4} \[#\d+\]")
_OOPS_CODE = re.compile(r"Code: ((?:<?[0-9a-f]{2}>? ?)+)")


def stale_int3(console: str) -> str:
    """The oops line of an int3 trap on a byte that is no longer int3, else ""."""
    oops = _INT3_OOPS.search(console)
    if not oops:
        return ""
    code = _OOPS_CODE.search(console, oops.end())
    if not code:
        return ""
    insn = code.group(1).split()
    at = next((i for i, b in enumerate(insn) if b.startswith("<")), 0)
    # After int3 the saved RIP is the next byte: the trap's byte is before it.
    if at == 0 or int(insn[at - 1], 16) == 0xCC:
        return ""
    line_end = console.find("\n", oops.end())
    return console[oops.start() : line_end if line_end >= 0 else None].strip()


def boot(spec: GuestSpec) -> GuestRun:
    """Boot spec's kernel under TCG, run its runner; wait for poweroff.

    A boot the emulator killed (`stale_int3`) runs again, once, from the same
    overlay disk; its console stays as console.emulator-fault.log."""
    (spec.rundir / "console.emulator-fault.log").unlink(missing_ok=True)
    disk = spec.overlay_disk
    snapshot = disk.with_name(disk.name + ".before-boot") if disk else None
    if disk and snapshot:
        run(["cp", "--sparse=always", disk, snapshot])
    try:
        guest = _boot_once(spec)
        fault = "" if guest.finished else stale_int3(guest.console)
        if fault:
            log(
                f"boot {spec.name}: the emulator ran a stale int3 ({fault!r}: QEMU's TCG); "
                "booting again from the same state"
            )
            shutil.copy(guest.console_log, spec.rundir / "console.emulator-fault.log")
            if disk and snapshot:
                run(["cp", "--sparse=always", snapshot, disk])
            guest = dataclasses.replace(_boot_once(spec), emulator_fault=fault)
    finally:
        if snapshot:
            snapshot.unlink(missing_ok=True)
    return guest


def _boot_once(spec: GuestSpec) -> GuestRun:
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
    sc = spec.self_contained
    initramfs = spec.initramfs
    results_disk = rundir / "results.img"
    if sc:
        if spec.overlay_disk:
            raise HarnessError("a self-contained guest has no overlay disk")
        inputs = [rundir / "runner.sh", rundir / "steps.sh", rundir / "plan.env"]
        inputs += [rundir / f.name for f in spec.files]
        initramfs = rundir / "initramfs-self.cpio"
        initramfs.write_bytes(
            spec.initramfs.read_bytes() + build_self_contained_root(sc, rundir, inputs)
        )
        results_disk.unlink(missing_ok=True)
        with results_disk.open("wb") as fh:
            fh.truncate(sc.results_mb << 20)
        append.append("esca.selfcontained=/dev/vda")
    if spec.overlay_disk:
        append.append("esca.overlay=/dev/vda")
    if not spec.kaslr:
        append.append("nokaslr")
    append += list(spec.cmdline)
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
        str(initramfs),
        "-append",
        " ".join(append),
    ]
    if sc:
        argv += ["-drive", f"file={results_disk},format=raw,if=virtio,cache=unsafe"]
    else:
        argv += [
            "-virtfs",
            f"local,path={spec.root},mount_tag=hostroot,security_model=none,readonly=on,"
            "multidevs=remap",
            "-virtfs",
            f"local,path={rundir},mount_tag=run,security_model=none,multidevs=remap",
        ]
    if spec.share_repo and not sc:
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
    if sc:
        files = _unpack_results(results_disk, rundir)
        log(f"boot {spec.name}: {files} files back from the results disk")
        results_disk.unlink(missing_ok=True)
        initramfs.unlink(missing_ok=True)
    guest = GuestRun(
        spec, seconds, (rundir / "finished").exists(), _packages_stamp(spec.root) != stamp
    )
    if guest.host_changed:
        log(f"boot {spec.name}: the root's packages changed during the boot (dpkg ran on it)")
    log(f"boot {spec.name}: {seconds:.0f} s, finished={guest.finished}")
    return guest
