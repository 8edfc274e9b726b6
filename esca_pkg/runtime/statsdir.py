"""Where libesca's live counters are kept, and when a directory is safe for them.

libesca creates `<dir>/esca-<pid>.stats` with openat(O_CREAT|O_EXCL|O_NOFOLLOW)
and mode 0640, and accepts the directory only when it is owned by root or by
the process's effective uid, and not writable by others unless sticky
(group-writable is allowed).  `refusal()` is that rule, so esca-run refuses
what libesca would refuse, before the server starts.

The default place is one directory per server under RUN_DIR (/run/esca, made
by esca-tools' tmpfiles.d entry: root:root 0755).  esca-run creates
`/run/esca/<server>` owned by root, group the workers' primary group, mode
1770: the workers create their own files, the sticky bit keeps them from
removing or renaming anyone else's, and nobody outside that group can plant
anything there (docs/servers.md, "Live counters").
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from esca_pkg.log import die
from esca_pkg.runtime.backends import group_name

RUN_DIR = Path("/run/esca")
#: mode of a directory esca-run makes for a server's workers (root:<their group>)
SHARED_MODE = 0o1770
#: mode of a directory only its owner writes (esca-run not as root)
PRIVATE_MODE = 0o700


@dataclass(frozen=True)
class Writers:
    """Who writes the stats files: the server's processes (uid, gid of its workers)."""

    user: str
    uid: int
    gid: int

    @classmethod
    def of(cls, user: str | None) -> Writers:
        """The workers' identity: user when esca-run runs as root, else ourselves."""
        if user is None or os.geteuid() != 0:
            pw = pwd.getpwuid(os.geteuid())
        else:
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                die(
                    f"the workers' user {user} does not exist on this machine",
                    hint="install the server's package (it creates the user), or give "
                    "--stats-dir for another user",
                )
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid)

    def groups(self) -> set[int]:
        return {self.gid, *(g.gr_gid for g in grp.getgrall() if self.user in g.gr_mem)}


def default_dir(server: str) -> Path | None:
    """Where esca-run keeps a server's counters by default (None: nowhere safe)."""
    if os.geteuid() == 0:
        return RUN_DIR / server
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "esca" / server
    return None


def search_dirs() -> list[Path]:
    """Where esca-stat looks: RUN_DIR, its subdirectories, and the user's own."""
    roots = [RUN_DIR]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        roots.append(Path(runtime) / "esca")
    out: list[Path] = []
    for root in roots:
        if root.is_dir():
            out.append(root)
            try:
                out += sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
            except PermissionError:
                pass
    return out


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def refusal(st: os.stat_result, euid: int) -> str | None:
    """Why libesca, running with euid, would refuse a directory (None: accepted)."""
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid not in (0, euid):
        return f"is owned by {_user(st.st_uid)}, neither by root nor by {_user(euid)}"
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        return (
            f"is writable by everyone (mode {stat.S_IMODE(st.st_mode):04o}) without the sticky bit"
        )
    return None


def may_create(st: os.stat_result, writers: Writers) -> bool:
    """Whether the writers may create files in a directory with this stat."""
    if writers.uid == 0:
        return True
    need = stat.S_IWUSR | stat.S_IXUSR
    if st.st_uid == writers.uid:
        return st.st_mode & need == need
    need = stat.S_IWGRP | stat.S_IXGRP
    if st.st_gid in writers.groups():
        return st.st_mode & need == need
    need = stat.S_IWOTH | stat.S_IXOTH
    return st.st_mode & need == need


def describe(st: os.stat_result) -> str:
    return f"{_user(st.st_uid)}:{group_name(st.st_gid)} {stat.S_IMODE(st.st_mode):04o}"


def _check(path: Path, st: os.stat_result, writers: Writers) -> None:
    fix = (
        "give --stats-dir a directory that does not exist yet (esca-run creates it: owned "
        f"by root, writable by the workers' group only), or leave it out ({RUN_DIR}/<server>)"
    )
    if stat.S_ISLNK(st.st_mode):
        die(f"--stats-dir {path} is a symbolic link", hint="give the directory's real path")
    # every process of the server must accept it: the root master and the workers
    for euid in {os.geteuid(), writers.uid}:
        why = refusal(st, euid)
        if why:
            die(f"--stats-dir {path} is not safe for live counters: it {why}", hint=fix)
    if not may_create(st, writers):
        die(
            f"the server's workers ({writers.user}) cannot create files in {path} ({describe(st)})",
            hint=fix,
        )


def _make(path: Path, mode: int, gid: int) -> None:
    """mkdir path, then set owner and mode through a descriptor of the new directory
    itself (never through a name someone could swap)."""
    os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.geteuid() == 0:
            os.fchown(fd, 0, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def prepare(path: Path, writers: Writers, make_parent: bool = False) -> Path:
    """Make path ready for the writers' stats files, or refuse it with the reason.

    An existing directory is only checked, never changed; a missing one is
    created.  Its parent must exist, except with make_parent (the default
    location: RUN_DIR when the tmpfiles.d entry has not run, e.g. without
    systemd, or $XDG_RUNTIME_DIR/esca)."""
    path = Path(os.path.abspath(path))
    if make_parent and not os.path.lexists(path.parent):
        _make(path.parent, 0o755 if os.geteuid() == 0 else PRIVATE_MODE, 0)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            die(
                f"--stats-dir {path}: its parent {path.parent} does not exist",
                hint=f"create {path.parent} first, or leave --stats-dir out",
            )
        parent = os.stat(path.parent)
        why = refusal(parent, os.geteuid())
        if why:
            die(
                f"--stats-dir {path}: its parent {path.parent} {why}",
                hint="choose a directory under one that root (or you) owns",
            )
        shared = os.geteuid() == 0 and writers.uid != 0
        try:
            _make(path, SHARED_MODE if shared else PRIVATE_MODE, writers.gid if shared else 0)
        except FileExistsError:
            pass  # made meanwhile: checked below like any existing directory
        st = os.lstat(path)
    _check(path, st, writers)
    return path
