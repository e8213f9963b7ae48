"""The HiFi-GAN generator (Kong et al. 2020) used as the VITS decoder.

Latent frames ``[B, C, T]`` are upsampled by transposed convolutions
(``prod(upsample_rates)`` samples per frame, the hop length) and refined by a
multi-receptive-field fusion: the mean of parallel residual blocks with
different kernels and dilations. Type-1 residual blocks (two convolutions per
dilation) give HiFi-GAN V1; type-2 blocks (one convolution per dilation) with
fewer channels give the lighter variants. All convolutions except the first
and last use weight normalisation; :meth:`HiFiGANGenerator.remove_weight_norm`
folds it away for inference.

Every layer starts from PyTorch's default initialisation, as it does in the
original HiFi-GAN and VITS code: there the ``N(0, 0.01)`` draw of
``init_weights`` comes after ``weight_norm`` and is overwritten by the weight
recomputed from ``g`` and ``v`` before every forward, so VITS was trained
from the default (about 3x larger) weights.

Example
-------
>>> gen = HiFiGANGenerator(4, resblock="2", resblock_kernel_sizes=[3],
...                        resblock_dilation_sizes=[[1, 3]], upsample_rates=[4, 2],
...                        upsample_initial_channel=16, upsample_kernel_sizes=[8, 4])
>>> z = torch.randn(2, 4, 5)
>>> gen(z).shape
torch.Size([2, 1, 40])
>>> alone = gen(z[1:, :, :3])                       # item 1 holds 3 frames
>>> padded = gen(z, lengths=torch.tensor([5, 3]))   # ... padded to 5 in a batch
>>> bool(torch.allclose(padded[1, :, :24], alone[0], atol=1e-6)), bool(padded[1, :, 24:].eq(0).all())
(True, True)
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from semtts.errors import ConfigError
from semtts.lobes.vits.masks import apply_mask, lengths_to_mask
from semtts.lobes.vits.pointwise import PointwiseConv1d
from semtts.lobes.vits.weight_norm import remove_weight_norm

__all__ = ["ResBlock1", "ResBlock2", "HiFiGANGenerator"]

LRELU_SLOPE = 0.1
"""Negative slope of the leaky ReLUs inside the generator."""


def _same_padding(kernel_size: int, dilation: int) -> int:
    """Padding that keeps the length of a stride-1 convolution."""
    return dilation * (kernel_size - 1) // 2


class ResBlock1(nn.Module):
    """HiFi-GAN V1 residual block: per dilation, a dilated then an undilated conv.

    Arguments
    ---------
    channels : int
        Input and output channels.
    kernel_size : int
        Kernel of all convolutions (odd).
    dilations : sequence of int
        One (dilated conv, conv) pair per dilation.

    Example
    -------
    >>> ResBlock1(8, 3, (1, 3, 5))(torch.randn(2, 8, 20)).shape
    torch.Size([2, 8, 20])
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilations: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.convs_dilated = nn.ModuleList()
        self.convs_plain = nn.ModuleList()
        for dilation in dilations:
            dilated = nn.Conv1d(
                channels, channels, kernel_size, dilation=dilation,
                padding=_same_padding(kernel_size, dilation),
            )
            plain = nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1))
            self.convs_dilated.append(weight_norm(dilated))
            self.convs_plain.append(weight_norm(plain))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Refine ``x`` ``[B, C, T]`` (every convolution sees zeros where
        ``mask`` ``[B, 1, T]`` is 0); returns ``[B, C, T]``."""
        for dilated, plain in zip(self.convs_dilated, self.convs_plain):
            y = dilated(apply_mask(F.leaky_relu(x, LRELU_SLOPE), mask))
            x = x + plain(apply_mask(F.leaky_relu(y, LRELU_SLOPE), mask))
        return x


class ResBlock2(nn.Module):
    """Light residual block: one dilated convolution per dilation.

    Arguments
    ---------
    channels : int
        Input and output channels.
    kernel_size : int
        Kernel of the convolutions (odd).
    dilations : sequence of int
        One convolution per dilation.

    Example
    -------
    >>> ResBlock2(8, 3, (1, 3))(torch.randn(2, 8, 20)).shape
    torch.Size([2, 8, 20])
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilations: tuple[int, ...] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(
                nn.Conv1d(channels, channels, kernel_size, dilation=dilation,
                          padding=_same_padding(kernel_size, dilation))
            )
            for dilation in dilations
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Refine ``x`` ``[B, C, T]`` (every convolution sees zeros where
        ``mask`` ``[B, 1, T]`` is 0); returns ``[B, C, T]``."""
        for conv in self.convs:
            x = x + conv(apply_mask(F.leaky_relu(x, LRELU_SLOPE), mask))
        return x


class HiFiGANGenerator(nn.Module):
    """HiFi-GAN generator: latent frames ``[B, C, T]`` to a waveform ``[B, 1, T * hop]``.

    Arguments
    ---------
    in_channels : int
        Latent channels ``C``.
    resblock : str
        ``"1"`` (HiFi-GAN V1 blocks) or ``"2"`` (light blocks).
    resblock_kernel_sizes : list of int
        Kernels of the parallel residual blocks of every stage.
    resblock_dilation_sizes : list of list of int
        Dilations of each of those blocks.
    upsample_rates : list of int
        Upsampling factor of each stage; their product is the hop length.
    upsample_initial_channel : int
        Channels before the first stage (halved by every stage).
    upsample_kernel_sizes : list of int
        Kernel of each transposed convolution (``kernel - rate`` even, >= 0).
    gin_channels : int
        Speaker conditioning channels (0: none).

    Example
    -------
    >>> gen = HiFiGANGenerator(4, "1", [3, 5], [[1, 3], [1, 3]], [8, 4], 32, [16, 8],
    ...                        gin_channels=6)
    >>> wav = gen(torch.randn(1, 4, 3), g=torch.randn(1, 6, 1))
    >>> wav.shape, gen.hop_length
    (torch.Size([1, 1, 96]), 32)
    >>> gen.remove_weight_norm()
    >>> gen(torch.randn(1, 4, 3), g=torch.randn(1, 6, 1)).shape
    torch.Size([1, 1, 96])
    """

    def __init__(
        self,
        in_channels: int,
        resblock: str,
        resblock_kernel_sizes: list[int],
        resblock_dilation_sizes: list[list[int]],
        upsample_rates: list[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: list[int],
        gin_channels: int = 0,
    ):
        super().__init__()
        blocks = {"1": ResBlock1, "2": ResBlock2}
        if str(resblock) not in blocks:
            raise ConfigError(f"hifigan: resblock must be '1' or '2', got {resblock!r}")
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ConfigError(
                "hifigan: resblock_kernel_sizes and resblock_dilation_sizes differ in length"
            )
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ConfigError("hifigan: upsample_rates and upsample_kernel_sizes differ in length")
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
            if kernel < rate or (kernel - rate) % 2:
                raise ConfigError(
                    f"hifigan: upsample kernel {kernel} must be >= rate {rate} "
                    "with an even difference"
                )
        block = blocks[str(resblock)]
        self.hop_length = math.prod(upsample_rates)
        self.num_kernels = len(resblock_kernel_sizes)

        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, 7, padding=3)
        self.cond = PointwiseConv1d(gin_channels, upsample_initial_channel) if gin_channels else None
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
            up = nn.ConvTranspose1d(
                channels, channels // 2, kernel, stride=rate, padding=(kernel - rate) // 2
            )
            self.ups.append(weight_norm(up))
            channels //= 2
            for res_kernel, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(channels, res_kernel, tuple(dilations)))
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3, bias=False)

    def forward(self, z: torch.Tensor, g: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Decode latent frames into a waveform.

        Arguments
        ---------
        z : torch.Tensor
            ``[B, C, T]`` latent frames.
        g : torch.Tensor, optional
            ``[B, gin_channels, 1]`` speaker conditioning.
        lengths : torch.Tensor, optional
            ``[B]`` valid frames per item. Every convolution then sees zeros
            past an item's end, as if the item were alone in an unpadded
            tensor: each item's waveform does not depend on the padding (a
            batch, or a CUDA graph's fixed size), and is 0 past its end.
            Training windows have no padding and pass none.

        Returns
        -------
        torch.Tensor
            ``[B, 1, T * hop_length]`` waveform in ``[-1, 1]``.
        """
        scale, mask = 1, None
        if lengths is not None:
            mask = lengths_to_mask(lengths, z.size(-1), dtype=z.dtype)
            z = z * mask
        x = self.conv_pre(z)
        if g is not None and self.cond is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(apply_mask(F.leaky_relu(x, LRELU_SLOPE), mask))
            if lengths is not None:
                scale *= up.stride[0]
                mask = lengths_to_mask(lengths * scale, x.size(-1), dtype=x.dtype)
            stage = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x, mask) for block in stage) / self.num_kernels
        # the last activation keeps torch's default slope, as in HiFi-GAN
        x = self.conv_post(apply_mask(F.leaky_relu(x), mask))
        return apply_mask(torch.tanh(x), mask)

    def remove_weight_norm(self) -> None:
        """Fold the weight-norm parametrisations into plain weights (inference)."""
        remove_weight_norm(self)
