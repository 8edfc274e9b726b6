"""The servers' own test suites under libesca (issue 19, rule 8): nginx-tests at
the revision of the installed nginx (../shared/sources) and the tests/ of
Debian's lighttpd source package run against our installed +esca1 builds,
once without libesca and once under it (ESCA_BACKEND=uring, ESCA_ADAPT=0;
lighttpd also with libesca's defaults), each file as the user nobody with a
hard timeout.  Every subtest that fails under libesca must fail without it too;
the difference is named with the test's diagnostics and the server's log lines.

How the suites are run: tests/servers/upstream_support.py; one suite by hand,
against the installed servers: scripts/upstream-tests nginx [FILE.t ...].

    scripts/test tests/servers/test_upstream_suites.py            # both suites
    scripts/test tests/servers/test_upstream_suites.py -k nginx
    ESCA_UPSTREAM_PASSES=uring,default scripts/test ...           # the passes under libesca
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import esca_vm as vm
import pytest
import upstream_support as upstream
from qemu_guest import GuestSpec
from qemu_guest import boot as boot_guest
from servers_support import SERVERS, TEST_BUILD, Built, apt_install

from esca_pkg.servers import serve

KINDS = [k for k in upstream.SUITES if k in SERVERS]
#: the passes under libesca compared with the plain one.  Measured on 2 cores
#: (4 files at once): an nginx-tests pass takes 2-2.5 min, so libesca's
#: defaults there are left to ESCA_UPSTREAM_PASSES=uring,default (+2.5 min);
#: a lighttpd pass takes under a second.
DEFAULT_PASSES = {"nginx": ("uring",), "lighttpd": ("uring", "default")}
#: the hard limit of one pass: files not started by then fail as "not run"
PASS_TIMEOUT = float(os.environ.get("ESCA_UPSTREAM_PASS_TIMEOUT", "1500"))
REPORTS = TEST_BUILD / "upstream"


def chosen_passes(kind: str) -> tuple[str, ...]:
    value = os.environ.get("ESCA_UPSTREAM_PASSES", "")
    names = tuple(n for n in (x.strip() for x in value.split(",")) if n)
    unknown = [n for n in names if n not in ("uring", "default")]
    if unknown:
        raise pytest.UsageError(f"ESCA_UPSTREAM_PASSES: unknown pass {', '.join(unknown)}")
    return names or DEFAULT_PASSES[kind]


@pytest.fixture
def upstream_base() -> Iterator[Path]:
    base = serve.new_base("esca-upstream-")
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


def write_report(kind: str, library: Path, result: upstream.Comparison) -> Path:
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / f"{kind}.json"
    path.write_text(json.dumps(result.document(library), indent=1) + "\n")
    return path


def check(result: upstream.Comparison, timeout: float) -> None:
    """What a comparison must show: every file ran, the plain run is a real
    run, and nothing fails only under libesca (flaky ones are warned of)."""
    table = upstream.report(result.results)
    not_run = result.not_run()
    assert not not_run, (
        f"a pass took longer than {timeout:.0f} s: "
        f"{len(not_run)} files not run, from {not_run[0]}\n{table}"
    )
    # the baseline must be a real run, not a suite that could not start its server
    broken, ran = result.broken_baseline()
    assert ran > 0, f"no file ran without libesca\n{table}"
    assert len(broken) <= max(2, ran // 10), (
        f"{len(broken)} of {ran} files fail even without libesca: {broken[:20]}"
    )
    if flaky := result.flaky():
        warnings.warn(
            "failed under libesca once, not again alone: "
            + "; ".join(f"{d.file} {','.join(d.subtests)}" for d in flaky),
            stacklevel=2,
        )
    message = [
        f"under {name}, failing only with libesca:\n" + "\n".join(d.describe() for d in kept)
        for name, kept in result.kept().items()
    ]
    assert not message, "\n\n".join(message) + f"\n\n{table}"


@pytest.mark.servers
@pytest.mark.parametrize("kind", KINDS)
def test_own_suite_fails_nothing_more_under_libesca(
    kind: str,
    installed_servers: Built,
    library: Path,
    upstream_base: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        suite = upstream.new_suite(kind, upstream_base)
        suite.prepare()
    except upstream.Unavailable as e:
        pytest.skip(str(e))
    # what the suite's configurations load: nginx's dynamic modules (named by
    # `nginx -V`), lighttpd's mod_deflate ... from our own build
    extra = upstream.not_installed(suite.packages(installed_servers.dist))
    if extra:
        apt_install(*extra)
    # a copy the unprivileged user can read, which a rebuild of the tree's
    # libesca cannot change during the run
    lib = upstream_base / "libesca.so.0"
    shutil.copy2(library, lib)
    lib.chmod(0o644)
    passes = upstream.passes(lib)

    serving, probe = upstream.probe(suite, passes["uring"])
    assert serving, (
        f"{suite.probe_file} under libesca: no ESCA_STATS=1 line of a process that deferred "
        f"calls (libesca did not reach the server?)\n" + probe.output[-3000:]
    )
    result = upstream.compare(suite, [passes[n] for n in chosen_passes(kind)], None, PASS_TIMEOUT)
    result.serving = serving
    path = write_report(kind, lib, result)
    with capsys.disabled():
        print(f"\n{upstream.report(result.results)}\n(details: {path})")
    check(result, PASS_TIMEOUT)


# --- the module backend, in a guest -------------------------------------------

#: what the guest runs of each suite: "all" (scripts/test), or "ci": all of
#: lighttpd's tests and the nginx-tests files of GUEST_CI_NGINX (.ci/run)
GUEST_SCOPE = os.environ.get("ESCA_UPSTREAM_GUEST", "all")
#: nginx-tests under TCG take about ten times as long as here; CI's selection:
#: the files that failed only under the libesca of issue 19 and those that
#: serve files (sendfile, ranges), keep connections, pipeline (body_chunked.t),
#: limit rates and proxy
GUEST_CI_NGINX = (
    "access_log.t",
    "autoindex.t",
    "body_chunked.t",
    "error_log.t",
    "gzip.t",
    "h2.t",
    "h2_ssl_proxy_cache.t",
    "http_keepalive.t",
    "http_keepalive_shutdown.t",
    "index.t",
    "limit_rate.t",
    "mp4.t",
    "not_modified.t",
    "proxy.t",
    "proxy_chunked.t",
    "proxy_limit_rate.t",
    "proxy_unfinished.t",
    "range.t",
    "slice.t",
    "ssl.t",
    "stream_proxy.t",
)


def guest_files(kind: str) -> list[str]:
    if GUEST_SCOPE == "all" or kind != "nginx":
        return []
    if GUEST_SCOPE != "ci":
        raise pytest.UsageError(f"ESCA_UPSTREAM_GUEST={GUEST_SCOPE}: say all or ci")
    return list(GUEST_CI_NGINX)


def guest_pass_timeout(kinds: list[str]) -> float:
    """One pass's limit in the guest (measured under TCG here: docs/servers.md)."""
    whole_nginx = "nginx" in kinds and not guest_files("nginx")
    return 3600.0 if whole_nginx else 900.0


