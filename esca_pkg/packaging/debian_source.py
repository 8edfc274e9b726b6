"""Debian source packages through an apt configuration of the tool's own.

The machine's apt may have no deb-src lines, and the tool never edits
/etc/apt: it keeps a private apt root (sources.list with deb-src lines for
the release, -updates and -security, its own lists and cache) and runs
apt-get/apt-cache with -o Dir::... options pointing there.  Sources are
verified by apt (the Release files are signed by the Debian archive keyring,
and each file's hash is checked against them).

The newest version listed is not always downloadable (an index can name a
security upload whose files the mirror no longer or not yet serves), so
download() tries versions newest first and takes the first that downloads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Sources
from debian.debian_support import Version

from esca_pkg import proc
from esca_pkg.log import debug, die, info, warn

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# Lists older than this are refreshed before a build.
MAX_LIST_AGE = 6 * 3600


def codename() -> str:
    """The Debian release of this machine (VERSION_CODENAME of os-release)."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "VERSION_CODENAME" and value.strip('"'):
                return value.strip('"')
    except OSError:
        pass
    die(
        "cannot tell the Debian release of this machine (no VERSION_CODENAME in /etc/os-release)",
        hint="build on Debian 12 (bookworm) or set ESCA_DEBIAN_CODENAME",
    )


@dataclass(frozen=True)
class SourceArchive:
    """A private apt root under root/, serving deb-src of one Debian release."""

    root: Path
    release: str
    mirror: str = MIRROR
    security_mirror: str = SECURITY_MIRROR

    @classmethod
    def for_build_dir(cls, build_dir: Path) -> SourceArchive:
        release = os.environ.get("ESCA_DEBIAN_CODENAME") or codename()
        return cls(
            root=build_dir / "apt",
            release=release,
            mirror=os.environ.get("ESCA_DEBIAN_MIRROR", MIRROR),
            security_mirror=os.environ.get("ESCA_DEBIAN_SECURITY_MIRROR", SECURITY_MIRROR),
        )

    @property
    def sources_list(self) -> Path:
        return self.root / "etc" / "sources.list"

    def sources_lines(self) -> list[str]:
        signed = f"[signed-by={KEYRING}]"
        r = self.release
        return [
            f"deb-src {signed} {self.mirror} {r} main",
            f"deb-src {signed} {self.mirror} {r}-updates main",
            f"deb-src {signed} {self.security_mirror} {r}-security main",
        ]

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::sourcelist": str(self.sources_list),
            "Dir::Etc::sourceparts": str(self.root / "etc" / "sources.list.d"),
            "Dir::Etc::preferences": str(self.root / "etc" / "preferences"),
            "Dir::Etc::preferencesparts": str(self.root / "etc" / "preferences.d"),
            "Dir::State": str(self.root / "state"),
            # An empty status file: what is installed here (perhaps our own
            # rebuild) must not steer which source version is chosen.
            "Dir::State::status": str(self.root / "state" / "status"),
            "Dir::Cache": str(self.root / "cache"),
            "APT::Get::List-Cleanup": "true",
        }
        if os.geteuid() == 0:
            # Files under the tool's build directory are not readable by _apt.
            opts["APT::Sandbox::User"] = "root"
        out: list[str] = []
        for key, value in opts.items():
            out += ["-o", f"{key}={value}"]
        return out

    def _write_config(self) -> None:
        if not KEYRING.is_file():
            die(
                f"{KEYRING} is missing: apt cannot verify Debian's source packages",
                hint="apt-get install debian-archive-keyring",
            )
        for sub in (
            "etc/sources.list.d",
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "state" / "status").touch()
        text = "# Written by esca-pkg: deb-src lines of its own apt configuration.\n"
        text += "\n".join(self.sources_lines()) + "\n"
        if not self.sources_list.is_file() or self.sources_list.read_text() != text:
            self.sources_list.write_text(text)
            stamp = self.root / "state" / "updated"
            stamp.unlink(missing_ok=True)

    def update(self, force: bool = False) -> None:
        """apt-get update of the private lists, when missing or older than MAX_LIST_AGE."""
        self._write_config()
        stamp = self.root / "state" / "updated"
        if not force and stamp.is_file() and time.time() - stamp.stat().st_mtime < MAX_LIST_AGE:
            debug(f"source lists in {self.root} are fresh")
            return
        info(f"updating the source package lists ({self.release}, -updates, -security)")
        proc.run(
            ["apt-get", *self.options(), "-q", "update"],
            capture=True,
            hint="check that the Debian archive is reachable (apt-get update)",
        )
        stamp.touch()

    def paragraphs(self, package: str) -> list[Sources]:
        """The Sources index entries of a source package (every listed version)."""
        res = proc.run(
            ["apt-cache", *self.options(), "showsrc", "--only-source", package],
            capture=True,
            check=False,
        )
        return [
            para
            for para in Sources.iter_paragraphs(
                res.stdout.splitlines(keepends=True), use_apt_pkg=False
            )
            if para.get("Package") == package and para.get("Version")
        ]

    def versions(self, package: str) -> list[Version]:
        """Versions of a source package in the lists, newest first."""
        found = {para["Version"] for para in self.paragraphs(package)}
        if not found:
            die(
                f"no source package '{package}' in {self.release}, {self.release}-updates or "
                f"{self.release}-security",
                hint=f"check the mirror lines in {self.sources_list}",
            )
        return sorted((Version(v) for v in found), reverse=True)

    def download(self, package: str, dest: Path) -> tuple[Version, Path]:
        """Download the newest version of a source package the archive serves.

        Returns the version and its .dsc in dest (the source is not unpacked).
        """
        dest.mkdir(parents=True, exist_ok=True)
        versions = self.versions(package)
        failures: list[str] = []
        for version in versions:
            dsc = dest / f"{package}_{_strip_epoch(version)}.dsc"
            res = proc.run(
                [
                    "apt-get",
                    *self.options(),
                    "-q",
                    "--download-only",
                    "--only-source",
                    "source",
                    f"{package}={version}",
                ],
                cwd=dest,
                capture=True,
                check=False,
            )
            if res.returncode == 0 and dsc.is_file():
                if failures:
                    warn(
                        f"{package}: newer versions are listed but not served "
                        f"({', '.join(failures)}); using {version}"
                    )
                return version, dsc
            reason = next(
                (ln for ln in res.stderr.splitlines() if ln.startswith("E:")),
                f"exit code {res.returncode}",
            )
            debug(f"{package} {version}: {reason}")
            failures.append(str(version))
        die(
            f"none of the listed versions of {package} could be downloaded ({', '.join(failures)})",
            hint="check the network and the mirror; run with --debug to see apt's errors",
        )


def _strip_epoch(version: Version) -> str:
    text = str(version)
    return text.split(":", 1)[1] if ":" in text else text
