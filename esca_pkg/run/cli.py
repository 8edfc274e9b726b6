"""esca-run: run a patched server (or any hooked program) under ESCA.

    esca-run SERVER [OPTIONS] [-- SERVER ARGUMENTS]
    esca-run [OPTIONS] -- PROGRAM [ARGUMENTS]

Finds the server (its recipe, esca_pkg/servers), refuses a binary without the
hooks, preloads libesca, checks that the chosen backend can run here and says
which one runs, prepares the live-counters directory, then replaces itself
with the server in the foreground.  --print-env prints the environment
instead (for a systemd drop-in).
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from esca_pkg import log
from esca_pkg.log import debug, die, info, warn
from esca_pkg.runtime import backends, hooks, statsdir
from esca_pkg.runtime import library as libesca
from esca_pkg.runtime.backends import Backend
from esca_pkg.servers import recipe
from esca_pkg.servers.recipe import Recipe


@dataclass(frozen=True)
class Program:
    """What runs: a server of the registry or any program, and its arguments."""

    path: Path
    args: list[str]
    server: Recipe | None

    def argv(self, env_names: list[str]) -> list[str]:
        """The command line: a server's gets what keeps it in the foreground."""
        args = self.server.run.foreground_args(self.args, env_names) if self.server else self.args
        return [str(self.path), *args]


def resolve(words: tuple[str, ...], binary: Path | None) -> Program:
    """SERVER [ARGS] or PROGRAM [ARGS]: a first word naming a server of the registry
    is that server; anything else is a program (a path, or a name on PATH)."""
    if not words:
        die(
            "nothing to run",
            hint=f"esca-run {'|'.join(recipe.registry())}, or esca-run -- PROGRAM ARGS",
        )
    first, rest = words[0], list(words[1:])
    known = recipe.names(recipe.installed_dir())
    if first in known:
        server = recipe.get(first)
        path = binary or server.run.binary
        if not path.is_file():
            die(
                f"{server.name} is not installed ({path} is missing)",
                hint=server.run.install_hint(server.name),
            )
        return Program(path, rest, server)
    if binary is not None:
        die("--binary needs a server name", hint="esca-run -- PROGRAM ARGS runs any program")
    found = shutil.which(first)
    if found is None:
        die(
            f"{first}: program not found (and not a server: {', '.join(known)})",
            hint="give its full path after --",
        )
    return Program(Path(found), rest, None)


def check_binary(program: Program, lib: Path) -> None:
    """Refuse, with the fix, a binary that lacks the hooks, or whose hooks lib
    does not define (a libesca older than the server's patch)."""
    server = program.server
    fix = (
        server.run.install_hint(server.name)
        if server
        else "rebuild the program with the ESCA hooks (see docs/servers.md)"
    )
    binary = program.path
    try:
        state, present = hooks.hook_state(binary)
    except hooks.ElfError as e:
        die(f"cannot inspect {binary}: {e}", hint=fix)
    if state is hooks.HookState.NONE:
        die(
            f"{binary} has no ESCA hooks (it references none of {', '.join(hooks.HOOKS)}): "
            "libesca would change nothing",
            hint=fix,
        )
    if state is hooks.HookState.PARTIAL:
        die(
            f"{binary} references only {', '.join(present)} of the ESCA hooks "
            f"({', '.join(hooks.REQUIRED)} and one of {', '.join(hooks.FLUSHES)})",
            hint=fix,
        )
    if state is hooks.HookState.DEFINES:
        die(
            f"{binary} defines the ESCA hooks itself, so the preloaded libesca would not be used",
            hint=fix,
        )
    missing = [h for h in present if h not in hooks.defined_hooks(lib)]
    if missing:
        die(
            f"{binary} needs {', '.join(missing)}, which {lib} does not define: "
            "that libesca is older than the server's hook patch",
            hint="install the libesca0 package built with the server (esca-pkg build-all)",
        )


def build_env(
    lib: Path, backend: str, stats: bool, stats_dir: Path | None, esca_debug: bool
) -> dict[str, str]:
    env: dict[str, str] = {}
    preload = os.environ.get("LD_PRELOAD", "").split()
    preload = [p for p in preload if Path(p).name not in ("libesca.so", libesca.SONAME)]
    env["LD_PRELOAD"] = " ".join([str(lib), *preload])
    env["ESCA_BACKEND"] = backend
    if stats:
        env["ESCA_STATS"] = "1"
    if stats_dir is not None:
        env["ESCA_STATS_DIR"] = str(stats_dir)
    if esca_debug:
        env["ESCA_DEBUG"] = "1"
    return env


def describe(chosen: Backend, wanted: Backend, checks: list[backends.Check]) -> str:
    why = "; ".join(f"{c.backend.value}: {c.reason}" for c in checks)
    if wanted is Backend.AUTO:
        return f"backend {chosen.value} (auto" + (f"; {why})" if why else ")")
    return f"backend {chosen.value}" + (f" ({why})" if why else "")


def live_stats_dir(
    program: Program, option: Path | None, disabled: bool, print_env: bool
) -> Path | None:
    """The directory of the live counters, ready for the server's processes: --stats-dir,
    else /run/esca/<server> (docs/servers.md, "Live counters")."""
    if disabled:
        if option is not None:
            die("--stats-dir and --no-stats-dir contradict each other", hint="give one")
        return None
    writers = statsdir.Writers.of(program.server.run.worker_user if program.server else None)
    if option is not None:
        return option if print_env else statsdir.prepare(option, writers)
    name = program.server.name if program.server else program.path.name
    default = statsdir.default_dir(name)
    if default is None or print_env:
        return None
    return statsdir.prepare(default, writers, make_parent=True)


