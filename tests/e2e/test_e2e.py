"""End to end, as an operator: a guest of this Debian release under QEMU TCG
(Debian 12, or Debian 13 inside scripts/release-root), the release's default
kernel, `apt install` of ESCA's .debs (this release's builds) and the patched
nginx, DKMS building the module in the guest, `esca-run nginx --backend
module` serving verified bytes; then the release's newest kernel installed in
the guest with apt (DKMS builds through the kernel's hook), a reboot into it,
the same serving run, and apt remove / purge leaving nothing.  See docs/e2e.md.

Two boots share the guest's disk; each guest step's output, exit code and
kernel log come back in its run directory (tests/_build/e2e/run/).  Every
failure message carries the step's output and kernel log, the console log's
tail and the paths of the full console log and dmesg.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from pathlib import Path

import e2e_guest as g
import pytest

from esca_pkg.packaging.release import host_release

pytestmark = pytest.mark.e2e

# Packages the host's own tests may have left installed: purged in the guest
# before the operator's install (the host itself is never changed); patterns
# expanded by dpkg-query in the guest.
LEFTOVER_PATTERNS = ("esca-*", "libesca*", "nginx", "nginx-*", "libnginx-mod-*")


@dataclasses.dataclass
class E2E:
    krel1: str
    krel2: str
    timings: dict[str, float]
    first: g.GuestRun | None = None
    second: g.GuestRun | None = None
    error: str = ""


def _run_all(base: Path) -> E2E:
    k1, k2 = g.kernels()
    e2e = E2E(k1.release, k2.release, {})
    t0 = time.monotonic()
    codename = g.codename()
    dist = g.BUILD / "dist"
    e2e.timings["build packages"] = g.build_packages(dist, codename, g.BUILD / "pkg-build")
    t1 = time.monotonic()
    kernel2_pkgs = g.installed_kernel_packages(k2.release, k2.series)
    ours = dist / codename
    operator_debs = [
        next(ours.glob(f"{name}_*.deb"))
        for name in ("esca-dkms", "libesca0", "esca-tools", "nginx", "nginx-common")
    ]
    deps = g.local_deps_repo(g.BUILD / "deps", kernel2_pkgs, operator_debs)
    e2e.timings["dependency repository"] = time.monotonic() - t1
    purge = [*LEFTOVER_PATTERNS, *(p.name for p in kernel2_pkgs)]
    # What the operator installs: the kernel's metapackages where the release
    # has them (linux-image-6.12-amd64 on Debian 12), else its own packages.
    metas = [p.name for p in kernel2_pkgs if p.name.endswith(f"-{k2.series}-amd64")] or [
        f"linux-image-{k2.release}",
        f"linux-headers-{k2.release}",
    ]
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    disk = g.guest.make_disk(base / "disk.img")
    plan = {
        "KREL1": k1.release,
        "KREL2": k2.release,
        "CODENAME": codename,
        "ESCA_DEBS": str(dist / codename),
        "ESCA_REPO": str(dist / "repo"),
        "DEPS_REPO": str(deps),
        "PURGE": " ".join(purge),
        "KERNEL2_PKGS": " ".join(metas),
    }
    e2e.first = g.boot(
        "first",
        k1.vmlinuz,
        g.initramfs(k1, base / "initramfs-1.cpio"),
        disk,
        base / "first",
        {**plan, "PHASE": "first"},
        timeout=3000,
    )
    e2e.timings["first boot"] = e2e.first.seconds
    vmlinuz2 = e2e.first.rundir / f"vmlinuz-{k2.release}"
    if not e2e.first.finished or e2e.first.aborted or not vmlinuz2.exists():
        e2e.error = "the first boot did not complete: no second boot"
    else:
        e2e.second = g.boot(
            "second",
            vmlinuz2,
            g.initramfs(k2, base / "initramfs-2.cpio"),
            disk,
            base / "second",
            {**plan, "PHASE": "second"},
            timeout=2400,
        )
        e2e.timings["second boot"] = e2e.second.seconds
    e2e.timings["total"] = time.monotonic() - t0
    report = g.BUILD / "timings.json"
    report.write_text(json.dumps(e2e.timings, indent=1))
    g.log("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in e2e.timings.items()))
    return e2e


@pytest.fixture(scope="module")
def e2e() -> E2E:
    try:
        return _run_all(g.BUILD / "run")
    except g.HarnessError as err:
        pytest.fail(f"e2e harness: {err}", pytrace=False)


def _boot(e2e: E2E, which: str) -> g.GuestRun:
    boot = e2e.first if which == "first" else e2e.second
    if boot is None:
        pytest.fail(
            f"the {which} boot did not run: {e2e.error}\n" + _context(e2e.first), pytrace=False
        )
    if not boot.finished:
        pytest.fail(
            f"the {which} boot did not finish ({boot.seconds:.0f} s){boot.fault_note()}\n"
            + _context(boot),
            pytrace=False,
        )
    return boot


HOST_CHANGED = (
    "NOTE: dpkg changed this host's packages during the boot (another test or an "
    "administrator ran apt). The host's root is the guest's read-only lower layer: "
    "changing it under a mounted overlay is undefined behaviour, so this failure may "
    "come from that. Run the e2e suite alone (CI runs the suites one after another).\n"
)


def _context(boot: g.GuestRun | None) -> str:
    if boot is None:
        return ""
    dmesg = boot.rundir / "dmesg.txt"
    note = HOST_CHANGED if boot.host_changed else ""
    return (
        f"{note}--- guest console log: {boot.console_log}\n{boot.console[-3000:]}\n"
        f"--- guest dmesg: {dmesg if dmesg.exists() else '(not saved: the guest died)'}"
    )


def _step(e2e: E2E, which: str, name: str, expect_rc: int = 0) -> g.StepResult:
    boot = _boot(e2e, which)
    res = boot.result(name)
    if res.rc is None:
        why = f"aborted at step {boot.aborted!r}" if boot.aborted else "not run"
        pytest.fail(
            f"{which} boot: step {name} did not run ({why})\n" + _context(boot), pytrace=False
        )
    if res.rc != expect_rc or res.bad_dmesg():
        pytest.fail(
            f"{which} boot ({e2e.krel1 if which == 'first' else e2e.krel2}): "
            f"{res.describe()}\n--- bad kernel log lines: {res.bad_dmesg()}\n" + _context(boot),
            pytrace=False,
        )
    return res


def _json(boot: g.GuestRun, name: str) -> dict:
    return json.loads((boot.rundir / f"{name}.json").read_text())


# --- first kernel: the operator's install ----------------------------------------


def test_install_on_first_kernel(e2e: E2E) -> None:
    _step(e2e, "first", "prepare")
    _step(e2e, "first", "udev")
    out = _step(e2e, "first", "install").out
    assert "+esca1" in out, "apt did not install the patched nginx:\n" + out[-3000:]
    # this release's builds: VERSION+deb<N> (esca-dkms, libesca0, esca-tools)
    suffix = host_release().suffix
    for pkg in ("esca-dkms", "libesca0", "esca-tools"):
        # dpkg-query -W: "libesca0:amd64<TAB>0.1.0+deb13"
        line = rf"^{pkg}(:\S+)?\t\S+{re.escape(suffix)}$"
        assert re.search(line, out, re.M), f"{pkg} {suffix}?\n" + out[-3000:]
    mod = _step(e2e, "first", "module").out
    assert e2e.krel1 in mod
    loaded = _step(e2e, "first", "loaded").out
    assert "/dev/esca: root:esca 660 character special file" in loaded


def test_esca_run_refuses_module_until_www_data_in_group(e2e: E2E) -> None:
    res = _boot(e2e, "first").result("refused")
    assert res.rc not in (None, 0), (
        "esca-run accepted the module backend for www-data before it was in group esca:\n" + res.out
    )
    assert "adduser www-data esca" in res.out, res.out
    _step(e2e, "first", "adduser")


@pytest.mark.parametrize("which", ["first", "second"])
@pytest.mark.parametrize("workers", [1, 2])
def test_serving_with_module_backend(e2e: E2E, which: str, workers: int) -> None:
    boot = _boot(e2e, which)
    _step(e2e, which, f"serve-{workers}w")
    krel = e2e.krel1 if which == "first" else e2e.krel2
    report = _json(boot, f"serve-{krel}-{workers}w")
    assert report["failures"] == [], report
    assert report["stats_backends"] == ["module"]
    assert report["deferred"] > 0
    assert report["concurrent_requests"] > 0 and not report["problems"]
    print(
        f"\n{krel} {workers} worker(s): {report['concurrent_requests']} concurrent requests "
        f"verified in {report['client_seconds']} s; deferred calls {report['deferred']}, "
        f"flushes {report['flushes']}, kernel entries {report['kernel_entries']}"
    )
    for line in report["stats"]:
        print("  " + line)


@pytest.mark.parametrize("which", ["first", "second"])
def test_syscalls_per_request(e2e: E2E, which: str) -> None:
    boot = _boot(e2e, which)
    _step(e2e, which, "syscalls")
    krel = e2e.krel1 if which == "first" else e2e.krel2
    report = _json(boot, f"syscalls-{krel}")
    rows = {r["label"]: r for r in report["rows"] if "syscalls_per_request" in r}
    table = [
        f"syscalls per request in the guest ({krel}, TCG), {report['file']}, "
        f"{report['connections']} connections, 1 worker:"
    ]
    for r in report["rows"]:
        if "note" in r:
            table.append(f"  note: {r['note']}")
        else:
            table.append(
                f"  {r['label']:14} {r['syscalls_per_request']:8.2f}  "
                f"({r['syscalls']} calls / {r['requests']} requests, {r['rps']} req/s, "
                f"{r['tool']})"
            )
    text = "\n".join(table)
    (g.BUILD / f"syscalls-{krel}.txt").write_text(text + "\n")
    print("\n" + text)
    assert set(rows) == {"vanilla", "off", "module", "module-noadapt"}, report
    off = rows["off"]["syscalls_per_request"]
    # Batching every segment must save calls.  The adaptive default passes
    # most segments through at this load; it must not cost calls beyond the
    # run-to-run noise under TCG (vanilla and off differ by up to ~12%).
    assert rows["module-noadapt"]["syscalls_per_request"] < 0.9 * off, text
    baseline = max(off, rows["vanilla"]["syscalls_per_request"])
    assert rows["module"]["syscalls_per_request"] <= 1.1 * baseline, text


def test_second_kernel_gets_module_through_its_hook(e2e: E2E) -> None:
    res = _step(e2e, "first", "kernel2")
    assert e2e.krel2 in res.out
    assert "dkms" in res.out.lower(), "no DKMS run in the kernel's installation:\n" + res.out


def test_second_kernel_loads_module_at_boot(e2e: E2E) -> None:
    boot = _boot(e2e, "second")
    assert (boot.rundir / "uname").read_text().strip() == e2e.krel2
    _step(e2e, "second", "boot")
    _step(e2e, "second", "modules-load")
    _step(e2e, "second", "module")
    loaded = _step(e2e, "second", "loaded").out
    assert "/dev/esca: root:esca 660 character special file" in loaded


def test_remove_and_purge_leave_nothing(e2e: E2E) -> None:
    _step(e2e, "second", "remove")
    assert "remove check: 0" in _step(e2e, "second", "removed").out
    _step(e2e, "second", "deluser")
    _step(e2e, "second", "purge")
    assert "purge check: 0" in _step(e2e, "second", "purged").out


@pytest.mark.parametrize("which", ["first", "second"])
def test_guest_kernel_log_clean(e2e: E2E, which: str) -> None:
    boot = _boot(e2e, which)
    dmesg = boot.rundir / "dmesg.txt"
    bad = [ln for ln in dmesg.read_text(errors="replace").splitlines() if g.BAD_DMESG.search(ln)]
    assert not bad, f"{dmesg}:\n" + "\n".join(bad)
