"""`csbsr models export`: a fixed-shape, single-file ONNX model checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from ..utils.progress import phase
from .common import ModelsDirOption, QuietOption, batch_option, err_console, output_option, registry_for


def export_command(
    name: str = typer.Argument(..., help="Registry name, a model card .json or a folder holding one."),
    tile: int | None = typer.Option(
        None, "--tile", min=1, help="LR tile side the model is fixed to (default: the model's)."
    ),
    batch: int = batch_option("Tiles per run, fixed in the model (use the same for segment)."),
    output: Path | None = output_option(
        "ONNX file (default: <models dir>/<name>.t<tile>.b<batch>.onnx, where segment looks).", file=True
    ),
    models_dir: list[Path] = ModelsDirOption,
    quiet: bool = QuietOption,
) -> None:
    """Export NAME to ONNX for (batch, 3, tile, tile) input; written only if ONNX Runtime matches PyTorch."""
    from ..infer.onnx_backend import default_onnx_path, export_onnx
    from ..infer.runner import load_torch_model, weights_id

    spec = registry_for(models_dir).resolve(name)
    tile = spec.tile if tile is None else tile
    path = output or default_onnx_path(spec.name, tile, batch)
    with phase(err_console, f"loading {spec.name}", disable=quiet):
        model = load_torch_model(spec)
    with phase(err_console, "exporting to ONNX and checking it against PyTorch", disable=quiet):
        report = export_onnx(model, spec, weights_id(spec), tile, batch, path)
    diffs = ", ".join(f"{k} {v:.1e}" for k, v in report.max_abs_diff.items())
    typer.echo(
        f"exported {spec.name} for {batch}x3x{tile}x{tile} -> {report.path} "
        f"({report.size_bytes / 1e6:.1f} MB, {report.seconds:.1f} s); max |ORT - PyTorch|: {diffs}"
    )
