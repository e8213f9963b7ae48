"""F0 tracking (a YIN-style estimator) and the log-F0 RMSE between
synthesized and reference audio.

The tracker works at 16 kHz with a 10 ms hop. Each frame of
``2 * sr / f0_min`` samples (reflect-padded like :mod:`semtts.audio`, so
``T`` samples give ``T // hop`` frames) gets YIN's cumulative mean
normalised difference function (from FFT autocorrelations); the first lag
whose value drops below ``threshold`` (then its local minimum, refined by a
parabola) gives the period. Frames with no such lag, quieter than
``silence_db`` below the loudest frame, or below ``floor_db`` (dB re full
scale), are unvoiced (F0 = 0).

The log-F0 RMSE aligns both utterances by DTW on their mel-cepstra (at the
tracker's frame rate, :func:`semtts.evaluation.mcd.mel_cepstrum`) and is
computed over the aligned pairs voiced in both; the voicing error is the
fraction of aligned pairs whose voicing disagrees.

Example
-------
>>> import torch
>>> t = torch.arange(16000) / 16000
>>> tone = 0.5 * torch.sin(2 * torch.pi * 220 * t)
>>> f0 = estimate_f0(tone, 16000)            # [T // 160] Hz, 0 = unvoiced
>>> f0.shape, round(float(np.median(f0[f0 > 0])))
((100,), 220)
>>> f0_rmse(tone, tone, 16000)["log_f0_rmse"]
0.0
"""

import math

import numpy as np
import torch

from semtts.audio import resample
from semtts.errors import ConfigError
from semtts.evaluation.dtw import dtw_path
from semtts.evaluation.mcd import mel_cepstrum

__all__ = ["F0_RATE", "F0_HOP", "estimate_f0", "f0_rmse"]

F0_RATE = 16000  # analysis sample rate
F0_HOP = 160  # 10 ms frames


def _frames(x: np.ndarray, width: int, hop: int) -> np.ndarray:
    """``[T // hop, width]`` frames of ``x`` reflect-padded by ``(width - hop) / 2``."""
    pad = (width - hop) // 2
    mode = "reflect" if x.size > pad else "constant"
    padded = np.pad(x, (pad, width - hop - pad), mode=mode)
    n = x.size // hop
    index = np.arange(width)[None, :] + hop * np.arange(n)[:, None]
    return padded[index]


