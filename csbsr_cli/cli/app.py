"""The `csbsr` Typer app. Each command group lives in its own module and registers itself here.

The CLI layer only parses, validates and calls library functions; `main` maps CsbsrError to one line on
stderr and its documented exit code, so users never see a traceback for bad input.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import ClickException  # typer vendors click

from .. import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_PARTIAL, CsbsrError
from ..utils.memory import keep_freed_memory

EXIT_CODES_HELP = (
    f"Exit codes: 0 success; 1 internal error; {EXIT_BAD_INPUT} bad input (arguments, files, models) "
    "or an unusable output folder (not writable, full); "
    f"{EXIT_PARTIAL} some inputs of a batch failed (listed at the end); {EXIT_INTERRUPTED} interrupted."
)

app = typer.Typer(
    name="csbsr",
    help="Crack segmentation on blind super-resolved (x4) drone imagery. " + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


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


def _register_commands() -> None:
    # Imported here so that each module can `from .app import app` without a cycle.
    from . import (  # noqa: F401
        degrade,
        env,
        evaluate,
        export,
        models,
        report,
        segment,
        summary,
        tile,
        train,
    )


_register_commands()


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
