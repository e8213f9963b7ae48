"""The VITS posterior encoder: linear spectrogram to the latent ``z``.

A 1x1 input convolution, a non-causal :class:`~semtts.lobes.vits.wavenet.WaveNet`
and a 1x1 projection to the posterior mean and log-std ``m_q, logs_q``; ``z`` is
sampled with the reparameterisation trick.

Example
-------
>>> enc = PosteriorEncoder(in_channels=9, out_channels=4, hidden_channels=8,
...                        kernel_size=5, dilation_rate=1, n_layers=2)
>>> out = enc(torch.randn(2, 9, 12), torch.tensor([12, 7]))
>>> out.z.shape, out.m_q.shape, out.logs_q.shape, out.mask.shape
(torch.Size([2, 4, 12]), torch.Size([2, 4, 12]), torch.Size([2, 4, 12]), torch.Size([2, 1, 12]))
"""

from typing import NamedTuple

import torch
from torch import nn

from semtts.lobes.vits.masks import lengths_to_mask
from semtts.lobes.vits.pointwise import PointwiseConv1d
from semtts.lobes.vits.wavenet import WaveNet

__all__ = ["PosteriorOutput", "PosteriorEncoder"]


class PosteriorOutput(NamedTuple):
    """What :class:`PosteriorEncoder` returns."""

    z: torch.Tensor
    """``[B, C, T_spec]`` sample of the posterior."""
    m_q: torch.Tensor
    """``[B, C, T_spec]`` posterior means."""
    logs_q: torch.Tensor
    """``[B, C, T_spec]`` posterior log standard deviations."""
    mask: torch.Tensor
    """``[B, 1, T_spec]`` frame mask."""


class PosteriorEncoder(nn.Module):
    """Linear spectrogram frames to ``q(z | x)`` and a sample of it.

    Arguments
    ---------
    in_channels : int
        Spectrogram bins (``n_fft // 2 + 1``).
    out_channels : int
        Latent channels ``C`` (``inter_channels``).
    hidden_channels : int
        WaveNet width.
    kernel_size : int
        WaveNet kernel.
    dilation_rate : int
        WaveNet dilation growth.
    n_layers : int
        WaveNet layers.
    gin_channels : int
        Speaker conditioning channels (0: none).

    Example
    -------
    >>> enc = PosteriorEncoder(5, 2, 4, 3, 1, 1, gin_channels=3)
    >>> enc(torch.randn(1, 5, 6), torch.tensor([6]), g=torch.randn(1, 3, 1)).z.shape
    torch.Size([1, 2, 6])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ):
        super().__init__()
        self.out_channels = out_channels
        self.pre = PointwiseConv1d(in_channels, hidden_channels)
        self.wavenet = WaveNet(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.proj = PointwiseConv1d(hidden_channels, 2 * out_channels)

    def forward(
        self, spec: torch.Tensor, spec_lengths: torch.Tensor, g: torch.Tensor | None = None
    ) -> PosteriorOutput:
        """Encode a padded batch of linear spectrograms.

        Arguments
        ---------
        spec : torch.Tensor
            ``[B, F, T_spec]`` linear magnitude spectrogram.
        spec_lengths : torch.Tensor
            ``[B]`` absolute frame counts.
        g : torch.Tensor, optional
            ``[B, gin_channels, 1]`` speaker conditioning.

        Returns
        -------
        PosteriorOutput
            ``z``, ``m_q``, ``logs_q`` ``[B, C, T_spec]`` and the mask ``[B, 1, T_spec]``.
        """
        mask = lengths_to_mask(spec_lengths, spec.size(2), spec.dtype)
        hidden = self.wavenet(self.pre(spec) * mask, mask, g=g)
        stats = self.proj(hidden) * mask
        m_q, logs_q = stats.split(self.out_channels, dim=1)
        z = (m_q + torch.randn_like(m_q, memory_format=torch.contiguous_format) * torch.exp(logs_q)) * mask
        return PosteriorOutput(z, m_q, logs_q, mask)
