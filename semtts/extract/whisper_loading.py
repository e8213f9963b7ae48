"""Finding and loading openai-whisper checkpoints, for the teacher (stage 4,
``whisper_model``) and the evaluation ASR (``eval_asr_model``).

A model is given as a released name (``tiny``, ``small``, ``large-v3``, ...,
downloaded into the cache folder when absent) or as the path of a local
``.pt`` checkpoint in whisper's format (``{"dims": {...},
"model_state_dict": {...}}``). :func:`whisper_source` sorts the two out;
anything else (a misspelt name, a folder) is a :class:`ConfigError`, and a
local file that is not a usable Whisper checkpoint is a :class:`DataError`,
each one line naming the flag and the file. Random weights (tests) need
every ``ModelDimensions`` field, from the named size or the ``*_random_dims``
hparam (:func:`random_whisper_dims`).

Example
-------
>>> whisper_source("tiny"), whisper_source("/nonexistent/model.pt")
('named', 'missing')
>>> try:
...     whisper_source("tinyy")
... except ConfigError as err:
...     print(str(err)[:56])
whisper_model 'tinyy': not a Whisper model name (tiny.en
>>> random_whisper_dims("tiny", {"n_audio_layer": 1}).n_audio_layer
1
"""

import os
import socket
import urllib.error
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Iterator

import torch
import whisper
from whisper.model import AudioEncoder, ModelDimensions, TextDecoder, Whisper

from semtts.errors import ConfigError, DataError, WeightsNotFound, first_line

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "NAMED_DIMS",
    "whisper_cache_dir",
    "model_url",
    "release_sha256",
    "whisper_source",
    "weights_not_found",
    "random_whisper_dims",
    "read_whisper_checkpoint",
    "load_whisper_checkpoint",
    "download_whisper",
]

DOWNLOAD_TIMEOUT_S = 60.0
AUDIO_CTX = 1500  # encoder frames of one 30-s window
_MEL_BANDS = (80, 128)  # whisper ships mel filters for these only


def _dims(n_mels: int, state: int, heads: int, layers: int, n_vocab: int, text_layers: int | None = None) -> dict:
    return {"n_mels": n_mels, "n_audio_ctx": AUDIO_CTX, "n_audio_state": state, "n_audio_head": heads,
            "n_audio_layer": layers, "n_vocab": n_vocab, "n_text_ctx": 448, "n_text_state": state,
            "n_text_head": heads, "n_text_layer": layers if text_layers is None else text_layers}


# The dimensions of the released checkpoints (used for random initialisation
# of a named size, and for the metadata of a named model without loading it).
NAMED_DIMS: dict[str, dict] = {
    "tiny": _dims(80, 384, 6, 4, 51865), "tiny.en": _dims(80, 384, 6, 4, 51864),
    "base": _dims(80, 512, 8, 6, 51865), "base.en": _dims(80, 512, 8, 6, 51864),
    "small": _dims(80, 768, 12, 12, 51865), "small.en": _dims(80, 768, 12, 12, 51864),
    "medium": _dims(80, 1024, 16, 24, 51865), "medium.en": _dims(80, 1024, 16, 24, 51864),
    "large-v1": _dims(80, 1280, 20, 32, 51865), "large-v2": _dims(80, 1280, 20, 32, 51865),
    "large-v3": _dims(128, 1280, 20, 32, 51866), "large": _dims(128, 1280, 20, 32, 51866),
    "large-v3-turbo": _dims(128, 1280, 20, 32, 51866, 4), "turbo": _dims(128, 1280, 20, 32, 51866, 4),
}


def whisper_cache_dir(cache_dir: str | Path | None) -> Path:
    """Where named models are kept.

    Arguments
    ---------
    cache_dir : str or Path, optional
        The folder; None for whisper's own default (``$XDG_CACHE_HOME/whisper``).

    Returns
    -------
    Path
        The folder, ``~`` expanded.
    """
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def model_url(name: str) -> str | None:
    """The download URL of a released model name, or None for anything else.

    Arguments
    ---------
    name : str
        A model name or path.

    Returns
    -------
    str or None
        The URL from openai-whisper's table.
    """
    return getattr(whisper, "_MODELS", {}).get(name)


def release_sha256(name: str) -> str:
    """The sha256 of a released checkpoint, read from its download URL.

    Arguments
    ---------
    name : str
        A released model name.

    Returns
    -------
    str
        The hex digest.
    """
    return model_url(name).rstrip("/").split("/")[-2]


