"""Stage 1 in one function: corpus folder in, validated split manifests and a
report out.

:func:`prepare_manifests` checks the corpus layout, lists its utterances,
validates each one (in a process pool when ``nj > 1``), assigns splits, and
writes ``<out_dir>/<split>.json`` plus ``<out_dir>/report.json``: kept and
dropped counts per reason, per-split utterances / speakers / hours, every
dropped id with its reason, every corpus line the parser skipped (e.g. not
valid UTF-8) and every repeated utterance id (the first item is kept, the
later ones are dropped as ``duplicate_id``), each naming its file and line.
A short summary, with the skipped and repeated lines, goes to stdout. Too
few survivors (below ``min_keep_ratio``) stop the run with a :class:`~semtts.errors.DataError` after the report is
written, so the report says what went wrong.

Example
-------
>>> import tempfile, torch
>>> from pathlib import Path
>>> from semtts.audio import save_audio
>>> root = Path(tempfile.mkdtemp())
>>> lines = []
>>> for i in range(4):
...     save_audio(root / "wavs" / f"LJ{i}.wav", 0.3 * torch.sin(torch.arange(16000) / 7.0), 16000)
...     lines.append(f"LJ{i}|Text {i}.|Text number {i}.")
>>> _ = (root / "metadata.csv").write_text("\\n".join(lines + ["LJ9|Gone.|Gone."]) + "\\n")
>>> report = prepare_manifests("ljspeech", root, root / "exp", sample_rate=16000,
...     min_duration=0.5, max_duration=10.0, min_keep_ratio=0.5, n_valid=1, n_test=1,
...     heldout_speakers=[], seed=0, cleaner="english")  # doctest: +NORMALIZE_WHITESPACE
prepare ljspeech: kept 4 of 5 utterances (80.0%)
  dropped missing_audio: 1
  train: 2 utterances, 1 speakers, 0.00 h
  valid: 1 utterances, 1 speakers, 0.00 h
  test: 1 utterances, 1 speakers, 0.00 h
>>> report["dropped_items"], sorted(p.name for p in (root / "exp").glob("*.json"))
({'LJ9': 'missing_audio'}, ['report.json', 'test.json', 'train.json', 'valid.json'])
"""

import inspect
import json
import logging
import multiprocessing
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from semtts.data.corpora import DUPLICATE_ID, get_corpus
from semtts.data.manifest import write_json_atomic, write_manifest
from semtts.data.splits import SPLIT_ORDER, assign_splits
from semtts.data.validate import DROP_REASONS, validate_utterance
from semtts.errors import ConfigError, DataError, SemttsError

__all__ = ["CACHE_DIRNAME", "REPORT_NAME", "prepare_manifests"]

logger = logging.getLogger(__name__)

CACHE_DIRNAME = "audio_cache"
REPORT_NAME = "report.json"
# Skipped / repeated corpus lines printed in the summary (all are in the report).
_SHOWN_LINES = 20


