"""The exceptions semtts raises on bad input, and the entry-point wrapper that
turns them into one line on stderr.

Example
-------
>>> try:
...     raise DataError("data/train.json: item 'u1' has no 'wav' field")
... except SemttsError as err:
...     print(f"error: {err}")
error: data/train.json: item 'u1' has no 'wav' field
"""

import contextlib
import functools
import json
import os
import sys
import time
from typing import Callable, TypeVar

__all__ = ["SemttsError", "DataError", "ConfigError", "WeightsNotFound", "first_line", "entry_point",
           "report_to_torchrun"]


class SemttsError(Exception):
    """Base class of every error that is the user's to fix (not a bug)."""


class DataError(SemttsError):
    """A corpus, manifest or feature file is missing, corrupt or inconsistent."""


class ConfigError(SemttsError):
    """An hparams value, command-line flag or stage setting is invalid."""


class WeightsNotFound(SemttsError):
    """Pretrained weights are needed but absent (and random init is not allowed)."""


class NonFiniteLossError(SemttsError):
    """Training stopped: too many non-finite steps in a row."""


F = TypeVar("F", bound=Callable[..., int | None])


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message for a one-line error, or its
    class name when the message is empty (an empty file often gives one).

    Example
    -------
    >>> first_line(ValueError("bad header\\nmore")), first_line(EOFError())
    ('bad header', 'EOFError')
    """
    lines = str(err).strip().splitlines()
    return lines[0][:limit] if lines else err.__class__.__name__


def entry_point(func: F) -> F:
    """Decorate a ``main()``: a :class:`SemttsError` becomes one stderr line and exit 2
(under torchrun, also the process's error file: :func:`report_to_torchrun`).

    Arguments
    ---------
    func : callable
        The entry point; its return value is used as the exit status.

    Returns
    -------
    callable
        A wrapper that calls :func:`sys.exit` with the status.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            status = func(*args, **kwargs)
        except SemttsError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            report_to_torchrun(f"error: {err}")
            sys.exit(2)
        sys.exit(status or 0)

    return wrapper  # type: ignore[return-value]


def report_to_torchrun(message: str) -> None:
    """Under torchrun, write ``message`` to this process's error file
    (``TORCHELASTIC_ERROR_FILE``), where the launcher reads why each process
    failed (:mod:`semtts.stages.launch`); nothing otherwise. Called after the
    line is printed: a process with an error file has said it.

    Arguments
    ---------
    message : str
        The one-line error.
    """
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    # best effort: if the file cannot be written, the printed line stands and the launcher
    # reads the error from the process's output instead (semtts.stages.launch.error_line)
    with contextlib.suppress(OSError), open(path, "w", encoding="utf-8") as file:
        json.dump({"message": message, "timestamp": int(time.time())}, file)
