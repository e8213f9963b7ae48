"""What every stage entry point shares: argument parsing, hparams loading,
logging, and the ``done`` marker that makes a stage idempotent.

A stage is run as ``python -m semtts.stages.<name> HPARAMS.yaml [--force]
[--key value ...]``: ``--force`` redoes a finished stage, SpeechBrain's run
options (``--device``, ``--precision``, ...) are understood, and every other
``--key value`` overrides the hparams: an unknown key, or a value of another
type than the key's value in the recipe's files, is a one-line error before
anything runs (see :mod:`semtts.stages.flags`).

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "h.yaml").write_text("output_folder: exp\\nseed: 1\\n")
>>> args = parse_stage_args([str(folder / "h.yaml"), "--seed", "2", "--force"])
>>> args.force, load_hparams(args.hparams_file, args.overrides)["seed"]
(True, 2)
>>> parse_stage_args([str(folder / "h.yaml"), "--seed", "two"])
Traceback (most recent call last):
    ...
semtts.errors.ConfigError: --seed: expected an integer, got 'two'
"""

import contextlib
import io
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from semtts import __version__
from semtts.data.manifest import read_record, write_json_atomic
from semtts.errors import ConfigError

__all__ = ["StageArgs", "parse_stage_args", "load_hparams", "load_stage_hparams", "included_files",
           "comparable_settings", "read_done", "changed_settings", "run_stage", "log"]

DONE_NAME = "done"
logger = logging.getLogger("semtts.stages")


class NoFigureSaverWarning(logging.Filter):
    """Leaves out SpeechBrain's "torchvision is not available - cannot save figures", logged
    when the hparams import its train loggers: it concerns its ProgressSampleLogger, which
    semtts does not use (figures go to TensorBoard and matplotlib)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is kept."""
        return "cannot save figures" not in record.getMessage()


logging.getLogger("speechbrain.utils.train_logger").addFilter(NoFigureSaverWarning())


@dataclass
class StageArgs:
    """The parsed command line of a stage."""

    hparams_file: str
    overrides: str
    run_opts: Any
    force: bool


def parse_stage_args(argv: list[str] | None = None, driver: bool = False) -> StageArgs:
    """Split a stage command line into hparams file, overrides, run options
    and ``--force``, and check the overrides
    (:func:`semtts.stages.flags.check_overrides`): every key is a key of the
    recipe and every value has the type of the key's value in its files.

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).
    driver : bool
        The command line is ``run.sh``'s (its own flags are named in an
        unknown-flag error).

    Returns
    -------
    StageArgs

    Raises
    ------
    ConfigError
        One line naming the bad flag.
    """
    from semtts.stages.flags import check_overrides

    argv = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in argv
    argv = [a for a in argv if a != "--force"]
    if not argv or argv[0].startswith("-"):
        raise ConfigError("usage: python -m semtts.stages.<stage> HPARAMS.yaml [--force] [--key value ...]")
    argparse_says = io.StringIO()
    try:
        with contextlib.redirect_stderr(argparse_says):
            hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    except SystemExit as err:
        if not err.code:  # --help: argparse printed the run options
            raise
        lines = [line for line in argparse_says.getvalue().splitlines() if line.strip()]
        why = lines[-1].split("error: ", 1)[-1] if lines else "see above"
        raise ConfigError(f"bad command line ({why}): {' '.join(argv)}") from None
    check_overrides(hparams_file, overrides, driver=driver)
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
            if "structure of the overrides doesn't match" in str(err):
                mappings = [f"--{key}" for key, value in _overrides_dict(overrides).items() if isinstance(value, dict)]
                raise ConfigError(f"{hparams_file}: {' '.join(mappings) or 'an override'} gives a mapping where the "
                                  "file has another kind of value; set it in a copy of the file") from None
            raise


def _overrides_dict(overrides: str | dict | None) -> dict:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    return dict(YAML(typ="safe").load(overrides) or {})


