"""The esca module in real Debian kernels booted under QEMU TCG.

The matrix is this release's (scripts/kernels, found through apt): 6.1 and
6.12 on Debian 12; 6.12 and the newest backports kernel on Debian 13, which
`scripts/test --release trixie tests/vm` runs on a Debian 12 machine (the
module, libesca and the case programs built in that root, the guest's root
being that root).  The module is built as DKMS builds it: its symbols from
the kernel's own image (no System.map is installed).  Per kernel, two boots:
  1. nokaslr, the module loaded with symbols=map (the kprobe path switched
     off): its addresses equal the guest's /proc/kallsyms; every case
     program of tests/vm/cases, load/unload cycles, libesca's own tests with
     ESCA_BACKEND=module, the micro-benchmark, then what an administrator's
     tools see (guest/observe.sh: device mode with and without udev, strace,
     perf, a seccomp filter, a signal, audit); /proc/kallsyms is saved;
  2. KASLR on: the same module, symbols=map, sees the shift and its addresses
     equal that boot's /proc/kallsyms; a module built with a real System.map
     (made from boot 1's kallsyms) uses the map (a map wins over the image);
     a map of "another build" is refused with symbols=map and, by default,
     falls back to the kprobe where the kernel has no IBT and is refused where
     it has; a module built with neither map nor image loads through the
     kprobe where the kernel has no IBT (where it has, that build fails,
     naming the fix).
Each step's kernel log (after a /dev/kmsg mark) must be free of WARN, BUG,
Oops and protection faults.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import esca_vm as vm
import pytest

pytestmark = pytest.mark.vm


RELEASES, MATRIX_ERROR = vm.releases_or_error()
CASES = vm.case_names()
KASLR_CASES = ["flush_calls", "threads", "fork_child"]
# libesca's tests are parametrized by backend: the guest runs the module ones.
LIBESCA_SELECT = "module and not missing_module"
# guest/observe.sh checks, in this order (audit last: it stays enabled).
OBSERVE = ["devmode", "strace", "perf", "tsync", "signal", "lost", "audit"]


class KernelRuns:
    def __init__(self, kernel: vm.Kernel, base: Path) -> None:
        self.kernel = kernel
        self.base = base
        self.errors: list[str] = []
        self.build_logs: dict[str, str] = {}
        self.full: vm.GuestRun | None = None
        self.kaslr: vm.GuestRun | None = None
        self.seconds: dict[str, float] = {}
        #: the kernel is built with CONFIG_X86_KERNEL_IBT
        self.ibt = False
        #: the output of the build with neither System.map nor image, if it failed
        self.kprobe_build_error = ""

    def timed(self, what: str, t0: float) -> None:
        self.seconds[what] = round(time.monotonic() - t0, 1)


def _libesca_tests() -> str:
    tests = sorted(Path(vm.REPO, "tests").glob("test_libesca*.py"))
    return " ".join(str(t) for t in tests)


def _run_kernel(release: str, base: Path) -> KernelRuns:
    kernel = vm.Kernel(release).check()
    runs = KernelRuns(kernel, base)
    runs.ibt = vm.kernel_config(kernel).get("CONFIG_X86_KERNEL_IBT") == "y"
    run1 = base / "full"
    t0 = time.monotonic()
    ko, runs.build_logs["image"] = vm.build_module(kernel, run1 / "image")
    runs.timed("build module from the image", t0)
    t0 = time.monotonic()
    bins = vm.build_cases(run1 / "bin")
    initramfs = vm.initramfs(kernel, base / "initramfs.cpio")
    runs.timed("build cases and initramfs", t0)
    bench = vm.REPO / "libesca" / "build" / "esca-microbench"
    plan = {
        "MODE": "full",
        "KO": str(ko),
        "CASES": " ".join(CASES),
        "CASEBIN": str(bins),
        "LIBESCA_TESTS": _libesca_tests(),
        "LIBESCA_SELECT": LIBESCA_SELECT,
        "MICROBENCH": "1" if bench.exists() else "",
        "OBSERVE": " ".join(OBSERVE),
    }
    runs.full = vm.boot(kernel, run1, initramfs, plan, kaslr=False, timeout=1500)
    runs.seconds["boot 1 (nokaslr)"] = round(runs.full.seconds, 1)

    run2 = base / "kaslr"
    t0 = time.monotonic()
    # The guest sees only the run directory of its boot (and the repository).
    ko2 = run2 / "image" / "esca.ko"
    ko2.parent.mkdir(parents=True)
    shutil.copy(ko, ko2)
    system_map = base / f"System.map-{kernel.release}"
    vm.kallsyms_to_system_map(run1 / "kallsyms", system_map)
    badmap = base / "System.map-other-build"
    vm.shifted_map(system_map, badmap)
    ko_map, runs.build_logs["map"] = vm.build_module(kernel, run2 / "map", str(system_map))
    ko_bad, runs.build_logs["badmap"] = vm.build_module(kernel, run2 / "badmap", str(badmap))
    ko_kprobe = ""
    try:
        built, runs.build_logs["kprobe"] = vm.build_module(kernel, run2 / "kprobe", "none", "none")
        ko_kprobe = str(built)
    except vm.BuildError as err:
        runs.kprobe_build_error = err.log
    bins2 = vm.build_cases(run2 / "bin")
    runs.timed("build map modules and cases", t0)
    plan2 = {
        "MODE": "kaslr",
        "KO": str(ko2),
        "KO_MAP": str(ko_map),
        "KO_BADMAP": str(ko_bad),
        "KO_KPROBE": ko_kprobe,
        "CASES": " ".join(KASLR_CASES),
        "CASEBIN": str(bins2),
    }
    runs.kaslr = vm.boot(kernel, run2, initramfs, plan2, kaslr=True, timeout=600)
    runs.seconds["boot 2 (kaslr)"] = round(runs.kaslr.seconds, 1)
    _report_timings(runs)
    return runs


def _reports() -> Path:
    reports = Path(os.environ.get("ESCA_VM_REPORT_DIR", vm.REPO / "tests" / "_build" / "vm"))
    reports.mkdir(parents=True, exist_ok=True)
    return reports


def _report_timings(runs: KernelRuns) -> None:
    """Where a kernel's time goes (CI's budget): the host's steps and each
    guest step, from the step records (results/NAME.seconds)."""
    steps = {}
    for guest in (runs.full, runs.kaslr):
        assert guest is not None
        for rc in sorted((guest.rundir / "results").glob("*.rc")):
            res = guest.result(rc.stem)
            steps[f"{guest.rundir.name}/{rc.stem}"] = res.seconds
    assert runs.full is not None
    full = [runs.full.result(f"case-{c}") for c in CASES]
    libesca = runs.full.result("libesca_pytest").out.strip().splitlines()
    report = {
        "kernel": runs.kernel.release,
        "host": runs.seconds,
        "guest steps": steps,
        "cases passed": f"{sum(r.rc == 0 for r in full)}/{len(full)}",
        "libesca in the guest": libesca[-1] if libesca else "",
    }
    (_reports() / f"timings-{runs.kernel.release}.json").write_text(
        json.dumps(report, indent=1) + "\n"
    )


@pytest.fixture(
    scope="module",
    params=RELEASES or [None],
    ids=[f"linux-{vm.Kernel(r).series}" for r in RELEASES] or ["no-kernel"],
)
def kruns(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> KernelRuns:
    release = request.param
    if release is None:
        pytest.fail(f"no kernel to test: {MATRIX_ERROR}", pytrace=False)
    try:
        return _run_kernel(release, tmp_path_factory.mktemp(f"vm-{release}"))
    except vm.HarnessError as err:
        pytest.fail(f"linux {release}: {err}", pytrace=False)


_ok = vm.require_ok


def test_builds_warning_free(kruns: KernelRuns) -> None:
    for variant, log in kruns.build_logs.items():
        warnings = [line for line in log.splitlines() if "warning:" in line]
        assert not warnings, f"{variant} build for {kruns.kernel.release}: {warnings}"


def test_build_reads_the_image(kruns: KernelRuns) -> None:
    """No System.map is installed: the build reads the kernel's own image,
    cross-checks it and says so."""
    log = kruns.build_logs["image"]
    image = f"/boot/vmlinuz-{kruns.kernel.release}"
    assert f"symbols of {kruns.kernel.release} from the image {image}" in log, log
    stats = re.search(r"(\d+) exports cross-checked, (\d+) sys_call_table slots checked", log)
    assert stats and int(stats.group(1)) > 1000 and int(stats.group(2)) >= 12, log
    assert (
        "symbols of" in kruns.build_logs["map"] and "from the system-map" in kruns.build_logs["map"]
    )


def test_image_kallsyms_is_the_guests(kruns: KernelRuns) -> None:
    """Every symbol the build's reader decodes from the image, with its type
    and address, is in the nokaslr guest's /proc/kallsyms, and nothing more."""
    assert kruns.full is not None
    reader = vm.image_symbols_reader()
    vmlinux = reader.extract_vmlinux(kruns.kernel.vmlinuz.read_bytes())[1]
    ks = reader.read_kallsyms(reader.Elf(vmlinux))
    image = {(f"{a:016x}", t, n) for a, t, n in zip(ks.addrs, ks.types, ks.names, strict=True)}
    guest = {
        tuple(line.split())
        for line in (kruns.full.rundir / "kallsyms").read_text().splitlines()
        if len(line.split()) == 3
    }
    assert len(image) > 50000
    assert image == guest, (sorted(image - guest)[:5], sorted(guest - image)[:5])


