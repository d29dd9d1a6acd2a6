"""The `csbsr` Typer app: every command is attached here, explicitly, from its module (the modules never
import this one, so there is no import circle).

The CLI layer only parses, validates and calls library functions; `main` maps CsbsrError to one line on
stderr and its documented exit code, so users never see a traceback for bad input. Command modules import
torch and the heavy libraries inside their functions: `csbsr --help` starts at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape
from typer._click.exceptions import ClickException  # typer vendors click

from .. import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, CsbsrError
from ..utils.memory import keep_freed_memory
from . import degrade, env, evaluate, export, models, report, segment, summary, tile, train
from .common import EXIT_CODES_HELP, Command, Group, err_console


def _group(help: str) -> typer.Typer:
    return typer.Typer(cls=Group, help=help, no_args_is_help=True, add_completion=False)


def _attach(group: typer.Typer, name: str, function: Callable[..., Any], **settings: Any) -> None:
    group.command(name, cls=Command, **settings)(function)


app = typer.Typer(
    cls=Group,
    name="csbsr",
    help="Crack segmentation on blind super-resolved (x4) drone imagery. " + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"csbsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Crack segmentation on blind super-resolved drone imagery."""


_attach(app, "segment", segment.segment_command, epilog=EXIT_CODES_HELP)
_attach(app, "evaluate", evaluate.evaluate_command, epilog=EXIT_CODES_HELP)
_attach(app, "degrade", degrade.degrade_command)
for _name, _command in train.COMMANDS.items():
    _attach(app, _name, _command)
_attach(app, "report", report.report)
_attach(app, "env", env.env)

models_app = _group("List, describe and import models.")
_attach(models_app, "list", models.list_models)
_attach(models_app, "info", models.info)
_attach(models_app, "import", models.import_)
_attach(models_app, "verify", models.verify)
_attach(models_app, "export", export.export_command)
app.add_typer(models_app, name="models")

tile_app = _group("Cut frames into tiles with a manifest, and merge tiles back.")
_attach(tile_app, "split", tile.split_command, epilog=EXIT_CODES_HELP)
_attach(tile_app, "merge", tile.merge_command, epilog=EXIT_CODES_HELP)
app.add_typer(tile_app, name="tile")

summary_app = _group("Work with the summary.csv files of segment runs.")
_attach(summary_app, "merge", summary.merge)
app.add_typer(summary_app, name="summary")


def main() -> None:
    """Entry point: one line and a documented exit code for every expected failure, never a traceback."""
    keep_freed_memory()
    try:
        # Non-standalone mode returns Exit codes instead of raising; Ctrl-C arrives as 130.
        code = app(standalone_mode=False)
    except CsbsrError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        sys.exit(exc.exit_code)
    except (
        OSError
    ) as exc:  # permissions or space on (shared) storage, wherever it strikes: the path, one line
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}", markup=True)
        sys.exit(EXIT_BAD_INPUT)
    except ClickException as exc:  # usage errors: click prints its own message
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except (KeyboardInterrupt, typer.Abort):
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        err_console.print("interrupted: partial outputs were removed; re-run with --resume to continue")
    sys.exit(code if isinstance(code, int) else 0)
