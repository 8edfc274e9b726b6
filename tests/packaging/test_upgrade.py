"""The upgrade from the previous release on this machine (docs/upgrades.md):
install the previous release's five packages (previous.py), start a process
batching its writes under that libesca, install the new packages with apt as
an administrator would (apt-get install ./x.deb, standard input closed, no
--force-conf* option: a conffile question fails it), and check DKMS, the
postinst's word on the module, the running process, then purge everything.

Runs on the host (Debian 12) and in the other release's root (scripts/test
--release other), where /lib/modules has that root's kernels and headers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from debian.debfile import DebFile
from libesca_support import compile_c
from pkg_helpers import PACKAGES, SYSTEM_PATH, Built, require_root, sh
from previous import Previous, previous_release

pytestmark = pytest.mark.packaging

#: A client that batches its writes: each loop iteration is one segment of
#: eight numbered lines written to its TCP connection, flushed at the end
#: (ESCA_ADAPT=0: every segment goes through the backend).  SIGTERM ends the
#: loop; it then writes "END <lines>" and exits 0.
WRITER_C = r"""
#include <arpa/inet.h>
#include <esca.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int line(char *buf, unsigned long i)
{
	int n = sprintf(buf, "%08lu ", i);

	for (int k = 0; k < 48; k++)
		buf[n++] = (char)('a' + (i * 7 + (unsigned long)k) % 26);
	buf[n++] = '\n';
	return n;
}

