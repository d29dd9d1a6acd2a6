"""Errors that the CLI turns into one clear line and a documented exit code (never a traceback)."""

from __future__ import annotations

# Documented exit codes (README and `csbsr --help` list them).
EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected internal error
EXIT_BAD_INPUT = 2  # bad arguments, unreadable or invalid input files, refused checkpoints, unusable output
EXIT_PARTIAL = 3  # a batch finished but some inputs failed (listed at the end)
EXIT_INTERRUPTED = 130  # Ctrl-C: partial outputs were removed, the run can be resumed


class CsbsrError(Exception):
    """Base class: `str(err)` is the one-line message shown to the user."""

    exit_code = EXIT_FAILURE


class InputError(CsbsrError):
    """A user-supplied file or argument is unusable; the message names the file and the problem."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, path: object | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path is not None else message)


class ModelError(InputError):
    """A model name, card or weights file is unknown, mismatched or refused."""


class DeviceError(InputError):
    """The requested device or backend is not available."""


class OutputError(InputError):
    """The output folder cannot take the run's files (full disk, quota, read-only): the run stops."""


class PartialFailure(CsbsrError):
    """A batch finished but some inputs failed or were skipped; they are listed before this message."""

    exit_code = EXIT_PARTIAL
