"""The servers' own test suites (nginx-tests, lighttpd's tests/) run against the
installed +esca1 builds, without libesca and under it (issue 19, rule 8).

Each test file runs as its own process (perl FILE.t), as an unprivileged user
(nobody), with a hard timeout, and its raw TAP is parsed here: a failing subtest
is (file, number); a file that dies, breaks its plan or times out fails as a
whole ("plan", "exit", "timeout").  The server binary the suite starts is a
wrapper script that execs the installed one, with libesca's environment for
the passes under libesca and without it for the plain pass: only the server
(master and workers) is preloaded, not the perl harness or its backends.
nginx gives its workers an emptied environment, but libesca reads its
configuration when it is loaded, in the master (docs/libesca.md,
"Configuration is read at load time"): no `env` directive is needed, which
probe() checks through the workers' ESCA_STATS=1 lines.

By hand (root, servers installed, libesca built): scripts/upstream-tests, or

    .venv/bin/python tests/servers/upstream_support.py nginx [--pass plain|uring|default]
        [--jobs N] [--library PATH] [--keep] [FILE.t ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_SOURCES = ROOT.parent / "shared" / "sources"
TEST_BUILD = ROOT / "build" / "servers-test"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
USER = "nobody"
#: nginx-tests at the revision of each release's nginx (../shared/sources/README.md)
NGINX_TESTS = {"1.22.1": "nginx-tests-3356f91", "1.26.3": "nginx-tests-2dbb350"}
NGINX_MODULES = Path("/usr/lib/nginx/modules")
LIGHTTPD_MODULES = Path("/usr/lib/lighttpd")


@dataclass(frozen=True)
class Pass:
    """One run of a suite: the environment the server gets (none: plain)."""

    name: str
    env: dict[str, str] = field(default_factory=dict)


def passes(library: Path) -> dict[str, Pass]:
    return {
        "plain": Pass("plain"),
        "uring": Pass(
            "uring", {"LD_PRELOAD": str(library), "ESCA_BACKEND": "uring", "ESCA_ADAPT": "0"}
        ),
        "default": Pass("default", {"LD_PRELOAD": str(library)}),
        # in a guest with the module loaded (test_upstream_suites.py)
        "module": Pass(
            "module", {"LD_PRELOAD": str(library), "ESCA_BACKEND": "module", "ESCA_ADAPT": "0"}
        ),
    }


PASS_NAMES = ("plain", "uring", "default", "module")


# --- TAP -------------------------------------------------------------------

_PLAN = re.compile(r"^1\.\.(\d+)(?:\s*#\s*(?:skip\w*)\s*(.*))?", re.IGNORECASE)
_TEST = re.compile(r"^(not )?ok\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
_DIRECTIVE = re.compile(r"(?:^|\s)#\s*(TODO|SKIP)\b", re.IGNORECASE)


@dataclass
class FileResult:
    file: str
    seconds: float = 0.0
    returncode: int | None = None
    planned: int | None = None
    ran: int = 0
    skip_all: str | None = None
    #: failing subtest -> its description ("plan", "exit", "timeout": the file as a whole)
    failed: dict[str, str] = field(default_factory=dict)
    diagnostics: list[str] = field(default_factory=list)
    #: error log lines worth showing (errors and alerts of the server, esca: lines)
    log: list[str] = field(default_factory=list)
    output: str = ""
    #: the file's work directory, when it was kept (Suite.keep_failed)
    kept: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def parse_tap(result: FileResult, stdout: str, stderr: str) -> FileResult:
    seen: set[int] = set()
    number = 0
    for line in stdout.splitlines():
        if m := _PLAN.match(line):
            result.planned = int(m.group(1))
            if result.planned == 0:
                result.skip_all = (m.group(2) or "").strip() or "skipped"
        elif m := _TEST.match(line):
            number = int(m.group(2)) if m.group(2) else number + 1
            seen.add(number)
            desc = m.group(3)
            directive = _DIRECTIVE.search(desc)
            if m.group(1) and not (directive and directive.group(1).upper() == "TODO"):
                result.failed[str(number)] = desc.strip()
        elif line.startswith("Bail out!"):
            result.failed["bail"] = line
        elif line.startswith("#"):
            result.diagnostics.append(line)
    result.ran = len(seen)
    result.diagnostics += [ln for ln in stderr.splitlines() if ln.strip()]
    if result.planned is None:
        result.failed.setdefault("plan", f"no plan, {result.ran} subtests ran")
    elif result.planned != result.ran and not result.skip_all:
        result.failed.setdefault("plan", f"planned {result.planned}, ran {result.ran}")
    if result.returncode not in (0, None) and not result.failed:
        result.failed["exit"] = f"exit status {result.returncode}"
    return result


# --- running ---------------------------------------------------------------

_LOG_LINE = re.compile(
    r"\[(emerg|alert|crit|error)\]|exited on signal|\(core dumped\)|^esca: |"
    r"\(\d+\) ?(error|warning|fatal)|assert|segfault",
    re.IGNORECASE,
)


def interesting(lines: Iterable[str]) -> list[str]:
    return [ln for ln in lines if _LOG_LINE.search(ln)]


def normalized(line: str) -> str:
    """A log line without its time stamp, pids, test directory, ports and
    connection numbers: comparable across runs."""
    line = re.sub(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", line)  # nginx
    line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d: ", "", line)  # lighttpd
    line = re.sub(r"\d+#\d+: (\*\d+ )?", "", line)
    line = re.sub(r"/\S*/nginx-test-\w+", "TESTDIR", line)
    return re.sub(r"\b\d{3,}\b", "N", line)


@dataclass
class Job:
    """What one test file needs: its argv, cwd, environment and where its
    server's logs are once it is done."""

    file: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    logs: Callable[[], list[str]]
    #: its own directory (nginx-tests: TMPDIR, the test directories in it)
    scratch: Path
    cleanup: Callable[[], None] = lambda: None


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_job(job: Job, timeout: float, keep_failed: bool = False) -> FileResult:
    user = pwd.getpwnam(USER)
    env = {"PATH": SYSTEM_PATH, "LC_ALL": "C", "HOME": str(job.cwd), **job.env}
    start = time.monotonic()
    proc = subprocess.Popen(
        job.argv,
        cwd=job.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        start_new_session=True,
    )
    result = FileResult(job.file)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        result.failed["timeout"] = f"killed after {timeout:.0f} s"
    finally:
        # whatever the file left behind (a server, a backend daemon): its group
        kill_group(proc.pid)
    result.seconds = time.monotonic() - start
    result.returncode = proc.returncode
    result.output = stdout + stderr
    parse_tap(result, stdout, stderr)
    result.log = interesting(job.logs())
    if keep_failed and not result.ok:
        result.kept = job.scratch
    else:
        job.cleanup()
    return result


