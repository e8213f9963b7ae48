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
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from semtts.data.manifest import write_json_atomic
from semtts.errors import ConfigError, DataError, first_line
from semtts.lobes.vits.semantic_vits import SemanticVITS
from semtts.lobes.vits.synthesizer import VITSSynthesizer
from semtts.text.tokenizer import TokenList

__all__ = ["SEMANTIC_KEYS", "SPECTROGRAM_KEYS", "generator_kwargs", "build_packed_generator", "save_weights",
           "load_weights", "weights_file", "read_packed_hparams", "pack_model"]

SEMANTIC_KEYS = ("use_sempred", "use_adapter", "sempred_hidden", "sempred_kernel_size", "sempred_layers",
                 "sempred_dropout", "adapter_heads", "adapter_dropout", "adapter_gate_init")
"""The stage B/C hparams of :class:`~semtts.lobes.vits.semantic_vits.SemanticVITS`."""
SPECTROGRAM_KEYS = ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels")
HPARAMS_NAME = "hyperparams.yaml"
CAMPPLUS_FILE = "campplus.bin"
"""The packed copy of the pretrained CAM++ the speaker vectors were made with."""


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
    base = VITSSynthesizer(**packed["generator"])
    semantic = packed.get("semantic")
    model = SemanticVITS(base, **semantic) if semantic else base
    if fold:
        model.remove_weight_norm()
    return model.eval()


def weights_file(folder: str | Path) -> Path:
    """The weights file of a packed folder (``generator.safetensors`` or ``generator.pt``)."""
    folder = Path(folder)
    for name in ("generator.safetensors", "generator.pt"):
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


def read_packed_hparams(folder: str | Path) -> dict:
    """Read and check ``<folder>/hyperparams.yaml``.

    Raises
    ------
    DataError
        The folder or file is missing or malformed (the message names it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: model folder not found")
    path = folder / HPARAMS_NAME
    if not path.is_file():
        raise DataError(f"{path}: not found (not a packed semtts model; make one with stage 10)")
    try:
        packed = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid YAML ({first_line(err)})") from None
    missing = [k for k in ("generator", "spectrogram", "frontend", "speaker_mode", "stage")
               if not isinstance(packed, dict) or k not in packed]
    if missing:
        raise DataError(f"{path}: lacks {', '.join(missing)}")
    return packed


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
        The folder to write (created; its previous packed files are replaced).
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
    if spk_means is not None and len(spk_means) != len(speakers or []):
        raise DataError(f"pack: {len(spk_means)} mean embeddings for {len(speakers or [])} speakers")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    # a fresh model in the training layout takes the weights (deepcopy would share the
    # weight-norm parametrizations with the caller's generator), then folds its weight norm
    frozen = build_packed_generator(packed, fold=False)
    try:
        frozen.load_state_dict(generator.state_dict(), strict=True)
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:300]
        raise ConfigError(f"pack: the hparams do not describe this generator ({reason})") from None
    frozen.remove_weight_norm()
    state = frozen.state_dict()
    for stale in ("generator.safetensors", "generator.pt", "bpe.model", "spk_mean.npy", "campplus_meta.json",
                  CAMPPLUS_FILE, "model.onnx"):  # an exported graph belongs to the weights it was made from
        (out / stale).unlink(missing_ok=True)
    save_weights(state, out)
    token_list.save(out / "tokens.txt")
    if bpe_model is not None:
        shutil.copyfile(bpe_model, out / "bpe.model")
    write_json_atomic(out / "speakers.json", {"speakers": list(speakers or [])})
    if embedded:
        np.save(out / "spk_mean.npy", np.asarray(spk_means, dtype=np.float32))
        write_json_atomic(out / "campplus_meta.json", campplus_meta or {})
        if campplus_file is not None:
            shutil.copyfile(campplus_file, out / CAMPPLUS_FILE)
    (out / HPARAMS_NAME).write_text(yaml.safe_dump(packed, sort_keys=False), encoding="utf-8")
    n_params = sum(p.numel() for p in frozen.parameters())
    (out / "MODEL_CARD.md").write_text(_model_card(packed, n_params, packed["training"]), encoding="utf-8")
    return out
