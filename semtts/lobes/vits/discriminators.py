"""The VITS waveform discriminators: period, scale and their ensemble.

A :class:`PeriodDiscriminator` folds the waveform into ``[B, 1, T / p, p]``
and runs 2-D convolutions along time only, so it judges the samples that are
``p`` apart (periodic structure). A :class:`ScaleDiscriminator` runs grouped
1-D convolutions over the raw (or average-pooled) waveform. VITS uses one
scale discriminator and five period discriminators (periods 2, 3, 5, 7, 11);
HiFi-GAN uses three scale discriminators on the waveform pooled 1, 2 and 4
times. :class:`MultiPeriodDiscriminator` builds either set.

Every discriminator returns its score map flattened to ``[B, N]`` and the list
of its intermediate activations (feature maps) for the feature-matching loss.

Example
-------
>>> disc = MultiPeriodDiscriminator()
>>> y, y_hat = torch.randn(2, 1, 8192), torch.randn(2, 1, 8192)
>>> real, fake, real_fmaps, fake_fmaps = disc(y, y_hat)
>>> len(real), real[0].shape, len(fake_fmaps[1])
(6, torch.Size([2, 32]), 6)
"""

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from semtts.errors import ConfigError, DataError

__all__ = ["PeriodDiscriminator", "ScaleDiscriminator", "MultiPeriodDiscriminator"]

LRELU_SLOPE = 0.1

Scores = list[torch.Tensor]
FeatureMaps = list[list[torch.Tensor]]


def _normed(layer: nn.Module, use_spectral_norm: bool) -> nn.Module:
    """Wrap a convolution in spectral or weight normalisation."""
    return spectral_norm(layer) if use_spectral_norm else weight_norm(layer)