def test_kprobe_build_only_without_ibt(kruns: KernelRuns) -> None:
    """With neither map nor image the module falls back to the kprobe path,
    which an IBT kernel cannot use: there the build fails, naming the fix."""
    if kruns.ibt:
        assert "kprobe" not in kruns.build_logs
        assert "CONFIG_X86_KERNEL_IBT" in kruns.kprobe_build_error
        assert f"install linux-image-{kruns.kernel.release}" in kruns.kprobe_build_error
    else:
        assert not kruns.kprobe_build_error, kruns.kprobe_build_error
        assert "the module will use the kprobe path" in kruns.build_logs["kprobe"]


def test_load_from_image_kprobe_off(kruns: KernelRuns) -> None:
    """symbols=map: the image's symbols or nothing; they are the running
    kernel's (its /proc/kallsyms)."""
    assert kruns.full is not None
    assert (kruns.full.rundir / "uname").read_text().strip() == kruns.kernel.release
    _ok(kruns.full.result("load"))
    sym = kruns.full.result("symbols")
    _ok(sym)
    assert "source: image" in sym.out
    assert f"built from: /boot/vmlinuz-{kruns.kernel.release}" in sym.out
    assert "kaslr: not shifted" in sym.out
    assert not vm.symbols_against_kallsyms(sym.out, kruns.full.rundir / "kallsyms")
    loaded = [ln for ln in kruns.full.result("load").dmesg.splitlines() if "esca:" in ln]
    assert any("sys_call_table found with image of /boot/vmlinuz" in ln for ln in loaded), loaded


