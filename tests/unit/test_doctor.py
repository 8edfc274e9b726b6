"""doctor's decisions on a faked machine."""

from __future__ import annotations

import dataclasses
import os
import stat

from esca_pkg.packaging import doctor
from esca_pkg.runtime import signing
from esca_pkg.runtime.backends import Backend, Check

NOT_ENFORCED = signing.State(
    enforced="",
    efi=True,
    module="/lib/modules/6.18.0-custom/updates/dkms/esca.ko",
    signer="DKMS module signing key",
    key="/var/lib/dkms/mok.pub",
    key_exists=True,
    mokutil=True,
    enrollment=signing.Enrollment.NOT_ENROLLED,
    kernel="6.18.0-custom",
)


class FakeSystem(doctor.System):
    def __init__(self, **kw: object) -> None:
        self.kernels_ = ["6.1.0-28-amd64", "6.18.0-custom"]
        self.running = "6.18.0-custom"
        self.headers = {"6.1.0-28-amd64"}
        self.packages = {"linux-headers-6.1.0-28-amd64", "linux-image-6.1.0-28-amd64-dbg"}
        self.tools = {
            "dkms",
            "dpkg-buildpackage",
            "dh",
            "lintian",
            "gpg",
            "apt-cache",
            "apt-ftparchive",
        }
        self.dkms = "esca/0.1.0, 6.1.0-28-amd64, x86_64: installed\n"
        self.loaded = False
        self.dev: os.stat_result | None = None
        self.members: list[str] | None = ["www-data"]
        self.uring = Check(Backend.URING, True, "io_uring allowed")
        self.sig = NOT_ENFORCED
        self.images = {"6.1.0-28-amd64"}
        self.bypass: str | None = "N"
        self.__dict__.update(kw)

    def which(self, tool: str) -> str | None:
        return f"/usr/bin/{tool}" if tool in self.tools else None

    def running_kernel(self) -> str:
        return self.running

    def kernels(self) -> list[str]:
        return self.kernels_

    def has_headers(self, version: str) -> bool:
        return version in self.headers

    def system_map(self, version: str) -> str | None:
        return None

    def kernel_image(self, version: str) -> str | None:
        return f"/boot/vmlinuz-{version}" if version in self.images else None

    def ibt(self, version: str) -> bool:
        return version.startswith("6.12")

    def debian_package(self, name: str) -> bool:
        return name in self.packages

    def dkms_status(self) -> str:
        return self.dkms

    def can_load_modules(self) -> bool:
        return True

    def module_loaded(self) -> bool:
        return self.loaded

    def trace_bypass(self) -> str | None:
        return self.bypass

    def device(self) -> os.stat_result | None:
        return self.dev

    def device_usable(self) -> bool:
        return True

    def group_members(self, name: str) -> list[str] | None:
        return self.members

    def io_uring(self) -> Check:
        return self.uring

    def signing(self) -> signing.State:
        return self.sig

    def libesca_installed(self) -> bool:
        return True


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_a_kernel_not_from_debian_gets_no_install_hint() -> None:
    checks = by_name(doctor.kernel_checks(FakeSystem()))
    custom = checks["6.18.0-custom (running) headers"]
    assert custom.status == "warn"
    assert "no Debian headers package for this kernel" in custom.fix
    assert "apt-get install" not in custom.fix
    symbols = checks["6.18.0-custom (running) symbols"]
    assert symbols.status == "warn" and "apt-get" not in symbols.fix
    assert checks["6.18.0-custom (running) esca module"].fix.startswith("install this kernel's")


def test_a_debian_kernel_without_headers_gets_its_package() -> None:
    system = FakeSystem(headers=set(), dkms="")
    checks = by_name(doctor.kernel_checks(system))
    assert checks["6.1.0-28-amd64 headers"].fix == "apt-get install linux-headers-6.1.0-28-amd64"
    assert checks["6.1.0-28-amd64 symbols"].status == "ok"
    assert "/boot/vmlinuz-6.1.0-28-amd64" in checks["6.1.0-28-amd64 symbols"].detail
    assert checks["headers"].status == "fail"  # no kernel at all has headers


def test_symbols_of_an_ibt_kernel_without_image() -> None:
    """No image: the build fails for an IBT kernel (no kprobe path), and the
    check says so, naming the image package."""
    system = FakeSystem(
        kernels_=["6.12.118+deb13-amd64"],
        running="6.12.118+deb13-amd64",
        images=set(),
        packages={"linux-image-6.12.118+deb13-amd64"},
    )
    check = by_name(doctor.kernel_checks(system))["6.12.118+deb13-amd64 (running) symbols"]
    assert check.status == "fail" and "IBT" in check.detail
    assert check.fix == "apt-get install linux-image-6.12.118+deb13-amd64"
    system.images = {"6.12.118+deb13-amd64"}
    check = by_name(doctor.kernel_checks(system))["6.12.118+deb13-amd64 (running) symbols"]
    assert check.status == "ok" and "image /boot/vmlinuz-6.12.118+deb13-amd64" in check.detail


