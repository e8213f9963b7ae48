"""Packing a trained generator into a self-contained inference folder, and
rebuilding it from there.

A packed folder holds

- ``hyperparams.yaml``: plain YAML (no tags): the generator's constructor
  arguments (``generator``), the semantic wrapper's (``semantic``, stages B
  and C, else null), the spectrogram settings, the frontend settings
  (``token_type``, ``language``, ``cleaner``, ``add_blank``), the
  ``speaker_mode`` and the CAM++ source (``campplus``: ``ckpt``,
  ``embed_dim``, ``seed``, ``random_init``);
- ``generator.safetensors`` (when the ``safetensors`` package is importable)
  or ``generator.pt`` (a ``torch.save`` state dict, weight norm folded in);
- ``tokens.txt`` (and ``bpe.model``);
- ``speakers.json`` (the training speakers, in table order) and, in the
  embedding modes, ``spk_mean.npy`` ``[S, D]`` (their training-split mean
  CAM++ embeddings), ``campplus_meta.json`` and, for a pretrained CAM++,
  its weights ``campplus.bin`` (so that zero-shot voices need nothing
  outside the folder; checked against the sha256 stage 3 recorded);
- ``MODEL_CARD.md``.

The folder is written whole in a sibling ``<name>.tmp-<pid>`` and swapped in
by renames (:func:`semtts.durable.replace_folder`: the old folder moved aside
to ``.replaced+<name>``, then deleted), so a killed repack leaves the
complete old folder or the complete new one; :func:`recover_interrupted_pack`
(run by :func:`pack_model` first) restores an old folder left aside and
removes leftovers.

Nothing here imports training code: :mod:`semtts.pretrained` rebuilds the
generator with :func:`build_packed_generator` and :func:`load_weights`.

Example
-------
>>> import tempfile
>>> from semtts.lobes.vits.synthesizer import VITSSynthesizer
>>> from semtts.text.tokenizer import TokenList
>>> hp = {"n_vocab": 6, "n_fft": 16, "segment_size": 16, "hop_length": 8, "inter_channels": 4,
...     "hidden_channels": 8, "filter_channels": 8, "n_heads": 2, "n_layers": 1, "kernel_size": 3,
...     "p_dropout": 0.0, "resblock": "2", "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 2]],
...     "upsample_rates": [4, 2], "upsample_initial_channel": 8, "upsample_kernel_sizes": [8, 4],
...     "posterior_n_layers": 1, "flow_n_layers": 1, "use_sdp": False, "dp_filter_channels": 8,
...     "gin_channels": 4, "sample_rate": 8000, "win_length": 16, "n_mels": 4}
>>> generator = VITSSynthesizer(**generator_kwargs(hp))
>>> folder = pack_model(tempfile.mkdtemp(), generator, hp, "A", TokenList.build([["a", "b", "c"]]), speaker_mode="sid",
...                     frontend={"token_type": "char", "language": "en-us", "cleaner": "english"})
>>> rebuilt = build_packed_generator(read_packed_hparams(folder))
>>> _ = rebuilt.load_state_dict(load_weights(folder))
>>> sorted(p.name for p in folder.iterdir())[:3]
['MODEL_CARD.md', 'generator.pt', 'hyperparams.yaml']
"""

import importlib.util
import inspect
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from semtts.data.manifest import write_json_atomic
from semtts.durable import aside_folders, recover_replaced_folder, replace_folder
from semtts.errors import ConfigError, DataError, first_line
from semtts.lobes.vits.semantic_vits import SemanticVITS
from semtts.lobes.vits.synthesizer import VITSSynthesizer
from semtts.text.tokenizer import TokenList

__all__ = ["SEMANTIC_KEYS", "SPECTROGRAM_KEYS", "generator_kwargs", "build_packed_generator", "save_weights",
           "load_weights", "weights_file", "read_packed_hparams", "check_packed_sizes", "recover_interrupted_pack",
           "pack_model"]

