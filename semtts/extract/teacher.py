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

Weights come from a Whisper model name (downloaded into ``cache_dir`` when
absent) or a local ``.pt`` checkpoint in whisper's format, checked by
:mod:`semtts.extract.whisper_loading`. Random weights are used only when
``allow_random_init`` is set and the weights cannot be had (a released model
that is not downloadable, or a checkpoint path that does not exist); that is
logged as a warning and recorded in the metadata.

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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import whisper
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm
from whisper.model import AudioEncoder, ModelDimensions

from semtts.audio import cut_off, load_audio, resample
from semtts.errors import ConfigError, DataError, first_line
from semtts.extract.common import feature_path, file_sha256, load_array, save_array_atomic
from semtts.extract.whisper_loading import (NAMED_DIMS, download_whisper, load_whisper_checkpoint, model_url,
                                            random_whisper_dims, read_whisper_checkpoint, release_sha256,
                                            weights_not_found, whisper_cache_dir, whisper_source)
from semtts.random_init import cpu_seeded

__all__ = [
    "SAMPLE_RATE",
    "FRAME_RATE",
    "RANDOM_INIT",
    "UNREADABLE",
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
        dims = dims if isinstance(dims, ModelDimensions) else random_whisper_dims(name, dims)
        with cpu_seeded(seed):
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
    random dims are a :class:`ConfigError`; an existing file that is not a
    Whisper checkpoint is a :class:`DataError` (random init or not).
    """
    source = whisper_source(model, "whisper_model")
    cache = whisper_cache_dir(cache_dir)
    if source == "file":
        path = Path(model).expanduser()
        full = load_whisper_checkpoint(path, "whisper_model")
        return WhisperTeacher(full.encoder, full.dims, layer, name=path.name, sha256=file_sha256(path)).eval()
    if source == "named":
        full = download_whisper(model, cache)
        if not isinstance(full, str):
            return WhisperTeacher(full.encoder, full.dims, layer, name=model, sha256=release_sha256(model)).eval()
        reason = full
    else:
        reason = "file not found"
    if not allow_random_init:
        raise weights_not_found(model, cache, reason, "whisper_model")
    dims = random_whisper_dims(model, random_dims)
    logger.warning(
        "WARNING: Whisper teacher %r is RANDOMLY INITIALISED (seed %d, %s; allow_random_init is set): "
        "its features are meaningless for distillation", model, seed, reason,
    )
    return WhisperTeacher.random_init(dims, layer, seed, name=_model_name(model)).eval()


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
    source = whisper_source(model, "whisper_model")
    cache = whisper_cache_dir(hp["whisper_cache_dir"])
    if source == "named" and ((cache / os.path.basename(model_url(model))).is_file() or not allow):
        dims, sha = ModelDimensions(**NAMED_DIMS[model]), release_sha256(model)
    elif source == "file":
        path = Path(model).expanduser()
        dims, sha = read_whisper_checkpoint(path, "whisper_model", check_weights=False)[0], file_sha256(path)
    elif allow:
        dims = random_whisper_dims(model, hp["whisper_random_dims"])
        return _metadata(dims, layer, _model_name(model), RANDOM_INIT, seed)
    else:
        raise weights_not_found(model, cache, "file not found", "whisper_model")
    return _metadata(dims, layer, _model_name(model), sha, None)


_AUDIO_ERRORS = (sf.SoundFileError, RuntimeError, OSError, ValueError, EOFError)
UNREADABLE = "cannot read the audio"
"""How a skip for audio that could not be read (or was cut off) begins: such files may be readable later."""


def read_teacher_audio(path: str | Path) -> torch.Tensor:
    """Read any file soundfile reads as mono ``[N]`` float32 at 16 kHz; an
    unreadable, non-finite or too short (no teacher frame) file is a
    :class:`DataError`."""
    try:
        audio, sr = load_audio(path, mono=True)
        missing = cut_off(path, audio.shape[-1])
    except _AUDIO_ERRORS as err:
        raise DataError(f"{path}: {UNREADABLE} ({first_line(err)})") from None
    if missing:  # cut off since stage 1 checked it: features of part of it would not match
        raise DataError(f"{path}: {UNREADABLE} ({missing})")
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
