"""What several commands share, defined once: the error console, the exit-code text, the command classes
(one help and alias convention) and the options that mean the same in every command."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from ..errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_PARTIAL
from ..registry import Registry

EXIT_CODES_HELP = (
    f"Exit codes: 0 success; 1 internal error; {EXIT_BAD_INPUT} bad input (arguments, files, models) "
    "or an unusable output folder (not writable, full); "
    f"{EXIT_PARTIAL} some inputs of a batch failed (listed at the end); {EXIT_INTERRUPTED} interrupted."
)
# Spellings kept working but not shown: training said --no-progress before -q/--quiet was the convention.
HIDDEN_ALIASES = {"--no-progress": "--quiet"}

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class _Conventions:
    """Help and parsing rules of every csbsr command and group (mixed into Typer's classes)."""

    params: list[Any]

    def get_params(self, ctx: Any) -> list[Any]:
        """A flag takes no value, so its help shows none: Typer's `<bool>` invited `--save-sr true`, whose
        `true` was then read as an input path."""
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params

    def parse_args(self, ctx: Any, args: Sequence[str]) -> list[str]:
        """Old spellings (HIDDEN_ALIASES) read as the convention, in the commands that have it."""
        names = {opt for param in self.params for opt in getattr(param, "opts", ())}
        args = [HIDDEN_ALIASES.get(a, a) if HIDDEN_ALIASES.get(a) in names else a for a in args]
        return super().parse_args(ctx, args)  # type: ignore[misc]


class Command(_Conventions, TyperCommand):
    """A csbsr command."""


class Group(_Conventions, TyperGroup):
    """A csbsr command group."""


ModelsDirOption = typer.Option(
    None,
    "--models-dir",
    help="Extra model directory with cards + weights (also $CSBSR_MODELS, os.pathsep-separated).",
    file_okay=False,
)
QuietOption = typer.Option(False, "-q", "--quiet", help="No progress bars.")


def overwrite_option(help: str) -> Any:
    """--overwrite: what it replaces is each command's own."""
    return typer.Option(False, "--overwrite", help=help)


def resume_option(help: str) -> Any:
    """--resume: what it continues is each command's own."""
    return typer.Option(False, "--resume", help=help)


def output_option(help: str, *, file: bool = False) -> Any:
    """-o/--output: a run folder, or a file with `file`."""
    return typer.Option(None, "-o", "--output", help=help, file_okay=file, dir_okay=not file)


def device_option(default: str | None = "auto", note: str = "") -> Any:
    """--device, read by infer/device.py for every command."""
    return typer.Option(default, "--device", help=f"auto, cpu, cuda or cuda:N{note}.")


def batch_option(help: str) -> Any:
    """--batch: images or tiles per forward pass."""
    return typer.Option(4, "--batch", min=1, help=help)


def registry_for(models_dir: list[Path] | None) -> Registry:
    """The registry, with a warning line for each model card it had to skip."""
    registry = Registry(models_dir or ())
    for problem in registry.problems:
        err_console.print(f"[yellow]warning:[/] {problem}", markup=True)
    return registry
