"""Stages 5, 6, 7: train VITS stage A, B or C with the VITS Brain.

Loads the recipe's ``corpus.yaml`` with its model file and the stage's
training file (``train_<X>_hparams``), sizes the model from the stage-2 token
list and the training speakers, and trains; a rerun resumes from the last
checkpoint, and a finished stage is skipped; a finished stage whose training
settings changed asks for ``--force`` (which trains afresh), and a raised
``--number_of_epochs`` continues training. Only settings that can change the
trained weights are compared: paths, resources, logging and the settings of
stages 8-10 (:data:`NOT_TRAINING`) are recorded but ignored, so e.g.
``--pack_stage B`` or ``--nj 8`` does not stop a finished stage; so are the
keys of modules a stage does not build (:func:`ignored_settings`: stage C's
adapter and teacher forcing in stage B, the semantic keys in stage A).

With ``speaker_mode`` ``speaker`` or ``utterance`` the model is conditioned
on stage 3's CAM++ embeddings (:mod:`semtts.data.speaker_vectors`): before
anything is built, ``spk_emb/meta.json`` is checked against the hparams
(model, dimension, checkpoint; a mismatch is a one-line error naming both
sides), the model's ``spk_embed_dim`` is set from it (``n_speakers: 0``), and
items stage 3 could not embed are left out with a logged count.

Stages B and C (:class:`~semtts.lobes.vits.semantic_vits.SemanticVITS`)
distil stage 4's Whisper features into the text side: ``teacher/done`` must
exist, ``teacher/meta.json`` match the hparams (a one-line error names
both sides) and the manifests stage 4 recorded be the current ones; items
without teacher features are left out with a logged count, and batches
carry ``teacher`` ``[B, T_sem, D]``. A stage starts from the last checkpoint
of the one before (B from A, C from B: :mod:`semtts.stages.stage_chain`): the generator and discriminator weights
are loaded from there, only the new modules (SemPred in B, the adapter in C)
start from their fresh initialisation, a parameter missing there or of
another shape stops with a message naming it, and the optimizers, schedulers
and counters start afresh. A stage that has checkpoints of its own resumes
from them instead. Which checkpoint of the previous stage a stage started
from is recorded (``previous_stage`` in its ``done`` settings,
``save/started_from.json``): after a retraining of the previous stage, a
finished stage asks for ``--force`` and an unfinished one does not resume.

    python -m semtts.stages.train_a recipes/mini/hparams/corpus.yaml [--device cuda] [--precision bf16]
    torchrun --standalone --nproc_per_node 4 -m semtts.stages.train_a HPARAMS.yaml   # or: run.sh --ngpu 4
"""

import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.distributed import ddp_barrier, ddp_init_group, if_main_process
from speechbrain.utils.seed import seed_everything

from semtts.data.dataset import (build_speaker_table, check_speaker_mode, collate_readable, dataio_prepare,
                                 make_train_sampler)
from semtts.data.manifest import read_manifest, write_json_atomic
from semtts.data.speaker_vectors import EMBEDDING_MODES, SpeakerVectors
from semtts.errors import ConfigError, DataError
from semtts.host_memory import keep_freed_memory
from semtts.run_options import check_run_options
from semtts.lobes.vits.semantic_vits import SemanticVITS
from semtts.stages.common import (DONE_NAME, changed_settings, comparable_settings, load_stage_hparams, log,
                                  parse_stage_args, read_done, run_stage)
from semtts.stages.stage_chain import (PREVIOUS_STAGE, check_finished_stage, init_from_previous_stage,
                                       load_matching_weights, previous_stage_fingerprint, stage_dir)
from semtts.text.tokenizer import TokenList

if TYPE_CHECKING:
    from speechbrain.utils.run_opts import RunOptions

    from semtts.data.teacher_features import TeacherFeatures  # imports whisper: only when training with a teacher

__all__ = ["PREVIOUS_STAGE", "STAGE_FILES", "NOT_TRAINING", "ADAPTER_ONLY", "SEMANTIC_ONLY", "ignored_settings",
           "per_process_run_options", "stage_dir", "training_settings", "model_sizes",
           "load_speaker_vectors", "training_vectors", "loader_kwargs", "with_teacher", "build_generator",
           "load_matching_weights", "init_from_previous_stage", "train"]

