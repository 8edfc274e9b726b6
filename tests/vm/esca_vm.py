"""QEMU harness of the esca module: Debian kernels booted under TCG.

The guest is the host itself: its root is shared read-only over 9p (the
repository and a run directory read-write), a busybox initramfs of our own
mounts them and runs guest/run.sh in a chroot.  The guest writes its results
(exit code, output and kernel log of each step) into the run directory.
"""

from __future__ import annotations

import dataclasses
import lzma
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from esca_pkg.proc import run

REPO = Path(__file__).resolve().parents[2]
VM_DIR = Path(__file__).resolve().parent
CASES_DIR = VM_DIR / "cases"
DKMS_DIR = REPO / "dkms"

# Debian metapackage naming each kernel of the matrix (scripts/deps/module.txt).
KERNEL_METAS = {"6.1": "linux-image-amd64", "6.12": "linux-image-6.12-amd64"}

# What the initramfs needs to mount the host over 9p (some are built in).
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p")

# Case programs that are helpers, not cases.
HELPERS = {"holder"}

BAD_DMESG = re.compile(
    r"WARNING:|BUG:|BUG |Oops|general protection|Call Trace|RIP: |Kernel panic|"
    r"UBSAN|KASAN|refcount_t|list_add corruption|possible circular locking|"
    r"sleeping function called|INFO: task .* blocked|stack-protector|Missing ENDBR"
)


@dataclasses.dataclass(frozen=True)
class Kernel:
    series: str
    release: str

    @property
    def vmlinuz(self) -> Path:
        return Path(f"/boot/vmlinuz-{self.release}")

    @property
    def moddir(self) -> Path:
        return Path(f"/lib/modules/{self.release}")

    @property
    def build(self) -> Path:
        return self.moddir / "build"


class HarnessError(Exception):
    """The harness itself could not do its job (missing package, boot failure)."""


def case_names() -> list[str]:
    return sorted(p.stem for p in CASES_DIR.glob("*.c") if p.stem not in HELPERS)


def find_kernel(series: str) -> Kernel:
    meta = KERNEL_METAS[series]
    proc = run(["dpkg-query", "-W", "-f", "${Depends}", meta], capture=True, check=False)
    m = re.search(r"linux-image-(\d[^\s,(]*)", proc.stdout or "")
    if proc.returncode != 0 or not m:
        raise HarnessError(
            f"{meta} is not installed: scripts/test installs it (scripts/deps/module.txt), "
            f"or run: apt-get install {meta} {meta.replace('image', 'headers')}"
        )
    kernel = Kernel(series, m.group(1))
    for path, pkg in ((kernel.vmlinuz, "linux-image"), (kernel.build, "linux-headers")):
        if not path.exists():
            raise HarnessError(f"{path} missing: apt-get install {pkg}-{kernel.release}")
    return kernel


# --- building ---------------------------------------------------------------


def build_module(kernel: Kernel, dest: Path, system_map: str) -> tuple[Path, str]:
    """Build esca.ko from a copy of dkms/ (as DKMS would); returns (ko, log)."""
    src = dest / "src"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(
        DKMS_DIR,
        src,
        ignore=shutil.ignore_patterns(
            "*.o",
            "*.ko",
            "*.mod",
            "*.mod.c",
            ".*.cmd",
            "generated",
            "Module.symvers",
            "modules.order",
        ),
    )
    version = (REPO / "VERSION").read_text().strip()
    proc = run(
        [
            "make",
            "-C",
            kernel.build,
            f"M={src}",
            "ESCA_WERROR=y",
            f"ESCA_VERSION={version}",
            f"ESCA_SYSTEM_MAP={system_map}",
            "modules",
        ],
        capture=True,
        check=False,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    (dest / "build.log").write_text(log)
    if proc.returncode != 0:
        raise HarnessError(f"module build for {kernel.release} failed:\n{log[-3000:]}")
    return src / "esca.ko", log


def build_cases(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(CASES_DIR.glob("*.c")):
        run(
            [
                "gcc",
                "-D_GNU_SOURCE",
                "-O2",
                "-g",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pthread",
                f"-I{DKMS_DIR / 'include' / 'uapi'}",
                "-o",
                dest / src.stem,
                src,
            ],
            capture=True,
            hint="a case program of tests/vm/cases does not compile",
        )
    return dest


def kallsyms_to_system_map(kallsyms: Path, out: Path) -> None:
    """A System.map from /proc/kallsyms of a nokaslr boot (vmlinux symbols only)."""
    lines = []
    for line in kallsyms.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            lines.append(line)
    if len(lines) < 1000:
        raise HarnessError(f"{kallsyms} has {len(lines)} symbols: not a usable kallsyms dump")
    out.write_text("\n".join(lines) + "\n")


def shifted_map(system_map: Path, out: Path, delta: int = 0x1000) -> None:
    """The same map with every address moved: a map of 'another build'."""
    rows = []
    for line in system_map.read_text().splitlines():
        addr, kind, name = line.split()
        rows.append(f"{int(addr, 16) + delta:016x} {kind} {name}")
    out.write_text("\n".join(rows) + "\n")


# --- initramfs ---------------------------------------------------------------


def _module_paths(kernel: Kernel, wanted: Iterable[str]) -> list[Path]:
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


def build_initramfs(kernel: Kernel, out: Path) -> Path:
    entries: list[tuple[str, int, bytes, int]] = []
    for d in ("bin", "dev", "proc", "sys", "root", "modules"):
        entries.append((d, stat.S_IFDIR | 0o755, b"", 0))
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", (5 << 8) | 1))
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise HarnessError("/bin/busybox missing: apt-get install busybox-static")
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), 0))
    entries.append(("init", stat.S_IFREG | 0o755, (VM_DIR / "guest" / "init").read_bytes(), 0))
    names = []
    for path in _module_paths(kernel, INITRAMFS_MODULES):
        data = path.read_bytes()
        if path.suffix == ".xz":
            data = lzma.decompress(data)
        elif path.suffix != ".ko":
            raise HarnessError(f"{path}: only plain and xz-compressed modules are handled")
        name = re.sub(r"\.ko(\.\w+)?$", ".ko", path.name)
        names.append(name)
        entries.append((f"modules/{name}", stat.S_IFREG | 0o644, data, 0))
    entries.append(("modules.list", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode(), 0))
    out.write_bytes(_cpio_newc(entries))
    return out


