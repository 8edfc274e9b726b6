"""lwan from an upstream source tree or tarball, with a generated debian/.

lwan is in no package registry, so the user passes its source
(`esca-pkg build lwan --source PATH`); nothing of lwan is stored in this
repository.  The debian/ directory comes from the jinja2 templates in
servers/lwan/debian/, the hook patch becomes a quilt patch, and the version is
derived from the source: `git describe` of a checkout, the version in a
tarball's name (lwan-0.5.tar.gz), or else the date of the newest file.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
from debian.debian_support import Version

from esca_pkg import proc, templating
from esca_pkg.log import die, info
from esca_pkg.packaging import debbuild, rebuild, release
from esca_pkg.servers.recipe import Recipe

_TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.zst", ".tar")
_SKIP_DIRS = {".git", "build", "obj-x86_64-linux-gnu", "debian"}


@dataclass(frozen=True)
class UpstreamSource:
    path: Path
    is_tarball: bool

    @classmethod
    def open(cls, path: Path) -> UpstreamSource:
        path = path.expanduser().resolve()
        if path.is_dir():
            if not (path / "CMakeLists.txt").is_file() or not (path / "src" / "lib").is_dir():
                die(
                    f"{path} does not look like an lwan source tree (no CMakeLists.txt, src/lib/)",
                    hint="pass the top directory of an lwan checkout or its tarball",
                )
            return cls(path, False)
        if path.is_file() and path.name.endswith(_TARBALL_SUFFIXES):
            if not tarfile.is_tarfile(path):
                die(f"{path} is not a readable tar archive", hint="pass an lwan source tarball")
            return cls(path, True)
        if not path.exists():
            die(f"{path} does not exist", hint="pass an lwan source tree or tarball with --source")
        die(
            f"{path} is neither a directory nor a tarball ({', '.join(_TARBALL_SUFFIXES)})",
            hint="pass an lwan source tree or tarball with --source",
        )

    def fingerprint(self) -> str:
        """Changes when the source changes: the tarball's hash, or the tree's file list
        with sizes and modification times."""
        h = hashlib.sha256()
        if self.is_tarball:
            with self.path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
        for f in sorted(self._files()):
            st = f.stat()
            h.update(f"{f.relative_to(self.path)} {st.st_size} {st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def _files(self) -> list[Path]:
        out = []
        for p in self.path.rglob("*"):
            rel = p.relative_to(self.path).parts
            if rel and rel[0] in _SKIP_DIRS:
                continue
            if p.is_file():
                out.append(p)
        return out

    def extract(self, dest: Path) -> Path:
        """A private copy of the source in dest/lwan (the user's tree is never touched)."""
        tree = dest / "lwan"
        if tree.exists():
            shutil.rmtree(tree)
        if not self.is_tarball:
            shutil.copytree(
                self.path,
                tree,
                symlinks=True,
                ignore=lambda d, names: [
                    n for n in names if Path(d) == self.path and n in _SKIP_DIRS
                ],
            )
            return tree
        unpack = dest / "unpack"
        if unpack.exists():
            shutil.rmtree(unpack)
        unpack.mkdir()
        with tarfile.open(self.path) as tar:
            _safe_extract(tar, unpack, self.path)
        entries = list(unpack.iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpack
        if not (top / "CMakeLists.txt").is_file():
            die(
                f"{self.path} holds no lwan source (no CMakeLists.txt at its top)",
                hint="pass an lwan source tarball",
            )
        shutil.move(str(top), tree)
        shutil.rmtree(unpack, ignore_errors=True)
        return tree

    def upstream_version(self) -> str:
        """A Debian upstream version for this source."""
        if not self.is_tarball and (self.path / ".git").exists() and shutil.which("git"):
            res = proc.run(
                ["git", "-C", self.path, "describe", "--tags", "--always"],
                capture=True,
                check=False,
            )
            described = res.stdout.strip()
            m = re.fullmatch(r"v?(\d[\w.]*)-(\d+)-g([0-9a-f]+)", described)
            if m:
                return f"{m.group(1)}+git{m.group(2)}.{m.group(3)}"
            m = re.fullmatch(r"v?(\d[\w.]*)", described)
            if m:
                return m.group(1)
        if self.is_tarball:
            m = re.match(r"lwan[-_](\d[\w.+~]*?)(?:\.orig)?\.(?:tar|tgz)", self.path.name)
            if m:
                return m.group(1)
        newest = (
            max((f.stat().st_mtime for f in self._files()), default=None)
            if not self.is_tarball
            else self._tar_newest()
        )
        stamp = time.strftime("%Y%m%d", time.gmtime(newest or time.time()))
        return f"0~git{stamp}"

    def _tar_newest(self) -> float:
        with tarfile.open(self.path) as tar:
            return max((m.mtime for m in tar.getmembers() if m.isfile()), default=time.time())


def _safe_extract(tar: tarfile.TarFile, dest: Path, origin: Path) -> None:
    """Extract without letting a member escape dest (Python's "data" filter where the
    interpreter has it, the same checks by hand on Python < 3.11.4)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    members = []
    for m in tar.getmembers():
        target = (dest / m.name).resolve()
        if not target.is_relative_to(dest.resolve()) or m.isdev():
            die(
                f"{origin}: member {m.name!r} would land outside the source tree",
                hint="use a genuine lwan source tarball",
            )
        if (m.issym() or m.islnk()) and (
            Path(m.linkname).is_absolute()
            or not ((target.parent / m.linkname).resolve().is_relative_to(dest.resolve()))
        ):
            die(
                f"{origin}: link {m.name!r} points outside the source tree",
                hint="use a genuine lwan source tarball",
            )
        members.append(m)
    tar.extractall(dest, members=members)


def generate_debian(recipe: Recipe, tree: Path, version: Version) -> None:
    """debian/ from servers/lwan/debian/*.j2, the changelog via python-debian."""
    templates = recipe.directory / "debian"
    env = templating.environment(jinja2.FileSystemLoader(str(templates)))
    debian = tree / "debian"
    if debian.exists():
        shutil.rmtree(debian)
    variables = {"maintainer": debbuild.maintainer(), "upstream": version.upstream_version}
    for src in sorted(templates.rglob("*.j2")):
        rel = src.relative_to(templates).with_suffix("")
        out = debian / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            out.write_text(env.get_template(str(src.relative_to(templates))).render(**variables))
        except jinja2.TemplateError as e:
            die(f"template {src}: {e}", hint="fix the template in servers/lwan/debian/")
        if src.stat().st_mode & 0o111:
            out.chmod(0o755)
    debbuild.write_changelog(
        debian / "changelog",
        "lwan",
        str(version),
        int(time.time()),
        ["Upstream lwan with the ESCA hooks (debian/patches/esca-hooks.patch)."],
        distribution=release.host_release().codename,
    )


def render_control(recipe: Recipe, tree: Path) -> None:
    """Only debian/control (for esca-pkg doctor's build-dependency check)."""
    env = templating.environment(jinja2.FileSystemLoader(str(recipe.directory / "debian")))
    text = env.get_template("control.j2").render(
        maintainer=debbuild.maintainer(), upstream="upstream"
    )
    (tree / "debian" / "control").write_text(text)


def build(recipe: Recipe, src: UpstreamSource, work: Path, jobs: int, log: Path) -> Path:
    """Generate debian/, add the patch, build; returns the .changes."""
    tree = src.extract(work)
    version = Version(f"{src.upstream_version()}-0{recipe.suffix}")
    info(f"lwan {version} from {src.path}")
    generate_debian(recipe, tree, version)
    rebuild.add_quilt_patches(tree, recipe.patches)
    rebuild.install_build_deps(tree, log)
    info(f"building lwan {version} (log: {log})")
    return rebuild.build(tree, recipe.build, jobs, log)
