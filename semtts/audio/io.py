"""Audio files and resampling: the only code of semtts that reads or writes audio.

Files are read and written with soundfile (``torchaudio.load`` needs
torchcodec, which semtts does not depend on).

Example
-------
>>> import tempfile, os, torch
>>> wav = torch.sin(torch.arange(22050) / 10.0).unsqueeze(0) * 0.5
>>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
>>> save_audio(path, wav, 22050)
>>> audio, sr = load_audio(path)
>>> audio.shape, sr
(torch.Size([1, 22050]), 22050)
>>> resample(audio, sr, 16000).shape
torch.Size([1, 16000])
"""

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT
from torch import nn

from semtts.durable import write_atomically
from semtts.errors import DataError, first_line

__all__ = ["load_audio", "read_checked_audio", "save_audio", "resample", "resampler", "audio_info", "cut_off",
           "declared_frames"]


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Return soundfile's header information (frames, samplerate, channels).

    Arguments
    ---------
    path : str or Path
        An audio file soundfile can read (wav, flac, ogg, ...).

    Returns
    -------
    soundfile info object
        With ``frames``, ``samplerate``, ``channels`` and ``duration``.
    """
    return sf.info(str(path))


def load_audio(path: str | Path, mono: bool = False) -> tuple[torch.Tensor, int]:
    """Read an audio file as float32 ``[C, T]`` (or ``[1, T]`` when ``mono``).

    Arguments
    ---------
    path : str or Path
        The file to read.
    mono : bool
        Average the channels into one.

    Returns
    -------
    audio : torch.Tensor
        ``[C, T]`` float32 samples in [-1, 1].
    sample_rate : int
        The file's sample rate.
    """
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    audio = torch.from_numpy(np.ascontiguousarray(data.T))
    if mono and audio.shape[0] > 1:
        audio = audio.mean(dim=0, keepdim=True)
    return audio, int(sr)


def read_checked_audio(path: str | Path, what: str, min_seconds: float = 0.0) -> tuple[torch.Tensor, int]:
    """Read one recording as mono float32 ``[T]``; a missing, unreadable, empty,
    non-finite or too short file is a one-line :class:`DataError` naming ``path`` and ``what``.

    Arguments
    ---------
    path : str or Path
        The audio file.
    what : str
        What it is, for the messages (``"reference recording"``).
    min_seconds : float
        The shortest accepted duration (0: any non-empty file).

    Returns
    -------
    audio : torch.Tensor
        ``[T]`` samples.
    sample_rate : int

    Example
    -------
    >>> read_checked_audio("no/such.wav", "reference recording")
    Traceback (most recent call last):
    ...
    semtts.errors.DataError: no/such.wav: reference recording not found
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        audio, sr = load_audio(path, mono=True)
    except Exception as err:  # soundfile raises several types for foreign files
        reason = first_line(err, 150)
        raise DataError(f"{path}: cannot read the {what} ({reason})") from None
    if audio.numel() == 0:
        raise DataError(f"{path}: the {what} is empty")
    if not bool(torch.isfinite(audio).all()):
        raise DataError(f"{path}: the {what} has non-finite samples (NaN or infinity)")
    if audio.shape[-1] < min_seconds * sr:
        raise DataError(f"{path}: the {what} is shorter than {round(min_seconds * 1000)} ms")
    return audio[0], sr


def save_audio(path: str | Path, audio: torch.Tensor, sample_rate: int, keep_range: bool = False) -> None:
    """Write ``[T]`` or ``[C, T]`` float audio as 16-bit PCM (wav) or the
    format the file name implies; parent folders are created.

    The file is written atomically (:func:`semtts.durable.write_atomically`:
    a temporary file beside it in the format of ``path``'s suffix, flushed,
    then renamed onto ``path``). A failed or interrupted write leaves an
    earlier file at ``path`` as it was, and no temporary file behind.

    Arguments
    ---------
    path : str or Path
        Where to write; the extension selects the format.
    audio : torch.Tensor
        ``[T]`` or ``[C, T]`` samples in [-1, 1] (clipped).
    sample_rate : int
        The sample rate to record in the header.
    keep_range : bool
        For a wav whose samples pass [-1, 1]: write 32-bit float samples,
        unclipped, instead of clipping them to 16-bit PCM (the audio cache
        keeps a float source's level so).

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> save_audio(os.path.join(folder, "b.flac"), torch.zeros(1600), 16000)
    >>> os.listdir(folder), audio_info(os.path.join(folder, "b.flac")).frames
    (['b.flac'], 1600)
    >>> save_audio(os.path.join(folder, "loud.wav"), torch.full((16,), 1.5), 16000, keep_range=True)
    >>> float(load_audio(os.path.join(folder, "loud.wav"))[0].max())
    1.5
    """
    data = audio.detach().float().cpu()
    if data.dim() == 1:
        data = data.unsqueeze(0)
    suffix = Path(path).suffix.lower()
    subtype = "PCM_16" if suffix in (".wav", ".flac") else None
    if keep_range and suffix == ".wav" and bool(data.abs().max() > 1.0):
        subtype = "FLOAT"
    else:
        data = data.clamp(-1.0, 1.0)
    data = data.numpy().T
    fmt = suffix[1:].upper() or None  # given, not read from the temporary file's name
    write_atomically(path, lambda tmp: sf.write(str(tmp), data, sample_rate, subtype=subtype, format=fmt))


