"""piuparts on the five packages: install and purge in a clean chroot of this
Debian release, then install the previous release's packages (previous.py,
from a local apt repository) and upgrade them to the new ones, purge, and
compare the chroot with what it was (docs/upgrades.md).

The chroot starts from a base tarball cached in /var/cache/esca/piuparts
(ESCA_PIUPARTS_CACHE), made by piuparts' own debootstrap from this machine's
mirror (scripts/release-root mirrors) and remade when older than a week.  In
the chroot no kernel has headers: esca-dkms's postinst says so and DKMS builds
nothing, which must not fail (test_upgrade.py builds the module on this
machine).  The last run's log is kept in the cache (<codename>.last.log), a
failed run's also as <codename>.failed.log.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pkg_helpers import PACKAGES, ROOT, SYSTEM_PATH, Built, require_root
from previous import Previous, previous_release

pytestmark = pytest.mark.packaging

CACHE = Path(os.environ.get("ESCA_PIUPARTS_CACHE", "/var/cache/esca/piuparts"))
#: a base tarball older than this is made anew (piuparts dist-upgrades it anyway)
BASE_MAX_AGE = 7 * 86400

#: what adequate (piuparts runs it after each installation) may say, and why
ADEQUATE_ALLOWED = {
    # DKMS's build runs it as a program (scripts/esca-symbols.sh): nothing
    # imports it, so there is nothing to byte-compile.
    (
        "esca-dkms",
        "py-file-not-bytecompiled",
        r"/usr/src/esca-[^/]+/scripts/esca_image_symbols\.py",
    ),
}

#: piuparts runs these in the chroot (--scriptsdir): post_install_* after every
#: installation (the previous release's too), post_purge_* after the purge.
#: piuparts itself ignores /etc/group, and DKMS's tree is no package's files.
POST_INSTALL = r"""#!/bin/sh
# esca: what an installation must leave, whichever release it was
set -e
fail() { echo "esca post_install: $*" >&2; exit 1; }
dpkg-query -W -f='${Status}\n' esca-dkms | grep -q ' installed$' || exit 0
v=$(dpkg-query -W -f='${Version}' esca-dkms); v=${v%%[+-]*}
getent group esca >/dev/null || fail "no group esca"
status=$(dkms status -m esca)
echo "dkms status -m esca: $status"
echo "$status" | grep -q "^esca/$v[,:]" || fail "esca/$v not in DKMS: $status"
if echo "$status" | grep -v "^esca/$v[,:]" | grep -q .; then
    fail "another esca version is still in DKMS: $status"
fi
for d in /usr/src/esca-*; do
    [ "$d" = "/usr/src/esca-$v" ] || fail "$d is left"
done
conf=/usr/src/esca-$v/dkms.conf
[ -f "$conf" ] || fail "$conf missing"
# DKMS builds from it on machines with headers (none here): its version must be filled in.
grep -Eq "^PACKAGE_VERSION=\"?$v\"?\$" "$conf" || fail "$conf: $(grep PACKAGE_VERSION= "$conf")"
if dpkg-query -W -f='${Status}\n' libesca0 | grep -q ' installed$'; then
    ldconfig -p | grep -q 'libesca\.so\.0 ' || fail "libesca.so.0 not in ldconfig's cache"
fi
if dpkg-query -W -f='${Status}\n' esca-tools | grep -q ' installed$'; then
    esca-pkg --version || fail "esca-pkg --version failed"
fi
"""

POST_PURGE = r"""#!/bin/sh
# esca: nothing left of esca-dkms after its purge
set -e
fail() { echo "esca post_purge: $*" >&2; exit 1; }
! getent group esca >/dev/null || fail "group esca left after the purge"
[ ! -e /var/lib/dkms/esca ] || fail "/var/lib/dkms/esca left: $(ls -R /var/lib/dkms/esca)"
for d in /usr/src/esca-*; do
    [ ! -e "$d" ] || fail "$d left after the purge"