STAGE_FILES = {"A": "train_A_hparams", "B": "train_B_hparams", "C": "train_C_hparams"}
"""The ``corpus.yaml`` key naming each training stage's hparams file."""
NOT_TRAINING = frozenset({
    # where things live or what they are called: a moved corpus or experiment folder is still the same run
    "tag", "exp_root", "output_folder", "data_folder", "pretrained_dir", "whisper_cache_dir", "campplus_cache_dir",
    "stage_folder", "save_folder", "log_folder", "tensorboard_folder", "train_log",
    # resources and logging: how fast and how verbosely, never what is learnt
    "nj", "num_workers", "whisper_batch_size", "log_interval", "audio_log_interval", "keep_checkpoints",
    # the settings of later stages (8 synthesize, 9 evaluate, 10 pack)
    "synth_stages", "synth_splits", "synth_checkpoint", "synth_batch_size", "synth_reference",
    "noise_scale", "noise_scale_w", "length_scale",
    "eval_asr_model", "eval_asr_language", "eval_max_utterances", "eval_plot_utterances",
    "pack_stage", "pack_checkpoint",
    # more epochs continue training (see _more_epochs); --force starts afresh
    "number_of_epochs",
})
"""Keys a finished training stage records in its ``done`` marker but does not
compare: they cannot change the trained weights. Every other plain hparam
(model, objectives, optimisation, batching, data and seed) is compared, and a
change asks for ``--force``. SpeechBrain run options (``--device``,
``--precision``, ``--ckpt_interval_steps``, ...) are not hparams and are never
compared. A stage also ignores the keys of the modules it does not build
(:func:`ignored_settings`)."""
ADAPTER_ONLY = frozenset({
    # the adapter's sizes, and what feeds it (teacher forcing, the student's gradient through it)
    "adapter_heads", "adapter_dropout", "adapter_gate_init",
    "p_teacher_start", "p_teacher_end", "p_teacher_steps", "detach_student",
})
"""Keys that act through the adapter only: stage B (``use_adapter: False``)
records them but does not compare them, so tuning stage C leaves a finished B."""
SEMANTIC_ONLY = ADAPTER_ONLY | frozenset({
    "lambda_sem", "use_sempred", "use_adapter", "sempred_hidden", "sempred_kernel_size", "sempred_layers",
    "sempred_dropout",
})
"""Keys of the semantic modules and their losses: stage A (plain VITS)
records those a recipe's ``corpus.yaml`` sets but does not compare them."""


def ignored_settings(stage: str, settings: dict) -> frozenset[str]:
    """The keys a finished stage records but does not compare:
    :data:`NOT_TRAINING`, and the keys of modules the stage does not build
    (:data:`SEMANTIC_ONLY` for A, :data:`ADAPTER_ONLY` without an adapter).

    Example
    -------
    >>> sorted(ignored_settings("B", {"use_adapter": False}) - NOT_TRAINING)[:2]
    ['adapter_dropout', 'adapter_gate_init']
    >>> ignored_settings("C", {"use_adapter": True}) == NOT_TRAINING
    True
    """
    if stage == "A":
        return NOT_TRAINING | SEMANTIC_ONLY
    return NOT_TRAINING if settings.get("use_adapter") else NOT_TRAINING | ADAPTER_ONLY


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
    check_speaker_mode(speaker_mode)
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
    check_speaker_mode(hp["speaker_mode"])
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


def loader_kwargs(hp: dict, dataset: DynamicItemDataset, train: bool, device: str | torch.device = "cpu") -> dict:
    """DataLoader options: length-bucketed dynamic batches for training when
    ``dynamic_batching`` is set (at most ``batch_size`` utterances and
    ``max_batch_seconds`` of padded audio each), fixed ``batch_size``
    otherwise; batches in pinned memory when the run's ``device`` is a GPU,
    so that moving them there does not hold up the host.

    Example
    -------
    >>> hp = {"num_workers": 0, "dynamic_batching": False, "batch_size": 2}
    >>> loader_kwargs(hp, None, train=True, device="cuda:1")["pin_memory"], loader_kwargs(hp, None, False)["pin_memory"]
    (True, False)
    """
    kwargs = {"num_workers": hp["num_workers"], "collate_fn": collate_readable,  # unreadable files: skipped
              "pin_memory": torch.device(device).type == "cuda"}
    if train and hp["dynamic_batching"]:
        kwargs["batch_sampler"] = make_train_sampler(dataset, hp["max_batch_seconds"], hp["num_buckets"], hp["seed"],
                                                     max_batch_size=hp["batch_size"])
    else:
        kwargs.update(batch_size=hp["batch_size"], shuffle=train)
    return kwargs


