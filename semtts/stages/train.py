"""Stages 5, 6, 7: train VITS stage A, B or C with the VITS Brain.

Loads the recipe's ``corpus.yaml`` with its model file and the stage's
training file (``train_<X>_hparams``), sizes the model from the stage-2 token
list and the training speakers, and trains; a rerun resumes from the last
checkpoint, and a finished stage is skipped (``--force`` continues training,
e.g. after raising ``--number_of_epochs``).

With ``speaker_mode`` ``speaker`` or ``utterance`` the model is conditioned
on stage 3's CAM++ embeddings (:mod:`semtts.data.speaker_vectors`): before
anything is built, ``spk_emb/meta.json`` is checked against the hparams
(model, dimension, checkpoint; a mismatch is a one-line error naming both
sides), the model's ``spk_embed_dim`` is set from it (``n_speakers: 0``), and
items stage 3 could not embed are left out with a logged count.

    python -m semtts.stages.train_a recipes/mini/hparams/corpus.yaml [--device cuda] [--precision bf16]
    torchrun --nproc_per_node 4 -m semtts.stages.train_a HPARAMS.yaml --distributed_launch
"""

import json
from pathlib import Path

import torch
from speechbrain.utils.seed import seed_everything

from semtts.data.dataset import build_speaker_table, dataio_prepare, make_train_sampler
from semtts.data.manifest import read_manifest, write_json_atomic
from semtts.data.speaker_vectors import EMBEDDING_MODES, SpeakerVectors
from semtts.errors import ConfigError, DataError
from semtts.stages.common import load_stage_hparams, log, parse_stage_args, run_stage
from semtts.text.tokenizer import TokenList

__all__ = ["SPEAKER_MODES", "stage_dir", "model_sizes", "load_speaker_vectors", "training_vectors", "loader_kwargs",
           "train"]

SPEAKER_MODES = ("sid", "speaker", "utterance")


def stage_dir(hp: dict, stage: str) -> Path:
    """``<output_folder>/stage_<X>``: checkpoints, logs and the speaker table."""
    return Path(hp["output_folder"]) / f"stage_{stage}"


def model_sizes(output_folder: str | Path, speaker_mode: str,
                spk_embed_dim: int = 0) -> tuple[dict, dict[str, int]]:
    """The derived model settings: vocabulary size from ``tokens.txt``, the
    speaker table of the training split, and the speaker-vector size.

    Arguments
    ---------
    output_folder : str or Path
        The experiment folder (with ``tokens/``).
    speaker_mode : str
        ``sid`` sizes a speaker table; other modes use embeddings.
    spk_embed_dim : int
        The embedding dimension (from ``spk_emb/meta.json``); needed by the
        embedding modes, ignored by ``sid``.

    Returns
    -------
    extra : dict
        ``{"n_vocab": V, "n_speakers": S, "spk_embed_dim": D}`` (S = 0 for one
        speaker or embeddings, D = 0 for ``sid``).
    speakers : dict
        ``{speaker: id}`` of the training split.
    """
    if speaker_mode not in SPEAKER_MODES:
        raise ConfigError(f"speaker_mode must be one of {', '.join(SPEAKER_MODES)}, got {speaker_mode!r}")
    tokens_dir = Path(output_folder) / "tokens"
    if not (tokens_dir / "done").is_file():
        raise DataError(f"{tokens_dir}: stage 2 (text frontend) has not finished")
    n_vocab = len(TokenList.load(tokens_dir / "tokens.txt"))
    speakers = build_speaker_table(read_manifest(tokens_dir / "train.json"))
    n_speakers = len(speakers) if speaker_mode == "sid" and len(speakers) > 1 else 0
    if speaker_mode in EMBEDDING_MODES and spk_embed_dim <= 0:
        raise ConfigError(f"speaker_mode {speaker_mode} needs the speaker-embedding dimension (stage 3's meta.json)")
    dim = int(spk_embed_dim) if speaker_mode in EMBEDDING_MODES else 0
    return {"n_vocab": n_vocab, "n_speakers": n_speakers, "spk_embed_dim": dim}, speakers


def load_speaker_vectors(hp: dict) -> SpeakerVectors | None:
    """Stage 3's embeddings, checked against the hparams, for the embedding
    modes; None for ``sid``. Run before anything is built.

    Arguments
    ---------
    hp : dict
        The (probe) hparams: ``speaker_mode``, ``output_folder`` and the CAM++ keys.

    Returns
    -------
    SpeakerVectors or None
    """
    if hp["speaker_mode"] not in SPEAKER_MODES:
        raise ConfigError(f"speaker_mode must be one of {', '.join(SPEAKER_MODES)}, got {hp['speaker_mode']!r}")
    return SpeakerVectors.load(hp) if hp["speaker_mode"] in EMBEDDING_MODES else None


