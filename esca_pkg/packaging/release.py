"""The Debian release packages are built for, and what it puts into them.

The release is the build machine's (VERSION_CODENAME of /etc/os-release, or
ESCA_DEBIAN_CODENAME).  Our own packages carry it twice: the changelog's
distribution (so the .changes says bookworm or trixie) and a version suffix
`+deb<number>` (0.1.0+deb12, 0.1.0+deb13): the same upstream version built on
two releases links against different libc versions, so the two builds must
be two package versions, and the newer release's must sort higher so that a
dist-upgrade moves to it (docs/packaging.md, "Versions and releases").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from esca_pkg.log import EscaError, die
from esca_pkg.packaging import debian_source

#: Debian release numbers by codename (the suffix names the number, as Debian's
#: stable updates do: +deb12u1)
NUMBERS = {"buster": 10, "bullseye": 11, "bookworm": 12, "trixie": 13, "forky": 14}


@dataclass(frozen=True)
class DebianRelease:
    codename: str
    number: int

    @classmethod
    def named(cls, codename: str) -> DebianRelease:
        if codename not in NUMBERS:
            die(
                f"unknown Debian release '{codename}'",
                hint="build on Debian 12 (bookworm) or 13 (trixie), or set "
                "ESCA_DEBIAN_CODENAME to one of: " + ", ".join(NUMBERS),
            )
        return cls(codename, NUMBERS[codename])

    @property
    def suffix(self) -> str:
        """What our own packages' versions get appended: +deb12, +deb13."""
        return f"+deb{self.number}"

    def package_version(self, upstream: str) -> str:
        return f"{upstream}{self.suffix}"


def host_release() -> DebianRelease:
    """The release of this machine (or of ESCA_DEBIAN_CODENAME)."""
    return DebianRelease.named(os.environ.get("ESCA_DEBIAN_CODENAME") or debian_source.codename())


def dist_hint() -> str:
    """Where esca-pkg puts this machine's builds, for hints: dist/<codename>."""
    try:
        return f"dist/{host_release().codename}"
    except EscaError:
        return "dist/<codename>"
