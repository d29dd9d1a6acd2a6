"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path

import typer

from ..registry import Registry
from .app import err_console

ModelsDirOption = typer.Option(
    None,
    "--models-dir",
    help="Extra model directory with cards + weights (also $CSBSR_MODELS, os.pathsep-separated).",
    file_okay=False,
)


def registry_for(models_dir: list[Path] | None) -> Registry:
    """The registry, with a warning line for each model card it had to skip."""
    registry = Registry(models_dir or ())
    for problem in registry.problems:
        err_console.print(f"[yellow]warning:[/] {problem}", markup=True)
    return registry
