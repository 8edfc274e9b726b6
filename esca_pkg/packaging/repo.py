"""An apt repository with one suite per Debian release, from built .debs.

    <out>/dists/<suite>/Release            Origin, Label, Suite, Codename, hashes
    <out>/dists/<suite>/InRelease          (signed repositories)
    <out>/dists/<suite>/Release.gpg        (signed repositories)
    <out>/dists/<suite>/main/binary-<arch>/Packages(.gz)
    <out>/pool/<suite>/*.deb
    <out>/esca-archive-keyring.gpg         (signed repositories)

A suite is named after the release its packages were built for (the
Distribution of the .changes each .deb came with: bookworm, trixie), so one
repository serves both releases: a machine names its own codename in the
source line (`deb [trusted=yes] file:/path trixie main`) and apt takes that
release's builds.  Usable unsigned (`[trusted=yes]`) or with a signed Release
(`[signed-by=KEYRING]`); the Origin lets apt pin the repository
(`Pin: release o=ESCA`).

Who writes what:
- python-debian only reads: the Distribution of each .changes (the suite a
  .deb goes to) and each .deb's control, which names it in the pool
  (<package>_<version without epoch>_<arch>.deb, the name apt-ftparchive's
  architecture filter matches; a .deb is hard-linked there, else copied);
- apt-ftparchive (package apt-utils) writes each Packages index
  (`apt-ftparchive packages`, stored as Packages and gzip'd as Packages.gz)
  and each Release with its MD5Sum/SHA1/SHA256/SHA512 of those indexes
  (`apt-ftparchive release`, the fields given as APT::FTPArchive::Release::*);
- gpg writes InRelease (--clearsign), Release.gpg (--detach-sign) and the
  keyring (--export).
Nothing under /etc/apt is touched.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from debian.arfile import ArError
from debian.deb822 import Changes, Packages
from debian.debfile import DebError, DebFile
from debian.debian_support import Version

from esca_pkg import proc
from esca_pkg.log import die
from esca_pkg.packaging import release

DEFAULT_ORIGIN = "ESCA"
DEFAULT_LABEL = "ESCA"
COMPONENT = "main"
KEYRING_NAME = "esca-archive-keyring.gpg"
INDEXES = ("Packages", "Packages.gz")
SIGNATURES = ("InRelease", "Release.gpg")
#: what an earlier, flat layout of esca-pkg repo left at the top (removed)
FLAT_LEFTOVERS = (*INDEXES, "Release", *SIGNATURES)
FTPARCHIVE = "apt-ftparchive"
FTPARCHIVE_FIX = "apt-get install apt-utils"

Listed = tuple[str, str, str]  # (package, version, architecture)


@dataclass(frozen=True)
class RepoResult:
    path: Path
    suites: dict[str, list[Listed]]
    signed: bool

    @property
    def keyring(self) -> Path:
        return self.path / KEYRING_NAME

    def sources_line(self, suite: str) -> str:
        opt = f"signed-by={self.keyring}" if self.signed else "trusted=yes"
        return f"deb [{opt}] file:{self.path} {suite} {COMPONENT}"


def debs_by_distribution(dirs: Iterable[Path]) -> dict[str, list[Path]]:
    """The .debs of dirs, grouped by the Debian release they were built for: the
    Distribution of the .changes listing a .deb (esca-pkg keeps its own packages'
    .changes beside them), else the directory's name when it is a release's
    codename (esca-pkg builds into dist/<codename>/)."""
    found: dict[str, list[Path]] = {}
    orphans: list[Path] = []
    for d in dirs:
        by_changes: dict[Path, str] = {}
        for ch_path in sorted(d.glob("*.changes")):
            with ch_path.open() as fh:
                ch = Changes(fh)
            dist = ch.get("Distribution", "").split()
            if not dist:
                die(f"{ch_path} names no Distribution", hint="rebuild it with esca-pkg build-all")
            for f in ch.get("Files", []):
                by_changes[d / f["name"]] = dist[0]
        named = d.name if d.name in release.NUMBERS else None
        for deb in sorted(p for p in d.glob("*.deb") if p.is_file()):
            suite = by_changes.get(deb, named)
            if suite is None:
                orphans.append(deb)
                continue
            if named and suite != named:
                die(
                    f"{deb} was built for {suite} (its .changes says so) but lies in {d}",
                    hint=f"move it to {d.parent / suite}, or rebuild it there",
                )
            found.setdefault(suite, []).append(deb)
    if orphans:
        die(
            "no .changes and no directory name say which Debian release these were built "
            "for: " + ", ".join(str(p) for p in orphans),
            hint="build them with esca-pkg (into dist/<codename>/), or put every "
            "package into one suite: esca-pkg repo --suite CODENAME",
        )
    return {k: sorted(v) for k, v in sorted(found.items())}


def _control(deb: Path) -> Listed:
    """(Package, Version, Architecture) of deb, read with python-debian."""
    try:
        with DebFile(str(deb)) as pkg:
            control = pkg.debcontrol()
            return control["Package"], control["Version"], control["Architecture"]
    except (ArError, DebError, OSError, KeyError) as e:
        die(
            f"{deb} is not a readable Debian package: {e}",
            hint="rebuild it with esca-pkg build-all, or remove it from the directory",
        )


def _require_ftparchive() -> None:
    if shutil.which(FTPARCHIVE, path=proc.SYSTEM_PATH) is None:
        die(
            f"{FTPARCHIVE} is not installed (esca-pkg repo writes the Packages and "
            "Release files with it)",
            hint=FTPARCHIVE_FIX,
        )


def _ftparchive(out: Path, *args: str, hint: str) -> str:
    """What apt-ftparchive args, run in out, writes to stdout.  It exits 0 even
    when it could not read a package (and leaves it out), so an E: line on
    stderr is a failure too."""
    res = proc.run([FTPARCHIVE, *args], cwd=out, capture=True, check=False, hint=FTPARCHIVE_FIX)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("E: ")]
    if res.returncode != 0 or errors:
        said = "; ".join(errors or res.stderr.strip().splitlines()[-1:])
        die(f"{FTPARCHIVE} {' '.join(args)} (in {out}) failed: {said}", hint=hint)
    return res.stdout


def _place(deb: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(deb, dest)
    except OSError:
        shutil.copy2(deb, dest)


def _host_architecture() -> str:
    return proc.run(["dpkg", "--print-architecture"], capture=True).stdout.strip()


def _write_suite(
    out: Path, suite: str, debs: list[Path], origin: str, label: str
) -> tuple[Path, list[Listed]]:
    pooled: dict[str, Listed] = {}
    for deb in sorted(set(debs)):
        pkg, version, arch = entry = _control(deb)
        name = f"{pkg}_{version.split(':', 1)[-1]}_{arch}.deb"
        if name in pooled:
            die(f"two packages named {name} for {suite}", hint="remove one of them")
        _place(deb, out / "pool" / suite / name)
        pooled[name] = entry
    # Packages of Architecture: all are listed for every architecture.
    archs = sorted({a for _, _, a in pooled.values()} - {"all"}) or [_host_architecture()]
    sdir = out / "dists" / suite
    check = f"check the .debs of {out / 'pool' / suite} with dpkg-deb --info; rebuild or remove it"
    for arch in archs:
        text = _ftparchive(
            out,
            "--arch",
            arch,
            "-o",
            "APT::FTPArchive::IncludeArchitectureAll=true",
            "packages",
            f"pool/{suite}",
            hint=check,
        )
        paras = Packages.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False)
        got = sorted(Path(p["Filename"]).name for p in paras)
        want = sorted(n for n, (_, _, a) in pooled.items() if a in (arch, "all"))
        if got != want:
            die(
                f"{FTPARCHIVE} listed {', '.join(got) or 'nothing'} for {suite}/{arch}, "
                f"not {', '.join(want)}",
                hint=check,
            )
        bdir = sdir / COMPONENT / f"binary-{arch}"
        bdir.mkdir(parents=True)
        (bdir / "Packages").write_text(text)
        with gzip.GzipFile(bdir / "Packages.gz", "wb", mtime=0) as gz:
            gz.write(text.encode())

    fields = {
        "Origin": origin,
        "Label": label,
        "Suite": suite,
        "Codename": suite,
        "Architectures": " ".join(archs),
        "Components": COMPONENT,
        "Description": f"ESCA packages for Debian {suite}, built by esca-pkg",
    }
    opts = [a for k, v in fields.items() for a in ("-o", f"APT::FTPArchive::Release::{k}={v}")]
    # Release lists the indexes under dists/<suite>; it is written after, not listing itself.
    text = _ftparchive(out, *opts, "release", f"dists/{suite}", hint=f"check {sdir}")
    (sdir / "Release").write_text(text)
    listed = sorted(pooled.values(), key=lambda e: (e[0], Version(e[1]), e[2]))
    return sdir, listed


def build_repo(
    suites: Mapping[str, list[Path]],
    out: Path,
    *,
    origin: str = DEFAULT_ORIGIN,
    label: str = DEFAULT_LABEL,
    sign_key: str | None = None,
    gnupghome: Path | None = None,
) -> RepoResult:
    """Write the repository out from scratch: one suite per key of suites."""
    if not any(suites.values()):
        die("no .deb files to publish", hint="build them first: esca-pkg build-all")
    for name in suites:
        if not name or "/" in name or name.startswith("."):
            die(f"'{name}' cannot name a suite", hint="use a release codename such as trixie")
    _require_ftparchive()
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("dists", "pool"):
        shutil.rmtree(out / sub, ignore_errors=True)
    for name in (*FLAT_LEFTOVERS, KEYRING_NAME):
        (out / name).unlink(missing_ok=True)
    for old in out.glob("*.deb"):
        old.unlink()

    listed: dict[str, list[Listed]] = {}
    for suite, debs in sorted(suites.items()):
        if not debs:
            continue
        sdir, listed[suite] = _write_suite(out, suite, debs, origin, label)
        if sign_key:
            _sign(sdir, sign_key, gnupghome)
    if sign_key:
        _export_key(out, sign_key, gnupghome)
    return RepoResult(out, listed, bool(sign_key))


def _gpg_hint(key: str, gnupghome: Path | None) -> str:
    return (
        f"check that gpg has the secret key {key} (gpg --list-secret-keys"
        + (f" with GNUPGHOME={gnupghome}" if gnupghome else "")
        + ")"
    )


def _sign(sdir: Path, key: str, gnupghome: Path | None) -> None:
    env = {"GNUPGHOME": str(gnupghome)} if gnupghome else {}
    gpg = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--local-user", key]
    hint = _gpg_hint(key, gnupghome)
    release = sdir / "Release"
    proc.run(
        [*gpg, "--clearsign", "--output", sdir / "InRelease", release],
        env=env,
        capture=True,
        hint=hint,
    )
    proc.run(
        [*gpg, "--armor", "--detach-sign", "--output", sdir / "Release.gpg", release],
        env=env,
        capture=True,
        hint=hint,
    )


def _export_key(out: Path, key: str, gnupghome: Path | None) -> None:
    env = {"GNUPGHOME": str(gnupghome)} if gnupghome else {}
    hint = _gpg_hint(key, gnupghome)
    proc.run(
        ["gpg", "--batch", "--yes", "--output", out / KEYRING_NAME, "--export", key],
        env=env,
        capture=True,
        hint=hint,
    )
    if not (out / KEYRING_NAME).stat().st_size:
        die(f"gpg exported no public key for {key}", hint=hint)