static void put(int fd, const char *buf, int n)
{
	if (write(fd, buf, (size_t)n) != n) {
		perror("write");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct sigaction act = { .sa_handler = on_term };
	unsigned long seq = 0;
	char buf[128];
	int fd;

	if (argc != 2)
		return 2;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	sigaction(SIGTERM, &act, NULL);
	ESCA_INIT();
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		return 1;
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	while (!stop) {
		ESCA_BATCH_START();
		for (int k = 0; k < 8; k++)
			put(fd, buf, line(buf, seq++));
		ESCA_BATCH_FLUSH();
		usleep(5000);
	}
	put(fd, buf, sprintf(buf, "END %lu\n", seq));
	close(fd);
	printf("stopped %lu\n", seq);
	return 0;
}
"""


def upstream_version(built: Built) -> str:
    """VERSION of the tree the packages were built from: the module's DKMS
    version and libesca's file name."""
    return (built.project / "VERSION").read_text().strip()


def expected_line(i: int) -> bytes:
    return f"{i:08d} ".encode() + bytes(ord("a") + (i * 7 + k) % 26 for k in range(48)) + b"\n"


@pytest.fixture(scope="session")
def previous() -> Previous:
    return previous_release()


def apt(*args: str) -> subprocess.CompletedProcess[str]:
    """apt-get as an administrator runs it: no --force-conf*, standard input
    closed (sh), so that a conffile question would end dpkg with an error."""
    return sh("apt-get", *args, check=False, timeout=1800)


def purge_all() -> None:
    present = [p for p in PACKAGES if sh("dpkg-query", "-W", p, check=False).returncode == 0]
    if present:
        sh("apt-get", "purge", "-y", *present, check=False, timeout=1800)


def dkms_status() -> str:
    return sh("dkms", "status", "-m", "esca").stdout.strip()


def dkms_versions(status: str) -> dict[str, dict[str, str]]:
    """{version: {kernel: state}} from `dkms status -m esca` (kernel "" when added only)."""
    found: dict[str, dict[str, str]] = {}
    for ln in status.splitlines():
        m = re.match(r"esca/([^,:]+)(?:, ([^,:]+))?[^:]*: (\S+)", ln)
        if m:
            found.setdefault(m[1], {})[m[2] or ""] = m[3]
    return found


def files_of(deb: Path) -> list[Path]:
    return [
        Path("/" + m.name.removeprefix(".").lstrip("/"))
        for m in DebFile(str(deb)).data.tgz().getmembers()
        if not m.isdir()
    ]


def multiarch() -> str:
    return sh("dpkg-architecture", "-qDEB_HOST_MULTIARCH").stdout.strip()


def esca_stat(stats_dir: Path) -> dict[int, dict]:
    """The installed esca-stat's view of the processes in stats_dir, by pid."""
    res = subprocess.run(
        ["/usr/bin/esca-stat", "--dir", str(stats_dir), "--json"],
        capture_output=True,
        text=True,
        env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
        cwd="/",
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, f"esca-stat: {res.returncode}\n{res.stdout}\n{res.stderr}"
    return {p["pid"]: p for p in json.loads(res.stdout)["processes"]}


def postinst_expectation(loaded_before: bool) -> tuple[str, ...]:
    """What esca-dkms's postinst must say about the module on this machine
    (the branches of debian/esca-dkms.postinst, in its order)."""
    running = os.uname().release
    if not Path(f"/lib/modules/{running}/build/include").exists():
        return (
            f"esca-dkms: no headers for the running kernel {running}: the module was not built",
        )
    if loaded_before:
        return ("esca-dkms: an esca module is loaded already: the new one loads at the next boot",)
    return (
        "esca-dkms: module esca loaded.",
        "esca-dkms: module esca not loaded: this kernel refuses its signature",
        "esca-dkms: module esca not loaded now (this kernel cannot load it here)",
    )


class Reader(threading.Thread):
    """Accepts the writer's connection and keeps everything it sends."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(60)
        self.port = self.listener.getsockname()[1]
        self.data = bytearray()
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                while chunk := conn.recv(65536):
                    with self.lock:
                        self.data += chunk
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.listener.close()

    def lines(self) -> int:
        with self.lock:
            return self.data.count(b"\n")


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_upgrade_from_previous_release(
    built: Built, previous: Previous, headers_kernels: list[str], tmp_path: Path
) -> None:
    require_root()
    forced = [ln for ln in sh("apt-config", "dump").stdout.splitlines() if "force-conf" in ln]
    assert not forced, f"apt's configuration answers conffile questions itself: {forced}"
    old, new = previous.version, upstream_version(built)
    assert old != new
    purge_all()
    assert not dkms_status(), f"DKMS has an esca module from elsewhere:\n{dkms_status()}"
    leftovers = [*Path("/usr/src").glob("esca-*"), *Path("/var/lib/dkms").glob("esca")]
    assert not leftovers, f"left by an earlier run, no package's: remove {leftovers}"
    arch = multiarch()
    try:
        # The previous release, as its users have it.
        res = apt("install", "-y", "--no-install-recommends", *map(str, previous.debs()))
        assert res.returncode == 0, (
            f"installing {previous.package_version}:\n{res.stdout}{res.stderr}"
        )
        versions = dkms_versions(dkms_status())
        assert set(versions) == {old}, dkms_status()
        for kver in headers_kernels:
            assert versions[old].get(kver) == "installed", f"{kver}: {dkms_status()}"

        _upgrade_under_a_running_process(built, previous, headers_kernels, tmp_path, arch)

        # Purge: nothing of either release is left.
        res = apt("purge", "-y", *PACKAGES)
        assert res.returncode == 0, res.stdout + res.stderr
        for package in PACKAGES:
            status = sh("dpkg-query", "-W", "-f=${db:Status-Abbrev}", package, check=False)
            assert status.stdout.strip() in ("", "un", "pn"), f"{package}: {status.stdout!r}"
            assert not list(Path("/var/lib/dpkg/info").glob(f"{package}.*")), package
            assert not list(Path("/var/lib/dpkg/info").glob(f"{package}:*")), package
        assert not dkms_status(), dkms_status()
        assert not list(Path("/usr/src").glob("esca-*"))
        assert not Path("/var/lib/dkms/esca").exists()
        for kver in headers_kernels:
            assert not list(Path(f"/lib/modules/{kver}/updates/dkms").glob("esca.ko*")), kver
        assert sh("getent", "group", "esca", check=False).returncode != 0, "group esca left"
        left = [
            f
            for deb in [*previous.debs(), *(built.deb(p) for p in PACKAGES)]
            for f in files_of(deb)
            if f.exists() or f.is_symlink()
        ]
        assert not left, f"purge left files behind: {left}"
        assert "libesca.so.0" not in sh("ldconfig", "-p").stdout
    finally:
        purge_all()


def _upgrade_under_a_running_process(
    built: Built, previous: Previous, headers_kernels: list[str], tmp_path: Path, arch: str
) -> None:
    old, new = previous.version, upstream_version(built)
    src = tmp_path / "writer.c"
    src.write_text(WRITER_C)
    exe = compile_c(src, tmp_path / "writer", includes=())  # the previous esca.h
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    reader = Reader()
    reader.start()
    errors = tmp_path / "writer.stderr"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [str(exe), str(reader.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={
                "PATH": SYSTEM_PATH,
                "LD_PRELOAD": f"/usr/lib/{arch}/libesca.so.0",
                "ESCA_ADAPT": "0",
                "ESCA_STATS_DIR": str(stats_dir),
            },
        )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("ready "), f"writer: {ready!r} {errors.read_text()}"
        pid = proc.pid
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert f"/libesca.so.{old}" in maps, "the writer does not run under the previous libesca"
        wait_for("the writer's first thousand lines", lambda: reader.lines() >= 1000)
        before = esca_stat(stats_dir)[pid]  # the previous release's esca-stat
        assert before["backend"] in ("module", "uring"), before
        assert before["deferred"]["write"] > 0 and before["flushes"] > 0, before

        # The upgrade, with the writer running.
        loaded_before = Path("/sys/module/esca").is_dir()
        t0 = time.monotonic()
        res = apt(
            "install", "-y", "--no-install-recommends", *(str(built.deb(p)) for p in PACKAGES)
        )
        out = res.stdout + res.stderr
        upgrade_secs = time.monotonic() - t0
        print(
            f"upgrade {previous.package_version} -> {built.package_version}: {upgrade_secs:.0f} s"
        )
        assert res.returncode == 0, f"upgrade failed:\n{out}"
        assert "Configuration file '" not in out and "(Y/I/N/O/D/Z)" not in out, out
        for package in PACKAGES:
            assert re.search(
                rf"Unpacking {re.escape(package)}(?::\w+)? \({re.escape(built.package_version)}\)"
                rf" over \({re.escape(previous.package_version)}\)",
                out,
            ), f"{package} was not upgraded from {previous.package_version}:\n{out}"
        # DKMS: the previous module removed (its prerm), the new one built for
        # every kernel that has headers.
        # ("esca-0.2.0" in Debian 12's dkms, "esca/0.2.0" in 13's)
        deleted = rf"Deleting module esca[-/]{re.escape(old)} completely from the DKMS tree"
        assert re.search(deleted, out), out
        versions = dkms_versions(dkms_status())
        assert set(versions) == {new}, f"DKMS after the upgrade:\n{dkms_status()}"
        for kver in headers_kernels:
            assert versions[new].get(kver) == "installed", f"{kver}: {dkms_status()}\n{out}"
            kos = sorted(Path(f"/lib/modules/{kver}/updates/dkms").glob("esca.ko*"))
            assert len(kos) == 1, f"{kver}: {kos}"
            version = sh("modinfo", "-F", "version", kos[0]).stdout.strip()
            assert version == new, f"{kos[0]} is version {version}"
        assert not Path(f"/usr/src/esca-{old}").exists()
        assert not Path(f"/var/lib/dkms/esca/{old}").exists()
        assert Path(f"/usr/src/esca-{new}/dkms.conf").is_file()
        # What the postinst says about the module on this machine.
        said = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("esca-dkms: ")]
        expected = postinst_expectation(loaded_before)
        assert any(ln.startswith(expected) for ln in said), (
            f"esca-dkms's postinst said {said}, expected one of {expected}"
        )
        # No conffile of either release was set aside or asked about.
        for deb in [*previous.debs(), *(built.deb(p) for p in PACKAGES)]:
            for f in files_of(deb):
                for suffix in (".dpkg-dist", ".dpkg-new", ".dpkg-old", ".dpkg-bak"):
                    assert not Path(f"{f}{suffix}").exists(), f"{f}{suffix}"
        # New processes get the new library; the running one keeps the one it
        # mapped (deleted from the disk now) and goes on batching.
        lib = Path(f"/usr/lib/{arch}/libesca.so.0").resolve()
        assert lib.name == f"libesca.so.{new}", lib
        assert proc.poll() is None, f"the writer died in the upgrade: {errors.read_text()}"
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert re.search(rf"/libesca\.so\.{re.escape(old)} \(deleted\)", maps), maps
        lines_at_upgrade = reader.lines()
        wait_for(
            "the writer's lines after the upgrade",
            lambda: reader.lines() >= lines_at_upgrade + 1000,
        )
        after = esca_stat(stats_dir)[pid]  # the new release's esca-stat
        assert after["flushes"] > before["flushes"], (before, after)
        assert after["deferred"]["write"] > before["deferred"]["write"], (before, after)
        assert after["errors"] == 0 and after["bytes_lost"] == 0, after

        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"writer exited {proc.returncode}: {errors.read_text()}"
        reader.join(timeout=60)
        assert not reader.is_alive() and reader.error is None, reader.error
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Its output stayed whole: every line, in order, none torn or lost.
    stopped = re.fullmatch(r"stopped (\d+)\n", rest)
    assert stopped, rest
    count = int(stopped[1])
    data = bytes(reader.data)
    end = f"END {count}\n".encode()
    assert data.endswith(end), data[-200:]
    body = data[: -len(end)]
    assert body.count(b"\n") == count
    expected = b"".join(expected_line(i) for i in range(count))
    if body != expected:
        at = next(
            (i for i, (a, b) in enumerate(zip(body, expected, strict=False)) if a != b),
            min(len(body), len(expected)),
        )
        pytest.fail(f"the writer's output differs at byte {at}: {body[at - 60 : at + 60]!r}")
