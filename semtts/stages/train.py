"""Stages 5, 6, 7: train VITS stage A, B or C with the VITS Brain.

Loads the recipe's ``corpus.yaml`` with its model file and the stage's
training file (``train_<X>_hparams``), sizes the model from the stage-2 token
list and the training speakers, and trains; a rerun resumes from the last
checkpoint, and a finished stage is skipped (``--force`` continues training,
e.g. after raising ``--number_of_epochs``).

    python -m semtts.stages.train_a recipes/mini/hparams/corpus.yaml [--device cuda] [--precision bf16]
    torchrun --nproc_per_node 4 -m semtts.stages.train_a HPARAMS.yaml --distributed_launch
"""

import json
from pathlib import Path

from speechbrain.utils.seed import seed_everything

from semtts.data.dataset import build_speaker_table, dataio_prepare, make_train_sampler
from semtts.data.manifest import read_manifest, write_json_atomic
from semtts.errors import ConfigError, DataError
from semtts.stages.common import load_stage_hparams, log, parse_stage_args, run_stage
from semtts.text.tokenizer import TokenList

__all__ = ["SPEAKER_MODES", "stage_dir", "model_sizes", "loader_kwargs", "train"]

SPEAKER_MODES = ("sid", "speaker", "utterance")


def stage_dir(hp: dict, stage: str) -> Path:
    """``<output_folder>/stage_<X>``: checkpoints, logs and the speaker table."""
    return Path(hp["output_folder"]) / f"stage_{stage}"


def model_sizes(output_folder: str | Path, speaker_mode: str) -> tuple[dict, dict[str, int]]:
    """The derived model settings: vocabulary size from ``tokens.txt`` and the
    speaker table of the training split.

    Arguments
    ---------
    output_folder : str or Path
        The experiment folder (with ``tokens/``).
    speaker_mode : str
        ``sid`` sizes a speaker table; other modes use embeddings.

    Returns
    -------
    extra : dict
        ``{"n_vocab": V, "n_speakers": S}`` (S = 0 for one speaker or embeddings).
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
    return {"n_vocab": n_vocab, "n_speakers": n_speakers}, speakers


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
    extra, speakers = model_sizes(probe["output_folder"], probe["speaker_mode"])
    seed_everything(probe["seed"])  # before the model is built: reproducible init
    hp = load_stage_hparams(args.hparams_file, args.overrides, include=include, extra=extra)
    out_dir = stage_dir(hp, stage)
    tokens_dir = Path(hp["output_folder"]) / "tokens"
    plain = {k: v for k, v in hp.items() if isinstance(v, (str, int, float, bool, list)) or v is None}
    settings = {**plain, **extra, "tokens_done": json.loads((tokens_dir / "done").read_text())["settings"]}
    settings.pop("number_of_epochs", None)  # more epochs continue training

    def body() -> dict:
        write_json_atomic(out_dir / "speakers.json", speakers)
        datasets = dataio_prepare(
            {split: tokens_dir / f"{split}.json" for split in ("train", "valid")},
            data_root=hp["data_folder"],
            cache_root=Path(hp["output_folder"]) / "data" / "audio_cache",
            sample_rate=hp["sample_rate"],
            add_blank=hp["add_blank"],
            speaker_table=speakers,
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