done
echo "esca post_purge: nothing left"
"""


@pytest.fixture(scope="session")
def previous() -> Previous:
    return previous_release()


def mirrors() -> tuple[str, str]:
    """This machine's Debian and security mirrors (what the release roots use)."""
    res = subprocess.run(
        [str(ROOT / "scripts" / "release-root"), "mirrors"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": SYSTEM_PATH},
        check=False,
    )
    assert res.returncode == 0, res.stderr
    main, security = res.stdout.split()
    return main, security


def adequate_findings(log: str) -> set[tuple[str, str, str]]:
    """(package, tag, argument) of every line adequate printed."""
    found = set()
    for block in re.findall(
        r"Inadequate results from running adequate!\n((?:  .*\n)+)", log, flags=re.MULTILINE
    ):
        for line in block.splitlines():
            m = re.match(r"\s+(\S+?)(?::\S+)?: (\S+)\s*(.*)$", line)
            if m:
                found.add((m[1], m[2], m[3].strip()))
    return found


def allowed(finding: tuple[str, str, str]) -> bool:
    package, tag, arg = finding
    return any(package == p and tag == t and re.fullmatch(a, arg) for p, t, a in ADEQUATE_ALLOWED)


def test_piuparts_install_purge_and_upgrade(
    built: Built, previous: Previous, tmp_path: Path
) -> None:
    require_root()
    if shutil.which("piuparts", path=SYSTEM_PATH) is None:
        pytest.fail("piuparts is not installed: scripts/deps/packaging.txt lists it (scripts/test)")
    assert previous.codename == built.codename
    new_debs = [built.deb(p) for p in PACKAGES]
    main, security = mirrors()
    codename = built.codename

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name, text in (("post_install_esca", POST_INSTALL), ("post_purge_esca", POST_PURGE)):
        (scripts / name).write_text(text)
        (scripts / name).chmod(0o755)
    chroots = tmp_path / "chroots"
    chroots.mkdir()
    log = tmp_path / "piuparts.log"

    CACHE.mkdir(parents=True, exist_ok=True)
    base = CACHE / f"{codename}.tgz"
    with (CACHE / f"{codename}.lock").open("w") as lock:
        # One piuparts at a time per base tarball (it may be remade).
        fcntl.flock(lock, fcntl.LOCK_EX)
        fresh = base.is_file() and time.time() - base.stat().st_mtime < BASE_MAX_AGE
        argv = [
            "piuparts",
            "--distribution",
            codename,
            "--mirror",
            f"{main} main",
            "--extra-repo",
            f"deb {main} {codename}-updates main",
            "--extra-repo",
            f"deb {security} {codename}-security main",
            # The previous release, where apt finds it for the upgrade test.
            "--bindmount",
            str(previous.repo),
            "--extra-repo",
            previous.apt_source,
            "--scriptsdir",
            str(scripts),
            "--tmpdir",
            str(chroots),
            "--log-file",
            str(log),
            *(["--basetgz", str(base)] if fresh else ["--save", str(base)]),
            *map(str, new_debs),
        ]
        t0 = time.monotonic()
        res = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={
                **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
                "PATH": SYSTEM_PATH,
                "LANG": "C.UTF-8",
            },
            timeout=1800,
            check=False,
        )
        secs = time.monotonic() - t0
    print(f"piuparts ({'cached base' if fresh else 'new base'}): {secs:.0f} s")
    text = log.read_text(errors="replace") if log.exists() else res.stdout + res.stderr
    # The last run's log stays in the cache (tmp_path is a tmpfs in a release root).
    (CACHE / f"{codename}.last.log").write_text(text)

    def fail(why: str) -> None:
        kept = CACHE / f"{codename}.failed.log"
        kept.write_text(text)
        tail = "\n".join(text.splitlines()[-60:])
        pytest.fail(f"{why}\n$ {' '.join(argv)}\nlog: {kept}\n...\n{tail}\n{res.stderr[-2000:]}")

    if res.returncode != 0 or "PASS: All tests." not in text:
        fail(f"piuparts exited {res.returncode}")
    for phase in ("Installation and purging test", "Installation, upgrade and purging tests"):
        if f"PASS: {phase}." not in text:
            fail(f"piuparts did not pass (or skipped): {phase}")
    # The upgrade went from the previous release's packages to these.
    for package, deb in zip(PACKAGES, new_debs, strict=True):
        unpack = (
            rf"Unpacking {re.escape(package)}(?::\w+)? \({re.escape(built.package_version)}\) "
            rf"over \({re.escape(previous.package_version)}\)"
        )
        if not re.search(unpack, text):
            fail(f"no upgrade of {package} from {previous.package_version} ({deb.name})")
    # No kernel of the chroot has headers: the postinst said so, at the
    # installation and at the upgrade, and did not fail.
    running = os.uname().release
    said = text.count(f"esca-dkms: no headers for the running kernel {running}")
    if said < 3:  # installation, the previous release's, the upgrade
        fail(f"esca-dkms's postinst said 'no headers for the running kernel' {said} times, not 3")
    for script in ("post_install_esca", "post_purge_esca"):
        if f"tmp/scripts/{script}" not in text:
            fail(f"piuparts did not run {script}")
    unexpected = sorted(f for f in adequate_findings(text) if not allowed(f))
    if unexpected:
        fail(f"adequate: {unexpected}")