def with_teacher(teacher: "TeacherFeatures", manifests: dict[str, Path], stage: str = "6") -> set[str]:
    """The training and validation items that have teacher features; the
    others are logged with a count and left out.

    Arguments
    ---------
    teacher : TeacherFeatures
        Stage 4's features.
    manifests : dict
        ``{split: tokens/<split>.json}``, with ``train``.
    stage : str
        The stage number for the log lines.

    Returns
    -------
    set
        The utterance ids to keep.
    """
    keep = set()
    for split, path in manifests.items():
        items = read_manifest(path)
        kept, dropped = teacher.available(items)
        if dropped:
            utt_id, reason = next(iter(sorted(dropped.items())))
            log(stage, f"{split}: {len(dropped)} of {len(items)} utterances have no teacher features and are left "
                       f"out (e.g. {utt_id}: {reason})")
        if split == "train" and not kept:
            raise DataError(f"{path}: no training utterance has teacher features (see teacher/report.json)")
        keep |= kept
    return keep


def build_generator(hp: dict, stage: str, sem_dim: int = 0) -> torch.nn.Module:
    """The generator of a stage: the model file's ``generator`` for A; for B
    and C a :class:`~semtts.lobes.vits.semantic_vits.SemanticVITS` built
    around it with the stage's semantic switches.

    Arguments
    ---------
    hp : dict
        The stage hparams (``generator``; for B and C ``use_sempred``,
        ``use_adapter``, ``sempred_hidden``, ``sempred_kernel_size``,
        ``sempred_layers``, ``sempred_dropout``, ``adapter_heads``,
        ``adapter_dropout``, ``adapter_gate_init``).
    stage : str
        ``"A"``, ``"B"`` or ``"C"``.
    sem_dim : int
        The teacher feature width (B and C).

    Returns
    -------
    torch.nn.Module
    """
    if stage == "A":
        return hp["generator"]
    if stage not in PREVIOUS_STAGE:
        raise ConfigError(f"training stage must be A, B or C, got {stage!r}")
    return SemanticVITS(
        hp["generator"], sem_dim, use_sempred=hp["use_sempred"], use_adapter=hp["use_adapter"],
        sempred_hidden=hp["sempred_hidden"], sempred_kernel_size=hp["sempred_kernel_size"],
        sempred_layers=hp["sempred_layers"], sempred_dropout=hp["sempred_dropout"],
        adapter_heads=hp["adapter_heads"], adapter_dropout=hp["adapter_dropout"],
        adapter_gate_init=hp["adapter_gate_init"],
    )


def training_settings(hp: dict, extra: dict, tokens_done: dict) -> dict:
    """What a training stage records in its ``done`` marker: every plain
    hparam (those of :data:`NOT_TRAINING` are recorded but not compared), the
    derived model sizes, and stage 2's settings.

    Arguments
    ---------
    hp : dict
        The stage hparams.
    extra : dict
        The derived sizes (:func:`model_sizes`).
    tokens_done : dict
        The settings of stage 2's ``done`` marker.

    Returns
    -------
    dict
        The settings (spk_emb and teacher are added by :func:`train`).

    Example
    -------
    >>> training_settings({"lr": 0.1, "nj": 2, "net": object()}, {"n_vocab": 5}, {"token_type": "phn"})
    {'lr': 0.1, 'nj': 2, 'n_vocab': 5, 'tokens_done': {'token_type': 'phn'}}
    """
    plain = {k: v for k, v in hp.items() if isinstance(v, (str, int, float, bool, list)) or v is None}
    return {**plain, **extra, "tokens_done": tokens_done}


