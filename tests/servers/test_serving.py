"""The patched nginx and lighttpd, installed from our .debs, serving under
esca-run with the io_uring backend: every byte checked, resets survived,
calls deferred, error log clean; and the A/B numbers against vanilla."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from httpcheck import Expected, concurrent_load, fetch_all, reset_mid_response, wait_until
from servers_support import AB_RESULTS, SERVERS, Built, Site

from esca_pkg.runtime import stats
from esca_pkg.servers import measure, recipe, serve
from esca_pkg.servers.serve import Esca, ServerRun

pytestmark = pytest.mark.servers

KINDS = SERVERS
#: what an error looks like in each server's error log
_NGINX_ERROR = re.compile(r"\[(error|crit|alert|emerg)\]")
_LIGHTTPD_ERROR = re.compile(r"error|fail|assert|abort|segfault", re.IGNORECASE)


def log_errors(run: ServerRun) -> list[str]:
    text = run.error_log.read_text(errors="replace") if run.error_log.is_file() else ""
    pattern = _NGINX_ERROR if run.kind == "nginx" else _LIGHTTPD_ERROR
    return [ln for ln in text.splitlines() if pattern.search(ln) and not ln.startswith("esca: ")]


def live_stats(run: ServerRun) -> list[stats.ProcessStats]:
    assert run.stats_dir is not None
    pids = set(run.serving_pids())
    return [s for s in stats.read_dir(run.stats_dir) if s.pid in pids]


def exit_lines(run: ServerRun, output: str) -> list[str]:
    log = run.error_log.read_text(errors="replace") if run.error_log.is_file() else ""
    return [ln for ln in (log + output).splitlines() if ln.startswith("esca: pid=")]


@pytest.fixture(
    params=[(k, w) for k in KINDS for w in (1, 2)],
    ids=[f"{k}-{w}worker" for k in KINDS for w in (1, 2)],
)
def esca_server(
    request: pytest.FixtureRequest,
    installed_servers: Built,
    library: Path,
    site: Site,
    workdir: Path,
):
    kind, workers = request.param
    run = serve.start(
        recipe.get(kind),
        workdir / kind,
        site.www,
        workers,
        Esca(backend="uring", library=library, stats_dir=workdir / "stats"),
    )
    yield run
    run.stop()


def test_byte_exact_with_and_without_keepalive_under_load(
    esca_server: ServerRun, site: Site
) -> None:
    run = esca_server
    expected = Expected(site.files)
    assert len(run.serving_pids()) == run.workers

    for keepalive in (True, False):
        problems = fetch_all(run.port, expected, keepalive=keepalive, ranges=True, rounds=2)
        assert not problems, f"keepalive={keepalive}: " + "; ".join(problems[:10])
    requests, problems = concurrent_load(run.port, expected, clients=24, rounds=3)
    assert not problems, f"{len(problems)} of {requests} responses wrong: " + "; ".join(
        problems[:10]
    )

    # Every serving process runs libesca on io_uring and deferred calls.
    live = live_stats(run)
    assert {s.pid for s in live} == set(run.serving_pids()), (
        f"stats files {[s.pid for s in live]} vs serving processes {run.serving_pids()}"
    )
    assert all(s.backend == "uring" for s in live), [s.line() for s in live]
    assert sum(s.deferred_total for s in live) > 0, [s.line() for s in live]
    assert all(s.counters["bytes_lost"] == 0 for s in live), [s.line() for s in live]

    output = run.stop()
    assert run.process.returncode == 0, output[-2000:]
    lines = exit_lines(run, output)
    assert lines, f"no ESCA_STATS summary at exit in {run.error_log} or the output:\n{output}"
    assert all("backend=uring" in ln and "bytes_lost=0" in ln for ln in lines), lines
    errors = log_errors(run)
    assert not errors, "error log:\n" + "\n".join(errors[:20])


def test_resets_mid_response_leave_fd_count_stable(esca_server: ServerRun, site: Site) -> None:
    run = esca_server
    expected = Expected({"f500k.bin": site.files["f500k.bin"]})
    assert not fetch_all(run.port, expected, keepalive=True, ranges=False)
    time.sleep(0.3)
    baseline = run.fd_count()

    started = reset_mid_response(run.port, "/f500k.bin", count=150)
    assert started >= 140, f"only {started} of 150 responses started"

    settled = wait_until(lambda: run.fd_count() <= baseline + 2, timeout=15)
    assert settled, f"fd count {run.fd_count()} did not return to {baseline} after the resets"
    assert all(p.is_dir() for p in (Path(f"/proc/{pid}") for pid in run.serving_pids()))
    problems = fetch_all(run.port, Expected(site.files), keepalive=True, ranges=True)
    assert not problems, "after resets: " + "; ".join(problems[:10])
    live = live_stats(run)
    assert all(s.counters["bytes_lost"] == 0 for s in live), [s.line() for s in live]

    output = run.stop()
    errors = [
        e
        for e in log_errors(run)
        if not re.search(r"reset by peer|broken pipe|Connection reset", e, re.I)
    ]
    assert not errors, "error log:\n" + "\n".join(errors[:20]) + output[-500:]


@pytest.mark.parametrize("kind", KINDS)
def test_syscalls_per_request_vanilla_vs_esca(
    kind: str, installed_servers: Built, library: Path, site: Site, workdir: Path
) -> None:
    """Prints the A/B table at the end of the session (not a timed test: the
    assertions are about serving correctly under wrk, and perf seeing syscalls)."""
    results = {}
    for esca in (False, True):
        run = serve.start(
            recipe.get(kind),
            workdir / f"{kind}-{'esca' if esca else 'vanilla'}",
            site.www,
            1,
            Esca(backend="uring", library=library) if esca else None,
        )
        try:
            results[esca] = measure.measure(run, "/f20k.bin", seconds=3, connections=50)
        finally:
            run.stop()
        assert not log_errors(run), log_errors(run)[:10]
    van, esc = results[False], results[True]
    for m in (van, esc):
        assert m.requests > 1000 and m.errors == 0, m
        assert m.syscalls > m.requests, f"perf counted {m.syscalls} syscalls for {m.requests}"
    AB_RESULTS.append((kind, 1, van, esc))
    print(
        f"\n{kind}: vanilla {van.rps:.0f} req/s {van.syscalls_per_request:.2f} syscalls/req; "
        f"ESCA {esc.rps:.0f} req/s {esc.syscalls_per_request:.2f} syscalls/req"
    )
