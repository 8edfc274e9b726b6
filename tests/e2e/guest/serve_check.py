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
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from esca_pkg.log import EscaError
from esca_pkg.servers import runtime, stats

LOG_ERRORS = re.compile(r"\[(error|crit|alert|emerg)\]")
MEASURE_FILE = "f20k.bin"


def start(
    base: Path, www: Path, workers: int, backend: str | None, esca_env: dict[str, str] | None = None
) -> runtime.ServerRun:
    """nginx on 127.0.0.1 with workers as www-data (the packaged configuration's
    user); backend None runs /usr/sbin/nginx itself, without libesca.  esca_env:
    libesca tuning variables, passed to the workers with nginx's env directive."""
    base.mkdir(parents=True, exist_ok=True)
    port = runtime.free_port()
    conf = base / "nginx.conf"
    env_lines = "".join(f"env {k};\n" for k in esca_env or {})
    conf.write_text("user www-data;\n" + env_lines + runtime.nginx_config(base, www, port, workers))
    stats_dir = base / "stats"
    stats_dir.mkdir(mode=0o1777, exist_ok=True)
    os.chmod(stats_dir, 0o1777)
    if backend is None:
        argv = ["/usr/sbin/nginx", "-g", "daemon off;", "-c", str(conf)]
    else:
        argv = [
            "esca-run",
            "nginx",
            "--backend",
            backend,
            "--stats",
            "--stats-dir",
            str(stats_dir),
            "--",
            "-c",
            str(conf),
        ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCA_") and k != "LD_PRELOAD"}
    env.update(esca_env or {})
    output = base / "server.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    run = runtime.ServerRun(
        "nginx", base, port, workers, backend is not None, process, stats_dir, output
    )
    deadline = time.monotonic() + 120  # TCG: nginx and Python start slowly
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EscaError(
                f"nginx exited at start (code {process.returncode}): "
                + output.read_text(errors="replace")[-1500:]
            )
        if len(run.serving_pids()) >= workers and runtime._port_open(port):
            return run
        time.sleep(0.2)
    run.stop()
    raise EscaError(
        f"nginx did not serve on 127.0.0.1:{port} within 120 s: "
        + output.read_text(errors="replace")[-1500:]
    )


def error_lines(run: runtime.ServerRun) -> list[str]:
    text = run.error_log.read_text(errors="replace") if run.error_log.exists() else ""
    return [ln for ln in text.splitlines() if LOG_ERRORS.search(ln)]


def serve(args: argparse.Namespace, httpcheck: object) -> dict:
    base = runtime.new_base(f"e2e-{args.workers}w-")
    files = runtime.make_site(base / "www")
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
        procs = [s for s in stats.read_dir(run.stats_dir) if s.pid in pids]
        report["stats"] = [s.line() for s in procs]
        report["stats_backends"] = sorted({s.backend for s in procs})
        report["deferred"] = sum(s.deferred_total for s in procs)
        report["flushes"] = sum(s.counters["flushes"] for s in procs)
        report["kernel_entries"] = sum(s.counters["kernel_entries"] for s in procs)
        report["bytes_lost"] = sum(s.counters["bytes_lost"] for s in procs)
        report["stats_workers"] = len(procs)
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


def count_with_strace(
    run: runtime.ServerRun, seconds: int, connections: int
) -> runtime.Measurement:
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
    wrk = subprocess.run(
        [
            "wrk",
            "-c",
            str(connections),
            "-t",
            "1",
            "-d",
            f"{seconds}s",
            f"{run.url}/{MEASURE_FILE}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    st.send_signal(signal.SIGINT)
    st.wait(30)
    total = re.search(r"^100\.00\s+\S+\s+\S+\s+(\d+)", out.read_text(), re.M)
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", wrk.stdout)
    if not (total and m):
        raise EscaError("cannot read strace -c or wrk output")
    secs = float(m.group(2)) / (1000.0 if m.group(3) == "ms" else 1.0)
    return runtime.Measurement(int(m.group(1)), secs, int(total.group(1)), 0)


def measure(args: argparse.Namespace) -> dict:
    """Syscalls per request on the 20 KB file, one worker: plain nginx (no
    libesca), esca-run --backend off (libesca preloaded, pass-through),
    --backend module as shipped (libesca's adaptive batching passes segments
    with too few calls through) and --backend module with ESCA_ADAPT=0 (every
    segment batched)."""
    base = runtime.new_base("e2e-measure-")
    runtime.make_site(base / "www")
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
                    m = runtime.measure(
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
            procs = stats.read_dir(run.stats_dir)
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
    for tool in ("esca-run", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed in the guest", file=sys.stderr)
            return 2
    sys.path.insert(0, str(args.repo / "tests" / "servers"))
    import httpcheck  # the repository's verifying client

    try:
        report = measure(args) if args.measure else serve(args, httpcheck)
    except EscaError as err:
        report = {"failures": [f"error: {err}"]}
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
