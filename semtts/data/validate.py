"""Utterance validation: one raw corpus item in, a manifest item or a drop
reason out.

Every reason an utterance can be dropped is listed, with its explanation, in
:data:`DROP_REASONS`. Two problems are fixed instead of dropped: audio at the
wrong sample rate is resampled, and multi-channel audio is downmixed; the
fixed audio is written once as 16-bit wav under a cache folder and reused on
a rerun. Manifest paths keep the folder as a placeholder (``{data_root}``
for corpus files, ``{cache_root}`` for cached ones), so both folders can move;
:func:`semtts.data.manifest.resolve_audio_path` puts the real folders back.

The text is only checked here (is anything left that the frontend can read
after cleaning?); the manifest stores the original transcript.

Example
-------
>>> import tempfile, torch
>>> from pathlib import Path
>>> from semtts.audio import save_audio
>>> root = Path(tempfile.mkdtemp())
>>> save_audio(root / "wavs" / "a.wav", 0.5 * torch.sin(torch.arange(32000) / 8.0), 16000)
>>> raw = {"utt_id": "a", "path": str(root / "wavs" / "a.wav"), "text": "Hello.", "spk": "s1"}
>>> item, reason = validate_utterance(raw, 16000, 0.5, 20.0, root / "cache", "basic", data_root=root)
>>> item["wav"], item["duration"], item["sr"], reason
('{data_root}/wavs/a.wav', 2.0, 16000, None)
>>> validate_utterance(raw, 16000, 3.0, 20.0, root / "cache", "basic", data_root=root)
(None, 'too_short')
"""

import glob
import json
import os
from pathlib import Path

import torch

from semtts.audio import audio_info, declared_frames, load_audio, resample, save_audio
from semtts.audio_formats import AUDIO_SUFFIXES
from semtts.data.manifest import CACHE_ROOT, DATA_ROOT, write_json_atomic
from semtts.errors import ConfigError, DataError, SemttsError

__all__ = [
    "DROP_REASONS",
    "validate_utterance",
]

DROP_REASONS = {
    "missing_audio": "the audio file named by the corpus does not exist",
    "unreadable_audio": "the audio file cannot be opened or decoded (not audio, corrupt header, "
    "or an unexpected decoder error)",
    "truncated_audio": "the header promises more samples than the file holds (an interrupted "
    "download or copy)",
    "empty_audio": "the audio has no samples, or every sample is silent (peak below one "
    "16-bit step)",
    "too_short": "the audio is shorter than min_duration seconds",
    "too_long": "the audio is longer than max_duration seconds",
    "nonfinite_samples": "the audio holds NaN or infinite samples",
    "empty_text": "the transcript is empty or only whitespace",
    "unusable_text": "nothing the text frontend can read (letters, digits or characters) is "
    "left after cleaning, e.g. only punctuation or emoji",
    "duplicate_id": "an earlier line or file of the corpus already lists this utterance id; the "
    "first is kept and this one skipped (set by the corpus reader, not by validate_utterance)",
}


# Peak amplitude under which a file counts as silent: less than one step of
# 16-bit PCM.
_SILENCE_PEAK = 1.0 / 32768.0

# Raw fields that become manifest fields under another name, or that are
# handled by the split assignment; every other raw field is copied as is.
_RAW_ONLY_FIELDS = ("utt_id", "path", "text", "spk", "split")


