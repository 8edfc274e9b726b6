"""esca-pkg repo: an apt repository (one suite per Debian release) apt installs
from, with an apt configuration of the test's own (nothing under /etc/apt changes)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian.deb822 import Packages, Release
from pkg_helpers import Built, esca_pkg, raise_version, require_root, sh, snapshot

pytestmark = pytest.mark.packaging


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            h.update(str(p).encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(autouse=True)
def etc_apt_untouched() -> Iterator[None]:
    before = tree_digest(Path("/etc/apt"))
    yield
    assert tree_digest(Path("/etc/apt")) == before, "/etc/apt was changed"


class Apt:
    """apt-get / apt-cache with sources, lists, cache and pins under one directory."""

    def __init__(self, base: Path, source_line: str, pin_priority: int | None = None) -> None:
        self.base = base
        for d in ("lists/partial", "cache/archives/partial", "empty"):
            (base / d).mkdir(parents=True, exist_ok=True)
        (base / "sources.list").write_text(source_line + "\n")
        prefs = ""
        if pin_priority is not None:
            prefs = f"Package: *\nPin: release o=ESCA\nPin-Priority: {pin_priority}\n"
        (base / "preferences").write_text(prefs)

    def options(self) -> list[str]:
        b = self.base
        opts = {
            "Dir::Etc::SourceList": b / "sources.list",
            "Dir::Etc::SourceParts": b / "empty",
            "Dir::Etc::Preferences": b / "preferences",
            "Dir::Etc::PreferencesParts": b / "empty",
            "Dir::State::Lists": b / "lists",
            "Dir::Cache": b / "cache",
            "APT::Sandbox::User": "root",
        }
        return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]

    def get(self, *args: str, check: bool = True) -> str:
        res = sh("apt-get", *self.options(), *args, check=check)
        return res.stdout + res.stderr

    def cache(self, *args: str) -> str:
        return sh("apt-cache", *self.options(), *args).stdout


def test_repo_metadata(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    res = esca_pkg("repo", "--dist", built.dist, "--output", out)
    assert f"deb [trusted=yes] file:{out} {built.codename} main" in res.stdout
    suite = out / "dists" / built.codename
    assert [p.name for p in (out / "dists").iterdir()] == [built.codename]
    with (suite / "Release").open() as fh:
        rel = Release(fh)
    assert rel["Origin"] == "ESCA" and rel["Label"] == "ESCA"
    assert rel["Suite"] == rel["Codename"] == built.codename
    listed = {e["name"]: e for e in rel["SHA256"]}
    arch = sh("dpkg", "--print-architecture").stdout.strip()
    index = f"main/binary-{arch}/Packages"
    assert set(listed) == {index, index + ".gz"}
    for name, entry in listed.items():
        data = (suite / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert int(entry["size"]) == len(data)
    # written by apt-ftparchive (apt-utils): SHA512 too, over the same indexes
    sha512 = {e["name"]: e["sha512"] for e in rel["SHA512"]}
    assert sha512 == {n: hashlib.sha512((suite / n).read_bytes()).hexdigest() for n in listed}
    with (suite / index).open() as fh:
        stanzas = list(Packages.iter_paragraphs(fh, use_apt_pkg=False))
    debs = sorted(p.name for p in built.dist.glob("*.deb"))
    pool = f"pool/{built.codename}/"
    assert sorted(s["Filename"].removeprefix(pool) for s in stanzas) == debs
    for s in stanzas:
        deb = out / s["Filename"]
        assert s["SHA256"] == hashlib.sha256(deb.read_bytes()).hexdigest()
        assert s["SHA512"] == hashlib.sha512(deb.read_bytes()).hexdigest()
        assert int(s["Size"]) == deb.stat().st_size
    assert not (suite / "InRelease").exists()


def test_apt_installs_and_upgrades_esca_dkms_from_the_repo(
    built: Built, tmp_path: Path, headers_kernels: list[str]
) -> None:
    require_root()
    # A second, newer esca-dkms: the same tree with VERSION raised.
    newer_upstream = built.version + "+test1"
    newer = built.package_version.replace(built.version, newer_upstream, 1)
    proj = snapshot(tmp_path / "proj")
    raise_version(proj, newer_upstream)
    dist = tmp_path / "dist"
    esca_pkg(
        "build",
        "esca",
        "--project",
        proj,
        "--dist",
        dist,
        "--build-dir",
        tmp_path / "build",
        "--no-lint",
    )
    for f in [*built.dist.glob("*.deb"), *built.dist.glob("*.changes")]:
        os.link(f, dist / f.name)
    repo = tmp_path / "repo"
    esca_pkg("repo", "--dist", dist, "--output", repo)

    line = f"deb [trusted=yes] file:{repo} {built.codename} main"
    apt = Apt(tmp_path / "apt", line, pin_priority=990)
    apt.get("update")
    policy = apt.cache("policy", "esca-dkms")
    assert f"Candidate: {newer}" in policy, policy
    # 990 (not apt's default 500) shows the pin on the Release's Origin matched.
    assert "990 file:" in policy and " 500 " not in policy, policy
    assert "o=ESCA" in apt.cache("policy")
    assert sh("dpkg", "--compare-versions", newer, "gt", built.package_version).returncode == 0

    sh("apt-get", "purge", "-y", "esca-dkms", check=False)
    try:
        apt.get("install", "-y", f"esca-dkms={built.package_version}")
        status = sh("dkms", "status", "-m", "esca").stdout
        for kver in headers_kernels:
            assert f"esca/{built.version}, {kver}, " in status and "installed" in status, status

        out = apt.get("install", "-y", "esca-dkms")  # the upgrade
        status = sh("dkms", "status", "-m", "esca").stdout
        for kver in headers_kernels:
            assert f"esca/{newer_upstream}, {kver}, " in status, status + out
        assert f"esca/{built.version}," not in status, "the old version stayed in DKMS"
        assert not Path(f"/usr/src/esca-{built.version}").exists()
        assert Path(f"/usr/src/esca-{newer_upstream}/dkms.conf").exists()
    finally:
        sh("apt-get", "purge", "-y", "esca-dkms", check=False)
    assert not Path("/var/lib/dkms/esca").exists()


def test_signed_repo_verifies_and_detects_tampering(built: Built, tmp_path: Path) -> None:
    require_root()
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(gnupg)}
    sh(
        "gpg",
        "--batch",
        "--passphrase",
        "",
        "--quick-generate-key",
        "ESCA test archive <esca-test@example.org>",
        "ed25519",
        "sign",
        "1d",
        env=env,
    )
    repo = tmp_path / "repo"
    res = esca_pkg(
        "repo",
        "--dist",
        built.dist,
        "--output",
        repo,
        "--sign-key",
        "esca-test@example.org",
        "--gnupghome",
        gnupg,
    )
    keyring = repo / "esca-archive-keyring.gpg"
    line = f"deb [signed-by={keyring}] file:{repo} {built.codename} main"
    assert line in res.stdout
    suite = repo / "dists" / built.codename
    assert (suite / "InRelease").exists() and (suite / "Release.gpg").exists()

    apt = Apt(tmp_path / "apt", line)
    out = apt.get("update")
    assert "not signed" not in out and "NO_PUBKEY" not in out, out
    assert "esca-dkms" in apt.cache("policy", "esca-dkms")

    # A Release changed after signing must be refused.
    for name in ("InRelease", "Release"):
        p = suite / name
        p.write_text(p.read_text().replace("Label: ESCA", "Label: EVIL"))
    apt2 = Apt(tmp_path / "apt2", line)
    out = apt2.get("update", check=False)
    assert "BADSIG" in out or "not signed" in out or "invalid" in out.lower(), out
