"""The live-counters directory rule (libesca's, checked before the server starts)
and what esca-run makes for the workers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from esca_pkg.log import EscaError
from esca_pkg.runtime import statsdir


def fake(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 2, uid, gid, 0, 0, 0, 0))


D = stat.S_IFDIR


@pytest.mark.parametrize(
    ("mode", "uid", "euid", "refused"),
    [
        (D | 0o755, 0, 33, None),  # root's directory: accepted by everyone
        (D | 0o1770, 0, 33, None),  # group-writable is allowed
        (D | 0o1777, 0, 33, None),  # /tmp: world-writable but sticky
        (D | 0o700, 1000, 1000, None),  # the process's own
        (D | 0o777, 0, 33, "writable by everyone"),  # not sticky: links could be planted
        (D | 0o755, 1000, 0, "owned by"),  # someone else's directory
        (stat.S_IFREG | 0o644, 0, 0, "not a directory"),
    ],
)
def test_refusal_is_libescas_rule(mode: int, uid: int, euid: int, refused: str | None) -> None:
    why = statsdir.refusal(fake(mode, uid), euid)
    assert (why is None) if refused is None else (why is not None and refused in why)


def test_workers_may_create_only_through_their_group() -> None:
    workers = statsdir.Writers("www-data", 33, 33)
    assert statsdir.may_create(fake(D | 0o1770, 0, 33), workers)
    assert not statsdir.may_create(fake(D | 0o755, 0, 33), workers)
    assert not statsdir.may_create(fake(D | 0o1770, 0, 4242), workers)


def me() -> statsdir.Writers:
    return statsdir.Writers.of(None)


def test_prepare_creates_a_missing_directory(tmp_path: Path) -> None:
    made = statsdir.prepare(tmp_path / "stats", me())
    st = made.stat()
    if os.geteuid() == 0:  # root for itself: root-owned, private
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, statsdir.PRIVATE_MODE)
    else:
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), statsdir.PRIVATE_MODE)
    assert statsdir.prepare(made, me()) == made  # an existing safe one is kept as it is


def test_prepare_refuses_unsafe_directories_with_the_fix(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(EscaError, match="writable by everyone") as e:
        statsdir.prepare(open_dir, me())
    assert e.value.hint and "does not exist yet" in e.value.hint
    assert stat.S_IMODE(open_dir.stat().st_mode) == 0o777  # never changed
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(EscaError, match="symbolic link"):
        statsdir.prepare(link, me())
    with pytest.raises(EscaError, match="parent"):
        statsdir.prepare(tmp_path / "no" / "such", me())
    assert not list(open_dir.iterdir())


def test_prepare_makes_the_parent_of_the_default_place(tmp_path: Path) -> None:
    made = statsdir.prepare(tmp_path / "esca" / "nginx", me(), make_parent=True)
    assert made.is_dir()
