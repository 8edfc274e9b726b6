"""Runs targets: reuse when inputs are unchanged, build, lint, move outputs to dist."""

from __future__ import annotations

import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import click

from esca_pkg.log import EscaError, info
from esca_pkg.packaging import cache, debbuild
from esca_pkg.packaging.context import BuildContext
from esca_pkg.packaging.progress import Progress
from esca_pkg.packaging.targets.base import Target

TAIL_LINES = 40


@dataclass
class Outcome:
    target: str
    status: str  # built, reused, failed, skipped
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    message: str = ""
    lint: str = ""


def log_tail(log: Path, lines: int = TAIL_LINES) -> str:
    try:
        with log.open(errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except OSError:
        return ""


def input_key(ctx: BuildContext, target: Target) -> str:
    return cache.hash_inputs(target.inputs(ctx), {"target": target.name, **target.key_extra(ctx)})


def build_one(ctx: BuildContext, target: Target, position: str) -> Outcome:
    label = f"{position} {target.name}"
    t0 = time.monotonic()
    try:
        key = input_key(ctx, target)
    except EscaError as e:
        return _failed(target, label, time.monotonic() - t0, e, None)
    old = cache.Stamp.load(ctx.dist, target.name)
    if old and not ctx.force and old.fresh(key, ctx.dist):
        outs = [ctx.dist / n for n in sorted(old.outputs)]
        info(f"{label}: up to date, reused {len(outs)} files ({time.monotonic() - t0:.1f} s)")
        return Outcome(target.name, "reused", time.monotonic() - t0, outs, lint=old.lint)

    log = ctx.log_path(target.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"esca-pkg: building {target.name} ({target.summary})\n")
    try:
        with Progress(f"{label}: building", log) as prog:
            result = target.build(ctx, log)
            lint_summary = ""
            if ctx.lint:
                prog.step = "lintian"
                report = debbuild.lintian(result.changes, log)
                lint_summary = (
                    f"lintian: {report.errors} errors, {report.warnings} warnings, "
                    f"{report.others} info/pedantic"
                )
                if not report.clean:
                    raise EscaError(
                        f"{target.name}: lintian found errors or warnings:\n" + report.text,
                        hint=target.lint_fix(),
                    )
    except EscaError as e:
        return _failed(target, label, time.monotonic() - t0, e, log)

    names = _publish(ctx, target, old, result.files)
    cache.Stamp.of(key, ctx.dist, names, lint_summary).save(ctx.dist, target.name)
    secs = time.monotonic() - t0
    info(
        f"{label}: built in {secs:.0f} s: "
        + ", ".join(n for n in names if n.endswith(".deb"))
        + (f"; {lint_summary}" if lint_summary else "")
    )
    return Outcome(target.name, "built", secs, [ctx.dist / n for n in names], lint=lint_summary)


def _publish(
    ctx: BuildContext, target: Target, old: cache.Stamp | None, files: list[Path]
) -> list[str]:
    """Move the build's files into dist, removing what the previous build there left."""
    ctx.dist.mkdir(parents=True, exist_ok=True)
    new = {f.name for f in files}
    if old:
        for name in old.outputs:
            if name not in new:
                (ctx.dist / name).unlink(missing_ok=True)
    for f in files:
        shutil.move(str(f), ctx.dist / f.name)
    return sorted(new)


def _failed(target: Target, label: str, secs: float, err: EscaError, log: Path | None) -> Outcome:
    click.echo(f"{label}: FAILED after {secs:.0f} s", err=True)
    if log is not None:
        tail = log_tail(log)
        if tail:
            click.echo(f"---- last lines of {log} ----", err=True)
            click.echo(tail.rstrip("\n"), err=True)
            click.echo("----", err=True)
    click.echo(f"error: {err}", err=True)
    if err.hint:
        click.echo(f"  fix: {err.hint}", err=True)
    if log is not None:
        click.echo(f"  full log: {log}", err=True)
    return Outcome(target.name, "failed", secs, message=str(err).splitlines()[0])


def build_many(
    ctx: BuildContext, targets: list[Target], skipped: dict[str, str] | None = None
) -> list[Outcome]:
    outcomes = [Outcome(n, "skipped", message=r) for n, r in (skipped or {}).items()]
    for n, reason in (skipped or {}).items():
        info(f"skipped {n}: {reason}")
    failed: set[str] = set()
    for i, t in enumerate(targets, 1):
        blocked = [r for r in t.requires if r in failed]
        if blocked:
            outcomes.append(
                Outcome(t.name, "failed", message=f"not built: {', '.join(blocked)} failed")
            )
            failed.add(t.name)
            continue
        out = build_one(ctx, t, f"[{i}/{len(targets)}]")
        if out.status == "failed":
            failed.add(t.name)
        outcomes.append(out)
    return outcomes
