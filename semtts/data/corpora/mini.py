"""The mini corpus: a small multi-speaker English corpus synthesised with
espeak-ng, so that the whole recipe runs on a CPU in minutes.

Each speaker is an espeak-ng voice variant with its own pitch and speaking
rate; each reads a seeded draw of sentences from ``mini_sentences.txt``
(written for semtts, one sentence a line). Generation is deterministic given
the seed and the espeak-ng version. On disk::

    <data_folder>/wavs/<spk>/<utt_id>.wav    22.05 kHz mono 16-bit PCM
    <data_folder>/metadata.csv               utt_id|spk|text, no header
    <data_folder>/.complete                  JSON settings, written last

A folder without ``.complete`` (or whose ``.complete`` records other
settings) is regenerated; a complete one with the same settings is reused.
:func:`generate` prints which it did, and why it regenerates (which settings
differ, or what is missing); :func:`regeneration_reason` tells beforehand.
The corpus folder is shared by every experiment that reads it, so stage 0
(:mod:`semtts.stages.check_corpus`) asks :func:`other_settings` first and
replaces a complete corpus made with other settings only with ``--force``;
stage 1 records :func:`generation_fingerprint` (the ``.complete`` marker), so
its outputs are not reused after the corpus was regenerated.

Example
-------
>>> plan = plan_corpus(seed=1234, n_speakers=6, utts_per_speaker=40)
>>> len(plan), plan[0]["utt_id"], plan[0]["spk"]
(240, 'spk0_0000', 'spk0')
>>> len({item["text"] for item in plan}) >= 200
True
>>> import tempfile
>>> folder = generate(Path(tempfile.mkdtemp()), n_speakers=1, utts_per_speaker=1)  # doctest: +ELLIPSIS
mini corpus: generating in ... (1 speakers x 1 utterances, 2 jobs)
mini corpus generated in ...: 1 utterances
>>> utt = list_utterances(folder)[0]
>>> utt["utt_id"], utt["spk"], audio_info(utt["path"]).samplerate
('spk0_0000', 'spk0', 22050)
"""

import hashlib
import logging
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from semtts.audio import audio_info, load_audio, resample, save_audio
from semtts.data.corpora import keep_first, read_listing
from semtts.data.manifest import read_record, write_json_atomic
from semtts.errors import ConfigError, DataError

__all__ = [
    "NAME",
    "DOWNLOAD_HINT",
    "DEFAULT_HELDOUT",
    "SAMPLE_RATE",
    "VOICES",
    "SENTENCES_FILE",
    "load_sentences",
    "plan_corpus",
    "generate",
    "regeneration_reason",
    "other_settings",
    "generation_fingerprint",
    "check",
    "list_utterances",
]

logger = logging.getLogger(__name__)

NAME = "mini"
DOWNLOAD_HINT = (
    "the mini corpus is not downloaded: stage 0 of recipes/mini/run.sh generates it "
    "with espeak-ng (install it with: sudo apt-get install -y espeak-ng)"
)
DEFAULT_HELDOUT = ["spk4", "spk5"]
SAMPLE_RATE = 22050
GENERATOR_VERSION = 1
SENTENCES_FILE = Path(__file__).with_name("mini_sentences.txt")
MIN_WORDS, MAX_WORDS = 5, 15

# One speaker per entry: (espeak-ng voice+variant, pitch 0-99, rate in words/min).
# Accents, variants, pitch and rate all differ so speakers are easy to tell apart.
VOICES: list[tuple[str, int, int]] = [
    ("en-us+m3", 35, 165),
    ("en+f2", 65, 175),
    ("en-gb+m1", 45, 150),
    ("en-us+f4", 75, 185),
    ("en-gb-scotland+m7", 25, 160),
    ("en-029+f3", 55, 170),
    ("en-gb-x-rp+m5", 40, 180),
    ("en-us-nyc+f1", 60, 155),
]

_MARKER = ".complete"
_METADATA = "metadata.csv"


