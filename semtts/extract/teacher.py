"""Whisper teacher features: the openai-whisper audio encoder run on every
utterance (stage 4), stored as fp16 ``[T_sem, D]`` arrays at 50 Hz.

Audio is brought to 16 kHz, turned into Whisper's log-mel spectrogram
(``n_mels`` from the model: 80, or 128 for large-v3 and turbo) with zero
audio padding up to a whole number of 30-s windows, as Whisper was trained,
and every 30-s window goes through the encoder. Only the frames that see the
utterance are kept: ``valid_frames(N) = ceil(floor(N / 160) / 2)`` for ``N``
samples (10 ms mel hop, then the stride-2 convolution). An utterance longer
than 30 s is cut into 30-s windows of one spectrogram (normalised over the
whole utterance, as ``whisper.transcribe`` does) and the windows' frames are
concatenated. The features are the final encoder output (after ``ln_post``,
``layer = -1``) or the output of block ``k`` (``layer = k``, 0-based).

Weights come from ``whisper.load_model`` (a model name, downloaded into
``cache_dir`` when absent, or a local ``.pt`` checkpoint). Random weights are
used only when ``allow_random_init`` is set and the weights cannot be had;
that is logged as a warning and recorded in the metadata.

Example
-------
>>> dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 2,
...         "n_audio_layer": 2, "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 64,
...         "n_text_head": 2, "n_text_layer": 2}
>>> teacher = WhisperTeacher.random_init(dims, layer=-1, seed=0)
>>> audio = torch.randn(16000) * 0.1                        # 1 s at 16 kHz
>>> teacher.log_mel_chunks(audio).shape                      # [n_windows, n_mels, 3000]
torch.Size([1, 80, 3000])
>>> teacher.features(audio).shape                            # [T_sem, D], T_sem = valid_frames(16000)
torch.Size([50, 64])
>>> valid_frames(16000), valid_frames(16159), valid_frames(16160)
(50, 50, 51)
"""

import logging
import os
import socket
import urllib.error
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import whisper
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm
from whisper.model import AudioEncoder, ModelDimensions

from semtts.audio import load_audio, resample
from semtts.errors import ConfigError, DataError, WeightsNotFound
from semtts.extract.common import feature_path, file_sha256, load_array, save_array_atomic

