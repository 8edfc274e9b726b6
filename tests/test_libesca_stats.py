"""libesca's files and environment in privileged processes (issue 15).

Real files, real processes, as root: a stats directory others can write to,
links and FIFOs planted where libesca's file will go, a set-user-ID and a
file-capability program run by an unprivileged user with ESCA_* set.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from libesca_support import TOP, compile_c, esca_env, parse_stats, run_prog

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, set-user-ID)")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory as /tmp is: root's, mode 1777, reachable by everyone."""
    top = Path(tempfile.mkdtemp(prefix="esca-stats-", dir="/tmp"))
    top.chmod(0o755)
    d = top / "shared"
    d.mkdir()
    d.chmod(0o1777)
    yield d
    shutil.rmtree(top)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A root-only file an attacker would like libesca to overwrite."""
    f = tmp_path / "secret"
    f.write_text("root's secret\n")
    f.chmod(0o600)
    return f


def snapshot(f: Path) -> tuple[bytes, int, int]:
    st = f.stat()
    return f.read_bytes(), st.st_mode, st.st_mtime_ns


def stats_env(libesca: Path, stats_dir: Path) -> dict[str, str]:
    return esca_env(libesca, "off", ESCA_STATS_DIR=str(stats_dir))


def start_at_known_pid(prog: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """prog, started through a shell that waits for a line on stdin and then
    execs it: the pid is known before libesca runs in it."""
    return subprocess.Popen(
        ["/bin/sh", "-c", 'read _ && exec "$0"', str(prog)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def plant(path: Path, kind: str, target: Path) -> None:
    """What an unprivileged user can leave in a sticky directory."""
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_text("someone else's\n")
    os.lchown(path, NOBODY, NOBODY)


def next_pids(n: int) -> list[int]:
    last = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    return [(last + k) % pid_max for k in range(1, n + 1)]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory", "others_file"])
def test_planted_name_left_alone(cprog, libesca, shared_dir, secret, kind):
    """A link to a root-only file (and more for the next few hundred pids), a
    FIFO, a directory, another user's file at esca-<pid>.stats in a 1777
    directory: libesca (as root) touches none of them, does not hang, keeps
    its counters private and says so once."""
    before = snapshot(secret)
    for pid in next_pids(300):
        plant(shared_dir / f"esca-{pid}.stats", "symlink", secret)
    proc = start_at_known_pid(cprog("t_exit"), stats_env(libesca, shared_dir))
    name = shared_dir / f"esca-{proc.pid}.stats"
    if name.is_symlink():
        name.unlink()
    plant(name, kind, secret)
    out, err = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 0, err
    assert out == "pending-1;pending-2;"
    assert snapshot(secret) == before, "the root-only file was written through the link"
    what = {"symlink": "a symbolic link", "fifo": "a FIFO", "directory": "a directory"}
    expect = (
        f"ESCA_STATS_DIR={shared_dir}: esca-{proc.pid}.stats exists and is "
        f"{what.get(kind, 'a file')} of uid {NOBODY}, not a file of this process's (uid 0): "
        "left alone, counters stay private"
    )
    assert [line for line in err.splitlines() if "ESCA_STATS_DIR" in line] == [
        f"libesca[{proc.pid}]: {expect}"
    ]
    assert parse_stats(err)["pid"] == proc.pid  # the summary of the private counters
    assert os.lstat(name).st_uid == NOBODY  # still there, still theirs
    if kind == "symlink":
        assert os.readlink(name) == str(secret)


def live(prog: Path, env: dict[str, str], **kw) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(prog)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_live_file_mode_and_stale_file(cprog, libesca, shared_dir):
    """The live file: created afresh, mode 0640 whatever the umask, ours; a
    stale regular file of our uid (a reused pid) is replaced; at exit the file
    goes."""
    proc = start_at_known_pid(cprog("t_live"), stats_env(libesca, shared_dir))
    name = shared_dir / f"esca-{proc.pid}.stats"
    name.write_text("stale file of an earlier process with this pid\n")
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "ready\n"
    st = os.lstat(name)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
    magic, version = struct.unpack("<QI", name.read_bytes()[:12])
    assert magic == 0x5354534143534500 and version >= 1
    _, err = proc.communicate("", timeout=60)
    assert proc.returncode == 0 and "ESCA_STATS_DIR" not in err, err
    assert not name.exists()


@pytest.mark.parametrize(
    ("owner", "mode", "why"),
    [
        (NOBODY, 0o755, "is owned by uid 65534, neither root nor this process (uid 0): refused"),
        (0, 0o777, "is writable by others and not sticky (mode 0777): refused"),
        (0, 0o2770, None),  # root's, group-writable (the package's /run/esca): fine
        (0, 0o1777, None),  # sticky, as /tmp: fine
    ],
)
def test_stats_directory_checked(cprog, libesca, tmp_path, owner, mode, why):
    d = tmp_path / "stats"
    d.mkdir()
    os.chown(d, owner, 0)
    d.chmod(mode)
    proc = live(cprog("t_live"), stats_env(libesca, d))
    files = list(d.iterdir())
    _, err = proc.communicate("", timeout=60)
    assert proc.returncode == 0, err
    lines = [line for line in err.splitlines() if "ESCA_STATS_DIR" in line]
    if why:
        assert files == []
        assert len(lines) == 1 and f"ESCA_STATS_DIR={d} {why}" in lines[0], err
        assert "counters stay private" in lines[0]
    else:
        assert [f.name for f in files] == [f"esca-{proc.pid}.stats"] and not lines, err


def test_stats_dir_not_a_directory(cprog, libesca, tmp_path):
    """ESCA_STATS_DIR naming a FIFO: refused at once, no hang."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = run_prog(cprog("t_exit"), ["1"], stats_env(libesca, fifo), timeout=30)
    assert proc.returncode == 0
    assert f"ESCA_STATS_DIR={fifo}: Not a directory; counters stay private" in proc.stderr