def load_sentences(path: str | Path = SENTENCES_FILE) -> list[str]:
    """Read and check the sentence pool (one sentence a line).

    Arguments
    ---------
    path : str or Path
        The sentence file; by default the one shipped with semtts.

    Returns
    -------
    list of str
        The sentences in file order (blank lines skipped).

    Raises
    ------
    DataError
        When a sentence is repeated, contains ``|`` or has fewer than 5 or
        more than 15 words.

    Example
    -------
    >>> sentences = load_sentences()
    >>> len(sentences) >= 240
    True
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: sentence file not found")
    sentences, seen = [], set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        n_words = len(text.split())
        if not MIN_WORDS <= n_words <= MAX_WORDS:
            raise DataError(f"{path}:{lineno}: {n_words} words, expected {MIN_WORDS} to {MAX_WORDS}")
        if "|" in text:
            raise DataError(f"{path}:{lineno}: '|' is the metadata separator and cannot appear in a sentence")
        if text in seen:
            raise DataError(f"{path}:{lineno}: repeated sentence '{text}'")
        seen.add(text)
        sentences.append(text)
    return sentences


def plan_corpus(
    seed: int = 1234,
    n_speakers: int = 6,
    utts_per_speaker: int = 40,
    sentences: list[str] | None = None,
) -> list[dict]:
    """Decide, without synthesising anything, who reads what.

    Each speaker reads ``utts_per_speaker`` different sentences. Sentences
    read by fewer speakers so far are drawn first (ties broken by the seeded
    draw), so the speakers together cover as much of the pool as possible:
    6 x 40 draws from a pool of >= 240 sentences never repeat a sentence.

    Arguments
    ---------
    seed : int
        The seed of the draw.
    n_speakers : int
        Number of speakers, at most ``len(VOICES)``.
    utts_per_speaker : int
        Utterances per speaker, at most the pool size.
    sentences : list of str, optional
        The pool; by default :func:`load_sentences`.

    Returns
    -------
    list of dict
        One item per utterance, speaker by speaker: ``utt_id`` (``spk0_0000``),
        ``spk``, ``text``, ``voice``, ``pitch`` and ``rate``.

    Example
    -------
    >>> plan = plan_corpus(seed=1, n_speakers=2, utts_per_speaker=3)
    >>> [item["utt_id"] for item in plan]
    ['spk0_0000', 'spk0_0001', 'spk0_0002', 'spk1_0000', 'spk1_0001', 'spk1_0002']
    >>> plan[3]["voice"], plan[3]["pitch"], plan[3]["rate"]
    ('en+f2', 65, 175)
    """
    pool = load_sentences() if sentences is None else list(sentences)
    if not 1 <= n_speakers <= len(VOICES):
        raise ConfigError(f"n_speakers={n_speakers}: the mini corpus has 1 to {len(VOICES)} voices")
    if not 1 <= utts_per_speaker <= len(pool):
        raise ConfigError(
            f"utts_per_speaker={utts_per_speaker}: must be 1 to {len(pool)} (the sentence pool size)"
        )
    rng = random.Random(seed)
    uses = [0] * len(pool)
    plan = []
    for s in range(n_speakers):
        keys = [rng.random() for _ in pool]
        order = sorted(range(len(pool)), key=lambda i: (uses[i], keys[i]))[:utts_per_speaker]
        voice, pitch, rate = VOICES[s]
        spk = f"spk{s}"
        for n, index in enumerate(order):
            uses[index] += 1
            plan.append(
                {"utt_id": f"{spk}_{n:04d}", "spk": spk, "text": pool[index],
                 "voice": voice, "pitch": pitch, "rate": rate}
            )
    return plan


def generate(
    data_folder: Path,
    seed: int = 1234,
    n_speakers: int = 6,
    utts_per_speaker: int = 40,
    nj: int = 2,
) -> Path:
    """Synthesise the mini corpus into ``data_folder`` (idempotent).

    A complete corpus with the same settings is reused at once; an
    incomplete one, or one made with other settings, has its ``wavs/`` and
    ``metadata.csv`` removed and is generated again. One line on stdout
    (also logged at INFO) says which: ``reused (already there ...)``,
    ``generating`` (a new folder) or ``regenerating`` with the reason of
    :func:`regeneration_reason` (e.g. ``settings changed: seed 99 -> 7``),
    then ``generated`` when done.

    Arguments
    ---------
    data_folder : Path
        Where the corpus lives (created if needed).
    seed : int
        Seed of the sentence draw (see :func:`plan_corpus`).
    n_speakers : int
        Number of speakers (``spk0``, ``spk1``, ...).
    utts_per_speaker : int
        Utterances per speaker.
    nj : int
        Number of espeak-ng processes run in parallel.

    Returns
    -------
    Path
        ``data_folder``.

    Raises
    ------
    DataError
        When espeak-ng is missing or fails on an utterance.
    ConfigError
        When a setting is out of range.

    Example
    -------
    >>> import tempfile
    >>> folder = generate(Path(tempfile.mkdtemp()), seed=7, n_speakers=2, utts_per_speaker=1)  # doctest: +ELLIPSIS
    mini corpus: generating in ... (2 speakers x 1 utterances, 2 jobs)
    mini corpus generated in ...: 2 utterances
    >>> sorted(p.name for p in folder.glob("wavs/*/*.wav"))
    ['spk0_0000.wav', 'spk1_0000.wav']
    >>> generate(folder, seed=7, n_speakers=2, utts_per_speaker=1) == folder  # doctest: +ELLIPSIS
    mini corpus reused (already there with the same settings; generation skipped): ...
    True
    """
    data_folder = Path(data_folder)
    if nj < 1:
        raise ConfigError(f"nj={nj}: need at least one job")
    sentences = load_sentences()
    plan = plan_corpus(seed, n_speakers, utts_per_speaker, sentences)
    settings = _settings(seed, n_speakers, utts_per_speaker, sentences)
    marker = data_folder / _MARKER
    reason = _regeneration_reason(data_folder, settings, plan)
    if reason is None:
        _say(f"mini corpus reused (already there with the same settings; generation skipped): {data_folder}")
        return data_folder

    espeak = _espeak_binary()
    size = f"{n_speakers} speakers x {utts_per_speaker} utterances, {nj} jobs"
    if reason == _NOTHING_THERE:
        _say(f"mini corpus: generating in {data_folder} ({size})")
    else:
        _say(f"mini corpus: regenerating in {data_folder} ({size}) because {reason}; "
             f"removing its wavs/ and {_METADATA} first")
    marker.unlink(missing_ok=True)
    shutil.rmtree(data_folder / "wavs", ignore_errors=True)
    (data_folder / _METADATA).unlink(missing_ok=True)
    for spk in sorted({item["spk"] for item in plan}):
        (data_folder / "wavs" / spk).mkdir(parents=True, exist_ok=True)

    def synth(item: dict) -> None:
        _synthesise(espeak, item, _wav_path(data_folder, item))

    with ThreadPoolExecutor(max_workers=nj) as pool:
        list(pool.map(synth, plan))  # list() re-raises the first failure

    tmp = data_folder / f".{_METADATA}.tmp{os.getpid()}"
    tmp.write_text("".join(f"{i['utt_id']}|{i['spk']}|{i['text']}\n" for i in plan), encoding="utf-8")
    os.replace(tmp, data_folder / _METADATA)
    version = subprocess.run([espeak, "--version"], capture_output=True, text=True).stdout.strip()
    write_json_atomic(marker, {**settings, "espeak_ng": version})
    _say(f"mini corpus generated in {data_folder}: {len(plan)} utterances")
    return data_folder


def regeneration_reason(
    data_folder: Path,
    seed: int = 1234,
    n_speakers: int = 6,
    utts_per_speaker: int = 40,
) -> str | None:
    """Say why :func:`generate` would (re)generate the corpus, without
    touching it.

    Arguments
    ---------
    data_folder : Path
        The corpus folder.
    seed, n_speakers, utts_per_speaker : int
        The settings :func:`generate` would be called with.

    Returns
    -------
    str or None
        None when a complete corpus with these settings is there (it would
        be reused); else the reason, e.g. ``"there is no mini corpus there
        yet"`` or ``"settings changed: seed 99 -> 7, n_speakers 3 -> 2"``.

    Example
    -------
    >>> import tempfile
    >>> regeneration_reason(Path(tempfile.mkdtemp()))
    'there is no mini corpus there yet'
    """
    sentences = load_sentences()
    plan = plan_corpus(seed, n_speakers, utts_per_speaker, sentences)
    return _regeneration_reason(Path(data_folder), _settings(seed, n_speakers, utts_per_speaker, sentences), plan)


def other_settings(
    data_folder: Path,
    seed: int = 1234,
    n_speakers: int = 6,
    utts_per_speaker: int = 40,
) -> list[str]:
    """The settings that differ between these and those a corpus in
    ``data_folder`` was completely generated with (its ``.complete``
    marker), without touching it.

    Arguments
    ---------
    data_folder : Path
        The corpus folder.
    seed, n_speakers, utts_per_speaker : int
        The settings :func:`generate` would be called with.

    Returns
    -------
    list of str
        E.g. ``["seed 1234 -> 7"]``; empty when the folder holds no complete
        corpus (nothing there, an unfinished generation, an unreadable
        marker) or one generated with these settings.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_json_atomic(folder / ".complete", _settings(1, 2, 3, load_sentences()))
    >>> other_settings(folder, seed=7, n_speakers=2, utts_per_speaker=3)
    ['seed 1 -> 7']
    """
    recorded = generation_fingerprint(data_folder)
    if recorded is None:
        return []
    return _changed_settings(recorded, _settings(seed, n_speakers, utts_per_speaker, load_sentences()))


def generation_fingerprint(data_folder: Path) -> dict | None:
    """What the corpus in ``data_folder`` was generated with: its
    ``.complete`` marker (settings and espeak-ng version), or None when
    there is no readable one.

    Arguments
    ---------
    data_folder : Path
        The corpus folder.

    Returns
    -------
    dict or None

    Example
    -------
    >>> import tempfile
    >>> generation_fingerprint(Path(tempfile.mkdtemp())) is None
    True
    """
    marker = Path(data_folder) / _MARKER
    return read_record(marker) if marker.is_file() else None


def check(data_folder: Path) -> None:
    """Raise when ``data_folder`` does not hold a complete mini corpus.

    Arguments
    ---------
    data_folder : Path
        The corpus folder.

    Raises
    ------
    DataError
        Naming the folder and explaining how to generate the corpus.

    Example
    -------
    >>> import tempfile
    >>> try:
    ...     check(Path(tempfile.mkdtemp()))
    ... except DataError as err:
    ...     print("apt-get install -y espeak-ng" in str(err))
    True
    """
    data_folder = Path(data_folder)
    if not (data_folder / _MARKER).is_file():
        raise DataError(f"{data_folder}: no complete mini corpus (missing {_MARKER}); {DOWNLOAD_HINT}")
    if not (data_folder / _METADATA).is_file():
        raise DataError(f"{data_folder}: {_METADATA} is missing; delete {_MARKER} and rerun stage 0")


def list_utterances(data_folder: Path, **options) -> list[dict]:
    """List the corpus utterances from ``metadata.csv``.

    Arguments
    ---------
    data_folder : Path
        The corpus folder (checked with :func:`check`).
    **options
        The mini corpus takes one option, ``speakers`` (list of str): keep
        only these speakers (all by default). An unknown speaker or option
        is a :class:`ConfigError`.

    Returns
    -------
    list of dict
        ``{"utt_id", "path" (absolute), "text", "spk"}`` in file order; a
        malformed or non-UTF-8 line, or a repeated id (the first is kept), is
        skipped with a warning naming the line.

    Example
    -------
    >>> import tempfile
    >>> folder = generate(Path(tempfile.mkdtemp()), n_speakers=2, utts_per_speaker=1)  # doctest: +ELLIPSIS
    mini corpus: generating in ...
    mini corpus generated in ...
    >>> [u["utt_id"] for u in list_utterances(folder, speakers=["spk1"])]
    ['spk1_0000']
    """
    unknown_options = sorted(set(options) - {"speakers"})
    if unknown_options:
        raise ConfigError(f"mini corpus: unknown option(s) {unknown_options}; the only option is 'speakers'")
    speakers = options.get("speakers")
    check(data_folder)
    root = Path(data_folder).resolve()
    csv_path = root / _METADATA
    utterances = []
    seen: dict[str, str] = {}
    for lineno, line in read_listing(csv_path, logger):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 3 or not all(fields):
            logger.warning("%s:%d: skipped, expected 'utt_id|spk|text': %r", csv_path, lineno, line[:80])
            continue
        utt_id, spk, text = fields
        if not keep_first(seen, utt_id, f"{csv_path}:{lineno}", logger):
            continue
        utterances.append({"utt_id": utt_id, "path": str(root / "wavs" / spk / f"{utt_id}.wav"),
                           "text": text, "spk": spk})
    if speakers is not None:
        known = {u["spk"] for u in utterances}
        unknown = sorted(set(speakers) - known)
        if unknown:
            raise ConfigError(f"{csv_path}: unknown speakers {unknown} (the corpus has {sorted(known)})")
        utterances = [u for u in utterances if u["spk"] in set(speakers)]
    return utterances


def _settings(seed: int, n_speakers: int, utts_per_speaker: int, sentences: list[str]) -> dict:
    """The settings recorded in ``.complete``; a change triggers regeneration."""
    speakers = {f"spk{s}": {"voice": v, "pitch": p, "rate": r}
                for s, (v, p, r) in enumerate(VOICES[:n_speakers])}
    pool_hash = hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_speakers": n_speakers,
        "utts_per_speaker": utts_per_speaker,
        "speakers": speakers,
        "counts": {spk: utts_per_speaker for spk in speakers},
        "n_utterances": n_speakers * utts_per_speaker,
        "sample_rate": SAMPLE_RATE,
        "sentences_sha256": pool_hash,
    }


_NOTHING_THERE = "there is no mini corpus there yet"
# Settings that follow from n_speakers and utts_per_speaker: not named again
# when those changed.
_DERIVED = ("speakers", "counts", "n_utterances")


def _regeneration_reason(data_folder: Path, settings: dict, plan: list[dict]) -> str | None:
    """None when ``.complete`` records ``settings`` and every file is there;
    else why the corpus must be generated."""
    marker = data_folder / _MARKER
    if not marker.is_file():
        if not (data_folder / "wavs").exists() and not (data_folder / _METADATA).exists():
            return _NOTHING_THERE
        return f"it is incomplete (no {_MARKER} marker: an earlier generation did not finish)"
    recorded = generation_fingerprint(data_folder)
    if recorded is None:
        return f"its {_MARKER} marker is not a JSON object"
    changed = _changed_settings(recorded, settings)
    if changed:
        return "settings changed: " + ", ".join(changed)
    if not (data_folder / _METADATA).is_file():
        return f"its {_METADATA} is missing"
    missing = [_wav_path(data_folder, item) for item in plan if not _wav_path(data_folder, item).is_file()]
    if missing:
        return f"{len(missing)} of its {len(plan)} wavs are missing (e.g. {missing[0].relative_to(data_folder)})"
    return None


def _changed_settings(recorded: dict, settings: dict) -> list[str]:
    """``["seed 99 -> 7", ...]``: the settings whose recorded value differs."""
    changed = [key for key, value in settings.items() if recorded.get(key) != value]
    sizes_changed = bool({"n_speakers", "utts_per_speaker"} & set(changed))
    described = []
    for key in changed:
        if key in _DERIVED and sizes_changed:
            continue
        if key == "sentences_sha256":
            described.append(f"the sentence pool ({SENTENCES_FILE.name}) differs")
        elif key == "speakers":
            described.append("the speaker voices (VOICES) differ")
        elif isinstance(settings[key], dict):
            described.append(f"{key} differ")
        else:
            old = recorded.get(key, "(not recorded)")
            described.append(f"{key} {old} -> {settings[key]}")
    return described


def _say(message: str) -> None:
    """Tell the user (stdout, as stage scripts do) and the log."""
    print(message, flush=True)
    logger.info("%s", message)


def _espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise DataError("espeak-ng not found on PATH: it generates the mini corpus; "
                        "install it with: sudo apt-get install -y espeak-ng")
    return path


def _wav_path(data_folder: Path, item: dict) -> Path:
    return data_folder / "wavs" / item["spk"] / f"{item['utt_id']}.wav"


def _synthesise(espeak: str, item: dict, wav_path: Path) -> None:
    """Run one espeak-ng process; the text goes through stdin, never a shell."""
    cmd = [espeak, "-w", str(wav_path), "-v", item["voice"], "-p", str(item["pitch"]),
           "-s", str(item["rate"]), "-b", "1", "--stdin"]
    result = subprocess.run(cmd, input=item["text"].encode("utf-8"), capture_output=True)
    if result.returncode != 0 or not wav_path.is_file():
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DataError(f"{wav_path}: espeak-ng failed on {item['utt_id']} (voice {item['voice']}): "
                        f"{message[-1] if message else 'no output'}")
    info = audio_info(wav_path)
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.subtype != "PCM_16":
        audio, sr = load_audio(wav_path, mono=True)
        save_audio(wav_path, resample(audio, sr, SAMPLE_RATE), SAMPLE_RATE)
