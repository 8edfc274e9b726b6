"""The esca module's side of the QEMU suite: building the module and the
case programs, System.maps, and one boot of tests/vm/guest/run.sh through the
guest harness (tests/qemu_guest.py: kernels, initramfs, QEMU).

The guest's root is this machine's root (inside scripts/release-root, that
release's root), shared read-only over 9p, with the repository and a run
directory read-write; the guest writes its results (exit code, output and
kernel log of each step) into the run directory.  Debian's cloud kernels
have no 9p: `boot(..., self_contained=...)` gives the guest a root in its initramfs
(the programs below, the module, the case programs) and gets the run
directory back from a raw disk (tests/qemu_guest.py `SelfContained`).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from libesca_support import compile_c
from qemu_guest import (
    BAD_DMESG,
    MODULES_9P,
    MODULES_SELF,
    REPO,
    GuestRun,
    GuestSpec,
    HarnessError,
    Kernel,
    SelfContained,
    StepResult,
    build_initramfs,
    matrix_releases,
)
from qemu_guest import boot as boot_guest

from esca_pkg.proc import run

__all__ = [
    "BAD_DMESG",
    "BuildError",
    "GuestRun",
    "HarnessError",
    "Kernel",
    "StepResult",
    "matrix_releases",
]

VM_DIR = Path(__file__).resolve().parent
CASES_DIR = VM_DIR / "cases"
DKMS_DIR = REPO / "dkms"


class BuildError(HarnessError):
    """The module's build failed; log is its output."""

    def __init__(self, msg: str, log: str) -> None:
        super().__init__(msg)
        self.log = log


# Case programs that are helpers, not cases.
HELPERS = {"holder"}

# What a self-contained guest's runner and the case programs run besides
# busybox: bash (runners, steps.sh), dash as /bin/sh (system()), kmod
# (insmod with parameters, rmmod, modprobe), and for mappings' loop-mounted
# ext4 e2fsprogs' mkfs.ext4 and util-linux's mount.
GUEST_PROGRAMS = tuple(
    Path(p)
    for p in (
        "/bin/bash",
        "/bin/sh",
        "/sbin/insmod",
        "/sbin/rmmod",
        "/sbin/modprobe",
        "/sbin/lsmod",
        "/sbin/mkfs.ext4",
        "/bin/mount",
        "/bin/umount",
    )
)
# The modules the cases modprobe (mappings: loop, ext4), where not built in.
GUEST_MODULES = ("loop", "ext4", "crc32c_generic")


def case_names() -> list[str]:
    return sorted(p.stem for p in CASES_DIR.glob("*.c") if p.stem not in HELPERS)


# --- building ---------------------------------------------------------------


def build_module(
    kernel: Kernel, dest: Path, system_map: str = "", image: str = ""
) -> tuple[Path, str]:
    """Build esca.ko from a copy of dkms/ (as DKMS would); returns (ko, log).

    system_map and image are the build's ESCA_SYSTEM_MAP and ESCA_KERNEL_IMAGE
    (empty: what the build finds for the kernel, as under DKMS; "none": not
    that source)."""
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
            f"ESCA_KERNEL_IMAGE={image}",
            "modules",
        ],
        capture=True,
        check=False,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    (dest / "build.log").write_text(log)
    if proc.returncode != 0:
        raise BuildError(f"module build for {kernel.release} failed:\n{log[-3000:]}", log)
    return src / "esca.ko", log


