"""esca-pkg repo's writer on small real .debs (dpkg-deb, no root)."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
from pathlib import Path

import pytest
from debian.deb822 import Packages, Release

from esca_pkg.log import EscaError
from esca_pkg.packaging import repo


def deb(tmp: Path, name: str, version: str, arch: str = "all") -> Path:
    root = tmp / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: T <t@example.org>\nDescription: test\n"
    )
    out = tmp / f"{name}_{version}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", root, out],
        check=True,
        capture_output=True,
    )
    return out


def test_packages_and_release_describe_the_debs(tmp_path: Path) -> None:
    debs = [
        deb(tmp_path, "b", "1.0", "amd64"),
        deb(tmp_path, "a", "2.0"),
        deb(tmp_path, "a", "10.0"),
    ]
    out = tmp_path / "repo"
    res = repo.build_repo(debs, out, origin="O", suite="s")
    assert res.packages == [("a", "2.0", "all"), ("a", "10.0", "all"), ("b", "1.0", "amd64")]
    assert res.sources_line() == f"deb [trusted=yes] file:{out} ./"
    text = (out / "Packages").read_text()
    assert gzip.decompress((out / "Packages.gz").read_bytes()).decode() == text
    for para in Packages.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False):
        data = (out / para["Filename"]).read_bytes()
        assert para["SHA256"] == hashlib.sha256(data).hexdigest()
        assert int(para["Size"]) == len(data)
    rel = Release((out / "Release").read_text())
    assert (rel["Origin"], rel["Suite"], rel["Architectures"]) == ("O", "s", "amd64")
    for entry in rel["SHA256"]:
        assert entry["sha256"] == hashlib.sha256((out / entry["name"]).read_bytes()).hexdigest()


def test_a_second_run_drops_what_is_gone(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    a = deb(tmp_path, "a", "1")
    repo.build_repo([a, deb(tmp_path, "b", "1")], out)
    res = repo.build_repo([a], out)
    assert [p for p, _, _ in res.packages] == ["a"]
    assert sorted(p.name for p in out.glob("*.deb")) == ["a_1_all.deb"]


def test_nothing_or_a_broken_deb_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EscaError, match=r"no \.deb files"):
        repo.build_repo([], tmp_path / "repo")
    bad = tmp_path / "bad_1_all.deb"
    bad.write_bytes(b"not an archive")
    with pytest.raises(EscaError, match="is not a readable Debian package") as e:
        repo.build_repo([bad], tmp_path / "repo")
    assert e.value.hint
