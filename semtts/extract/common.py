"""What the feature-extraction stages share: sharding, per-utterance feature
files written atomically (so a killed job resumes where it stopped), and the
metadata that training checks against its hparams before the first step.

Example
-------
>>> import tempfile, pathlib, numpy as np
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> parse_shard("2/3"), shard_items(["a", "b", "c", "d", "e"], 2, 3)
((2, 3), ['b', 'e'])
>>> save_array_atomic(feature_path(root, "spk1/utt 1"), np.ones(3, dtype=np.float16))
>>> sorted(p.name for p in (root / "feats").iterdir())
['spk1%2Futt 1.npy']
>>> write_metadata(root / "meta.json", {"model": "campplus", "dim": 192})
>>> check_metadata(root / "meta.json", {"dim": 512}, "speaker embeddings")
Traceback (most recent call last):
...
semtts.errors.ConfigError: speaker embeddings in ...meta.json: dim is 192 there but 512 in the hparams; re-extract them (--force) or fix the hparams
"""

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import numpy as np

from semtts import __version__
from semtts.data.manifest import read_manifest, write_json_atomic
from semtts.durable import write_atomically
from semtts.errors import ConfigError, DataError

__all__ = [
    "open_extracted",
    "pop_option",
    "collect_items",
    "run_shards",
    "parse_shard",
    "shard_items",
    "feature_path",
    "SKIP_SUFFIX",
    "UNREADABLE_SUFFIX",
    "RETRIED_REASONS",
    "record_reason",
    "skip_reason",
    "unreadable_reason",
    "pending_utterances",
    "save_array_atomic",
    "load_array",
    "load_or_discard",
    "write_metadata",
    "read_metadata",
    "check_metadata",
    "file_sha256",
]

logger = logging.getLogger(__name__)

SKIP_SUFFIX = ".skipped.json"  # feats/<id>.skipped.json: skipped for good, with the reason
UNREADABLE_SUFFIX = ".unreadable.json"  # the audio could not be read last time: still pending
# Reasons that are never a skip for good (the file may be back: a network file system, a copy in progress).
RETRIED_REASONS = ("audio file not found", "unreadable audio")


def pop_option(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """Remove ``flag VALUE`` or ``flag=VALUE`` from a command line (the
    extraction stages take ``--shard i/n`` besides the hparams overrides).

    Arguments
    ---------
    argv : list of str
        The arguments.
    flag : str
        E.g. ``"--shard"``.

    Returns
    -------
    value : str or None
        The (last) value of the flag, None if absent.
    rest : list of str
        The other arguments.

    Example
    -------
    >>> pop_option(["h.yaml", "--shard", "2/4", "--force"], "--shard")
    ('2/4', ['h.yaml', '--force'])
    """
    rest, value, i = [], None, 0
    while i < len(argv):
        if argv[i] == flag:
            if i + 1 >= len(argv):
                raise ConfigError(f"{flag} needs a value")
            value = argv[i + 1]
            i += 2
            continue
        if argv[i].startswith(flag + "="):
            value = argv[i].split("=", 1)[1]
        else:
            rest.append(argv[i])
        i += 1
    return value, rest


def collect_items(tokens_dir: str | Path) -> dict[str, dict]:
    """Every utterance of every split manifest in ``tokens_dir`` (stage 2).

    Arguments
    ---------
    tokens_dir : str or Path
        The folder with ``<split>.json``.

    Returns
    -------
    dict
        ``{utt_id: item}`` sorted by id; an id in two splits must name the
        same audio.
    """
    tokens_dir = Path(tokens_dir)
    if not (tokens_dir / "done").is_file():
        raise DataError(f"{tokens_dir}: stage 2 (text frontend) has not finished")
    items: dict[str, dict] = {}
    for path in sorted(p for p in tokens_dir.glob("*.json") if p.stem != "report"):
        for utt_id, item in read_manifest(path).items():
            if utt_id in items and items[utt_id]["wav"] != item["wav"]:
                raise DataError(f"{path}: utterance '{utt_id}' is in another split with other audio")
            items[utt_id] = item
    if not items:
        raise DataError(f"{tokens_dir}: the manifests hold no utterance")
    return dict(sorted(items.items()))


def run_shards(module: str, argv: list[str], nj: int, what: str) -> None:
    """Run ``nj`` subprocesses ``python -m module ARGV --shard i/nj`` and wait.

    Arguments
    ---------
    module : str
        The stage module, e.g. ``"semtts.stages.speaker_embeddings"``.
    argv : list of str
        Its arguments, without ``--shard`` or ``--force``.
    nj : int
        Number of shards.
    what : str
        What they extract, for the error message.
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nj)))
    procs = [
        subprocess.Popen([sys.executable, "-m", module, *argv, "--shard", f"{k}/{nj}"], env=env)
        for k in range(1, nj + 1)
    ]
    codes = [proc.wait() for proc in procs]
    failed = [f"{k}/{nj} (exit {code})" for k, code in enumerate(codes, 1) if code != 0]
    if failed:
        raise DataError(f"{what}: shard {', '.join(failed)} failed; see the errors above (a rerun resumes)")


def parse_shard(shard: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (1-based, as Kaldi's ``JOB``) into ``(i, n)``.

    Arguments
    ---------
    shard : str
        E.g. ``"1/4"``.

    Returns
    -------
    tuple of int
        ``(i, n)`` with ``1 <= i <= n``.
    """
    try:
        i, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 1/4), got {shard!r}") from None
    if not 1 <= i <= n:
        raise ConfigError(f"--shard {shard}: need 1 <= i <= n")
    return i, n


