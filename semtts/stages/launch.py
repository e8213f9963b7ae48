"""Run a stage in several processes under torchrun, with one line when it fails.

``run.sh --ngpu N`` starts the training stages through this module rather
than ``torchrun`` itself. It runs ``torch.distributed.run`` (standalone, one
process per GPU) and differs in what reaches the console:

- process 0 writes to the console as a single-process stage does; the other
  processes write to files under ``--log_dir``
  (``<run id>/attempt_0/<local rank>/stdout.log``, ``stderr.log``), so a
  start-up error is printed once, not once per process;
- torchrun's own warnings and its ``ChildFailedError`` report are left out.
  When process 0 failed, it has said why (a one-line ``error:`` for a
  semtts error, a traceback otherwise); when another process failed first,
  this module says which, with the last line it wrote and its log file.

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
import signal
import sys
from pathlib import Path

from semtts.errors import ConfigError, entry_point

__all__ = ["failure_line", "main", "torchrun_args"]

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


def failure_line(rank: int, exitcode: int, nproc: int, log_dir: str | Path) -> str:
    """The one line saying that process ``rank`` failed, with its last words and log file.

    Arguments
    ---------
    rank : int
        The process that failed first.
    exitcode : int
        Its exit status (negative: the signal that killed it).
    nproc : int
        Processes in all.
    log_dir : str or Path
        The launcher's ``--log_dir``.

    Returns
    -------
    str

    Example
    -------
    >>> failure_line(1, -9, 2, "/nonexistent")
    'process 1 of 2 was killed by SIGKILL (no log file under /nonexistent)'
    """
    if exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with status {exitcode}"
    logs = sorted(Path(log_dir).glob(f"*/attempt_*/{rank}/stderr.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return f"process {rank} of {nproc} {how} (no log file under {log_dir})"
    lines = [line.strip() for line in logs[-1].read_text(encoding="utf-8", errors="replace").splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    said = f": {last}" if last else ""
    return f"process {rank} of {nproc} {how}{said} (its output: {logs[-1]})"


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
    try:
        run(parse_args(torchrun_args(options.nproc, options.log_dir, options.module, options.args)))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if rank == 0 and failure.exitcode > 0:
            return failure.exitcode  # process 0 wrote to the console: its own error is already there
        print(f"error: {failure_line(rank, failure.exitcode, options.nproc, options.log_dir)}", file=sys.stderr)
        return 1
    except SignalException as err:  # Ctrl-C or a kill: torchrun has stopped the processes
        print(f"error: stopped by {err.sigval.name}; the processes were stopped too", file=sys.stderr)
        return 128 + int(err.sigval)
    return 0


if __name__ == "__main__":
    main()
