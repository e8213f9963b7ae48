"""Run a stage in several processes under torchrun, with one line when it fails.

``run.sh --ngpu N`` starts the training stages through this module rather
than ``torchrun`` itself. It runs ``torch.distributed.run`` (standalone, one
process per GPU) and differs in what reaches the console:

- process 0 writes to the console as a single-process stage does; the other
  processes write to files under ``--log_dir``
  (``<run id>_<random>/attempt_0/<local rank>/stdout.log``, ``stderr.log``;
  one folder per run, the last :data:`KEPT_RUNS` kept), so a start-up error
  is printed once, not once per process;
- torchrun's own warnings and its ``ChildFailedError`` report are left out
  (also its notice that it sets ``OMP_NUM_THREADS=1`` in every process where
  it is unset). When process 0 failed, it has said why (a one-line
  ``error:`` for a semtts error, a traceback otherwise); when another
  process failed, this module says which, with its error (as it reported it,
  or its output's last error line) and its log file (:func:`failure_report`).

    python -m semtts.stages.launch --nproc 2 --log_dir exp/mini/t/ddp_logs/stage_5 \\
        semtts.stages.train_a recipes/mini/hparams/corpus.yaml --device cuda

Example
-------
>>> torchrun_args(2, "logs", "semtts.stages.train_a", ["corpus.yaml", "--force"])  # doctest: +NORMALIZE_WHITESPACE
['--standalone', '--nproc-per-node', '2', '--log-dir', 'logs', '--redirects', '1:3', '-m',
 'semtts.stages.train_a', 'corpus.yaml', '--force']
"""

import argparse
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any

from semtts.errors import ConfigError, entry_point

__all__ = ["error_line", "failure_line", "failure_report", "main", "prune_run_logs", "torchrun_args"]

KEPT_RUNS = 5
"""The run folders of a ``--log_dir`` kept: a new run removes the oldest beyond these."""

QUIET_LOGGERS = ("torch.distributed.run", "torch.distributed.elastic", "torch.distributed.launcher")
"""torchrun's loggers, left out: their warnings and errors (an OMP_NUM_THREADS banner, a line per
process that failed or that it stopped) would bury the stage's own error."""


class TorchrunRecords(logging.Filter):
    """A handler filter that leaves out the records of :data:`QUIET_LOGGERS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is kept (it is not torchrun's)."""
        return not record.name.startswith(QUIET_LOGGERS)


def torchrun_args(nproc: int, log_dir: str | Path, module: str, args: list[str]) -> list[str]:
    """torchrun's command line for ``module args`` in ``nproc`` processes on this machine.

    Arguments
    ---------
    nproc : int
        Processes (one per GPU).
    log_dir : str or Path
        Where the processes other than 0 write their output.
    module : str
        The module to run (``python -m``).
    args : list of str
        Its arguments.

    Returns
    -------
    list of str
    """
    redirects = ",".join(f"{rank}:3" for rank in range(1, nproc)) or "0"  # 3: stdout and stderr to files
    return ["--standalone", "--nproc-per-node", str(nproc), "--log-dir", str(log_dir), "--redirects", redirects,
            "-m", module, *args]


ERROR_LINE = re.compile(r"^(?:\[rank\d+\]:\s*)?(?:error: |[\w.]*(?:Error|Exception|Interrupt)\b)")
"""A line of a process's output that states its error: semtts's ``error:`` line or an exception's last line."""


