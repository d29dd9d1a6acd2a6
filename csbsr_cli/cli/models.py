"""`csbsr models ...`: list, describe and import models of the shared registry."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Column, Table

from ..param_counts import param_counts
from ..registry import ModelSpec
from ..utils.progress import phase
from .common import ModelsDirOption, err_console, registry_for

console = Console(highlight=False)


def _weights_status(spec: ModelSpec) -> str:
    if spec.weights is None:
        return "none"
    return "present" if spec.weights.path.is_file() else "missing file"


def _source(spec: ModelSpec) -> str:
    return spec.source if spec.source == "built-in" else str(Path(spec.source).parent)


def list_models(models_dir: list[Path] = ModelsDirOption) -> None:
    """Every model the registry knows: built-in architectures and cards from the model directories."""
    table = Table("SR net", "segmenter", "params", "scale", "weights", "source")
    table.columns.insert(0, Column("name", no_wrap=True))
    registry = registry_for(models_dir)
    for name in registry.names():
        spec = registry.get(name)
        total, _, _ = param_counts(spec)
        table.add_row(
            name,
            spec.sr_type,
            spec.segmenter_type,
            f"{total / 1e6:.2f}M",
            f"x{spec.scale}",
            _weights_status(spec),
            spec.source,
        )
    console.print(table)


def info(name: str, models_dir: list[Path] = ModelsDirOption) -> None:
    """All metadata of one model, as JSON."""
    spec = registry_for(models_dir).resolve(name)
    total, sr, seg = param_counts(spec)
    data = asdict(spec)
    data.pop("card_divisor")
    data["divisor"] = spec.divisor  # the card's own, else the classes'
    data["weights"] = (
        None if spec.weights is None else {**asdict(spec.weights), "path": str(spec.weights.path)}
    )
    data["weights_status"] = _weights_status(spec)
    data["params"] = {"total": total, "sr_model": sr, "segmentation_model": seg}
    typer.echo(json.dumps(data, indent=2, default=str))


def import_(
    checkpoint: Path = typer.Argument(
        ..., help="The authors' joint checkpoint (.pth state dict) or .safetensors."
    ),
    arch: str = typer.Option(..., "--arch", help="Registry architecture, e.g. csbsr-pspnet."),
    name: str = typer.Option(..., "--name", help="Name to register the imported model under."),
    out_dir: Path | None = typer.Option(
        None,
        "--out-dir",
        help="Default: the last --models-dir, else the first $CSBSR_MODELS dir, else ~/.csbsr/models.",
    ),
    models_dir: list[Path] = ModelsDirOption,
) -> None:
    """Check every key and shape of an authors' checkpoint, then save it as safetensors + card."""
    from ..weights import import_checkpoint

    card = import_checkpoint(checkpoint, arch, name, out_dir, models_dir or ())
    typer.echo(f"imported {checkpoint} as {name!r}: {card}")


def verify(name: str, models_dir: list[Path] = ModelsDirOption) -> None:
    """Check a model's weights file against its card (sha256) and load it strictly."""
    from ..weights import load_model

    spec = registry_for(models_dir).resolve(name)
    with phase(err_console, f"verifying and loading {spec.name}"):
        load_model(spec, require_weights=True)
    typer.echo(f"{name}: weights verified ({spec.weights.path})")