@dataclass
class PassResult:
    suite: str
    name: str
    seconds: float
    files: dict[str, FileResult]

    def failures(self) -> set[tuple[str, str]]:
        return {(f, n) for f, r in self.files.items() for n in r.failed}

    def counts(self) -> str:
        total = sum(r.ran for r in self.files.values())
        failed = sum(len(r.failed) for r in self.files.values())
        skipped = sum(1 for r in self.files.values() if r.skip_all)
        return (
            f"{len(self.files)} files ({skipped} skipped whole), {total} subtests, {failed} failing"
        )


# --- the suites ------------------------------------------------------------


class Suite:
    name: str = ""
    #: test files run at once (each starts its own server on ports of its own)
    jobs: int = 1
    #: one file's hard timeout
    file_timeout: float = 300.0
    #: a short file that serves a few requests: probe() runs it under libesca
    probe_file: str = ""
    #: leave the work directory of each failing file (by hand: --keep)
    keep_failed: bool = False

    def __init__(self, base: Path) -> None:
        self.base = base
        self._scratch = 0
        self._lock = threading.Lock()

    def prepare(self) -> None:
        raise NotImplementedError

    def files(self) -> list[str]:
        raise NotImplementedError

    def binary(self) -> Path:
        raise NotImplementedError

    def job(self, file: str, wrapper: Path, scratch: Path) -> Job:
        raise NotImplementedError

    def scratch(self) -> Path:
        """A new directory for one file's run, owned by the unprivileged user.
        Short (base/s/N): nginx-tests puts unix sockets in it (108 bytes at most)."""
        with self._lock:
            self._scratch += 1
            path = self.base / "s" / str(self._scratch)
        path.mkdir(parents=True)
        user = pwd.getpwnam(USER)
        os.chown(path, user.pw_uid, user.pw_gid)
        return path

    def packages(self, dist: Path) -> list[Path]:
        """The .debs of our build (in dist) that the suite's configurations
        need besides the server (after prepare())."""
        return []

    def wrapper(self, run: Pass, stats: bool = False) -> Path:
        """The server binary the suite starts: a script that execs the installed
        one with the pass's environment (readable by the unprivileged user)."""
        path = self.base / f"{self.name}-{run.name}{'-stats' if stats else ''}"
        env = {**run.env, **({"ESCA_STATS": "1"} if stats else {})}
        exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
        path.write_text(f'#!/bin/sh\n{exports}exec {self.binary()} "$@"\n')
        path.chmod(0o755)
        return path

    def run(
        self,
        run: Pass,
        files: list[str] | None = None,
        deadline: float | None = None,
        jobs: int | None = None,
        progress: Callable[[FileResult], None] | None = None,
    ) -> PassResult:
        """Every file (or those named) once, `jobs` at a time; files not started
        by `deadline` (time.monotonic()) fail with "not run"."""
        wrapper = self.wrapper(run)
        names = files if files is not None else self.files()
        start = time.monotonic()

        def one(name: str) -> FileResult:
            if deadline is not None and time.monotonic() > deadline:
                return FileResult(name, failed={"not run": "the pass ran out of time"})
            job = self.job(name, wrapper, self.scratch())
            result = run_job(job, self.file_timeout, self.keep_failed)
            if progress:
                progress(result)
            return result

        with ThreadPoolExecutor(max_workers=jobs or self.jobs) as pool:
            results = list(pool.map(one, names))
        return PassResult(
            self.name, run.name, time.monotonic() - start, {r.file: r for r in results}
        )