def build_cases(dest: Path) -> Path:
    """The case programs of tests/vm/cases and the hooked programs of
    tests/vm/cases/programs (guest/observe.sh), into one directory."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted([*CASES_DIR.glob("*.c"), *(CASES_DIR / "programs").glob("*.c")]):
        compile_c(src, dest / src.stem)
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


def image_symbols_reader() -> ModuleType:
    """dkms/scripts/esca_image_symbols.py, the build's image reader, as a module."""
    path = DKMS_DIR / "scripts" / "esca_image_symbols.py"
    spec = importlib.util.spec_from_file_location("esca_image_symbols", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("esca_image_symbols", mod)
    spec.loader.exec_module(mod)
    return mod


def kernel_config(kernel: Kernel) -> dict[str, str]:
    """The kernel's /boot/config-<release>: {CONFIG_X: value}."""
    path = kernel.root / "boot" / f"config-{kernel.release}"
    config = {}
    for line in path.read_text().splitlines():
        name, eq, value = line.partition("=")
        if eq and name.startswith("CONFIG_"):
            config[name] = value
    return config


def handler_symbol(call: str) -> str:
    """The __x64_sys_* handler of a call (syscall_64.tbl's exceptions)."""
    return "__x64_sys_sendfile64" if call == "sendfile" else f"__x64_sys_{call}"


def symbols_against_kallsyms(debugfs: str, kallsyms: Path) -> list[str]:
    """Where the module's resolved addresses (debugfs esca/symbols: "ADDR
    sys_call_table", "ADDR CALL NR") differ from the guest's /proc/kallsyms;
    empty when every one is there."""
    where: dict[str, set[int]] = {}
    for line in kallsyms.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            where.setdefault(parts[2], set()).add(int(parts[0], 16))
    wrong, seen = [], 0
    for line in debugfs.splitlines():
        parts = line.split()
        if len(parts) < 2 or not re.fullmatch(r"[0-9a-f]{16}", parts[0]):
            continue
        name = parts[1] if parts[1] == "sys_call_table" else handler_symbol(parts[1])
        seen += 1
        if int(parts[0], 16) not in where.get(name, set()):
            wrong.append(f"{name}: module {parts[0]}, kallsyms {where.get(name)}")
    if seen < 2:
        wrong.append(f"no addresses in the module's symbols file:\n{debugfs}")
    return wrong


def shifted_map(system_map: Path, out: Path, delta: int = 0x1000) -> None:
    """The same map with every address moved: a map of 'another build'."""
    rows = []
    for line in system_map.read_text().splitlines():
        addr, kind, name = line.split()
        rows.append(f"{int(addr, 16) + delta:016x} {kind} {name}")
    out.write_text("\n".join(rows) + "\n")


# --- booting -----------------------------------------------------------------


def initramfs(kernel: Kernel, out: Path) -> Path:
    return build_initramfs(kernel, out, MODULES_9P)


def boot(
    kernel: Kernel,
    rundir: Path,
    initramfs: Path,
    plan: dict[str, str],
    *,
    kaslr: bool,
    timeout: float,
    runner: Path | None = None,
    cmdline: Sequence[str] = (),
    self_contained: Sequence[Path] | None = None,
) -> GuestRun:
    """Boot kernel under TCG and run guest/run.sh (or runner) with plan, with
    cmdline added to the kernel's command line; wait for poweroff.

    self_contained: boot without 9p (a cloud kernel), the root in the
    initramfs (self_contained_initramfs) with these paths (the module, the
    case programs) at their own places."""
    guest = boot_guest(
        GuestSpec(
            name=f"{kernel.release} {plan.get('MODE', '')}",
            vmlinuz=kernel.vmlinuz,
            initramfs=initramfs,
            rundir=rundir,
            runner=runner or VM_DIR / "guest" / "run.sh",
            plan=plan,
            files=[VM_DIR / "guest" / "unload_cycles.sh", VM_DIR / "guest" / "microbench.sh"],
            kaslr=kaslr,
            timeout=timeout,
            cmdline=cmdline,
            self_contained=None
            if self_contained is None
            else SelfContained(
                kernel=kernel,
                programs=GUEST_PROGRAMS,
                paths=list(self_contained),
                modules=GUEST_MODULES,
            ),
        )
    )
    return guest.require_finished()


def self_contained_initramfs(kernel: Kernel, out: Path) -> Path:
    return build_initramfs(kernel, out, MODULES_SELF)


def releases_or_error(cloud: bool = False) -> tuple[list[str], str]:
    """(the matrix's kernel releases, or the cloud kernel's; why there are
    none): for a module-scoped fixture that fails, naming why, when empty."""
    try:
        return matrix_releases(cloud), ""
    except HarnessError as err:
        return [], str(err)


def require_ok(step: StepResult, expect_rc: int = 0) -> None:
    """The step ran, exited expect_rc, and its kernel log is clean."""
    assert step.rc is not None, f"{step.step} did not run"
    assert step.rc == expect_rc, step.describe()
    assert not step.bad_dmesg(), f"kernel log of {step.step}:\n" + "\n".join(step.bad_dmesg())
