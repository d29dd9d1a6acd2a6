"""`csbsr report RUN_DIR`: a static report.html of a segment run, to look at in any browser."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from ..report.severity import parse_thresholds
from .common import err_console


def report(
    run_dir: Path = typer.Argument(..., help="A `csbsr segment` output folder.", file_okay=False),
    severity_mm: str | None = typer.Option(
        None,
        "--severity-mm",
        help="Maximum-width limits in mm between insignificant, moderate and wide cracks, for runs whose "
        "cracks.csv has no severity column (else the run's own, from segment --severity-mm; default: "
        "AASHTO MBEI defect 1130).",
    ),
) -> None:
    """Write RUN_DIR/report.html: settings, sortable frame and crack tables, overlay thumbnails linking to
    the full overlays, a crack-width histogram and the crack length per frame. Opens from disk: no
    server, no network."""
    if not run_dir.is_dir():
        raise InputError("not a folder", run_dir)
    from ..report.html import build_report

    out = build_report(run_dir, parse_thresholds(severity_mm) if severity_mm else None)
    err_console.print(f"report: {out}")
