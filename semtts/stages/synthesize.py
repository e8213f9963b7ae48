"""Stage 8: synthesize every test set with a trained stage.

For each split in ``synth_splits`` (e.g. ``test`` and ``test_unseen``) the
generator of every stage in ``synth_stages`` that has finished training (its
``synth_checkpoint``: the last, or the
best by validation mel L1) writes

- ``<output_folder>/synth/<stage>/<split>/<utt_id>.wav``;
- ``durations.json``: the per-token frame counts and the sample count of
  every utterance (``n_samples == sum(durations) * hop_length``);
- ``report.json``: utterances, audio seconds, real-time factor, the items
  that came out silent, and how many were conditioned on each kind of reference;
- ``references.json`` (models conditioned on CAM++ vectors):
  ``{utt_id: {"spk", "reference", "reference_utt"}}``, what conditioned each
  utterance: ``train_mean`` (a seen speaker's training mean, ``speaker``
  mode), ``first_utterance`` (one recording, named by ``reference_utt``) or
  ``speaker_mean``, after ``synth_reference``
  (:meth:`semtts.data.speaker_vectors.SpeakerVectors.references`).

A run (the first, or a rerun with ``--force``) removes the split folders of
``synth/<stage>/`` it did not produce, e.g. ``test_unseen`` after
``--heldout_speakers []`` or a split dropped from ``synth_splits``, and logs
each, so that stage 9 scores only current results.

With CAM++ conditioning (``speaker_mode`` ``speaker`` or ``utterance``) the
held-out speakers of ``test_unseen`` are synthesized zero-shot, each from one
reference recording (by default its first utterance by id). A split whose
speakers a speaker-id table cannot condition on is skipped with a log line.

Utterances are synthesized ``synth_batch_size`` at a time; a batch that runs
out of device memory (torch's, cuDNN's or cuBLAS's) is synthesized in halves,
down to single utterances, and later batches larger than what fitted are split
without trying (one log line per test set), so one long utterance does not stop
the stage; one that does not fit alone is an error naming it.

A stage-B or C model synthesizes from text alone: its semantics are the
student's (SemPred), never the Whisper teacher's, and Whisper is not imported.

    python -m semtts.stages.synthesize recipes/mini/hparams/corpus.yaml [--device cuda]
"""

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.checkpoints import Checkpointer

from semtts.audio import save_audio
from semtts.data.dataset import absolute_lengths, dataio_prepare
from semtts.data.manifest import read_manifest, write_json_atomic
from semtts.data.speaker_vectors import SpeakerVectors
from semtts.errors import ConfigError, DataError, entry_point
from semtts.graphed_inference import DurationsTooLong, GraphedSynthesizer, out_of_memory
from semtts.host_memory import keep_freed_memory
from semtts.stages.common import StageArgs, load_stage_hparams, log, parse_stage_args, read_done, run_stage
from semtts.stages.train import STAGE_FILES, build_generator, load_speaker_vectors, model_sizes, stage_dir

__all__ = ["load_generator", "split_references", "synthesize_split", "remove_stale_splits", "synthesize_stage",
           "main"]

SETTINGS = ("synth_splits", "synth_checkpoint", "synth_batch_size", "noise_scale",
            "noise_scale_w", "length_scale", "seed", "speaker_mode", "synth_reference")


def load_generator(save_folder: str | Path, generator: torch.nn.Module, which: str) -> str:
    """Load trained generator weights from a stage's checkpoints.

    Arguments
    ---------
    save_folder : str or Path
        The stage's ``save`` folder.
    generator : torch.nn.Module
        A generator of the same architecture.
    which : str
        ``"last"`` or ``"best"`` (lowest validation ``mel_l1``).

    Returns
    -------
    str
        The name of the checkpoint folder loaded.
    """
    if which not in ("last", "best"):
        raise ConfigError(f"synth_checkpoint must be 'last' or 'best', got {which!r}")
    checkpointer = Checkpointer(save_folder, recoverables={"generator": generator})
    kwargs = {"min_key": "mel_l1"} if which == "best" else {}
    try:
        checkpoint = checkpointer.find_checkpoint(**kwargs)
    except (KeyError, ValueError):
        checkpoint = None
    if checkpoint is None:
        raise DataError(f"{save_folder}: no checkpoint to synthesize from (train that stage first)")
    checkpointer.load_checkpoint(checkpoint)
    return checkpoint.path.name