def chown_tree(path: Path) -> None:
    user = pwd.getpwnam(USER)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(path)], check=True)


def installed_version(package: str) -> str | None:
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", package],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": SYSTEM_PATH},
    )
    status, _, version = res.stdout.partition(" ")
    return version if res.returncode == 0 and status == "installed" else None


def not_installed(debs: list[Path]) -> list[Path]:
    """The .debs (NAME_VERSION_ARCH.deb) whose version is not the one installed."""
    return [d for d in debs if installed_version(d.name.split("_")[0]) != d.name.split("_")[1]]


def upstream_version(debian_version: str) -> str:
    return debian_version.split(":", 1)[-1].rsplit("-", 1)[0]


class Unavailable(Exception):
    """The suite cannot run on this machine (the reason says why)."""


class NginxTests(Suite):
    """nginx-tests (../shared/sources) at the revision of the installed nginx."""

    name = "nginx"
    jobs = 4
    probe_file = "http_keepalive.t"

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        version = installed_version("nginx")
        if version is None:
            raise Unavailable("nginx is not installed")
        upstream = upstream_version(version)
        revision = NGINX_TESTS.get(upstream)
        if revision is None:
            raise Unavailable(
                f"no nginx-tests revision known for nginx {upstream} "
                f"(known: {', '.join(NGINX_TESTS)}; add one to NGINX_TESTS)"
            )
        self.tarball = SHARED_SOURCES / f"{revision}.tar.gz"
        if not self.tarball.is_file():
            raise Unavailable(f"{self.tarball} is missing (nginx-tests for nginx {upstream})")
        self.tree = base / revision
        self.version = version.split(":", 1)[-1]

    def binary(self) -> Path:
        return Path("/usr/sbin/nginx")

    def prepare(self) -> None:
        subprocess.run(
            ["tar", "-xzf", str(self.tarball), "-C", str(self.base), "--no-same-owner"],
            check=True,
            env={"PATH": SYSTEM_PATH},
        )
        if not self.tree.is_dir():
            raise Unavailable(f"{self.tarball} has no top directory {self.tree.name}")
        chown_tree(self.base)

    def files(self) -> list[str]:
        return sorted(p.name for p in self.tree.glob("*.t"))

    def packages(self, dist: Path) -> list[Path]:
        # Test::Nginx loads every module `nginx -V` lists as =dynamic from
        # TEST_NGINX_MODULES: Debian's libnginx-mod-* of the same build
        return sorted(dist.glob(f"libnginx-mod-*_{self.version}_*.deb"))

    def job(self, file: str, wrapper: Path, scratch: Path) -> Job:
        tmp = scratch

        def logs() -> list[str]:
            out = []
            for log in sorted(tmp.glob("nginx-test-*/*.log")) + sorted(
                tmp.glob("nginx-test-*/stderr")
            ):
                out += [f"{log.name}: {ln}" for ln in log.read_text(errors="replace").splitlines()]
            return out

        return Job(
            file,
            ["perl", file],
            self.tree,
            {
                "TEST_NGINX_BINARY": str(wrapper),
                "TEST_NGINX_MODULES": str(NGINX_MODULES),
                "TEST_NGINX_LEAVE": "1",
                "TMPDIR": str(tmp),
            },
            logs,
            tmp,
            lambda: shutil.rmtree(tmp, ignore_errors=True),
        )


