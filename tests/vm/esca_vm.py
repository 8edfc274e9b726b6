"""The esca module's side of the QEMU suite: building the module and the
case programs, System.maps, and one boot of tests/vm/guest/run.sh through the
guest harness (tests/qemu_guest.py: kernels, initramfs, QEMU).

The guest's root is this machine's root (inside scripts/release-root, that
release's root), shared read-only over 9p, with the repository and a run
directory read-write; the guest writes its results (exit code, output and
kernel log of each step) into the run directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from libesca_support import compile_c
from qemu_guest import (
    BAD_DMESG,
    MODULES_9P,
    REPO,
    GuestRun,
    GuestSpec,
    HarnessError,
    Kernel,
    StepResult,
    build_initramfs,
    matrix_releases,
)
from qemu_guest import boot as boot_guest

from esca_pkg.proc import run

__all__ = ["BAD_DMESG", "GuestRun", "HarnessError", "Kernel", "StepResult", "matrix_releases"]

VM_DIR = Path(__file__).resolve().parent
CASES_DIR = VM_DIR / "cases"
DKMS_DIR = REPO / "dkms"

# Case programs that are helpers, not cases.
HELPERS = {"holder"}


def case_names() -> list[str]:
    return sorted(p.stem for p in CASES_DIR.glob("*.c") if p.stem not in HELPERS)


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
) -> GuestRun:
    """Boot kernel under TCG and run guest/run.sh with plan; wait for poweroff."""
    guest = boot_guest(
        GuestSpec(
            name=f"{kernel.release} {plan.get('MODE', '')}",
            vmlinuz=kernel.vmlinuz,
            initramfs=initramfs,
            rundir=rundir,
            runner=VM_DIR / "guest" / "run.sh",
            plan=plan,
            files=[VM_DIR / "guest" / "unload_cycles.sh", VM_DIR / "guest" / "microbench.sh"],
            kaslr=kaslr,
            timeout=timeout,
        )
    )
    return guest.require_finished()