def validate_utterance(
    raw: dict,
    sample_rate: int,
    min_duration: float,
    max_duration: float,
    cache_dir: str | Path,
    cleaner: str,
    data_root: str | Path | None = None,
) -> tuple[dict | None, str | None]:
    """Check one raw corpus item and turn it into a manifest item.

    Checks run cheapest first: audio present, transcript non-empty and
    usable after cleaning, header readable, length within bounds, samples
    decodable, complete, finite and not silent.

    Arguments
    ---------
    raw : dict
        ``{"utt_id", "path" (absolute audio path), "text", "spk"}`` plus
        optional fields (``"split"`` is left to the split assignment; any
        other, e.g. ``"pinyin"``, is copied into the manifest item).
    sample_rate : int
        The sample rate every manifest item must have; other rates are
        resampled into ``cache_dir``.
    min_duration : float
        Shortest kept utterance, in seconds.
    max_duration : float
        Longest kept utterance, in seconds.
    cache_dir : str or Path
        Where resampled or downmixed audio is written (16-bit wav, or float
        when it passes full scale after resampling; same relative path as in
        the corpus); an up-to-date file there is reused.
    cleaner : str
        The text cleaner (see :func:`semtts.text.cleaners.clean_text`) used to
        decide whether the transcript is usable.
    data_root : str or Path, optional
        The corpus folder. Audio under it is written as
        ``"{data_root}/<relative path>"``; without it (or for audio outside
        it) the absolute path is stored.

    Returns
    -------
    item : dict or None
        ``{"wav", "text", "spk", "duration", "sr"}`` plus extra raw fields, or
        None when dropped.
    reason : str or None
        A key of :data:`DROP_REASONS` when dropped, else None.
    """
    path = Path(raw["path"])
    if not path.is_file():
        return None, "missing_audio"
    text = str(raw.get("text", "")).strip()
    if not text:
        return None, "empty_text"
    if not _text_is_usable(text, cleaner):
        return None, "unusable_text"

    stat = path.stat()  # before the audio is read: a cached file's record never outdates it
    try:
        info = audio_info(path)
    except Exception:  # soundfile raises several types for non-audio files
        return None, "unreadable_audio"
    if info.frames == 0:
        return None, "empty_audio"
    if info.frames / info.samplerate > max_duration:
        return None, "too_long"
    try:
        audio, orig_sr = load_audio(path)
    except Exception:
        # The header opened but decoding stopped early: fewer samples can be
        # read than the header declares.
        return None, "truncated_audio"
    declared = declared_frames(path, info.frames)
    if audio.shape[1] < declared:
        return None, "truncated_audio"
    if audio.shape[1] == 0:
        return None, "empty_audio"
    if not bool(torch.isfinite(audio).all()):
        return None, "nonfinite_samples"
    if float(audio.abs().max()) < _SILENCE_PEAK:
        return None, "empty_audio"
    duration = audio.shape[1] / orig_sr
    if duration < min_duration:
        return None, "too_short"
    if duration > max_duration:
        return None, "too_long"

    if orig_sr == sample_rate and audio.shape[0] == 1:
        wav = _placeholder_path(path, data_root, DATA_ROOT)
    else:
        relative = _cache_relative_path(raw, path, data_root)
        cached = Path(cache_dir) / relative
        if cached.resolve() == path.resolve():
            raise ConfigError(f"cache folder {cache_dir} would overwrite the corpus file {path}")
        source = _source_record(path, stat, data_root)
        n_frames = _cached_frames(cached, source, sample_rate)
        if n_frames is None:
            fixed = resample(audio.mean(dim=0, keepdim=True), orig_sr, sample_rate)
            # atomic (parallel workers or a kill leave no partial file); audio past full scale (a float
            # source louder than it, or the resampler's overshoot) keeps its level as float samples, as the
            # uncached files of the corpus do
            try:
                save_audio(cached, fixed, sample_rate, keep_range=True)
                write_json_atomic(_source_record_path(cached), source)  # last: what the file was made of
            except OSError as err:  # the cache's fault (full, read-only), not the corpus file's: stop the run
                raise DataError(f"{cached}: cannot write the resampled audio ({type(err).__name__}: {err}); "
                                "free space or choose another cache folder, then rerun (what is done is kept)"
                                ) from None
            n_frames = fixed.shape[1]
        duration = n_frames / sample_rate
        wav = f"{CACHE_ROOT}/{relative.as_posix()}"

    item = {
        "wav": wav,
        "text": text,
        "spk": str(raw["spk"]),
        "duration": round(duration, 4),
        "sr": int(sample_rate),
    }
    for key, value in raw.items():
        if key not in _RAW_ONLY_FIELDS:
            item[key] = value
    return item, None


