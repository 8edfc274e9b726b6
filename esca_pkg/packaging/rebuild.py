"""Rebuild a Debian source package with one extra quilt patch.

Steps, each a function so that a target (or a test) can run them one by one:
unpack the .dsc, add the patch to debian/patches/series (DEP-3 header kept),
apply it with dpkg-source and require it in quilt's .pc/applied-patches
(dpkg-source silently leaves out a patch that does not apply), add a changelog
entry whose version carries the local suffix, install the build dependencies,
run dpkg-buildpackage, pick the binary packages the recipe keeps, and check
that the server binary in them carries the hooks (check_hooks).
"""

from __future__ import annotations

import email.utils
import fnmatch
import os
import re
import shutil
import tempfile
from pathlib import Path

from debian.changelog import Changelog
from debian.deb822 import Dsc
from debian.debian_support import Version

from esca_pkg import proc
from esca_pkg.log import die, info
from esca_pkg.packaging import debbuild
from esca_pkg.runtime import hooks
from esca_pkg.servers.recipe import Recipe, Selection

APT_LOCK_TIMEOUT = 600  # seconds apt waits for another apt/dpkg to finish


def unpack(dsc: Path, dest: Path) -> Path:
    """dpkg-source -x of the .dsc into dest (replaced if it exists)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    proc.run(
        ["dpkg-source", "--no-check", "-x", dsc, dest],
        capture=True,
        hint=f"the source package {dsc.name} may be damaged: delete {dsc.parent} and rebuild",
    )
    return dest


def add_quilt_patches(tree: Path, patches: tuple[Path, ...]) -> str:
    """add_quilt_patch() for each; returns the name of the last (the hook patch)."""
    name = ""
    for p in patches:
        name = add_quilt_patch(tree, p)
    return name


def add_quilt_patch(tree: Path, patch: Path) -> str:
    """Copy patch into debian/patches/ and append it to the series, then apply it.

    Refuses a source package that is not in the 3.0 (quilt) format, and names
    the patch and the files when it does not apply.
    """
    fmt_file = tree / "debian" / "source" / "format"
    fmt = fmt_file.read_text().strip() if fmt_file.is_file() else "1.0"
    if fmt != "3.0 (quilt)":
        die(
            f"{tree.name} uses the source format '{fmt}', not '3.0 (quilt)'",
            hint="this recipe only knows how to add a quilt patch; adapt the recipe",
        )
    patches = tree / "debian" / "patches"
    patches.mkdir(exist_ok=True)
    series = patches / "series"
    lines = series.read_text().splitlines() if series.is_file() else []
    if patch.name in (ln.split("#", 1)[0].strip() for ln in lines):
        die(
            f"{tree.name} already has a patch named {patch.name} in its series",
            hint="rename the ESCA patch in the recipe",
        )
    shutil.copyfile(patch, patches / patch.name)
    series.write_text("\n".join([*lines, patch.name]) + "\n")
    res = proc.run(["dpkg-source", "--before-build", "."], cwd=tree, capture=True, check=False)
    if res.returncode != 0:
        lines = res.stdout.strip().splitlines()[-8:] + res.stderr.strip().splitlines()[-4:]
        detail = "\n".join(lines)
        die(
            f"{patch} does not apply to {tree.name}:\n{detail}",
            hint=_refresh_hint(tree, patch),
        )
    check_applied(tree, patch)
    return patch.name


def applied_patches(tree: Path) -> list[str]:
    """The patches quilt's database of the tree lists as applied (.pc/applied-patches)."""
    path = tree / ".pc" / "applied-patches"
    if not path.is_file():
        return []
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def check_applied(tree: Path, patch: Path) -> None:
    """Stop unless patch is listed in .pc/applied-patches.

    dpkg-source --before-build applies the next patch of the series only when
    a dry run of it succeeds, and otherwise leaves it out and exits 0: a stale
    patch would build a server without the hooks.  The hunks that fail are
    named from the same dry run (GNU patch, no fuzz, as dpkg-source applies).
    """
    if patch.name in applied_patches(tree):
        return
    res = proc.run(
        [
            "patch",
            "--dry-run",
            "--batch",
            "--forward",
            "-F0",
            "-p1",
            "-i",
            tree / "debian" / "patches" / patch.name,
        ],
        cwd=tree,
        capture=True,
        check=False,
        hint="install patch (a dependency of dpkg-dev)",
    )
    failed = failed_hunks(res.stdout + res.stderr)
    detail = "\n".join(f"  {f}: {', '.join(h)}" for f, h in failed.items()) or (
        "  " + "\n  ".join((res.stdout + res.stderr).strip().splitlines()[-6:])
    )
    die(
        f"{patch} was not applied to {tree.name} (dpkg-source skipped it: "
        f"not in .pc/applied-patches); failing hunks:\n{detail}",
        hint=_refresh_hint(tree, patch),
    )