__all__ = [
    "SAMPLE_RATE",
    "FRAME_RATE",
    "RANDOM_INIT",
    "valid_frames",
    "WhisperTeacher",
    "load_whisper_teacher",
    "expected_metadata",
    "read_teacher_audio",
    "extract_teacher_features",
    "load_teacher",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Whisper's input rate
HOP_LENGTH = 160  # mel hop: 100 frames per second
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # one encoder window
CHUNK_MEL_FRAMES = CHUNK_SAMPLES // HOP_LENGTH  # 3000
FRAME_RATE = 50  # encoder frames per second
RANDOM_INIT = "random-init"  # the "sha256" of a randomly initialised teacher
DOWNLOAD_TIMEOUT_S = 60.0


def _dims(n_mels: int, state: int, heads: int, layers: int, n_vocab: int, text_layers: int | None = None) -> dict:
    return {"n_mels": n_mels, "n_audio_ctx": 1500, "n_audio_state": state, "n_audio_head": heads,
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


def valid_frames(n_samples: int) -> int:
    """Encoder frames that see an utterance of ``n_samples`` 16-kHz samples.

    ``floor(N / 160)`` mel frames (centred STFT, last frame dropped, as
    ``whisper.log_mel_spectrogram``), halved with rounding up by the stride-2
    convolution: ``ceil(floor(N / 160) / 2)``.

    Arguments
    ---------
    n_samples : int
        Number of samples at 16 kHz.

    Returns
    -------
    int
        The number of 20-ms teacher frames.

    Example
    -------
    >>> [valid_frames(n) for n in (0, 159, 160, 320, 480, 480000)]
    [0, 0, 1, 1, 2, 1500]
    """
    return -(-(int(n_samples) // HOP_LENGTH) // 2)


def _window_frames(n_samples: int) -> list[int]:
    """Valid encoder frames of each 30-s window of an utterance."""
    mel_frames = int(n_samples) // HOP_LENGTH
    n_windows = max(1, -(-mel_frames // CHUNK_MEL_FRAMES))
    return [-(-min(CHUNK_MEL_FRAMES, mel_frames - k * CHUNK_MEL_FRAMES) // 2) for k in range(n_windows)]


def _whisper_cache_dir(cache_dir: str | Path | None) -> Path:
    """``cache_dir``, or whisper's own default (``$XDG_CACHE_HOME/whisper``)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def _model_url(name: str) -> str | None:
    return getattr(whisper, "_MODELS", {}).get(name)


def _not_found(model: str, cache_dir: Path, reason: str) -> WeightsNotFound:
    url = _model_url(model)
    where = f"download {url} into {cache_dir}" if url else "download a checkpoint"
    return WeightsNotFound(
        f"whisper_model {model!r}: weights not found and not downloadable ({reason}); {where} "
        f"(names: {', '.join(whisper.available_models())}, URLs in openai-whisper's whisper/__init__.py), "
        "or set whisper_model to a local .pt checkpoint path (allow_random_init: True for tests only)"
    )


def _random_dims(model: str, random_dims: dict | None) -> ModelDimensions:
    """The dims of a random teacher: ``random_dims`` over the named size's."""
    base = dict(NAMED_DIMS.get(model, {}))
    given = dict(random_dims or {})
    known = {f.name for f in fields(ModelDimensions)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"whisper_random_dims: unknown fields {unknown} (ModelDimensions has {sorted(known)})")
    base.update(given)
    missing = sorted(known - set(base))
    if missing:
        raise ConfigError(f"whisper_random_dims: {model!r} is not a named Whisper size, so give every "
                          f"ModelDimensions field (missing {missing})")
    dims = ModelDimensions(**{k: int(v) for k, v in base.items()})
    if dims.n_mels not in (80, 128) or dims.n_audio_ctx != CHUNK_MEL_FRAMES // 2:
        raise ConfigError(f"whisper_random_dims: need n_mels 80 or 128 and n_audio_ctx 1500, got {asdict(dims)}")
    if dims.n_audio_state % dims.n_audio_head:
        raise ConfigError("whisper_random_dims: n_audio_state must be divisible by n_audio_head")
    return dims


def _check_layer(layer: int, n_layers: int) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int) or not -1 <= layer < n_layers:
        raise ConfigError(f"whisper_layer {layer!r}: use -1 (final output) or a block index 0..{n_layers - 1}")
    return layer


class WhisperTeacher(nn.Module):
    """The Whisper audio encoder as a feature extractor.

    Arguments
    ---------
    encoder : whisper.model.AudioEncoder
        The encoder (of a loaded or random model).
    dims : whisper.model.ModelDimensions
        The model dimensions.
    layer : int
        -1 for the final output (after ``ln_post``), or ``k`` for the output
        of ``encoder.blocks[k]``.
    name : str
        The model name, for the metadata.
    sha256 : str
        The checkpoint's sha256, or ``"random-init"``.
    random_init_seed : int, optional
        The seed of a random initialisation.

    Example
    -------
    >>> from whisper.model import Whisper
    >>> dims = ModelDimensions(80, 1500, 64, 2, 2, 51865, 448, 64, 2, 2)
    >>> teacher = WhisperTeacher(Whisper(dims).encoder, dims, layer=0)
    >>> teacher(torch.zeros(3, 80, 3000)).shape                     # [B, 1500, D]
    torch.Size([3, 1500, 64])
    >>> teacher.metadata()["dim"], teacher.metadata()["frame_rate"]
    (64, 50)
    """

    def __init__(
        self,
        encoder: AudioEncoder,
        dims: ModelDimensions,
        layer: int = -1,
        name: str = "whisper",
        sha256: str = RANDOM_INIT,
        random_init_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dims = dims
        self.layer = _check_layer(layer, dims.n_audio_layer)
        self.name = name
        self.sha256 = sha256
        self.random_init_seed = random_init_seed

    @classmethod
    def random_init(
        cls, dims: dict | ModelDimensions, layer: int = -1, seed: int = 0, name: str = "whisper"
    ) -> "WhisperTeacher":
        """A randomly initialised encoder, reproducible from ``seed`` (the
        global RNG is left as it was); ``dims`` as ModelDimensions or a dict
        over the named size ``name``'s dims."""
        dims = dims if isinstance(dims, ModelDimensions) else _random_dims(name, dims)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state,
                                   dims.n_audio_head, dims.n_audio_layer)
        return cls(encoder, dims, layer, name=name, sha256=RANDOM_INIT, random_init_seed=seed)

    @property
    def dim(self) -> int:
        """``D``, the feature width."""
        return self.dims.n_audio_state

    @property
    def n_mels(self) -> int:
        """Mel bands of the model's input (80 or 128)."""
        return self.dims.n_mels

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Encode 30-s windows.

        Arguments
        ---------
        mel : torch.Tensor
            ``[B, n_mels, 3000]`` log-mel windows; their dtype sets the
            compute precision (whisper casts its weights to it).

        Returns
        -------
        torch.Tensor
            ``[B, 1500, D]`` features of the chosen layer.
        """
        if self.layer == -1:
            return self.encoder(mel)
        enc = self.encoder
        x = F.gelu(enc.conv2(F.gelu(enc.conv1(mel)))).permute(0, 2, 1)
        x = (x + enc.positional_embedding).to(x.dtype)
        for block in enc.blocks[: self.layer + 1]:
            x = block(x)
        return x

    def log_mel_chunks(self, audio: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel spectrogram of one utterance ``[N]`` at 16 kHz,
        as ``[n_windows, n_mels, 3000]`` 30-s windows.

        The audio is zero-padded (or trimmed past the last mel frame) to a
        whole number of windows before ``whisper.log_mel_spectrogram``, so a
        short utterance gives exactly ``log_mel_spectrogram(pad_or_trim(audio))``.
        """
        n_windows = len(_window_frames(audio.shape[-1]))
        padded = whisper.pad_or_trim(audio, n_windows * CHUNK_SAMPLES)
        mel = whisper.log_mel_spectrogram(padded, self.n_mels)  # [n_mels, n_windows * 3000]
        return mel.view(self.n_mels, n_windows, CHUNK_MEL_FRAMES).transpose(0, 1).contiguous()

    @torch.inference_mode()
    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Teacher features ``[valid_frames(N), D]`` (float32) of one
        utterance ``[N]`` at 16 kHz, all its windows in one batch."""
        out = self(self.log_mel_chunks(audio))
        return torch.cat([window[:n] for window, n in zip(out, _window_frames(audio.shape[-1]))]).float()

    def metadata(self) -> dict[str, Any]:
        """What identifies the features (written to ``teacher/meta.json``)."""
        return _metadata(self.dims, self.layer, self.name, self.sha256, self.random_init_seed)


def _metadata(dims: ModelDimensions, layer: int, name: str, sha256: str, seed: int | None) -> dict[str, Any]:
    random = sha256 == RANDOM_INIT
    return {"model": name, "sha256": sha256, "layer": _check_layer(layer, dims.n_audio_layer),
            "dim": dims.n_audio_state, "n_mels": dims.n_mels, "frame_rate": FRAME_RATE,
            "sample_rate": SAMPLE_RATE, "dtype": "float16", "random_init_seed": seed if random else None,
            "random_init_dims": asdict(dims) if random else None}


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every socket operation (whisper's download has no timeout)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _model_name(model: str) -> str:
    """The name recorded in the metadata: the model name or the file name."""
    return model if model in NAMED_DIMS else Path(model).name


def load_whisper_teacher(
    model: str,
    layer: int = -1,
    cache_dir: str | Path | None = None,
    allow_random_init: bool = False,
    random_dims: dict | None = None,
    seed: int = 0,
) -> WhisperTeacher:
    """Load the Whisper encoder on the CPU (downloading it when needed).

    Arguments
    ---------
    model : str
        A Whisper model name (``tiny``, ``base``, ``small``, ``medium``,
        ``large-v3``, ``turbo``, ...) or a local ``.pt`` checkpoint.
    layer : int
        -1 for the final output, ``k`` for block ``k`` (0-based).
    cache_dir : str or Path, optional
        Where named models are looked for and downloaded (whisper's default
        ``~/.cache/whisper`` when None).
    allow_random_init : bool
        Use random weights (with a warning) when the weights are missing.
    random_dims : dict, optional
        ModelDimensions fields of the random model, over the named size's.
    seed : int
        Seed of a random initialisation.

    Returns
    -------
    WhisperTeacher
        In eval mode, on the CPU.

    Missing weights that cannot be downloaded are :class:`WeightsNotFound`
    without ``allow_random_init``; an unknown name, a bad layer or bad
    random dims are a :class:`ConfigError`.
    """
    cache = _whisper_cache_dir(cache_dir)
    named = _model_url(model) is not None
    path = Path(model).expanduser()
    if named or path.is_file():
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                full = whisper.load_model(model if named else str(path), device="cpu", download_root=str(cache))
        except (OSError, RuntimeError, urllib.error.URLError) as err:
            if not named:
                raise ConfigError(f"whisper_model {model}: cannot load the checkpoint ({err})") from None
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        else:
            sha = _release_sha256(model) if named else file_sha256(path)
            teacher = WhisperTeacher(full.encoder, full.dims, layer, name=_model_name(model), sha256=sha)
            return teacher.eval()
    elif "/" in model or model.endswith(".pt"):
        reason = "no such file"
    elif not allow_random_init:
        names = ", ".join(whisper.available_models())
        raise ConfigError(f"whisper_model {model!r}: not a Whisper model name ({names}) nor a local .pt file")
    else:
        reason = "not a released model"
    if not allow_random_init:
        raise _not_found(model, cache, reason)
    dims = _random_dims(model, random_dims)
    logger.warning(
        "WARNING: Whisper teacher %r is RANDOMLY INITIALISED (seed %d, %s; allow_random_init is set): "
        "its features are meaningless for distillation", model, seed, reason,
    )
    return WhisperTeacher.random_init(dims, layer, seed, name=_model_name(model)).eval()


def _release_sha256(model: str) -> str:
    """The sha256 of a released checkpoint, from its download URL."""
    return _model_url(model).rstrip("/").split("/")[-2]


def _checkpoint_dims(path: Path) -> ModelDimensions:
    """The dims stored in a whisper checkpoint, without building the model."""
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip checkpoint: mmap impossible
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        return ModelDimensions(**checkpoint["dims"])
    except (OSError, RuntimeError, KeyError, TypeError) as err:
        raise ConfigError(f"whisper_model {path}: cannot read the checkpoint's dims ({err})") from None


def expected_metadata(hp: dict) -> dict[str, Any]:
    """The teacher metadata the hparams imply, without loading the model.

    Training compares it with ``teacher/meta.json`` through
    :func:`semtts.extract.common.check_metadata`. A named model counts as
    loaded when its file is in the cache, or when random init is not allowed
    (stage 4 would have downloaded it or failed); a local checkpoint is hashed.

    Arguments
    ---------
    hp : dict
        Hparams with ``whisper_model``, ``whisper_layer``,
        ``whisper_cache_dir``, ``allow_random_init``, ``whisper_random_dims``
        and ``seed``.

    Returns
    -------
    dict
        The same keys as :meth:`WhisperTeacher.metadata`.
    """
    model, layer = str(hp["whisper_model"]), hp["whisper_layer"]
    allow, seed = bool(hp["allow_random_init"]), int(hp["seed"])
    cache = _whisper_cache_dir(hp["whisper_cache_dir"])
    path = Path(model).expanduser()
    url = _model_url(model)
    if url is not None and ((cache / os.path.basename(url)).is_file() or not allow):
        dims, sha = ModelDimensions(**NAMED_DIMS[model]), _release_sha256(model)
    elif url is None and path.is_file():
        dims, sha = _checkpoint_dims(path), file_sha256(path)
    elif allow:
        dims = _random_dims(model, hp["whisper_random_dims"])
        return _metadata(dims, layer, _model_name(model), RANDOM_INIT, seed)
    elif "/" in model or model.endswith(".pt"):
        raise _not_found(model, cache, "no such file")
    else:
        raise ConfigError(f"whisper_model {model!r}: not a Whisper model name nor a local .pt file")
    return _metadata(dims, layer, _model_name(model), sha, None)


_AUDIO_ERRORS = (sf.SoundFileError, RuntimeError, OSError, ValueError, EOFError)


def read_teacher_audio(path: str | Path) -> torch.Tensor:
    """Read any file soundfile reads as mono ``[N]`` float32 at 16 kHz; an
    unreadable, non-finite or too short (no teacher frame) file is a
    :class:`DataError`."""
    try:
        audio, sr = load_audio(path, mono=True)
    except _AUDIO_ERRORS as err:
        raise DataError(f"{path}: cannot read the audio ({str(err).splitlines()[0] if str(err) else err!r})") from None
    audio = resample(audio, sr, SAMPLE_RATE)[0]
    if not bool(torch.isfinite(audio).all()):
        raise DataError(f"{path}: the audio has non-finite samples")
    if valid_frames(audio.numel()) == 0:
        raise DataError(f"{path}: too short for one teacher frame ({audio.numel()} samples at 16 kHz)")
    return audio


class _AudioItems(Dataset):
    """Reads utterances for the extraction loop: ``(utt_id, audio or None, error)``."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor | None, str]:
        utt_id, path = self.items[index]
        try:
            return utt_id, read_teacher_audio(path), ""
        except DataError as err:
            return utt_id, None, str(err)


def extract_teacher_features(
    teacher: WhisperTeacher,
    audio_paths: dict[str, str],
    out_dir: str | Path,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "teacher features",
) -> dict[str, Any]:
    """Extract and store the teacher features of many utterances.

    Every utterance is cut into padded 30-s windows; windows of successive
    utterances are batched ``batch_size`` at a time through the encoder
    (fp16 on CUDA, fp32 on the CPU). Each utterance is written as soon as
    its windows are done, atomically, to ``feature_path(out_dir, utt_id)``
    as fp16 ``[T_sem, D]``; an existing file is kept (resume) unless
    ``overwrite``. Unreadable audio is skipped and reported.

    Arguments
    ---------
    teacher : WhisperTeacher
        The encoder (moved to ``device``).
    audio_paths : dict
        ``{utt_id: audio file}``.
    out_dir : str or Path
        The teacher folder.
    batch_size : int
        30-s windows per encoder call.
    device : str or torch.device
        Where the encoder runs.
    overwrite : bool
        Recompute existing files.
    num_workers : int
        DataLoader workers reading and resampling audio.
    progress : bool
        Show a tqdm bar.
    desc : str
        The bar's label.

    Returns
    -------
    dict
        ``{"extracted": int, "existing": int, "failed": {utt_id: reason}}``.
    """
    if batch_size < 1:
        raise ConfigError(f"whisper_batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    teacher = teacher.to(device).eval()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    todo = [(u, p) for u, p in audio_paths.items() if overwrite or not feature_path(out_dir, u).is_file()]
    report: dict[str, Any] = {"extracted": 0, "existing": len(audio_paths) - len(todo), "failed": {}}
    loader = DataLoader(_AudioItems(todo), batch_size=None, num_workers=num_workers)
    queue: list[tuple[str, int, torch.Tensor]] = []  # (utt_id, window, mel)
    parts: dict[str, list[np.ndarray | None]] = {}
    frames: dict[str, list[int]] = {}
    bar = tqdm(total=len(todo), desc=desc, disable=not progress, mininterval=2.0)

    def finish(utt_id: str) -> None:
        feats = np.concatenate(parts.pop(utt_id), axis=0).astype(np.float16)
        del frames[utt_id]
        if np.isfinite(feats).all():
            save_array_atomic(feature_path(out_dir, utt_id), feats)
            report["extracted"] += 1
        else:
            report["failed"][utt_id] = "non-finite teacher features (fp16 overflow?)"
        bar.update(1)

    def run(n: int) -> None:
        batch, queue[:n] = queue[:n], []
        with torch.inference_mode():
            out = teacher(torch.stack([mel for _, _, mel in batch]).to(dtype)).float().cpu().numpy()
        for (utt_id, window, _), feats in zip(batch, out):
            parts[utt_id][window] = feats[: frames[utt_id][window]]
            if all(part is not None for part in parts[utt_id]):
                finish(utt_id)

    for utt_id, audio, error in loader:
        if audio is None:
            report["failed"][utt_id] = error
            bar.update(1)
            continue
        with torch.inference_mode():
            mel = teacher.log_mel_chunks(audio.to(device))
        frames[utt_id] = _window_frames(audio.numel())
        parts[utt_id] = [None] * len(frames[utt_id])
        queue.extend((utt_id, k, window) for k, window in enumerate(mel))
        while len(queue) >= batch_size:
            run(batch_size)
    if queue:
        run(len(queue))
    bar.close()
    return report


def load_teacher(teacher_dir: str | Path, utt_id: str) -> np.ndarray:
    """The stored teacher features of one utterance (for training).

    Arguments
    ---------
    teacher_dir : str or Path
        The stage-4 folder (``<output_folder>/teacher``).
    utt_id : str
        The utterance id.

    Returns
    -------
    np.ndarray
        ``[T_sem, D]`` float16; a missing (skipped by stage 4, or stage 4
        has not run) or corrupt file is a :class:`DataError`.
    """
    path = feature_path(teacher_dir, utt_id)
    if not path.is_file():
        raise DataError(f"{path}: no teacher features for '{utt_id}' (stage 4 has not run, or skipped it: "
                        f"see {Path(teacher_dir) / 'report.json'})")
    feats = load_array(path)
    if feats.ndim != 2:
        raise DataError(f"{path}: teacher features must be [T_sem, D], got shape {list(feats.shape)}")
    return feats
