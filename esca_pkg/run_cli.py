"""esca-run: run a patched server (or any hooked program) under ESCA.

    esca-run nginx|lighttpd|lwan [OPTIONS] [-- SERVER ARGUMENTS]
    esca-run [OPTIONS] -- /path/to/program [ARGUMENTS]

Finds the server, refuses a binary without the hooks, preloads libesca,
checks that the chosen backend can run here and says which one runs, then
replaces itself with the server in the foreground.  --print-env prints the
environment instead (for a systemd drop-in).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import click

from esca_pkg import log
from esca_pkg.log import debug, die, info, warn
from esca_pkg.servers import backends, hooks
from esca_pkg.servers.backends import Backend

LIBRARY_ENV = "ESCA_LIBRARY"


@dataclass(frozen=True)
class Server:
    name: str
    binary: str
    package: str
    #: the user the serving processes run as with the packaged configuration
    worker_user: str | None

    def foreground_args(self, args: list[str], env_names: list[str]) -> list[str]:
        """Arguments that keep the server in the foreground with its normal configuration.

        nginx starts its workers with an emptied environment (only TZ and the
        variables named by "env" directives survive), so the ESCA_* variables
        are named with -g "env ...;" for esca_init() in the workers to see them.
        """
        if self.name == "nginx":
            out = list(args)
            keep = " ".join(f"env {n};" for n in env_names if n.startswith("ESCA_"))
            if "-g" in out[:-1]:
                i = out.index("-g")
                extra = "" if "daemon" in out[i + 1] else "daemon off; "
                out[i + 1] = f"{extra}{keep} {out[i + 1]}".strip()
                return out
            return ["-g", f"daemon off; {keep}".strip(), *out]
        if self.name == "lighttpd":
            out = list(args)
            if "-f" not in out:
                out = ["-f", "/etc/lighttpd/lighttpd.conf", *out]
            if "-D" not in out:
                out = ["-D", *out]
            return out
        return list(args)


SERVERS = {
    "nginx": Server("nginx", "/usr/sbin/nginx", "nginx", "www-data"),
    "lighttpd": Server("lighttpd", "/usr/sbin/lighttpd", "lighttpd", "www-data"),
    "lwan": Server("lwan", "/usr/bin/lwan", "lwan", None),
}


def default_library() -> Path:
    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    return Path("/usr/lib") / multiarch / "libesca.so.0"


def find_library(option: Path | None) -> Path:
    lib = option or (Path(os.environ[LIBRARY_ENV]) if os.environ.get(LIBRARY_ENV) else None)
    origin = "--library" if option else (LIBRARY_ENV if lib else "the libesca0 package")
    lib = lib or default_library()
    if not lib.is_file():
        die(
            f"libesca not found at {lib} (from {origin})",
            hint="install it (esca-pkg build libesca && apt install ./dist/libesca0_*.deb), or "
            f"point {LIBRARY_ENV} at a built one "
            "(make -C libesca: libesca/build/libesca.so.0)",
        )
    try:
        ok = hooks.defines_hooks(lib)
    except hooks.ElfError as e:
        die(str(e), hint=f"point {LIBRARY_ENV} or --library at libesca.so.0")
    if not ok:
        die(
            f"{lib} does not define esca_init, batch_start and batch_flush: it is not libesca",
            hint=f"point {LIBRARY_ENV} or --library at libesca.so.0",
        )
    return lib.resolve()


def check_binary(binary: Path, server: Server | None) -> None:
    """Refuse, with the fix, a binary that lacks the hooks."""
    if server is not None:
        fix = (
            f"install the patched {server.package}: esca-pkg build {server.name} && "
            f"apt install ./dist/{server.package}_*+esca*.deb"
        )
    else:
        fix = "rebuild the program with the ESCA hooks (see docs/servers.md)"
    try:
        state, present = hooks.hook_state(binary)
    except hooks.ElfError as e:
        die(f"cannot inspect {binary}: {e}", hint=fix)
    if state is hooks.HookState.NONE:
        die(
            f"{binary} has no ESCA hooks (it references none of esca_init, batch_start, "
            "batch_flush): libesca would change nothing",
            hint=fix,
        )
    if state is hooks.HookState.PARTIAL:
        die(f"{binary} references only {', '.join(present)} of the three ESCA hooks", hint=fix)
    if state is hooks.HookState.DEFINES:
        die(
            f"{binary} defines the ESCA hooks itself, so the preloaded libesca would not be used",
            hint=fix,
        )


def resolve_program(
    server: Server | None, binary: Path | None, rest: list[str], env_names: list[str]
) -> tuple[Path, list[str]]:
    if server is not None:
        path = binary or Path(server.binary)
        if not path.is_file():
            die(
                f"{server.name} is not installed ({path} is missing)",
                hint=f"esca-pkg build {server.name} && apt install ./dist/{server.package}_*.deb",
            )
        return path, server.foreground_args(rest, env_names)
    if not rest:
        die("nothing to run", hint="esca-run nginx|lighttpd|lwan, or esca-run -- PROGRAM ARGS")
    found = shutil.which(rest[0])
    if found is None:
        die(f"{rest[0]}: program not found", hint="give its full path after --")
    return Path(found), rest[1:]


def build_env(
    library: Path, backend: str, stats: bool, stats_dir: Path | None, esca_debug: bool
) -> dict[str, str]:
    env: dict[str, str] = {}
    preload = os.environ.get("LD_PRELOAD", "").split()
    preload = [p for p in preload if Path(p).name not in ("libesca.so", "libesca.so.0")]
    env["LD_PRELOAD"] = " ".join([str(library), *preload])
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


# Arguments after the first "--" go to the server or program untouched.
_after_dashes: list[str] = []


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("server", required=False, type=click.Choice(sorted(SERVERS)))
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
    help="keep live counters in DIR/esca-<pid>.stats (ESCA_STATS_DIR)",
)
@click.option("--esca-debug", is_flag=True, help="libesca reports errors of deferred calls")
@click.option(
    "--library",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"libesca to preload (default: ${LIBRARY_ENV}, else {default_library()})",
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
    server: str | None,
    backend: str,
    stats: bool,
    stats_dir: Path | None,
    esca_debug: bool,
    library: Path | None,
    binary: Path | None,
    print_env: bool,
    systemd: bool,
    debug_: bool,
) -> None:
    """Run nginx, lighttpd or lwan (or any hooked PROGRAM after --) under ESCA.

    The server runs in the foreground with its normal configuration; server
    arguments go after --, e.g. esca-run nginx -- -c /etc/nginx/test.conf.
    """
    log.set_debug(debug_)
    if systemd and not print_env:
        die("--systemd only applies to --print-env", hint="add --print-env")
    srv = SERVERS[server] if server else None
    if srv is None and binary is not None:
        die("--binary needs a server name", hint="esca-run -- PROGRAM ARGS runs any program")
    lib = find_library(library)
    wanted = Backend(backend)
    run_as = srv.worker_user if (srv and os.geteuid() == 0) else None
    chosen, checks = backends.choose(wanted, run_as)
    if wanted not in (Backend.AUTO, Backend.OFF) and chosen is Backend.OFF:
        c = checks[0]
        die(
            f"the {wanted.value} backend cannot run here: {c.reason}",
            hint=c.fix or "choose another --backend",
        )
    if stats_dir is not None and not print_env:
        stats_dir.mkdir(parents=True, exist_ok=True)
    env = build_env(lib, backend if print_env else chosen.value, stats, stats_dir, esca_debug)
    # Tuning variables the user set (ESCA_URING_MIN_OPS, ...) must reach nginx's
    # workers too.
    names = list(env) + sorted(
        k for k in os.environ if k.startswith("ESCA_") and k not in env and k != LIBRARY_ENV
    )
    program, args = resolve_program(srv, binary, list(_after_dashes), names)
    check_binary(program, srv)

    if print_env:
        info(f"esca-run: {program} would run with {describe(chosen, wanted, checks)} here")
        if systemd:
            click.echo(f"# esca-run {server or ''} --print-env --systemd: run {program} under ESCA")
            click.echo("[Service]")
            for k, v in env.items():
                click.echo(f'Environment="{k}={v}"')
        else:
            for k, v in env.items():
                click.echo(f"{k}={shlex.quote(v)}")
        return

    if wanted is Backend.AUTO and chosen is Backend.OFF:
        warn(
            "no backend can run here; the server runs with libesca in pass-through mode: "
            + "; ".join(f"{c.backend.value}: {c.reason} (fix: {c.fix})" for c in checks)
        )
    info(f"esca-run: {program.name} with {lib}, {describe(chosen, wanted, checks)}")
    argv = [str(program), *args]
    debug(f"exec: {' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())} {shlex.join(argv)}")
    sys.stderr.flush()
    sys.stdout.flush()
    try:
        os.execve(program, argv, {**os.environ, **env})
    except OSError as e:
        die(f"cannot run {program}: {e.strerror}", hint="check the file's permissions")


def main() -> None:
    argv = sys.argv[1:]
    if "--" in argv:
        i = argv.index("--")
        _after_dashes[:] = argv[i + 1 :]
        sys.argv = [sys.argv[0], *argv[:i]]
    log.run_main(cli)


if __name__ == "__main__":
    main()
