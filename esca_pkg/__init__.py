"""ESCA for Debian: build, install, run and benchmark syscall aggregation."""

from importlib import metadata

try:
    __version__ = metadata.version("esca-pkg")
except metadata.PackageNotFoundError:  # running from a source tree
    from pathlib import Path

    __version__ = (Path(__file__).resolve().parent.parent / "VERSION").read_text().strip()