# --- booting -----------------------------------------------------------------


@dataclasses.dataclass
class GuestRun:
    rundir: Path
    console: str
    seconds: float

    def result(self, step: str) -> StepResult:
        res = self.rundir / "results"
        rc_file = res / f"{step}.rc"
        if not rc_file.exists():
            return StepResult(step, None, "", "")
        return StepResult(
            step,
            int(rc_file.read_text().strip() or "-1"),
            (res / f"{step}.out").read_text(errors="replace"),
            (res / f"{step}.dmesg").read_text(errors="replace"),
        )

    @property
    def finished(self) -> bool:
        return (self.rundir / "finished").exists()


@dataclasses.dataclass
class StepResult:
    step: str
    rc: int | None
    out: str
    dmesg: str

    def bad_dmesg(self) -> list[str]:
        return [line for line in self.dmesg.splitlines() if BAD_DMESG.search(line)]

    def describe(self) -> str:
        return (
            f"{self.step}: exit {self.rc}\n--- output\n{self.out[-4000:]}\n--- dmesg\n"
            + self.dmesg[-4000:]
        )


def boot(
    kernel: Kernel,
    rundir: Path,
    initramfs: Path,
    plan: dict[str, str],
    *,
    kaslr: bool,
    timeout: float,
) -> GuestRun:
    """Boot kernel under TCG and run guest/run.sh with plan; wait for poweroff."""
    (rundir / "results").mkdir(parents=True, exist_ok=True)
    for name in ("run.sh", "unload_cycles.sh", "microbench.sh"):
        target = "guest-run.sh" if name == "run.sh" else name
        shutil.copy(VM_DIR / "guest" / name, rundir / target)
    plan = {**plan, "REPO": str(REPO)}
    (rundir / "plan.env").write_text("".join(f"{k}='{v}'\n" for k, v in plan.items()))
    append = [
        "console=ttyS0",
        "panic=-1",
        "loglevel=4",
        "rdinit=/init",
        f"esca.run={rundir}",
        f"esca.repo={REPO}",
    ]
    if not kaslr:
        append.append("nokaslr")
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise HarnessError("qemu-system-x86_64 missing: apt-get install qemu-system-x86")
    argv = [
        qemu,
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "2",
        "-m",
        "2048",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        str(kernel.vmlinuz),
        "-initrd",
        str(initramfs),
        "-append",
        " ".join(append),
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs",
        f"local,path={REPO},mount_tag=repo,security_model=none,multidevs=remap",
        "-virtfs",
        f"local,path={rundir},mount_tag=run,security_model=none,multidevs=remap",
    ]
    console_log = rundir / "console.log"
    start = time.monotonic()
    with console_log.open("w") as fh:
        # Not proc.run(): the console must stream to a file while we wait.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - start
    guest = GuestRun(rundir, console_log.read_text(errors="replace"), seconds)
    if not guest.finished:
        raise HarnessError(
            f"guest {kernel.release} did not finish within {timeout:.0f} s "
            f"(ran {seconds:.0f} s); console tail:\n{guest.console[-3000:]}"
        )
    return guest
