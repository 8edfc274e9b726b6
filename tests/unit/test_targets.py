"""Build targets: the order build-all follows, server targets from recipe folders."""

from __future__ import annotations

import email.utils
import shutil
from pathlib import Path

import pytest
from debian.changelog import Changelog

from esca_pkg.log import EscaError
from esca_pkg.packaging import targets
from esca_pkg.packaging.context import BuildContext
from esca_pkg.packaging.project import Project
from esca_pkg.packaging.release import DebianRelease
from esca_pkg.packaging.targets.esca import EscaTarget
from esca_pkg.packaging.targets.server import ServerTarget
from esca_pkg.servers import recipe


class Fake(ServerTarget):
    def __init__(self, name: str, order: int = 50, requires: tuple[str, ...] = ()) -> None:
        super().__init__(name)
        self.order = order
        self.requires = requires


def test_requirements_come_first_then_order_then_name() -> None:
    ts = [Fake("b"), Fake("a"), Fake("late", 90), Fake("first", 90, ("z",)), Fake("z", 99)]
    assert targets.build_order(ts) == ["a", "b", "late", "z", "first"]


def test_unknown_requirements_are_ignored_and_cycles_named() -> None:
    assert targets.build_order([Fake("a", requires=("gone",))]) == ["a"]
    with pytest.raises(EscaError, match="cycle: a, b"):
        targets.build_order([Fake("a", requires=("b",)), Fake("b", requires=("a",))])


def test_every_recipe_folder_is_a_target(tmp_path: Path) -> None:
    (tmp_path / "servers" / "caddy").mkdir(parents=True)
    (tmp_path / "servers" / "caddy" / "recipe.toml").write_text("")
    found = targets.available(Project(tmp_path, "1.0"))
    assert {"esca", "caddy"} == set(found)
    assert isinstance(found["caddy"], ServerTarget)
    assert targets.names(None) == ["esca"]  # outside a source tree
    with pytest.raises(EscaError, match="unknown target 'nosuch'") as e:
        targets.get("nosuch", None)
    assert e.value.hint == "choose one of: esca"


def test_a_recipe_may_not_take_a_targets_name(tmp_path: Path) -> None:
    (tmp_path / "servers" / "esca").mkdir(parents=True)
    (tmp_path / "servers" / "esca" / "recipe.toml").write_text("")
    with pytest.raises(EscaError, match="servers/esca has the name of the build target"):
        targets.available(Project(tmp_path, "1.0"))


def test_a_debian_server_takes_a_local_dsc_of_its_own_source(tmp_path: Path) -> None:
    """esca-pkg build nginx --source FILE.dsc: for a mirror that lists versions it
    does not serve; anything but a .dsc of the recipe's source package is refused."""
    root = Path(__file__).resolve().parents[2]
    target = ServerTarget("nginx")
    nginx = recipe.load(recipe.source_dir(root), "nginx")
    dsc = tmp_path / "nginx_1.26.3-3+deb13u9.dsc"
    dsc.write_text("Format: 3.0 (quilt)\nSource: nginx\nVersion: 1.26.3-3+deb13u9\n")
    version, path = target._local_dsc(nginx, dsc)
    assert (str(version), path) == ("1.26.3-3+deb13u9", dsc)
    other = tmp_path / "lighttpd_1.4.79-1.dsc"
    other.write_text("Format: 3.0 (quilt)\nSource: lighttpd\nVersion: 1.4.79-1\n")
    with pytest.raises(EscaError, match="source of 'lighttpd', not of 'nginx'"):
        target._local_dsc(nginx, other)
    with pytest.raises(EscaError, match=r"--source must be a \.dsc") as e:
        target._local_dsc(nginx, tmp_path)
    assert "dget" in (e.value.hint or "")


def test_a_source_comes_from_the_targets_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ESCA_<TARGET>_SOURCE gives a server target its local source (build, build-all,
    the demo and the test suites alike); targets built from this tree take none, and a
    path that does not exist is refused naming the variable."""
    from esca_pkg.packaging.cli import env_sources

    (tmp_path / "servers" / "nginx").mkdir(parents=True)
    (tmp_path / "servers" / "nginx" / "recipe.toml").write_text("")
    found = targets.available(Project(tmp_path, "1.0"))
    dsc = tmp_path / "nginx_1.26.3-3+deb13u9.dsc"
    dsc.write_text("")
    monkeypatch.setenv("ESCA_NGINX_SOURCE", str(dsc))
    monkeypatch.setenv("ESCA_DKMS_SOURCE", str(dsc))
    assert env_sources(found) == {"nginx": dsc.resolve()}
    monkeypatch.setenv("ESCA_NGINX_SOURCE", str(tmp_path / "gone.dsc"))
    with pytest.raises(EscaError, match=r"ESCA_NGINX_SOURCE=.*gone\.dsc: no such file") as e:
        env_sources(found)
    assert e.value.hint and "unset it" in e.value.hint
    monkeypatch.setenv("ESCA_NGINX_SOURCE", "")
    assert env_sources(found) == {}


def _esca_tree(tmp_path: Path, version: str) -> BuildContext:
    root = Path(__file__).resolve().parents[2]
    proj = tmp_path / "proj"
    (proj / "debian").mkdir(parents=True)
    shutil.copy(root / "debian" / "changelog", proj / "debian" / "changelog")
    shutil.copy(root / "debian" / "control", proj / "debian" / "control")
    (proj / "VERSION").write_text(version + "\n")
    return BuildContext(
        Project(proj, version), DebianRelease.named("trixie"), tmp_path / "d", tmp_path / "b"
    )


def test_the_esca_target_adds_the_releases_changelog_entry(tmp_path: Path) -> None:
    """The work tree's debian/changelog: the tree's, under one entry naming the release
    (version +deb13, distribution trixie, a second after the newest entry: reproducible,
    and later, as lintian wants)."""
    root = Path(__file__).resolve().parents[2]
    ours = Changelog((root / "debian" / "changelog").read_text())
    ctx = _esca_tree(tmp_path, str(ours.version))
    tree = EscaTarget().stage(ctx)
    log = Changelog((tree / "debian" / "changelog").read_text())
    assert str(log.version) == f"{ours.version}+deb13" and log.distributions == "trixie"
    delta = email.utils.parsedate_to_datetime(log.date) - email.utils.parsedate_to_datetime(
        ours.date
    )
    assert delta.total_seconds() == 1 and "Debian 13 (trixie)" in str(log[0])
    assert [str(b.version) for b in log][1:] == [str(b.version) for b in ours]


def test_the_esca_target_refuses_a_changelog_behind_version(tmp_path: Path) -> None:
    ctx = _esca_tree(tmp_path, "9.9.9")
    with pytest.raises(EscaError, match=r"newest entry is .* but VERSION says 9\.9\.9") as e:
        EscaTarget().stage(ctx)
    assert "dch -v 9.9.9" in (e.value.hint or "")


def test_the_changelog_names_the_version_file() -> None:
    """debian/changelog's newest entry is VERSION (dpkg-buildpackage in a checkout and
    esca-pkg build the same upstream version)."""
    root = Path(__file__).resolve().parents[2]
    top = Changelog((root / "debian" / "changelog").read_text())
    assert str(top.version) == (root / "VERSION").read_text().strip()
    assert top.package == "esca"
