"""What this machine has and lacks for building and for running ESCA.

Every check reports ok / warn / fail with the command that fixes it.  `fail`
means something asked for cannot work (a package cannot be built, no ESCA
backend can run); `warn` means a fallback is used or part of the machine is
left out (a kernel without headers is skipped by DKMS).  The checks decide
from what a System reports, so that the decisions can be tested with a
faked machine (tests/unit/test_doctor.py).
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from esca_pkg import proc
from esca_pkg.log import EscaError
from esca_pkg.packaging import debbuild, targets
from esca_pkg.packaging.context import BuildContext
from esca_pkg.runtime import backends, signing

MODULE = "esca"
DEVICE = Path("/dev/esca")
GROUP = "esca"
# Where the module's build (dkms/scripts/esca-symbols.sh) looks, in order.
SYSTEM_MAP_PLACES = (
    "/lib/modules/{v}/System.map",
    "/boot/System.map-{v}",
    "/usr/lib/debug/boot/System.map-{v}",
)
IMAGE_PLACES = ("/boot/vmlinuz-{v}", "/usr/lib/modules/{v}/vmlinuz", "/lib/modules/{v}/vmlinuz")


@dataclass(frozen=True)
class Check:
    area: str  # build, kernel, run
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""


class System:
    """This machine, as the checks see it."""

    def which(self, tool: str) -> str | None:
        return shutil.which(tool, path=proc.SYSTEM_PATH)

    def running_kernel(self) -> str:
        return os.uname().release

    def kernels(self) -> list[str]:
        base = Path("/lib/modules")
        found = {p.name for p in base.iterdir() if p.is_dir()} if base.is_dir() else set()
        found.add(self.running_kernel())
        return sorted(found)

    def has_headers(self, version: str) -> bool:
        return Path(f"/lib/modules/{version}/build/include").exists()

    def system_map(self, version: str) -> str | None:
        """Path of a System.map for version with real symbols (Debian ships a stub)."""
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

    def kernel_image(self, version: str) -> str | None:
        """The kernel's image, whose kallsyms the module's build reads."""
        for pattern in IMAGE_PLACES:
            p = Path(pattern.format(v=version))
            if os.access(p, os.R_OK):
                return str(p)
        return None

    def ibt(self, version: str) -> bool:
        """Whether the kernel is built with CONFIG_X86_KERNEL_IBT."""
        try:
            config = Path(f"/boot/config-{version}").read_text(errors="replace")
        except OSError:
            return False
        return "\nCONFIG_X86_KERNEL_IBT=y\n" in config

    def debian_package(self, name: str) -> bool:
        """Whether apt knows a package of that name (in the machine's lists)."""
        if self.which("apt-cache") is None:
            return False
        res = proc.run(["apt-cache", "show", "--no-all-versions", name], capture=True, check=False)
        return res.returncode == 0 and bool(res.stdout.strip())

    def dkms_status(self) -> str:
        return proc.run(["dkms", "status", "-m", MODULE], capture=True, check=False).stdout

    def can_load_modules(self) -> bool:
        return Path("/proc/modules").exists()

    def module_loaded(self) -> bool:
        return Path(f"/sys/module/{MODULE}").is_dir()

    def trace_bypass(self) -> str | None:
        """The loaded module's trace_bypass (Y/N), None without it."""
        try:
            return Path(f"/sys/module/{MODULE}/parameters/trace_bypass").read_text().strip()
        except OSError:
            return None

    def device(self) -> os.stat_result | None:
        try:
            return DEVICE.stat()
        except OSError:
            return None

    def device_usable(self) -> bool:
        return os.access(DEVICE, os.R_OK | os.W_OK)

    def group_members(self, name: str) -> list[str] | None:
        try:
            return list(grp.getgrnam(name).gr_mem)
        except KeyError:
            return None

    def signing(self) -> signing.State:
        return signing.probe()

    def io_uring(self) -> backends.Check:
        return backends.check_uring()

    def libesca_installed(self) -> bool:
        return "libesca.so.0 " in proc.run(["ldconfig", "-p"], capture=True, check=False).stdout


def build_checks(ctx: BuildContext | None, system: System) -> list[Check]:
    out = []
    for tool, pkg in (
        ("dpkg-buildpackage", "dpkg-dev"),
        ("dh", "debhelper"),
        ("lintian", "lintian"),
        ("gpg", "gnupg"),
        ("apt-ftparchive", "apt-utils"),
    ):
        have = system.which(tool)
        only = {"gpg": "to sign repositories", "apt-ftparchive": "by esca-pkg repo"}
        level = "warn" if tool in only else "fail"
        note = f" (needed only {only[tool]})" if tool in only else ""
        out.append(
            Check(
                "build",
                tool,
                "ok" if have else level,
                have or "not installed" + note,
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
    if not system.which("dpkg-checkbuilddeps"):
        return out
    found = targets.available(ctx.project)
    for name in targets.build_order(found.values()):
        try:
            unmet = debbuild.unmet_build_depends(found[name].control(ctx))
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


def headers_fix(system: System, version: str) -> str:
    """How to get the headers of a kernel: its Debian package when apt knows one."""
    package = f"linux-headers-{version}"
    if system.debian_package(package):
        return f"apt-get install {package}"
    return (
        "no Debian headers package for this kernel (not a Debian kernel, or apt-get update "
        "is needed): install the headers its builder provides under "
        f"/lib/modules/{version}/build"
    )


def symbols_check(system: System, v: str, tag: str) -> Check:
    """Where the module's build takes the kernel's symbols from: a real
    System.map, else the kernel's image (Debian's case), else nothing — the
    kprobe path at load time, which a kernel built with IBT cannot use."""
    name = f"{v}{tag} symbols"
    smap = system.system_map(v)
    if smap:
        return Check("kernel", name, "ok", f"from the System.map {smap}")
    image = system.kernel_image(v)
    if image:
        return Check("kernel", name, "ok", f"from the kernel's image {image} (read at build time)")
    pkg = f"linux-image-{v}"
    fix = (
        f"apt-get install {pkg}"
        if system.debian_package(pkg)
        else "make the kernel's image readable in /boot, or build with ESCA_SYSTEM_MAP=<System.map>"
    )
    if system.ibt(v):
        return Check(
            "kernel",
            name,
            "fail",
            "no System.map and no image: the build refuses this IBT kernel "
            "(its kprobe path cannot work there)",
            fix,
        )
    return Check(
        "kernel",
        name,
        "warn",
        "no System.map and no image: the module finds symbols through a kprobe at load time",
        fix,
    )


def kernel_checks(system: System) -> list[Check]:
    out = []
    running = system.running_kernel()
    dkms = system.which("dkms")
    out.append(
        Check(
            "kernel",
            "dkms",
            "ok" if dkms else "fail",
            dkms or "not installed",
            "" if dkms else "apt-get install dkms",
        )
    )
    status = system.dkms_status() if dkms else ""
    any_headers = False
    for v in system.kernels():
        tag = " (running)" if v == running else ""
        headers = system.has_headers(v)
        any_headers |= headers
        out.append(
            Check(
                "kernel",
                f"{v}{tag} headers",
                "ok" if headers else "warn",
                f"/lib/modules/{v}/build"
                if headers
                else "no headers: DKMS cannot build the module for this kernel",
                "" if headers else headers_fix(system, v),
            )
        )
        out.append(symbols_check(system, v, tag))
        if dkms:
            line = next((ln for ln in status.splitlines() if f", {v}," in ln), "")
            installed = line.rstrip().endswith("installed")
            if installed:
                fix = ""
            elif not headers:
                fix = "install this kernel's headers first (see above)"
            elif "esca" in status:
                fix = f"dkms autoinstall -k {v}"
            else:
                fix = "apt-get install esca-dkms"
            out.append(
                Check(
                    "kernel",
                    f"{v}{tag} esca module",
                    "ok" if installed else "warn",
                    line.strip() or "not built by DKMS",
                    fix,
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


def run_checks(system: System) -> list[Check]:
    out = []
    loaded = system.module_loaded()
    if loaded:
        out.append(Check("run", "module loaded", "ok", f"/sys/module/{MODULE}"))
    elif not system.can_load_modules():
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

    out.append(signature_check(system.signing(), loaded))
    if loaded:
        out.append(monitors_check(system.trace_bypass()))

    st = system.device()
    if st is not None:
        group = backends.group_name(st.st_gid)
        mode = stat.S_IMODE(st.st_mode)
        usable = stat.S_ISCHR(st.st_mode) and system.device_usable()
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
    members = system.group_members(GROUP)
    if members is None:
        out.append(
            Check(
                "run",
                f"group {GROUP}",
                "warn",
                "missing",
                "apt-get install esca-dkms (its postinst creates it)",
            )
        )
    else:
        detail = "members: " + (", ".join(members) or "none (root only)")
        out.append(Check("run", f"group {GROUP}", "ok", detail))

    uring = system.io_uring()
    out.append(Check("run", "io_uring", "ok" if uring.usable else "warn", uring.reason, uring.fix))
    has_lib = system.libesca_installed()
    out.append(
        Check(
            "run",
            "libesca.so.0",
            "ok" if has_lib else "warn",
            "resolves through ldconfig" if has_lib else "not installed",
            "" if has_lib else "apt-get install libesca0",
        )
    )
    module = loaded and st is not None
    if not (module or uring.usable):
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
        which = "module" if module else "uring"
        out.append(Check("run", "backend", "ok", f"ESCA_BACKEND=auto selects {which}"))
    return out


def monitors_check(bypass: str | None) -> Check:
    """What a system-call monitor sees of ESCA (docs/module.md, Security model)."""
    name = "syscall monitors"
    if bypass == "Y":
        return Check(
            "run",
            name,
            "warn",
            "trace_bypass=Y: batched calls run even under raw_syscalls/syscalls "
            "tracepoints; monitors on them (perf trace, Falco, Tetragon) do not see "
            "them, only esca:esca_call does",
            f"echo N > /sys/module/{MODULE}/parameters/trace_bypass, unless your "
            "monitoring watches esca:esca_call",
        )
    if bypass is None:
        return Check(
            "run",
            name,
            "warn",
            "this module has no trace_bypass: its batches bypass syscall tracepoints",
            "apt-get install --reinstall esca-dkms (a module from this release)",
        )
    return Check(
        "run",
        name,
        "ok",
        "while a raw_syscalls/syscalls tracepoint is enabled (a monitor) the module "
        "refuses its batches: the monitor sees every call, ESCA saves nothing then",
    )


def signature_check(state: signing.State, loaded: bool) -> Check:
    """Whether this kernel would refuse esca.ko's signature (signing.py)."""
    name = "module signatures"
    if not state.enforced:
        return Check("run", name, "ok", "not enforced by this kernel")
    text = signing.message(state)
    if not text:
        return Check(
            "run",
            name,
            "ok",
            f"enforced ({state.enforced}); esca.ko is signed by {state.signer}, "
            f"whose key {state.key} is enrolled",
        )
    lines = text.splitlines()
    return Check(
        "run",
        name,
        # A loaded module was accepted: the next load (a rebuild, a boot) is refused.
        "warn" if loaded else "fail",
        lines[0],
        "\n".join(lines[1:]),  # why it is refused, then the steps
    )


def all_checks(ctx: BuildContext | None, areas: set[str], system: System) -> list[Check]:
    result: list[Check] = []
    if "build" in areas:
        result += build_checks(ctx, system)
    if "kernel" in areas:
        result += kernel_checks(system)
    if "run" in areas:
        result += run_checks(system)
    return result


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
