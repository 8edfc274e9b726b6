"""What this machine has and lacks for building and for running ESCA.

Every check reports ok / warn / fail with the command that fixes it.  `fail`
means something asked for cannot work (a package cannot be built, no ESCA
backend can run); `warn` means a fallback is used or part of the machine is
left out (a kernel without headers is skipped by DKMS).
"""

from __future__ import annotations

import ctypes
import errno
import grp
import os
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from esca_pkg import debbuild, proc, targets
from esca_pkg.context import BuildContext
from esca_pkg.log import EscaError

MODULE = "esca"
DEVICE = Path("/dev/esca")
GROUP = "esca"
SYSTEM_MAP_PLACES = (
    "/lib/modules/{v}/System.map",
    "/boot/System.map-{v}",
    "/usr/lib/debug/boot/System.map-{v}",
)
_NR_IO_URING_SETUP = 425


@dataclass(frozen=True)
class Check:
    area: str  # build, kernel, run
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""


def _kernels() -> list[str]:
    base = Path("/lib/modules")
    found = {p.name for p in base.iterdir() if p.is_dir()} if base.is_dir() else set()
    found.add(os.uname().release)
    return sorted(found)


def real_system_map(version: str) -> str | None:
    """Path of a System.map for version with real symbols (Debian ships a one-line stub)."""
    for pattern in SYSTEM_MAP_PLACES:
        p = Path(pattern.format(v=version))
        try:
            with p.open(errors="replace") as fh:
                head = [fh.readline() for _ in range(3)]
        except OSError:
            continue
        if sum(1 for line in head if len(line.split()) == 3) >= 2:
            return str(p)
    return None


def build_checks(ctx: BuildContext | None) -> list[Check]:
    out = []
    for tool, pkg in (
        ("dpkg-buildpackage", "dpkg-dev"),
        ("dh", "debhelper"),
        ("lintian", "lintian"),
        ("gpg", "gnupg"),
    ):
        have = shutil.which(tool, path=proc.SYSTEM_PATH)
        level = "warn" if tool == "gpg" else "fail"
        out.append(
            Check(
                "build",
                tool,
                "ok" if have else level,
                have
                or "not installed"
                + (" (needed only to sign repositories)" if tool == "gpg" else ""),
                "" if have else f"apt-get install {pkg}",
            )
        )
    if ctx is None:
        out.append(
            Check(
                "build",
                "source tree",
                "warn",
                "not inside an ESCA source tree: build dependencies not checked",
                "run esca-pkg doctor in a clone of the ESCA repository",
            )
        )
        return out
    if not shutil.which("dpkg-checkbuilddeps", path=proc.SYSTEM_PATH):
        return out
    for name in targets.names():
        t = targets.get(name)
        try:
            unmet = debbuild.unmet_build_depends(t.control(ctx))
        except EscaError as e:
            out.append(Check("build", f"{name} build-depends", "fail", str(e), e.hint or ""))
            continue
        if unmet:
            out.append(
                Check(
                    "build",
                    f"{name} build-depends",
                    "fail",
                    f"missing: {unmet}",
                    "apt-get install --no-install-recommends "
                    + " ".join(debbuild.relation_names(unmet)),
                )
            )
        else:
            out.append(Check("build", f"{name} build-depends", "ok", "all installed"))
    return out


def kernel_checks() -> list[Check]:
    out = []
    running = os.uname().release
    dkms = shutil.which("dkms", path=proc.SYSTEM_PATH)
    out.append(
        Check(
            "kernel",
            "dkms",
            "ok" if dkms else "fail",
            dkms or "not installed",
            "" if dkms else "apt-get install dkms",
        )
    )
    status = ""
    if dkms:
        status = proc.run(["dkms", "status", "-m", MODULE], capture=True, check=False).stdout
    any_headers = False
    for v in _kernels():
        tag = " (running)" if v == running else ""
        headers = Path(f"/lib/modules/{v}/build/include").exists()
        any_headers |= headers
        out.append(
            Check(
                "kernel",
                f"{v}{tag} headers",
                "ok" if headers else "warn",
                f"/lib/modules/{v}/build"
                if headers
                else "no headers: DKMS cannot build the module for this kernel",
                "" if headers else f"apt-get install linux-headers-{v}",
            )
        )
        smap = real_system_map(v)
        out.append(
            Check(
                "kernel",
                f"{v}{tag} System.map",
                "ok" if smap else "warn",
                smap
                or "no real System.map (Debian's /boot one is a stub): the "
                "module resolves symbols with a kprobe at load time",
                "" if smap else f"apt-get install linux-image-{v}-dbg",
            )
        )
        if dkms:
            line = next((ln for ln in status.splitlines() if f", {v}," in ln), "")
            installed = line.rstrip().endswith("installed")
            out.append(
                Check(
                    "kernel",
                    f"{v}{tag} esca module",
                    "ok" if installed else "warn",
                    line.strip() or "not built by DKMS",
                    ""
                    if installed
                    else (
                        f"dkms autoinstall -k {v}"
                        if headers and "esca" in status
                        else "apt-get install esca-dkms"
                    ),
                )
            )
    if not any_headers:
        out.append(
            Check(
                "kernel",
                "headers",
                "fail",
                "no installed kernel has headers: the module cannot be built",
                "apt-get install linux-headers-amd64",
            )
        )
    return out


