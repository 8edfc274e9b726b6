"""The C test programs share one helper header (tests/c/esca_test.h) and one gcc
command line (libesca_support.compile_c): what the header promises of CHECK and
FAIL holds, in the main thread, another thread and a forked child."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from libesca_support import TOP, compile_c

PROGRAM = r"""
#include "esca_test.h"

static void *in_thread(void *arg)
{
	CHECK(arg == NULL, "thread arg %p", arg);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "pass";
	pthread_t th;

	CHECK(argc >= 1);
	if (!strcmp(how, "check")) {
		errno = 0;
		CHECK(close(-1) == 0);
	} else if (!strcmp(how, "message")) {
		CHECK(strcmp(how, "100%") == 0, "how is %s", how);
	} else if (!strcmp(how, "fail")) {
		errno = EBADF;
		FAIL("closing fd %d: %m", 42);
	} else if (!strcmp(how, "thread")) {
		CHECK(pthread_create(&th, NULL, in_thread, (void *)how) == 0);
		pthread_join(th, NULL);
	} else if (!strcmp(how, "child")) {
		pid_t pid = fork();

		if (pid == 0)
			CHECK(getpid() == 1, "in the child");
		CHECK(wait_child(pid) == T_FAIL, "the child's CHECK");
	} else if (!strcmp(how, "err")) {
		CHECK_ERR(close(-1), ENOENT);
	}
	printf("went on\n");
	return T_PASS;
}
"""


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("esca_test_h")
    (d / "p.c").write_text(PROGRAM)
    return compile_c(d / "p.c", d / "p")


def run(prog: Path, how: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([prog, how], capture_output=True, text=True, timeout=30, check=False)


def test_a_passing_program_runs_to_its_end(prog: Path) -> None:
    res = run(prog, "pass")
    assert (res.returncode, res.stdout, res.stderr) == (0, "went on\n", "")


@pytest.mark.parametrize(
    "how, line",
    [
        ("check", r"FAIL p\.c:\d+: close\(-1\) == 0 \(errno 9: Bad file descriptor\)"),
        ("message", r'FAIL p\.c:\d+: strcmp\(how, "100%"\) == 0: how is message \(errno 0: .*\)'),
        ("fail", r"FAIL p\.c:\d+: closing fd 42: Bad file descriptor"),
        ("thread", r"FAIL p\.c:\d+: arg == NULL: thread arg 0x[0-9a-f]+ \(errno \d+: .*\)"),
        ("err", r"FAIL p\.c:\d+: close\(-1\) returned -1 errno 9 \(.*\), expected errno 2 \(.*\)"),
    ],
)
def test_a_failed_check_says_where_and_why_and_ends_the_program(
    prog: Path, how: str, line: str
) -> None:
    res = run(prog, how)
    assert res.returncode == 1
    assert res.stdout == "", "the program went on after a failed CHECK"
    assert re.fullmatch(line + "\n", res.stderr.replace(str(prog.parent) + "/", "")), res.stderr


def test_a_check_in_a_forked_child_ends_the_child(prog: Path) -> None:
    res = run(prog, "child")
    assert (res.returncode, res.stdout) == (0, "went on\n")
    assert "in the child" in res.stderr


def sources(pattern: str) -> list[Path]:
    """The files of tests/ (not what the tests built into tests/_build)."""
    return [p for p in (TOP / "tests").rglob(pattern) if "_build" not in p.parts]


def test_one_header_and_one_gcc_command_line() -> None:
    headers = sorted(p.relative_to(TOP) for p in sources("*.h"))
    assert headers == [Path("tests/c/esca_test.h")]
    for src in sources("*.c"):
        includes = re.findall(r'#include\s+"([^"]+)"', src.read_text())
        assert includes == ["esca_test.h"], f"{src}: {includes}"
    gcc = re.compile(r"""["'](gcc|cc|clang)["']""")
    callers = sorted(p.relative_to(TOP) for p in sources("*.py") if gcc.search(p.read_text()))
    assert callers == [Path("tests/libesca_support.py")]
