"""Server recipes: servers/<name>/recipe.toml, read into frozen dataclasses.

A recipe says how the server is built (Debian's source package or an upstream
tree, the hook patch, the packages kept) and how it runs ([run]: binary,
the workers' user, the arguments that keep it in the foreground, how its
serving processes are found, how it stops, the private configuration
template).  A table [release.<codename>] overrides build facts for one Debian
release.  The registry is the set of recipe folders: a new server is a new
folder, nothing else (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import enum
import signal
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from esca_pkg.log import die
from esca_pkg.packaging import release

RECIPE = "recipe.toml"
# Local version suffix of a rebuilt Debian package: sorts above the version
# it was built from ("1.22.1-9+deb12u9+esca1" > "1.22.1-9+deb12u9") and
# below the next Debian upload of that version ("... < 1.22.1-9+deb12u9.1~").
DEFAULT_REVISION = 1
#: build keys a [release.<codename>] table may override
RELEASE_KEYS = (
    "source-package",
    "patch",
    "extra-patches",
    "keep",
    "build",
    "revision",
    "lintian-overrides",
)


class Kind(enum.Enum):
    DEBIAN_SOURCE = "debian-source"  # rebuilt from Debian's source package
    UPSTREAM_CMAKE = "upstream-cmake"  # upstream tree + generated debian/


class Selection(enum.Enum):
    BINARY = "binary"  # dpkg-buildpackage -b (arch-dependent and arch-all)
    ANY = "any"  # dpkg-buildpackage -B (arch-dependent only)

    @property
    def flag(self) -> str:
        return "-b" if self is Selection.BINARY else "-B"


class Workers(enum.Enum):
    """Which processes serve connections."""

    PROCESSES = "processes"  # the children titled worker-title (nginx)
    PROCESSES_OR_MAIN = "processes-or-main"  # the children, else the server itself (lighttpd)
    MAIN = "main"  # the server process, with threads (lwan)


@dataclass(frozen=True)
class RunFacts:
    """How esca-run, esca-bench and the tests run the installed server."""

    binary: Path
    #: binary packages an operator installs for it (the install hint)
    packages: tuple[str, ...]
    #: the user its serving processes run as when started as root
    worker_user: str | None = None
    #: options that keep it in the foreground (added when absent)
    foreground: tuple[str, ...] = ()
    #: option carrying configuration directives on the command line (nginx -g)
    global_option: str | None = None
    #: directives given with global_option to stay in the foreground
    global_directives: tuple[str, ...] = ()
    #: a directive that lets ESCA_<X> through to the workers ({name}); nginx
    #: starts its workers with an emptied environment
    env_directive: str | None = None
    #: arguments naming the packaged configuration, unless their first one is given
    default_args: tuple[str, ...] = ()
    workers: Workers = Workers.MAIN
    worker_title: str | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    #: jinja2 template of a private 127.0.0.1 configuration, beside recipe.toml
    config: str | None = None
    #: arguments serving www on 127.0.0.1:port ({config}, {www}, {port})
    serve_args: tuple[str, ...] = ()

    def foreground_args(self, args: list[str], env_names: list[str]) -> list[str]:
        """args with what keeps the server in the foreground with its normal
        configuration, and the directives naming env_names for its workers."""
        out = list(args)
        if self.default_args and self.default_args[0] not in out:
            out = [*self.default_args, *out]
        if self.global_option:
            env = [
                self.env_directive.format(name=n)
                for n in env_names
                if self.env_directive and n.startswith("ESCA_")
            ]
            opt = self.global_option
            if opt in out[:-1]:
                i = out.index(opt)
                given = out[i + 1]
                add = [d for d in self.global_directives if d.split()[0] not in given]
                add += [d for d in env if d not in given]
                out[i + 1] = " ".join([*add, given])
            elif self.global_directives or env:
                out = [opt, " ".join([*self.global_directives, *env]), *out]
        for opt in reversed(self.foreground):
            if opt not in out:
                out = [opt, *out]
        return out

    def install_hint(self, name: str) -> str:
        dist = release.dist_hint()
        debs = " ".join(f"./{dist}/{p}_*+esca*.deb" for p in self.packages)
        return f"esca-pkg build {name} && apt install {debs}"


@dataclass(frozen=True)
class Recipe:
    name: str
    directory: Path
    kind: Kind
    patch: Path
    keep: tuple[str, ...]
    run: RunFacts
    build: Selection = Selection.BINARY
    source_package: str = ""
    revision: int = DEFAULT_REVISION
    #: further quilt patches, applied before the hook patch (fixes the server needs)
    extra_patches: tuple[Path, ...] = ()
    #: package -> lintian tags (with their context) inherited from Debian's packaging
    lintian_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: codename -> build facts overridden for that Debian release
    releases: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)

    @property
    def suffix(self) -> str:
        return f"+esca{self.revision}"

    @property
    def patches(self) -> tuple[Path, ...]:
        """Every quilt patch, in the order they are applied."""
        return (*self.extra_patches, self.patch)

    def for_release(self, codename: str) -> Recipe:
        """The recipe with the build facts of [release.<codename>] (itself when none)."""
        data = self.releases.get(codename)
        if not data:
            return self
        facts = _build_facts(self.directory / RECIPE, data, self.directory, base=self)
        return dataclasses.replace(self, **facts)

    def check_build_files(self) -> None:
        """The patches exist (a recipe installed with esca-tools carries none)."""
        for p in self.patches:
            if not p.is_file():
                die(
                    f"{self.directory / RECIPE}: its patch {p} does not exist",
                    hint="build from a complete clone of the ESCA repository",
                )

    def input_files(self) -> list[tuple[str, Path]]:
        """Every file of servers/<name>/ (labels relative to it), for the build cache key."""
        return sorted(
            (str(p.relative_to(self.directory)), p)
            for p in self.directory.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )


# -- reading ---------------------------------------------------------------------------


def _get(path: Path, data: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = data.get(key, default)
    if value is None:
        die(f"{path}: '{key}' is missing", hint=f"add {key} = ... to the recipe")
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            die(f"{path}: '{key}' must be a list of strings", hint=f'e.g. {key} = ["..."]')
        return tuple(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        die(f"{path}: '{key}' must be a {kind.__name__}", hint=f"fix {key} in the recipe")
    return value


def _enum(path: Path, cls: type[enum.Enum], value: str, key: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in cls)
        die(f"{path}: {key} = {value!r} is not one of {choices}", hint=f"set {key} to one of them")


def _build_facts(
    path: Path, data: dict[str, Any], directory: Path, base: Recipe | None = None
) -> dict[str, Any]:
    """The build facts of data (a recipe, or a release table over base)."""
    out: dict[str, Any] = {}
    if "patch" in data or base is None:
        out["patch"] = directory / _get(path, data, "patch", str)
    if "extra-patches" in data:
        out["extra_patches"] = tuple(directory / x for x in _get(path, data, "extra-patches", list))
    if "keep" in data or base is None:
        keep = _get(path, data, "keep", list)
        if not keep:
            die(f"{path}: 'keep' is empty", hint='e.g. keep = ["nginx", "nginx-common"]')
        out["keep"] = keep
    if "build" in data:
        out["build"] = _enum(path, Selection, _get(path, data, "build", str), "build")
    if "revision" in data:
        revision = _get(path, data, "revision", int)
        if revision < 1:
            die(f"{path}: 'revision' must be a positive integer", hint="e.g. revision = 1")
        out["revision"] = revision
    if "source-package" in data:
        out["source_package"] = _get(path, data, "source-package", str)
    if "lintian-overrides" in data:
        raw = _get(path, data, "lintian-overrides", dict)
        if not all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in raw.values()
        ):
            die(
                f"{path}: 'lintian-overrides' must map package names to lists of tags",
                hint='e.g. [lintian-overrides]\nlighttpd = ["some-tag [path]"]',
            )
        out["lintian_overrides"] = {k: tuple(v) for k, v in raw.items()}
    return out


def _run_facts(path: Path, data: dict[str, Any], directory: Path) -> RunFacts:
    known = {
        "binary",
        "packages",
        "worker-user",
        "foreground",
        "global-option",
        "global-directives",
        "env-directive",
        "default-args",
        "workers",
        "worker-title",
        "stop-signal",
        "config",
        "serve-args",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        die(
            f"{path}: unknown [run] keys {', '.join(unknown)}",
            hint=f"known: {', '.join(sorted(known))}",
        )
    sig = _get(path, data, "stop-signal", str, "SIGTERM")
    try:
        stop = signal.Signals[sig]
    except KeyError:
        die(f"{path}: stop-signal = {sig!r} is not a signal name", hint='e.g. "SIGQUIT"')
    config = data.get("config")
    if config is not None and not (directory / _get(path, data, "config", str)).is_file():
        die(
            f"{path}: its configuration template {directory / config} does not exist",
            hint="restore it",
        )
    workers = _enum(path, Workers, _get(path, data, "workers", str, "main"), "workers")
    title = data.get("worker-title")
    if workers is Workers.PROCESSES and not title:
        die(
            f'{path}: workers = "processes" needs worker-title',
            hint='e.g. worker-title = "nginx: worker"',
        )
    return RunFacts(
        binary=Path(_get(path, data, "binary", str)),
        packages=_get(path, data, "packages", list),
        worker_user=data.get("worker-user") and _get(path, data, "worker-user", str),
        foreground=_get(path, data, "foreground", list, []),
        global_option=data.get("global-option") and _get(path, data, "global-option", str),
        global_directives=_get(path, data, "global-directives", list, []),
        env_directive=data.get("env-directive") and _get(path, data, "env-directive", str),
        default_args=_get(path, data, "default-args", list, []),
        workers=workers,
        worker_title=title and _get(path, data, "worker-title", str),
        stop_signal=stop,
        config=config,
        serve_args=_get(path, data, "serve-args", list, []),
    )


def load(directory: Path, name: str) -> Recipe:
    """The recipe servers/<name>/ of the recipes directory, checked; every problem is
    named with its file."""
    if not (directory / name / RECIPE).is_file():
        known = names(directory)
        die(f"unknown server '{name}'", hint=f"choose one of: {', '.join(known) or '(none)'}")
    folder = directory / name
    path = folder / RECIPE
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}", hint="restore servers/ from the repository")
    except tomllib.TOMLDecodeError as e:
        die(f"{path}: {e}", hint="fix the TOML syntax of the recipe")
    if data.get("name") != name:
        die(
            f"{path}: name = {data.get('name')!r} but the directory is servers/{name}",
            hint=f'set name = "{name}"',
        )
    kind = _enum(path, Kind, _get(path, data, "kind", str), "kind")
    facts = _build_facts(path, data, folder)
    if kind is Kind.DEBIAN_SOURCE and not facts.get("source_package"):
        die(
            f"{path}: a debian-source recipe needs 'source-package'",
            hint=f'add source-package = "{name}"',
        )
    releases = _get(path, data, "release", dict, {})
    for codename, table in releases.items():
        if not isinstance(table, dict) or set(table) - set(RELEASE_KEYS):
            die(
                f"{path}: [release.{codename}] may only set {', '.join(RELEASE_KEYS)}",
                hint="move other keys to the top of the recipe",
            )
    return Recipe(
        name=name,
        directory=folder,
        kind=kind,
        run=_run_facts(path, _get(path, data, "run", dict), folder),
        releases=releases,
        **facts,
    )


def names(directory: Path) -> tuple[str, ...]:
    """The servers of a recipes directory: its folders holding a recipe.toml."""
    if not directory.is_dir():
        return ()
    return tuple(sorted(p.parent.name for p in directory.glob(f"*/{RECIPE}")))


def source_dir(project_root: Path) -> Path:
    """servers/ of a source tree (what esca-pkg builds from)."""
    path = project_root / "servers"
    if not path.is_dir():
        die(
            f"{path} is missing: the server patches and recipes live there",
            hint="run esca-pkg from a complete clone of the ESCA repository",
        )
    return path


def installed_dir() -> Path:
    """The recipes the running tool knows: servers/ of the source tree it runs from,
    else the copy esca-tools installs with it (package data esca_pkg/recipes)."""
    tree = Path(__file__).resolve().parents[2] / "servers"
    if names(tree):
        return tree
    return Path(str(resources.files("esca_pkg") / "recipes"))


def registry() -> dict[str, Recipe]:
    """Every server the tool can run, by name."""
    directory = installed_dir()
    return {n: load(directory, n) for n in names(directory)}


def get(name: str) -> Recipe:
    """One server of the registry (unknown names are refused with the choices)."""
    return load(installed_dir(), name)