class LighttpdTests(Suite):
    """tests/ of Debian's lighttpd source package, of the installed version,
    against /usr/sbin/lighttpd (LIGHTTPD_EXE_PATH, modules from their
    compiled-in place)."""

    name = "lighttpd"
    jobs = 1  # the files share tests/tmp/ (prepare.sh)
    file_timeout = 180.0
    probe_file = "request.t"

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        version = installed_version("lighttpd")
        if version is None:
            raise Unavailable("lighttpd is not installed")
        # our rebuild is Debian's source version plus +esca1
        self.version = version.split(":", 1)[-1]
        self.source_version = re.sub(r"\+esca\d+$", "", version)
        self.tree = base / "lighttpd-src"

    def binary(self) -> Path:
        return Path("/usr/sbin/lighttpd")

    @property
    def tests(self) -> Path:
        return self.tree / "tests"

    def find_dsc(self) -> Path:
        """The .dsc of the installed version: esca-pkg's build cache (dist/ or
        the build directory's sources/), else downloaded like esca-pkg does."""
        name = f"lighttpd_{self.source_version.split(':', 1)[-1]}.dsc"
        for d in (TEST_BUILD / "dist", TEST_BUILD / "build" / "sources", ROOT / "dist"):
            if (d / name).is_file():
                return d / name
        from esca_pkg.packaging.debian_source import SourceArchive

        archive = SourceArchive.for_build_dir(TEST_BUILD / "build")
        archive.update()
        dest = self.base / "source"
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "apt-get",
                *archive.options(),
                "-q",
                "--download-only",
                "--only-source",
                "source",
                f"lighttpd={self.source_version}",
            ],
            cwd=dest,
            capture_output=True,
            check=False,
            env={**os.environ, "PATH": SYSTEM_PATH},
        )
        if not (dest / name).is_file():
            raise Unavailable(f"cannot get the source package {name} (apt-get source failed)")
        return dest / name

    def prepare(self) -> None:
        dsc = self.find_dsc()
        subprocess.run(
            ["dpkg-source", "--no-check", "-x", str(dsc), str(self.tree)],
            check=True,
            capture_output=True,
            env={"PATH": SYSTEM_PATH, "LC_ALL": "C"},
        )
        lacking = [n for n in ("LightyTest.pm", "prepare.sh") if not (self.tests / n).is_file()]
        if lacking:
            raise Unavailable(
                f"{dsc.name} has no tests/{', tests/'.join(lacking)}: its test harness "
                "changed (update LighttpdTests in tests/servers/upstream_support.py)"
            )
        from libesca_support import compile_c  # tests/ (pytest's rootdir, or main())

        for prog in ("fcgi-responder", "scgi-responder"):
            compile_c(self.tests / f"{prog}.c", self.tests / prog, includes=())
        chown_tree(self.base)

    def files(self) -> list[str]:
        return sorted(p.name for p in self.tests.glob("*.t"))

    def packages(self, dist: Path) -> list[Path]:
        # modules the tests' configurations load that the lighttpd package
        # lacks (Debian ships mod_deflate, mod_openssl, ... apart)
        wanted = set()
        for conf in self.tests.glob("*.conf"):
            wanted |= set(re.findall(r'"(mod_\w+)"', conf.read_text(errors="replace")))
        missing = {m for m in wanted if not (LIGHTTPD_MODULES / f"{m}.so").exists()}
        debs = []
        for deb in sorted(dist.glob(f"lighttpd-mod*_{self.version}_*.deb")):
            listing = subprocess.run(
                ["dpkg-deb", "-c", str(deb)],
                capture_output=True,
                text=True,
                check=True,
                env={"PATH": SYSTEM_PATH},
            ).stdout
            if any(f"/{m}.so" in listing for m in missing):
                debs.append(deb)
        return debs

    def env(self, wrapper: Path) -> dict[str, str]:
        return {
            "srcdir": str(self.tests),
            "top_builddir": str(self.tree),
            "LIGHTTPD_EXE_PATH": str(wrapper),
        }

    def job(self, file: str, wrapper: Path, scratch: Path) -> Job:
        logs_dir = self.tests / "tmp" / "lighttpd" / "logs"
        env = self.env(wrapper)
        # prepare.sh before each file: a fresh tests/tmp (the files run one at a time)
        argv = ["sh", "-c", 'sh ./prepare.sh >/dev/null && exec perl "./$0"', file]

        def logs() -> list[str]:
            # error.log, and breakage.log: lighttpd's stderr (libesca's lines)
            out = []
            for log in sorted(logs_dir.glob("*.log")):
                if log.name != "lighttpd.access.log":
                    out += [
                        f"{log.name}: {ln}" for ln in log.read_text(errors="replace").splitlines()
                    ]
            return out

        return Job(file, argv, self.tests, env, logs, scratch, lambda: shutil.rmtree(scratch, True))