def test_dkms_state_per_kernel() -> None:
    checks = by_name(doctor.kernel_checks(FakeSystem()))
    assert checks["6.1.0-28-amd64 esca module"].status == "ok"
    missing = by_name(doctor.kernel_checks(FakeSystem(tools={"apt-cache"})))
    assert missing["dkms"].status == "fail" and missing["dkms"].fix == "apt-get install dkms"


def test_backend_decision() -> None:
    device = os.stat_result((stat.S_IFCHR | 0o660, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    loaded = by_name(doctor.run_checks(FakeSystem(loaded=True, dev=device)))
    assert loaded["backend"].detail == "ESCA_BACKEND=auto selects module"
    uring = by_name(doctor.run_checks(FakeSystem()))
    assert (uring["backend"].status, uring["backend"].detail) == (
        "ok",
        "ESCA_BACKEND=auto selects uring",
    )
    blocked = Check(
        Backend.URING, False, "io_uring is disabled", "sysctl kernel.io_uring_disabled=0"
    )
    none = by_name(doctor.run_checks(FakeSystem(uring=blocked)))
    assert none["backend"].status == "fail" and "modprobe esca" in none["backend"].fix
    assert none["io_uring"].fix == "sysctl kernel.io_uring_disabled=0"
    nogroup = by_name(doctor.run_checks(FakeSystem(members=None)))
    assert nogroup["group esca"].status == "warn" and "esca-dkms" in nogroup["group esca"].fix


def test_build_tools_and_no_source_tree() -> None:
    checks = by_name(doctor.build_checks(None, FakeSystem(tools={"dh", "gpg"})))
    assert checks["dpkg-buildpackage"].status == "fail"
    assert checks["lintian"].fix == "apt-get install lintian"
    assert checks["apt-ftparchive"].status == "warn"
    assert checks["apt-ftparchive"].fix == "apt-get install apt-utils"
    assert checks["source tree"].status == "warn"


def test_module_signatures() -> None:
    free = by_name(doctor.run_checks(FakeSystem()))["module signatures"]
    assert (free.status, free.detail) == ("ok", "not enforced by this kernel")
    secure = dataclasses.replace(NOT_ENFORCED, enforced="Secure Boot")
    refused = by_name(doctor.run_checks(FakeSystem(sig=secure)))["module signatures"]
    assert refused.status == "fail"
    assert "(Secure Boot)" in refused.detail and "not enrolled" in refused.fix
    assert "mokutil --import /var/lib/dkms/mok.pub" in refused.fix
    assert "Enroll MOK" in refused.fix and "modprobe esca" in refused.fix
    # Loaded already (accepted once): the next load would be refused.
    loaded = by_name(doctor.run_checks(FakeSystem(sig=secure, loaded=True)))
    assert loaded["module signatures"].status == "warn"
    nomok = dataclasses.replace(secure, mokutil=False)
    check = by_name(doctor.run_checks(FakeSystem(sig=nomok)))["module signatures"]
    assert "apt-get install mokutil" in check.fix
    unsigned = dataclasses.replace(secure, signer="")
    check = by_name(doctor.run_checks(FakeSystem(sig=unsigned)))["module signatures"]
    assert "is not signed" in check.fix and "--reinstall esca-dkms" in check.fix
    enrolled = dataclasses.replace(secure, enrollment=signing.Enrollment.ENROLLED)
    check = by_name(doctor.run_checks(FakeSystem(sig=enrolled)))["module signatures"]
    assert check.status == "ok" and "is enrolled" in check.detail


def test_syscall_monitors() -> None:
    assert "syscall monitors" not in by_name(doctor.run_checks(FakeSystem()))
    default = by_name(doctor.run_checks(FakeSystem(loaded=True)))["syscall monitors"]
    assert default.status == "ok" and "refuses its batches" in default.detail
    bypass = by_name(doctor.run_checks(FakeSystem(loaded=True, bypass="Y")))
    check = bypass["syscall monitors"]
    assert check.status == "warn" and "trace_bypass=Y" in check.detail
    assert "echo N > /sys/module/esca/parameters/trace_bypass" in check.fix
    old = by_name(doctor.run_checks(FakeSystem(loaded=True, bypass=None)))["syscall monitors"]
    assert old.status == "warn" and "--reinstall esca-dkms" in old.fix
