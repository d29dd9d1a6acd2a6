"""`csbsr report RUN_DIR`: a static report.html of a segment run, to look at in any browser."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from ..report.html import build_report
from ..report.severity import DEFAULT_NAMES, DEFAULT_THRESHOLDS_MM
from .app import app, err_console


def _thresholds(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--severity-mm: expected increasing numbers like 0.3,1.25, got {text!r}") from None
    if len(values) != len(DEFAULT_NAMES) - 1 or list(values) != sorted(values) or values[0] <= 0:
        raise InputError(
            f"--severity-mm: expected {len(DEFAULT_NAMES) - 1} increasing widths in mm, got {text!r}"
        )
    return values


@app.command("report")
def report(
    run_dir: Path = typer.Argument(..., help="A `csbsr segment` output folder.", file_okay=False),
    severity_mm: str = typer.Option(
        ",".join(str(t) for t in DEFAULT_THRESHOLDS_MM),
        "--severity-mm",
        help="Maximum-width limits in mm between insignificant, moderate and wide cracks "
        "(default: AASHTO MBEI defect 1130).",
    ),
) -> None:
    """Write RUN_DIR/report.html: settings, sortable frame and crack tables, overlay thumbnails linking to
    the full overlays, a crack-width histogram and the crack length per frame. Opens from disk: no
    server, no network."""
    if not run_dir.is_dir():
        raise InputError("not a folder", run_dir)
    out = build_report(run_dir, _thresholds(severity_mm))
    err_console.print(f"report: {out}")