def prepare_manifests(
    corpus: str,
    data_folder: str | Path,
    out_dir: str | Path,
    sample_rate: int,
    min_duration: float,
    max_duration: float,
    min_keep_ratio: float,
    n_valid: int,
    n_test: int,
    heldout_speakers: list[str],
    seed: int,
    cleaner: str,
    nj: int = 1,
    corpus_options: dict | None = None,
    cache_dir: str | Path | None = None,
) -> dict:
    """Validate a corpus and write its split manifests and report.

    Arguments
    ---------
    corpus : str
        A name of :data:`semtts.data.corpora.CORPORA`.
    data_folder : str or Path
        The corpus folder; manifests store paths under it as
        ``{data_root}/...``.
    out_dir : str or Path
        Where ``<split>.json`` and ``report.json`` are written (manifests of
        the standard splits left from an earlier run but not produced now
        are removed).
    sample_rate : int
        The sample rate of every manifest item (others are resampled).
    min_duration, max_duration : float
        Bounds on the utterance duration, in seconds.
    min_keep_ratio : float
        Smallest acceptable share of kept utterances, in [0, 1].
    n_valid, n_test : int
        Sizes of the seeded valid and test splits drawn from seen speakers.
    heldout_speakers : list of str
        Speakers whose utterances all go to ``test_unseen``.
    seed : int
        Seed of the split assignment.
    cleaner : str
        Text cleaner used to find unusable transcripts.
    nj : int
        Number of validation processes.
    corpus_options : dict, optional
        Keyword options of the corpus module's ``list_utterances``.
    cache_dir : str or Path, optional
        Where resampled / downmixed audio goes (``{cache_root}`` in the
        manifests); default ``<out_dir>/audio_cache``.

    Returns
    -------
    dict
        The report written to ``report.json``. ``total`` counts every item
        the corpus listed, repeated ids included, so ``kept`` plus the
        ``dropped`` counts is ``total``; ``dropped_items`` maps the ids
        dropped by validation to their reason, and ``duplicate_lines`` names
        where each repeated id was skipped (its first item may be kept).
    """
    if not 0.0 <= min_keep_ratio <= 1.0:
        raise ConfigError(f"min_keep_ratio must be in [0, 1] (got {min_keep_ratio})")
    if nj < 1:
        raise ConfigError(f"nj must be >= 1 (got {nj})")
    if not 0 <= min_duration < max_duration:
        raise ConfigError(f"need 0 <= min_duration < max_duration (got {min_duration} and {max_duration})")
    module = get_corpus(corpus)
    data_root = Path(data_folder).absolute()
    out_dir = Path(out_dir)
    cache_root = Path(cache_dir).absolute() if cache_dir is not None else (out_dir / CACHE_DIRNAME).absolute()
    if cache_root == data_root:
        raise ConfigError(f"cache_dir {cache_root} must not be the corpus folder")

    module.check(data_root)
    options = dict(corpus_options or {})
    try:
        inspect.signature(module.list_utterances).bind(data_root, **options)
    except TypeError as err:
        raise ConfigError(f"corpus_options {options} do not fit corpus '{corpus}' ({err})") from None
    with _CollectWarnings("semtts.data.corpora") as collected:
        raws = module.list_utterances(data_root, **options)
    skipped, duplicates = collected.messages, collected.duplicates
    raws = _drop_repeated_ids(raws, corpus, duplicates)

    for name in sorted({str(raw["split"]) for raw in raws if raw.get("split") is not None}):
        if not _names_a_manifest(name):
            raise ConfigError(f"corpus_options {options}: split name {name!r} cannot name a manifest file "
                              "(letters, digits, '_', '.', '-'; not 'report')")
    numeric = [spk for spk in heldout_speakers if not isinstance(spk, str)]  # YAML reads [19, 26] as numbers
    heldout_speakers = [str(spk) for spk in heldout_speakers]
    unknown = sorted(set(heldout_speakers) - {str(raw["spk"]) for raw in raws})
    if unknown:
        hint = " (ids written as numbers are read as numbers: quote one with leading zeros, e.g. ['0019'])"
        raise ConfigError(f"heldout_speakers not found in corpus '{corpus}': {', '.join(unknown)}"
                          + (hint if numeric else ""))

    jobs = [(raw, sample_rate, min_duration, max_duration, cache_root, cleaner, data_root) for raw in raws]
    if nj > 1 and len(jobs) > 1:
        results = _validate_in_processes(jobs, nj)
    else:
        results = [_validate_job(job) for job in jobs]

    kept, dropped = [], {}
    for raw, (item, reason) in zip(raws, results):
        if item is None:
            dropped[raw["utt_id"]] = reason
        else:
            kept.append({"utt_id": raw["utt_id"], "spk": raw["spk"], "split": raw.get("split"), "item": item})
    splits = assign_splits(kept, n_valid, n_test, heldout_speakers, seed)

    report = _report(corpus, data_root, cache_root, sample_rate, raws, kept, dropped, splits, skipped, duplicates)
    for name in (set(SPLIT_ORDER) | _earlier_splits(out_dir / REPORT_NAME)) - set(splits):
        (out_dir / f"{name}.json").unlink(missing_ok=True)  # a split of an earlier run (any name an option gave)
    write_json_atomic(out_dir / REPORT_NAME, report)
    _print_summary(report, out_dir / REPORT_NAME)

    n_total, n_kept = report["total"], len(kept)
    if n_total == 0:
        raise DataError(f"{data_root}: no utterances found for corpus '{corpus}' (see {out_dir / REPORT_NAME})")
    if n_kept < min_keep_ratio * n_total:
        raise DataError(
            f"{data_root}: only {n_kept} of {n_total} utterances survived validation "
            f"({n_kept / n_total:.1%} < min_keep_ratio {min_keep_ratio}); see {out_dir / REPORT_NAME}"
        )
    if "train" not in splits:
        raise DataError(f"{data_root}: no utterance is left for training (held out, or in the fixed splits "
                        f"{', '.join(sorted(splits))}); see {out_dir / REPORT_NAME}")
    for name, members in splits.items():
        write_manifest(out_dir / f"{name}.json", {m["utt_id"]: m["item"] for m in members})
    return report