class PeriodDiscriminator(nn.Module):
    """Judge a waveform folded by a period: 2-D convolutions along time only.

    The waveform is reflect-padded on the right to a multiple of ``period``,
    reshaped to ``[B, 1, T / period, period]``, and passed through five
    convolutions with ``(kernel_size, 1)`` kernels (channels 1 -> 32 -> 128 ->
    512 -> 1024 -> 1024; stride 3 along time except the last) with leaky ReLU,
    then a ``(3, 1)`` convolution to one channel.

    Arguments
    ---------
    period : int
        The folding period in samples (>= 1).
    kernel_size : int
        Time extent of the kernels of the first five convolutions (odd).
    stride : int
        Time stride of the first four convolutions.
    channels : Sequence[int]
        Output channels of the first five convolutions.
    use_spectral_norm : bool
        Spectral instead of weight normalisation.

    Example
    -------
    >>> disc = PeriodDiscriminator(period=3)
    >>> score, fmaps = disc(torch.randn(2, 1, 1000))
    >>> score.shape, [f.shape[1] for f in fmaps]
    (torch.Size([2, 15]), [32, 128, 512, 1024, 1024, 1])
    """

    def __init__(
        self,
        period: int,
        kernel_size: int = 5,
        stride: int = 3,
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(period, int) or period < 1:
            raise ConfigError(f"PeriodDiscriminator: period must be a positive integer, got {period!r}")
        if kernel_size % 2 == 0:
            raise ConfigError(f"PeriodDiscriminator: kernel_size must be odd, got {kernel_size}")
        self.period = period
        layers = []
        in_ch = 1
        for i, out_ch in enumerate(channels):
            step = stride if i < len(channels) - 1 else 1
            conv = nn.Conv2d(in_ch, out_ch, (kernel_size, 1), (step, 1), padding=(kernel_size // 2, 0))
            layers.append(_normed(conv, use_spectral_norm))
            in_ch = out_ch
        self.convs = nn.ModuleList(layers)
        self.conv_post = _normed(nn.Conv2d(in_ch, 1, (3, 1), 1, padding=(1, 0)), use_spectral_norm)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Score a waveform.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, 1, T]`` samples.

        Returns
        -------
        score : torch.Tensor
            ``[B, N]`` the flattened score map.
        fmaps : list of torch.Tensor
            The ``[B, C, T', period]`` activations of every layer (the last is
            the score map before flattening).
        """
        batch, channels, length = wav.shape
        remainder = length % self.period
        if remainder:
            wav = F.pad(wav, (0, self.period - remainder), mode="reflect")
            length = wav.shape[-1]
        x = wav.view(batch, channels, length // self.period, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return torch.flatten(x, 1, -1), fmaps


class ScaleDiscriminator(nn.Module):
    """Judge a waveform with grouped 1-D convolutions (MelGAN / HiFi-GAN).

    Layers (channels, kernel, stride, groups): 1 -> 16 (15, 1, 1),
    16 -> 64 (41, 4, 4), 64 -> 256 (41, 4, 16), 256 -> 1024 (41, 4, 64),
    1024 -> 1024 (41, 4, 256), 1024 -> 1024 (5, 1, 1), each followed by leaky
    ReLU, then 1024 -> 1 (3, 1, 1).

    Arguments
    ---------
    use_spectral_norm : bool
        Spectral instead of weight normalisation (HiFi-GAN's first scale).

    Example
    -------
    >>> disc = ScaleDiscriminator()
    >>> score, fmaps = disc(torch.randn(2, 1, 8192))
    >>> score.shape, len(fmaps)
    (torch.Size([2, 32]), 7)
    """

    # (in, out, kernel, stride, groups)
    LAYERS = (
        (1, 16, 15, 1, 1),
        (16, 64, 41, 4, 4),
        (64, 256, 41, 4, 16),
        (256, 1024, 41, 4, 64),
        (1024, 1024, 41, 4, 256),
        (1024, 1024, 5, 1, 1),
    )

    def __init__(self, use_spectral_norm: bool = False) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            _normed(nn.Conv1d(i, o, k, s, padding=k // 2, groups=g), use_spectral_norm)
            for i, o, k, s, g in self.LAYERS
        )
        self.conv_post = _normed(nn.Conv1d(1024, 1, 3, 1, padding=1), use_spectral_norm)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Score a waveform.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, 1, T]`` samples.

        Returns
        -------
        score : torch.Tensor
            ``[B, N]`` the flattened score map.
        fmaps : list of torch.Tensor
            The ``[B, C, T']`` activations of every layer (the last is the
            score map before flattening).
        """
        x = wav
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return torch.flatten(x, 1, -1), fmaps


class MultiPeriodDiscriminator(nn.Module):
    """The VITS discriminator: scale discriminator(s) plus period discriminators.

    With the defaults this is the VITS ensemble (one weight-normalised scale
    discriminator on the raw waveform and five period discriminators, 46.7 M
    parameters). ``num_scales=3`` gives HiFi-GAN's multi-scale set instead of
    the single scale: the first spectral-normalised, the second and third on
    the waveform average-pooled (kernel 4, stride 2) once and twice.

    Real and fake waveforms go through the networks as one batch
    (:meth:`forward`, the discriminator step); :meth:`judge_for_generator`
    serves the generator step.

    Arguments
    ---------
    periods : Sequence[int]
        One period discriminator per entry.
    num_scales : int
        Number of scale discriminators: 1 (VITS) or more (HiFi-GAN uses 3).
    use_spectral_norm : bool
        Spectral normalisation in every discriminator (VITS default: weight
        normalisation; with ``num_scales > 1`` the first scale uses spectral
        normalisation anyway, as in HiFi-GAN).

    Example
    -------
    >>> disc = MultiPeriodDiscriminator(periods=(2, 3), num_scales=3)
    >>> real, fake, real_fmaps, fake_fmaps = disc(torch.randn(1, 1, 4096), torch.randn(1, 1, 4096))
    >>> [s.shape[1] for s in fake]
    [16, 9, 5, 52, 51]
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        num_scales: int = 1,
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(num_scales, int) or num_scales < 0:
            raise ConfigError(f"MultiPeriodDiscriminator: num_scales must be an integer >= 0, got {num_scales!r}")
        if num_scales == 0 and not periods:
            raise ConfigError("MultiPeriodDiscriminator: needs at least one period or one scale")
        scales = [
            ScaleDiscriminator(use_spectral_norm=use_spectral_norm or (num_scales > 1 and i == 0))
            for i in range(num_scales)
        ]
        self.num_scales = num_scales
        self.discriminators = nn.ModuleList(
            scales + [PeriodDiscriminator(int(p), use_spectral_norm=use_spectral_norm) for p in periods]
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(
        self, y_real: torch.Tensor, y_fake: torch.Tensor
    ) -> tuple[Scores, Scores, FeatureMaps, FeatureMaps]:
        """Score real and generated waveforms with every discriminator.

        Arguments
        ---------
        y_real : torch.Tensor
            ``[B, 1, T]`` (or ``[B, T]``) ground-truth waveform slices.
        y_fake : torch.Tensor
            Generated waveform slices of the same shape (detach them for the
            discriminator step).

        Returns
        -------
        real_scores : list of torch.Tensor
            ``[B, N_k]`` per discriminator (scales first, then periods).
        fake_scores : list of torch.Tensor
            Likewise for ``y_fake``.
        real_fmaps : list of list of torch.Tensor
            The feature maps of every discriminator for ``y_real``.
        fake_fmaps : list of list of torch.Tensor
            Likewise for ``y_fake``.
        """
        if y_real.shape != y_fake.shape:
            raise DataError(
                f"MultiPeriodDiscriminator: real and fake waveforms differ in shape: "
                f"{list(y_real.shape)} vs {list(y_fake.shape)}"
            )
        if y_real.dim() == 2:
            y_real, y_fake = y_real.unsqueeze(1), y_fake.unsqueeze(1)
        if y_real.dim() != 3 or y_real.shape[1] != 1:
            raise DataError(
                f"MultiPeriodDiscriminator: expected [B, 1, T] waveforms, got {list(y_real.shape)}"
            )
        batch = y_real.shape[0]
        scores, fmaps = self.judge(torch.cat([y_real, y_fake.to(y_real.dtype)], dim=0))
        return ([s[:batch] for s in scores], [s[batch:] for s in scores],
                [[f[:batch] for f in maps] for maps in fmaps], [[f[batch:] for f in maps] for maps in fmaps])

    def judge(self, wav: torch.Tensor) -> tuple[Scores, FeatureMaps]:
        """Score one batch of ``[B, 1, T]`` waveforms with every discriminator.

        Returns
        -------
        scores : list of torch.Tensor
            ``[B, N_k]`` per discriminator (scales first, then periods).
        fmaps : list of list of torch.Tensor
            The feature maps of every discriminator.
        """
        scores, fmaps = [], []
        scaled = wav
        for index, disc in enumerate(self.discriminators):
            if index < self.num_scales:
                if index > 0:
                    scaled = self.pool(scaled)
                score, maps = disc(scaled)
            else:
                score, maps = disc(wav)
            scores.append(score)
            fmaps.append(maps)
        return scores, fmaps

    def judge_for_generator(self, y_real: torch.Tensor, y_fake: torch.Tensor) -> tuple[Scores, FeatureMaps,
                                                                                        FeatureMaps]:
        """What the generator's adversarial and feature-matching losses need, at
        the least cost: the real slices are judged without gradient (their
        feature maps are targets), the generated ones with a gradient that
        reaches ``y_fake`` only. No weight gradient of the discriminator is
        computed, which a generator step would discard anyway; this halves the
        discriminator's work in the generator step against judging both
        batches with :meth:`forward`, and gives the same generator gradients.

        Arguments
        ---------
        y_real, y_fake : torch.Tensor
            ``[B, 1, T]`` ground-truth and generated slices.

        Returns
        -------
        fake_scores : list of torch.Tensor
            ``[B, N_k]`` per discriminator, for ``y_fake``.
        real_fmaps, fake_fmaps : list of list of torch.Tensor
            The feature maps of both (the real ones without gradient).

        Example
        -------
        >>> disc = MultiPeriodDiscriminator(periods=(2,))
        >>> y_hat = torch.randn(1, 1, 2048, requires_grad=True)
        >>> fake, real_fmaps, fake_fmaps = disc.judge_for_generator(torch.randn(1, 1, 2048), y_hat)
        >>> sum(s.sum() for s in fake).backward()
        >>> y_hat.grad.shape, all(p.grad is None for p in disc.parameters())
        (torch.Size([1, 1, 2048]), True)
        """
        if y_real.dim() == 2:
            y_real, y_fake = y_real.unsqueeze(1), y_fake.unsqueeze(1)
        params = list(self.parameters())
        wanted = [p.requires_grad for p in params]
        # one normalised weight per layer for both calls (one spectral-norm iteration, as forward())
        with parametrize.cached():
            with torch.no_grad():
                _, real_fmaps = self.judge(y_real)
            try:
                for p in params:
                    p.requires_grad_(False)
                fake_scores, fake_fmaps = self.judge(y_fake.to(y_real.dtype))
            finally:
                for p, flag in zip(params, wanted):
                    p.requires_grad_(flag)
        return fake_scores, real_fmaps, fake_fmaps
