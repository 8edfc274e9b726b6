"""Fast checks of the recipes, patches, hook detection and esca-run's refusals
(no server build, no root)."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from debian.debian_support import Version
from libesca_support import compile_c
from servers_support import ROOT, esca_run, sh

from esca_pkg.log import EscaError
from esca_pkg.packaging import debian_source
from esca_pkg.runtime import backends, hooks, statsdir
from esca_pkg.servers import recipe

pytestmark = pytest.mark.fast
SERVERS = recipe.source_dir(ROOT)

HEADER = ROOT / "libesca" / "include" / "esca.h"
HOOK_NAMES = ("esca_init", "batch_start", "batch_flush", "batch_flush_wait")
_PROTO = re.compile(r"^\s*(int|void)\s+(" + "|".join(HOOK_NAMES) + r")\s*\(([^)]*)\)", re.MULTILINE)


def prototypes(text: str) -> dict[str, tuple[str, str]]:
    """name -> (return type, parameters with whitespace normalised)."""
    return {m.group(2): (m.group(1), " ".join(m.group(3).split())) for m in _PROTO.finditer(text)}


#: every recipe, and each with its [release.<codename>] tables applied
VARIANTS = [
    (name, release)
    for name in recipe.names(SERVERS)
    for release in ("", *sorted(recipe.load(SERVERS, name).releases))
]


def variant(name: str, release: str) -> recipe.Recipe:
    r = recipe.load(SERVERS, name)
    return r.for_release(release) if release else r


@pytest.mark.parametrize(("name", "release"), VARIANTS)
def test_recipe_loads_and_patch_has_dep3_header(name: str, release: str) -> None:
    r = variant(name, release)
    r.check_build_files()
    assert r.patches[-1] == r.patch
    for patch in r.patches:
        header = patch.read_text().split("\n---\n", 1)[0]
        for fld in ("Description:", "Author:", "Forwarded:", "Last-Update:"):
            assert re.search(rf"^{fld} \S", header, re.MULTILINE), f"{patch}: no {fld}"
    assert r.suffix == "+esca1"


@pytest.mark.parametrize(("name", "release"), VARIANTS)
def test_patch_declares_the_hooks_weak_as_esca_h_does(name: str, release: str) -> None:
    """The patches declare the hooks themselves (no Build-Depends on libesca-dev):
    esca_init, batch_start and batch_flush_wait (the wait of the event loop,
    with the batch sent in the same kernel entry), with the prototypes of
    libesca's header, weak, and each called only where it resolved (without
    libesca the wait is plain epoll_wait())."""
    want = prototypes(HEADER.read_text())
    assert set(want) == set(HOOK_NAMES)
    added = "\n".join(
        ln[1:]
        for ln in variant(name, release).patch.read_text().splitlines()
        if ln.startswith("+") and not ln.startswith("+++")
    )
    declared = prototypes(added)
    assert set(declared) == {"esca_init", "batch_start", "batch_flush_wait"}, declared
    for hook, proto in declared.items():
        assert proto == want[hook], (hook, proto, want[hook])
        assert re.search(rf"{hook}\([^)]*\)\s*__attribute__\(\(weak\)\);", added), hook
    # every hook is called only through its guard (comments aside)
    code = re.sub(r"/\*.*?\*/", "", added, flags=re.DOTALL)
    calls = re.findall(r"\b(esca_init|batch_start|batch_flush_wait)\(", code)
    decls = len(declared)
    guarded = re.findall(r"(?:if \((esca_init|batch_start)\)|\((batch_flush_wait) \?)", code)
    assert len(calls) - decls == len(guarded) == 3, (calls, guarded)
    assert "epoll_wait(" in added  # the wait without libesca


def test_unknown_server_and_bad_recipe_are_named(tmp_path: Path) -> None:
    with pytest.raises(EscaError, match="unknown server 'apache'"):
        recipe.load(SERVERS, "apache")
    (tmp_path / "servers" / "nginx").mkdir(parents=True)
    (tmp_path / "servers" / "nginx" / "recipe.toml").write_text('name = "nginx"\nkind = "x"\n')
    with pytest.raises(EscaError) as e:
        recipe.load(tmp_path / "servers", "nginx")
    assert "recipe.toml" in str(e.value)


def test_local_version_sorts_between_debian_versions() -> None:
    for base in ("1.22.1-9+deb12u9", "1.4.69-1"):
        ours = f"{base}+esca1"
        assert Version(ours) > Version(base)
        assert Version(ours) < Version(f"{base}.1~")  # metapackages' (<< ver.1~) still hold
        assert Version(ours) < Version(f"{base}+esca2")
        sh("dpkg", "--compare-versions", ours, "gt", base)
        sh("dpkg", "--compare-versions", ours, "lt", f"{base}.1~")


def test_private_apt_config_never_touches_etc_apt(tmp_path: Path) -> None:
    archive = debian_source.SourceArchive(tmp_path / "apt", "bookworm")
    lines = archive.sources_lines()
    assert all(ln.startswith("deb-src ") for ln in lines)
    assert [ln.split()[3] for ln in lines] == ["bookworm", "bookworm-updates", "bookworm-security"]
    opts = " ".join(archive.options())
    assert "/etc/apt" not in opts
    for key in ("Dir::Etc::sourcelist", "Dir::State", "Dir::Cache"):
        assert f"{key}={tmp_path}" in opts


@pytest.mark.parametrize("binary", ["/usr/bin/python3", "/bin/true"])
def test_elf_reader_agrees_with_readelf(binary: str) -> None:
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed")
    ours = hooks.dynamic_symbols(Path(binary))
    out = subprocess.run(
        ["readelf", "--dyn-syms", "-W", binary], capture_output=True, text=True, check=True
    ).stdout
    theirs = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0].rstrip(":").isdigit() and parts[0] != "0:":
            theirs.add(parts[7].split("@")[0])
    assert theirs - {""} == set(ours) - {""}


def test_hook_detection_on_a_hooked_and_a_plain_program(tmp_path: Path, libesca: Path) -> None:
    src = tmp_path / "hooked.c"
    src.write_text(
        '#include "esca.h"\nint main(void) { ESCA_INIT(); ESCA_BATCH_START(); '
        "ESCA_BATCH_FLUSH(); return 0; }\n"
    )
    exe = tmp_path / "hooked"
    compile_c(src, exe)
    assert hooks.hook_state(exe)[0] is hooks.HookState.HOOKED
    assert hooks.hook_state(Path("/bin/true"))[0] is hooks.HookState.NONE
    assert hooks.defines_hooks(libesca.resolve())
    # Runs unchanged without libesca (weak hooks), and under esca-run with it.
    sh(exe)
    res = esca_run("--library", libesca, "--backend", "off", "--no-stats-dir", "--", exe)
    assert res.returncode == 0, res.stderr
    assert "backend off" in res.stderr


def test_esca_run_refuses_a_binary_without_hooks(libesca: Path) -> None:
    res = esca_run("--library", libesca, "--", "/bin/true")
    assert res.returncode == 1
    assert "/bin/true has no ESCA hooks" in res.stderr and "fix:" in res.stderr


def test_esca_run_names_a_missing_library(tmp_path: Path) -> None:
    res = esca_run("--", "/bin/true", env={"ESCA_LIBRARY": str(tmp_path / "nope.so")})
    assert res.returncode == 1
    assert "libesca not found" in res.stderr and "ESCA_LIBRARY" in res.stderr
    res = esca_run("--library", "/bin/true", "--", "/bin/true")
    assert "is not libesca" in res.stderr


def test_esca_run_refuses_an_unusable_module_backend(tmp_path: Path, libesca: Path) -> None:
    if backends.check_module().usable:
        pytest.skip("the esca module is loaded here")
    src = tmp_path / "h.c"
    src.write_text(
        '#include "esca.h"\nint main(void) { ESCA_INIT(); return 0; }\n'
        "void f(void) { ESCA_BATCH_START(); ESCA_BATCH_FLUSH(); }\n"
    )
    compile_c(src, tmp_path / "h")
    res = esca_run("--library", libesca, "--backend", "module", "--", tmp_path / "h")
    assert res.returncode == 1
    assert "module backend cannot run here" in res.stderr and "fix:" in res.stderr


def test_print_env_for_a_systemd_drop_in(tmp_path: Path, libesca: Path) -> None:
    src = tmp_path / "h.c"
    src.write_text(
        '#include "esca.h"\nint main(void) { ESCA_INIT(); return 0; }\n'
        "void f(void) { ESCA_BATCH_START(); ESCA_BATCH_FLUSH(); }\n"
    )
    compile_c(src, tmp_path / "h")
    plain = esca_run(
        "--library", libesca, "--backend", "uring", "--stats", "--print-env", "--", tmp_path / "h"
    )
    assert plain.returncode == 0, plain.stderr
    env = dict(ln.split("=", 1) for ln in plain.stdout.splitlines())
    assert env == {"LD_PRELOAD": str(libesca.resolve()), "ESCA_BACKEND": "uring", "ESCA_STATS": "1"}
    unit = esca_run("--library", libesca, "--print-env", "--systemd", "--", tmp_path / "h")
    lines = unit.stdout.splitlines()
    assert "[Service]" in lines
    assert f'Environment="LD_PRELOAD={libesca.resolve()}"' in lines
    assert 'Environment="ESCA_BACKEND=auto"' in lines


def test_systemd_drop_in_makes_the_stats_dir_as_esca_run_does(
    tmp_path: Path, libesca: Path
) -> None:
    """The drop-in's ExecStartPre makes the live counters' directory root:<workers'
    group> 1770 (what esca-run makes, what libesca accepts) and names it."""
    src = tmp_path / "h.c"
    src.write_text(
        '#include "esca.h"\nint main(void) { ESCA_INIT(); return 0; }\n'
        "void f(void) { ESCA_BATCH_START(); ESCA_BATCH_FLUSH(); }\n"
    )
    compile_c(src, tmp_path / "h")
    base = ["--library", libesca, "--binary", tmp_path / "h", "--print-env", "--systemd"]
    unit = esca_run(*base, "nginx")
    assert unit.returncode == 0, unit.stderr
    lines = unit.stdout.splitlines()
    assert "ExecStartPre=+/usr/bin/install -d -o root -g www-data -m 1770 /run/esca/nginx" in lines
    assert 'Environment="ESCA_STATS_DIR=/run/esca/nginx"' in lines
    assert not [
        ln
        for ln in esca_run(*base, "--no-stats-dir", "nginx").stdout.splitlines()
        if "ESCA_STATS_DIR" in ln or "ExecStartPre" in ln
    ]

    where = tmp_path / "run" / "nginx"
    lines = esca_run(*base, "--stats-dir", where, "nginx").stdout.splitlines()
    assert [ln for ln in lines if "ESCA_STATS_DIR" in ln] == [
        f'Environment="ESCA_STATS_DIR={where}"'
    ]
    (pre,) = [ln for ln in lines if ln.startswith("ExecStartPre=")]
    if os.geteuid() != 0:
        pytest.skip("running the ExecStartPre command (chown) needs root")
    # What systemd runs ('+': with full privileges), then libesca's rule.
    where.parent.mkdir(mode=0o755)
    sh(*shlex.split(pre.removeprefix("ExecStartPre=+")))
    st = os.lstat(where)
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, "www-data")
    assert stat.S_IMODE(st.st_mode) == 0o1770
    assert statsdir.refusal(st, pwd.getpwnam("www-data").pw_uid) is None


def test_nginx_foreground_arguments_keep_the_esca_environment() -> None:
    nginx, lighttpd = recipe.load(SERVERS, "nginx").run, recipe.load(SERVERS, "lighttpd").run
    env = ["LD_PRELOAD", "ESCA_BACKEND", "ESCA_STATS"]
    assert nginx.foreground_args([], env) == [
        "-g",
        "daemon off; env ESCA_BACKEND; env ESCA_STATS;",
    ]
    assert nginx.foreground_args(["-g", "worker_processes 3;"], env) == [
        "-g",
        "daemon off; env ESCA_BACKEND; env ESCA_STATS; worker_processes 3;",
    ]
    assert nginx.foreground_args(["-g", "daemon off; env ESCA_STATS;"], env) == [
        "-g",
        "env ESCA_BACKEND; daemon off; env ESCA_STATS;",
    ]
    assert lighttpd.foreground_args([], env) == [
        "-D",
        "-f",
        "/etc/lighttpd/lighttpd.conf",
    ]
    assert lighttpd.foreground_args(["-f", "x.conf"], env) == ["-D", "-f", "x.conf"]
    assert recipe.load(SERVERS, "lwan").run.foreground_args(["-r", "/w"], env) == ["-r", "/w"]


def test_unserved_source_version_is_named_with_apt_reason() -> None:
    """apt-get source's errors (as apt 2.6/3.0 print them for a version the index
    lists but the mirror does not serve: trixie's nginx, measured) become the reason
    esca-pkg gives for each version it tried."""
    stderr = (
        "E: Failed to fetch http://deb.debian.org/debian-security/pool/updates/main/n/nginx/"
        "nginx_1.26.3-3%2bdeb13u11.dsc  404  Not Found [IP: 203.0.113.80 80]\n"
        "E: Failed to fetch some archives.\n"
    )
    assert debian_source.fetch_failure(stderr) == "404 Not Found"
    assert debian_source.fetch_failure("E: Unable to find a source package for x\n") == (
        "Unable to find a source package for x"
    )
    assert debian_source.fetch_failure("") == ""
