"""`csbsr tile split|merge`: frames to fixed-size tiles + manifest, and tiles (or predictions) back."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from ..errors import EXIT_PARTIAL
from .common import err_console, overwrite_option


def _report_failures(failures: list[tuple[str, str]]) -> None:
    for key, error in failures:
        err_console.print(f"[red]failed[/] {key}: {error}", markup=True)
    if failures:
        raise typer.Exit(EXIT_PARTIAL)


def split_command(
    frames: list[str] = typer.Argument(..., help="Image or video files, folders or quoted globs."),
    out: Path = typer.Argument(..., help="Folder for the tiles and manifest.json.", file_okay=False),
    tile: int = typer.Option(112, "--tile", min=1, help="Tile side in pixels."),
    overlap: int = typer.Option(16, "--overlap", min=0, help="Overlap of neighbouring tiles in pixels."),
    every: int = typer.Option(1, "--every", min=1, help="Videos: every N-th frame."),
    overwrite: bool = overwrite_option("Write into a non-empty folder."),
) -> None:
    """Write fixed-size tiles (the last row/column shifted inward; small frames reflect-padded)."""
    from ..infer.inputs import discover
    from ..infer.outputs import check_out_dir
    from ..infer.tileset import split

    check_out_dir(out, resume=False, overwrite=overwrite)
    sources = discover(frames, exclude=out)
    manifest, failures = split(sources, out, tile=tile, overlap=overlap, every=every)
    n_tiles = sum(len(f["tiles"]) for f in manifest["frames"])
    err_console.print(f"{n_tiles} tiles of {len(manifest['frames'])} frame(s) -> {out}/manifest.json")
    _report_failures(failures)


def merge_command(
    manifest: Path = typer.Argument(..., help="manifest.json written by `tile split` (or its folder)."),
    out: Path = typer.Argument(..., help="Folder for the merged frames.", file_okay=False),
    tiles_dir: Path | None = typer.Option(
        None, "--tiles", help="Folder of per-tile predictions with the tiles' names (default: the tiles)."
    ),
    blend: Literal["crop", "gaussian"] = typer.Option(
        "crop", "--blend", help="crop: each pixel from the tile owning it (exact); gaussian: blend overlaps."
    ),
    overwrite: bool = overwrite_option("Write into a non-empty folder."),
) -> None:
    """Put tiles, or per-tile predictions at any integer scale, back together as whole frames."""
    from ..infer.outputs import check_out_dir
    from ..infer.tileset import merge

    check_out_dir(out, resume=False, overwrite=overwrite)
    written, failures = merge(manifest, out, tiles_dir=tiles_dir, mode="crop" if blend == "crop" else "blend")
    err_console.print(f"{len(written)} frame(s) merged -> {out}")
    _report_failures(failures)