def _names() -> str:
    return ", ".join(whisper.available_models())


def _looks_like_path(model: str) -> bool:
    return "/" in model or os.sep in model or model.startswith("~") or model.endswith((".pt", ".pth"))


def whisper_source(model: str, flag: str = "whisper_model") -> str:
    """What a model setting names.

    Arguments
    ---------
    model : str
        A released model name or a checkpoint path.
    flag : str
        The hparam it comes from, for the error message.

    Returns
    -------
    str
        ``"named"`` (a released model), ``"file"`` (an existing file) or
        ``"missing"`` (a path that does not exist). Anything else, a folder
        or a name that is neither released nor path-like, is a
        :class:`ConfigError` listing the released names.
    """
    model = str(model)
    if model_url(model) is not None:
        return "named"
    path = Path(model).expanduser()
    if path.is_file():
        return "file"
    if path.is_dir():
        raise ConfigError(f"{flag} {model}: is a folder, not a Whisper .pt checkpoint")
    if _looks_like_path(model):
        return "missing"
    raise ConfigError(f"{flag} {model!r}: not a Whisper model name ({_names()}) nor an existing .pt file")


def weights_not_found(model: str, cache_dir: Path, reason: str, flag: str = "whisper_model") -> WeightsNotFound:
    """The error for weights that cannot be had (random init not allowed).

    Arguments
    ---------
    model : str
        The model name or path.
    cache_dir : Path
        Where named models are looked for.
    reason : str
        One line: why the weights are missing.
    flag : str
        The hparam that names the model.

    Returns
    -------
    WeightsNotFound
        One line saying how to get the weights.
    """
    url = model_url(model)
    if url is None:
        return WeightsNotFound(
            f"{flag} {model}: {reason}; give the path of a Whisper .pt checkpoint or a model name ({_names()}) "
            "(allow_random_init: True for tests only)")
    return WeightsNotFound(
        f"{flag} {model!r}: weights not found and not downloadable ({reason}); download {url} into {cache_dir} "
        f"(names: {_names()}, URLs in openai-whisper's whisper/__init__.py), "
        f"or set {flag} to a local .pt checkpoint path (allow_random_init: True for tests only)"
    )


def random_whisper_dims(model: str, given: dict | None, flag: str = "whisper_random_dims",
                        model_flag: str = "whisper_model") -> ModelDimensions:
    """The dims of a random model: ``given`` over the named size's.

    Arguments
    ---------
    model : str
        The model setting (a released name supplies every field).
    given : dict, optional
        ``ModelDimensions`` fields from the ``flag`` hparam.
    flag : str
        The hparam ``given`` comes from.
    model_flag : str
        The hparam ``model`` comes from.

    Returns
    -------
    ModelDimensions
        Checked: every field, n_mels 80 or 128, n_audio_ctx 1500, heads
        dividing the widths; anything else is a :class:`ConfigError`.
    """
    base = dict(NAMED_DIMS.get(model, {}))
    given = dict(given or {})
    known = {f.name for f in fields(ModelDimensions)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"{flag}: unknown fields {unknown} (ModelDimensions has {sorted(known)})")
    base.update(given)
    missing = sorted(known - set(base))
    if missing and _looks_like_path(model):
        raise ConfigError(f"{model_flag} {model}: file not found (a random model in its place, allow_random_init, "
                          f"would need every ModelDimensions field in {flag}: missing {missing})")
    if missing:
        raise ConfigError(f"{flag}: {model!r} is not a named Whisper size, so give every "
                          f"ModelDimensions field (missing {missing})")
    try:
        dims = ModelDimensions(**{k: int(v) for k, v in base.items()})
    except (TypeError, ValueError):
        raise ConfigError(f"{flag}: every field must be an integer, got {given}") from None
    problem = _dims_problem(dims)
    if problem:
        raise ConfigError(f"{flag}: {problem}")
    return dims


