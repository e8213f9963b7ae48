"""Scoring one synthesized split against its reference recordings: the one
implementation shared by stage 9 (:mod:`semtts.stages.evaluate`) and
``semtts eval`` (:mod:`semtts.evaluation.packed_model`).

A synthesized split is a folder as stage 8 writes it: ``<utt_id>.wav`` per
utterance, ``report.json`` (with the real-time factor ``rtf``) and
``durations.json``. Every wav is compared with the recording of the same
utterance in the split's stage-2 manifest: DTW-aligned MCD and log-F0 RMSE /
V/UV error, CAM++ speaker similarity, and the WER / CER of a Whisper ASR.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> from semtts.audio import save_audio
>>> path = Path(tempfile.mkdtemp()) / "u1.wav"
>>> save_audio(path, 0.1 * torch.randn(22050), 22050)
>>> audio, sr = load_checked_audio(path, "synthesized")
>>> audio.shape, sr  # [T] mono samples
(torch.Size([22050]), 22050)
>>> load_checked_audio(path.with_name("u2.wav"), "reference ('u2')")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
semtts.errors.DataError: /.../u2.wav: reference ('u2') audio not found
"""

import json
import logging
from pathlib import Path

import torch

from semtts.audio import read_checked_audio, resample
from semtts.data.manifest import resolve_audio_path
from semtts.errors import ConfigError, DataError
from semtts.evaluation.f0 import f0_rmse
from semtts.evaluation.mcd import mcd
from semtts.evaluation.report import summarize_split
from semtts.evaluation.speaker_similarity import speaker_similarity
from semtts.evaluation.wer import ASR_SAMPLE_RATE, WhisperASR, error_rates, utterance_errors
from semtts.extract.speaker import SpeakerEmbedder

__all__ = ["load_checked_audio", "evaluated_wavs", "evaluate_split"]

logger = logging.getLogger(__name__)


def load_checked_audio(path: str | Path, what: str) -> tuple[torch.Tensor, int]:
    """Read one mono recording for scoring (at least 50 ms long).

    Arguments
    ---------
    path : str or Path
        The audio file.
    what : str
        What it is, for the error messages (``"synthesized"``, ``"reference ('u1')"``).

    Returns
    -------
    audio : torch.Tensor
        ``[T]`` float samples.
    sample_rate : int
    """
    return read_checked_audio(path, f"{what} audio", min_seconds=0.05)


def evaluated_wavs(synth_dir: str | Path, max_utterances: int = 0) -> list[Path]:
    """The synthesized wavs of a split that are scored: those of the last
    synthesis run (the utterances of its ``durations.json``), the first
    ``max_utterances`` by id.

    Wavs left in the folder by an earlier run are not scored (a log line
    counts them); a listed utterance whose wav is missing is an error.

    Arguments
    ---------
    synth_dir : str or Path
        ``synth/<stage>/<split>/``.
    max_utterances : int
        At most this many (0: all).

    Returns
    -------
    list of Path
        Sorted by utterance id.
    """
    if max_utterances < 0:
        raise ConfigError(f"eval_max_utterances must be >= 0, got {max_utterances}")
    synth_dir = Path(synth_dir)
    listing = synth_dir / "durations.json"
    try:
        synthesized = sorted(json.loads(listing.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise DataError(f"{listing}: cannot read the list of synthesized utterances ({err.__class__.__name__}); "
                        "rerun synthesis (stage 8)") from None
    stale = len({p.stem for p in synth_dir.glob("*.wav")} - set(synthesized))
    if stale:
        logger.info(f"{synth_dir}: {stale} wavs not made by the last synthesis run are not scored")
    wavs = [synth_dir / f"{utt_id}.wav" for utt_id in synthesized[:max_utterances or None]]
    missing = [p.name for p in wavs if not p.is_file()]
    if missing:
        raise DataError(f"{synth_dir}: {len(missing)} synthesized wavs listed in durations.json are missing "
                        f"({', '.join(missing[:3])}); rerun synthesis (stage 8)")
    return wavs


def evaluate_split(synth_dir: Path, items: dict[str, dict], data_folder: str | Path, cache_root: str | Path,
                   asr: WhisperASR, embedder: SpeakerEmbedder, max_utterances: int = 0) -> tuple[dict, dict]:
    """Score one synthesized split against its reference recordings.

    Arguments
    ---------
    synth_dir : Path
        ``synth/<stage>/<split>/`` (``<utt>.wav`` and ``report.json``).
    items : dict
        The split's stage-2 manifest.
    data_folder : str or Path
        The corpus folder (``{data_root}``).
    cache_root : str or Path
        ``<output_folder>/data/audio_cache`` (``{cache_root}``).
    asr : WhisperASR
        The recogniser.
    embedder : SpeakerEmbedder
        CAM++.
    max_utterances : int
        Evaluate the first ``max_utterances`` by id (0: all).

    Returns
    -------
    utterances : dict
        ``{utt_id: metrics, text and transcript}``.
    summary : dict
        The split's metrics (:func:`semtts.evaluation.report.summarize_split`).
    """
    synth_dir = Path(synth_dir)
    results, synth, refs, texts, hyps = {}, [], [], [], []
    for wav_path in evaluated_wavs(synth_dir, max_utterances):
        utt_id = wav_path.stem
        if utt_id not in items:
            raise DataError(f"{wav_path}: utterance '{utt_id}' is not in the split's manifest")
        audio, sr = load_checked_audio(wav_path, "synthesized")
        ref_path = resolve_audio_path(items[utt_id]["wav"], data_root=data_folder, cache_root=cache_root)
        ref, ref_sr = load_checked_audio(ref_path, f"reference ('{utt_id}')")
        audio_16k = resample(audio, sr, ASR_SAMPLE_RATE)
        hypothesis = asr.transcribe(audio_16k)
        text = items[utt_id]["text"]
        results[utt_id] = {"mcd": round(mcd(audio, ref, sr, ref_sr), 4),
                           **f0_rmse(audio, ref, sr, ref_sr), "text": text, "hypothesis": hypothesis,
                           **utterance_errors(text, hypothesis, asr.language)}
        synth.append(audio_16k)
        refs.append(resample(ref, ref_sr, ASR_SAMPLE_RATE))
        texts.append(text)
        hyps.append(hypothesis)
    sims = speaker_similarity(embedder, synth, refs, ASR_SAMPLE_RATE)
    for utt_id, sim in zip(results, sims.tolist()):
        results[utt_id]["spk_sim"] = round(sim, 6)
    report_path = synth_dir / "report.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{report_path}: cannot read the synthesis report ({err.__class__.__name__})") from None
    summary = summarize_split(results, error_rates(texts, hyps, asr.language), report.get("rtf"))
    return results, summary