def _earlier_splits(report: Path) -> set[str]:
    """The split names an earlier run's report lists (none when it has no readable report)."""
    try:
        splits = json.loads(report.read_text(encoding="utf-8")).get("splits", {})
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in splits if isinstance(name, str) and _names_a_manifest(name)}


def _names_a_manifest(name: str) -> bool:
    """Whether a split name can name its manifest ``<name>.json`` (letters, digits, '_', '.', '-'; not the report)."""
    return bool(re.fullmatch(r"\w[\w.-]*", name)) and name != REPORT_NAME.removesuffix(".json")


def _drop_repeated_ids(raws: list[dict], corpus: str, duplicates: list[str]) -> list[dict]:
    """Keep the first item of each utterance id. The corpus readers already
    do this, naming file and line; this catches a reader that does not, so
    that a repeated id never stops the run."""
    first: dict[str, int] = {}
    unique = []
    for index, raw in enumerate(raws, start=1):
        if raw["utt_id"] in first:
            message = (f"corpus '{corpus}' item {index}: skipped, utterance id '{raw['utt_id']}' appears "
                       f"twice in the corpus listing (first as item {first[raw['utt_id']]}, which is kept)")
            logger.warning("%s", message)
            duplicates.append(message)
            continue
        first[raw["utt_id"]] = index
        unique.append(raw)
    return unique


def _validate_job(job: tuple) -> tuple[dict | None, str | None]:
    """Validate one item; an unexpected error drops it as ``unreadable_audio``
    instead of stopping the run (configuration errors still stop it)."""
    raw = job[0]
    try:
        return validate_utterance(*job[:6], data_root=job[6])
    except SemttsError:
        raise
    except Exception as err:  # one bad file must never stop the run
        logger.warning(
            "%s (%s): dropped as unreadable_audio: %s: %s",
            raw.get("utt_id"),
            raw.get("path"),
            type(err).__name__,
            err,
        )
        return None, "unreadable_audio"


