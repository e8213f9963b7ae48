"""Spectrogram features: the only STFT and mel code of the VITS side of semtts.

Data preparation, training (losses included), synthesis and evaluation all
come here. The features follow VITS: a linear magnitude spectrogram of
``T // hop`` frames (reflect padding of ``(n_fft - hop) / 2`` on both sides,
no centring), and a log mel spectrogram made from it with a slaney-normalised,
slaney-scale filterbank (librosa's default) and ``log(clamp(x, 1e-5))``
compression. Both are computed in float32, also under autocast.

Example
-------
>>> import torch
>>> audio = torch.sin(torch.arange(22050) / 10.0).unsqueeze(0) * 0.5
>>> cfg = SpectrogramConfig(sample_rate=22050, n_mels=80)
>>> cfg.linear_spectrogram(audio).shape  # [B, n_fft // 2 + 1, T // hop]
torch.Size([1, 513, 86])
>>> cfg.mel_spectrogram(audio).shape  # [B, n_mels, T // hop]
torch.Size([1, 80, 86])
"""

import functools
from dataclasses import dataclass

import torch
import torchaudio.functional as AF

from semtts.errors import ConfigError, DataError

__all__ = [
    "SpectrogramConfig",
    "hann_window",
    "mel_filterbank",
    "linear_spectrogram",
    "spec_to_mel",
    "mel_spectrogram",
    "dynamic_range_compression",
]


def _check_stft_params(n_fft: int, hop_length: int, win_length: int) -> None:
    """Raise :class:`ConfigError` for STFT settings VITS-style framing cannot use."""
    for name, value in (("n_fft", n_fft), ("hop_length", hop_length), ("win_length", win_length)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"spectrogram: {name} must be a positive integer, got {value!r}")
    if win_length > n_fft:
        raise ConfigError(f"spectrogram: win_length ({win_length}) must not exceed n_fft ({n_fft})")
    if hop_length > n_fft or (n_fft - hop_length) % 2:
        raise ConfigError(
            f"spectrogram: n_fft - hop_length ({n_fft} - {hop_length}) must be even and >= 0 "
            "(it is split into equal reflect paddings on both sides)"
        )


def _check_mel_params(sample_rate: int, n_mels: int, f_min: float, f_max: float | None) -> float:
    """Raise :class:`ConfigError` for bad mel settings; return the effective ``f_max``."""
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise ConfigError(f"spectrogram: sample_rate must be a positive integer, got {sample_rate!r}")
    if not isinstance(n_mels, int) or isinstance(n_mels, bool) or n_mels <= 0:
        raise ConfigError(f"spectrogram: n_mels must be a positive integer, got {n_mels!r}")
    top = sample_rate / 2 if f_max is None else float(f_max)
    if not 0.0 <= f_min < top <= sample_rate / 2:
        raise ConfigError(
            f"spectrogram: need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, "
            f"f_max={f_max}, sample_rate={sample_rate}"
        )
    return top