SUITES: dict[str, type[Suite]] = {"nginx": NginxTests, "lighttpd": LighttpdTests}


def new_suite(kind: str, base: Path) -> Suite:
    return SUITES[kind](base)


# --- libesca reaches the server ---------------------------------------------

_STATS = re.compile(r"esca: pid=(\d+) backend=(\S+) segments=(\d+) deferred=(\d+)")


def probe(suite: Suite, run: Pass) -> tuple[list[str], FileResult]:
    """Run the suite's probe file with ESCA_STATS=1 and return the libesca
    summary lines of the processes that deferred calls (the servers' workers,
    or lighttpd's one process): proof that the preload and its settings
    reached the processes that serve, with the pass's backend."""
    wrapper = suite.wrapper(run, stats=True)
    job = suite.job(suite.probe_file, wrapper, suite.scratch())
    cleanup, job.cleanup = job.cleanup, lambda: None
    result = run_job(job, suite.file_timeout)
    lines = [ln for ln in job.logs() + result.output.splitlines() if "esca: pid=" in ln]
    cleanup()
    serving = [
        ln[ln.index("esca: ") :]
        for ln in lines
        if (m := _STATS.search(ln))
        and int(m.group(4)) > 0
        and m.group(2) == run.env.get("ESCA_BACKEND", m.group(2))
        and m.group(2) != "off"
    ]
    return serving, result


# --- comparing ---------------------------------------------------------------


@dataclass
class Difference:
    file: str
    subtests: dict[str, str]
    diagnostics: list[str]
    log: list[str]
    #: the file's failures again on a second run of the file alone
    reproduced: bool = True

    def describe(self, max_lines: int = 25) -> str:
        tests = ", ".join(f"{n} ({d})" if d else n for n, d in self.subtests.items())
        out = [f"{self.file}: {tests}"]
        out += [f"    {ln}" for ln in self.diagnostics[:max_lines]]
        if self.log:
            out.append("    server log (lines not in the plain run):")
            out += [f"      {ln}" for ln in self.log[:max_lines]]
        return "\n".join(out)


def differences(
    suite: Suite, plain: PassResult, esca: PassResult, esca_pass: Pass, confirm: bool = True
) -> list[Difference]:
    """Subtests that fail under libesca and not without it.  With confirm, each
    file with such failures runs again alone, under libesca and without it: a
    failure that is kept must fail again under libesca and not plain (the others
    are kept with reproduced=False: flaky, reported but not counted)."""
    found = esca.failures() - plain.failures()
    out = []
    for file in sorted({f for f, _ in found}):
        numbers = {n for f, n in found if f == file}
        mine = esca.files[file]
        plain_log = (
            {normalized(ln) for ln in plain.files[file].log} if file in plain.files else set()
        )
        log = [ln for ln in mine.log if normalized(ln) not in plain_log]
        subtests = {n: mine.failed[n] for n in sorted(numbers, key=_order)}
        plain_diag = set(plain.files[file].diagnostics) if file in plain.files else set()
        diff = Difference(
            file, subtests, diagnostics_of(mine.diagnostics, subtests.values(), plain_diag), log
        )
        if confirm:
            again = suite.run(esca_pass, [file], jobs=1).files[file]
            plain_again = suite.run(Pass("plain"), [file], jobs=1).files[file]
            still = (set(again.failed) & numbers) - set(plain_again.failed)
            diff.reproduced = bool(still)
        out.append(diff)
    return out