@pytest.mark.parametrize("case", CASES)
def test_case(kruns: KernelRuns, case: str) -> None:
    assert kruns.full is not None
    _ok(kruns.full.result(f"case-{case}"))


def test_unload_cycles(kruns: KernelRuns) -> None:
    assert kruns.full is not None
    step = kruns.full.result("unload_cycles")
    _ok(step)
    assert "unload cycles ok" in step.out
    _ok(kruns.full.result("rmmod"))


def test_libesca_tests_with_module_backend(kruns: KernelRuns) -> None:
    if not _libesca_tests():
        pytest.skip("libesca's tests (tests/test_libesca*.py) do not exist yet")
    assert kruns.full is not None
    step = kruns.full.result("libesca_pytest")
    _ok(step)
    assert re.search(r"\d+ passed", step.out), step.out[-2000:]


def test_microbenchmark_runs(kruns: KernelRuns) -> None:
    assert kruns.full is not None
    step = kruns.full.result("microbench")
    if step.rc is None:
        pytest.skip("libesca/build/esca-microbench not built")
    _ok(step)
    ratios = microbench_ratios(step.out)
    assert ratios, step.out
    report = _reports() / f"microbench-{kruns.kernel.release}.txt"
    report.write_text(format_ratios(kruns.kernel, ratios, step.out))
    print(report.read_text())


@pytest.mark.parametrize("check", OBSERVE)
def test_observed(kruns: KernelRuns, check: str) -> None:
    """guest/observe.sh CHECK: udev, strace, perf, seccomp, signals, audit."""
    assert kruns.full is not None
    step = kruns.full.result(f"observe-{check}")
    _ok(step)
    print(step.out)