@pytest.fixture(scope="module")
def guest_comparisons(
    installed_servers: Built, library: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, upstream.Comparison | str]:
    """One boot of the release's default kernel (scripts/kernels' first) with
    the module built for it: each suite plain and with ESCA_BACKEND=module in
    the guest (tests/servers/guest/upstream.sh); KIND -> its comparison, or
    why there is none."""
    base = tmp_path_factory.mktemp("upstream-guest")
    out: dict[str, upstream.Comparison | str] = {}
    kinds = []
    for kind in KINDS:
        # the packages the suite's configurations load, installed here: the
        # guest's root is this machine's, read-only
        prepared = base / f"prepare-{kind}"
        prepared.mkdir()
        try:
            suite = upstream.new_suite(kind, prepared)
            suite.prepare()
        except upstream.Unavailable as e:
            out[kind] = f"skip: {e}"
            continue
        unknown = sorted(set(guest_files(kind)) - set(suite.files()))
        assert not unknown, f"GUEST_CI_NGINX names files nginx-tests lacks: {unknown}"
        extra = upstream.not_installed(suite.packages(installed_servers.dist))
        if extra:
            apt_install(*extra)
        kinds.append(kind)
    if not kinds:
        return out
    kernel = vm.Kernel(vm.matrix_releases()[0]).check()
    ko, _ = vm.build_module(kernel, base / "module", "none")
    files = {kind: guest_files(kind) for kind in kinds}
    timeout = guest_pass_timeout(kinds)
    run = base / "guest"
    run.mkdir()
    # the guest sees the host's root, but its own /tmp: the module goes
    # into the run directory, which it shares
    shutil.copy(ko, run / "esca.ko")
    plan = {
        "KO": str(run / "esca.ko"),
        "LIBRARY": str(library),
        "SUITES": " ".join(kinds),
        "PASS_TIMEOUT": str(int(timeout)),
        # two passes and the files run again alone
        "SUITE_TIMEOUT": str(int(2.5 * timeout)),
        **{f"FILES_{kind}": " ".join(f) for kind, f in files.items()},
    }
    spec = GuestSpec(
        name=f"{kernel.release} upstream suites",
        vmlinuz=kernel.vmlinuz,
        initramfs=vm.initramfs(kernel, base / "initramfs.cpio"),
        rundir=run,
        runner=Path(__file__).parent / "guest" / "upstream.sh",
        plan=plan,
        kaslr=True,
        timeout=len(kinds) * 2.5 * timeout + 300,
    )
    guest = boot_guest(spec).require_finished()
    if guest.aborted:
        pytest.fail(f"the guest could not load the module:\n{guest.result('load').describe()}")
    for kind in kinds:
        step = guest.result(f"suite-{kind}")
        report = run / f"{kind}.json"
        if not report.exists():
            out[kind] = f"the guest wrote no comparison for {kind}:\n{step.describe()}"
            continue
        REPORTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(report, REPORTS / f"{kind}-module-guest.json")
        result = upstream.from_document(json.loads(report.read_text()))
        bad = step.bad_dmesg()
        out[kind] = (
            result
            if not bad
            else f"the kernel logged during {kind}'s suite:\n" + "\n".join(bad[:20])
        )
    return out