def _more_epochs(number: str, out_dir: Path, settings: dict, epochs: int, ignore: frozenset[str]) -> bool:
    """True when a finished stage, same settings (but ``ignore``), trained
    fewer than ``epochs``: it then continues from its last checkpoint."""
    marker = out_dir / DONE_NAME
    if not marker.is_file():
        return False
    done = read_done(marker, f"stage {number}")
    trained = (done.get("summary") or {}).get("epochs")
    if changed_settings(done["settings"], comparable_settings(settings), ignore) or trained is None \
            or trained >= epochs:
        return False
    log(number, f"continuing from epoch {trained} to {epochs} (number_of_epochs raised)")
    return True


def _set_aside_checkpoints(number: str, save_folder: Path) -> None:
    """``--force``: train afresh, the previous checkpoints kept in a dated folder beside them (by
    the main process; the others wait for it)."""
    if if_main_process() and save_folder.is_dir() and any(save_folder.iterdir()):
        aside = save_folder.with_name(f"{save_folder.name}.before-{time.strftime('%Y%m%d-%H%M%S')}")
        save_folder.rename(aside)
        log(number, f"--force: training starts afresh; the previous checkpoints are kept in {aside}")
    ddp_barrier()


def per_process_run_options(run_opts: "RunOptions") -> "RunOptions":
    """Under torchrun (``run.sh --ngpu N``), the run options of this process:
    a CUDA ``--device`` becomes the GPU of its local rank (a ``--device
    cuda:N`` meant for one process would put every process on GPU N;
    SpeechBrain infers ``cuda:<local rank>`` only without ``--device``), and
    a CPU device gets the gloo backend (NCCL is for GPUs). More processes on
    a machine than GPUs is a one-line error.

    Arguments
    ---------
    run_opts : RunOptions or dict
        SpeechBrain's run options (a changed copy is returned).

    Returns
    -------
    RunOptions or dict
        ``run_opts``, or a copy with ``device`` / ``distributed_backend`` set.

    Example
    -------
    >>> import os
    >>> import speechbrain as sb
    >>> opts = sb.parse_arguments(["hparams.yaml", "--device", "cpu"])[1]
    >>> os.environ["LOCAL_RANK"] = "1"
    >>> try:
    ...     mine = per_process_run_options(opts)
    ... finally:
    ...     del os.environ["LOCAL_RANK"]
    >>> mine["distributed_backend"], "distributed_backend" in mine.overridden_args, opts["distributed_backend"]
    ('gloo', True, 'nccl')
    >>> per_process_run_options(opts) is opts  # a single process
    True
    """
    local_rank = os.environ.get("LOCAL_RANK")
    device = run_opts["device"]
    if local_rank is None:
        return run_opts
    changes = {}
    if device is not None and str(device).startswith("cpu"):
        if run_opts["distributed_backend"] == "nccl":
            changes["distributed_backend"] = "gloo"
    else:
        processes, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", "1")), torch.cuda.device_count()
        if processes > gpus:
            raise ConfigError(f"--ngpu {processes}: this machine has {gpus} GPU(s); give at most {gpus} "
                              "(or --device cpu to try DDP on the CPU)")
        if device is not None and str(device) not in ("cuda", f"cuda:{local_rank}"):
            if local_rank == "0":
                log("train", f"--device {device} with several processes: process i uses cuda:i (its local rank)")
            changes["device"] = f"cuda:{local_rank}"
    if not changes:
        return run_opts
    if dataclasses.is_dataclass(run_opts):  # SpeechBrain >= 1.1: frozen, and the Brain reads only typed options
        return dataclasses.replace(run_opts, **changes, overridden_args=set(run_opts.overridden_args) | set(changes))
    return {**run_opts, **changes}  # SpeechBrain 1.0: a dict


