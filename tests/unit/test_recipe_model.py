"""Recipe loading: the registry is the set of recipe folders, every fact is
checked with its file named, per-release build facts override the defaults."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from esca_pkg.log import EscaError
from esca_pkg.packaging.release import dist_hint
from esca_pkg.servers import recipe
from esca_pkg.servers.recipe import Kind, Selection, Workers

MINIMAL = """\
name = "{name}"
kind = "debian-source"
source-package = "{name}"
patch = "hooks.patch"
keep = ["{name}"]

[run]
binary = "/usr/sbin/{name}"
packages = ["{name}"]
workers = "processes-or-main"
stop-signal = "SIGINT"
serve-args = ["-f", "{{config}}"]
"""


def folder(root: Path, name: str, text: str | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "recipe.toml").write_text(text if text is not None else MINIMAL.format(name=name))
    (d / "hooks.patch").write_text("patch\n")
    return d


def test_a_new_server_is_a_new_folder(tmp_path: Path) -> None:
    folder(tmp_path, "apache")
    folder(tmp_path, "caddy")
    (tmp_path / "notes").mkdir()  # no recipe: not a server
    assert recipe.names(tmp_path) == ("apache", "caddy")
    r = recipe.load(tmp_path, "apache")
    assert (r.kind, r.build, r.suffix) == (Kind.DEBIAN_SOURCE, Selection.BINARY, "+esca1")
    assert r.run.workers is Workers.PROCESSES_OR_MAIN
    assert r.run.stop_signal is signal.SIGINT
    assert (
        r.run.install_hint("apache")
        == f"esca-pkg build apache && apt install ./{dist_hint()}/apache_*+esca*.deb"
    )
    r.check_build_files()


def test_the_source_tree_servers_all_load() -> None:
    servers = recipe.source_dir(Path(__file__).resolve().parents[2])
    assert {"nginx", "lighttpd", "lwan"} <= set(recipe.names(servers))
    nginx = recipe.load(servers, "nginx")
    assert nginx.run.worker_user == "www-data" and nginx.run.workers is Workers.PROCESSES
    assert recipe.load(servers, "lwan").run.binary == Path("/usr/bin/lwan")


def test_release_tables_override_build_facts(tmp_path: Path) -> None:
    text = MINIMAL.format(name="web") + (
        '\n[release.trixie]\npatch = "hooks-trixie.patch"\nrevision = 2\n'
    )
    d = folder(tmp_path, "web", text)
    (d / "hooks-trixie.patch").write_text("p\n")
    r = recipe.load(tmp_path, "web")
    assert r.for_release("bookworm") is r
    t = r.for_release("trixie")
    assert (t.patch.name, t.suffix, t.run) == ("hooks-trixie.patch", "+esca2", r.run)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('name = "x"', 'name = "y"'), "but the directory is servers/x"),
        (('kind = "debian-source"', 'kind = "rpm"'), "is not one of"),
        (('keep = ["x"]', "keep = []"), "'keep' is empty"),
        (('keep = ["x"]', 'keep = "x"'), "must be a list of strings"),
        (('stop-signal = "SIGINT"', 'stop-signal = "SIGNOPE"'), "not a signal name"),
        (('binary = "/usr/sbin/x"', 'binray = "/usr/sbin/x"'), "unknown [run] keys binray"),
        (('workers = "processes-or-main"', 'workers = "processes"'), "needs worker-title"),
        (("[run]", '[release.trixie]\nbinary = "/x"\n[run]'), "[release.trixie] may only set"),
        (('source-package = "x"\n', ""), "needs 'source-package'"),
    ],
)
def test_bad_recipes_are_named_with_the_fix(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    folder(tmp_path, "x", MINIMAL.format(name="x").replace(*change))
    with pytest.raises(EscaError) as e:
        recipe.load(tmp_path, "x")
    assert message in str(e.value) and "recipe.toml" in str(e.value)
    assert e.value.hint


def test_unknown_server_lists_the_known_ones(tmp_path: Path) -> None:
    folder(tmp_path, "nginx")
    with pytest.raises(EscaError, match="unknown server 'apache'") as e:
        recipe.load(tmp_path, "apache")
    assert e.value.hint == "choose one of: nginx"


def test_a_missing_patch_is_found_before_a_build(tmp_path: Path) -> None:
    (folder(tmp_path, "x") / "hooks.patch").unlink()
    r = recipe.load(tmp_path, "x")  # running needs no patch
    with pytest.raises(EscaError, match=r"hooks\.patch does not exist"):
        r.check_build_files()
