"""`csbsr summary merge`: one summary.csv from the shards of a job array (`segment --shard`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from ..infer.shard import merge_annotations, merge_summaries, write_merged
from .common import err_console, overwrite_option


def merge(
    output: Path = typer.Argument(..., help="The merged CSV to write.", dir_okay=False),
    inputs: list[Path] = typer.Argument(
        ..., help="Shard run folders, a folder of shard-K-of-N folders, or summary.csv files.", exists=True
    ),
    partial: bool = typer.Option(
        False, "--partial", help="Merge even if shards are missing or unfinished (listed as warnings)."
    ),
    overwrite: bool = overwrite_option("Replace an existing OUTPUT."),
) -> None:
    """Merge the shards' summary.csv files into one, sorted by frame as an unsharded run writes it; given
    run folders, also their cracks.csv and coco.json (beside OUTPUT), rebuilt from the frames' JSON.

    Refused: different columns, a frame in two shards, runs with different settings, and (unless
    --partial) a missing shard or one whose run did not finish.
    """
    if output.exists() and not overwrite:
        raise InputError("exists: add --overwrite to replace it", output)
    result = merge_summaries(inputs, partial=partial)
    if output.resolve() in {s.resolve() for s in result.sources}:
        raise InputError("is one of the inputs: write the merged summary elsewhere", output)
    write_merged(result, output)
    folders = [p for p in inputs if p.is_dir()]
    if folders:  # run folders: their cracks and COCO instances are merged beside the summary too
        for path in merge_annotations(folders, output.parent):
            err_console.print(f"merged {path}")
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", markup=True)
    err_console.print(f"{len(result.rows)} frame(s) from {len(result.sources)} summaries -> {output}")