def failed_hunks(output: str) -> dict[str, list[str]]:
    """File -> its failed hunks ("hunk #1 at line 33") from GNU patch's output."""
    found: dict[str, list[str]] = {}
    current = "?"
    for line in output.splitlines():
        m = re.match(r"(?:checking|patching) file (.+)", line)
        if m:
            current = m.group(1).strip().strip("'")
            continue
        m = re.match(r"Hunk #(\d+) FAILED at (\d+)", line)
        if m:
            found.setdefault(current, []).append(f"hunk #{m.group(1)} at line {m.group(2)}")
    return found


def _refresh_hint(tree: Path, patch: Path) -> str:
    try:
        with (tree / "debian" / "changelog").open() as fh:
            version = str(Changelog(fh, max_blocks=1).full_version)
    except (OSError, ValueError):
        version = tree.name
    rel = f"servers/{patch.parent.name}/{patch.name}"
    return (
        f"refresh {rel} for {version}: in {tree}, quilt push -f, fix the rejected hunks, "
        f"quilt refresh, and copy it back (or add a patch for this release under "
        f"[release.<codename>] in servers/{patch.parent.name}/recipe.toml)"
    )


def add_changelog_entry(tree: Path, suffix: str, patch_name: str, distribution: str) -> Version:
    """New debian/changelog entry <current version><suffix>; returns the new version."""
    path = tree / "debian" / "changelog"
    with path.open() as fh:
        log = Changelog(fh)
    old = log.full_version
    new = Version(f"{old}{suffix}")
    if not new > Version(old):
        die(f"the local version {new} does not sort above {old}", hint="fix the recipe's suffix")
    log.new_block(
        package=log.package,
        version=new,
        distributions=distribution,
        urgency="medium",
        author=debbuild.maintainer(),
        date=email.utils.formatdate(usegmt=False, localtime=False),
        changes=[
            "",
            f"  * Rebuild of {old} with the ESCA hooks",
            f"    (debian/patches/{patch_name}): the event loop's wait sends the",
            "    calls its last iteration deferred (batch_flush_wait()), each",
            "    iteration is a batching segment (batch_start()), esca_init() in",
            "    each serving process; active only with libesca preloaded (esca-run).",
            "",
        ],
    )
    path.write_text(str(log))
    return new


def add_lintian_overrides(tree: Path, overrides: dict[str, tuple[str, ...]]) -> None:
    """Append the recipe's overrides (tags Debian's own packaging raises, which the
    rebuild does not change) to debian/<package>.lintian-overrides, with the reason."""
    for package, tags in sorted(overrides.items()):
        path = tree / "debian" / f"{package}.lintian-overrides"
        text = path.read_text() if path.is_file() else ""
        if text and not text.endswith("\n"):
            text += "\n"
        text += (
            "# esca-pkg: raised by Debian's own packaging of this version, which the\n"
            "# ESCA rebuild leaves unchanged (servers/<name>/recipe.toml).\n"
        )
        text += "".join(f"{package}: {tag}\n" for tag in tags)
        path.write_text(text)


def install_build_deps(tree: Path, log: Path) -> None:
    """apt-get build-dep on the unpacked tree, when dpkg-checkbuilddeps finds unmet ones."""
    unmet = debbuild.unmet_build_depends(tree / "debian" / "control")
    if not unmet:
        return
    if os.geteuid() != 0:
        die(
            f"build dependencies of {tree.name} are missing: {unmet}",
            hint=f"as root: apt-get build-dep {tree}",
        )
    info(f"installing the build dependencies of {tree.name}")
    proc.run(
        [
            "apt-get",
            "-q",
            "-y",
            "-o",
            f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT}",
            "--no-install-recommends",
            "build-dep",
            f"./{tree.name}",
        ],
        cwd=tree.parent,
        env={"DEBIAN_FRONTEND": "noninteractive"},
        log=log,
        hint="see the log; apt-get update may be needed",
    )