def _validate_in_processes(jobs: list[tuple], nj: int) -> list[tuple[dict | None, str | None]]:
    """:func:`_validate_job` over ``jobs`` in ``nj`` processes, in order. A
    process that dies (killed, out of memory, or a crash in an audio
    library) is a one-line :class:`DataError` naming the items its chunk held,
    where ``multiprocessing.Pool`` would wait for it forever."""
    chunk = max(1, len(jobs) // (nj * 8))
    chunks = [jobs[start:start + chunk] for start in range(0, len(jobs), chunk)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(nj, len(jobs)), mp_context=context, initializer=_init_worker) as pool:
        futures = [pool.submit(_validate_chunk, part) for part in chunks]
        try:
            results = [result for future in futures for result in future.result()]
        except BrokenProcessPool:  # every unfinished chunk gets it: the culprit is one of them
            unfinished = [f"{part[0][0]['utt_id']} .. {part[-1][0]['utt_id']}"
                          for part, future in zip(chunks, futures) if future.cancelled() or future.exception()]
            shown = ", ".join(unfinished[:3]) + (" ..." if len(unfinished) > 3 else "")
            raise DataError(f"a validation process died (killed, out of memory, or a crash reading a file) while "
                            f"checking one of: {shown}; rerun (resampled files are kept), or check those "
                            "files") from None
        except BaseException:  # Ctrl-C or an error: the chunks not started are dropped, not validated
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results


def _validate_chunk(jobs: list[tuple]) -> list[tuple[dict | None, str | None]]:
    """:func:`_validate_job` over a chunk of jobs (one task of a worker process)."""
    return [_validate_job(job) for job in jobs]


def _init_worker() -> None:
    """One torch thread per worker: the pool supplies the parallelism."""
    import torch

    torch.set_num_threads(1)


def _report(corpus, data_root, cache_root, sample_rate, raws, kept, dropped, splits, skipped, duplicates) -> dict:
    """The content of ``report.json``."""
    counts = Counter(dropped.values())
    counts[DUPLICATE_ID] += len(duplicates)
    split_stats = {}
    for name, members in splits.items():
        seconds = sum(m["item"]["duration"] for m in members)
        split_stats[name] = {
            "utterances": len(members),
            "speakers": len({m["spk"] for m in members}),
            "hours": round(seconds / 3600.0, 4),
        }
    return {
        "corpus": corpus,
        "data_root": str(data_root),
        "cache_root": str(cache_root),
        "sample_rate": sample_rate,
        "total": len(raws) + len(duplicates),
        "kept": len(kept),
        "dropped": {reason: counts.get(reason, 0) for reason in DROP_REASONS},
        "drop_reasons": DROP_REASONS,
        "splits": split_stats,
        "dropped_items": dropped,
        "skipped_lines": skipped,
        "duplicate_lines": duplicates,
    }


def _print_summary(report: dict, report_path: Path) -> None:
    """Kept N of M, one line per drop reason that occurred, the skipped and
    repeated corpus lines (at most ``_SHOWN_LINES`` of each), one line per
    split."""
    total, kept = report["total"], report["kept"]
    share = f" ({kept / total:.1%})" if total else ""
    print(f"prepare {report['corpus']}: kept {kept} of {total} utterances{share}")
    for reason, count in report["dropped"].items():
        if count:
            print(f"  dropped {reason}: {count}")
    for title, lines in (("corpus lines skipped by the parser", report["skipped_lines"]),
                         ("repeated utterance ids skipped", report["duplicate_lines"])):
        if lines:
            print(f"  {title}: {len(lines)}")
            for line in lines[:_SHOWN_LINES]:
                print(f"    {line}")
            if len(lines) > _SHOWN_LINES:
                print(f"    ... and {len(lines) - _SHOWN_LINES} more (see {report_path})")
    for name, stats in report["splits"].items():
        print(f"  {name}: {stats['utterances']} utterances, {stats['speakers']} speakers, {stats['hours']:.2f} h")


class _CollectWarnings(logging.Handler):
    """Context manager that gathers the warning messages of a logger tree
    (the corpus parsers' skipped lines) while still letting them through to
    any configured handler. Repeated ids (records with ``drop_reason``
    :data:`~semtts.data.corpora.DUPLICATE_ID`) go to ``duplicates``, every
    other warning to ``messages``."""

    def __init__(self, logger_name: str):
        super().__init__(level=logging.WARNING)
        self.logger = logging.getLogger(logger_name)
        self.messages: list[str] = []
        self.duplicates: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "drop_reason", None) == DUPLICATE_ID:
            self.duplicates.append(record.getMessage())
        else:
            self.messages.append(record.getMessage())

    def __enter__(self) -> "_CollectWarnings":
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
