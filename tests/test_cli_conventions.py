"""The CLI's conventions: commands attached in app.py only, shared options declared once, one quiet
option (training's --no-progress a hidden alias), flags without a value type in help, and a start-up
that imports no torch."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from csbsr_cli.cli import app as app_module
from csbsr_cli.cli.app import app
from csbsr_cli.param_counts import SHIPPED, config_digest, counted
from csbsr_cli.registry import Registry
from csbsr_cli.utils.progress import phase

CLI_DIR = Path(app_module.__file__).parent
runner = CliRunner()


def _leaf_commands() -> dict[str, typer.core.TyperCommand]:
    """Every command by its words ("models export"), from the click tree Typer builds."""
    root = typer.main.get_command(app)
    found = {}

    def walk(group, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, (*prefix, name))
            else:
                found[" ".join((*prefix, name))] = command

    walk(root, ())
    return found


def test_command_modules_never_import_the_app() -> None:
    for module in CLI_DIR.glob("*.py"):
        assert not re.search(r"from \.app import|from \. import app", module.read_text()), module.name
    assert {"segment", "joint-train", "models export", "tile split", "summary merge"} <= set(_leaf_commands())


@pytest.mark.parametrize(
    "option", ['"--overwrite"', '"--device"', '"--batch"', '"--models-dir"', '"--quiet"']
)
def test_shared_options_are_declared_once(option: str) -> None:
    declared = [m.name for m in CLI_DIR.glob("*.py") if option in m.read_text()]
    assert declared == ["common.py"]


def test_every_command_with_progress_bars_takes_quiet_and_training_keeps_no_progress_hidden() -> None:
    commands = _leaf_commands()
    for name in ("segment", "evaluate", "degrade", "pretrain-sr", "finetune", "joint-train"):
        assert "--quiet" in {o for p in commands[name].params for o in p.opts}, name
    joint = commands["joint-train"]
    assert joint.make_context("joint-train", ["--no-progress"]).params["quiet"] is True
    assert joint.make_context("joint-train", ["-q"]).params["quiet"] is True
    assert joint.make_context("joint-train", []).params["quiet"] is False
    help_text = runner.invoke(app, ["joint-train", "--help"], env={"COLUMNS": "200"}).output
    assert "--quiet" in help_text and "--no-progress" not in help_text
    with pytest.raises(typer._click.exceptions.NoSuchOption):  # only where --quiet exists
        commands["tile split"].make_context("split", ["a", "b", "--no-progress"])


@pytest.mark.parametrize(
    "words", [[], ["segment"], ["joint-train"], ["degrade"], ["evaluate"], ["models", "export"]]
)
def test_flags_show_no_value_in_help(words: list[str]) -> None:
    result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output and "<bool>" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["tile", "--help"],
        ["summary", "merge", "--help"],
        ["models", "list"],
    ],
)
def test_start_up_imports_no_torch(args: list[str]) -> None:
    code = (
        "import sys\n"
        f"sys.argv = ['csbsr', *{args!r}]\n"
        "from csbsr_cli.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_a_phase_shows_on_a_terminal_and_leaves_logs_alone() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80)
    with phase(terminal, "loading x"):
        pass
    log = Console(file=io.StringIO(), force_terminal=False)
    with phase(log, "loading x"):
        pass
    assert "loading x" in terminal.file.getvalue() and log.file.getvalue() == ""


def test_model_loading_shows_its_phase(terminal_stderr: io.StringIO) -> None:
    result = runner.invoke(app, ["models", "verify", "csbsr-lite"])
    assert result.exit_code == 0, result.output
    assert "verifying and loading csbsr-lite" in terminal_stderr.getvalue()


def test_the_shipped_parameter_counts_are_the_networks() -> None:
    registry = Registry()
    fresh = {config_digest(registry.get(n)): (n, counted(registry.get(n))) for n in registry.names()}
    table = "\n".join(f'    "{d}": {c},  # {n}' for d, (n, c) in fresh.items())
    assert {d: c for d, (_, c) in fresh.items()} == SHIPPED, f"paste into param_counts.SHIPPED:\n{table}"