def systemd_stats_dir(program: Program, option: Path | None) -> list[str]:
    """Drop-in lines that make the live counters' directory as esca-run does
    (root, the workers' primary group, mode 1770) before the service starts,
    and point libesca at it.  A service runs as root: the default is
    RUN_DIR/<server> whoever prints the drop-in."""
    name = program.server.name if program.server else program.path.name
    path = Path(os.path.abspath(option)) if option else statsdir.RUN_DIR / name
    user = program.server.run.worker_user if program.server else None
    group = "root"
    if user:
        try:
            group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
        except KeyError:
            die(
                f"the workers' user {user} does not exist on this machine",
                hint="install the server's package (it creates the user), or give --no-stats-dir",
            )
    mode = statsdir.SHARED_MODE if group != "root" else statsdir.PRIVATE_MODE
    make = shlex.join(
        ["/usr/bin/install", "-d", "-o", "root", "-g", group, "-m", f"{mode:04o}", str(path)]
    )
    return [
        f"# live counters (esca-stat): {path}, root:{group} {mode:04o}, made as esca-run makes it",
        f"ExecStartPre=+{make}",
        f'Environment="ESCA_STATS_DIR={path}"',
    ]


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Servers: " + ", ".join(recipe.names(recipe.installed_dir())) + ".",
)
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="SERVER|PROGRAM [ARGS]...")
@click.option(
    "--backend",
    type=click.Choice([b.value for b in Backend]),
    default="auto",
    show_default=True,
    help="how deferred calls run: kernel module, io_uring, or not",
)
@click.option("--stats", is_flag=True, help="print libesca's counters at exit (ESCA_STATS=1)")
@click.option(
    "--stats-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help=f"keep live counters in DIR/esca-<pid>.stats (default: {statsdir.RUN_DIR}/<server>; "
    "a missing DIR is created for the workers, an unsafe one refused)",
)
@click.option("--no-stats-dir", is_flag=True, help="keep no live counters (esca-stat sees nothing)")
@click.option("--esca-debug", is_flag=True, help="libesca reports errors of deferred calls")
@click.option(
    "--library",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"libesca to preload (default: ${libesca.LIBRARY_ENV}, else {libesca.packaged()})",
)
@click.option(
    "--binary",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the server binary (default: the packaged one)",
)
@click.option(
    "--print-env", is_flag=True, help="print the environment instead of running (KEY=VALUE lines)"
)
@click.option(
    "--systemd",
    is_flag=True,
    help="with --print-env: print a systemd drop-in ([Service] Environment=...)",
)
@click.option(
    "--debug", "debug_", is_flag=True, help="log what esca-run does; tracebacks on errors"
)
def cli(
    words: tuple[str, ...],
    backend: str,
    stats: bool,
    stats_dir: Path | None,
    no_stats_dir: bool,
    esca_debug: bool,
    library: Path | None,
    binary: Path | None,
    print_env: bool,
    systemd: bool,
    debug_: bool,
) -> None:
    """Run a server (SERVER, see below) or any hooked PROGRAM under ESCA.

    The server runs in the foreground with its normal configuration; its
    arguments go after --, e.g. esca-run nginx -- -c /etc/nginx/test.conf.
    esca-stat shows its live counters.
    """
    log.set_debug(debug_)
    if systemd and not print_env:
        die("--systemd only applies to --print-env", hint="add --print-env")
    lib = libesca.find(library)
    program = resolve(words, binary)
    check_binary(program, lib)
    wanted = Backend(backend)
    run_as = program.server.run.worker_user if program.server and os.geteuid() == 0 else None
    chosen, checks = backends.choose(wanted, run_as, load=not print_env)
    if wanted not in (Backend.AUTO, Backend.OFF) and chosen is Backend.OFF:
        c = checks[0]
        die(
            f"the {wanted.value} backend cannot run here: {c.reason}",
            hint=c.fix or "choose another --backend",
        )
    live = live_stats_dir(program, stats_dir, no_stats_dir, print_env)
    env = build_env(lib, backend if print_env else chosen.value, stats, live, esca_debug)
    # Tuning variables the user set (ESCA_URING_MIN_OPS, ...) must reach nginx's
    # workers too.
    names = list(env) + sorted(
        k for k in os.environ if k.startswith("ESCA_") and k not in env and k != libesca.LIBRARY_ENV
    )

    if print_env:
        info(
            f"esca-run: {shlex.join(program.argv(names))} would run with "
            f"{describe(chosen, wanted, checks)} here"
        )
        if systemd:
            click.echo(f"# esca-run {' '.join(words)} --print-env --systemd: run under ESCA")
            click.echo("[Service]")
            for k, v in env.items():
                if k != "ESCA_STATS_DIR":  # with the lines that make it, below
                    click.echo(f'Environment="{k}={v}"')
            if not no_stats_dir:
                for line in systemd_stats_dir(program, stats_dir):
                    click.echo(line)
        else:
            for k, v in env.items():
                click.echo(f"{k}={shlex.quote(v)}")
        return

    if wanted is Backend.AUTO and chosen is Backend.OFF:
        warn(
            "no backend can run here; the server runs with libesca in pass-through mode: "
            + "; ".join(f"{c.backend.value}: {c.reason} (fix: {c.fix})" for c in checks)
        )
    where = f"; live counters in {live}" if live else ""
    info(f"esca-run: {program.path.name} with {lib}, {describe(chosen, wanted, checks)}{where}")
    argv = program.argv(names)
    debug(f"exec: {' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())} {shlex.join(argv)}")
    sys.stderr.flush()
    sys.stdout.flush()
    try:
        os.execve(program.path, argv, {**os.environ, **env})
    except OSError as e:
        die(f"cannot run {program.path}: {e.strerror}", hint="check the file's permissions")


def main() -> None:
    log.run_main(cli)
