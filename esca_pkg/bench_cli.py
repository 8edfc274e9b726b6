"""esca-bench: benchmarks that print numbers (A/B, interleaved)."""

from __future__ import annotations

from pathlib import Path

import click

from esca_pkg import log
from esca_pkg.bench.cli import report_command, servers_command
from esca_pkg.microbench import (
    BATCH_SIZES,
    MicroSetup,
    find_artifacts,
    format_table,
    run_micro,
    usable_backends,
)


@click.group(invoke_without_command=True)
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


@cli.command()
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
    "backends",
    multiple=True,
    type=click.Choice(["uring", "module"]),
    help="Backends to compare (default: the usable ones).",
)
@click.option(
    "--source",
    type=click.Path(path_type=Path, file_okay=False),
    help="Source tree whose libesca/build to use (default: this tree, else installed).",
)
def micro(
    rounds: int, repeats: int, sockets: int, backends: tuple[str, ...], source: Path | None
) -> None:
    """Per-call cost of 64-byte writes and closes, direct vs batched.

    Batch sizes 1, 8, 32, 64; medians over interleaved repeats.
    """
    top = source or Path(__file__).resolve().parent.parent
    lib, prog = find_artifacts(top)
    chosen = ("off", *backends) if backends else usable_backends()
    setup = MicroSetup(
        library=lib, program=prog, backends=chosen, rounds=rounds, repeats=repeats, sockets=sockets
    )
    log.info(
        f"esca-bench micro: {lib}, backends {', '.join(chosen)}, "
        f"{repeats} interleaved repeats of {rounds} segments"
    )
    result = run_micro(setup)
    click.echo(format_table(setup, result, batches=BATCH_SIZES))


cli.add_command(servers_command)
cli.add_command(report_command)


def main() -> None:
    log.run_main(cli)