@pytest.mark.servers
@pytest.mark.vm
@pytest.mark.parametrize("kind", KINDS)
def test_own_suite_fails_nothing_more_under_the_module_in_a_guest(
    kind: str,
    guest_comparisons: dict[str, upstream.Comparison | str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = guest_comparisons[kind]
    if isinstance(result, str):
        if result.startswith("skip: "):
            pytest.skip(result[len("skip: ") :])
        pytest.fail(result)
    with capsys.disabled():
        print(f"\n(guest, module) {upstream.report(result.results)}")
    assert result.serving, (
        f"{kind}'s probe in the guest: no process deferred calls with backend=module "
        "(libesca did not reach the server, or the module was not used)"
    )
    check(result, guest_pass_timeout(list(KINDS)))


TAP = """1..6
ok 1 - response body
not ok 2 - limit_rate
#   Failed test 'limit_rate'
#   at limit_rate.t line 92.
not ok 3 # TODO & SKIP overflow
not ok 4 - slow # TODO not yet
ok 5 # skip no ssl
# Looks like you failed 1 test of 6.
"""


@pytest.mark.fast
def test_tap_failures_are_numbered_and_todo_is_no_failure() -> None:
    res = upstream.parse_tap(upstream.FileResult("x.t", returncode=1), TAP, "")
    assert res.failed == {"2": "limit_rate", "plan": "planned 6, ran 5"}
    skipped = upstream.parse_tap(
        upstream.FileResult("y.t", returncode=0), "1..0 # SKIP no ssl available\n", ""
    )
    assert skipped.ok and skipped.skip_all == "no ssl available"
    died = upstream.parse_tap(upstream.FileResult("z.t", returncode=255), "1..3\nok 1\n", "")
    assert died.failed == {"plan": "planned 3, ran 1"}
    crashed = upstream.parse_tap(upstream.FileResult("w.t", returncode=9), "1..1\nok 1\n", "")
    assert crashed.failed == {"exit": "exit status 9"}


@pytest.mark.fast
def test_difference_keeps_the_subtests_own_diagnostics_and_new_log_lines() -> None:
    lines = [ln for ln in TAP.splitlines() if ln.startswith("#")]
    assert upstream.diagnostics_of(lines, ["limit_rate"], set()) == [
        "#   Failed test 'limit_rate'",
        "#   at limit_rate.t line 92.",
    ]
    a = "error.log: 2026/12/07 02:46:34 [error] 16542#16542: *2 limiting requests, port 8081"
    b = "error.log: 2026/12/07 03:01:02 [error] 99#99: *7 limiting requests, port 8399"
    assert upstream.normalized(a) == upstream.normalized(b)


@pytest.mark.fast
def test_the_guests_report_reads_back_whole(tmp_path: Path) -> None:
    """The host judges the guest's comparison from its JSON: every count,
    failure, skip and difference must survive the round trip."""
    lib = tmp_path / "libesca.so.0"
    lib.write_bytes(b"\x7fELF")
    F = upstream.FileResult
    plain = upstream.PassResult(
        "nginx",
        "plain",
        12.0,
        {
            "a.t": F("a.t", 1.5, 0, 4, 4),
            "b.t": F("b.t", 0.5, 0, None, 0, skip_all="no ssl"),
            "c.t": F("c.t", 2.0, 1, 3, 3, failed={"2": "x"}, diagnostics=["#   Failed test 'x'"]),
        },
    )
    module = upstream.PassResult(
        "nginx",
        "module",
        13.0,
        {
            "a.t": F("a.t", 1.5, 1, 4, 4, failed={"3": "body"}),
            "b.t": F("b.t", 0.5, 0, None, 0, skip_all="no ssl"),
            "c.t": F("c.t", 0.0, failed={"not run": "the pass ran out of time"}),
        },
    )
    diff = upstream.Difference("a.t", {"3": "body"}, ["#   Failed test 'body'"], [], True)
    before = upstream.Comparison("nginx", [plain, module], {"module": [diff]}, ["esca: pid=1"])
    after = upstream.from_document(json.loads(json.dumps(before.document(lib))))
    assert upstream.report(after.results) == upstream.report(before.results)
    assert "7 subtests" in upstream.report(after.results)
    assert after.not_run() == before.not_run() == ["c.t"]
    assert after.broken_baseline() == before.broken_baseline() == (["c.t"], 2)
    assert after.kept() == before.kept() and after.serving == before.serving
    assert after.results[1].failures() == before.results[1].failures()
