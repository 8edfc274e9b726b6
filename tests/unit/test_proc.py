"""The one subprocess gateway: environment, failures in one line, no stdin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from esca_pkg import proc
from esca_pkg.log import EscaError


def test_fixed_environment_and_no_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "fr_FR.UTF-8")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    res = proc.run(["sh", "-c", 'echo "$LANG|$LC_ALL|$PATH|$PYTHONPATH"; cat'], capture=True)
    assert res.stdout.splitlines() == [f"C.UTF-8||{proc.SYSTEM_PATH}|"]
    own = proc.run(["sh", "-c", "echo $PATH"], capture=True, system_path=False, env={"X": "1"})
    assert own.stdout.strip() == os.environ["PATH"]


def test_failures_are_one_precise_line() -> None:
    with pytest.raises(
        EscaError, match=r"'sh -c 'echo oops >&2; exit 3'' failed with exit code 3: oops"
    ) as e:
        proc.run(["sh", "-c", "echo oops >&2; exit 3"], capture=True, hint="do this")
    assert e.value.hint == "do this"
    with pytest.raises(EscaError, match="no-such-tool: command not found"):
        proc.run(["no-such-tool"])
    with pytest.raises(EscaError, match="was killed by SIGKILL"):
        proc.run(["sh", "-c", "kill -9 $$"])
    with pytest.raises(EscaError, match=r"did not finish within 0\.2 s"):
        proc.run(["sleep", "5"], timeout=0.2)
    assert proc.run(["false"], check=False).returncode == 1


def test_log_file_gets_the_command_and_its_output(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "x.log"
    with pytest.raises(EscaError, match=f"log: {log}"):
        proc.run(["sh", "-c", "echo building; exit 2"], log=log)
    assert log.read_text() == "$ sh -c 'echo building; exit 2'\nbuilding\n"


def test_spawn_with_a_whole_environment() -> None:
    child = proc.spawn(
        ["sh", "-c", 'test -z "$HOME" && test "$A" = 1'],
        env={"A": "1", "PATH": "/usr/bin:/bin"},
        inherit=False,
    )
    assert child.wait(10) == 0
    with pytest.raises(EscaError, match="command not found"):
        proc.spawn(["no-such-tool"])