logger = logging.getLogger(__name__)

SEMANTIC_KEYS = ("use_sempred", "use_adapter", "sempred_hidden", "sempred_kernel_size", "sempred_layers",
                 "sempred_dropout", "adapter_heads", "adapter_dropout", "adapter_gate_init")
"""The stage B/C hparams of :class:`~semtts.lobes.vits.semantic_vits.SemanticVITS`."""
SPECTROGRAM_KEYS = ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels")
HPARAMS_NAME = "hyperparams.yaml"
CAMPPLUS_FILE = "campplus.bin"
"""The packed copy of the pretrained CAM++ the speaker vectors were made with."""
WEIGHT_NAMES = ("generator.safetensors", "generator.pt")
REPLACED = (HPARAMS_NAME, *WEIGHT_NAMES, "tokens.txt", "bpe.model", "speakers.json", "spk_mean.npy",
            "campplus_meta.json", CAMPPLUS_FILE, "MODEL_CARD.md", "model.onnx", "done")
"""What a repack does not carry over from the old folder (an exported graph and the stage's ``done``
marker belong to the old weights); any other file there is copied into the new folder."""


def _has_safetensors() -> bool:
    return importlib.util.find_spec("safetensors") is not None


def generator_kwargs(hp: dict) -> dict[str, Any]:
    """The :class:`VITSSynthesizer` constructor arguments implied by flat
    model hparams (``spec_channels = n_fft // 2 + 1``, ``segment_frames =
    segment_size // hop_length``, the rest by name; absent optional keys keep
    their defaults).

    Arguments
    ---------
    hp : dict
        Model hparams (e.g. ``hparams/model/vits_tiny.yaml`` with ``n_vocab``,
        ``n_speakers`` and ``spk_embed_dim`` set).

    Returns
    -------
    dict
        Plain values, YAML-serialisable.
    """
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(VITSSynthesizer.__init__).parameters.items():
        if name == "self":
            continue
        if name == "spec_channels":
            value = int(hp["n_fft"]) // 2 + 1
        elif name == "segment_frames":
            value = int(hp["segment_size"]) // int(hp["hop_length"])
        elif name in hp:
            value = hp[name]
        elif param.default is inspect.Parameter.empty:
            raise ConfigError(f"pack: the hparams lack '{name}', a generator setting")
        else:
            continue
        kwargs[name] = json.loads(json.dumps(value))  # plain lists, not hyperpyyaml types
    kwargs["mas_backend"] = "cpu"  # inference never aligns
    return kwargs


def build_packed_generator(packed: dict, fold: bool = True) -> torch.nn.Module:
    """Rebuild the generator of a packed model (weight norm already folded,
    eval mode), ready for :func:`load_weights`.

    Arguments
    ---------
    packed : dict
        The packed ``hyperparams.yaml`` (:func:`read_packed_hparams`).
    fold : bool
        Fold the weight norm (False: the training layout, to load a training state dict).

    Returns
    -------
    torch.nn.Module
        A :class:`VITSSynthesizer` or, for stages B and C, a :class:`SemanticVITS`.
    """
    try:
        base = VITSSynthesizer(**packed["generator"])
        semantic = packed.get("semantic")
        model = SemanticVITS(base, **semantic) if semantic else base
    except (TypeError, ValueError, KeyError, AttributeError) as err:  # edited or foreign values
        raise DataError(f"{HPARAMS_NAME}: cannot build the generator from its 'generator' and 'semantic' "
                        f"sections ({first_line(err)})") from None
    if fold:
        model.remove_weight_norm()
    return model.eval()


def weights_file(folder: str | Path) -> Path:
    """The weights file of a packed folder (``generator.safetensors`` or ``generator.pt``)."""
    folder = Path(folder)
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no generator.safetensors or generator.pt (not a packed semtts model)")