def _dims_problem(dims: ModelDimensions) -> str | None:
    """Why semtts cannot use a model of these dims, or None."""
    values = asdict(dims)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values.values()):
        return f"every field must be a positive integer, got {values}"
    if dims.n_mels not in _MEL_BANDS or dims.n_audio_ctx != AUDIO_CTX:
        return f"need n_mels 80 or 128 and n_audio_ctx 1500, got {values}"
    if dims.n_audio_state % dims.n_audio_head or dims.n_text_state % dims.n_text_head:
        return "n_audio_state and n_text_state must be divisible by n_audio_head and n_text_head"
    return None


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every socket operation (whisper's download has no timeout)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def download_whisper(name: str, cache_dir: Path, device: str | torch.device = "cpu") -> Whisper | str:
    """Load a released model, downloading it into ``cache_dir`` when absent.

    Arguments
    ---------
    name : str
        A released model name.
    cache_dir : Path
        Where the checkpoint is kept.
    device : str or torch.device
        Where the model goes.

    Returns
    -------
    Whisper or str
        The model, or one line saying why it could not be had (no network,
        failed checksum, unreadable cached file).
    """
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return whisper.load_model(name, device=device, download_root=str(cache_dir))
    except (OSError, RuntimeError, urllib.error.URLError, EOFError, KeyError) as err:
        return first_line(err)




def _torch_load(path: Path) -> Any:
    """``torch.load`` with weights only, memory-mapped when the format allows."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint (mmap impossible), or not a checkpoint at all
        return torch.load(path, map_location="cpu", weights_only=True)


def read_whisper_checkpoint(path: str | Path, flag: str = "whisper_model",
                            check_weights: bool = True) -> tuple[ModelDimensions, dict[str, torch.Tensor]]:
    """Read and check a checkpoint in whisper's format, without building the model.

    Arguments
    ---------
    path : str or Path
        The ``.pt`` file.
    flag : str
        The hparam that names it, for the error message.
    check_weights : bool
        Also check that the state dict has every tensor, of the shape the
        dims imply (False: only the dims are needed).

    Returns
    -------
    tuple
        ``(dims, state_dict)``. A file that is not a readable torch file, has
        no ``dims`` and ``model_state_dict``, or whose weights do not fit its
        dims is a :class:`DataError`: ``<flag> <path>: not a Whisper checkpoint (...)``.
    """
    path = Path(path)

    def bad(reason: str) -> DataError:
        return DataError(f"{flag} {path}: not a Whisper checkpoint ({reason})")

    try:
        checkpoint = _torch_load(path)
    except Exception as err:  # torch.load raises many types on foreign files
        reason = first_line(err)
        if "Weights only load failed" in reason:
            reason = "it holds objects other than tensors and plain containers"
        raise bad(f"not a readable torch file: {reason}") from None
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= set(checkpoint):
        found = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise bad(f"need the keys 'dims' and 'model_state_dict', found {found}")
    raw_dims, state = checkpoint["dims"], checkpoint["model_state_dict"]
    try:
        dims = ModelDimensions(**raw_dims)
    except TypeError:
        raise bad(f"its 'dims' are not the ModelDimensions fields {[f.name for f in fields(ModelDimensions)]}") \
            from None
    problem = _dims_problem(dims)
    if problem:
        raise bad(f"dims: {problem}")
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise bad("'model_state_dict' is not a dict of named tensors")
    if check_weights:
        expected = _expected_shapes(dims)
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
        if missing or extra or wrong:
            detail = "; ".join(f"{what} {keys[:3]}{' ...' if len(keys) > 3 else ''}" for what, keys in
                               (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)) if keys)
            raise bad(f"its weights do not fit its dims: {detail}")
    return dims, state


def _expected_shapes(dims: ModelDimensions) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of a Whisper of ``dims`` (built on the meta device)."""
    with torch.device("meta"):
        encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head,
                               dims.n_audio_layer)
        decoder = TextDecoder(dims.n_vocab, dims.n_text_ctx, dims.n_text_state, dims.n_text_head,
                              dims.n_text_layer)
    return {f"{prefix}.{k}": tuple(v.shape) for prefix, part in (("encoder", encoder), ("decoder", decoder))
            for k, v in part.state_dict().items()}


def load_whisper_checkpoint(path: str | Path, flag: str = "whisper_model",
                            device: str | torch.device = "cpu") -> Whisper:
    """Build a Whisper model from a local checkpoint in whisper's format.

    Arguments
    ---------
    path : str or Path
        The ``.pt`` file (``{"dims": ..., "model_state_dict": ...}``).
    flag : str
        The hparam that names it, for the error message.
    device : str or torch.device
        Where the model goes.

    Returns
    -------
    Whisper
        The model, in eval mode; a file that is not a Whisper checkpoint is
        a one-line :class:`DataError` (see :func:`read_whisper_checkpoint`).
    """
    dims, state = read_whisper_checkpoint(path, flag)
    model = Whisper(dims)
    model.load_state_dict(state)
    return model.to(device).eval()
