"""Inside the guest: run the installed patched nginx with the installed esca-run,
check every byte it serves, read libesca's counters, count system calls.

Runs with Debian's python3 and imports esca_pkg from the installed esca-tools
package (not from the repository): the operator's tool is what is tested.
The verifying client is tests/servers/httpcheck.py of the repository.

    serve_check.py --repo R --out F.json --workers N --backend module
    serve_check.py --repo R --out F.json --measure

Exit 0 when everything held; the JSON has the details either way.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from esca_pkg.log import EscaError
from esca_pkg.runtime import stats
from esca_pkg.servers import measure as measurer
from esca_pkg.servers import recipe, serve
from esca_pkg.servers.serve import Esca, ServerRun

LOG_ERRORS = re.compile(r"\[(error|crit|alert|emerg)\]")
MEASURE_FILE = "f20k.bin"


def start(
    base: Path, www: Path, workers: int, backend: str | None, esca_env: dict[str, str] | None = None
) -> ServerRun:
    """nginx on 127.0.0.1 with workers as www-data (the recipe's user), under the
    installed esca-run with its default live-counters place (/run/esca/nginx);
    backend None runs /usr/sbin/nginx itself, without libesca.  esca_env:
    libesca tuning variables (esca-run names them for the workers)."""
    esca = Esca(backend=backend, env=esca_env or {}) if backend is not None else None
    # TCG: nginx and Python start slowly
    return serve.start(recipe.get("nginx"), base, www, workers, esca, wait=120)


def error_lines(run: ServerRun) -> list[str]:
    text = run.error_log.read_text(errors="replace") if run.error_log.exists() else ""
    return [ln for ln in text.splitlines() if LOG_ERRORS.search(ln)]


def serve_and_check(args: argparse.Namespace, httpcheck: object) -> dict:
    base = serve.new_base(f"e2e-{args.workers}w-")
    files = serve.make_site(base / "www")
    expected = httpcheck.Expected(files)
    report: dict = {"workers": args.workers, "backend": args.backend, "problems": []}
    run = start(base, base / "www", args.workers, args.backend)
    try:
        pids = run.serving_pids()
        report["worker_pids"] = pids
        maps = [Path(f"/proc/{p}/maps").read_text() for p in pids]
        report["libesca_mapped"] = all("libesca.so" in m for m in maps)
        t0 = time.monotonic()
        problems = httpcheck.fetch_all(run.port, expected, keepalive=True)
        problems += httpcheck.fetch_all(run.port, expected, keepalive=False)
        n, more = httpcheck.concurrent_load(
            run.port, expected, clients=args.clients, rounds=args.rounds
        )
        problems += more
        report["concurrent_requests"] = n
        report["client_seconds"] = round(time.monotonic() - t0, 1)
        report["problems"] = problems
        # Counters are live files: read them while the workers run.
        assert run.stats_dir is not None
        report["stats_dir"] = str(run.stats_dir)
        procs = [s for s in stats.read_dir(run.stats_dir) if s.pid in pids]
        report["stats"] = [s.line() for s in procs]
        report["stats_backends"] = sorted({s.backend for s in procs})
        report["deferred"] = sum(s.deferred_total for s in procs)
        report["flushes"] = sum(s.counters["flushes"] for s in procs)
        report["kernel_entries"] = sum(s.counters["kernel_entries"] for s in procs)
        report["bytes_lost"] = sum(s.counters["bytes_lost"] for s in procs)
        report["stats_workers"] = len(procs)
        # ... and the installed esca-stat shows the same workers
        shown = subprocess.run(
            ["esca-stat", "--json"], capture_output=True, text=True, timeout=120, check=False
        )
        seen = json.loads(shown.stdout)["processes"] if shown.returncode == 0 else []
        report["esca_stat_pids"] = sorted(p["pid"] for p in seen if p["pid"] in pids)
        report["esca_stat_error"] = shown.stderr.strip()[-500:]
        report["alive"] = run.process.poll() is None and len(run.serving_pids()) == args.workers
    finally:
        out = run.stop(timeout=30)
    report["esca_run_output"] = out[-3000:]
    report["error_log"] = error_lines(run)
    failures = []
    if problems:
        failures.append(f"{len(problems)} responses differ or failed")
    if not report["libesca_mapped"]:
        failures.append("libesca is not mapped in every worker")
    if report["stats_workers"] != args.workers:
        failures.append(f"counters of {report['stats_workers']} workers, expected {args.workers}")
    if report["esca_stat_pids"] != sorted(pids):
        failures.append(f"esca-stat showed workers {report['esca_stat_pids']}, not {sorted(pids)}")
    if report["stats_backends"] != [args.backend]:
        failures.append(f"workers ran backend(s) {report['stats_backends']}, not {args.backend}")
    if args.backend != "off" and report["deferred"] <= 0:
        failures.append("no deferred calls")
    if report["bytes_lost"]:
        failures.append(f"{report['bytes_lost']} bytes lost")
    if not report["alive"]:
        failures.append("nginx or a worker died during the run")
    if report["error_log"]:
        failures.append("errors in nginx's error log")
    report["failures"] = failures
    return report


def count_with_strace(run: ServerRun, seconds: int, connections: int) -> measurer.Measurement:
    """Fallback when perf cannot attach: strace -c -f on the worker."""
    pid = run.serving_pids()[0]
    out = run.base / "strace.txt"
    st = subprocess.Popen(
        ["strace", "-c", "-f", "-o", str(out), "-p", str(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    w = measurer.run_wrk(f"{run.url}/{MEASURE_FILE}", connections, 1, seconds, None)
    st.send_signal(signal.SIGINT)
    st.wait(30)
    total = re.search(r"^100\.00\s+\S+\s+\S+\s+(\d+)", out.read_text(), re.M)
    if not total:
        raise EscaError("cannot read strace -c output")
    return measurer.Measurement(w.requests, w.seconds, int(total.group(1)), 0)


def measure(args: argparse.Namespace) -> dict:
    """Syscalls per request on the 20 KB file, one worker: plain nginx (no
    libesca), esca-run --backend off (libesca preloaded, pass-through),
    --backend module as shipped (libesca's adaptive batching passes segments
    with too few calls through) and --backend module with ESCA_ADAPT=0 (every
    segment batched)."""
    base = serve.new_base("e2e-measure-")
    serve.make_site(base / "www")
    rows = []
    tool = "perf"
    for label, backend, env in (
        ("vanilla", None, None),
        ("off", "off", None),
        ("module", "module", None),
        ("module-noadapt", "module", {"ESCA_ADAPT": "0"}),
    ):
        run = start(base / label, base / "www", 1, backend, env)
        try:
            # Warm-up (TCG): the worker opens the file cache, wrk connects.
            subprocess.run(
                ["wrk", "-c", "4", "-t", "1", "-d", "1s", f"{run.url}/{MEASURE_FILE}"],
                capture_output=True,
                check=False,
            )
            m = None
            if tool == "perf":
                try:
                    m = measurer.measure(
                        run,
                        f"/{MEASURE_FILE}",
                        seconds=args.seconds,
                        connections=args.connections,
                        threads=1,
                    )
                    if m.syscalls == 0:
                        raise EscaError("perf counted no system calls")
                except EscaError as err:
                    rows.append({"label": label, "note": f"perf: {err}; strace -c -f instead"})
                    tool = "strace"
            if m is None:
                m = count_with_strace(run, args.seconds, args.connections)
            procs = stats.read_dir(run.stats_dir) if run.stats_dir else []
            rows.append(
                {
                    "label": label,
                    "requests": m.requests,
                    "seconds": round(m.seconds, 2),
                    "rps": round(m.rps, 1),
                    "syscalls": m.syscalls,
                    "syscalls_per_request": round(m.syscalls_per_request, 2),
                    "errors": m.errors,
                    "tool": tool,
                    "stats": [s.line() for s in procs],
                }
            )
        finally:
            run.stop(timeout=30)
    return {
        "file": MEASURE_FILE,
        "connections": args.connections,
        "rows": rows,
        "failures": [
            f"{r['label']}: {r['errors']} request errors" for r in rows if r.get("errors")
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--backend", default="module")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    for tool in ("esca-run", "esca-stat", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed in the guest", file=sys.stderr)
            return 2
    sys.path.insert(0, str(args.repo / "tests" / "servers"))
    import httpcheck  # the repository's verifying client

    try:
        report = measure(args) if args.measure else serve_and_check(args, httpcheck)
    except EscaError as err:
        report = {"failures": [f"error: {err}"]}
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