def training_vectors(vectors: SpeakerVectors, manifests: dict[str, Path], mode: str,
                     stage: str = "5") -> dict[str, torch.Tensor]:
    """The speaker vector of every training and validation item by ``mode``
    (speaker means over the training split); items without one are logged
    with a count and left out.

    Arguments
    ---------
    vectors : SpeakerVectors
        Stage 3's embeddings.
    manifests : dict
        ``{split: tokens/<split>.json}``, with ``train``.
    mode : str
        ``speaker`` or ``utterance``.
    stage : str
        The stage number for the log lines.

    Returns
    -------
    dict
        ``{utt_id: [D] tensor}`` over all the splits.
    """
    loaded = {split: read_manifest(path) for split, path in manifests.items()}
    embeds = {}
    for split, items in loaded.items():
        chosen, dropped = vectors.conditioning(items, mode, train_items=loaded["train"])
        if dropped:
            utt_id, reason = next(iter(sorted(dropped.items())))
            log(stage, f"{split}: {len(dropped)} of {len(items)} utterances have no speaker vector and are left "
                       f"out (e.g. {utt_id}: {reason})")
        if split == "train" and not chosen:
            raise DataError(f"{manifests[split]}: no training utterance has a speaker vector (see "
                            "spk_emb/report.json)")
        embeds.update(chosen)
    return embeds


def loader_kwargs(hp: dict, dataset, train: bool) -> dict:
    """DataLoader options: length-bucketed dynamic batches for training when
    ``dynamic_batching`` is set, fixed ``batch_size`` otherwise."""
    kwargs = {"num_workers": hp["num_workers"]}
    if train and hp["dynamic_batching"]:
        kwargs["batch_sampler"] = make_train_sampler(dataset, hp["max_batch_seconds"], hp["num_buckets"], hp["seed"])
    else:
        kwargs.update(batch_size=hp["batch_size"], shuffle=train)
    return kwargs


def train(stage: str, argv: list[str] | None = None) -> int:
    """Train stage ``stage`` (``"A"``, ``"B"`` or ``"C"``) from a command line."""
    from semtts.brain import VITSBrain
    from semtts.checkpoint import make_checkpointer

    args = parse_stage_args(argv)
    include = ("model_hparams", f"train_{stage}_hparams")
    probe = load_stage_hparams(args.hparams_file, args.overrides, include=include[1:])
    vectors = load_speaker_vectors(probe)  # start-up check of spk_emb/meta.json, before anything is built
    extra, speakers = model_sizes(probe["output_folder"], probe["speaker_mode"], vectors.dim if vectors else 0)
    tokens_dir = Path(probe["output_folder"]) / "tokens"
    manifests = {split: tokens_dir / f"{split}.json" for split in ("train", "valid")}
    spk_embeds = None if vectors is None else training_vectors(vectors, manifests, probe["speaker_mode"],
                                                               str(5 + "ABC".index(stage)))
    seed_everything(probe["seed"])  # before the model is built: reproducible init
    hp = load_stage_hparams(args.hparams_file, args.overrides, include=include, extra=extra)
    out_dir = stage_dir(hp, stage)
    plain = {k: v for k, v in hp.items() if isinstance(v, (str, int, float, bool, list)) or v is None}
    settings = {**plain, **extra, "tokens_done": json.loads((tokens_dir / "done").read_text())["settings"]}
    if vectors is not None:
        settings["spk_emb"] = {key: vectors.meta.get(key) for key in ("model", "embed_dim", "ckpt_sha256")}
    settings.pop("number_of_epochs", None)  # more epochs continue training

    def body() -> dict:
        write_json_atomic(out_dir / "speakers.json", speakers)
        datasets = dataio_prepare(
            manifests,
            data_root=hp["data_folder"],
            cache_root=Path(hp["output_folder"]) / "data" / "audio_cache",
            sample_rate=hp["sample_rate"],
            add_blank=hp["add_blank"],
            speaker_table=speakers,
            spk_embeds=spk_embeds,
        )
        checkpointer = make_checkpointer(hp["save_folder"], hp["generator"], hp["discriminator"], hp["epoch_counter"])
        brain = VITSBrain(
            modules={"generator": hp["generator"], "discriminator": hp["discriminator"]},
            hparams=hp,
            run_opts=args.run_opts,
            checkpointer=checkpointer,
        )
        brain.fit(
            hp["epoch_counter"],
            datasets["train"],
            datasets["valid"],
            train_loader_kwargs=loader_kwargs(hp, datasets["train"], train=True),
            valid_loader_kwargs=loader_kwargs(hp, datasets["valid"], train=False),
        )
        return {"epochs": hp["number_of_epochs"]}

    ran = run_stage(f"{5 + 'ABC'.index(stage)} train {stage}", out_dir, settings, body, force=args.force)
    if ran:
        log(str(5 + "ABC".index(stage)), f"checkpoints in {hp['save_folder']}")
    return 0