# --- set-user-ID and file capabilities ----------------------------------------------------


@pytest.fixture
def linked_prog(libesca: Path) -> Iterator[Path]:
    """t_live linked to a copy of libesca by an absolute RPATH (LD_PRELOAD is
    ignored for set-user-ID programs), in a directory everyone can reach."""
    d = Path(tempfile.mkdtemp(prefix="esca-setuid-", dir="/tmp"))
    d.chmod(0o755)
    lib = d / "libesca.so.0"
    shutil.copy(libesca.resolve(), lib)
    lib.chmod(0o755)
    prog = d / "t_live"
    compile_c(
        TOP / "tests" / "c" / "t_live.c", prog, "-Wl,--no-as-needed", str(lib), f"-Wl,-rpath,{d}"
    )
    yield prog
    shutil.rmtree(d)


def give_file_capability(prog: Path) -> None:
    """cap_net_bind_service+ep, as setcap(8) writes it (VFS_CAP_REVISION_2)."""
    cap_net_bind_service = 10
    value = struct.pack("<IIIII", 0x02000000 | 1, 1 << cap_net_bind_service, 0, 0, 0)
    os.setxattr(prog, "security.capability", value)


def run_as_nobody(prog: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(prog)],
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
    )


@pytest.mark.parametrize("privilege", ["setuid", "file_capability"])
def test_privileged_program_ignores_environment(linked_prog, shared_dir, privilege):
    """A set-user-ID root (or file-capability) copy of a hooked program, run
    by nobody with ESCA_* set: libesca takes none of them from nobody -- no
    stats file in nobody's chosen directory, no backend of nobody's choosing,
    no summary.  The same binary unprivileged takes them all (the control)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "ESCA_STATS_DIR": str(shared_dir),
        "ESCA_BACKEND": "bogus",
        "ESCA_STATS": "1",
        "ESCA_DEBUG": "1",
    }
    control = run_as_nobody(linked_prog, env)
    assert control.returncode == 0, control.stderr
    assert "ESCA_BACKEND=bogus is not one of" in control.stderr
    assert "esca: pid=" in control.stderr
    assert "ESCA_STATS_DIR" not in control.stderr  # (the file it made: the next test)

    os.chown(linked_prog, 0, 0)
    if privilege == "setuid":
        linked_prog.chmod(0o4755)
    else:
        give_file_capability(linked_prog)
    proc = run_as_nobody(linked_prog, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ready\ndone\n"
    assert proc.stderr == "", "libesca used the caller's environment:\n" + proc.stderr
    assert list(shared_dir.iterdir()) == []


def test_privileged_program_writes_no_file(linked_prog, shared_dir):
    """The file is never even created under AT_SECURE (watched while the
    program runs, not only after its exit)."""
    linked_prog.chmod(0o4755)
    env = {"PATH": "/usr/bin:/bin", "ESCA_STATS_DIR": str(shared_dir)}
    proc = live(linked_prog, env, user=NOBODY, group=NOBODY, extra_groups=[])
    files = list(shared_dir.iterdir())
    proc.communicate("", timeout=60)
    assert proc.returncode == 0 and files == []
    # and without the set-user-ID bit, nobody's process does make one
    linked_prog.chmod(0o755)
    proc = live(linked_prog, env, user=NOBODY, group=NOBODY, extra_groups=[])
    files = list(shared_dir.iterdir())
    proc.communicate("", timeout=60)
    assert [f.name for f in files] == [f"esca-{proc.pid}.stats"]
