"""A kernel that enforces module signatures, booted under QEMU TCG.

One boot of the matrix's first kernel with module.sig_enforce=1 on its
command line (tests/vm/guest/signing.sh): the unsigned esca.ko built here
must be refused with the key error and the kernel's log line, and what the
tools say about it must name the cause and the enrollment
(esca_pkg/runtime/signing.py through `python -m`, `esca-pkg doctor`, and
the signature function of esca-dkms's postinst, debian/esca-dkms.postinst).
No libesca suite runs in it: the boot is short, for CI.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import esca_vm as vm
import pytest

pytestmark = pytest.mark.vm

KEY_REJECTED = os.strerror(errno.EKEYREJECTED)  # "Key was rejected by service"


def _reports() -> Path:
    return Path(os.environ.get("ESCA_VM_REPORT_DIR", vm.REPO / "tests" / "_build" / "vm"))


@pytest.fixture(scope="module")
def guest() -> vm.GuestRun:
    try:
        release = vm.matrix_releases()[0]
    except vm.HarnessError as err:
        pytest.fail(f"no kernel to boot: {err}")
    kernel = vm.Kernel(release).check()
    base = _reports() / f"signing-{kernel.release}"
    rundir = base / "run"
    ko, _ = vm.build_module(kernel, rundir / "module")
    postinst = rundir / "esca-dkms.postinst"
    shutil.copy(vm.REPO / "debian" / "esca-dkms.postinst", postinst)
    initramfs = vm.initramfs(kernel, base / "initramfs.cpio")
    return vm.boot(
        kernel,
        rundir,
        initramfs,
        {"MODE": "signing", "KO": str(ko), "POSTINST": str(postinst)},
        kaslr=True,
        timeout=900,
        runner=vm.VM_DIR / "guest" / "signing.sh",
        cmdline=["module.sig_enforce=1"],
    )


def test_kernel_enforces_signatures(guest: vm.GuestRun) -> None:
    assert "module.sig_enforce=1" in (guest.rundir / "cmdline").read_text()
    res = guest.result("sig_enforce")
    assert (res.rc, res.out.strip()) == (0, "Y"), res.describe()


def test_unsigned_module_is_refused(guest: vm.GuestRun) -> None:
    res = guest.result("insmod")
    assert res.rc not in (0, None), res.describe()
    assert KEY_REJECTED in res.out, res.describe()
    assert "Loading of unsigned module is rejected" in res.dmesg, res.describe()


def test_detection_names_the_cause_and_the_steps(guest: vm.GuestRun) -> None:
    res = guest.result("detect")
    assert res.rc == 1, res.describe()  # 1: there is a message
    assert "(module.sig_enforce=1)" in res.out, res.describe()
    assert "mokutil --import /" in res.out, res.describe()
    assert "modprobe esca" in res.out, res.describe()
    # QEMU boots through BIOS here: no MOK can be enrolled, and it says so.
    assert "did not boot through UEFI" in res.out, res.describe()


def test_doctor_reports_the_refusal(guest: vm.GuestRun) -> None:
    res = guest.result("doctor")
    assert res.rc is not None, res.describe()
    line = next((ln for ln in res.out.splitlines() if "module signatures:" in ln), "")
    assert "[FAIL]" in line and "module.sig_enforce=1" in line, res.describe()
    assert "mokutil --import /" in res.out, res.describe()


def test_postinst_says_it_too(guest: vm.GuestRun) -> None:
    res = guest.result("postinst")
    assert res.rc == 0, res.describe()  # 0: it had something to say
    lines = res.out.splitlines()
    assert lines and all(ln.startswith("esca-dkms: ") for ln in lines), res.describe()
    assert "(module.sig_enforce=1)" in lines[0], res.describe()
    assert any("mokutil --import /" in ln for ln in lines), res.describe()


def test_guest_kernel_log_is_clean(guest: vm.GuestRun) -> None:
    assert guest.bad_dmesg() == []
