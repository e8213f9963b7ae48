"""The CAM++ front end: Kaldi log-mel filterbank features of 16 kHz audio,
for a batch at once on its own device.

3D-Speaker computes its features with ``torchaudio.compliance.kaldi.fbank``
(80 bins, 25 ms windows every 10 ms, povey window, dither 0, pre-emphasis
0.97, DC offset removed, power spectrum of a 512-point FFT, mel bands from
20 Hz to Nyquist, log floored at float32 epsilon), then subtracts the
utterance mean of every bin. That function takes one utterance and builds its
window and mel matrix on the CPU at every call, then copies them to the
device and waits for it. :func:`batch_fbank` computes the same features for
``[B, S]`` equal-length audio in one pass, with the window and the mel matrix
made once per device (the speaker-consistency loss embeds a batch of decoder
windows in every training step); :func:`compute_fbank` is the one-utterance
form. ``tests/test_speaker_embeddings.py`` checks both against torchaudio.
The VITS spectrograms are another front end (:mod:`semtts.audio.features`):
a checkpoint-compatible CAM++ needs exactly these features.

Example
-------
>>> batch_fbank(torch.randn(3, 16000) * 0.1).shape     # [B, T_frames, 80]
torch.Size([3, 98, 80])
>>> compute_fbank(torch.randn(16000) * 0.1).shape      # [T_frames, 80]
torch.Size([98, 80])
"""

import functools

import torch
import torchaudio.compliance.kaldi as kaldi

from semtts.errors import DataError

__all__ = ["SAMPLE_RATE", "FBANK", "batch_fbank", "compute_fbank"]

SAMPLE_RATE = 16000
FBANK = {"num_mel_bins": 80, "frame_length_ms": 25.0, "frame_shift_ms": 10.0, "dither": 0.0,
         "window_type": "povey", "mean_norm": "utterance"}
_WINDOW = int(SAMPLE_RATE * FBANK["frame_length_ms"] / 1000)  # 400 samples
_SHIFT = int(SAMPLE_RATE * FBANK["frame_shift_ms"] / 1000)  # 160 samples
_FFT = 512  # the window rounded up to a power of two, as Kaldi does
_PREEMPHASIS = 0.97
_LOW_HZ = 20.0


@functools.lru_cache(maxsize=8)
def _window_and_mel_matrix(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The povey window ``[400]`` and the mel matrix ``[257, 80]`` on ``device`` (made once,
    as normal tensors even under inference mode, so that a later training step can use them)."""
    with torch.inference_mode(False):
        return _make_window_and_mel_matrix(device)


def _make_window_and_mel_matrix(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    window = torch.hann_window(_WINDOW, periodic=False, dtype=torch.float32).pow(0.85)
    # high_freq 0: Nyquist; the VTLN arguments are Kaldi's defaults (warp 1: no warping)
    banks, _ = kaldi.get_mel_banks(FBANK["num_mel_bins"], _FFT, float(SAMPLE_RATE), _LOW_HZ, 0.0,
                                   100.0, -500.0, 1.0)
    matrix = torch.nn.functional.pad(banks.float(), (0, 1)).T.contiguous()  # no weight on the Nyquist bin
    return window.to(device), matrix.to(device)


def batch_fbank(wav: torch.Tensor) -> torch.Tensor:
    """Mean-normalised Kaldi fbank of a batch of equal-length 16 kHz signals.

    Arguments
    ---------
    wav : torch.Tensor
        ``[B, S]`` samples in [-1, 1] at 16 kHz (``S`` at least 400: one
        25 ms window); any float dtype, computed in float32.

    Returns
    -------
    torch.Tensor
        ``[B, T_frames, 80]`` float32 with ``T_frames = 1 + (S - 400) // 160``,
        differentiable with respect to ``wav``.
    """
    if wav.dim() != 2:
        raise DataError(f"batch_fbank: expected [B, samples] audio, got {list(wav.shape)}")
    if wav.shape[-1] < _WINDOW:
        raise DataError(f"audio of {wav.shape[-1]} samples is shorter than one {FBANK['frame_length_ms']} ms "
                        "fbank frame")
    window, matrix = _window_and_mel_matrix(wav.device)
    frames = wav.float().unfold(-1, _WINDOW, _SHIFT)  # [B, M, 400], the frames that fit (Kaldi's snip_edges)
    frames = frames - frames.mean(dim=-1, keepdim=True)  # DC offset
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # the first sample repeats
    frames = (frames - _PREEMPHASIS * previous) * window
    power = torch.fft.rfft(frames, n=_FFT).abs().pow(2.0)  # [B, M, 257]
    feats = torch.matmul(power, matrix).clamp_min(torch.finfo(torch.float32).eps).log()  # [B, M, 80]
    return feats - feats.mean(dim=1, keepdim=True)  # utterance mean of every bin


def compute_fbank(wav: torch.Tensor) -> torch.Tensor:
    """Mean-normalised Kaldi fbank of one 16 kHz utterance, as 3D-Speaker computes it.

    Arguments
    ---------
    wav : torch.Tensor
        ``[T]`` or ``[1, T]`` samples in [-1, 1] at 16 kHz (at least 25 ms).

    Returns
    -------
    torch.Tensor
        ``[T_frames, 80]`` with ``T_frames = 1 + (T - 400) // 160``.
    """
    return batch_fbank(wav.reshape(1, -1))[0]