def split_references(vectors: SpeakerVectors, hp: dict, split: str,
                     out_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The conditioning vectors of a split's utterances (one reference per
    speaker, after ``synth_reference``), with ``references.json`` written to
    ``out_dir``.

    Arguments
    ---------
    vectors : SpeakerVectors
        Stage 3's embeddings.
    hp : dict
        ``output_folder``, ``speaker_mode``, ``synth_reference``.
    split : str
        The split to synthesize.
    out_dir : Path
        Its output folder.

    Returns
    -------
    spk_embeds : dict
        ``{utt_id: [D] tensor}``.
    counts : dict
        Utterances per kind of reference (``none``: no usable reference, not synthesized).
    """
    tokens_dir = Path(hp["output_folder"]) / "tokens"
    items, train_items = read_manifest(tokens_dir / f"{split}.json"), read_manifest(tokens_dir / "train.json")
    spk_embeds, references = vectors.references(items, hp["speaker_mode"], hp["synth_reference"], train_items)
    write_json_atomic(out_dir / "references.json", references)
    counts: dict[str, int] = {}
    for record in references.values():
        counts[record["reference"]] = counts.get(record["reference"], 0) + 1
    if counts.get("none"):
        speakers = sorted({r["spk"] for r in references.values() if r["reference"] == "none"})
        log("8", f"{split}: {counts['none']} utterances of speakers {speakers[:3]} have no usable reference "
                 "recording (none embedded by stage 3) and are not synthesized")
    return spk_embeds, counts


@torch.inference_mode()
def synthesize_split(hp: dict, generator: torch.nn.Module, dataset: DynamicItemDataset, out_dir: Path,
                     device: torch.device, references: dict[str, int] | None = None) -> dict:
    """Synthesize one split into ``out_dir``; returns its report (with
    ``references``, the counts of :func:`split_references`, when given).
    Items carry ``spk_embed`` when the model takes speaker vectors
    (``spk_embed_dim > 0``)."""
    from speechbrain.dataio.dataloader import make_dataloader

    out_dir.mkdir(parents=True, exist_ok=True)
    sample_rate, hop = hp["sample_rate"], hp["hop_length"]
    embedded = hp["spk_embed_dim"] > 0
    dataset.set_output_keys(["id", "token_ids", "spk_id"] + (["spk_embed"] if embedded else []))
    loader = make_dataloader(dataset, batch_size=hp["synth_batch_size"], shuffle=False)
    durations, silent, audio_s, start = {}, [], 0.0, time.perf_counter()
    synthesizer = GraphedSynthesizer(generator, enabled=False)  # eager (a new shape every batch); checks durations
    splits = MemorySplits()  # batches that ran out of device memory (synthesized in halves)
    for batch in loader:
        tokens = batch.token_ids.data.to(device)
        lengths = absolute_lengths(batch.token_ids)
        sid = batch.spk_id.to(device) if hp["n_speakers"] > 0 else None
        spk_embed = batch.spk_embed.data.to(device).float() if embedded else None
        inputs = {"tokens": tokens, "lengths": lengths, "sid": sid, "spk_embed": spk_embed}
        try:
            items = _synthesize_in_parts(synthesizer, hp, list(batch.id), inputs, splits)
        except _RunawayDurations as err:  # refused before hours of audio were decoded
            raise DataError(f"{out_dir.name}: {err.utt_id}: the predicted durations are {err.what} "
                            f"(noise_scale_w {hp['noise_scale_w']}, length_scale {hp['length_scale']}); is the "
                            "model trained long enough?") from None
        for utt_id, wav, item_durations in items:
            n = wav.numel()
            if not torch.isfinite(wav).all():
                raise DataError(f"{utt_id}: the generator produced non-finite audio")
            if wav.abs().max() < 1e-4:
                silent.append(utt_id)
            save_audio(out_dir / f"{utt_id}.wav", wav, sample_rate)
            durations[utt_id] = {"durations": item_durations, "n_samples": n}
            assert n == sum(item_durations) * hop, f"{utt_id}: length does not match the durations"
            audio_s += n / sample_rate
    if splits.first_ids:
        log("8", f"{out_dir.name}: out of device memory {len(splits.first_ids)}x (first at {splits.first_ids[0]}): "
                 f"those batches were synthesized in halves, and later ones of more than {splits.most_items} "
                 f"utterance(s) split (synth_batch_size {splits.most_items} may avoid the retries)")
    seconds = time.perf_counter() - start
    write_json_atomic(out_dir / "durations.json", durations)
    report = {"utterances": len(durations), "audio_seconds": round(audio_s, 2),
              "rtf": round(seconds / max(audio_s, 1e-9), 4), "silent": silent}
    if references is not None:
        report["references"] = references
    write_json_atomic(out_dir / "report.json", report)
    return report


class _RunawayDurations(Exception):
    """One utterance's durations refused (:class:`DurationsTooLong`)."""

    def __init__(self, utt_id: str, what: str):
        super().__init__(f"{utt_id}: {what}")
        self.utt_id, self.what = utt_id, what