def test_image_symbols_under_kaslr(kruns: KernelRuns) -> None:
    assert kruns.kaslr is not None
    assert "nokaslr" not in (kruns.kaslr.rundir / "cmdline").read_text()
    _ok(kruns.kaslr.result("load"))
    sym = kruns.kaslr.result("symbols")
    _ok(sym)
    assert "source: image" in sym.out
    assert "kaslr: shifted" in sym.out, "the KASLR boot did not move the kernel"
    assert not vm.symbols_against_kallsyms(sym.out, kruns.kaslr.rundir / "kallsyms")
    for case in KASLR_CASES:
        _ok(kruns.kaslr.result(f"case-{case}"))
    _ok(kruns.kaslr.result("rmmod"))


def test_system_map_wins_over_image(kruns: KernelRuns) -> None:
    assert kruns.kaslr is not None
    _ok(kruns.kaslr.result("map_load"))
    sym = kruns.kaslr.result("map_symbols")
    _ok(sym)
    assert "source: system-map" in sym.out and "kaslr: shifted" in sym.out
    assert not vm.symbols_against_kallsyms(sym.out, kruns.kaslr.rundir / "kallsyms")
    _ok(kruns.kaslr.result("map_rmmod"))


def test_wrong_map_refused_or_falls_back(kruns: KernelRuns) -> None:
    assert kruns.kaslr is not None
    refused = kruns.kaslr.result("badmap_refused")
    assert refused.rc not in (None, 0), "a module with a wrong System.map loaded with symbols=map"
    lines = [ln for ln in refused.dmesg.splitlines() if "esca: refusing to load" in ln]
    assert len(lines) == 1, refused.dmesg
    assert "do not match the running kernel" in lines[0]
    assert "kprobe: not tried" in lines[0]
    assert not refused.bad_dmesg()
    fallback = kruns.kaslr.result("badmap_fallback")
    if kruns.ibt:
        # No kprobe path in an IBT kernel: refused, saying why.
        assert fallback.rc not in (None, 0)
        assert "not used in a kernel built with CONFIG_X86_KERNEL_IBT" in fallback.dmesg
        assert not fallback.bad_dmesg()
    else:
        _ok(fallback)
        assert "source: kprobe" in kruns.kaslr.result("badmap_symbols").out
        _ok(kruns.kaslr.result("badmap_rmmod"))


def test_kprobe_path_without_ibt(kruns: KernelRuns) -> None:
    assert kruns.kaslr is not None
    if kruns.ibt:
        assert kruns.kaslr.result("kprobe_load").rc is None
        pytest.skip(f"{kruns.kernel.release} is built with IBT: no kprobe path (build refused)")
    _ok(kruns.kaslr.result("kprobe_load"))
    sym = kruns.kaslr.result("kprobe_symbols")
    _ok(sym)
    assert "source: kprobe" in sym.out
    assert not vm.symbols_against_kallsyms(sym.out, kruns.kaslr.rundir / "kallsyms")
    _ok(kruns.kaslr.result("kprobe_rmmod"))


def test_whole_boot_kernel_log_clean(kruns: KernelRuns) -> None:
    for guest in (kruns.full, kruns.kaslr):
        assert guest is not None
        bad = guest.bad_dmesg()
        assert not bad, "\n".join(bad)


# --- micro-benchmark ratios ----------------------------------------------------


def microbench_ratios(out: str) -> dict[tuple[str, int], float]:
    """{(op, batch): module ns / off ns} from lines '<backend> <op> <batch> <ns>'
    (the module forced for every segment, ESCA_ADAPT=0; module-adapt lines
    stay in the raw report)."""
    ns: dict[tuple[str, str, int], float] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in ("off", "module"):
            ns[(parts[0], parts[1], int(parts[2]))] = float(parts[3])
    return {
        (op, batch): ns[("module", op, batch)] / ns[("off", op, batch)]
        for (backend, op, batch) in ns
        if backend == "off" and ("module", op, batch) in ns and ns[("off", op, batch)] > 0
    }


def format_ratios(kernel: vm.Kernel, ratios: dict[tuple[str, int], float], raw: str) -> str:
    lines = [
        f"esca-microbench in a QEMU TCG guest, linux {kernel.release}",
        "TCG times are not hardware times: only the ratios mean something.",
        "op     batch  module/off  per-call reduction",
    ]
    for (op, batch), r in sorted(ratios.items()):
        lines.append(f"{op:6} {batch:5}  {r:10.2f}  {100 * (1 - r):6.1f}%")
    return "\n".join(lines) + "\n\nraw:\n" + raw
