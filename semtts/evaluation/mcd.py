"""Mel-cepstral distortion (MCD) between synthesized and reference audio.

Mel-cepstra are the cosine transform (:func:`dct_matrix`, scaled as a real
cepstrum) of the natural-log mel spectrogram of
:func:`semtts.audio.mel_spectrogram`; ``c0`` (the energy) is excluded. The two sequences are aligned with :func:`~semtts.evaluation.dtw.dtw_path`
and the distortion is averaged over the aligned frame pairs:

``MCD = (10 / ln 10) * sqrt(2 * sum_{d >= 1} (c_d - c'_d)^2)`` dB.

The reference is resampled to the synthesized audio's rate first.

Example
-------
>>> import torch
>>> t = torch.arange(22050) / 22050
>>> wav = 0.5 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(2 * torch.pi * 3 * t))
>>> mel_cepstrum(wav, 22050).shape  # [T_spec, n_cep - 1]
(86, 24)
>>> mcd(wav, wav, 22050)
0.0
>>> mcd(wav[:-2000], wav[2000:], 22050) > 0
True
"""

import math

import numpy as np
import torch

from semtts.audio import mel_spectrogram, resample
from semtts.errors import ConfigError
from semtts.evaluation.dtw import dtw_path

__all__ = ["MCD_CONSTANT", "dct_matrix", "mel_cepstrum", "mcd"]

MCD_CONSTANT = 10.0 * math.sqrt(2.0) / math.log(10.0)


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The DCT-II that gives real-cepstrum coefficients of a log spectrum.

    With ``c = dct_matrix(N, K) @ x`` the log spectrum expands as
    ``x_n ~ c_0 + 2 * sum_{d >= 1} c_d cos(pi d (n + 1/2) / N)`` (the scale of
    the mel-cepstra that MCD is defined on), i.e. ``c_d = (1/N) sum_n x_n
    cos(pi d (n + 1/2) / N)``.

    Arguments
    ---------
    n_in : int
        Input length (mel channels).
    n_out : int
        Coefficients kept (``<= n_in``).

    Returns
    -------
    np.ndarray
        ``[n_out, n_in]``: ``dct @ x`` gives ``c_0 .. c_{n_out - 1}``.

    Example
    -------
    >>> n = np.arange(80)
    >>> x = 1.5 + 2 * 0.25 * np.cos(np.pi * 3 * (n + 0.5) / 80)
    >>> (np.round(dct_matrix(80, 5) @ x, 6) + 0.0).tolist()
    [1.5, 0.0, 0.0, 0.25, 0.0]
    """
    if not 1 <= n_out <= n_in:
        raise ConfigError(f"mcd: need 1 <= n_cep <= n_mels, got n_cep={n_out}, n_mels={n_in}")
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    return np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) / n_in


def mel_cepstrum(wav: torch.Tensor, sample_rate: int, n_cep: int = 25, n_mels: int = 80,
                 n_fft: int = 1024, hop_length: int = 256) -> np.ndarray:
    """Mel-cepstra ``c1 .. c_{n_cep-1}`` of a waveform (``c0`` dropped).

    Arguments
    ---------
    wav : torch.Tensor
        ``[T]`` (or ``[1, T]``) samples.
    sample_rate : int
        Its sample rate.
    n_cep : int
        Cepstral coefficients computed, ``c0`` included.
    n_mels : int
        Mel channels of the log-mel spectrogram.
    n_fft : int
        FFT size (and window length).
    hop_length : int
        Frame shift.

    Returns
    -------
    np.ndarray
        ``[T // hop_length, n_cep - 1]`` float64.
    """
    wav = torch.as_tensor(wav).float().reshape(-1)
    mel = mel_spectrogram(wav, sample_rate, n_fft, hop_length, n_fft, n_mels)  # [n_mels, T_spec]
    cep = dct_matrix(n_mels, n_cep) @ mel.double().numpy()
    return cep[1:].T


def mcd(synthesized: torch.Tensor, reference: torch.Tensor, sample_rate: int,
        reference_rate: int | None = None, n_cep: int = 25, n_mels: int = 80,
        n_fft: int = 1024, hop_length: int = 256) -> float:
    """DTW-aligned mel-cepstral distortion in dB.

    Arguments
    ---------
    synthesized : torch.Tensor
        ``[T]`` synthesized samples at ``sample_rate``.
    reference : torch.Tensor
        ``[T']`` reference samples at ``reference_rate``.
    sample_rate : int
        Rate of ``synthesized``.
    reference_rate : int, optional
        Rate of ``reference`` (default: ``sample_rate``). Both are analysed at
        the lower of the two rates, so that the bands one of them lacks do
        not count as distortion.
    n_cep, n_mels, n_fft, hop_length : int
        Analysis settings (see :func:`mel_cepstrum`).

    Returns
    -------
    float
        Mean distortion over the DTW path; 0 for identical audio.
    """
    reference_rate = reference_rate or sample_rate
    rate = min(sample_rate, reference_rate)
    synthesized = resample(torch.as_tensor(synthesized).float().reshape(-1), sample_rate, rate)
    reference = resample(torch.as_tensor(reference).float().reshape(-1), reference_rate, rate)
    x = mel_cepstrum(synthesized, rate, n_cep, n_mels, n_fft, hop_length)
    y = mel_cepstrum(reference, rate, n_cep, n_mels, n_fft, hop_length)
    path = dtw_path(x, y)
    diff = x[path[:, 0]] - y[path[:, 1]]
    return float(MCD_CONSTANT * np.sqrt((diff * diff).sum(axis=1)).mean())
