"""A slow reader against nginx and lighttpd (issue 19): every byte checked, and
the fast clients beside it not held up.

Per server (one worker) and variant (no libesca; esca-run with io_uring and
ESCA_ADAPT=0; esca-run with libesca's defaults), each scenario in a network
namespace of its own (slowclient.py: loopback only, net.ipv4.tcp_wmem lowered
there to 4096 16384 32768, nginx with `listen ... sndbuf=32k` as in the
issue), so the responses never all fit in the kernel:

- alone: three fast clients, each asking a 100-byte file every 10 ms on a
  kept-alive connection (latency from the scheduled time: a stall counts
  every request it delays), no slow client: the reference;
- pause-mix: beside them, a client with SO_RCVBUF 4 KiB pipelines 30 requests
  for files of 1-64 KB, reads nothing for 3 s, then reads everything;
- pause-60k: the same with 30 requests for a 60 KB file (the issue's case);
- slow-mix: the 30 mixed requests read 8 KB at a time every 50 ms;
- never-read: ESCA_WRITE_TIMEOUT_MS=2000 and a client that reads nothing for
  4.5 s, then what is there.

Asserted: every response of the slow client complete and intact (never-read:
where libesca still holds bytes at ESCA_WRITE_TIMEOUT_MS with no progress it
resets the connection, never earlier, and what arrived before the reset is
an intact prefix; the slow client sees a reset exactly when libesca counted
one.  Where the kernel's send buffer took what libesca held, or adaptive
batching passed the calls straight through, the server sees EAGAIN and holds
its data itself, as without libesca: complete), the fast clients get every
answer right and their p99 latency is at most 10 ms above the same variant's
run without the slow client.  Other scenarios run with
ESCA_WRITE_TIMEOUT_MS=15000, far above the 3 s pause.

The table of all runs is printed at the end of the session.  ESCA_LIBRARY=PATH
tests that libesca instead of the tree's build (make -C libesca), as esca-run
and esca-bench take it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers_support import ROOT, SERVERS, SYSTEM_PATH, Built
from slowclient import StreamCheck, percentile

from esca_pkg.servers import serve

pytestmark = pytest.mark.servers

SLOWCLIENT = Path(__file__).resolve().parent / "slowclient.py"
TCP_WMEM = Path("/proc/sys/net/ipv4/tcp_wmem")

#: the namespace's net.ipv4.tcp_wmem (min default max): lighttpd's send
#: buffers stay at 16-32 KB (it has no per-listener sndbuf); nginx sets its own
NETNS_TCP_WMEM = "4096 16384 32768"
NGINX_SNDBUF = "32k"
FAST_FILE = "f100.bin"
FAST_CLIENTS = 3
FAST_INTERVAL = 0.010
#: the fast clients run at least this long (and as long as the slow client)
MIN_DURATION = 3.0
SLOW_RCVBUF = 4096
PAUSE = 3.0
LONG_TIMEOUT_MS = 15000
SHORT_TIMEOUT_MS = 2000
P99_MARGIN_MS = 10.0

#: file sizes of the mix: 1-64 KB, with the edges of libesca's limits
#: (ESCA_URING_COPY_MAX 4096, ESCA_DEFER_MAX 16384, ESCA_SENDFILE_MAX 65536)
MIX_SIZES = (
    1024, 1500, 2048, 3000, 4096, 4097, 6000, 8192, 12000, 16384,
    16385, 20000, 24576, 32768, 40000, 49152, 61440, 65535, 65536,
)  # fmt: skip
SIZE_60K = 61440


def mix_names() -> list[str]:
    """30 requests: every size of the mix once, then 11 more, shuffled (seeded)."""
    rng = random.Random(19)
    sizes = [*MIX_SIZES, *(rng.choice(MIX_SIZES) for _ in range(30 - len(MIX_SIZES)))]
    rng.shuffle(sizes)
    return [f"f{n}.bin" for n in sizes]


@dataclass(frozen=True)
class Scenario:
    name: str
    slow: dict[str, Any] | None
    timeout_ms: int = LONG_TIMEOUT_MS


SCENARIOS = (
    Scenario("alone", None),
    Scenario("pause-mix", {"mode": "pause", "pause": PAUSE, "names": mix_names()}),
    Scenario("pause-60k", {"mode": "pause", "pause": PAUSE, "names": [f"f{SIZE_60K}.bin"] * 30}),
    Scenario("slow-mix", {"mode": "slow", "chunk": 8192, "every": 0.05, "names": mix_names()}),
    Scenario(
        "never-read",
        {"mode": "pause", "pause": SHORT_TIMEOUT_MS / 1000 + 2.5, "names": mix_names()},
        timeout_ms=SHORT_TIMEOUT_MS,
    ),
)
#: variant -> esca-run's backend and libesca settings (None: no libesca)
VARIANTS: dict[str, dict[str, Any] | None] = {
    "vanilla": None,
    "uring-adapt0": {"backend": "uring", "env": {"ESCA_ADAPT": "0"}},
    "defaults": {"backend": "auto", "env": {}},
}
CASES = [(k, v, s) for k in SERVERS for v in VARIANTS for s in SCENARIOS]

#: (kind, variant, scenario) -> the scenario's result (slowclient.run_scenario)
RESULTS: dict[tuple[str, str, str], dict[str, Any]] = {}


@pytest.fixture(scope="module")
def esca_library(request: pytest.FixtureRequest) -> Path:
    """$ESCA_LIBRARY, else the tree's build (the suite's `library` fixture)."""
    given = os.environ.get("ESCA_LIBRARY")
    if given:
        path = Path(given).resolve()
        assert path.is_file(), f"ESCA_LIBRARY={given}: no such file"
        return path
    return Path(request.getfixturevalue("library"))


@pytest.fixture(scope="module")
def slow_site() -> Iterator[Path]:
    """The files: the mix (1-64 KB), 60 KB, and the fast clients' 100 bytes."""
    base = serve.new_base("esca-slow-site-")
    www = base / "www"
    www.mkdir()
    os.chmod(www, 0o755)
    rng = random.Random(1919)
    for n in (*MIX_SIZES, SIZE_60K, 100):
        p = www / f"f{n}.bin"
        p.write_bytes(rng.randbytes(n))
        os.chmod(p, 0o644)
    yield www
    subprocess.run(["rm", "-rf", str(base)], check=False)