def _io_uring_usable() -> tuple[bool, str]:
    disabled = Path("/proc/sys/kernel/io_uring_disabled")
    note = ""
    if disabled.exists():
        note = f" (kernel.io_uring_disabled={disabled.read_text().strip()})"
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = libc.syscall(_NR_IO_URING_SETUP, 1, params)
    if fd >= 0:
        os.close(fd)
        return True, "io_uring_setup works" + note
    err = ctypes.get_errno()
    return False, f"io_uring_setup fails: {errno.errorcode.get(err, err)}" + note


def run_checks() -> list[Check]:
    out = []
    modules_ok = Path("/proc/modules").exists()
    loaded = Path(f"/sys/module/{MODULE}").is_dir()
    if loaded:
        out.append(Check("run", "module loaded", "ok", f"/sys/module/{MODULE}"))
    elif not modules_ok:
        out.append(
            Check(
                "run",
                "module loaded",
                "warn",
                "this kernel cannot load modules (no /proc/modules): the module "
                "backend is unavailable, io_uring is used",
                "boot a kernel with module support",
            )
        )
    else:
        out.append(Check("run", "module loaded", "warn", "not loaded", f"modprobe {MODULE}"))

    if DEVICE.exists():
        st = DEVICE.stat()
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        mode = stat.S_IMODE(st.st_mode)
        usable = stat.S_ISCHR(st.st_mode) and os.access(DEVICE, os.R_OK | os.W_OK)
        detail = (
            f"{'char device' if stat.S_ISCHR(st.st_mode) else 'not a char device'}, "
            f"group {group}, mode {mode:04o}"
        )
        right = group == GROUP and mode == 0o660
        out.append(
            Check(
                "run",
                str(DEVICE),
                "ok" if usable and right else "warn",
                detail + ("" if usable else ": this user cannot open it"),
                ""
                if right
                else f"udevadm trigger --sysname-match={MODULE} "
                "(the udev rule of esca-dkms sets group esca, mode 0660)",
            )
        )
    else:
        out.append(
            Check("run", str(DEVICE), "warn", "absent (module not loaded)", f"modprobe {MODULE}")
        )
    try:
        members = grp.getgrnam(GROUP).gr_mem
        out.append(
            Check(
                "run",
                f"group {GROUP}",
                "ok",
                "members: " + (", ".join(members) or "none (root only)"),
            )
        )
    except KeyError:
        out.append(
            Check(
                "run",
                f"group {GROUP}",
                "warn",
                "missing",
                "apt-get install esca-dkms (its postinst creates it)",
            )
        )

    uring, detail = _io_uring_usable()
    out.append(
        Check(
            "run",
            "io_uring",
            "ok" if uring else "warn",
            detail,
            "" if uring else "sysctl kernel.io_uring_disabled=0",
        )
    )
    lib = proc.run(["ldconfig", "-p"], capture=True, check=False).stdout
    has_lib = "libesca.so.0 " in lib
    out.append(
        Check(
            "run",
            "libesca.so.0",
            "ok" if has_lib else "warn",
            "resolves through ldconfig" if has_lib else "not installed",
            "" if has_lib else "apt-get install libesca0",
        )
    )
    if not ((loaded and DEVICE.exists()) or uring):
        out.append(
            Check(
                "run",
                "backend",
                "fail",
                "neither the module nor io_uring is usable: ESCA can only pass "
                "calls through (backend off)",
                f"modprobe {MODULE}, or allow io_uring: sysctl kernel.io_uring_disabled=0",
            )
        )
    else:
        which = "module" if loaded and DEVICE.exists() else "uring"
        out.append(Check("run", "backend", "ok", f"ESCA_BACKEND=auto selects {which}"))
    return out


def all_checks(ctx: BuildContext | None, areas: set[str]) -> list[Check]:
    result: list[Check] = []
    if "build" in areas:
        result += build_checks(ctx)
    if "kernel" in areas:
        result += kernel_checks()
    if "run" in areas:
        result += run_checks()
    return result


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