def resample(audio: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample ``[..., T]`` audio with a windowed-sinc filter (torchaudio).

    Arguments
    ---------
    audio : torch.Tensor
        ``[..., T]`` samples.
    orig_sr : int
        The current sample rate.
    new_sr : int
        The wanted sample rate; equal rates return the input unchanged.

    Returns
    -------
    torch.Tensor
        ``[..., T * new_sr / orig_sr]`` samples.
    """
    if orig_sr == new_sr:
        return audio
    return AF.resample(audio, orig_sr, new_sr)


def resampler(orig_sr: int, new_sr: int) -> nn.Module:
    """:func:`resample` as a module whose filter is computed once, a buffer
    that moves with the module (on a GPU, no filter is built on the host and
    copied over at every call, as :func:`resample` does).

    Arguments
    ---------
    orig_sr : int
        The input sample rate.
    new_sr : int
        The output sample rate; equal rates give an identity module.

    Returns
    -------
    torch.nn.Module
        ``[..., T]`` to ``[..., T * new_sr / orig_sr]``.

    Example
    -------
    >>> audio = torch.randn(2, 22050)
    >>> bool(torch.allclose(resampler(22050, 16000)(audio), resample(audio, 22050, 16000), atol=1e-6))
    True
    """
    if orig_sr == new_sr:
        return nn.Identity()
    return AT.Resample(orig_sr, new_sr, dtype=torch.float32)  # float32, as resample() computes it


def declared_frames(path: str | Path, header_frames: int | None = None) -> int:
    """The number of frames an audio file's header promises (more than can be
    read from a file cut off after it was written).

    libsndfile shortens the frame count of a WAV whose data chunk is cut off,
    so for RIFF files the ``data`` chunk size is read from the header itself;
    other formats (FLAC's STREAMINFO, ...) report the declared count.

    Arguments
    ---------
    path : str or Path
        The audio file.
    header_frames : int, optional
        The frame count soundfile reports (read here when not given).

    Returns
    -------
    int
    """
    if header_frames is None:
        header_frames = sf.info(str(path)).frames
    declared = _riff_declared_frames(Path(path))
    return header_frames if declared is None else max(declared, header_frames)


def cut_off(path: str | Path, n_read: int) -> str | None:
    """What is missing when ``n_read`` frames were read from ``path`` but its
    header promises more (a file cut off after it was written, e.g. a copy in
    progress), or None.

    Arguments
    ---------
    path : str or Path
        The audio file.
    n_read : int
        The frames read from it.

    Returns
    -------
    str or None
        ``"truncated: <read> of <declared> samples"``.
    """
    declared = declared_frames(path)
    return f"truncated: {n_read} of {declared} samples" if n_read < declared else None


def _riff_declared_frames(path: Path) -> int | None:
    """Frames declared by a RIFF/WAVE header (data chunk size / block align),
    or None when the file is not a plain RIFF WAVE or the size is unset."""
    block_align = None
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                fmt = f.read(min(size, 16))
                if len(fmt) < 14:
                    return None
                block_align = struct.unpack("<H", fmt[12:14])[0]
                f.seek(size - len(fmt) + (size & 1), os.SEEK_CUR)
            elif chunk_id == b"data":
                # 0 and 0xFFFFFFFF mark streams written without a final size.
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                f.seek(size + (size & 1), os.SEEK_CUR)
