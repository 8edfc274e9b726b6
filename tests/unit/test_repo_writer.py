"""esca-pkg repo's writer on small real .debs (dpkg-deb, no root), read back by apt.
The indexes and Release files are apt-ftparchive's (apt-utils), the signatures gpg's."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian.deb822 import Packages, Release

from esca_pkg import proc
from esca_pkg.log import EscaError
from esca_pkg.packaging import repo

#: the hash fields apt-ftparchive writes into a Release, as python-debian names each hash
RELEASE_HASHES = {"MD5Sum": "md5sum", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


def deb(tmp: Path, name: str, version: str, arch: str = "all") -> Path:
    root = tmp / f"{name}-{version}-{arch}"
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


def changes(d: Path, distribution: str, debs: list[Path]) -> Path:
    """A .changes as dpkg-genchanges writes it (the fields repo reads)."""
    files = "".join(
        f" {hashlib.md5(p.read_bytes()).hexdigest()} {p.stat().st_size} misc optional {p.name}\n"
        for p in debs
    )
    out = d / f"{debs[0].name.split('_')[0]}_{distribution}.changes"
    out.write_text(f"Format: 1.8\nSource: x\nDistribution: {distribution}\nFiles:\n{files}")
    return out


def packages(out: Path, suite: str, arch: str) -> list[Packages]:
    text = (out / "dists" / suite / "main" / f"binary-{arch}" / "Packages").read_text()
    return list(Packages.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False))


def test_one_suite_per_release_with_its_own_indexes(tmp_path: Path) -> None:
    old = [deb(tmp_path, "b", "1.0+deb12", "amd64"), deb(tmp_path, "a", "1.0+deb12")]
    new = [deb(tmp_path, "b", "1.0+deb13", "amd64"), deb(tmp_path, "a", "1.0+deb13")]
    out = tmp_path / "repo"
    res = repo.build_repo({"bookworm": old, "trixie": new}, out, origin="O")
    assert res.suites == {
        "bookworm": [("a", "1.0+deb12", "all"), ("b", "1.0+deb12", "amd64")],
        "trixie": [("a", "1.0+deb13", "all"), ("b", "1.0+deb13", "amd64")],
    }
    assert res.sources_line("trixie") == f"deb [trusted=yes] file:{out} trixie main"
    for suite, version in (("bookworm", "1.0+deb12"), ("trixie", "1.0+deb13")):
        sdir = out / "dists" / suite
        rel = Release((sdir / "Release").read_text())
        assert (rel["Origin"], rel["Suite"], rel["Codename"]) == ("O", suite, suite)
        assert (rel["Architectures"], rel["Components"]) == ("amd64", "main")
        listed = {e["name"] for e in rel["SHA256"]}
        assert listed == {"main/binary-amd64/Packages", "main/binary-amd64/Packages.gz"}
        for entry in rel["SHA256"]:
            data = (sdir / entry["name"]).read_bytes()
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
            assert int(entry["size"]) == len(data)
        # apt-ftparchive's Release: its four hash fields (in its order) over the same
        # indexes, its numeric-zone Date, the Description given to it
        assert [f for f in rel if f in RELEASE_HASHES] == list(RELEASE_HASHES)
        for field, algo in RELEASE_HASHES.items():
            assert {e["name"] for e in rel[field]} == listed
            for entry in rel[field]:
                data = (sdir / entry["name"]).read_bytes()
                assert entry[algo] == hashlib.new(algo.removesuffix("sum"), data).hexdigest()
        assert rel["Date"].endswith(" +0000") and rel["Label"] == "ESCA"
        assert rel["Description"] == f"ESCA packages for Debian {suite}, built by esca-pkg"
        text = (sdir / "main" / "binary-amd64" / "Packages").read_text()
        gz = (sdir / "main" / "binary-amd64" / "Packages.gz").read_bytes()
        assert gzip.decompress(gz).decode() == text
        # Architecture: all is listed for the architecture too
        paras = packages(out, suite, "amd64")
        assert [(p["Package"], p["Version"]) for p in paras] == [("a", version), ("b", version)]
        for p in paras:
            data = (out / p["Filename"]).read_bytes()
            assert p["Filename"].startswith(f"pool/{suite}/")
            assert p["SHA256"] == hashlib.sha256(data).hexdigest()
            assert p["SHA512"] == hashlib.sha512(data).hexdigest()  # apt-ftparchive's too
            assert int(p["Size"]) == len(data)


def test_the_release_comes_from_the_changes_or_the_directory(tmp_path: Path) -> None:
    twelve, thirteen, other = tmp_path / "bookworm", tmp_path / "trixie", tmp_path / "other"
    for d in (twelve, thirteen, other):
        d.mkdir()
    changes(twelve, "bookworm", [deb(twelve, "a", "1+deb12")])
    changes(thirteen, "trixie", [deb(thirteen, "a", "1+deb13")])
    deb(thirteen, "server", "2+esca1")  # a server's build: its .changes is not kept
    changes(other, "trixie", [deb(other, "c", "1+deb13")])
    found = repo.debs_by_distribution([twelve, thirteen, other])
    assert {k: [p.name for p in v] for k, v in found.items()} == {
        "bookworm": ["a_1+deb12_all.deb"],
        "trixie": ["c_1+deb13_all.deb", "a_1+deb13_all.deb", "server_2+esca1_all.deb"],
    }
    deb(other, "stray", "1")
    with pytest.raises(EscaError, match=r"stray_1_all\.deb") as e:
        repo.debs_by_distribution([other])
    assert "--suite" in (e.value.hint or "")
    changes(twelve, "trixie", [deb(twelve, "wrong", "1+deb13")])
    with pytest.raises(EscaError, match="was built for trixie"):
        repo.debs_by_distribution([twelve])


def test_a_second_run_drops_what_is_gone(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    a = deb(tmp_path, "a", "1")
    repo.build_repo({"trixie": [a, deb(tmp_path, "b", "1")], "bookworm": [a]}, out)
    res = repo.build_repo({"trixie": [a]}, out)
    assert res.suites == {"trixie": [("a", "1", "all")]}
    assert sorted(p.name for p in out.rglob("*.deb")) == ["a_1_all.deb"]
    assert not (out / "dists" / "bookworm").exists()


def test_nothing_or_a_broken_deb_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EscaError, match=r"no \.deb files"):
        repo.build_repo({"trixie": []}, tmp_path / "repo")
    bad = tmp_path / "bad_1_all.deb"
    bad.write_bytes(b"not an archive")
    with pytest.raises(EscaError, match="is not a readable Debian package") as e:
        repo.build_repo({"trixie": [bad]}, tmp_path / "repo")
    assert e.value.hint


def test_a_deb_is_pooled_under_its_package_version_and_architecture(tmp_path: Path) -> None:
    """apt-ftparchive picks an architecture's packages by file name (*_amd64.deb,
    *_all.deb), so the pool names each .deb as dpkg-buildpackage does."""
    (tmp_path / "odd").mkdir()
    odd = deb(tmp_path, "b", "1:2.0", "amd64").rename(tmp_path / "odd" / "b.deb")
    out = tmp_path / "repo"
    a = deb(tmp_path, "a", "1")
    res = repo.build_repo({"trixie": [odd, a]}, out)
    assert res.suites == {"trixie": [("a", "1", "all"), ("b", "1:2.0", "amd64")]}
    assert [p["Filename"] for p in packages(out, "trixie", "amd64")] == [
        "pool/trixie/a_1_all.deb",
        "pool/trixie/b_2.0_amd64.deb",
    ]
    (tmp_path / "again").mkdir()
    twin = deb(tmp_path / "again", "a", "1")
    with pytest.raises(EscaError, match=r"two packages named a_1_all\.deb for trixie"):
        repo.build_repo({"trixie": [a, twin]}, out)


def test_without_apt_ftparchive_it_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "repo"
    a = deb(tmp_path, "a", "1")
    repo.build_repo({"trixie": [a]}, out)
    (tmp_path / "bin").mkdir()
    monkeypatch.setattr(proc, "SYSTEM_PATH", str(tmp_path / "bin"))
    with pytest.raises(EscaError, match="apt-ftparchive is not installed") as e:
        repo.build_repo({"trixie": [a]}, out)
    assert e.value.hint == "apt-get install apt-utils"
    assert (out / "dists" / "trixie" / "Release").exists(), "the old repository was removed"


def apt_update(tmp: Path, line: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """apt-get update of the one source line, with an apt configuration of its own;
    also the options that make apt-get / apt-cache use that configuration."""
    for d in ("lists/partial", "cache/archives/partial", "empty"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    (tmp / "sources.list").write_text(line + "\n")
    (tmp / "status").write_text("")
    opts = {
        "Dir::Etc::SourceList": tmp / "sources.list",
        "Dir::Etc::SourceParts": tmp / "empty",
        "Dir::Etc::PreferencesParts": tmp / "empty",
        "Dir::State::Lists": tmp / "lists",
        "Dir::State::status": tmp / "status",
        "Dir::Cache": tmp / "cache",
        "APT::Sandbox::User": "root",
        "Debug::NoLocking": "1",
    }
    args = [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]
    upd = subprocess.run(["apt-get", *args, "update"], capture_output=True, text=True)
    return upd, args


def apt_candidate(tmp: Path, line: str, package: str) -> str:
    """apt-cache policy's candidate for package, with an apt configuration of its own."""
    upd, args = apt_update(tmp, line)
    assert upd.returncode == 0 and "W:" not in upd.stdout + upd.stderr, upd.stdout + upd.stderr
    pol = subprocess.run(
        ["apt-cache", *args, "policy", package], capture_output=True, text=True, check=True
    ).stdout
    return next(ln.split()[1] for ln in pol.splitlines() if "Candidate:" in ln)