@dataclass
class MemorySplits:
    """What stage 8 learnt of the device's memory in one split: the first utterance of each batch that
    ran out of it, and half the smallest such batch (larger batches are then split without trying)."""

    first_ids: list[str] = field(default_factory=list)
    most_items: int | None = None


def _synthesize_in_parts(synthesizer: GraphedSynthesizer, hp: dict, ids: list[str], inputs: dict,
                         splits: MemorySplits) -> list[tuple[str, torch.Tensor, list[int]]]:
    """Synthesize one batch: ``(id, float32 CPU waveform, per-token durations)`` per item. A batch that
    runs out of device memory, or has more utterances than fitted after that (``splits``), is synthesized
    in two halves, each as wide as its longest item (recursively); one utterance that does not fit alone
    is a :class:`DataError` naming it. Runaway durations are a :class:`_RunawayDurations` naming the
    utterance that has them."""
    if splits.most_items is None or len(ids) <= splits.most_items:
        for attempt in range(2 if len(ids) == 1 else 1):  # one utterance: once more without the graphs held
            out = None
            try:
                out = synthesizer(inputs["tokens"], inputs["lengths"], sid=inputs["sid"],
                                  spk_embed=inputs["spk_embed"], noise_scale=hp["noise_scale"],
                                  noise_scale_w=hp["noise_scale_w"], length_scale=hp["length_scale"])
            except DurationsTooLong as err:  # before decoding: the utterance that has them
                raise _RunawayDurations(ids[err.row or 0], str(err)) from None
            except RuntimeError as err:
                if not out_of_memory(err):
                    raise
                if attempt == 1:
                    raise DataError(f"{ids[0]}: out of device memory synthesizing it alone "
                                    f"({int(inputs['lengths'][0])} tokens); synthesize on a larger device or "
                                    "lower length_scale") from None
            if out is not None:  # (copied to the host as they are: no device memory needed)
                return [(utt_id, out.waveform[i, 0, : int(out.wav_lengths[i])].cpu().float(),
                         out.durations[i, : int(inputs["lengths"][i])].tolist()) for i, utt_id in enumerate(ids)]
            synthesizer.release_graphs()  # the graphs of earlier shapes hold their memory pools
            if torch.cuda.is_available():  # (out of the except block: the failed call's tensors are freed)
                torch.cuda.empty_cache()
        splits.first_ids.append(ids[0])
        splits.most_items = len(ids) // 2 if splits.most_items is None else min(splits.most_items, len(ids) // 2)
    return _in_halves(synthesizer, hp, ids, inputs, splits)


def _in_halves(synthesizer: GraphedSynthesizer, hp: dict, ids: list[str], inputs: dict,
               splits: MemorySplits) -> list[tuple[str, torch.Tensor, list[int]]]:
    """:func:`_synthesize_in_parts` of each half of a batch, each as wide as its longest item."""
    half = len(ids) // 2
    parts = [{key: None if value is None else value[part] for key, value in inputs.items()}
             for part in (slice(0, half), slice(half, None))]
    for part in parts:  # each part as long as its longest item
        width = int(part["lengths"].max())
        part["tokens"] = part["tokens"][:, :width]
    return (_synthesize_in_parts(synthesizer, hp, ids[:half], parts[0], splits)
            + _synthesize_in_parts(synthesizer, hp, ids[half:], parts[1], splits))