def error_line(text: str) -> str:
    """The last line of ``text`` that states an error (:data:`ERROR_LINE`), else its last non-empty line.

    Example
    -------
    >>> error_line("Traceback ...\\n  x\\nRuntimeError: CUDA out of memory\\nWarning: at exit\\n")
    'RuntimeError: CUDA out of memory'
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in reversed(lines) if ERROR_LINE.match(line)), lines[-1] if lines else "")


def failure_line(rank: int, exitcode: int, nproc: int, log_dir: str | Path, said: str = "") -> str:
    """The one line saying that process ``rank`` failed, with its error and log file.

    Arguments
    ---------
    rank : int
        The process that failed.
    exitcode : int
        Its exit status (negative: the signal that killed it).
    nproc : int
        Processes in all.
    log_dir : str or Path
        The launcher's ``--log_dir``.
    said : str
        Its error, as it reported it (:func:`semtts.errors.report_to_torchrun`); otherwise
        the error is read from its output (:func:`error_line`).

    Returns
    -------
    str

    Example
    -------
    >>> failure_line(1, -9, 2, "/nonexistent")
    'process 1 of 2 was killed by SIGKILL (no log file under /nonexistent)'
    >>> failure_line(0, -9, 2, "/nonexistent")
    'process 0 of 2 was killed by SIGKILL (its output is above)'
    >>> failure_line(1, 2, 4, "/nonexistent", said="error: --foo: bad value")
    'process 1 of 4 exited with status 2: --foo: bad value (no log file under /nonexistent)'
    """
    if exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with status {exitcode}"
    said = said.removeprefix("error: ")
    if rank == 0:  # process 0 writes to the console
        return f"process 0 of {nproc} {how}{f': {said}' if said else ''} (its output is above)"
    logs = sorted(Path(log_dir).glob(f"*/attempt_*/{rank}/stderr.log"), key=lambda p: p.stat().st_mtime)
    if logs and not said:
        said = error_line(logs[-1].read_text(encoding="utf-8", errors="replace"))
    where = f"its output: {logs[-1]}" if logs else f"no log file under {log_dir}"
    return f"process {rank} of {nproc} {how}{f': {said}' if said else ''} ({where})"


def failure_report(failures: dict[int, Any], nproc: int, log_dir: str | Path) -> tuple[str | None, int]:
    """What the launcher says when processes failed, and its exit status.

    Process 0 writes to the console, so when it failed with an error of its
    own, that error is already there: nothing is added (whichever process
    torchrun saw fail first; it stamps failures in whole seconds). Otherwise
    the first other process to fail is named, unless process 0 had reported
    the same error before torchrun stopped it.

    Arguments
    ---------
    failures : dict
        ``ChildFailedError.failures``: rank to ``ProcessFailure`` (``exitcode``,
        ``timestamp``, ``error_file``, ``message``).
    nproc : int
        Processes in all.
    log_dir : str or Path
        The launcher's ``--log_dir``.

    Returns
    -------
    tuple
        The line to print (None: nothing) and the exit status (2 for an
        error the user is to fix, as a single-process stage exits).

    Example
    -------
    >>> from types import SimpleNamespace as Failure
    >>> own = Failure(exitcode=2, timestamp=5, error_file="<N/A>", message="")
    >>> failure_report({1: Failure(exitcode=2, timestamp=4, error_file="<N/A>", message=""), 0: own}, 2, "/x")
    (None, 2)
    """
    said = {rank: failure.message if Path(failure.error_file).is_file() else ""
            for rank, failure in failures.items()}
    zero = failures.get(0)
    if zero is not None and zero.exitcode > 0:
        return None, zero.exitcode
    others = sorted((failure.exitcode < 0, failure.timestamp, rank) for rank, failure in failures.items() if rank)
    rank = others[0][2] if others else 0
    failure = failures[rank]
    status = 2 if failure.exitcode == 2 else 1
    if rank and said.get(0) and said.get(0) == said[rank]:
        return None, status  # process 0 printed the same error before it was stopped
    return failure_line(rank, failure.exitcode, nproc, log_dir, said[rank]), status


def prune_run_logs(log_dir: str | Path, keep: int = KEPT_RUNS) -> list[Path]:
    """Remove the oldest run folders of ``log_dir`` (torchrun's ``<run id>_<random>/attempt_*``), so
    that with the run about to start ``keep`` remain.

    Arguments
    ---------
    log_dir : str or Path
        The launcher's ``--log_dir``.
    keep : int
        Runs kept, the new one included.

    Returns
    -------
    list of Path
        The folders removed.

    Example
    -------
    >>> import tempfile, os
    >>> root = Path(tempfile.mkdtemp())
    >>> for age, name in enumerate(["new_a", "mid_b", "old_c", "notes"]):
    ...     (root / name / ("attempt_0" if name != "notes" else "")).mkdir(parents=True)
    ...     os.utime(root / name, (1000 - age, 1000 - age))
    >>> [p.name for p in prune_run_logs(root, keep=3)], sorted(p.name for p in root.iterdir())
    (['old_c'], ['mid_b', 'new_a', 'notes'])
    >>> import shutil; shutil.rmtree(root)
    """
    import shutil

    runs = sorted((p for p in Path(log_dir).glob("*") if p.is_dir() and any(p.glob("attempt_*"))),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    removed = runs[max(keep - 1, 0):]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Run ``MODULE ARGS...`` in ``--nproc`` processes; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m semtts.stages.launch", description=__doc__.split("\n")[0])
    parser.add_argument("--nproc", type=int, required=True, help="processes, one per GPU")
    parser.add_argument("--log_dir", required=True, help="where processes other than 0 write their output")
    parser.add_argument("module", help="the stage module, e.g. semtts.stages.train_a")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    options = parser.parse_args(argv)
    if options.nproc < 1:
        raise ConfigError(f"--nproc: expected a positive number of processes, got {options.nproc}")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    quiet = TorchrunRecords()  # (torchrun's modules set their own levels: the handlers filter them)
    for name in ("", "torch", "torch.distributed"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(quiet)

    Path(options.log_dir).mkdir(parents=True, exist_ok=True)
    prune_run_logs(options.log_dir)
    try:
        run(parse_args(torchrun_args(options.nproc, options.log_dir, options.module, options.args)))
    except ChildFailedError as err:
        line, status = failure_report(err.failures, options.nproc, options.log_dir)
        if line:
            print(f"error: {line}", file=sys.stderr)
        return status
    except SignalException as err:  # Ctrl-C or a kill: torchrun has stopped the processes
        print(f"error: stopped by {err.sigval.name}; the processes were stopped too", file=sys.stderr)
        return 128 + int(err.sigval)
    except KeyboardInterrupt:  # Ctrl-C before torchrun had its handlers in place
        print("error: interrupted", file=sys.stderr)
        return 128 + int(signal.SIGINT)
    return 0


if __name__ == "__main__":
    main()
