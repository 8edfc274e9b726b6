"""Which libesca backend can run here: the checks behind `esca-run --backend`.

module: the esca kernel module is loaded (`--backend module` loads it when
run as root; a kernel that refuses its signature is named, with the steps:
signing.py) and /dev/esca can be opened for reading and writing by the user
the server runs as; uring: io_uring is
allowed (kernel.io_uring_disabled, and a real io_uring_setup probe); off:
always.  auto picks module, else uring, else off, as libesca does.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import grp
import os
import platform
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from esca_pkg.runtime import signing

DEVICE = Path("/dev/esca")
MODULE_DIR = Path("/sys/module/esca")
IO_URING_DISABLED = Path("/proc/sys/kernel/io_uring_disabled")
IO_URING_GROUP = Path("/proc/sys/kernel/io_uring_group")
_NR_IO_URING_SETUP = {"x86_64": 425, "aarch64": 425}


class Backend(enum.Enum):
    AUTO = "auto"
    MODULE = "module"
    URING = "uring"
    OFF = "off"


@dataclass(frozen=True)
class Check:
    backend: Backend
    usable: bool
    reason: str  # why (not) usable, one line
    fix: str = ""


def check_module(run_as: str | None = None, load: bool = False) -> Check:
    """load: try modprobe esca (as root) when the module is not loaded."""
    error = ""
    if not MODULE_DIR.exists() and load:
        _, error = signing.load()
    if not MODULE_DIR.exists():
        refused = signing.message(signing.probe(), error)
        if refused:
            head, _, steps = refused.partition("\n")
            return Check(
                Backend.MODULE,
                False,
                "the esca kernel module is not loaded: " + head,
                steps,
            )
        return Check(
            Backend.MODULE,
            False,
            "the esca kernel module is not loaded",
            "apt install ./esca-dkms_*.deb (builds it for this kernel), then modprobe esca",
        )
    try:
        st = DEVICE.stat()
    except FileNotFoundError:
        return Check(
            Backend.MODULE,
            False,
            f"the module is loaded but {DEVICE} does not exist",
            "udevadm trigger --subsystem-match=misc, or reload the module",
        )
    if not stat.S_ISCHR(st.st_mode):
        return Check(
            Backend.MODULE,
            False,
            f"{DEVICE} is not a character device",
            f"remove {DEVICE} and reload the module",
        )
    user = run_as
    if user is not None and not _may_read_write(st, user):
        return Check(
            Backend.MODULE,
            False,
            f"{DEVICE} (mode {stat.S_IMODE(st.st_mode):o}) is not readable and writable "
            f"by {user}, the user the server's workers run as",
            f"add {user} to the device's group ({group_name(st.st_gid)}): "
            f"adduser {user} {group_name(st.st_gid)}",
        )
    if user is None and not os.access(DEVICE, os.R_OK | os.W_OK):
        return Check(
            Backend.MODULE,
            False,
            f"{DEVICE} is not readable and writable by you",
            f"add yourself to group {group_name(st.st_gid)}",
        )
    return Check(Backend.MODULE, True, f"module loaded, {DEVICE} usable")


def check_uring(run_as: str | None = None) -> Check:
    fix = "sysctl kernel.io_uring_disabled=0 (and allow io_uring_setup in any seccomp filter)"
    try:
        disabled = int(IO_URING_DISABLED.read_text().strip())
    except (OSError, ValueError):
        disabled = 0  # kernels before 6.6 have no such switch
    if disabled == 2:
        return Check(Backend.URING, False, "io_uring is disabled (kernel.io_uring_disabled=2)", fix)
    if disabled == 1:
        try:
            gid = int(IO_URING_GROUP.read_text().strip())
        except (OSError, ValueError):
            gid = -1
        if run_as is not None and run_as != "root" and not in_group(run_as, gid):
            return Check(
                Backend.URING,
                False,
                f"io_uring is limited to group {group_name(gid)} "
                f"(kernel.io_uring_disabled=1) and {run_as} is not in it",
                f"adduser {run_as} {group_name(gid)}, or {fix}",
            )
    err = probe_io_uring()
    if err:
        return Check(Backend.URING, False, f"io_uring_setup fails here: {os.strerror(err)}", fix)
    return Check(Backend.URING, True, "io_uring allowed")


def probe_io_uring() -> int:
    """0 when io_uring_setup(1, ...) works for this process, else its errno.

    The one io_uring probe of the tools (esca-run, esca-bench, doctor)."""
    nr = _NR_IO_URING_SETUP.get(platform.machine())
    if nr is None:
        return errno.ENOSYS
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_uint(1), params)
    if fd < 0:
        return ctypes.get_errno()
    os.close(fd)
    return 0


def choose(
    wanted: Backend, run_as: str | None = None, load: bool = False
) -> tuple[Backend, list[Check]]:
    """The backend that will run, and the checks made (for the message).
    load: with --backend module, try to load the module (check_module)."""
    if wanted is Backend.OFF:
        return Backend.OFF, []
    if wanted is Backend.MODULE:
        c = check_module(run_as, load=load)
        return (Backend.MODULE if c.usable else Backend.OFF), [c]
    if wanted is Backend.URING:
        c = check_uring(run_as)
        return (Backend.URING if c.usable else Backend.OFF), [c]
    checks = [check_module(run_as)]
    if checks[0].usable:
        return Backend.MODULE, checks
    checks.append(check_uring(run_as))
    return (Backend.URING if checks[1].usable else Backend.OFF), checks


def _may_read_write(st: os.stat_result, user: str) -> bool:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return False
    if pw.pw_uid == 0:
        return True
    mode = st.st_mode
    if pw.pw_uid == st.st_uid:
        return mode & 0o600 == 0o600
    if in_group(user, st.st_gid):
        return mode & 0o060 == 0o060
    return mode & 0o006 == 0o006


def in_group(user: str, gid: int) -> bool:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return False
    if pw.pw_gid == gid:
        return True
    try:
        return user in grp.getgrgid(gid).gr_mem
    except KeyError:
        return False


def group_name(gid: int) -> str:
    """The name of a group, or its number when it has none."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def usable(run_as: str | None = None) -> dict[Backend, Check]:
    """The check of each ESCA backend (module, uring) for processes running as run_as."""
    return {Backend.MODULE: check_module(run_as), Backend.URING: check_uring(run_as)}
