"""A flat apt repository (Packages, Release, optional signature) from built .debs.

Usable as `deb [trusted=yes] file:/path ./`, or with a signed Release as
`deb [signed-by=KEYRING] file:/path ./`.  The Release's Origin lets apt pin
the repository (`Pin: release o=ESCA`).  All metadata is written with
python-debian; nothing under /etc/apt is touched.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.arfile import ArError
from debian.deb822 import Deb822, Release
from debian.debfile import DebError, DebFile
from debian.debian_support import Version

from esca_pkg import proc
from esca_pkg.log import die

DEFAULT_ORIGIN = "ESCA"
DEFAULT_LABEL = "ESCA"
DEFAULT_SUITE = "esca"
KEYRING_NAME = "esca-archive-keyring.gpg"
INDEXES = ("Packages", "Packages.gz")
GENERATED = (*INDEXES, "Release", "InRelease", "Release.gpg", KEYRING_NAME)


@dataclass(frozen=True)
class RepoResult:
    path: Path
    packages: list[tuple[str, str, str]]  # (package, version, architecture)
    signed: bool

    def sources_line(self, keyring: Path | None = None) -> str:
        if self.signed:
            return f"deb [signed-by={keyring or self.path / KEYRING_NAME}] file:{self.path} ./"
        return f"deb [trusted=yes] file:{self.path} ./"


def _digests(path: Path) -> dict[str, str]:
    h = {"md5sum": hashlib.md5(), "sha1": hashlib.sha1(), "sha256": hashlib.sha256()}
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            for d in h.values():
                d.update(chunk)
    return {k: v.hexdigest() for k, v in h.items()}


def _stanza(deb: Path) -> Deb822:
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
    para["Filename"] = f"./{deb.name}"
    para["Size"] = str(deb.stat().st_size)
    para["MD5sum"] = d["md5sum"]
    para["SHA1"] = d["sha1"]
    para["SHA256"] = d["sha256"]
    return para


def _place(deb: Path, out: Path) -> Path:
    dest = out / deb.name
    if (
        dest.exists()
        and dest.stat().st_size == deb.stat().st_size
        and _digests(dest)["sha256"] == _digests(deb)["sha256"]
    ):
        return dest
    dest.unlink(missing_ok=True)
    try:
        os.link(deb, dest)
    except OSError:
        shutil.copy2(deb, dest)
    return dest


def build_repo(
    debs: list[Path],
    out: Path,
    *,
    origin: str = DEFAULT_ORIGIN,
    label: str = DEFAULT_LABEL,
    suite: str = DEFAULT_SUITE,
    sign_key: str | None = None,
    gnupghome: Path | None = None,
) -> RepoResult:
    if not debs:
        die("no .deb files to publish", hint="build them first: esca-pkg build-all")
    out.mkdir(parents=True, exist_ok=True)
    placed = sorted({_place(d, out) for d in debs})
    keep = {p.name for p in placed}
    for old in out.glob("*.deb"):
        if old.name not in keep:
            old.unlink()
    for name in GENERATED:
        (out / name).unlink(missing_ok=True)

    stanzas = [_stanza(p) for p in placed]
    stanzas.sort(key=lambda s: (s["Package"], Version(s["Version"])))
    text = "\n".join(s.dump() for s in stanzas)
    (out / "Packages").write_text(text)
    with gzip.GzipFile(out / "Packages.gz", "wb", mtime=0) as gz:
        gz.write(text.encode())

    archs = sorted({s["Architecture"] for s in stanzas} - {"all"}) or ["all"]
    rel = Release()
    rel["Origin"] = origin
    rel["Label"] = label
    rel["Suite"] = suite
    rel["Codename"] = suite
    rel["Date"] = email.utils.formatdate(time.time(), usegmt=True)
    rel["Architectures"] = " ".join(archs)
    rel["Description"] = "ESCA packages built by esca-pkg"
    for field, algo in (("MD5Sum", "md5sum"), ("SHA256", "sha256")):
        # python-debian's Release takes the hash fields as lists of dicts
        files: Any = [
            {algo: _digests(out / n)[algo], "size": str((out / n).stat().st_size), "name": n}
            for n in INDEXES
        ]
        rel[field] = files
    (out / "Release").write_text(rel.dump())

    if sign_key:
        _sign(out, sign_key, gnupghome)
    return RepoResult(
        out, [(s["Package"], s["Version"], s["Architecture"]) for s in stanzas], bool(sign_key)
    )


def _sign(out: Path, key: str, gnupghome: Path | None) -> None:
    env = {"GNUPGHOME": str(gnupghome)} if gnupghome else {}
    gpg = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--local-user", key]
    hint = (
        f"check that gpg has the secret key {key} (gpg --list-secret-keys"
        + (f" with GNUPGHOME={gnupghome}" if gnupghome else "")
        + ")"
    )
    proc.run(
        [*gpg, "--clearsign", "--output", out / "InRelease", out / "Release"],
        env=env,
        capture=True,
        hint=hint,
    )
    proc.run(
        [*gpg, "--armor", "--detach-sign", "--output", out / "Release.gpg", out / "Release"],
        env=env,
        capture=True,
        hint=hint,
    )
    proc.run(
        ["gpg", "--batch", "--yes", "--output", out / KEYRING_NAME, "--export", key],
        env=env,
        capture=True,
        hint=hint,
    )
    if not (out / KEYRING_NAME).stat().st_size:
        die(f"gpg exported no public key for {key}", hint=hint)