def train(stage: str, argv: list[str] | None = None) -> int:
    """Train stage ``stage`` (``"A"``, ``"B"`` or ``"C"``) from a command line."""
    keep_freed_memory()
    from semtts.brain import VITSBrain
    from semtts.checkpoint import make_checkpointer

    if stage not in STAGE_FILES:
        raise ConfigError(f"training stage must be A, B or C, got {stage!r}")
    number = str(5 + "ABC".index(stage))
    args = parse_stage_args(argv)
    run_opts = per_process_run_options(args.run_opts)
    ddp_init_group(run_opts)  # under torchrun (run.sh --ngpu N): one process per GPU; else nothing
    include = ("model_hparams", STAGE_FILES[stage])
    probe = load_stage_hparams(args.hparams_file, args.overrides, include=include[1:])
    check_run_options(run_opts, probe)  # before --force sets checkpoints aside or the marker goes
    cudnn_benchmark = probe.get("cudnn_benchmark", False)
    if not isinstance(cudnn_benchmark, bool):
        raise ConfigError(f"cudnn_benchmark: {cudnn_benchmark!r} is not True or False")
    vectors = load_speaker_vectors(probe)  # start-up check of spk_emb/meta.json, before anything is built
    teacher = None
    if stage != "A":
        from semtts.data.teacher_features import TeacherFeatures  # imports whisper: training only

        teacher = TeacherFeatures.load(probe)  # start-up check of teacher/meta.json
    extra, speakers = model_sizes(probe["output_folder"], probe["speaker_mode"], vectors.dim if vectors else 0)
    tokens_dir = Path(probe["output_folder"]) / "tokens"
    manifests = {split: tokens_dir / f"{split}.json" for split in ("train", "valid")}
    spk_embeds = None if vectors is None else training_vectors(vectors, manifests, probe["speaker_mode"], number)
    keep = None if teacher is None else with_teacher(teacher, manifests, number)
    seed_everything(probe["seed"])  # before the model is built: reproducible init
    hp = load_stage_hparams(args.hparams_file, args.overrides, include=include, extra=extra)
    generator = build_generator(hp, stage, teacher.dim if teacher else 0)
    out_dir = stage_dir(hp, stage)
    settings = training_settings(hp, extra, read_done(tokens_dir / "done", "stage 2 (text frontend)")["settings"])
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1:  # (batch_size is per process: the effective batch changes with it)
        settings["processes"] = processes
    if vectors is not None:
        settings["spk_emb"] = {key: vectors.meta.get(key) for key in ("model", "embed_dim", "ckpt_sha256")}
    if teacher is not None:
        settings["sem_dim"] = teacher.dim  # stage 8 builds the model from it
        settings["teacher"] = {key: teacher.meta.get(key) for key in ("model", "sha256", "layer", "dim")}
    ignore = ignored_settings(stage, settings)
    if stage in PREVIOUS_STAGE:  # B, C: which checkpoint of the previous stage they start from
        settings["previous_stage"] = previous_stage_fingerprint(hp, stage)
        if not args.force and not check_finished_stage(out_dir / DONE_NAME, stage, settings["previous_stage"]):
            ignore |= {"previous_stage"}  # a marker of older semtts: logged as not checked

    def body() -> dict:
        if if_main_process():
            write_json_atomic(out_dir / "speakers.json", speakers)
        datasets = dataio_prepare(
            manifests,
            data_root=hp["data_folder"],
            cache_root=Path(hp["output_folder"]) / "data" / "audio_cache",
            sample_rate=hp["sample_rate"],
            add_blank=hp["add_blank"],
            speaker_table=speakers,
            spk_embeds=spk_embeds,
            teacher=teacher,
            keep=keep,
            spectrogram=hp["spectrogram"],  # items too short to train on are skipped, named
        )
        init_from_previous_stage(hp, stage, generator, hp["discriminator"])
        torch.backends.cudnn.benchmark = cudnn_benchmark  # (CUDA only: the CPU ignores it)
        checkpointer = make_checkpointer(hp["save_folder"], generator, hp["discriminator"], hp["epoch_counter"])
        brain = VITSBrain(
            modules={"generator": generator, "discriminator": hp["discriminator"]},
            hparams=hp,
            run_opts=run_opts,
            checkpointer=checkpointer,
        )
        brain.fit(
            hp["epoch_counter"],
            datasets["train"],
            datasets["valid"],
            train_loader_kwargs=loader_kwargs(hp, datasets["train"], train=True, device=brain.device),
            valid_loader_kwargs=loader_kwargs(hp, datasets["valid"], train=False, device=brain.device),
        )
        return {"epochs": hp["number_of_epochs"]}

    force = args.force or _more_epochs(number, out_dir, settings, hp["number_of_epochs"], ignore)
    if args.force:
        _set_aside_checkpoints(number, Path(hp["save_folder"]))
    ran = run_stage(f"{number} train {stage}", out_dir, settings, body, force=force, ignore=ignore)
    if ran:
        log(number, f"checkpoints in {hp['save_folder']}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # (NCCL warns of a leak at exit otherwise)
    return 0