@dataclass(frozen=True)
class SpectrogramConfig:
    """The spectrogram settings of a model, in one object.

    The field names match the keyword arguments of :func:`mel_spectrogram`,
    so ``mel_spectrogram(wav, **dataclasses.asdict(cfg))`` equals
    ``cfg.mel_spectrogram(wav)``. Invalid settings raise :class:`ConfigError`.

    Arguments
    ---------
    sample_rate : int
        Sample rate of the audio in Hz.
    n_fft : int
        FFT size; the spectrogram has ``n_fft // 2 + 1`` bins.
    hop_length : int
        Samples between frames; ``T`` samples give ``T // hop_length`` frames.
    win_length : int
        Hann window length (``<= n_fft``).
    n_mels : int
        Number of mel channels.
    f_min : float
        Lowest mel filter edge in Hz.
    f_max : float or None
        Highest mel filter edge in Hz (``None``: ``sample_rate / 2``).

    Example
    -------
    >>> cfg = SpectrogramConfig(sample_rate=16000, n_fft=512, hop_length=128,
    ...                         win_length=512, n_mels=40)
    >>> cfg.n_freqs, cfg.num_frames(16000)
    (257, 125)
    >>> cfg.mel_spectrogram(torch.zeros(2, 16000)).shape
    torch.Size([2, 40, 125])
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None

    def __post_init__(self) -> None:
        _check_stft_params(self.n_fft, self.hop_length, self.win_length)
        _check_mel_params(self.sample_rate, self.n_mels, self.f_min, self.f_max)

    @property
    def n_freqs(self) -> int:
        """Number of linear-spectrogram bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Number of spectrogram frames for ``num_samples`` samples (``T // hop``)."""
        return num_samples // self.hop_length

    @property
    def min_samples(self) -> int:
        """The fewest samples an item may have: more than the reflect padding ``(n_fft - hop) / 2``, and one frame."""
        return max((self.n_fft - self.hop_length) // 2 + 1, self.hop_length)

    def linear_spectrogram(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`linear_spectrogram` with these settings (``lengths``: each item padded at its own end)."""
        return linear_spectrogram(wav, self.n_fft, self.hop_length, self.win_length, lengths)

    def spec_to_mel(self, spec: torch.Tensor) -> torch.Tensor:
        """:func:`spec_to_mel` with these settings."""
        return spec_to_mel(spec, self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max)

    def mel_spectrogram(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`mel_spectrogram` with these settings (``lengths``: each item padded at its own end)."""
        return self.spec_to_mel(self.linear_spectrogram(wav, lengths))


def _as_device(device: torch.device | str) -> torch.device:
    """Normalise a device so that ``"cuda"`` and ``"cuda:0"`` share a cache entry."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)  # a cached tensor first made under inference mode would break later training
def _cached_hann(win_length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(win_length, periodic=True, device=device, dtype=dtype)


def hann_window(
    win_length: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The periodic Hann window, cached per length, device and dtype.

    The returned tensor is shared between callers: do not modify it in place.

    Arguments
    ---------
    win_length : int
        Window length in samples.
    device : torch.device or str
        Where the window lives.
    dtype : torch.dtype
        Its floating-point type.

    Returns
    -------
    torch.Tensor
        ``[win_length]``.

    Example
    -------
    >>> w = hann_window(1024)
    >>> w.shape, w is hann_window(1024, "cpu")
    (torch.Size([1024]), True)
    """
    return _cached_hann(int(win_length), _as_device(device), dtype)


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)  # as _cached_hann
def _cached_mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    fbank = AF.melscale_fbanks(
        n_freqs=n_fft // 2 + 1,
        f_min=f_min,
        f_max=f_max,
        n_mels=n_mels,
        sample_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )  # [n_freqs, n_mels], computed in float32 on the CPU
    return fbank.T.contiguous().to(device=device, dtype=dtype)


def mel_filterbank(
    sample_rate: int = 22050,
    n_fft: int = 1024,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: float | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The slaney-scale, slaney-normalised triangular mel filterbank
    (librosa's default, which VITS uses), cached per settings, device and dtype.

    The returned tensor is shared between callers: do not modify it in place.

    Arguments
    ---------
    sample_rate : int
        Sample rate in Hz.
    n_fft : int
        FFT size; the filters cover ``n_fft // 2 + 1`` bins.
    n_mels : int
        Number of filters.
    f_min : float
        Lowest filter edge in Hz.
    f_max : float or None
        Highest filter edge in Hz (``None``: ``sample_rate / 2``).
    device : torch.device or str
        Where the filterbank lives.
    dtype : torch.dtype
        Its floating-point type.

    Returns
    -------
    torch.Tensor
        ``[n_mels, n_fft // 2 + 1]``: ``fbank @ spec`` gives the mel spectrogram.

    Example
    -------
    >>> fb = mel_filterbank(22050, 1024, 80)
    >>> fb.shape, fb is mel_filterbank(22050, 1024, 80)
    (torch.Size([80, 513]), True)
    """
    top = _check_mel_params(sample_rate, n_mels, f_min, f_max)
    if not isinstance(n_fft, int) or n_fft <= 0:
        raise ConfigError(f"spectrogram: n_fft must be a positive integer, got {n_fft!r}")
    return _cached_mel_filterbank(
        int(sample_rate), int(n_fft), int(n_mels), float(f_min), float(top), _as_device(device), dtype
    )


def dynamic_range_compression(x: torch.Tensor, clip: float = 1e-5) -> torch.Tensor:
    """``log(clamp(x, min=clip))``: the compression VITS applies to mel magnitudes.

    Arguments
    ---------
    x : torch.Tensor
        Non-negative magnitudes, any shape.
    clip : float
        Floor applied before the logarithm.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Example
    -------
    >>> dynamic_range_compression(torch.tensor([0.0, 1.0]))
    tensor([-11.5129,   0.0000])
    """
    return torch.log(torch.clamp(x, min=clip))


def _waveform_batch(wav: torch.Tensor, where: str) -> tuple[torch.Tensor, bool]:
    """``[T]``, ``[B, T]`` or ``[B, 1, T]`` -> (``[B, T]`` float32, was 1-D)."""
    if not torch.is_tensor(wav) or not wav.is_floating_point():
        got = f"a tensor of {wav.dtype}" if torch.is_tensor(wav) else type(wav).__name__
        raise DataError(f"{where}: the waveform must be a floating-point tensor, got {got}")
    if wav.dim() == 1:
        return wav.unsqueeze(0).float(), True
    if wav.dim() == 2:
        return wav.float(), False
    if wav.dim() == 3 and wav.shape[1] == 1:
        return wav.squeeze(1).float(), False
    raise DataError(f"{where}: the waveform must be [T], [B, T] or [B, 1, T], got {list(wav.shape)}")


def _reflect_pad_items(x: torch.Tensor, pad: int, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` -> ``[B, T + 2 pad]``: each item reflected at its start and at
    its own end ``lengths[b]`` (one gather, no host sync); past that, whatever."""
    position = torch.arange(-pad, x.shape[-1] + pad, device=x.device).abs()  # reflected at the start
    last = (lengths.to(x.device).long() - 1).unsqueeze(1)  # [B, 1]
    index = torch.where(position > last, 2 * last - position, position).clamp(0, x.shape[-1] - 1)
    return x.gather(1, index)


def linear_spectrogram(
    wav: torch.Tensor, n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """The VITS linear magnitude spectrogram, ``sqrt(|STFT|^2 + 1e-6)``.

    The waveform is reflect-padded by ``(n_fft - hop_length) / 2`` on both
    sides and framed without centring, so ``T`` samples give exactly
    ``T // hop_length`` frames. Computed in float32 (also under autocast) and
    differentiable. With ``lengths``, every item of a zero-padded batch is
    reflect-padded at its own end, so its frames equal those of the item
    alone (VITS computes each utterance's spectrogram on its own), and its
    frames from ``length // hop_length`` on are zero, as in a zero-padded
    batch of such spectrograms.

    Arguments
    ---------
    wav : torch.Tensor
        ``[B, T]`` (or ``[B, 1, T]``, or one ``[T]``) samples; ``T`` must
        exceed the padding ``(n_fft - hop_length) / 2``.
    n_fft : int
        FFT size.
    hop_length : int
        Samples between frames.
    win_length : int
        Hann window length (``<= n_fft``).
    lengths : torch.Tensor, optional
        ``[B]`` samples per item, each more than the padding (see
        :attr:`SpectrogramConfig.min_samples`; not checked here, that would
        wait for the device).

    Returns
    -------
    torch.Tensor
        ``[B, n_fft // 2 + 1, T // hop_length]`` float32 (``[n_fft // 2 + 1,
        T_spec]`` for a ``[T]`` input).

    Example
    -------
    >>> linear_spectrogram(torch.randn(2, 8192)).shape
    torch.Size([2, 513, 32])
    >>> short = torch.randn(5000)
    >>> batch = torch.nn.functional.pad(short, (0, 3192)).expand(2, -1)  # zero-padded to 8192
    >>> frames = linear_spectrogram(batch, lengths=torch.tensor([5000, 5000]))[:, :, :5000 // 256]
    >>> torch.allclose(frames[0], linear_spectrogram(short)), torch.equal(frames[0], frames[1])
    (True, True)
    >>> linear_spectrogram(batch, lengths=torch.tensor([5000, 8192]))[0, :, 5000 // 256:].abs().max()
    tensor(0.)
    >>> linear_spectrogram(torch.randn(8192), n_fft=512, hop_length=128, win_length=512).shape
    torch.Size([257, 64])
    """
    _check_stft_params(n_fft, hop_length, win_length)
    x, single = _waveform_batch(wav, "linear_spectrogram")
    pad = (n_fft - hop_length) // 2
    if x.shape[-1] <= pad or x.shape[-1] < hop_length:
        raise DataError(
            f"linear_spectrogram: the waveform has {x.shape[-1]} samples, too few for "
            f"n_fft={n_fft}, hop_length={hop_length} (need more than {max(pad, hop_length - 1)})"
        )
    with torch.autocast(device_type=x.device.type, enabled=False):
        if pad and lengths is not None:
            x = _reflect_pad_items(x, pad, lengths)
        elif pad:
            x = torch.nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        stft = torch.stft(
            x,
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            window=hann_window(win_length, x.device, torch.float32),
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        spec = torch.sqrt(torch.view_as_real(stft).pow(2).sum(-1) + 1e-6)
        if lengths is not None:  # frames past each item's end: zero, as a padded batch holds them
            frames = torch.arange(spec.shape[-1], device=spec.device)
            spec = spec * (frames < torch.div(lengths.to(spec.device), hop_length, rounding_mode="floor")
                           .unsqueeze(1)).unsqueeze(1)
    return spec.squeeze(0) if single else spec


def spec_to_mel(
    spec: torch.Tensor,
    sample_rate: int = 22050,
    n_fft: int = 1024,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """Map a linear magnitude spectrogram to a log mel spectrogram.

    ``log(clamp(fbank @ spec, min=1e-5))`` with :func:`mel_filterbank`,
    computed in float32 (also under autocast).

    Arguments
    ---------
    spec : torch.Tensor
        ``[B, n_fft // 2 + 1, T_spec]`` or ``[n_fft // 2 + 1, T_spec]``
        magnitudes, e.g. from :func:`linear_spectrogram`.
    sample_rate : int
        Sample rate in Hz.
    n_fft : int
        FFT size the spectrogram was made with.
    n_mels : int
        Number of mel channels.
    f_min : float
        Lowest filter edge in Hz.
    f_max : float or None
        Highest filter edge in Hz (``None``: ``sample_rate / 2``).

    Returns
    -------
    torch.Tensor
        ``[B, n_mels, T_spec]`` (or ``[n_mels, T_spec]``) float32 log mel.

    Example
    -------
    >>> spec_to_mel(torch.ones(2, 513, 10)).shape
    torch.Size([2, 80, 10])
    """
    if not torch.is_tensor(spec) or spec.dim() not in (2, 3) or spec.shape[-2] != n_fft // 2 + 1:
        shape = list(spec.shape) if torch.is_tensor(spec) else type(spec).__name__
        raise DataError(
            f"spec_to_mel: expected a [B, {n_fft // 2 + 1}, T_spec] spectrogram for n_fft={n_fft}, got {shape}"
        )
    with torch.autocast(device_type=spec.device.type, enabled=False):
        fbank = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, spec.device, torch.float32)
        mel = torch.matmul(fbank, spec.float())
        return dynamic_range_compression(mel)


def mel_spectrogram(
    wav: torch.Tensor,
    sample_rate: int = 22050,
    n_fft: int = 1024,
    hop_length: int = 256,
    win_length: int = 1024,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """The VITS log mel spectrogram: ``spec_to_mel(linear_spectrogram(wav))``.

    Arguments
    ---------
    wav : torch.Tensor
        ``[B, T]`` (or ``[B, 1, T]``, or one ``[T]``) samples.
    sample_rate : int
        Sample rate in Hz.
    n_fft : int
        FFT size.
    hop_length : int
        Samples between frames.
    win_length : int
        Hann window length.
    n_mels : int
        Number of mel channels.
    f_min : float
        Lowest filter edge in Hz.
    f_max : float or None
        Highest filter edge in Hz (``None``: ``sample_rate / 2``).

    Returns
    -------
    torch.Tensor
        ``[B, n_mels, T // hop_length]`` float32 (``[n_mels, T_spec]`` for a
        ``[T]`` input).

    Example
    -------
    >>> mel_spectrogram(torch.randn(2, 1, 8192)).shape
    torch.Size([2, 80, 32])
    """
    spec = linear_spectrogram(wav, n_fft, hop_length, win_length)
    return spec_to_mel(spec, sample_rate, n_fft, n_mels, f_min, f_max)