def test_apt_takes_the_build_of_the_release_it_names(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    res = repo.build_repo(
        {
            "bookworm": [deb(tmp_path, "a", "1.0+deb12")],
            "trixie": [deb(tmp_path, "a", "1.0+deb13")],
        },
        out,
    )
    for suite, version in (("bookworm", "1.0+deb12"), ("trixie", "1.0+deb13")):
        assert apt_candidate(tmp_path / suite, res.sources_line(suite), "a") == version


@pytest.fixture
def gnupghome(tmp_path: Path) -> Iterator[Path]:
    """A gpg home with one signing key, esca-test@example.org (its agent stopped after)."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        [
            *("gpg", "--batch", "--passphrase", "", "--quick-generate-key"),
            *("ESCA test archive <esca-test@example.org>", "ed25519", "sign", "1d"),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    yield home
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)


def test_apt_verifies_the_signed_release_and_refuses_an_altered_one(
    tmp_path: Path, gnupghome: Path
) -> None:
    out = tmp_path / "repo"
    res = repo.build_repo(
        {"trixie": [deb(tmp_path, "a", "1.0+deb13")]},
        out,
        sign_key="esca-test@example.org",
        gnupghome=gnupghome,
    )
    line = res.sources_line("trixie")
    assert line == f"deb [signed-by={out / repo.KEYRING_NAME}] file:{out} trixie main"
    sdir = out / "dists" / "trixie"
    # InRelease is the clear-signed Release apt-ftparchive wrote
    assert (sdir / "Release").read_text() in (sdir / "InRelease").read_text()
    assert (sdir / "Release.gpg").read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert apt_candidate(tmp_path / "apt", line, "a") == "1.0+deb13"

    for name in ("InRelease", "Release"):
        p = sdir / name
        p.write_text(p.read_text().replace("Label: ESCA", "Label: EVIL"))
    upd, _ = apt_update(tmp_path / "apt2", line)
    said = upd.stdout + upd.stderr
    assert upd.returncode != 0, said
    assert "BADSIG" in said or "not signed" in said or "invalid" in said.lower(), said
