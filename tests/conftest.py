"""Shared test helpers. Fixtures from ../shared are optional extras: a user's machine has none.

Golden tests use the authors' fixtures when they are present (CI has them beside the clone). Without them
the tests skip, unless CSBSR_REQUIRE_FIXTURES=1, which .ci/run sets so that CI can never skip them silently.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Rich wraps console output at 80 columns when it is not a terminal, so a message holding a long tmp path
# could break inside the phrase a test looks for. Consoles are created at import: set this first.
os.environ["COLUMNS"] = "400"


def _fixtures_dir() -> Path | None:
    candidates = [os.environ.get("CSBSR_FIXTURES"), REPO.parent / "shared" / "reference" / "fixtures"]
    for cand in candidates:
        if cand and Path(cand, "README.md").is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    found = _fixtures_dir()
    if found is None:
        if os.environ.get("CSBSR_REQUIRE_FIXTURES") == "1":
            pytest.fail("CSBSR_REQUIRE_FIXTURES=1 but the reference fixtures were not found")
        pytest.skip("reference fixtures (../shared/reference/fixtures) not available")
    return found


@pytest.fixture
def one_thread():
    """Golden comparisons run on one intra-op thread, as the fixtures were produced."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@contextmanager
def terminal_stderr_patch(patch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The CLI's stderr console as a terminal writing into a buffer: where live progress displays show."""
    from csbsr_cli.cli.common import err_console

    buffer = io.StringIO()
    patch.setattr(err_console, "_force_terminal", True)
    patch.setattr(err_console, "is_interactive", True)
    patch.setattr(err_console, "_file", buffer)  # not `file`: undoing that would pin today's sys.stderr
    yield buffer


@pytest.fixture
def terminal_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    with terminal_stderr_patch(monkeypatch) as buffer:
        yield buffer
