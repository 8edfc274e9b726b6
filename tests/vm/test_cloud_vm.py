"""The esca module in Debian's cloud kernels (linux-image-cloud-amd64 of this
release: scripts/kernels --cloud, found through apt), booted under QEMU TCG.

A cloud kernel has no 9p (`# CONFIG_NET_9P is not set`), so its guest is
self-contained (tests/qemu_guest.py `SelfContained`): the initramfs carries
the root (busybox, bash, kmod, mkfs.ext4, mount, the module, the case
programs, with their libraries) and the run directory comes back as a tar
archive on a raw virtio disk.  One boot, KASLR on, guest/cloud.sh:
  the module built as DKMS builds it (its symbols from the kernel's image),
  loaded with symbols=map (the build-time symbols only, the kprobe path
  switched off); /sys/kernel/debug/esca/symbols, whose addresses must equal
  the guest's /proc/kallsyms; every case program of tests/vm/cases; rmmod.
Each step's kernel log, and the whole boot's, must be free of WARN, BUG,
Oops and protection faults.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import esca_vm as vm
import pytest

pytestmark = pytest.mark.vm


RELEASES, CLOUD_ERROR = vm.releases_or_error(cloud=True)
PARAMS: list[str | None] = [*RELEASES] if RELEASES else [None]
CASES = vm.case_names()


@dataclasses.dataclass
class CloudRun:
    kernel: vm.Kernel
    build_log: str
    guest: vm.GuestRun
    seconds: dict[str, float]
    #: a second, short boot without KASLR: load, symbols, rmmod
    nokaslr: vm.GuestRun | None = None


def _run_kernel(release: str, base: Path) -> CloudRun:
    kernel = vm.Kernel(release).check()
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    # The build's default symbol resolution for this kernel, as under DKMS.
    ko, build_log = vm.build_module(kernel, base / "module")
    bins = vm.build_cases(base / "bin")
    initramfs = vm.self_contained_initramfs(kernel, base / "initramfs.cpio")
    seconds["build module, cases and initramfs"] = round(time.monotonic() - t0, 1)
    plan = {"KO": str(ko), "CASES": " ".join(CASES), "CASEBIN": str(bins)}
    runner = vm.VM_DIR / "guest" / "cloud.sh"
    guest = vm.boot(
        kernel,
        base / "run",
        initramfs,
        plan,
        kaslr=True,
        timeout=600,
        runner=runner,
        self_contained=[ko, bins],
    )
    seconds["boot (kaslr)"] = round(guest.seconds, 1)
    nokaslr = vm.boot(
        kernel,
        base / "run-nokaslr",
        initramfs,
        {**plan, "CASES": ""},
        kaslr=False,
        timeout=300,
        runner=runner,
        self_contained=[ko, bins],
    )
    seconds["boot (nokaslr)"] = round(nokaslr.seconds, 1)
    runs = CloudRun(kernel, build_log, guest, seconds, nokaslr)
    _report_timings(runs)
    return runs


def _report_timings(runs: CloudRun) -> None:
    reports = Path(os.environ.get("ESCA_VM_REPORT_DIR", vm.REPO / "tests" / "_build" / "vm"))
    reports.mkdir(parents=True, exist_ok=True)
    steps = {
        rc.stem: runs.guest.result(rc.stem).seconds
        for rc in sorted((runs.guest.rundir / "results").glob("*.rc"))
    }
    cases = [runs.guest.result(f"case-{c}") for c in CASES]
    symbols = runs.guest.result("symbols").out.splitlines()
    report = {
        "kernel": runs.kernel.release,
        "host": runs.seconds,
        "guest steps": steps,
        "loaded with symbols=map": runs.guest.result("load").rc == 0,
        "symbols": [ln for ln in symbols if ":" in ln],
        "cases passed": f"{sum(r.rc == 0 for r in cases)}/{len(cases)}",
    }
    (reports / f"timings-{runs.kernel.release}.json").write_text(
        json.dumps(report, indent=1) + "\n"
    )


@pytest.fixture(
    scope="module",
    params=PARAMS,
    ids=[f"linux-{vm.Kernel(r).series}-cloud" for r in RELEASES] or ["no-cloud-kernel"],
)
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CloudRun:
    release = request.param
    if release is None:
        pytest.fail(f"no cloud kernel to test: {CLOUD_ERROR}", pytrace=False)
    try:
        return _run_kernel(release, tmp_path_factory.mktemp(f"cloud-{release}"))
    except vm.HarnessError as err:
        pytest.fail(f"linux {release}: {err}", pytrace=False)


_ok = vm.require_ok


def test_build_warning_free(cloud: CloudRun) -> None:
    warnings = [line for line in cloud.build_log.splitlines() if "warning:" in line]
    assert not warnings, f"build for {cloud.kernel.release}: {warnings}"


def test_build_reads_the_image(cloud: CloudRun) -> None:
    release = cloud.kernel.release
    assert f"symbols of {release} from the image /boot/vmlinuz-{release}" in cloud.build_log
    assert "exports cross-checked" in cloud.build_log


def test_guest_is_the_cloud_kernel_under_kaslr(cloud: CloudRun) -> None:
    rundir = cloud.guest.rundir
    assert (rundir / "uname").read_text().strip() == cloud.kernel.release
    assert "nokaslr" not in (rundir / "cmdline").read_text()
    kallsyms = (rundir / "kallsyms").read_text().splitlines()
    assert len(kallsyms) > 1000, "the guest's /proc/kallsyms was not saved"


def test_load_with_symbols_map(cloud: CloudRun) -> None:
    """symbols=map: the module loads from the image's symbols, which are the
    running kernel's (its /proc/kallsyms), moved by KASLR."""
    _ok(cloud.guest.result("load"))
    sym = cloud.guest.result("symbols")
    _ok(sym)
    assert "source: image" in sym.out and "kaslr: shifted" in sym.out, sym.out
    assert not vm.symbols_against_kallsyms(sym.out, cloud.guest.rundir / "kallsyms")
    print(sym.out)


def test_load_with_symbols_map_nokaslr(cloud: CloudRun) -> None:
    guest = cloud.nokaslr
    assert guest is not None
    assert "nokaslr" in (guest.rundir / "cmdline").read_text()
    _ok(guest.result("load"))
    sym = guest.result("symbols")
    _ok(sym)
    assert "source: image" in sym.out and "kaslr: not shifted" in sym.out, sym.out
    assert not vm.symbols_against_kallsyms(sym.out, guest.rundir / "kallsyms")
    _ok(guest.result("rmmod"))
    # the whole table the build's reader decodes is the guest's
    reader = vm.image_symbols_reader()
    ks = reader.read_kallsyms(
        reader.Elf(reader.extract_vmlinux(cloud.kernel.vmlinuz.read_bytes())[1])
    )
    image = {(f"{a:016x}", t, n) for a, t, n in zip(ks.addrs, ks.types, ks.names, strict=True)}
    lines = (guest.rundir / "kallsyms").read_text().splitlines()
    assert image == {tuple(line.split()) for line in lines if len(line.split()) == 3}
    assert not guest.bad_dmesg(), "\n".join(guest.bad_dmesg())


@pytest.mark.parametrize("case", CASES)
def test_case(cloud: CloudRun, case: str) -> None:
    _ok(cloud.guest.result(f"case-{case}"))


def test_rmmod(cloud: CloudRun) -> None:
    _ok(cloud.guest.result("rmmod"))


def test_whole_boot_kernel_log_clean(cloud: CloudRun) -> None:
    bad = cloud.guest.bad_dmesg()
    assert not bad, "\n".join(bad)
