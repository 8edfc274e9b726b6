"""An apt repository with one suite per Debian release, from built .debs.

    <out>/dists/<suite>/Release            Origin, Label, Suite, Codename, hashes
    <out>/dists/<suite>/main/binary-<arch>/Packages(.gz)
    <out>/pool/<suite>/*.deb
    <out>/esca-archive-keyring.gpg         (signed repositories)

A suite is named after the release its packages were built for (the
Distribution of the .changes each .deb came with: bookworm, trixie), so one
repository serves both releases: a machine names its own codename in the
source line (`deb [trusted=yes] file:/path trixie main`) and apt takes that
release's builds.  Usable unsigned (`[trusted=yes]`) or with a signed Release
(`[signed-by=KEYRING]`); the Origin lets apt pin the repository
(`Pin: release o=ESCA`).  All metadata is written with python-debian; nothing
under /etc/apt is touched.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.arfile import ArError
from debian.deb822 import Changes, Deb822, Release
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


def _digests(path: Path) -> dict[str, str]:
    h = {"md5sum": hashlib.md5(), "sha1": hashlib.sha1(), "sha256": hashlib.sha256()}
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            for d in h.values():
                d.update(chunk)
    return {k: v.hexdigest() for k, v in h.items()}


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


def _stanza(deb: Path, filename: str) -> Deb822:
    try:
        control = DebFile(str(deb)).debcontrol()
    except (ArError, DebError, OSError, KeyError) as e:
        die(
            f"{deb} is not a readable Debian package: {e}",
            hint="rebuild it with esca-pkg build-all, or remove it from the directory",
        )
    para = Deb822()
    for key, value in control.items():
        para[key] = value
    d = _digests(deb)
    para["Filename"] = filename
    para["Size"] = str(deb.stat().st_size)
    para["MD5sum"] = d["md5sum"]
    para["SHA1"] = d["sha1"]
    para["SHA256"] = d["sha256"]
    return para


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
    stanzas = []
    for deb in sorted(set(debs)):
        pooled = f"pool/{suite}/{deb.name}"
        if (out / pooled).exists():
            die(f"two packages named {deb.name} for {suite}", hint="remove one of them")
        _place(deb, out / pooled)
        stanzas.append(_stanza(out / pooled, pooled))
    stanzas.sort(key=lambda s: (s["Package"], Version(s["Version"]), s["Architecture"]))
    # Packages of Architecture: all are listed for every architecture.
    archs = sorted({s["Architecture"] for s in stanzas} - {"all"}) or [_host_architecture()]
    sdir = out / "dists" / suite
    indexes = []
    for arch in archs:
        text = "\n".join(s.dump() for s in stanzas if s["Architecture"] in (arch, "all"))
        bdir = sdir / COMPONENT / f"binary-{arch}"
        bdir.mkdir(parents=True)
        (bdir / "Packages").write_text(text)
        with gzip.GzipFile(bdir / "Packages.gz", "wb", mtime=0) as gz:
            gz.write(text.encode())
        indexes += [f"{COMPONENT}/binary-{arch}/{n}" for n in INDEXES]

    rel = Release()
    rel["Origin"] = origin
    rel["Label"] = label
    rel["Suite"] = suite
    rel["Codename"] = suite
    rel["Date"] = email.utils.formatdate(time.time(), usegmt=True)
    rel["Architectures"] = " ".join(archs)
    rel["Components"] = COMPONENT
    rel["Description"] = f"ESCA packages for Debian {suite}, built by esca-pkg"
    for field, algo in (("MD5Sum", "md5sum"), ("SHA256", "sha256")):
        # python-debian's Release takes the hash fields as lists of dicts
        files: Any = [
            {algo: _digests(sdir / n)[algo], "size": str((sdir / n).stat().st_size), "name": n}
            for n in indexes
        ]
        rel[field] = files
    (sdir / "Release").write_text(rel.dump())
    return sdir, [(s["Package"], s["Version"], s["Architecture"]) for s in stanzas]


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