def build(tree: Path, selection: Selection, jobs: int, log: Path) -> Path:
    """dpkg-buildpackage of the tree, unsigned, tests off; returns the .changes."""
    return debbuild.dpkg_buildpackage(
        tree, log, jobs, options=(selection.flag,), nocheck=True
    ).changes


def deb_package_name(path: Path) -> str:
    return path.name.split("_", 1)[0]


def kept_debs(changes: Path, keep: tuple[str, ...]) -> list[Path]:
    """The .debs of a .changes whose package name matches a keep pattern (no -dbgsym)."""
    debs = [f for f in debbuild.changes_files(changes) if f.suffix == ".deb"]
    chosen = [
        d
        for d in debs
        if not deb_package_name(d).endswith("-dbgsym")
        and any(fnmatch.fnmatchcase(deb_package_name(d), pat) for pat in keep)
    ]
    missing = [
        p for p in keep if not any(fnmatch.fnmatchcase(deb_package_name(d), p) for d in chosen)
    ]
    if missing:
        die(
            f"the build in {changes.parent} produced no package for {', '.join(missing)}",
            hint="fix the recipe's keep list",
        )
    return chosen


def check_hooks(debs: list[Path], binary: Path) -> Path:
    """The .deb of debs that installs binary, after checking that the binary carries the
    ESCA hooks as esca-run checks them (runtime/hooks.py); stops the build otherwise, so
    that a server without the hooks is never published."""
    for deb in debs:
        listing = proc.run(["dpkg-deb", "--contents", deb], capture=True).stdout
        members = {ln.split()[-1] for ln in listing.splitlines() if ln.split()}
        if f".{binary}" not in members:
            continue
        with tempfile.TemporaryDirectory(prefix="esca-hooks-") as tmp:
            proc.run(["dpkg-deb", "--extract", deb, tmp], capture=True)
            path = Path(tmp) / binary.relative_to("/")
            try:
                state, present = hooks.hook_state(path)
            except hooks.ElfError as e:
                die(f"{deb.name}: cannot read {binary}: {e}", hint="see the build log")
        if state is not hooks.HookState.HOOKED:
            what = {
                hooks.HookState.NONE: "references none of them",
                hooks.HookState.PARTIAL: f"references only {', '.join(present)}",
                hooks.HookState.DEFINES: "defines them itself instead of leaving them to libesca",
            }[state]
            die(
                f"{deb.name}: {binary} does not carry the ESCA hooks "
                f"({', '.join(hooks.REQUIRED)} and one of {', '.join(hooks.FLUSHES)}): "
                f"it {what}; the build is not published",
                hint="the hook patch did not take effect: check that it is applied "
                "(debian/patches/series) and that the build compiles the patched file",
            )
        info(f"{deb.name}: {binary} carries the hooks ({', '.join(present)})")
        return deb
    names = ", ".join(d.name for d in debs) or "(none)"
    die(
        f"no package of the build installs {binary} ({names})",
        hint="fix [run] binary or keep in the recipe",
    )


def rebuild(recipe: Recipe, dsc: Path, work: Path, jobs: int, log: Path, distribution: str) -> Path:
    """All steps for one recipe; returns the .changes of the build (in work/)."""
    with dsc.open() as fh:
        src = Dsc(fh)
    upstream = str(Version(src["Version"]).upstream_version)
    tree = unpack(dsc, work / f"{src['Source']}-{upstream}")
    name = add_quilt_patches(tree, recipe.patches)
    version = add_changelog_entry(tree, recipe.suffix, name, distribution)
    add_lintian_overrides(tree, recipe.lintian_overrides)
    install_build_deps(tree, log)
    info(f"building {recipe.name} {version} (log: {log})")
    return build(tree, recipe.build, jobs, log)
