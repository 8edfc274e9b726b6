"""Module signatures (esca_pkg/runtime/signing.py): the decision, the
message, and the same message from esca-dkms's postinst."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from esca_pkg.runtime import signing
from esca_pkg.runtime.signing import Enrollment, Problem

KEY = "/var/lib/dkms/mok.pub"
SIGNED = signing.State(
    enforced="Secure Boot",
    efi=True,
    module="/lib/modules/6.1.0-28-amd64/updates/dkms/esca.ko",
    signer="DKMS module signing key",
    key=KEY,
    key_exists=True,
    mokutil=True,
    enrollment=Enrollment.NOT_ENROLLED,
    kernel="6.1.0-28-amd64",
)


def state(**kw: object) -> signing.State:
    return dataclasses.replace(SIGNED, **kw)  # type: ignore[arg-type]


def test_not_enforced_is_no_problem() -> None:
    assert signing.problem(state(enforced="")) is Problem.NONE
    assert signing.message(state(enforced="", signer="")) == ""


def test_decisions() -> None:
    assert signing.problem(state()) is Problem.NOT_ENROLLED
    assert signing.problem(state(signer="")) is Problem.UNSIGNED
    assert signing.problem(state(key_exists=False)) is Problem.NO_KEY
    assert signing.problem(state(mokutil=False)) is Problem.NO_MOKUTIL
    assert signing.problem(state(enrollment=Enrollment.PENDING)) is Problem.PENDING
    assert signing.problem(state(enrollment=Enrollment.UNKNOWN)) is Problem.UNKNOWN
    enrolled = state(enrollment=Enrollment.ENROLLED)
    assert signing.problem(enrolled) is Problem.NONE
    assert signing.problem(enrolled, "Key was rejected by service") is Problem.REJECTED


def test_a_key_error_counts_even_when_nothing_says_enforced() -> None:
    error = "insmod: ERROR: could not insert module esca.ko: Key was rejected by service"
    assert signing.is_key_error(error)
    assert signing.is_key_error("Required key not available")
    assert not signing.is_key_error("Operation not permitted")
    text = signing.message(state(enforced=""), error)
    assert "it refused esca.ko: insmod: ERROR" in text.splitlines()[0]


def test_not_enrolled_names_the_enrollment_steps() -> None:
    text = signing.message(state())
    assert "(Secure Boot)" in text.splitlines()[0]
    assert "not enrolled" in text
    assert f"mokutil --import {KEY}" in text
    assert "Enroll MOK" in text and "reboot" in text
    assert text.splitlines()[-1].strip() == "3. modprobe esca"


def test_unsigned_says_how_to_get_it_signed() -> None:
    text = signing.message(state(signer="", enforced="module.sig_enforce=1"))
    assert "is not signed" in text
    assert "apt-get install --reinstall esca-dkms" in text
    assert "linux-headers-6.1.0-28-amd64" in text
    assert f"mokutil --import {KEY}" in text


def test_missing_mokutil_says_to_install_it() -> None:
    text = signing.message(state(mokutil=False))
    assert "apt-get install mokutil" in text and f"mokutil --import {KEY}" in text


def test_without_uefi_it_says_no_mok_can_be_enrolled() -> None:
    assert "did not boot through UEFI" in signing.message(state(efi=False))
    assert "did not boot through UEFI" not in signing.message(state())


def test_dkms_key_follows_framework_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "framework.conf"
    conf.write_text('# mok_certificate=/nowhere\nmok_certificate="/etc/keys/$kernelver.der"\n')
    confd = tmp_path / "framework.conf.d"
    monkeypatch.setattr(signing, "DKMS_FRAMEWORK", conf)
    monkeypatch.setattr(signing, "DKMS_FRAMEWORK_D", confd)
    assert signing.dkms_key().startswith("/etc/keys/") and "kernelver" not in signing.dkms_key()
    confd.mkdir()
    (confd / "key.conf").write_text("mok_certificate=/srv/mok.der\n")
    assert signing.dkms_key() == "/srv/mok.der"
    conf.write_text("")
    shutil.rmtree(confd)
    assert signing.dkms_key() == signing.DEFAULT_KEY


# --- the postinst's copy -----------------------------------------------------


POSTINST = Path(__file__).resolve().parents[2] / "debian" / "esca-dkms.postinst"


def _postinst_function(tmp_path: Path) -> Path:
    lines = POSTINST.read_text().splitlines(keepends=True)
    begin = lines.index("# esca-signing: begin\n")
    end = lines.index("# esca-signing: end\n")
    out = tmp_path / "signing.sh"
    out.write_text("".join(lines[begin : end + 1]))
    return out


def test_postinst_carries_signing_py_texts() -> None:
    """The postinst's here-documents are shell_advice()'s, word for word."""
    cases = signing.shell_advice()
    arms = "".join(
        f"\t\t{case})\n\t\t\tcat <<EOF\n{text}\nEOF\n\t\t\t;;\n"
        for case, text in cases
        if case != "no_uefi"
    )
    block = f"\t\tcase $problem in\n{arms}\t\tesac\n"
    no_uefi = dict(cases)["no_uefi"]
    note = f"\t\t\tcat <<EOF\n{no_uefi}\nEOF\n\t\tfi\n"
    text = POSTINST.read_text()
    assert block in text and note in text, (
        f"{POSTINST} differs from esca_pkg/runtime/signing.py's texts: paste these "
        f"arms into its esca_signing function:\n{block}and this note:\n{note}"
    )


def _tools(tmp_path: Path, modinfo: str, mokutil: str | None) -> Path:
    """A PATH of the tools the function uses, with modinfo and mokutil faked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cat", "sed", "od", "tr", "uname", "tail", "sh"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    fakes = {"modinfo": modinfo, **({"mokutil": mokutil} if mokutil is not None else {})}
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _run(tmp_path: Path, bin_dir: Path, error: str) -> subprocess.CompletedProcess[str]:
    func = _postinst_function(tmp_path)
    return subprocess.run(
        ["/bin/sh", "-c", f'. {func}; esca_signing "$1"', "sh", error],
        env={"PATH": str(bin_dir), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        check=False,
    )


ERROR = "modprobe: ERROR: could not insert 'esca': Key was rejected by service"


def test_postinst_prints_the_same_text(tmp_path: Path) -> None:
    """An unsigned installed module, refused: the postinst's words are signing.py's."""
    ko = "/lib/modules/x/updates/dkms/esca.ko"
    modinfo = f'[ "$1" = -n ] && echo {ko}; exit 0'  # installed, no signer
    res = _run(tmp_path, _tools(tmp_path, modinfo, None), ERROR)
    assert res.returncode == 0, res.stderr
    enforced = signing.enforcement(None)  # this machine's, as the function sees it
    expected = signing.message(
        state(
            enforced=enforced,
            signer="",
            module=ko,
            efi=signing.EFI.exists(),
            kernel=subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip(),
            key=signing.dkms_key(),
        ),
        ERROR,
    )
    assert res.stderr == "".join(f"esca-dkms: {ln}\n" for ln in expected.splitlines())


def test_postinst_not_enrolled_and_enrolled(tmp_path: Path) -> None:
    key = signing.dkms_key()
    if not Path(key).exists():
        pytest.skip(f"{key} does not exist here: the function would say no_key")
    modinfo = '[ "$1" = -n ] && echo /m/esca.ko; [ "$1" = -F ] && echo DKMS key; exit 0'
    mokutil = f'echo "{key} is not enrolled"'
    res = _run(tmp_path, _tools(tmp_path, modinfo, mokutil), ERROR)
    assert res.returncode == 0
    assert "which is not enrolled" in res.stderr and f"mokutil --import {key}" in res.stderr
    mokutil = f'echo "{key} is already enrolled"; exit 1'
    (tmp_path / "bin").rename(tmp_path / "old")
    ok = _run(tmp_path, _tools(tmp_path, modinfo, mokutil), "")
    if not signing.enforcement(None):
        assert (ok.returncode, ok.stderr) == (1, "")  # nothing enforced, nothing refused
    rejected = _run(tmp_path, tmp_path / "bin", ERROR)
    assert rejected.returncode == 0 and "signed with another key" in rejected.stderr


def test_shell_texts_are_here_document_safe() -> None:
    cases = dict(signing.shell_advice())
    assert set(cases) == {p.value for p in Problem if p is not Problem.NONE} | {"no_uefi"}
    assert "mokutil --import $key" in cases["not_enrolled"]