def save_weights(state: dict[str, torch.Tensor], folder: str | Path) -> Path:
    """Write a state dict as ``generator.safetensors`` (if the package is
    importable) or ``generator.pt``; returns the file."""
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if _has_safetensors():
        from safetensors.torch import save_file

        path = Path(folder) / "generator.safetensors"
        save_file(state, str(path))
    else:
        path = Path(folder) / "generator.pt"
        torch.save(state, path)
    return path


def load_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Read the generator state dict of a packed folder (tensors only:
    ``weights_only=True`` for ``.pt``)."""
    path = weights_file(folder)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise ConfigError(f"{path}: reading it needs the 'safetensors' package (pip install safetensors)") from None
    except Exception as err:  # foreign or truncated files raise many types
        raise DataError(f"{path}: cannot read the weights ({first_line(err)})") from None


PACKED_SECTIONS = {"generator": dict, "spectrogram": dict, "frontend": dict, "speaker_mode": str, "stage": str}
"""The sections every packed ``hyperparams.yaml`` has, and their types."""
OPTIONAL_SECTIONS = {"semantic": dict, "campplus": dict, "speakers": list}
"""Sections some packed models have (None where absent)."""
FRONTEND_KEYS = ("token_type", "language", "cleaner", "add_blank")
"""The keys of the ``frontend`` section."""
_KIND_NAMES = {dict: "mapping", str: "string", list: "list"}


def read_packed_hparams(folder: str | Path) -> dict:
    """Read and check ``<folder>/hyperparams.yaml``: its sections and their
    types (:data:`PACKED_SECTIONS`, :data:`OPTIONAL_SECTIONS`), the
    frontend's keys, and the names of the generator's arguments.

    Raises
    ------
    DataError
        The folder or file is missing or malformed (the message names it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        aside = aside_folders(folder, legacy=True)
        hint = f" (an interrupted repack left {aside[-1]}: run stage 10 again to restore it)" if aside else ""
        raise DataError(f"{folder}: model folder not found{hint}")
    path = folder / HPARAMS_NAME
    if not path.is_file():
        raise DataError(f"{path}: not found (not a packed semtts model; make one with stage 10)")
    try:
        packed = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid YAML ({first_line(err)})") from None
    missing = [k for k in PACKED_SECTIONS if not isinstance(packed, dict) or k not in packed]
    if missing:
        raise DataError(f"{path}: lacks {', '.join(missing)}")
    for key, kind in {**PACKED_SECTIONS, **OPTIONAL_SECTIONS}.items():
        if (key in PACKED_SECTIONS or packed.get(key) is not None) and not isinstance(packed.get(key), kind):
            raise DataError(f"{path}: '{key}' must be a {_KIND_NAMES[kind]}, got {packed.get(key)!r:.60}")
    lacking = [key for key in FRONTEND_KEYS if key not in packed["frontend"]]
    if lacking:
        raise DataError(f"{path}: the 'frontend' section lacks {', '.join(lacking)}")
    for key, builder in (("generator", VITSSynthesizer), ("semantic", SemanticVITS)):
        if packed.get(key) is None:
            continue
        try:  # the names only (values are checked when the model is built)
            args = (None,) if builder is SemanticVITS else ()
            inspect.signature(builder).bind(*args, **packed[key])
        except TypeError as err:
            raise DataError(f"{path}: the '{key}' section does not fit this semtts ({err})") from None
    return packed


def check_packed_sizes(packed: dict, n_tokens: int, spk_dim: int | None = None,
                       folder: str | Path | None = None) -> None:
    """Check that the sizes a packed model is made of agree: the token list
    and the generator's ``n_vocab``; in the embedding modes the CAM++
    ``embed_dim``, the generator's ``spk_embed_dim`` and the width of the
    speakers' mean embeddings; in ``sid`` mode the speakers and ``n_speakers``.

    Arguments
    ---------
    packed : dict
        The packed ``hyperparams.yaml`` (or the one being packed).
    n_tokens : int
        The size of the token list (``tokens.txt``).
    spk_dim : int, optional
        The width of the mean embeddings (``spk_mean.npy``), when known.
    folder : str or Path, optional
        The packed folder, to name its files (None: packing; the messages start with ``pack:``).

    Raises
    ------
    DataError
        One line naming the file and both sizes.

    Example
    -------
    >>> check_packed_sizes({"generator": {"n_vocab": 40}, "speaker_mode": "sid"}, 39)
    Traceback (most recent call last):
    ...
    semtts.errors.DataError: pack: tokens.txt holds 39 tokens, but the generator's n_vocab is 40
    """
    def name(file: str) -> str:
        return str(Path(folder) / file) if folder is not None else f"pack: {file}"

    gen = packed["generator"]
    yaml_name = name(HPARAMS_NAME) if folder is not None else "pack"
    n_vocab = int(gen.get("n_vocab") or 0)
    if n_tokens != n_vocab:
        tokens_name = "bpe.model" if (packed.get("frontend") or {}).get("token_type") == "bpe" else "tokens.txt"
        raise DataError(f"{name(tokens_name)} holds {n_tokens} tokens, but the generator's n_vocab is {n_vocab}")
    gen_dim = int(gen.get("spk_embed_dim") or 0)
    if packed["speaker_mode"] in ("speaker", "utterance"):
        cam_dim = (packed.get("campplus") or {}).get("embed_dim")
        if cam_dim is None or int(cam_dim) != gen_dim:
            raise DataError(f"{yaml_name}: the CAM++ embed_dim is {cam_dim}, but the generator's spk_embed_dim "
                            f"is {gen_dim}")
        if spk_dim is not None and spk_dim != gen_dim:
            raise DataError(f"{name('spk_mean.npy')}: the mean embeddings are {spk_dim}-d, but the generator's "
                            f"spk_embed_dim is {gen_dim}")
    elif gen_dim:
        raise DataError(f"{yaml_name}: speaker_mode {packed['speaker_mode']} takes no speaker embeddings, but the "
                        f"generator's spk_embed_dim is {gen_dim}")
    n_speakers, speakers = int(gen.get("n_speakers") or 0), len(packed.get("speakers") or [])
    if packed["speaker_mode"] == "sid" and n_speakers and speakers > n_speakers:
        raise DataError(f"{name('speakers.json')} lists {speakers} speakers, but the generator's n_speakers is "
                        f"{n_speakers}")


def _partial_builds(out: Path) -> list[Path]:
    """The ``<out>.tmp-<pid>`` siblings: folders :func:`pack_model` was building when it was killed."""
    prefix = f"{out.name}.tmp-"
    if not out.name or not out.parent.is_dir():
        return []
    return [p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.name[len(prefix):].isdigit()]


def recover_interrupted_pack(out_dir: str | Path) -> bool:
    """Undo what a killed :func:`pack_model` left next to ``out_dir``: when
    the folder is missing but the old one was moved aside (``.replaced+<name>``,
    or ``<name>.old-<pid>`` of earlier versions; always whole, as it was
    renamed in one step), rename it back
    (:func:`semtts.durable.recover_replaced_folder`); then delete the leftover
    ``<name>.tmp-<pid>`` (partial builds) and the other folders left aside
    (replaced folders). Two packs into one folder at the same time are not
    supported.

    Arguments
    ---------
    out_dir : str or Path
        The packed folder.

    Returns
    -------
    bool
        True if an old folder was restored.
    """
    out = Path(out_dir)
    restored, _ = recover_replaced_folder(out, legacy=True)
    if restored is not None:
        logger.warning("%s: restored from %s, left aside by an interrupted repack", out, restored.name)
    for leftover in _partial_builds(out):
        shutil.rmtree(leftover, ignore_errors=True)
    return restored is not None


def _carry_over(old: Path, new: Path) -> None:
    """Copy into ``new`` what ``old`` holds besides a pack's own files (:data:`REPLACED`)."""
    if not old.is_dir():
        return
    for entry in old.iterdir():
        if entry.name in REPLACED or (entry.name.startswith(".") and ".tmp" in entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, new / entry.name, follow_symlinks=False)


def _model_card(packed: dict, n_params: int, training: dict) -> str:
    cam = packed.get("campplus") or {}
    lines = [
        f"# semtts model: {packed.get('corpus', 'unknown corpus')}, stage {packed['stage']}", "",
        f"- corpus: {packed.get('corpus', 'unknown')}",
        f"- training stage: {packed['stage']} ({'VITS' if packed['stage'] == 'A' else 'VITS + SemPred'}"
        f"{' + adapter' if packed['stage'] == 'C' else ''})",
        f"- training: {', '.join(f'{k} {v}' for k, v in training.items()) or 'unknown'}",
        f"- parameters (generator): {n_params:,}",
        f"- sample rate: {packed['spectrogram']['sample_rate']} Hz",
        f"- text: {packed['frontend']['token_type']} tokens, language {packed['frontend']['language']}",
        f"- speakers: mode {packed['speaker_mode']}, {len(packed.get('speakers', []))} training speakers", "",
        "Intended use: research and demonstration of multi-speaker text-to-speech and voice conversion. "
        "Do not use it to impersonate people without their consent.",
    ]
    if cam.get("random_init") or packed.get("whisper_random_init"):
        which = " and ".join(n for n, r in (("CAM++", cam.get("random_init")),
                                             ("Whisper", packed.get("whisper_random_init"))) if r)
        lines += ["", f"**Warning**: {which} had random weights in training (a smoke-test setting): the "
                      "speaker vectors and semantics carry no real information and the model is not fit for use."]
    return "\n".join(lines) + "\n"


def pack_model(
    out_dir: str | Path,
    generator: torch.nn.Module,
    hp: dict,
    stage: str,
    token_list: TokenList,
    speaker_mode: str,
    frontend: dict,
    speakers: list[str] | None = None,
    spk_means: np.ndarray | None = None,
    campplus: dict | None = None,
    campplus_meta: dict | None = None,
    campplus_file: str | Path | None = None,
    bpe_model: str | Path | None = None,
    training: dict | None = None,
    corpus: str | None = None,
    whisper_random_init: bool = False,
) -> Path:
    """Write a packed model folder from in-memory objects.

    Arguments
    ---------
    out_dir : str or Path
        The folder to write: built whole in a sibling folder, then swapped
        in (the old folder's files other than a pack's own are carried over).
    generator : torch.nn.Module
        The trained generator (left unchanged; the packed copy has its weight norm folded).
    hp : dict
        Model hparams (see :func:`generator_kwargs`), with the spectrogram
        keys; for stages B and C also :data:`SEMANTIC_KEYS`.
    stage : str
        ``"A"``, ``"B"`` or ``"C"``.
    token_list : TokenList
        The model's tokens.
    speaker_mode : str
        ``sid``, ``speaker`` or ``utterance``.
    frontend : dict
        ``token_type``, ``language``, ``cleaner`` (``add_blank`` defaults to ``hp['add_blank']`` or True).
    speakers : list of str, optional
        The training speakers in table order (``sid``: their ids).
    spk_means : numpy.ndarray, optional
        ``[S, D]`` training-mean CAM++ embeddings of ``speakers`` (embedding modes).
    campplus : dict, optional
        ``ckpt`` (source or None), ``embed_dim``, ``seed``, ``random_init`` (embedding modes).
    campplus_meta : dict, optional
        Stage 3's ``spk_emb/meta.json``.
    campplus_file : str or Path, optional
        The local CAM++ checkpoint the vectors were made with; copied into
        the folder as ``campplus.bin`` (None: random-init CAM++, rebuilt from its seed).
    bpe_model : str or Path, optional
        The sentencepiece model (``token_type`` ``bpe``).
    training : dict, optional
        What is known of the training (epochs, steps, checkpoint), for the card.
    corpus : str, optional
        The corpus name, for the card.
    whisper_random_init : bool
        The Whisper teacher had random weights (stages B, C).

    Returns
    -------
    Path
        ``out_dir``.
    """
    if stage not in ("A", "B", "C"):
        raise ConfigError(f"pack_stage must be A, B or C, got {stage!r}")
    embedded = speaker_mode in ("speaker", "utterance")
    if embedded and (campplus is None or spk_means is None or speakers is None):
        raise ConfigError(f"pack: speaker_mode {speaker_mode} needs the speakers, their mean embeddings and "
                          "the CAM++ settings")
    if spk_means is not None:
        spk_means = np.asarray(spk_means, dtype=np.float32)
        if spk_means.ndim != 2 or len(spk_means) != len(speakers or []):
            raise DataError(f"pack: mean embeddings of shape {list(spk_means.shape)} for {len(speakers or [])} "
                            "speakers (expected [speakers, D])")
    out = Path(out_dir)
    if out.is_symlink() or not out.name:  # the folder itself is replaced, not a link to it
        out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder (the packed model's)")
    packed: dict[str, Any] = {
        "semtts_packed": 1, "stage": stage, "corpus": corpus, "speaker_mode": speaker_mode,
        "generator": generator_kwargs(hp),
        "semantic": None,
        "spectrogram": {k: int(hp[k]) for k in SPECTROGRAM_KEYS} | {"f_min": float(hp.get("mel_fmin", 0.0)),
                                                                    "f_max": hp.get("mel_fmax")},
        "frontend": {"token_type": frontend["token_type"], "language": frontend["language"],
                     "cleaner": frontend["cleaner"], "add_blank": bool(frontend.get("add_blank",
                                                                                     hp.get("add_blank", True)))},
        "speakers": list(speakers or []),
        "campplus": (dict(campplus) | ({"ckpt": CAMPPLUS_FILE} if campplus_file is not None else {})
                     if embedded else None),
        "whisper_random_init": bool(whisper_random_init),
        "training": dict(training or {}),
    }
    if stage != "A":
        packed["semantic"] = {"sem_dim": int(generator.sem_dim)} | {k: hp[k] for k in SEMANTIC_KEYS}
    check_packed_sizes(packed, len(token_list), None if spk_means is None else int(spk_means.shape[1]))
    # a fresh model in the training layout takes the weights (deepcopy would share the
    # weight-norm parametrizations with the caller's generator), then folds its weight norm
    frozen = build_packed_generator(packed, fold=False)
    try:
        frozen.load_state_dict(generator.state_dict(), strict=True)
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:300]
        raise ConfigError(f"pack: the hparams do not describe this generator ({reason})") from None
    frozen.remove_weight_norm()
    recover_interrupted_pack(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    try:
        save_weights(frozen.state_dict(), new)
        token_list.save(new / "tokens.txt")
        if bpe_model is not None:
            shutil.copyfile(bpe_model, new / "bpe.model")
        write_json_atomic(new / "speakers.json", {"speakers": list(speakers or [])})
        if embedded:
            np.save(new / "spk_mean.npy", spk_means)
            write_json_atomic(new / "campplus_meta.json", campplus_meta or {})
            if campplus_file is not None:
                shutil.copyfile(campplus_file, new / CAMPPLUS_FILE)
        n_params = sum(p.numel() for p in frozen.parameters())
        (new / "MODEL_CARD.md").write_text(_model_card(packed, n_params, packed["training"]), encoding="utf-8")
        _carry_over(out, new)
        (new / HPARAMS_NAME).write_text(yaml.safe_dump(packed, sort_keys=False), encoding="utf-8")  # last
        replace_folder(out, new)
    finally:
        shutil.rmtree(new, ignore_errors=True)  # gone already when it was swapped in
    return out
