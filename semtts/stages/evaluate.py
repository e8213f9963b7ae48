"""Stage 9: evaluate the synthesized test sets of every trained stage.

For each stage (A, B, C) whose ``<output_folder>/synth/<stage>/`` stage 8
finished, and each split synthesized there, every synthesized utterance
(at most ``eval_max_utterances`` per split, by id; 0 = all) is compared
with the reference recording of the same utterance, found through the
stage-2 manifest ``tokens/<split>.json``:

- MCD and log-F0 RMSE / V/UV error, DTW-aligned (:mod:`semtts.evaluation.mcd`,
  :mod:`semtts.evaluation.f0`);
- CAM++ speaker similarity (``campplus_ckpt``, :mod:`semtts.evaluation.speaker_similarity`);
- WER and CER of a Whisper ASR (``eval_asr_model`` in ``eval_asr_language``,
  :mod:`semtts.evaluation.wer`);
- the real-time factor of stage 8's ``report.json``.

Outputs, under ``<output_folder>/eval/``: ``<stage>/<split>.json`` (per
utterance: the metrics, the text and the transcript), ``metrics.json``
(``{stage: {split: {metric: value}}}``), ``results.md`` (stages side by
side, also printed at the end), plots when matplotlib is installed, and
``done``. A rerun after stage 8 redid a stage asks for ``--force``.

    python -m semtts.stages.evaluate recipes/mini/hparams/corpus.yaml [--device cuda]

hparams read: ``output_folder``, ``data_folder``, ``eval_asr_model``,
``eval_asr_language``, ``eval_asr_random_dims``, ``eval_max_utterances``,
``allow_random_init``, ``whisper_cache_dir``, ``campplus_ckpt``,
``campplus_embed_dim``, ``campplus_cache_dir``, ``seed``.
"""

import json
from pathlib import Path

import torch

from semtts.audio import load_audio, resample
from semtts.data.manifest import read_manifest, resolve_audio_path, write_json_atomic
from semtts.errors import ConfigError, DataError, entry_point
from semtts.evaluation.f0 import f0_rmse
from semtts.evaluation.mcd import mcd
from semtts.evaluation.report import STAGES, summarize_split, write_report
from semtts.evaluation.speaker_similarity import speaker_similarity
from semtts.evaluation.wer import ASR_SAMPLE_RATE, WhisperASR, error_rates, utterance_errors
from semtts.extract.speaker import SpeakerEmbedder
from semtts.stages.common import load_stage_hparams, log, parse_stage_args, run_stage

__all__ = ["SETTINGS", "synthesized_splits", "evaluate_split", "main"]

SETTINGS = ("eval_asr_model", "eval_asr_language", "eval_asr_random_dims", "eval_max_utterances",
            "allow_random_init", "campplus_ckpt", "campplus_embed_dim", "seed")


def synthesized_splits(output_folder: str | Path) -> dict[str, list[str]]:
    """The stages stage 8 finished and the splits each synthesized.

    Arguments
    ---------
    output_folder : str or Path
        The experiment folder.

    Returns
    -------
    dict
        ``{stage: [split, ...]}`` in A, B, C order; a split is a folder of
        ``synth/<stage>/`` holding a ``report.json``.
    """
    found = {}
    for stage in STAGES:
        folder = Path(output_folder) / "synth" / stage
        if not (folder / "done").is_file():
            if folder.is_dir():
                log("9", f"{folder}: stage 8 has not finished there, skipped")
            continue
        splits = sorted(p.name for p in folder.iterdir() if (p / "report.json").is_file())
        if splits:
            found[stage] = splits
    return found


def _load(path: Path, what: str) -> tuple[torch.Tensor, int]:
    if not path.is_file():
        raise DataError(f"{path}: {what} audio not found")
    try:
        audio, sr = load_audio(path, mono=True)
    except (RuntimeError, OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the {what} audio ({err})") from None
    if audio.shape[-1] < sr // 20:
        raise DataError(f"{path}: the {what} audio is shorter than 50 ms")
    return audio[0], sr


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
    if max_utterances < 0:
        raise ConfigError(f"eval_max_utterances must be >= 0, got {max_utterances}")
    wavs = sorted(synth_dir.glob("*.wav"))
    if max_utterances:
        wavs = wavs[:max_utterances]
    results, synth, refs, texts, hyps = {}, [], [], [], []
    for wav_path in wavs:
        utt_id = wav_path.stem
        if utt_id not in items:
            raise DataError(f"{wav_path}: utterance '{utt_id}' is not in the split's manifest")
        audio, sr = _load(wav_path, "synthesized")
        ref_path = Path(resolve_audio_path(items[utt_id]["wav"], data_root=data_folder, cache_root=cache_root))
        ref, ref_sr = _load(ref_path, f"reference ('{utt_id}')")
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
    report = json.loads((synth_dir / "report.json").read_text())
    summary = summarize_split(results, error_rates(texts, hyps, asr.language), report.get("rtf"))
    return results, summary


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 9 entry point."""
    args = parse_stage_args(argv)
    hp = load_stage_hparams(args.hparams_file, args.overrides)
    out = Path(hp["output_folder"])
    found = synthesized_splits(out)
    if not found:
        raise DataError(f"{out / 'synth'}: no finished synthesis (run stage 8 first)")
    synth_settings = {stage: json.loads((out / "synth" / stage / "done").read_text()).get("settings")
                      for stage in found}
    settings = {key: hp[key] for key in SETTINGS} | {"synth": synth_settings}
    eval_dir = out / "eval"
    device = args.run_opts.device or "cpu"

    def body() -> dict:
        asr = WhisperASR.load(hp["eval_asr_model"], hp["eval_asr_language"], hp["whisper_cache_dir"],
                              hp["allow_random_init"], hp["eval_asr_random_dims"], hp["seed"], device)
        embedder = SpeakerEmbedder.from_checkpoint(hp["campplus_ckpt"], hp["campplus_embed_dim"],
                                                   hp["allow_random_init"], hp["campplus_cache_dir"], hp["seed"],
                                                   device)
        metrics: dict[str, dict] = {}
        for stage, splits in found.items():
            for split in splits:
                manifest = out / "tokens" / f"{split}.json"
                if not manifest.is_file():
                    raise DataError(f"{manifest}: no stage-2 manifest for the synthesized split '{split}'")
                utterances, summary = evaluate_split(out / "synth" / stage / split, read_manifest(manifest),
                                                     hp["data_folder"], out / "data" / "audio_cache", asr,
                                                     embedder, int(hp["eval_max_utterances"]))
                write_json_atomic(eval_dir / stage / f"{split}.json", utterances)
                metrics.setdefault(stage, {})[split] = summary
                log("9", f"stage {stage}, {split}: {summary['utterances']} utterances, MCD {summary['mcd']}, "
                         f"WER {summary['wer']}, speaker similarity {summary['spk_sim']}")
        write_report(eval_dir, metrics)
        return {"stages": sorted(metrics)}

    run_stage("9 evaluate", eval_dir, settings, body, force=args.force)
    print((eval_dir / "results.md").read_text(encoding="utf-8"), flush=True)
    return 0


if __name__ == "__main__":
    main()