def _is_plain(value: Any) -> bool:
    """A value that can travel as a YAML override (no built objects)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def included_files(hparams_file: str | Path) -> dict[str, str]:
    """The files a recipe's ``corpus.yaml`` includes: every top-level key
    ending in ``_hparams`` whose value is a YAML path (read as text).

    Arguments
    ---------
    hparams_file : str or Path
        The recipe's ``corpus.yaml``.

    Returns
    -------
    dict
        ``{key: path}``, e.g. ``{"model_hparams": "hparams/model/vits_tiny.yaml"}``.
    """
    text = Path(hparams_file).read_text(encoding="utf-8")
    return dict(re.findall(r"^(\w+_hparams):\s*([^\s#]+\.yaml)", text, flags=re.M))


def load_stage_hparams(
    hparams_file: str,
    overrides: str | dict | None,
    include: tuple[str, ...] = (),
    extra: dict | None = None,
) -> dict:
    """Load a recipe's ``corpus.yaml`` and the files a stage needs from it.

    The files are loaded one after the other (corpus, then ``include`` in
    order) and merged into one flat dict. A key an included file shares with
    an earlier one is overridden with the earlier value (so ``sample_rate``
    is set once, in the corpus file); command-line overrides reach every file
    that has the key, and ``extra`` (values derived at run time, e.g.
    ``n_vocab``) likewise. Keys of other stages' files are ignored here:
    :func:`parse_stage_args` already checked every flag against all of them.

    Arguments
    ---------
    hparams_file : str
        The recipe's ``corpus.yaml``.
    overrides : str or dict
        Command-line overrides.
    include : tuple of str
        Keys of ``corpus.yaml`` naming files to load, e.g. ``("model_hparams",
        "train_A_hparams")``.
    extra : dict, optional
        Derived overrides, applied last.

    Returns
    -------
    dict
        The merged hparams.
    """
    from semtts.stages.flags import hparams_keys

    cli = _overrides_dict(overrides)
    corpus_keys = set(hparams_keys(hparams_file))
    merged = load_hparams(hparams_file, {k: v for k, v in cli.items() if k in corpus_keys})
    for key in include:
        if key not in merged:
            raise ConfigError(f"{hparams_file}: no '{key}' key naming the file this stage needs")
        path = merged[key]
        keys = set(hparams_keys(path))
        values = {k: merged[k] for k in keys if k in merged and _is_plain(merged[k])}
        values.update({k: v for k, v in cli.items() if k in keys})
        values.update({k: v for k, v in (extra or {}).items() if k in keys})
        merged.update(load_hparams(path, values))
    return merged


def log(stage: str, message: str) -> None:
    """Print a timestamped line, as ``run.sh`` does (the main process of a multi-GPU stage only)."""
    if if_main_process():
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} (stage {stage}) {message}", flush=True)


def comparable_settings(settings: dict) -> dict:
    """``settings`` as a ``done`` marker stores them (JSON; other values as
    strings), so that they compare equal to a marker read back.

    Example
    -------
    >>> comparable_settings({"path": Path("a/b"), "n": 3})
    {'path': 'a/b', 'n': 3}
    """
    return json.loads(json.dumps(settings, default=str))


def read_done(marker: str | Path, rerun: str = "the stage") -> dict:
    """Read a ``done`` marker that semtts wrote (a JSON object with
    ``settings``).

    An empty or unreadable marker (e.g. made by ``touch done``, a Kaldi
    habit) is not taken as "done": it is a one-line error naming the marker,
    so that no stage guesses with which settings the outputs were made.

    Arguments
    ---------
    marker : str or Path
        The ``done`` file.
    rerun : str
        What the error tells the user to rerun with ``--force``, e.g.
        ``"stage 2 (text frontend)"``.

    Returns
    -------
    dict
        The marker: ``settings``, ``summary``, ``semtts``, ``seconds``.

    Raises
    ------
    ConfigError
        The marker is empty, not JSON, or not a JSON object with ``settings``.

    Example
    -------
    >>> import tempfile
    >>> marker = Path(tempfile.mkdtemp()) / "done"
    >>> _ = marker.write_text("")
    >>> read_done(marker)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    semtts.errors.ConfigError: .../done: empty or not a done marker semtts wrote ...; rerun the stage with --force
    """
    marker = Path(marker)
    done = read_record(marker)
    if done is None or not isinstance(done.get("settings"), dict):
        raise ConfigError(f"{marker}: empty or not a done marker semtts wrote (e.g. made by touch), so the settings "
                          f"of its outputs are unknown; rerun {rerun} with --force")
    return done


def run_stage(
    stage: str,
    out_dir: str | Path,
    settings: dict,
    body: Callable[[], dict | None],
    force: bool = False,
    ignore: Collection[str] = (),
) -> bool:
    """Run ``body`` unless ``out_dir`` holds a ``done`` marker for the same
    ``settings``; write the marker last.

    A marker written with other settings is an error (rerun with ``--force``),
    so changed settings never silently reuse stale outputs. An empty or
    unreadable marker is an error too (:func:`read_done`).

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
    ignore : collection of str
        Keys of ``settings`` that are recorded in the marker but not compared
        with it (they cannot change the outputs, e.g. a number of jobs).

    Returns
    -------
    bool
        True if the stage ran, False if it was skipped.
    """
    out_dir = Path(out_dir)
    marker = out_dir / DONE_NAME
    settings = comparable_settings(settings)
    if marker.is_file() and not force:
        recorded = read_done(marker)["settings"]
        changed = changed_settings(recorded, settings, ignore)
        if not changed:
            log(stage, f"skipped: already done ({marker}); --force redoes it")
            return False
        raise ConfigError(
            f"{marker}: outputs were made with other settings ({', '.join(changed)}); "
            "rerun the stage with --force, or use another --tag"
        )
    marker.unlink(missing_ok=True)  # (every process of a multi-GPU stage)
    log(stage, f"started, writing to {out_dir}")
    start = time.time()
    summary = body() or {}
    ddp_barrier()  # every process of a multi-GPU stage finished before the marker says so
    if if_main_process():
        write_json_atomic(marker, {"settings": settings, "summary": summary, "semtts": __version__,
                                   "seconds": round(time.time() - start, 2)})
    log(stage, f"finished in {time.time() - start:.1f} s")
    return True


def changed_settings(recorded: dict, settings: dict, ignore: Collection[str] = ()) -> list[str]:
    """The keys whose value differs between a marker's ``recorded`` settings
    and ``settings`` (as :func:`comparable_settings` gives them), sorted;
    keys in ``ignore`` are left out.

    Example
    -------
    >>> changed_settings({"lr": 1, "nj": 2}, {"lr": 2, "nj": 4}, ignore=("nj",))
    ['lr']
    """
    keys = (set(recorded) | set(settings)) - set(ignore)
    return sorted(k for k in keys if recorded.get(k) != settings.get(k)
                  and not (_unset(recorded.get(k)) and _unset(settings.get(k))))


def _unset(value: Any) -> bool:
    """No value: null, an empty mapping, or a key a marker does not have (the same outputs)."""
    return value is None or value == {}
