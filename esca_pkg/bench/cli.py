"""esca-bench: benchmarks that print numbers (A/B, interleaved).

esca-bench servers   the server A/B (runner.py), esca-bench --quick its smoke run
esca-bench micro     per-call cost, direct vs batched (micro.py)
esca-bench report    results.md and the plots again from a results.json
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from esca_pkg import log
from esca_pkg.bench import machine, micro, plots, report, runner
from esca_pkg.bench.runner import CONNECTIONS, SIZES_KB, Plan
from esca_pkg.log import die, info, warn
from esca_pkg.runtime import backends, hooks
from esca_pkg.runtime import library as libesca
from esca_pkg.servers import recipe, serve
from esca_pkg.servers.recipe import Recipe

TOP = Path(__file__).resolve().parent.parent.parent
#: the server --quick measures when it is installed (the reference workload's)
QUICK_SERVER = "nginx"
QUICK: dict[str, Any] = {
    "sizes": (1,),
    "connections": (50,),
    "duration": 1,
    "repeats": 2,
    "warmup": 1,
    "count_duration": 1,
    "quiet_wait": 2,
    "micro_rounds": 200,
    "micro_repeats": 1,
}
#: --precise: more pairs for a CPU-per-request interval within ±2 % on this
#: shared 2-vCPU machine.  Measured (docs/bench.md): 20 pairs of 2 s brought 3
#: of the 4 nginx/lighttpd 1 and 20 KB cells within ±2 %, nginx 1 KB to ±2.7 %,
#: narrowing about as 1/sqrt(pairs); 40 is that extrapolation, not yet verified
PRECISE: dict[str, Any] = {
    "duration": 2,
    "repeats": 40,
}


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(
            f"{what}: a comma-separated list of integers, not {text!r}"
        ) from None
    if not vals or min(vals) <= 0:
        raise click.BadParameter(f"{what}: give positive integers, e.g. 1,5,10")
    return vals


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse_esca_env(pairs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for p in pairs:
        name, sep, value = p.partition("=")
        if not sep or not name.startswith("ESCA_") or name in ("ESCA_BACKEND", "ESCA_LIBRARY"):
            raise click.BadParameter(
                f"{p!r}: give NAME=VALUE with a libesca setting (ESCA_..., not ESCA_BACKEND)",
                param_hint="--esca-env",
            )
        out.append((name, value))
    return tuple(out)


def _library(option: Path | None) -> Path:
    """--library, else $ESCA_LIBRARY, else this source tree's build, else libesca0's."""
    tree = libesca.tree_build(TOP)
    if option is None and not os.environ.get(libesca.LIBRARY_ENV) and tree.is_file():
        option = tree
    return libesca.find(option)


def _backends(wanted: tuple[str, ...], servers: list[Recipe]) -> tuple[str, ...]:
    """The ESCA backends to compare with off: the given ones (each must be usable
    by every server's workers), else every usable one."""
    users = {s.run.worker_user for s in servers} if os.geteuid() == 0 else {None}
    checks: dict[str, list[backends.Check]] = {"module": [], "uring": []}
    for user in users:
        for backend, c in backends.usable(user).items():
            checks[backend.value].append(c)
    if wanted:
        for b in wanted:
            for c in checks[b]:
                if not c.usable:
                    die(f"the {b} backend cannot run here: {c.reason}", hint=c.fix or None)
        return wanted
    usable = tuple(b for b in ("module", "uring") if all(c.usable for c in checks[b]))
    if not usable:
        die(
            "no ESCA backend can run here: "
            + "; ".join(f"{b}: {c.reason}" for b in checks for c in checks[b] if not c.usable),
            hint=next(c.fix for c in checks["uring"] if not c.usable),
        )
    return usable


def hooked(server: Recipe) -> bool:
    """The server is installed and its binary references the three hooks."""
    binary = server.run.binary
    if not binary.is_file():
        return False
    try:
        return hooks.hook_state(binary)[0] is hooks.HookState.HOOKED
    except hooks.ElfError:
        return False


def _servers(wanted: tuple[str, ...], quick: bool) -> list[Recipe]:
    known = recipe.registry()
    if wanted:
        chosen = [known[n] for n in wanted]
        for s in chosen:
            if not s.run.binary.is_file():
                die(
                    f"{s.name} is not installed ({s.run.binary} is missing)",
                    hint=s.run.install_hint(s.name),
                )
            if not hooked(s):
                die(
                    f"{s.run.binary} has no ESCA hooks: the A/B would compare libesca with itself",
                    hint=s.run.install_hint(s.name),
                )
        return chosen
    found = [s for s in known.values() if hooked(s)]
    if not found:
        die(
            f"no patched server is installed ({', '.join(known)} with the ESCA hooks)",
            hint=known["nginx"].run.install_hint("nginx") if "nginx" in known else None,
        )
    # the quick run measures the reference workload's server when it is there
    found.sort(key=lambda s: s.name != QUICK_SERVER)
    return found[:1] if quick else found


def _micro(
    library: Path, esca_backends: tuple[str, ...], rounds: int, repeats: int
) -> dict[str, Any]:
    try:
        program = micro.find_program(TOP)
    except log.EscaError as e:
        warn(f"micro-benchmark skipped: {e}")
        return {"skipped": str(e)}
    setup = micro.MicroSetup(
        library=library,
        program=program,
        backends=("off", *esca_backends),
        rounds=rounds,
        repeats=repeats,
    )
    res = micro.run_micro(setup)
    return {
        "library": str(library),
        "rounds": rounds,
        "repeats": repeats,
        "samples": [
            {"op": op, "backend": b, "batch": n, "ns_per_call": v}
            for (op, b, n), v in sorted(res.samples.items())
        ],
        "table": micro.format_table(setup, res),
    }


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show commands and tracebacks.")
@click.option(
    "--quick", is_flag=True, help="Without a command: the smoke run 'esca-bench servers --quick'."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, quick: bool) -> None:
    """Measure what ESCA buys on this machine.

    Without a command, runs the server A/B benchmark (esca-bench servers).
    """
    log.set_debug(debug)
    if ctx.invoked_subcommand is None:
        ctx.invoke(servers_command, quick=quick)
    elif quick:
        raise click.UsageError("--quick goes after the command: esca-bench servers --quick")


@cli.command("servers")
@click.option(
    "--quick",
    is_flag=True,
    help="Smoke run under a minute: one server, 1 KB, -c 50, two 1 s pairs "
    "(options given explicitly still apply).",
)
@click.option(
    "--precise",
    is_flag=True,
    help=f"More and longer pairs ({PRECISE['repeats']} pairs of {PRECISE['duration']} s): "
    "a CPU-per-request interval within ±2% here (options given explicitly still apply).",
)
@click.option(
    "--server",
    "server_names",
    multiple=True,
    type=click.Choice(recipe.names(recipe.installed_dir())),
    help="Server to measure (repeatable; default: every installed patched one).",
)
@click.option(
    "--backend",
    "backend_names",
    multiple=True,
    type=click.Choice(["module", "uring"]),
    help="ESCA backend compared with off (repeatable; default: every usable one).",
)
@click.option(
    "--sizes", default=",".join(map(str, SIZES_KB)), show_default=True, help="File sizes in KB."
)
@click.option(
    "--connections",
    default=",".join(map(str, CONNECTIONS)),
    show_default=True,
    help="wrk connection counts.",
)
@click.option(
    "--duration",
    type=click.IntRange(1, 600),
    default=2,
    show_default=True,
    help="Seconds of each throughput run (wrk takes whole seconds).",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 200),
    default=10,
    show_default=True,
    help="Rounds: A/B pairs per cell, each round with a fresh pair of servers "
    "(6 or more for a 95% interval).",
)
@click.option(
    "--warmup",
    type=click.IntRange(0, 60),
    default=1,
    show_default=True,
    help="Seconds of an unrecorded run of each fresh server (0: none).",
)
@click.option(
    "--count-duration",
    type=click.IntRange(1, 600),
    default=1,
    show_default=True,
    help="Seconds of the run of each variant counted by perf.",
)
@click.option(
    "--quiet-wait",
    type=click.FloatRange(0, 3600),
    default=30,
    show_default=True,
    help="Before each pair, wait up to this many seconds for other processes to "
    "leave the benchmark's CPUs (the wait and the load are reported).",
)
@click.option(
    "--esca-env",
    "esca_env",
    multiple=True,
    metavar="NAME=VALUE",
    help="A libesca setting for both servers, e.g. ESCA_URING_MIN_OPS=1 "
    "(repeatable; see docs/libesca.md).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("esca-bench-results"),
    show_default=True,
    help="Directory for results.json, results.md and the PNG plots.",
)
@click.option(
    "--library",
    type=click.Path(path_type=Path, dir_okay=False),
    help="libesca to preload (default: $ESCA_LIBRARY, this tree's build, libesca0's).",
)
@click.option(
    "--micro/--no-micro",
    default=True,
    show_default=True,
    help="Also run the per-call micro-benchmark.",
)
@click.option(
    "--plots/--no-plots",
    "draw",
    default=True,
    show_default=True,
    help="Draw the PNG plots (needs matplotlib).",
)
def servers_command(
    quick: bool,
    precise: bool,
    server_names: tuple[str, ...],
    backend_names: tuple[str, ...],
    sizes: str,
    connections: str,
    duration: int,
    repeats: int,
    warmup: int,
    count_duration: int,
    quiet_wait: float,
    esca_env: tuple[str, ...],
    out_dir: Path,
    library: Path | None,
    micro: bool,
    draw: bool,
) -> None:
    """A/B of each patched server: vanilla (--backend off) against ESCA.

    wrk on 127.0.0.1 over file sizes and connection counts, A/B pairs
    interleaved in rounds of fresh servers, server and wrk on different CPUs;
    per cell the server's CPU time per request (the verdict: median change of
    the per-pair ratios with its 95% interval), requests/s, syscalls per
    request (perf), their theoretical minimum and kernel entries per loop
    iteration.  Writes results.json, results.md, cpu.png, throughput.png and
    syscalls.png.
    """
    if os.geteuid() != 0:
        die(
            "esca-bench servers runs as root",
            hint="it starts the servers as Debian runs them (workers as www-data) and "
            "attaches perf to them: sudo esca-bench servers",
        )
    micro_rounds, micro_repeats = 1000, 3
    ctx = click.get_current_context()
    if quick and precise:
        raise click.UsageError("--quick and --precise exclude each other")
    if precise:  # the precise settings, except where an option was given
        if ctx.get_parameter_source("duration") is ParameterSource.DEFAULT:
            duration = PRECISE["duration"]
        if ctx.get_parameter_source("repeats") is ParameterSource.DEFAULT:
            repeats = PRECISE["repeats"]
    if quick:  # the quick settings, except where an option was given
        given = {
            p
            for p in (
                "sizes",
                "connections",
                "duration",
                "repeats",
                "warmup",
                "count_duration",
                "quiet_wait",
            )
            if ctx.get_parameter_source(p) is not ParameterSource.DEFAULT
        }
        sizes = sizes if "sizes" in given else ",".join(map(str, QUICK["sizes"]))
        connections = (
            connections if "connections" in given else ",".join(map(str, QUICK["connections"]))
        )
        duration = duration if "duration" in given else QUICK["duration"]
        repeats = repeats if "repeats" in given else QUICK["repeats"]
        warmup = warmup if "warmup" in given else QUICK["warmup"]
        count_duration = count_duration if "count_duration" in given else QUICK["count_duration"]
        quiet_wait = quiet_wait if "quiet_wait" in given else QUICK["quiet_wait"]
        micro_rounds, micro_repeats = QUICK["micro_rounds"], QUICK["micro_repeats"]
    size_list, conn_list = parse_ints(sizes, "--sizes"), parse_ints(connections, "--connections")
    if draw:
        plots.require()  # fail before the runs, not after them
    chosen = _servers(server_names, quick)
    plan = Plan(
        servers=tuple(s.name for s in chosen),
        backends=_backends(backend_names, chosen),
        sizes_kb=size_list,
        connections=conn_list,
        duration=duration,
        repeats=repeats,
        warmup=warmup,
        count_duration=count_duration,
        library=_library(library),
        placement=machine.placement(),
        quiet_wait=quiet_wait,
        esca_env=parse_esca_env(esca_env),
    )
    info(
        f"esca-bench: {', '.join(plan.servers)} x backend {', '.join(plan.backends)} "
        f"against off; {len(size_list)} sizes x {len(conn_list)} connection counts; "
        f"{plan.placement.describe()}; about {plan.estimate_seconds() / 60:.1f} min"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    # SIGTERM (kill, systemd, CI timeouts) stops like Ctrl-C: the servers of
    # the round are stopped and the run directory removed
    signal.signal(signal.SIGTERM, _interrupt)
    work = serve.new_base("esca-bench-")
    t0 = time.monotonic()
    try:
        doc = runner.run(plan, work, ["esca-bench", *sys.argv[1:]])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if micro:
        info("esca-bench: micro-benchmark ...")
        doc["micro"] = _micro(plan.library, plan.backends, micro_rounds, micro_repeats)
    doc["elapsed_seconds"] = round(time.monotonic() - t0, 1)
    doc["targets"] = report.targets(doc)
    report.write_json(doc, out_dir / "results.json")
    _outputs(doc, out_dir, draw)
    info(
        f"esca-bench: {len(doc['cells'])} cells in {doc['elapsed_seconds']:.0f} s; "
        f"results in {out_dir}/"
    )


def _outputs(doc: dict[str, Any], out_dir: Path, draw: bool) -> None:
    """results.md (also printed) and, with draw, the two PNG plots."""
    text = report.markdown(doc)
    (out_dir / "results.md").write_text(text)
    if draw and doc["cells"]:
        plots.cpu(doc, out_dir / "cpu.png")
        plots.throughput(doc, out_dir / "throughput.png")
        plots.syscalls(doc, out_dir / "syscalls.png")
    click.echo(text)


@cli.command("report")
@click.argument("results", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write results.md and the plots (default: next to RESULTS).",
)
@click.option(
    "--plots/--no-plots",
    "draw",
    default=True,
    show_default=True,
    help="Draw the PNG plots (needs matplotlib).",
)
def report_command(results: Path, out_dir: Path | None, draw: bool) -> None:
    """Write the Markdown table and the plots again from a results.json."""
    try:
        doc = json.loads(results.read_text())
    except (OSError, ValueError) as e:
        die(f"cannot read {results}: {e}", hint="give the results.json esca-bench servers wrote")
    if doc.get("schema") not in runner.SCHEMAS_READ:
        die(
            f"{results} is not a result of esca-bench servers (schema {doc.get('schema')!r})",
            hint=f"give a results.json of schema {' or '.join(runner.SCHEMAS_READ)}",
        )
    report.upgrade(doc)
    out = out_dir or results.parent
    out.mkdir(parents=True, exist_ok=True)
    _outputs(doc, out, draw)


@cli.command("micro")
@click.option("--rounds", default=2000, show_default=True, help="Segments timed per run.")
@click.option("--repeats", default=5, show_default=True, help="Interleaved runs per cell.")
@click.option(
    "--sockets",
    default=1,
    show_default=True,
    help="Spread the writes over this many sockets (1: all on one).",
)
@click.option(
    "--backend",
    "backend_names",
    multiple=True,
    type=click.Choice(["uring", "module"]),
    help="Backends to compare (default: the usable ones).",
)
@click.option(
    "--ring",
    "rings",
    multiple=True,
    type=click.Choice(list(micro.RING_SETTINGS)),
    help="Also the uring backend with these ring settings (every batch through the ring).",
)
@click.option(
    "--op",
    "ops",
    multiple=True,
    type=click.Choice(list(micro.ALL_OPS)),
    help="Calls to time (default: write, close).",
)
@click.option(
    "--library",
    type=click.Path(path_type=Path, dir_okay=False),
    help="libesca to preload (default: $ESCA_LIBRARY, this tree's build, libesca0's).",
)
@click.option(
    "--source",
    type=click.Path(path_type=Path, file_okay=False),
    help="Source tree whose libesca/build/esca-microbench to run (default: this tree, "
    "else esca-microbench's).",
)
def micro_command(
    rounds: int,
    repeats: int,
    sockets: int,
    backend_names: tuple[str, ...],
    rings: tuple[str, ...],
    ops: tuple[str, ...],
    library: Path | None,
    source: Path | None,
) -> None:
    """Per-call cost of 64-byte writes and closes, direct vs batched.

    Batch sizes 1, 8, 32, 64; medians over interleaved repeats.
    """
    top = source or TOP
    program = micro.find_program(top)
    if library is None and source is not None and libesca.tree_build(source).is_file():
        library = libesca.tree_build(source)
    lib = _library(library)
    chosen = ("off", *backend_names) if backend_names else micro.usable_backends()
    chosen = (*chosen, *rings)
    setup = micro.MicroSetup(
        library=lib,
        program=program,
        backends=chosen,
        rounds=rounds,
        repeats=repeats,
        sockets=sockets,
    )
    info(
        f"esca-bench micro: {lib}, backends {', '.join(chosen)}, "
        f"{repeats} interleaved repeats of {rounds} segments"
    )
    ops = ops or micro.OPS
    click.echo(micro.format_table(setup, micro.run_micro(setup, ops), ops))


def main() -> None:
    log.run_main(cli)
