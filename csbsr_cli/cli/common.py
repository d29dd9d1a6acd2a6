"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path

import typer

from ..registry import Registry

ModelsDirOption = typer.Option(
    None,
    "--models-dir",
    help="Extra model directory with cards + weights (also $CSBSR_MODELS, os.pathsep-separated).",
    file_okay=False,
)


def registry_for(models_dir: list[Path] | None) -> Registry:
    return Registry(models_dir or ())