def _text_is_usable(text: str, cleaner: str) -> bool:
    """True when the cleaned text keeps at least one letter, digit or
    (CJK) character; a cleaner that fails on this text makes it unusable."""
    from semtts.text.cleaners import clean_text  # late import: data does not need text at load time

    try:
        cleaned = clean_text(text, cleaner)
    except SemttsError:
        raise  # an unknown cleaner name is a configuration error, not a bad item
    except Exception:
        return False
    return any(ch.isalnum() for ch in cleaned)


def _placeholder_path(path: Path, root: str | Path | None, placeholder: str) -> str:
    """``"<placeholder>/<path relative to root>"``, or the absolute path when
    ``path`` is not under ``root``."""
    relative = _relative_to(path, root)
    if relative is None:
        return str(path.absolute())
    return f"{placeholder}/{relative.as_posix()}"


def _cache_relative_path(raw: dict, path: Path, data_root: str | Path | None) -> Path:
    """The cached file's path under the cache folder: the corpus-relative
    path with a ``.wav`` suffix, or ``_external/<spk>/<utt_id>.wav``. A
    source that is not a wav and has an audio sibling of the same stem
    (``a.flac`` beside ``a.wav``) keeps its suffix (``a.flac.wav``), so that
    each caches into a file of its own."""
    relative = _relative_to(path, data_root)
    if relative is not None:
        if path.suffix.lower() != ".wav" and _has_audio_sibling(path):
            return relative.with_name(relative.name + ".wav")
        return relative.with_suffix(".wav")
    safe = [str(raw[key]).replace("/", "_").replace(os.sep, "_") for key in ("spk", "utt_id")]
    return Path("_external") / safe[0] / f"{safe[1]}.wav"


def _has_audio_sibling(path: Path) -> bool:
    """Whether another audio file (:data:`semtts.audio_formats.AUDIO_SUFFIXES`) of ``path``'s stem lies beside
    it (``a.flac`` and ``a.wav`` would both cache as ``a.wav``)."""
    return any(other.suffix.lower() in AUDIO_SUFFIXES and other.name != path.name
               for other in path.parent.glob(f"{glob.escape(path.stem)}.*"))


def _relative_to(path: Path, root: str | Path | None) -> Path | None:
    """``path`` relative to ``root`` (compared as given, then with symbolic
    links resolved), or None when it is not under ``root``."""
    if root is None:
        return None
    root = Path(root)
    for a, b in ((path.absolute(), root.absolute()), (path.resolve(), root.resolve())):
        try:
            return a.relative_to(b)
        except ValueError:
            continue
    return None


SOURCE_SUFFIX = ".source.json"
"""A cached file's record of its source (``<cached>.wav.source.json``)."""


def _source_record_path(cached: Path) -> Path:
    """Where the record of ``cached``'s source lies."""
    return cached.with_name(cached.name + SOURCE_SUFFIX)


def _source_record(source: Path, stat: os.stat_result, data_root: str | Path | None) -> dict:
    """What identifies a source file: its path (relative to the corpus folder,
    so that a moved corpus keeps its cache), size and modification time (ns, from ``stat``)."""
    relative = _relative_to(source, data_root)
    name = relative.as_posix() if relative is not None else str(source.resolve())
    return {"source": name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _cached_frames(cached: Path, source: dict, sample_rate: int) -> int | None:
    """Frame count of an up-to-date cached file (mono, right rate, made from
    the very source file the record ``source`` describes), or None when it
    must be (re)written. Another corpus at the same relative path, or a
    source replaced by one with an older date (``tar -x``, ``rsync -a``), is
    resampled again; so is a file cached by semtts before the records."""
    try:
        record = json.loads(_source_record_path(cached).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not cached.is_file() or record != source:
        return None
    try:
        info = audio_info(cached)
    except Exception:
        return None
    if info.samplerate != sample_rate or info.channels != 1 or info.frames == 0:
        return None
    return int(info.frames)
