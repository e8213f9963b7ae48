"""Stage 10: pack a trained stage into a self-contained inference folder.

The generator of stage ``pack_stage`` (A, B or C; its ``pack_checkpoint``:
``last`` or ``best``) is written with everything inference needs to
``<output_folder>/packed/`` (see :mod:`semtts.pack` for the layout), which
:meth:`semtts.pretrained.SemTTS.from_hparams` and the ``semtts`` console
script load without any training code. In the embedding modes the folder
also holds the training speakers' mean CAM++ embeddings (over the training
split) and stage 3's metadata, so ``--speaker ID`` works as in stage 8.

    python -m semtts.stages.pack recipes/mini/hparams/corpus.yaml [--pack_stage C]
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import yaml

from semtts.data.manifest import read_manifest
from semtts.data.speaker_vectors import SpeakerVectors
from semtts.errors import ConfigError, DataError, entry_point
from semtts.extract.common import file_sha256
from semtts.extract.speaker import resolve_checkpoint
from semtts.pack import pack_model
from semtts.stages.common import load_stage_hparams, log, parse_stage_args, read_done, run_stage
from semtts.stages.synthesize import load_generator
from semtts.stages.train import STAGE_FILES, build_generator, load_speaker_vectors, model_sizes, stage_dir
from semtts.text.tokenizer import TokenList

__all__ = ["SETTINGS", "training_means", "pack_experiment", "main"]

SETTINGS = ("pack_stage", "pack_checkpoint", "speaker_mode", "token_type", "language", "cleaner", "add_blank")


def training_means(vectors: SpeakerVectors, train_items: dict[str, dict], speakers: list[str]) -> np.ndarray:
    """``[S, D]`` the mean CAM++ embedding of each speaker over its embedded
    training utterances, in ``speakers`` order.

    Arguments
    ---------
    vectors : SpeakerVectors
        Stage 3's embeddings.
    train_items : dict
        The training manifest (``{utt_id: {"spk": ...}}``).
    speakers : list of str
        The speaker table order.

    Returns
    -------
    numpy.ndarray

    Example
    -------
    >>> from semtts.data.speaker_vectors import SpeakerVectors
    >>> v = SpeakerVectors({"a1": np.ones(2, np.float32), "a2": np.zeros(2, np.float32)}, {}, {}, {})
    >>> training_means(v, {"a1": {"spk": "a"}, "a2": {"spk": "a"}}, ["a"])
    array([[0.5, 0.5]], dtype=float32)
    """
    rows = []
    for spk in speakers:
        own = [vectors.utt[u] for u, item in train_items.items() if item["spk"] == spk and u in vectors.utt]
        if not own:
            raise DataError(f"speaker {spk}: no embedded training utterance (see spk_emb/report.json)")
        rows.append(np.mean(np.stack(own), axis=0))
    return np.stack(rows).astype(np.float32)


def campplus_source(hp: dict, meta: dict) -> tuple[dict, Path | None]:
    """The CAM++ that made stage 3's vectors, for the packed folder.

    A pretrained checkpoint (``campplus_ckpt``, a path or a URL already
    downloaded by stage 3) must have the sha256 stage 3 recorded in its
    ``meta.json``: packing with another CAM++ would pair the model with
    vectors it never saw. A random-init CAM++ is rebuilt from the seed stage 3 used.

    Arguments
    ---------
    hp : dict
        ``campplus_ckpt``, ``campplus_embed_dim``, ``campplus_cache_dir``.
    meta : dict
        Stage 3's ``spk_emb/meta.json`` (``ckpt_sha256``, ``embed_dim``).

    Returns
    -------
    campplus : dict
        ``ckpt``, ``embed_dim``, ``seed``, ``random_init`` for ``hyperparams.yaml``.
    path : Path or None
        The checkpoint file to copy into the folder (None for random init).

    Example
    -------
    >>> campplus_source({"campplus_ckpt": None, "campplus_embed_dim": 192},
    ...                 {"ckpt_sha256": "random-init-seed7", "embed_dim": 192})
    ({'ckpt': None, 'embed_dim': 192, 'seed': 7, 'random_init': True}, None)
    """
    identity = str(meta.get("ckpt_sha256", ""))
    embed_dim = int(meta.get("embed_dim", hp["campplus_embed_dim"]))
    if identity.startswith("random-init-seed"):
        seed = int(identity[len("random-init-seed"):])
        return {"ckpt": None, "embed_dim": embed_dim, "seed": seed, "random_init": True}, None
    if not hp["campplus_ckpt"]:
        raise ConfigError("pack: stage 3 embedded with a pretrained CAM++; give its campplus_ckpt to pack it")
    path = resolve_checkpoint(hp["campplus_ckpt"], hp["campplus_cache_dir"])
    if file_sha256(path) != identity:
        raise ConfigError(f"pack: {path} is not the CAM++ stage 3 embedded with (sha256 {identity[:12]}... in "
                          "spk_emb/meta.json); give that checkpoint as campplus_ckpt")
    return {"ckpt": str(hp["campplus_ckpt"]), "embed_dim": embed_dim, "seed": 0, "random_init": False}, path


def pack_experiment(hparams_file: str, overrides: str | dict, stage: str, which: str) -> tuple[dict, dict]:
    """Load a trained stage and pack it (the body of stage 10, without the ``done`` marker).

    Arguments
    ---------
    hparams_file : str
        The recipe's ``corpus.yaml``.
    overrides : str or dict
        Command-line overrides.
    stage : str
        ``"A"``, ``"B"`` or ``"C"``.
    which : str
        ``"last"`` or ``"best"`` checkpoint.

    Returns
    -------
    hp : dict
        The merged hparams.
    summary : dict
        What was packed (folder, checkpoint, epoch, step).
    """
    include = ("model_hparams", STAGE_FILES[stage])
    probe = load_stage_hparams(hparams_file, overrides, include=include[1:])
    vectors = load_speaker_vectors(probe)
    extra, _ = model_sizes(probe["output_folder"], probe["speaker_mode"], vectors.dim if vectors else 0)
    hp = load_stage_hparams(hparams_file, overrides, include=include, extra=extra)
    trained = stage_dir(hp, stage)
    if not (trained / "done").is_file():
        raise DataError(f"{trained}: stage {stage} has not finished training")
    done = read_done(trained / "done", f"stage {5 + 'ABC'.index(stage)} (train {stage})")
    trained_mode = done["settings"].get("speaker_mode", hp["speaker_mode"])
    if trained_mode != hp["speaker_mode"]:
        raise ConfigError(f"{trained}: stage {stage} was trained with speaker_mode {trained_mode}, but the hparams "
                          f"say {hp['speaker_mode']} (pass --speaker_mode {trained_mode})")
    table = read_manifest(trained / "speakers.json", check=False)
    speakers = sorted(table, key=table.get)
    generator = build_generator(hp, stage, done["settings"].get("sem_dim", 0))
    checkpoint = load_generator(hp["save_folder"], generator, which)
    meta_file = Path(hp["save_folder"]) / checkpoint / "CKPT.yaml"
    ckpt_meta = yaml.safe_load(meta_file.read_text()) if meta_file.is_file() else {}
    training = {"checkpoint": checkpoint, "epoch": ckpt_meta.get("epoch"), "step": ckpt_meta.get("step")}
    tokens_dir = Path(hp["output_folder"]) / "tokens"
    spk_means = campplus = cam_meta = cam_file = None
    if vectors is not None:
        spk_means = training_means(vectors, read_manifest(tokens_dir / "train.json"), speakers)
        cam_meta = vectors.meta
        campplus, cam_file = campplus_source(hp, cam_meta)
    whisper_random = False
    if stage != "A":
        teacher_meta = Path(hp["output_folder"]) / "teacher" / "meta.json"
        if teacher_meta.is_file():
            whisper_random = str(json.loads(teacher_meta.read_text()).get("sha256", "")).startswith("random")
    bpe = tokens_dir / "bpe.model" if hp["token_type"] == "bpe" else None
    out = pack_model(
        Path(hp["output_folder"]) / "packed", generator, hp, stage, TokenList.load(tokens_dir / "tokens.txt"),
        hp["speaker_mode"], {k: hp[k] for k in ("token_type", "language", "cleaner", "add_blank")},
        speakers=speakers, spk_means=spk_means, campplus=campplus, campplus_meta=cam_meta, campplus_file=cam_file,
        bpe_model=bpe,
        training=training, corpus=hp.get("corpus"), whisper_random_init=whisper_random,
    )
    return hp, {"folder": str(out)} | training


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 10 entry point."""
    args = parse_stage_args(argv)
    probe = load_stage_hparams(args.hparams_file, args.overrides)
    stage, which = probe["pack_stage"], probe.get("pack_checkpoint", "last")
    if stage not in STAGE_FILES:
        raise ConfigError(f"pack_stage must be A, B or C, got {stage!r}")
    out_dir = Path(probe["output_folder"]) / "packed"
    settings = {key: probe.get(key) for key in SETTINGS} | {"pack_checkpoint": which}
    trained_done = stage_dir(probe, stage) / "done"  # a retrained stage is packed again
    settings["trained"] = hashlib.sha256(trained_done.read_bytes()).hexdigest() if trained_done.is_file() else None

    def body() -> dict:
        _, summary = pack_experiment(args.hparams_file, args.overrides, stage, which)
        log("10", f"packed stage {stage} ({summary['checkpoint']}) into {out_dir}")
        return summary

    run_stage(f"10 pack ({stage})", out_dir, settings, body, force=args.force)
    return 0


if __name__ == "__main__":
    main()
