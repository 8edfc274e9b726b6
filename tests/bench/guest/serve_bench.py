"""Inside the QEMU guest booted with -icount (scripts/guest-bench): each
server, file size and connection count, each variant (libesca backend and
settings) in rounds, the variants' order rotated each round.  A run: a fresh
server (one worker), a warm-up, then wrk against it with the worker's CPU time
(schedstat), libesca's counters and, when perf can, its system calls counted.

Under -icount the guest's clock advances by 2^shift ns per instruction, so a
worker's CPU time is its instruction count times 2^shift: the host divides.

    serve_bench.py --repo R --plan PLAN.json --out OUT.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def perf_count(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].strip().isdigit():
            counts[parts[2]] = int(parts[0])
    return counts


def one_run(
    plan: dict[str, Any], server: str, size: int, conns: int, variant: dict[str, Any], tag: str
) -> dict[str, Any]:
    from esca_pkg.runtime import stats
    from esca_pkg.servers import measure, recipe, serve

    base = Path("/tmp/guest-bench") / tag
    www = Path("/tmp/guest-bench/www")
    esca = serve.Esca(
        backend=variant["backend"],
        library=Path(plan["library"]),
        stats_dir=base.with_name(base.name + "-stats"),
        env=variant.get("env", {}),
    )
    run = serve.start(recipe.get(server), base, www, 1, esca, access_log=False, wait=300)
    url = f"{run.url}/f{size}k.bin"
    try:
        measure.run_wrk(url, conns, 1, plan["warmup"], None)
        pids = run.serving_pids()

        def lib() -> dict[str, int]:
            assert run.stats_dir is not None
            out: dict[str, int] = {}
            for s in stats.read_dir(run.stats_dir):
                if s.pid in pids:
                    for k, v in s.counters.items():
                        out[k] = out.get(k, 0) + v
            return out

        lib0, cpu0 = lib(), measure.cpu_ns(pids)
        perf_out = base / "perf.csv"
        # system-wide counting filtered on the worker (events bound to a task
        # make TCG oops: tests/vm/guest/observe.sh)
        events: list[str] = []
        for ev in ("raw_syscalls:sys_enter", "syscalls:sys_enter_epoll_wait"):
            events += ["-e", ev, "--filter", " || ".join(f"common_pid == {p}" for p in pids)]
        argv = ["perf", "stat", "-a", "-x,", "-o", str(perf_out), *events, "--"]
        profile = plan.get("profile_dir")
        if profile:
            # where the worker's instructions go (-icount: the guest's clock,
            # and so cpu-clock's samples, follow instructions); no counting
            argv = ["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", "20000"]
            argv += ["-o", str(base / "perf.data"), "--"]
        wrk = [
            "wrk",
            "-c",
            str(conns),
            "-t",
            "1",
            "-d",
            f"{plan['seconds']}s",
            url,
        ]
        t0 = time.monotonic()
        res = subprocess.run(argv + wrk, capture_output=True, text=True, check=False)
        perf_note = ""
        if res.returncode != 0 or not (base / "perf.data" if profile else perf_out).exists():
            perf_note = f"perf: exit {res.returncode}: {res.stderr.strip()[-300:]}"
            res = subprocess.run(wrk, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - t0
        cpu1, lib1 = measure.cpu_ns(pids), lib()
        w = measure.parse_wrk(res.stdout)
        counts = perf_count(perf_out) if not perf_note and not profile else {}
        if profile and not perf_note:
            text = ""
            for sort in ("dso", "dso,sym"):
                report = subprocess.run(
                    [
                        *("perf", "report", "-i", str(base / "perf.data"), "--stdio"),
                        *("--no-children", "--pid", ",".join(map(str, pids)), "-n"),
                        *("--sort", sort, "--percentage", "relative", "--percent-limit", "0.01"),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                text += report.stdout + report.stderr[-2000:]
            # the module's samples by address (objdump -d esca.ko at .text + offset)
            script = subprocess.run(
                [
                    *("perf", "script", "-i", str(base / "perf.data"), "-F", "ip,sym"),
                    *("--pid", ",".join(map(str, pids))),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            esca = [ln.strip() for ln in script.stdout.splitlines() if " esca_" in ln]
            sections = Path("/sys/module/esca/sections/.text")
            text += "\n# module .text: " + (sections.read_text() if sections.exists() else "?")
            text += "\n".join(esca) + "\n"
            Path(profile, f"{tag}.txt").write_text(text)
        alive = run.process.poll() is None
    finally:
        run.stop(timeout=120)
    return {
        "server": server,
        "size_kb": size,
        "connections": conns,
        "variant": variant["name"],
        "requests": w.requests,
        "errors": w.socket_errors + w.non2xx,
        "guest_seconds": seconds,
        "cpu_ns": cpu1 - cpu0,
        "syscalls": counts.get("raw_syscalls:sys_enter"),
        "epoll_wait": counts.get("syscalls:sys_enter_epoll_wait"),
        "perf_note": perf_note,
        "libesca": {k: v - lib0.get(k, 0) for k, v in lib1.items()},
        "alive": alive,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--plan", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    sys.path.insert(0, str(args.repo))
    from esca_pkg.servers import serve

    plan = json.loads(args.plan.read_text())
    serve.make_site(Path("/tmp/guest-bench/www"), tuple(plan["sizes"]))
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    variants = plan["variants"]
    n = 0
    for server in plan["servers"]:
        for size in plan["sizes"]:
            for conns in plan["connections"]:
                for rnd in range(plan["repeats"]):
                    k = rnd % len(variants)
                    for v in variants[k:] + variants[:k]:
                        n += 1
                        tag = f"{server}-{size}k-c{conns}-{v['name']}-{rnd}"
                        print(f"guest-bench: {tag}", flush=True)
                        try:
                            r = one_run(plan, server, size, conns, v, tag)
                        except Exception as e:  # reported; the other runs go on
                            failures.append(f"{tag}: {e}")
                            continue
                        r["round"] = rnd
                        runs.append(r)
                        print(json.dumps(r), flush=True)
                        if r["errors"] or not r["alive"] or not r["requests"]:
                            failures.append(f"{tag}: errors {r['errors']}, alive {r['alive']}")
                        args.out.write_text(json.dumps({"runs": runs, "failures": failures}))
    args.out.write_text(json.dumps({"runs": runs, "failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
