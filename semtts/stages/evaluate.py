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
side, also printed at the end), bar charts per metric (``<metric>.png``),
``plots/<split>/`` (:mod:`semtts.evaluation.plots`: for the first
``eval_plot_utterances`` utterances by id, the mels of the reference and of
every stage and the stages' alignments; the histogram of frames per token),
and ``done``. A rerun after stage 8 redid a stage asks for ``--force``. The
scoring itself is :func:`semtts.evaluation.scoring.evaluate_split`, shared
with ``semtts eval``.

    python -m semtts.stages.evaluate recipes/mini/hparams/corpus.yaml [--device cuda]

hparams read: ``output_folder``, ``data_folder``, ``eval_asr_model``,
``eval_asr_language``, ``eval_asr_random_dims``, ``eval_max_utterances``,
``eval_plot_utterances``,
``allow_random_init``, ``whisper_cache_dir``, ``campplus_ckpt``,
``campplus_embed_dim``, ``campplus_cache_dir``, ``seed``, and the
``spectrogram`` of the file ``model_hparams`` names (for the mels; semtts's
defaults at the synthesized rate without one).
"""

from pathlib import Path

from semtts.audio import SpectrogramConfig
from semtts.data.manifest import read_manifest, write_json_atomic
from semtts.errors import DataError, entry_point
from semtts.evaluation.plots import plot_synthesized_split
from semtts.evaluation.report import STAGES, write_report
from semtts.evaluation.scoring import evaluate_split
from semtts.evaluation.wer import WhisperASR
from semtts.extract.speaker import SpeakerEmbedder
from semtts.host_memory import keep_freed_memory
from semtts.stages.common import included_files, load_stage_hparams, log, parse_stage_args, read_done, run_stage

__all__ = ["SETTINGS", "synthesized_splits", "model_spectrogram", "main"]

SETTINGS = ("eval_asr_model", "eval_asr_language", "eval_asr_random_dims", "eval_max_utterances",
            "eval_plot_utterances", "allow_random_init", "campplus_ckpt", "campplus_embed_dim", "seed")
# Keys that corpus files written before they existed may lack, with their defaults.


def synthesized_splits(output_folder: str | Path) -> dict[str, list[str]]:
    """The stages stage 8 finished and the splits each synthesized in its
    last run.

    Arguments
    ---------
    output_folder : str or Path
        The experiment folder.

    Returns
    -------
    dict
        ``{stage: [split, ...]}`` in A, B, C order; a split is a folder of
        ``synth/<stage>/`` holding a ``report.json`` that stage 8's ``done``
        marker lists (a folder an earlier stage-8 run left, e.g. of a split
        since dropped from ``synth_splits``, is logged and not evaluated).
    """
    found = {}
    for stage in STAGES:
        folder = Path(output_folder) / "synth" / stage
        if not (folder / "done").is_file():
            if folder.is_dir():
                log("9", f"{folder}: stage 8 has not finished there, skipped")
            continue
        summary = read_done(folder / "done", "stage 8 (synthesize)").get("summary")
        splits = sorted(p.name for p in folder.iterdir() if (p / "report.json").is_file())
        if isinstance(summary, dict):  # the splits stage 8 synthesized last time
            for split in [s for s in splits if s not in summary]:
                log("9", f"{folder / split}: not synthesized by stage 8's last run (an earlier run's), not evaluated")
            splits = [s for s in splits if s in summary]
        if splits:
            found[stage] = splits
    return found


def model_spectrogram(hparams_file: str, overrides: str | dict | None) -> SpectrogramConfig | None:
    """The spectrogram settings of the recipe's model file (None when ``corpus.yaml`` names none).

    Arguments
    ---------
    hparams_file : str
        The recipe's ``corpus.yaml``.
    overrides : str or dict
        Command-line overrides.

    Returns
    -------
    SpectrogramConfig or None
        The ``spectrogram`` of the file ``model_hparams`` names.
    """
    if "model_hparams" not in included_files(hparams_file):
        return None
    spectrogram = load_stage_hparams(hparams_file, overrides, include=("model_hparams",)).get("spectrogram")
    return spectrogram if isinstance(spectrogram, SpectrogramConfig) else None


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 9 entry point."""
    keep_freed_memory()
    args = parse_stage_args(argv)
    hp = load_stage_hparams(args.hparams_file, args.overrides)
    out = Path(hp["output_folder"])
    found = synthesized_splits(out)
    if not found:
        raise DataError(f"{out / 'synth'}: no finished synthesis (run stage 8 first)")
    synth_settings = {stage: read_done(out / "synth" / stage / "done", "stage 8 (synthesize)")["settings"]
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
        manifests: dict[str, dict] = {}
        for stage, splits in found.items():
            for split in splits:
                manifest = out / "tokens" / f"{split}.json"
                if not manifest.is_file():
                    raise DataError(f"{manifest}: no stage-2 manifest for the synthesized split '{split}'")
                if split not in manifests:
                    manifests[split] = read_manifest(manifest)
                utterances, summary = evaluate_split(out / "synth" / stage / split, manifests[split],
                                                     hp["data_folder"], out / "data" / "audio_cache", asr,
                                                     embedder, int(hp["eval_max_utterances"]))
                write_json_atomic(eval_dir / stage / f"{split}.json", utterances)
                metrics.setdefault(stage, {})[split] = summary
                log("9", f"stage {stage}, {split}: {summary['utterances']} utterances, MCD {summary['mcd']}, "
                         f"WER {summary['wer']}, speaker similarity {summary['spk_sim']}")
        write_report(eval_dir, metrics)
        spectrogram = model_spectrogram(args.hparams_file, args.overrides)
        for split, items in manifests.items():
            synth_dirs = {stage: out / "synth" / stage / split for stage in found if split in found[stage]}
            written = plot_synthesized_split(eval_dir / "plots" / split, synth_dirs, items, hp["data_folder"],
                                             out / "data" / "audio_cache", int(hp["eval_plot_utterances"]),
                                             spectrogram, int(hp["eval_max_utterances"]))
            log("9", f"{split}: {len(written)} plots in {eval_dir / 'plots' / split}")
        return {"stages": sorted(metrics)}

    run_stage("9 evaluate", eval_dir, settings, body, force=args.force)
    print((eval_dir / "results.md").read_text(encoding="utf-8"), flush=True)
    return 0


if __name__ == "__main__":
    main()