class _Table:
    """Prints the results at the end of the session (a plugin registered by the
    module's fixture: the servers suite's conftest stays as it is)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.ended: float | None = None

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not RESULTS:
            return
        tr = terminalreporter
        wall = (self.ended or time.monotonic()) - self.started
        tr.section(
            f"slow reader beside {FAST_CLIENTS} fast clients (100 B every "
            f"{FAST_INTERVAL * 1000:g} ms; latency ms from the scheduled time); "
            f"{wall:.0f} s in all"
        )
        for line in table_lines():
            tr.write_line(line)


def table_lines() -> list[str]:
    head = (
        f"{'server':<9}{'variant':<14}{'scenario':<12}{'slow client':<44}"
        f"{'fast n':>7}{'err':>5}{'p50':>8}{'p99':>9}{'max':>9}{'Δp99':>9}{'lost B':>9}"
    )
    lines = [head]
    for (kind, variant, scenario), r in RESULTS.items():
        if "error" in r:
            lines.append(f"{kind:<9}{variant:<14}{scenario:<12}ERROR {r['error'].splitlines()[0]}")
            continue
        lat = r["fast"]["latencies_ms"]
        ref = RESULTS.get((kind, variant, "alone"))
        p99 = percentile(lat, 99)
        delta = p99 - percentile(ref["fast"]["latencies_ms"], 99) if ref and "fast" in ref else None
        lost = r["esca"].get("bytes_lost")
        lines.append(
            f"{kind:<9}{variant:<14}{scenario:<12}{slow_summary(r):<44}"
            f"{len(lat):>7}{len(r['fast']['errors']):>5}{percentile(lat, 50):>8.1f}"
            f"{p99:>9.1f}{max(lat, default=float('nan')):>9.1f}"
            f"{'' if delta is None else f'{delta:+.1f}':>9}{'' if lost is None else lost:>9}"
        )
    return lines


def slow_summary(r: dict[str, Any]) -> str:
    s = r.get("slow")
    if not s:
        return "-"
    text = f"{s['outcome']} {s['responses']}/{s['requested']} in {s['seconds']:.1f} s"
    if s["reset_at"] is not None and s["outcome"] != "complete":
        text += f", end at {s['reset_at']:.1f} s"
    if s["outcome"] == "corrupt":
        text += f", at byte {s['bytes']}"
    return text


@pytest.fixture(scope="module", autouse=True)
def table_and_host_sysctl(request: pytest.FixtureRequest) -> Iterator[None]:
    """Registers the table's printer; checks that the host's tcp_wmem never
    moved (the scenarios change it only in their own network namespaces)."""
    table = _Table()
    request.config.pluginmanager.register(table, "esca-slow-reader-table")
    before = TCP_WMEM.read_text()
    yield
    table.ended = time.monotonic()
    assert TCP_WMEM.read_text() == before, "the host's net.ipv4.tcp_wmem changed"


def run_case(
    kind: str, variant: str, scenario: Scenario, library: Path, www: Path, base: Path
) -> dict[str, Any]:
    esca = VARIANTS[variant]
    spec = {
        "kind": kind,
        "base": str(base / f"{kind}-{variant}-{scenario.name}"),
        "www": str(www),
        "tcp_wmem": NETNS_TCP_WMEM,
        "sndbuf": NGINX_SNDBUF,
        "esca": None
        if esca is None
        else {
            "backend": esca["backend"],
            "library": str(library),
            "env": {**esca["env"], "ESCA_WRITE_TIMEOUT_MS": str(scenario.timeout_ms)},
        },
        "fast": {"name": FAST_FILE, "clients": FAST_CLIENTS, "interval": FAST_INTERVAL},
        "lead": 0.5,
        "duration": MIN_DURATION,
        "slow": None if scenario.slow is None else {**scenario.slow, "rcvbuf": SLOW_RCVBUF},
    }
    env = {"PATH": SYSTEM_PATH, "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        [sys.executable, str(SLOWCLIENT), "scenario", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the driver stops its server
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return {"error": f"the scenario did not end within 240 s\n{err[-2000:]}"}
    lines = out.strip().splitlines()
    if not lines:
        return {"error": f"the scenario printed nothing (exit {proc.returncode})\n{err[-3000:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if err.strip():
        result["stderr"] = err[-2000:]
    return result


def reference(kind: str, variant: str, library: Path, www: Path, base: Path) -> dict[str, Any]:
    key = (kind, variant, "alone")
    if key not in RESULTS:
        RESULTS[key] = run_case(kind, variant, SCENARIOS[0], library, www, base)
    return RESULTS[key]


@pytest.mark.parametrize(
    ("kind", "variant", "scenario"), CASES, ids=[f"{k}-{v}-{s.name}" for k, v, s in CASES]
)
def test_slow_reader(
    kind: str,
    variant: str,
    scenario: Scenario,
    installed_servers: Built,
    slow_site: Path,
    workdir: Path,
    request: pytest.FixtureRequest,
) -> None:
    # the vanilla runs need no libesca (nor its build)
    library = Path(request.getfixturevalue("esca_library")) if VARIANTS[variant] else Path()
    if scenario.slow is None:
        r = ref = reference(kind, variant, library, slow_site, workdir)
    else:
        ref = reference(kind, variant, library, slow_site, workdir)
        r = run_case(kind, variant, scenario, library, slow_site, workdir)
        RESULTS[(kind, variant, scenario.name)] = r
    assert "error" not in r, r["error"]
    assert r["tcp_wmem"] == NETNS_TCP_WMEM.split(), r["tcp_wmem"]
    if VARIANTS[variant] is not None:
        assert r["esca"], "no libesca summary at the server's exit:\n" + r["server_log_tail"]
    problems: list[str] = []
    fast = r["fast"]
    want = FAST_CLIENTS * r["seconds"] / FAST_INTERVAL
    if fast["errors"]:
        problems.append(f"fast clients: {len(fast['errors'])} errors: {fast['errors'][:5]}")
    if len(fast["latencies_ms"]) < want * 0.8:
        problems.append(f"fast clients: {len(fast['latencies_ms'])} answers, expected ~{want:.0f}")
    if scenario.slow is not None:
        s = r["slow"]
        if scenario.name == "never-read" and variant != "vanilla":
            # reset exactly when libesca still held bytes at the timeout;
            # where the kernel's buffers took what it held (they grow), the
            # socket runs its later data directly and the server holds the
            # rest itself, as without libesca (the reset itself:
            # tests/test_libesca.py, fixed buffers)
            allowed = {"reset"} if r["esca"].get("resets", 0) else {"complete"}
        else:
            allowed = {"complete"}
        if s["outcome"] not in allowed:
            problems.append(
                f"slow client: {s['outcome']} ({s['detail']}) after {s['responses']}/"
                f"{s['requested']} responses, {s['bytes']} bytes; expected {' or '.join(allowed)}"
            )
        if s["outcome"] == "reset" and s["reset_at"] < 0.8 * scenario.timeout_ms / 1000:
            problems.append(
                f"slow client reset after {s['reset_at']:.2f} s, before "
                f"ESCA_WRITE_TIMEOUT_MS={scenario.timeout_ms}"
            )
        lost = r["esca"].get("bytes_lost", 0)
        if scenario.name != "never-read" and lost:
            problems.append(f"libesca counted {lost} bytes lost")
        p99 = percentile(fast["latencies_ms"], 99)
        p99_ref = percentile(ref["fast"]["latencies_ms"], 99) if "fast" in ref else float("nan")
        if not p99 <= p99_ref + P99_MARGIN_MS:
            problems.append(
                f"fast clients' p99 {p99:.1f} ms (max {max(fast['latencies_ms']):.0f} ms), "
                f"without the slow client {p99_ref:.1f} ms: more than {P99_MARGIN_MS:g} ms above"
            )
    assert not problems, f"{kind} {variant} {scenario.name}:\n  " + "\n  ".join(problems)


def _responses(bodies: list[bytes]) -> bytes:
    return b"".join(
        b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b)
        for b in bodies
    )


@pytest.mark.fast
def test_stream_check_finds_every_deviation() -> None:
    """The slow client's verifier: pipelined responses fed in any pieces pass;
    a hole, a changed byte, a wrong status or length, bytes after the last
    response are each found, at the right response."""
    rng = random.Random(5)
    bodies = [rng.randbytes(n) for n in (100, 4096, 70000, 1)]
    names = [f"f{len(b)}.bin" for b in bodies]
    stream = _responses(bodies)

    def check(data: bytes, pieces: int = 7) -> StreamCheck:
        c = StreamCheck(bodies, names)
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(pieces))
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            c.feed(data[a:b])
        return c

    for _ in range(20):
        ok = check(stream, pieces=rng.randrange(1, 200))
        assert ok.complete and ok.received == len(stream), ok.problem
    start2 = stream.index(b"HTTP/1.1", 10)
    start3 = stream.index(b"HTTP/1.1", start2 + 10)
    hole = stream[: start3 + 200] + stream[start3 + 20000 :]
    c = check(hole)
    assert not c.complete and c.problem and c.problem.startswith("response 3/4"), c.problem
    assert c.received == start3 + 200 or "header" in c.problem, (c.received, c.problem)
    flipped = bytearray(stream)
    flipped[start2 + 3000] ^= 1
    c = check(bytes(flipped))
    assert c.problem and c.problem.startswith("response 2/4") and c.done == 1, c.problem
    assert check(stream.replace(b"200 OK", b"404 No", 1)).problem
    assert check(stream.replace(b"Length: 100\r", b"Length: 101\r", 1)).problem
    c = check(stream + b"HTTP/1.1 200 OK\r\n")
    assert c.done == 4 and c.problem and "after the last response" in c.problem
    c = check(stream[:-1])
    assert c.done == 3 and c.problem is None and not c.complete