def shard_items(items: list[str], i: int, n: int) -> list[str]:
    """The ``i``-th of ``n`` interleaved shards of the sorted ``items``.

    Arguments
    ---------
    items : list of str
        Utterance ids.
    i : int
        The shard, 1-based.
    n : int
        The number of shards.

    Returns
    -------
    list of str
        Every ``n``-th id of the sorted list, starting at the ``i``-th.
    """
    return sorted(items)[i - 1 :: n]


def feature_path(root: str | Path, utt_id: str, suffix: str = ".npy") -> Path:
    """Where the feature file of one utterance lives: ``root/feats/<id>.npy``
    (the id percent-encoded, so any id is a safe file name)."""
    return Path(root) / "feats" / (quote(utt_id, safe=" -_.") + suffix)


def record_reason(root: str | Path, utt_id: str, suffix: str) -> str | None:
    """The reason in an utterance's skip record or note (``feats/<id><suffix>``).

    Arguments
    ---------
    root : str or Path
        The stage's output folder.
    utt_id : str
        The utterance.
    suffix : str
        :data:`SKIP_SUFFIX` or :data:`UNREADABLE_SUFFIX`.

    Returns
    -------
    str or None
        None when there is no such file or it cannot be read.
    """
    try:
        record = json.loads(feature_path(root, utt_id, suffix).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return str(record.get("reason") or "skipped") if isinstance(record, dict) else None


def skip_reason(root: str | Path, utt_id: str) -> str | None:
    """Why an utterance is skipped for good (too short, non-finite); None if it
    is not. A skip record of a missing or unreadable file (older semtts wrote
    them) does not count: a rerun tries the file again."""
    reason = record_reason(root, utt_id, SKIP_SUFFIX)
    return None if reason is None or reason.startswith(RETRIED_REASONS) else reason


def unreadable_reason(root: str | Path, utt_id: str) -> str | None:
    """Why the audio of a pending utterance could not be read when last tried;
    None if it was not tried (or was read)."""
    reason = record_reason(root, utt_id, UNREADABLE_SUFFIX) or record_reason(root, utt_id, SKIP_SUFFIX)
    return reason if reason is not None and reason.startswith(RETRIED_REASONS) else None


def pending_utterances(utt_ids: list[str], root: str | Path, untried: bool = False) -> list[str]:
    """The ids with neither a feature file nor a skip record, sorted: a missing
    or unreadable audio file is never skipped for good, so it stays pending and
    a rerun tries it again.

    Arguments
    ---------
    utt_ids : list of str
        The utterances.
    root : str or Path
        The stage's output folder.
    untried : bool
        Leave out those whose audio could not be read when last tried (a
        merge need not wait for them).

    Returns
    -------
    list of str
    """
    pending = (u for u in utt_ids if not feature_path(root, u).is_file() and skip_reason(root, u) is None)
    return sorted(u for u in pending if not (untried and unreadable_reason(root, u)))


def save_array_atomic(path: str | Path, array: np.ndarray) -> None:
    """Save a ``.npy`` file through a temporary name and a rename; the data
    are flushed to disk before the rename, so after a crash the name holds
    the whole array or nothing (never an empty or truncated file; a missing
    one is recomputed, so the folder is not flushed after each).

    Arguments
    ---------
    path : str or Path
        The destination.
    array : np.ndarray
        The data.
    """
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save adds no suffix
            np.save(f, array)

    write_atomically(path, write, sync_folder=False)


def load_array(path: str | Path) -> np.ndarray:
    """Load a feature file; a missing or corrupt one is a :class:`DataError`."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # an empty file is an EOFError
        raise DataError(f"{path}: cannot read the feature file ({err}); re-extract it") from None


def load_or_discard(path: str | Path, shape: tuple[int, ...] | None, again: str) -> np.ndarray | None:
    """Load a per-utterance feature file; one that cannot be read, has another
    shape than ``shape`` or holds non-finite values (e.g. cut short by a crash)
    is removed, named in a warning, and None is returned.

    Arguments
    ---------
    path : str or Path
        The ``.npy`` file.
    shape : tuple of int or None
        The expected shape (None: any).
    again : str
        What makes the file again, for the warning.

    Returns
    -------
    np.ndarray or None
        The array, or None when the file was bad (and is gone).
    """
    try:
        array = load_array(path)
        why = "" if shape is None or array.shape == tuple(shape) else f"shape {array.shape}, expected {tuple(shape)}"
        why = why or ("" if np.isfinite(array).all() else "non-finite values")
    except DataError as err:
        why = str(err).split(": ", 1)[-1].split("; re-extract")[0]
    if not why:
        return array
    logger.warning("%s: %s; removed (%s)", path, why, again)
    Path(path).unlink(missing_ok=True)
    return None


def write_metadata(path: str | Path, meta: dict[str, Any]) -> None:
    """Write feature metadata (plus the semtts version) atomically."""
    write_json_atomic(path, {**meta, "semtts_version": __version__})


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read feature metadata; missing is a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: feature metadata not found (run the extraction stage first)")
    return json.loads(path.read_text())


def check_metadata(path: str | Path, expected: dict[str, Any], what: str) -> dict[str, Any]:
    """Compare stored feature metadata with what the hparams expect.

    Arguments
    ---------
    path : str or Path
        The ``meta.json`` of the features.
    expected : dict
        The values the hparams imply, e.g. ``{"dim": 192, "sha256": ...}``.
    what : str
        What the features are, for the message.

    Returns
    -------
    dict
        The stored metadata.

    Raises
    ------
    ConfigError
        On the first mismatch, naming both sides.
    """
    meta = read_metadata(path)
    for key, value in expected.items():
        if meta.get(key) != value:
            raise ConfigError(
                f"{what} in {path}: {key} is {meta.get(key)!r} there but {value!r} in the hparams; "
                "re-extract them (--force) or fix the hparams"
            )
    return meta


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (checkpoint identity in the metadata)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_extracted(
    folder: str | Path, hp: dict, keys: tuple[str, ...], expected: Callable[[dict], dict], what: str, not_run: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Open the output of an extraction stage for training: it must be
    finished, the hparams must hold the extractor's settings, and its
    ``meta.json`` must agree with them.

    Arguments
    ---------
    folder : str or Path
        The stage's output folder (``spk_emb/``, ``teacher/``).
    hp : dict
        The hparams.
    keys : tuple of str
        The extractor's hparams keys the check needs.
    expected : callable
        ``expected(hp)`` gives the metadata the hparams imply.
    what : str
        What the features are, for the messages.
    not_run : str
        What to say when the stage has not finished.

    Returns
    -------
    meta : dict
        The stored metadata.
    skipped : dict
        ``{utt_id: reason}`` of the utterances the stage skipped.
    """
    folder = Path(folder)
    if not (folder / "done").is_file():
        raise DataError(f"{folder}: {not_run}")
    missing = [key for key in keys if key not in hp]
    if missing:
        raise ConfigError(f"{what}: the hparams lack {', '.join(missing)} (the extractor's settings, "
                          "in the recipe's corpus.yaml)")
    meta = check_metadata(folder / "meta.json", expected(hp), what)
    report = folder / "report.json"
    skipped = json.loads(report.read_text()).get("skipped", {}) if report.is_file() else {}
    return meta, skipped
