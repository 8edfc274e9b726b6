"""esca-stat on a real server: nginx with two workers (www-data) under esca-run,
with the default live-counters place (/run/esca/nginx, made by esca-run), under
wrk load.  The workers write their counters there, nobody outside their group
can create anything there, and esca-stat shows both workers' counters growing."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from servers_support import ROOT, SERVERS, TEST_BUILD, Built, Site

from esca_pkg.runtime import statsdir
from esca_pkg.servers import measure, recipe, serve
from esca_pkg.servers.serve import Esca

pytestmark = pytest.mark.servers


def esca_stat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esca_pkg.stat", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def workers_of(doc: dict, pids: list[int]) -> dict[int, dict]:
    return {p["pid"]: p for p in doc["processes"] if p["pid"] in pids}


@pytest.mark.skipif("nginx" not in SERVERS, reason="ESCA_TEST_SERVERS leaves nginx out")
def test_esca_stat_shows_both_workers_counting(
    installed_servers: Built, library: Path, site: Site, workdir: Path
) -> None:
    nginx = recipe.get("nginx")
    run = serve.start(nginx, workdir / "nginx", site.www, 2, Esca(backend="uring", library=library))
    try:
        pids = run.serving_pids()
        assert run.stats_dir == statsdir.RUN_DIR / "nginx"
        st = run.stats_dir.stat()
        www = pwd.getpwnam("www-data")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, www.pw_gid, 0o1770), (
            statsdir.describe(st)
        )
        # every worker (www-data) created its own file there, no chmod by hand
        owners = {int(p.name[5:-6]): p.stat().st_uid for p in run.stats_dir.glob("esca-*.stats")}
        assert {pid: owners.get(pid) for pid in pids} == dict.fromkeys(pids, www.pw_uid)

        # a user outside the workers' group can neither create nor plant a link there
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        assert "nobody" not in grp.getgrgid(www.pw_gid).gr_mem
        for attempt in (["touch"], ["ln", "-s", "/etc/shadow"]):
            victim = run.stats_dir / "esca-4194000.stats"
            res = subprocess.run(
                [*nobody, *attempt, str(victim)], capture_output=True, text=True, check=False
            )
            assert res.returncode != 0 and "Permission denied" in res.stderr, res
            assert not os.path.lexists(victim)

        before = esca_stat("--json")
        assert before.returncode == 0, before.stderr
        w = measure.run_wrk(run.url + "/f20k.bin", 50, 2, 2, None)
        assert w.requests > 0 and w.socket_errors == 0
        after = esca_stat("--json")
        watch = esca_stat("--json", "--watch", "1", "--count", "1")
        table = esca_stat()
    finally:
        run.stop()

    a = workers_of(json.loads(before.stdout), pids)
    b = workers_of(json.loads(after.stdout), pids)
    assert set(a) == set(b) == set(pids), (before.stdout, after.stdout)
    for pid in pids:
        assert b[pid]["backend"] == "uring"
        assert b[pid]["segments"] > a[pid]["segments"], (a[pid], b[pid])
        assert b[pid]["bytes_lost"] == 0
        assert b[pid]["command"].startswith("nginx: worker")
    assert sum(b[p]["deferred_total"] for p in pids) > sum(a[p]["deferred_total"] for p in pids)
    rates = json.loads(watch.stdout.splitlines()[0])["rates"]
    assert {r["pid"] for r in rates} >= set(pids)
    assert table.returncode == 0 and all(str(p) in table.stdout for p in pids)
    report = TEST_BUILD / "esca-stat.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(f"$ esca-stat\n{table.stdout}\n$ esca-stat --json\n{after.stdout}")
    print(f"\n$ esca-stat (after {w.requests} requests)\n{table.stdout}")
    # the files go when their processes exit: nothing stale is left
    ours = [*pids, run.process.pid]
    assert not [p for p in ours if (statsdir.RUN_DIR / "nginx" / f"esca-{p}.stats").exists()]