def synthesize_stage(args: StageArgs, stage: str) -> bool:
    """Synthesize the test sets with trained stage ``stage``; False if that
    stage has not finished training (it is skipped)."""
    include = ("model_hparams", STAGE_FILES[stage])
    probe = load_stage_hparams(args.hparams_file, args.overrides, include=include[1:])
    trained = stage_dir(probe, stage)
    if not (trained / "done").is_file():
        log("8", f"stage {stage} has not finished training: not synthesized")
        return False
    vectors = load_speaker_vectors(probe)  # checks spk_emb/meta.json against the hparams
    extra, _ = model_sizes(probe["output_folder"], probe["speaker_mode"], vectors.dim if vectors else 0)
    hp = load_stage_hparams(args.hparams_file, args.overrides, include=include, extra=extra)
    speakers = read_manifest(trained / "speakers.json", check=False)
    device = torch.device(args.run_opts.device or "cpu")
    number = str(5 + "ABC".index(stage))
    sem_dim = read_done(trained / "done", f"stage {number} (train {stage})")["settings"].get("sem_dim", 0)  # B, C
    generator = build_generator(hp, stage, sem_dim)
    checkpoint = load_generator(hp["save_folder"], generator, hp["synth_checkpoint"])
    generator.remove_weight_norm()
    generator.to(device).eval()
    out_root = Path(hp["output_folder"]) / "synth" / stage
    settings = {key: hp[key] for key in SETTINGS} | {"stage": stage, "checkpoint": checkpoint}

    def body() -> dict:
        torch.manual_seed(hp["seed"])
        tokens_dir = Path(hp["output_folder"]) / "tokens"
        reports = {}
        for split in hp["synth_splits"]:
            manifest = tokens_dir / f"{split}.json"
            if not manifest.is_file():
                log("8", f"{split}: no manifest, skipped")
                continue
            unseen = {item["spk"] for item in read_manifest(manifest).values()} - set(speakers)
            if hp["n_speakers"] > 0 and unseen:
                log("8", f"{split}: skipped: speakers {sorted(unseen)[:3]}... are not in the speaker table "
                         "(speaker_mode sid cannot synthesize unseen voices)")
                continue
            spk_embeds, counts = None, None
            if vectors is not None:
                spk_embeds, counts = split_references(vectors, hp, split, out_root / split)
            dataset = dataio_prepare({split: manifest}, hp["data_folder"], "", hp["sample_rate"],
                                     hp["add_blank"], speakers, spk_embeds=spk_embeds)[split]
            reports[split] = synthesize_split(hp, generator, dataset, out_root / split, device, counts)
            log("8", f"{split}: {reports[split]['utterances']} utterances, "
                     f"{reports[split]['audio_seconds']} s of audio in {out_root / split}")
        remove_stale_splits(out_root, set(reports))
        return reports

    run_stage(f"8 synthesize ({stage}, {checkpoint})", out_root, settings, body, force=args.force)
    return True


def remove_stale_splits(out_root: Path, produced: set[str]) -> list[str]:
    """Remove the split folders of ``out_root`` (``synth/<stage>/``) that this
    run did not produce (a split dropped from ``synth_splits`` or skipped
    now), so that stage 9 never scores them as current results.

    Arguments
    ---------
    out_root : Path
        The stage's synthesis folder.
    produced : set of str
        The splits synthesized by this run.

    Returns
    -------
    list of str
        The names of the folders removed (each also logged).

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for split in ("test", "test_unseen"):
    ...     (root / split).mkdir()
    >>> remove_stale_splits(root, {"test"})  # doctest: +ELLIPSIS
    20... (stage 8) removed .../test_unseen: a split this run did not synthesize (an earlier run's)
    ['test_unseen']
    """
    removed: list[str] = []
    if not Path(out_root).is_dir():
        return removed
    for folder in sorted(p for p in Path(out_root).iterdir() if p.is_dir() and p.name not in produced):
        shutil.rmtree(folder)
        removed.append(folder.name)
        log("8", f"removed {folder}: a split this run did not synthesize (an earlier run's)")
    return removed


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 8 entry point: every finished stage of ``synth_stages``."""
    keep_freed_memory()
    args = parse_stage_args(argv)
    stages = load_stage_hparams(args.hparams_file, args.overrides)["synth_stages"]
    stages = [stages] if isinstance(stages, str) else list(stages)
    bad = [stage for stage in stages if stage not in STAGE_FILES]
    if bad or not stages:
        raise ConfigError(f"synth_stages must list stages among A, B, C, got {stages!r}")
    done = [stage for stage in stages if synthesize_stage(args, stage)]
    if not done:
        raise DataError(f"none of the stages {stages} has finished training: nothing to synthesize")
    return 0

if __name__ == "__main__":
    main()
