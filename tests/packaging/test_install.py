"""Install, remove, purge and reinstall the packages with apt on this machine."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from debian.debfile import DebFile
from libesca_support import compile_c
from pkg_helpers import TARGETS, Built, esca_pkg, require_root, sh

pytestmark = pytest.mark.packaging


def apt_install(*debs: Path) -> str:
    res = sh("apt-get", "install", "-y", "--no-install-recommends", *[str(d) for d in debs])
    return res.stdout + res.stderr


def purge(*packages: str) -> None:
    sh("apt-get", "purge", "-y", *packages, check=False)


def installed(package: str) -> bool:
    res = sh("dpkg-query", "-W", "-f=${db:Status-Abbrev}", package, check=False)
    return res.stdout.startswith("ii")


def files_of(deb: Path) -> list[Path]:
    """Regular files and symlinks a package ships (directories may be shared)."""
    out = []
    for m in DebFile(str(deb)).data.tgz().getmembers():
        if not m.isdir():
            out.append(Path("/" + m.name.removeprefix(".").lstrip("/")))
    return out


def dpkg_residue(package: str) -> list[str]:
    """What dpkg still keeps of a purged package: a status other than
    not-installed, its files list, conffiles or maintainer scripts.  (dpkg
    may keep a "not-installed" record after a purge, so `dpkg-query -W`
    exiting 0 is no residue.)"""
    res = sh("dpkg-query", "-W", "-f=${db:Status-Abbrev}", package, check=False)
    left = [f"status {res.stdout.strip()!r}"] if res.stdout.strip() not in ("", "un", "pn") else []
    return left + [str(p) for p in Path("/var/lib/dpkg/info").glob(f"{package}.*")]


def udev_rules(pattern: str) -> list[Path]:
    """Rules files in udev's package directory: /lib/udev/rules.d (Debian 12's
    debhelper) or /usr/lib/udev/rules.d (Debian 13's)."""
    found = {
        p.resolve() for d in ("/lib", "/usr/lib") for p in Path(d, "udev/rules.d").glob(pattern)
    }
    return sorted(found)


def module_files(kver: str) -> list[Path]:
    d = Path(f"/lib/modules/{kver}/updates/dkms")
    return sorted(d.glob("esca.ko*")) if d.is_dir() else []


def doctor(*areas: str) -> dict[str, dict[str, str]]:
    args = [a for area in (areas or ("kernel", "run")) for a in ("--area", area)]
    res = esca_pkg("doctor", "--json", *args, check=False)
    assert res.returncode in (0, 1), res.stderr
    return {c["name"]: c for c in json.loads(res.stdout)}


def group_exists(name: str) -> bool:
    return sh("getent", "group", name, check=False).returncode == 0


def test_dkms_install_remove_purge_reinstall(built: Built, headers_kernels: list[str]) -> None:
    require_root()
    deb = built.deb("esca-dkms")
    purge("esca-dkms")
    try:
        for cycle in (1, 2):  # install, remove, purge; then all of it again
            out = apt_install(deb)
            status = sh("dkms", "status", "-m", "esca").stdout
            for kver in headers_kernels:
                assert f"esca/{built.version}, {kver}, " in status and "installed" in status, (
                    f"cycle {cycle}: {kver} missing from dkms status:\n{status}\n{out}"
                )
                assert module_files(kver), f"no esca.ko under /lib/modules/{kver}/updates/dkms"
                # Debian installs no System.map: DKMS's build read the kernel's image
                logs = list(
                    Path(f"/var/lib/dkms/esca/{built.version}").glob(f"{kver}/*/log/make.log")
                )
                assert logs, f"dkms kept no make.log for {kver}"
                log = logs[0].read_text()
                assert f"symbols of {kver} from the image /boot/vmlinuz-{kver}" in log, log
            running = os.uname().release
            if running not in headers_kernels:
                assert f"no headers for the running kernel {running}" in out, out
            assert group_exists("esca")
            assert Path("/usr/lib/modules-load.d/esca.conf").read_text().strip().endswith("esca")
            rules = udev_rules("*esca*.rules")
            assert rules and 'GROUP="esca"' in rules[0].read_text()
            checks = doctor()
            for kver in headers_kernels:
                assert checks[f"{kver} esca module"]["status"] == "ok"
            assert checks["group esca"]["status"] == "ok"

            sh("apt-get", "remove", "-y", "esca-dkms")
            assert "esca" not in sh("dkms", "status", "-m", "esca").stdout
            assert not Path("/var/lib/dkms/esca").exists()
            for kver in headers_kernels:
                assert not module_files(kver)
            assert not list(Path("/usr/src").glob("esca-*"))
            assert doctor()[f"{headers_kernels[0]} esca module"]["status"] == "warn"

            purge("esca-dkms")
            assert not installed("esca-dkms")
            assert not dpkg_residue("esca-dkms"), dpkg_residue("esca-dkms")
            assert not group_exists("esca")
            left = [f for f in files_of(deb) if f.exists() or f.is_symlink()]
            assert not left, f"purge left files behind: {left}"
    finally:
        purge("esca-dkms")


def test_libesca_resolves_links_and_purges(built: Built, tmp_path: Path) -> None:
    require_root()
    debs = [built.deb(p) for p in ("libesca0", "libesca-dev", "esca-microbench")]
    purge("libesca0", "libesca-dev", "esca-microbench")
    try:
        for _ in (1, 2):
            apt_install(*debs)
            arch = sh("dpkg-architecture", "-qDEB_HOST_MULTIARCH").stdout.strip()
            cache = sh("ldconfig", "-p").stdout
            resolved = [
                ln.split("=>")[1].strip()
                for ln in cache.splitlines()
                if ln.strip().startswith("libesca.so.0 ")
            ]
            assert resolved, "libesca.so.0 not in the ldconfig cache"
            lib = Path(f"/usr/lib/{arch}/libesca.so.{built.version}")
            assert Path(resolved[0]).resolve() == lib.resolve(), resolved
            assert doctor()["libesca.so.0"]["status"] == "ok"
            # The -dev package is enough to build a hooked program linked to libesca
            # (strong hooks; by default esca.h makes them weak so no link is needed).
            src = tmp_path / "hooked.c"
            src.write_text(
                "#include <esca.h>\nint main(void)\n{\n\tesca_init();\n"
                "\tbatch_start();\n\tbatch_flush();\n\treturn 0;\n}\n"
            )
            compile_c(src, tmp_path / "hooked", "-DESCA_STRONG_HOOKS", "-lesca", includes=())
            needed = sh("readelf", "-d", tmp_path / "hooked").stdout
            assert "libesca.so.0" in needed
            run = subprocess.run(
                [tmp_path / "hooked"],
                env={"ESCA_BACKEND": "off"},
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert run.returncode == 0, run.stderr
            assert os.access("/usr/lib/esca/esca-microbench", os.X_OK)

            sh("apt-get", "remove", "-y", "libesca0", "libesca-dev", "esca-microbench")
            purge("libesca0", "libesca-dev", "esca-microbench")
            assert "libesca.so.0" not in sh("ldconfig", "-p").stdout
            left = [f for d in debs for f in files_of(d) if f.exists() or f.is_symlink()]
            assert not left, f"purge left files behind: {left}"
    finally:
        purge("libesca0", "libesca-dev", "esca-microbench")


def test_tool_runs_from_its_package(built: Built) -> None:
    require_root()
    deb = built.deb("esca-tools")
    purge("esca-tools")
    had_run_dir = Path("/run/esca").exists()
    try:
        apt_install(deb)
        assert Path("/run/esca").is_dir()  # tmpfiles.d, at installation
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        res = subprocess.run(
            ["/usr/bin/esca-pkg", "--version"],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            check=False,
        )
        assert res.returncode == 0 and built.version in res.stdout, res.stderr
        res = subprocess.run(
            ["/usr/bin/esca-pkg", "doctor", "--area", "run", "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            check=False,
        )
        assert res.returncode in (0, 1), res.stderr
        assert {c["name"] for c in json.loads(res.stdout)} >= {"io_uring", "backend"}
        res = subprocess.run(
            ["/usr/bin/esca-pkg", "build", "esca"],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            check=False,
        )
        assert res.returncode == 1 and "not inside an ESCA source tree" in res.stderr
        for script in sorted(p.name for p in files_of(deb) if p.parent == Path("/usr/bin")):
            assert (
                subprocess.run(
                    [f"/usr/bin/{script}", "--help"], capture_output=True, env=env, check=False
                ).returncode
                == 0
            ), script
        purge("esca-tools")
        assert not installed("esca-tools")
        left = [f for f in files_of(deb) if f.exists() or f.is_symlink()]
        assert not left, f"purge left files behind: {left}"
        if not had_run_dir:  # an empty /run/esca goes with the purge (esca-tools.postrm)
            assert not Path("/run/esca").exists()
    finally:
        purge("esca-tools")


def test_doctor_reports_this_machine(built: Built, headers_kernels: list[str]) -> None:
    checks = {**doctor("kernel", "run"), **doctor("build")}
    for kver in headers_kernels:
        assert checks[f"{kver} headers"]["status"] == "ok"
    running = os.uname().release
    tag = f"{running} (running)"
    has_headers = Path(f"/lib/modules/{running}/build/include").exists()
    assert checks[f"{tag} headers"]["status"] == ("ok" if has_headers else "warn")
    if not has_headers:
        fix = checks[f"{tag} headers"]["fix"]
        known = sh("apt-cache", "show", f"linux-headers-{running}", check=False)
        if known.returncode == 0 and known.stdout.strip():
            assert fix == f"apt-get install linux-headers-{running}"
        else:  # not a Debian kernel (this Firecracker host's): no hint to a missing package
            assert fix.startswith("no Debian headers package for this kernel"), fix
            assert "apt-get install" not in fix
    loaded = Path("/sys/module/esca").is_dir()
    assert (checks["module loaded"]["status"] == "ok") == loaded
    assert (checks["/dev/esca"]["status"] != "warn") == (loaded and Path("/dev/esca").exists())
    for target in TARGETS:
        assert checks[f"{target} build-depends"]["status"] == "ok"  # we just built them