def diagnostics_of(lines: list[str], descriptions: Iterable[str], known: set[str]) -> list[str]:
    """The diagnostics of the named subtests (Test::More's "#   Failed test 'D'"
    blocks, each cut to 12 lines) and the other lines not in `known`."""
    wanted = [f"'{d}'" for d in descriptions if d]
    out: list[str] = []
    block: list[str] | None = None
    for line in lines:
        if line.startswith("#   Failed test"):
            block = [] if any(w in line for w in wanted) else None
            if block is not None:
                out.append(line)
        elif line.startswith("# Looks like"):
            block = None
        elif block is not None and line.startswith("#"):
            if len(block) < 12:
                out.append(line)
            block.append(line)
        elif not line.startswith("#") and line not in known:
            out.append(line)
    return out


def _order(n: str) -> tuple[int, str]:
    return (int(n), "") if n.isdigit() else (1 << 30, n)


def report(results: list[PassResult]) -> str:
    return "\n".join(f"{r.suite:<9} {r.name:<8} {r.seconds:7.1f} s  {r.counts()}" for r in results)


@dataclass
class Comparison:
    """The plain pass, the passes under libesca and what fails only under them."""

    suite: str
    results: list[PassResult]
    diffs: dict[str, list[Difference]]
    #: the probe's libesca summary lines (serving processes), when probed
    serving: list[str] = field(default_factory=list)

    def not_run(self) -> list[str]:
        return sorted(
            f for r in self.results for f, res in r.files.items() if "not run" in res.failed
        )

    def broken_baseline(self) -> tuple[list[str], int]:
        """Files failing even without libesca, of those that ran."""
        ran = [r for r in self.results[0].files.values() if not r.skip_all]
        return [r.file for r in ran if r.failed], len(ran)

    def kept(self) -> dict[str, list[Difference]]:
        return {
            n: k for n, found in self.diffs.items() if (k := [d for d in found if d.reproduced])
        }

    def flaky(self) -> list[Difference]:
        return [d for found in self.diffs.values() for d in found if not d.reproduced]

    def document(self, library: Path) -> dict:
        """The JSON report (build/servers-test/upstream/KIND.json; the guest's)."""
        return {
            "suite": self.suite,
            "libesca_sha256": hashlib.sha256(library.read_bytes()).hexdigest(),
            "serving": self.serving,
            "passes": [
                {
                    "name": r.name,
                    "seconds": round(r.seconds, 1),
                    "summary": r.counts(),
                    "failing": {
                        f: {"subtests": res.failed, "diagnostics": res.diagnostics[:40]}
                        for f, res in sorted(r.files.items())
                        if res.failed
                    },
                    "not_run": sorted(f for f, res in r.files.items() if "not run" in res.failed),
                    "files": {
                        f: {
                            "seconds": round(res.seconds, 1),
                            "returncode": res.returncode,
                            "planned": res.planned,
                            "ran": res.ran,
                        }
                        for f, res in sorted(r.files.items())
                    },
                    "skipped_whole": sorted(f for f, res in r.files.items() if res.skip_all),
                }
                for r in self.results
            ],
            "report": report(self.results),
            "only_under_libesca": {
                name: [dataclasses.asdict(d) for d in found] for name, found in self.diffs.items()
            },
        }


def compare(
    suite: Suite,
    chosen: Iterable[Pass],
    files: list[str] | None = None,
    pass_timeout: float | None = None,
    progress: Callable[[str, FileResult], None] | None = None,
) -> Comparison:
    """The plain pass, then each chosen pass, each within pass_timeout; the
    files failing only under a pass run again alone (differences(confirm))."""
    results = []
    diffs: dict[str, list[Difference]] = {}
    for p in [Pass("plain"), *chosen]:

        def each(r: FileResult, name: str = p.name) -> None:
            if progress:
                progress(name, r)

        deadline = time.monotonic() + pass_timeout if pass_timeout else None
        res = suite.run(p, files, deadline=deadline, progress=each)
        results.append(res)
        if p.name != "plain":
            diffs[p.name] = differences(suite, results[0], res, p)
    return Comparison(suite.name, results, diffs)


