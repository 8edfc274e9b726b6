"""The demo behind scripts/demo: a short A/B of the installed, patched nginx
(vanilla against esca-run), then nginx under esca-run serving a demo directory.

    python -m esca_pkg.demo [--port 8080] [--seconds 5] [--serve/--no-serve]
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import click

from esca_pkg import log
from esca_pkg.log import info
from esca_pkg.servers import measure, recipe, serve

DEMO_DIR = Path("/var/tmp/esca-demo")


def _exit_summary(run: serve.ServerRun) -> str:
    text = run.error_log.read_text(errors="replace") if run.error_log.is_file() else ""
    lines = [ln for ln in text.splitlines() if ln.startswith("esca: pid=")]
    if not lines:
        return ""
    m = re.search(r"backend=(\S+) segments=\d+ deferred=(\d+)", lines[-1])
    return f"backend {m.group(1)}, {m.group(2)} calls deferred" if m else ""


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="port of the demo server on 127.0.0.1",
)
@click.option(
    "--seconds",
    type=click.IntRange(1, 120),
    default=5,
    show_default=True,
    help="length of each A/B run",
)
@click.option(
    "--backend", type=click.Choice(["auto", "module", "uring"]), default="auto", show_default=True
)
@click.option(
    "--library",
    type=click.Path(path_type=Path, dir_okay=False),
    help="libesca to preload (default: the installed libesca0)",
)
@click.option(
    "--serve/--no-serve",
    "serve_",
    default=None,
    help="keep nginx serving the demo directory until Ctrl-C (default: when run from a terminal)",
)
def cli(port: int, seconds: int, backend: str, library: Path | None, serve_: bool | None) -> None:
    """A/B of nginx with and without ESCA, then serve a demo directory under esca-run."""
    nginx = recipe.get("nginx")
    www = DEMO_DIR / "www"
    serve.make_site(www)
    DEMO_DIR.chmod(0o755)
    esca = serve.Esca(backend=backend, library=library)
    results = {}
    for variant in (None, esca):
        label = "ESCA" if variant else "vanilla"
        info(f"demo: nginx {label}, wrk -c 50 -d {seconds}s on /f20k.bin ...")
        run = serve.start(nginx, DEMO_DIR / label.lower(), www, 1, variant)
        try:
            m = measure.measure(run, "/f20k.bin", seconds=seconds, connections=50)
        finally:
            run.stop()
        results[label] = (m, _exit_summary(run) if variant else "")
    click.echo("")
    click.echo("nginx, 1 worker, 20 KB file, 50 connections (wrk), syscalls counted by perf:")
    click.echo(f"  {'':8} {'requests/s':>11} {'syscalls/request':>17}")
    for label, (m, note) in results.items():
        click.echo(f"  {label:8} {m.rps:11.0f} {m.syscalls_per_request:17.2f}  {note}")
    van, esc = results["vanilla"][0], results["ESCA"][0]
    if van.rps and van.syscalls_per_request:
        click.echo(
            f"  change   {100 * (esc.rps / van.rps - 1):+10.1f}% "
            f"{100 * (esc.syscalls_per_request / van.syscalls_per_request - 1):+16.1f}%"
        )
    if serve_ is None:
        serve_ = sys.stdin.isatty()
    if not serve_:
        click.echo(
            f"\nTo serve {www} under ESCA: esca-run nginx -- -c <config>, "
            "or run scripts/demo from a terminal."
        )
        return
    run = serve.start(nginx, DEMO_DIR / "serve", www, 2, esca, port=port)
    click.echo(f"\nnginx (2 workers) under esca-run serves {www} at {run.url}/ - Ctrl-C to stop")
    click.echo("its live counters: esca-stat --watch 1")
    try:
        while run.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        run.stop()
        summary = _exit_summary(run)
        if summary:
            click.echo(f"stopped: {summary}")


def main() -> None:
    log.run_main(cli)


if __name__ == "__main__":
    main()
