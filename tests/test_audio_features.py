"""Tests of the spectrogram features of semtts.audio (shapes, references, caching, precision)."""

import dataclasses

import numpy as np
import pytest
import torch
import torchaudio

from semtts.audio import (
    SpectrogramConfig,
    dynamic_range_compression,
    hann_window,
    linear_spectrogram,
    mel_filterbank,
    mel_spectrogram,
    spec_to_mel,
)
from semtts.errors import ConfigError, DataError

SR, N_FFT, HOP, WIN, N_MELS = 16000, 512, 128, 512, 40


# --- an independent numpy reference ----------------------------------------


def _hz_to_mel_slaney(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz_slaney(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _numpy_filterbank(sr, n_fft, n_mels, f_min, f_max):
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(f_min), _hz_to_mel_slaney(f_max), n_mels + 2))
    fb = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        fb[m] = np.maximum(0.0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    return fb


def _numpy_linear(wav, n_fft, hop, win):
    pad = (n_fft - hop) // 2
    x = np.pad(wav.astype(np.float64), (pad, pad), mode="reflect")
    window = np.zeros(n_fft)
    offset = (n_fft - win) // 2
    window[offset : offset + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    n_frames = 1 + (len(x) - n_fft) // hop
    frames = np.stack([x[i * hop : i * hop + n_fft] * window for i in range(n_frames)], axis=1)
    spectrum = np.fft.rfft(frames, axis=0)
    return np.sqrt(np.abs(spectrum) ** 2 + 1e-6)


# --- tests -------------------------------------------------------------------


@pytest.mark.parametrize("num_samples", [HOP * 20, HOP * 20 + 1, HOP * 20 + HOP - 1, HOP * 7])
def test_frame_count_is_samples_floor_hop(num_samples):
    wav = torch.randn(2, num_samples)
    spec = linear_spectrogram(wav, N_FFT, HOP, WIN)
    assert spec.shape == (2, N_FFT // 2 + 1, num_samples // HOP)
    cfg = SpectrogramConfig(SR, N_FFT, HOP, WIN, N_MELS)
    assert cfg.num_frames(num_samples) == num_samples // HOP
    assert cfg.mel_spectrogram(wav).shape == (2, N_MELS, num_samples // HOP)


def test_default_vits_settings_frame_count():
    wav = torch.randn(1, 256 * 32)
    assert linear_spectrogram(wav).shape == (1, 513, 32)
    assert mel_spectrogram(wav).shape == (1, 80, 32)


def test_input_layouts():
    wav = torch.randn(3, 4000)
    batched = linear_spectrogram(wav, N_FFT, HOP, WIN)
    assert torch.equal(linear_spectrogram(wav.unsqueeze(1), N_FFT, HOP, WIN), batched)
    single = linear_spectrogram(wav[1], N_FFT, HOP, WIN)
    assert single.shape == batched.shape[1:]
    torch.testing.assert_close(single, batched[1])


def test_linear_and_mel_match_numpy_reference():
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(4000, generator=gen) * 0.3
    ref_spec = _numpy_linear(wav.numpy(), N_FFT, HOP, 400)
    spec = linear_spectrogram(wav, N_FFT, HOP, 400)  # win < n_fft: centred window
    np.testing.assert_allclose(spec.numpy(), ref_spec, rtol=1e-4, atol=1e-4)

    ref_fb = _numpy_filterbank(SR, N_FFT, N_MELS, 20.0, 7600.0)
    fb = mel_filterbank(SR, N_FFT, N_MELS, 20.0, 7600.0)
    np.testing.assert_allclose(fb.numpy(), ref_fb, rtol=1e-4, atol=1e-7)

    ref_mel = np.log(np.maximum(ref_fb @ ref_spec, 1e-5))
    mel = mel_spectrogram(wav, SR, N_FFT, HOP, 400, N_MELS, 20.0, 7600.0)
    np.testing.assert_allclose(mel.numpy(), ref_mel, rtol=1e-4, atol=1e-4)


def test_mel_matches_torchaudio_with_equal_padding():
    gen = torch.Generator().manual_seed(1)
    wav = torch.randn(2, 5000, generator=gen) * 0.3
    pad = (N_FFT - HOP) // 2
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=N_FFT, win_length=WIN, hop_length=HOP, f_min=0.0, f_max=None,
        n_mels=N_MELS, center=False, power=1.0, norm="slaney", mel_scale="slaney",
    )
    padded = torch.nn.functional.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    expected = torch.log(torch.clamp(transform(padded), min=1e-5))
    mel = mel_spectrogram(wav, SR, N_FFT, HOP, WIN, N_MELS)
    assert mel.shape == expected.shape
    # only the 1e-6 inside VITS's sqrt differs; noise keeps the magnitudes far above it
    torch.testing.assert_close(mel, expected, rtol=1e-4, atol=1e-4)


def test_config_methods_equal_functions():
    cfg = SpectrogramConfig(SR, N_FFT, HOP, WIN, N_MELS, f_min=50.0, f_max=7000.0)
    wav = torch.randn(2, 3000)
    torch.testing.assert_close(cfg.mel_spectrogram(wav), mel_spectrogram(wav, **dataclasses.asdict(cfg)))
    spec = cfg.linear_spectrogram(wav)
    assert spec.shape[1] == cfg.n_freqs
    torch.testing.assert_close(cfg.spec_to_mel(spec), cfg.mel_spectrogram(wav))


def test_caching_returns_same_object():
    assert hann_window(WIN) is hann_window(WIN, torch.device("cpu"))
    assert hann_window(WIN, dtype=torch.float64) is not hann_window(WIN)
    assert hann_window(WIN, dtype=torch.float64).dtype == torch.float64
    fb = mel_filterbank(SR, N_FFT, N_MELS)
    assert fb is mel_filterbank(SR, N_FFT, N_MELS, 0.0, SR / 2, "cpu")
    assert fb is not mel_filterbank(SR, N_FFT, N_MELS + 1)
    assert mel_filterbank(SR, N_FFT, N_MELS, dtype=torch.float64).dtype == torch.float64


def test_float32_under_autocast_and_from_half_input():
    wav = torch.randn(2, 3000)
    expected = mel_spectrogram(wav, SR, N_FFT, HOP, WIN, N_MELS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mel = mel_spectrogram(wav, SR, N_FFT, HOP, WIN, N_MELS)
        spec = spec_to_mel(linear_spectrogram(wav.bfloat16(), N_FFT, HOP, WIN), SR, N_FFT, N_MELS)
    assert mel.dtype == torch.float32 and spec.dtype == torch.float32
    torch.testing.assert_close(mel, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_under_autocast():
    wav = torch.randn(2, 3000)
    expected = mel_spectrogram(wav, SR, N_FFT, HOP, WIN, N_MELS)
    with torch.autocast("cuda", dtype=torch.float16):
        mel = mel_spectrogram(wav.cuda(), SR, N_FFT, HOP, WIN, N_MELS)
    assert mel.dtype == torch.float32 and mel.device.type == "cuda"
    torch.testing.assert_close(mel.cpu(), expected, rtol=1e-4, atol=1e-4)
    assert mel_filterbank(SR, N_FFT, N_MELS, device="cuda") is mel_filterbank(
        SR, N_FFT, N_MELS, device=mel.device
    )


def test_gradient_flows_and_is_finite():
    wav = torch.zeros(1, 2000, requires_grad=True)  # silence: sqrt(0 + 1e-6) keeps it finite
    mel_spectrogram(wav, SR, N_FFT, HOP, WIN, N_MELS).sum().backward()
    assert torch.isfinite(wav.grad).all()


def test_batch_with_lengths_equals_each_item_alone():
    # VITS computes every utterance's spectrogram on its own: a zero-padded batch
    # given its lengths must not let the padding (or a longer neighbour) change an item
    torch.manual_seed(0)
    lengths = torch.tensor([9000, 4000, 6001, 2500])
    items = [torch.randn(int(n)) for n in lengths]
    batch = torch.stack([torch.nn.functional.pad(x, (0, 9000 - x.numel())) for x in items])
    cfg = SpectrogramConfig(sample_rate=SR, n_fft=N_FFT, hop_length=HOP, win_length=WIN, n_mels=N_MELS)
    spec = cfg.linear_spectrogram(batch, lengths)
    mel = cfg.mel_spectrogram(batch, lengths)
    for i, x in enumerate(items):
        frames = x.numel() // HOP
        torch.testing.assert_close(spec[i, :, :frames], cfg.linear_spectrogram(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mel[i, :, :frames], cfg.mel_spectrogram(x), rtol=1e-5, atol=1e-5)
    # without lengths the zeros are read: the last frames of a short item differ
    plain = cfg.linear_spectrogram(batch)
    assert not torch.allclose(plain[1, :, : 4000 // HOP], spec[1, :, : 4000 // HOP], atol=1e-3)
    # full-length items: the same as the plain reflect padding; an item's padding is never read
    full = torch.randn(2, 3000, requires_grad=True)
    torch.testing.assert_close(cfg.linear_spectrogram(full, torch.tensor([3000, 3000])), cfg.linear_spectrogram(full))
    cfg.linear_spectrogram(full, torch.tensor([3000, 2000])).sum().backward()
    assert torch.isfinite(full.grad).all() and full.grad[1, :2000].abs().min() > 0
    assert full.grad[1, 2000:].abs().sum() == 0 and full.grad[0, 2000:].abs().min() > 0


def test_dynamic_range_compression_floor():
    out = dynamic_range_compression(torch.tensor([0.0, 1e-7, 1.0, np.e]))
    torch.testing.assert_close(out, torch.tensor([np.log(1e-5), np.log(1e-5), 0.0, 1.0], dtype=torch.float32))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hop_length": 0},
        {"win_length": 2048},
        {"hop_length": 255},  # n_fft - hop odd
        {"n_mels": 0},
        {"f_max": 20000.0},
        {"f_min": 9000.0, "f_max": 8000.0},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ConfigError):
        SpectrogramConfig(**kwargs)


def test_bad_input_raises():
    with pytest.raises(DataError, match="too few"):
        linear_spectrogram(torch.randn(1, 100))
    with pytest.raises(DataError, match="floating-point"):
        linear_spectrogram(torch.zeros(1, 4000, dtype=torch.int16))
    with pytest.raises(DataError, match=r"\[T\], \[B, T\] or \[B, 1, T\]"):
        linear_spectrogram(torch.randn(2, 2, 4000))
    with pytest.raises(DataError, match="spec_to_mel"):
        spec_to_mel(torch.ones(1, 100, 5))


def test_cached_windows_made_in_inference_mode_serve_training():
    # synthesis (inference mode) first, then a training step in the same process
    cfg = SpectrogramConfig(sample_rate=16000, n_fft=64, hop_length=16, win_length=64, n_mels=8)
    with torch.inference_mode():
        cfg.mel_spectrogram(torch.randn(1, 400))
    wav = torch.randn(1, 400, requires_grad=True)
    cfg.mel_spectrogram(wav).sum().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all()