def from_document(doc: dict) -> Comparison:
    """A Comparison read back from document() (the host reads the guest's):
    enough of it for the checks and the report."""
    results = []
    for p in doc["passes"]:
        files = {
            f: FileResult(
                f,
                seconds=v["seconds"],
                returncode=v["returncode"],
                planned=v["planned"],
                ran=v["ran"],
                failed={"not run": ""} if f in p["not_run"] else {},
            )
            for f, v in p["files"].items()
        }
        for f in p["skipped_whole"]:
            files[f].skip_all = "skipped"
        for f, fail in p["failing"].items():
            files[f].failed = fail["subtests"]
            files[f].diagnostics = fail["diagnostics"]
        results.append(PassResult(doc["suite"], p["name"], p["seconds"], files))
    diffs = {
        name: [Difference(**d) for d in found] for name, found in doc["only_under_libesca"].items()
    }
    return Comparison(doc["suite"], results, diffs, doc.get("serving", []))


# --- by hand -------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("suite", choices=sorted(SUITES))
    ap.add_argument("files", nargs="*", help="test files (default: all)")
    ap.add_argument(
        "--pass",
        dest="passes",
        action="append",
        choices=[n for n in PASS_NAMES if n != "plain"],
        help="passes under libesca compared with the plain one (repeatable; default: uring)",
    )
    ap.add_argument("--jobs", type=int, help="files at once")
    ap.add_argument(
        "--library",
        type=Path,
        default=ROOT / "libesca" / "build" / "libesca.so.0",
        help="libesca to preload (copied: the unprivileged user must read it)",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the work directory (and failing files' logs)"
    )
    ap.add_argument("--pass-timeout", type=float, help="seconds one pass may take")
    ap.add_argument(
        "--json", type=Path, help="write the comparison there (what the guest gives the host)"
    )
    args = ap.parse_intermixed_args(argv)
    if os.geteuid() != 0:
        ap.error("run as root (the suites run as the user nobody)")
    base = Path(tempfile.mkdtemp(prefix=f"esca-upstream-{args.suite}-", dir="/var/tmp"))
    base.chmod(0o755)
    try:
        library = base / "libesca.so.0"
        shutil.copy2(args.library, library)
        library.chmod(0o644)
        suite = new_suite(args.suite, base)
        suite.prepare()
        lacking = not_installed(suite.packages(TEST_BUILD / "dist"))
        if lacking:
            names = " ".join(map(str, lacking))
            print(f"the suite needs these packages of our build: apt install {names}")
            return 2
        suite.keep_failed = args.keep
        if args.jobs:
            suite.jobs = args.jobs
        available = passes(library)
        chosen = [available[n] for n in (args.passes or ["uring"])]
        # libesca must reach the processes that serve, with the pass's backend
        serving, probed = probe(suite, chosen[0])
        print(f"probe ({chosen[0].name}): " + ("; ".join(serving) or "NO process deferred calls"))

        def progress(name: str, r: FileResult) -> None:
            state = "skip" if r.skip_all else ("ok" if r.ok else "FAIL " + ",".join(r.failed))
            print(f"[{name}] {r.file:<40} {r.seconds:6.1f} s  {state}", flush=True)

        result = compare(suite, chosen, args.files or None, args.pass_timeout, progress)
        result.serving = serving
        if args.json:
            args.json.write_text(json.dumps(result.document(library), indent=1) + "\n")
        print(report(result.results))
        for r in result.results:
            for f in r.files.values():
                if f.failed:
                    print(
                        f"\n[{r.name}] {f.file}: "
                        + ", ".join(f"{n} {d}" for n, d in f.failed.items())
                    )
                    print("\n".join("    " + ln for ln in (f.diagnostics + f.log)[:40]))
                    if f.kept:
                        print(f"    (its test directory: {f.kept})")
        for name, found in result.diffs.items():
            print(f"\nfailing under {name} and not plain: {len(found)} files")
            for d in found:
                again = "" if d.reproduced else " (not again when run alone: flaky)"
                print(d.describe() + again)
        if not serving:
            print(probed.output[-3000:])
            return 1
        return int(bool(result.kept()))
    finally:
        if args.keep:
            print(f"work directory: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    sys.exit(main())
