"""Counting system calls under the esca module: trace_bypass is on for the
count and as it was afterwards (esca_pkg.servers.measure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from esca_pkg.servers import measure


def test_off_is_on_for_the_count_and_off_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    param = tmp_path / "trace_bypass"
    param.write_text("N\n")
    monkeypatch.setattr(measure, "TRACE_BYPASS", param)
    with measure.module_runs_counted_calls():
        assert param.read_text() == "Y"
    assert param.read_text() == "N"


def test_on_stays_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    param = tmp_path / "trace_bypass"
    param.write_text("Y\n")
    monkeypatch.setattr(measure, "TRACE_BYPASS", param)
    with measure.module_runs_counted_calls():
        pass
    assert param.read_text() == "Y\n"


def test_restored_when_the_count_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    param = tmp_path / "trace_bypass"
    param.write_text("N\n")
    monkeypatch.setattr(measure, "TRACE_BYPASS", param)
    with pytest.raises(RuntimeError), measure.module_runs_counted_calls():
        raise RuntimeError("perf died")
    assert param.read_text() == "N"


def test_no_module_no_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "TRACE_BYPASS", tmp_path / "absent")
    with measure.module_runs_counted_calls():
        pass
    assert not (tmp_path / "absent").exists()