def estimate_f0(wav: torch.Tensor, sample_rate: int, f0_min: float = 60.0, f0_max: float = 600.0,
                threshold: float = 0.15, silence_db: float = 40.0, floor_db: float = -60.0) -> np.ndarray:
    """Frame-wise F0 of a waveform (YIN-style).

    Arguments
    ---------
    wav : torch.Tensor
        ``[T]`` (or ``[1, T]``) samples.
    sample_rate : int
        Its sample rate (resampled to 16 kHz for the analysis).
    f0_min, f0_max : float
        The search range in Hz.
    threshold : float
        Dip of the normalised difference function that counts as periodic.
    silence_db : float
        Frames this many dB below the loudest frame are unvoiced.
    floor_db : float
        Frames whose mean power is below this (dB re full scale) are unvoiced.

    Returns
    -------
    np.ndarray
        ``[N // 160]`` float64 F0 in Hz (0 for unvoiced frames), ``N`` the
        number of 16-kHz samples.
    """
    if not 0 < f0_min < f0_max < F0_RATE / 4:
        raise ConfigError(f"f0: need 0 < f0_min < f0_max < {F0_RATE // 4} Hz, got {f0_min}, {f0_max}")
    x = resample(torch.as_tensor(wav).float().reshape(-1), int(sample_rate), F0_RATE).double().numpy()
    tau_min, tau_max = int(F0_RATE / f0_max), int(math.ceil(F0_RATE / f0_min))
    width = 2 * tau_max + (2 * tau_max - F0_HOP) % 2  # (width - hop) even
    frames = _frames(x, width, F0_HOP)  # [N, W]
    if frames.shape[0] == 0:
        return np.zeros(0)
    frames = frames - frames.mean(axis=1, keepdims=True)
    n_fft = 1 << int(math.ceil(math.log2(2 * width)))
    spec = np.fft.rfft(frames, n_fft, axis=1)
    acf = np.fft.irfft(spec * np.conj(spec), n_fft, axis=1)[:, : tau_max + 1]  # r(tau) over the whole frame
    energy = np.cumsum(frames * frames, axis=1)
    total = energy[:, -1:]
    lags = np.arange(tau_max + 1)
    head = np.concatenate([np.zeros((frames.shape[0], 1)), energy], axis=1)[:, width - lags]  # sum x[0 : W-tau]^2
    tail = total - np.concatenate([np.zeros((frames.shape[0], 1)), energy], axis=1)[:, lags]  # sum x[tau : W]^2
    diff = np.maximum(head + tail - 2.0 * acf, 0.0)
    cumulative = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, tau_max + 1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] / np.maximum(cumulative, 1e-12)
    f0 = np.zeros(frames.shape[0])
    loud = 10 * np.log10(total[:, 0] / width + 1e-12)
    loud_enough = loud > max(loud.max() - silence_db, floor_db)
    for i in np.nonzero(loud_enough)[0]:
        row = cmnd[i]
        below = np.nonzero(row[tau_min:tau_max] < threshold)[0]
        if below.size == 0:
            continue
        tau = tau_min + int(below[0])
        while tau + 1 < tau_max and row[tau + 1] < row[tau]:
            tau += 1
        shift = 0.0
        if 0 < tau < tau_max:
            a, b, c = row[tau - 1], row[tau], row[tau + 1]
            denom = a - 2 * b + c
            if denom > 0:
                shift = 0.5 * (a - c) / denom
        f0[i] = F0_RATE / (tau + shift)
    return f0


def f0_rmse(synthesized: torch.Tensor, reference: torch.Tensor, sample_rate: int,
            reference_rate: int | None = None, f0_min: float = 60.0, f0_max: float = 600.0) -> dict:
    """DTW-aligned log-F0 RMSE and voicing error.

    Arguments
    ---------
    synthesized : torch.Tensor
        ``[T]`` synthesized samples at ``sample_rate``.
    reference : torch.Tensor
        ``[T']`` reference samples at ``reference_rate``.
    sample_rate : int
        Rate of ``synthesized``.
    reference_rate : int, optional
        Rate of ``reference`` (default: ``sample_rate``).
    f0_min, f0_max : float
        The F0 search range in Hz.

    Returns
    -------
    dict
        ``log_f0_rmse`` (natural-log units; None when no aligned pair is
        voiced in both), ``vuv_error`` (fraction) and ``voiced_pairs``.
    """
    reference_rate = reference_rate or sample_rate
    pair = []
    for wav, rate in ((synthesized, sample_rate), (reference, reference_rate)):
        wav16 = resample(torch.as_tensor(wav).float().reshape(-1), int(rate), F0_RATE)
        cep = mel_cepstrum(wav16, F0_RATE, n_cep=25, n_mels=40, n_fft=2 * F0_HOP * 2, hop_length=F0_HOP)
        pair.append((cep, estimate_f0(wav16, F0_RATE, f0_min, f0_max)))
    (cep_x, f0_x), (cep_y, f0_y) = pair
    path = dtw_path(cep_x, cep_y)
    fx, fy = f0_x[path[:, 0]], f0_y[path[:, 1]]
    both = (fx > 0) & (fy > 0)
    vuv = float(np.mean((fx > 0) != (fy > 0)))
    rmse = float(np.sqrt(np.mean((np.log(fx[both]) - np.log(fy[both])) ** 2))) if both.any() else None
    return {"log_f0_rmse": rmse, "vuv_error": vuv, "voiced_pairs": int(both.sum())}
