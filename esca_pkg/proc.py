"""The one gateway for every subprocess the tool starts.

argv lists only, stdin from /dev/null, a fixed environment (LANG=C.UTF-8 and,
for Debian tools, a PATH without user-installed interpreters), the command
logged under --debug, and one precise line on failure.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from esca_pkg.log import EscaError, debug

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def base_env(system_path: bool = True, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes: C.UTF-8 locale, Debian's PATH when asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["LANG"] = "C.UTF-8"
    env.pop("LC_ALL", None)
    if system_path:
        env["PATH"] = SYSTEM_PATH
    if extra:
        env.update(extra)
    return env


def describe_failure(argv: Sequence[str], returncode: int) -> str:
    cmd = shlex.join(str(a) for a in argv)
    if returncode == 127:
        return f"{argv[0]}: command not found (running: {cmd})"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"'{cmd}' was killed by {name}"
    return f"'{cmd}' failed with exit code {returncode}"


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    system_path: bool = True,
    capture: bool = False,
    log: Path | None = None,
    check: bool = True,
    hint: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv; raise EscaError (with hint) when it fails and check is set.

    With log, stdout and stderr go to that file (appended); with capture they
    are returned; otherwise they are inherited.
    """
    args = [str(a) for a in argv]
    debug(f"run: {shlex.join(args)}" + (f" (in {cwd})" if cwd else ""))
    full_env = base_env(system_path, env)
    try:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as fh:
                fh.write(f"$ {shlex.join(args)}\n")
                fh.flush()
                proc = subprocess.run(
                    args,
                    cwd=cwd,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
        else:
            proc = subprocess.run(
                args,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                capture_output=capture,
                text=True,
                timeout=timeout,
                check=False,
            )
    except FileNotFoundError:
        raise EscaError(describe_failure(args, 127), hint) from None
    except subprocess.TimeoutExpired:
        raise EscaError(f"'{shlex.join(args)}' did not finish within {timeout} s", hint) from None
    if check and proc.returncode != 0:
        msg = describe_failure(args, proc.returncode)
        if capture and proc.stderr:
            msg += ": " + proc.stderr.strip().splitlines()[-1]
        if log is not None:
            msg += f" (log: {log})"
        raise EscaError(msg, hint)
    return proc


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    system_path: bool = True,
    stdout: IO[bytes] | int | None = subprocess.DEVNULL,
    stderr: IO[bytes] | int | None = subprocess.STDOUT,
    new_session: bool = False,
    inherit: bool = True,
    pass_fds: Sequence[int] = (),
    hint: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running process (a server, a tracer) and return at once.

    Same environment rules as run(); with inherit=False, env is the whole
    environment of the child (nothing of ours leaks into it). The caller owns
    the process (wait or terminate it). A program that cannot be started
    raises EscaError.
    """
    args = [str(a) for a in argv]
    debug(f"spawn: {shlex.join(args)}" + (f" (in {cwd})" if cwd else ""))
    full_env = base_env(system_path, env) if inherit else dict(env or {})
    try:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=new_session,
            pass_fds=pass_fds,
        )
    except FileNotFoundError:
        raise EscaError(describe_failure(args, 127), hint) from None
