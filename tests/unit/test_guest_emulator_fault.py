"""The guest harness tells the emulator's stale-int3 death (QEMU's
multi-threaded TCG) from the guest's own and boots again once, from the same disk.

tests/unit/data/tcg-stale-int3.console is the console of CI's e2e second boot
on 6.12.118+deb12-amd64 (QEMU 7.2, two vCPUs) that died this way."""

from __future__ import annotations

from pathlib import Path

import pytest
import qemu_guest as guest

DATA = Path(__file__).resolve().parent / "data"
STALE = (DATA / "tcg-stale-int3.console").read_text()


def test_the_recorded_death_is_the_emulators() -> None:
    assert guest.stale_int3(STALE) == "Oops: int3: 0000 [#1] PREEMPT SMP NOPTI"


def test_an_int3_still_in_the_text_is_the_guests() -> None:
    # The byte before the saved RIP still holds int3: a real breakpoint.
    real = STALE.replace("00 0f <1f> 44", "00 cc <1f> 44")
    assert real != STALE
    assert guest.stale_int3(real) == ""


def test_other_deaths_are_the_guests() -> None:
    assert guest.stale_int3(STALE.replace("int3: 0000", "general protection fault: 0000")) == ""
    no_code = "\n".join(ln for ln in STALE.splitlines() if "Code:" not in ln)
    assert guest.stale_int3(no_code) == ""
    # No byte before the saved RIP: nothing to tell from, so the guest's.
    first = STALE.replace("Code: 48 29", "Code: <48> 29").replace("0f <1f> 44", "0f 1f 44")
    assert guest.stale_int3(first) == ""


class FakeBoots:
    """Stands in for QEMU: each boot reads the overlay disk and writes to it."""

    def __init__(self, consoles: list[tuple[bool, str]]) -> None:
        self.consoles = consoles
        self.disk_seen: list[bytes] = []

    def __call__(self, spec: guest.GuestSpec) -> guest.GuestRun:
        assert spec.overlay_disk is not None
        self.disk_seen.append(spec.overlay_disk.read_bytes())
        spec.overlay_disk.write_bytes(b"changed by boot %d" % len(self.disk_seen))
        finished, console = self.consoles[len(self.disk_seen) - 1]
        spec.rundir.mkdir(parents=True, exist_ok=True)
        (spec.rundir / "console.log").write_text(console)
        return guest.GuestRun(spec, 1.0, finished)


def _spec(tmp_path: Path) -> guest.GuestSpec:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"before")
    return guest.GuestSpec(
        name="t",
        vmlinuz=tmp_path / "vmlinuz",
        initramfs=tmp_path / "initramfs",
        rundir=tmp_path / "run",
        runner=tmp_path / "runner.sh",
        plan={},
        overlay_disk=disk,
    )


def test_an_emulator_death_boots_again_from_the_same_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boots = FakeBoots([(False, STALE), (True, "done\n")])
    monkeypatch.setattr(guest, "_boot_once", boots)
    spec = _spec(tmp_path)
    run = guest.boot(spec)
    assert run.finished
    assert boots.disk_seen == [b"before", b"before"]
    assert run.emulator_fault.endswith("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI")
    assert "emulator fault" in run.fault_note()
    assert (spec.rundir / "console.emulator-fault.log").read_text() == STALE
    assert not list(tmp_path.glob("*.before-boot"))


def test_the_emulator_gets_one_second_chance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boots = FakeBoots([(False, STALE), (False, STALE), (True, "")])
    monkeypatch.setattr(guest, "_boot_once", boots)
    run = guest.boot(_spec(tmp_path))
    assert not run.finished
    assert len(boots.disk_seen) == 2
    with pytest.raises(guest.HarnessError, match="emulator fault"):
        run.require_finished()


def test_a_guest_death_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpf = STALE.replace("int3: 0000", "general protection fault: 0000")
    boots = FakeBoots([(False, gpf), (True, "")])
    monkeypatch.setattr(guest, "_boot_once", boots)
    spec = _spec(tmp_path)
    run = guest.boot(spec)
    assert not run.finished and run.emulator_fault == ""
    assert boots.disk_seen == [b"before"]
    assert spec.overlay_disk is not None and spec.overlay_disk.read_bytes() == b"changed by boot 1"
