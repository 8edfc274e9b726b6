"""Server recipes: servers/<name>/recipe.toml, read into a frozen dataclass."""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from esca_pkg.log import die

SERVERS = ("nginx", "lighttpd", "lwan")
# Local version suffix of a rebuilt Debian package: sorts above the version
# it was built from ("1.22.1-9+deb12u9+esca1" > "1.22.1-9+deb12u9") and
# below the next Debian upload of that version ("... < 1.22.1-9+deb12u9.1~").
DEFAULT_REVISION = 1


class Kind(enum.Enum):
    DEBIAN_SOURCE = "debian-source"  # rebuilt from Debian's source package
    UPSTREAM_CMAKE = "upstream-cmake"  # upstream tree + generated debian/


class Selection(enum.Enum):
    BINARY = "binary"  # dpkg-buildpackage -b (arch-dependent and arch-all)
    ANY = "any"  # dpkg-buildpackage -B (arch-dependent only)

    @property
    def flag(self) -> str:
        return "-b" if self is Selection.BINARY else "-B"


@dataclass(frozen=True)
class Recipe:
    name: str
    directory: Path
    kind: Kind
    patch: Path
    keep: tuple[str, ...]
    binary: str
    build: Selection = Selection.BINARY
    source_package: str = ""
    revision: int = DEFAULT_REVISION
    #: further quilt patches, applied before the hook patch (fixes the server needs)
    extra_patches: tuple[Path, ...] = ()
    #: package -> lintian tags (with their context) inherited from Debian's packaging
    lintian_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        return f"+esca{self.revision}"

    @property
    def patches(self) -> tuple[Path, ...]:
        """Every quilt patch, in the order they are applied."""
        return (*self.extra_patches, self.patch)

    @property
    def recipe_file(self) -> Path:
        return self.directory / "recipe.toml"

    def input_files(self) -> list[tuple[str, Path]]:
        """Every file of servers/<name>/ (labels relative to it), for the build cache key."""
        return sorted(
            (str(p.relative_to(self.directory)), p)
            for p in self.directory.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )


def servers_dir(project_root: Path) -> Path:
    path = project_root / "servers"
    if not path.is_dir():
        die(
            f"{path} is missing: the server patches and recipes live there",
            hint="run esca-pkg from a complete clone of the ESCA repository",
        )
    return path


def load(project_root: Path, name: str) -> Recipe:
    """The recipe of one server, checked; every problem is named with its file."""
    if name not in SERVERS:
        die(f"unknown server '{name}'", hint=f"choose one of: {', '.join(SERVERS)}")
    directory = servers_dir(project_root) / name
    path = directory / "recipe.toml"
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}", hint="restore servers/ from the repository")
    except tomllib.TOMLDecodeError as e:
        die(f"{path}: {e}", hint="fix the TOML syntax of the recipe")

    def field(key: str, default: object = None) -> object:
        value = data.get(key, default)
        if value is None:
            die(f"{path}: '{key}' is missing", hint=f"add {key} = ... to the recipe")
        return value

    try:
        kind = Kind(field("kind"))
        build = Selection(field("build", "binary"))
    except ValueError as e:
        die(f"{path}: {e}", hint="kind is debian-source or upstream-cmake; build is binary or any")
    if field("name") != name:
        die(
            f"{path}: name = {data.get('name')!r} but the directory is servers/{name}",
            hint=f'set name = "{name}"',
        )
    patch = directory / str(field("patch"))
    if not patch.is_file():
        die(f"{path}: its patch {patch} does not exist", hint="restore it from the repository")
    extra = data.get("extra-patches", [])
    if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
        die(
            f"{path}: 'extra-patches' must be a list of file names",
            hint='e.g. extra-patches = ["fix.patch"]',
        )
    extra_patches = tuple(directory / x for x in extra)
    for xp in extra_patches:
        if not xp.is_file():
            die(f"{path}: its patch {xp} does not exist", hint="restore it from the repository")
    keep = field("keep")
    if not isinstance(keep, list) or not keep or not all(isinstance(k, str) for k in keep):
        die(
            f"{path}: 'keep' must be a non-empty list of package names or globs",
            hint='e.g. keep = ["nginx", "nginx-common"]',
        )
    revision = field("revision", DEFAULT_REVISION)
    if not isinstance(revision, int) or revision < 1:
        die(f"{path}: 'revision' must be a positive integer", hint="e.g. revision = 1")
    raw_overrides = data.get("lintian-overrides", {})
    if not isinstance(raw_overrides, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in raw_overrides.values()
    ):
        die(
            f"{path}: 'lintian-overrides' must map package names to lists of tags",
            hint='e.g. [lintian-overrides]\nlighttpd = ["some-tag [path]"]',
        )
    source_package = str(data.get("source-package", ""))
    if kind is Kind.DEBIAN_SOURCE and not source_package:
        die(
            f"{path}: a debian-source recipe needs 'source-package'",
            hint=f'add source-package = "{name}"',
        )
    return Recipe(
        name=name,
        directory=directory,
        kind=kind,
        patch=patch,
        keep=tuple(keep),
        binary=str(field("binary")),
        build=build,
        source_package=source_package,
        revision=revision,
        extra_patches=extra_patches,
        lintian_overrides={k: tuple(v) for k, v in raw_overrides.items()},
    )
