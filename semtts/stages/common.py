"""What every stage entry point shares: argument parsing, hparams loading,
logging, and the ``done`` marker that makes a stage idempotent.

A stage is run as ``python -m semtts.stages.<name> HPARAMS.yaml [--force]
[--key value ...]``: ``--force`` redoes a finished stage, SpeechBrain's run
options (``--device``, ``--precision``, ...) are understood, and every other
``--key value`` overrides the hparams (an unknown key is an error).

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "h.yaml").write_text("output_folder: exp\\nseed: 1\\n")
>>> args = parse_stage_args([str(folder / "h.yaml"), "--seed", "2", "--force"])
>>> args.force, load_hparams(args.hparams_file, args.overrides)["seed"]
(True, 2)
"""

import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from semtts import __version__
from semtts.data.manifest import write_json_atomic
from semtts.errors import ConfigError

__all__ = ["StageArgs", "parse_stage_args", "load_hparams", "run_stage", "log"]

DONE_NAME = "done"
logger = logging.getLogger("semtts.stages")


@dataclass
class StageArgs:
    """The parsed command line of a stage."""

    hparams_file: str
    overrides: str
    run_opts: Any
    force: bool


def parse_stage_args(argv: list[str] | None = None) -> StageArgs:
    """Split a stage command line into hparams file, overrides, run options
    and ``--force``.

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    StageArgs
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in argv
    argv = [a for a in argv if a != "--force"]
    if not argv or argv[0].startswith("-"):
        raise ConfigError("usage: python -m semtts.stages.<stage> HPARAMS.yaml [--force] [--key value ...]")
    try:
        hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    except SystemExit as err:  # argparse already printed why
        raise ConfigError(f"bad command line: {' '.join(argv)}") from err
    return StageArgs(hparams_file, overrides, run_opts, force)


def load_hparams(hparams_file: str, overrides: str | dict = "") -> dict:
    """Load a HyperPyYAML file with overrides; an unknown override key or a
    missing file is a one-line :class:`ConfigError`.

    Arguments
    ---------
    hparams_file : str
        The YAML file.
    overrides : str or dict
        YAML overrides (as SpeechBrain produces them) or a dict.

    Returns
    -------
    dict
        The loaded hparams.
    """
    path = Path(hparams_file)
    if not path.is_file():
        raise ConfigError(f"{hparams_file}: hparams file not found")
    with open(path, encoding="utf-8") as f:
        try:
            return load_hyperpyyaml(f, overrides)
        except KeyError as err:
            message = str(err.args[0]) if err.args else str(err)
            if message.startswith("Override"):
                raise ConfigError(f"{hparams_file}: {message}") from None
            raise
        except ValueError as err:
            match = re.match(r"'(\w+)' is a !PLACEHOLDER", str(err))
            if match:
                raise ConfigError(f"{hparams_file}: set --{match.group(1)} (it has no default)") from None
            raise


def log(stage: str, message: str) -> None:
    """Print a timestamped line, as ``run.sh`` does."""
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} (stage {stage}) {message}", flush=True)


def run_stage(
    stage: str,
    out_dir: str | Path,
    settings: dict,
    body: Callable[[], dict | None],
    force: bool = False,
) -> bool:
    """Run ``body`` unless ``out_dir`` holds a ``done`` marker for the same
    ``settings``; write the marker last.

    A marker written with other settings is an error (rerun with ``--force``),
    so changed settings never silently reuse stale outputs.

    Arguments
    ---------
    stage : str
        The stage name, for the log lines.
    out_dir : str or Path
        The stage's output folder.
    settings : dict
        The hparams that decide the outputs (JSON-serialisable).
    body : callable
        Does the work; may return a dict summary stored in the marker.
    force : bool
        Redo the stage even if it is done.

    Returns
    -------
    bool
        True if the stage ran, False if it was skipped.
    """
    out_dir = Path(out_dir)
    marker = out_dir / DONE_NAME
    settings = json.loads(json.dumps(settings, default=str))
    if marker.is_file() and not force:
        done = json.loads(marker.read_text())
        if done.get("settings") == settings:
            log(stage, f"skipped: already done ({marker}); --force redoes it")
            return False
        changed = sorted(k for k in set(settings) | set(done.get("settings", {}))
                         if settings.get(k) != done.get("settings", {}).get(k))
        raise ConfigError(
            f"{marker}: outputs were made with other settings ({', '.join(changed)}); "
            "rerun the stage with --force, or use another --tag"
        )
    if marker.exists():
        marker.unlink()
    log(stage, f"started, writing to {out_dir}")
    start = time.time()
    summary = body() or {}
    write_json_atomic(marker, {"settings": settings, "summary": summary, "semtts": __version__,
                               "seconds": round(time.time() - start, 2)})
    log(stage, f"finished in {time.time() - start:.1f} s")
    return True


