"""Flow bricks of the VITS stochastic duration predictor, on 2-channel inputs.

They share the interface of :mod:`semtts.lobes.vits.flow`:
``forward(x, mask, g=None, reverse=False) -> (y, logdet [B])``.

- :class:`ElementwiseAffine`: learnt per-channel scale and shift;
- :class:`LogFlow`: ``y = log(x)`` (durations are positive);
- :class:`DDSConv`: dilated depth-separable convolution stack (not a flow:
  the conditioner network of the conv flows and of the predictor);
- :class:`ConvFlow`: neural-spline coupling: the second half is transformed
  by a rational-quadratic spline whose bins come from a DDSConv over the
  first half.

Example
-------
>>> x, mask = torch.rand(2, 2, 6) + 0.5, torch.ones(2, 1, 6)
>>> y, logdet = LogFlow()(x, mask)
>>> x_back, _ = LogFlow()(y, mask, reverse=True)
>>> bool(torch.allclose(x_back, x)), logdet.shape
(True, torch.Size([2]))
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from semtts.lobes.vits.attention import ChannelLayerNorm
from semtts.lobes.vits.opaque_conv import Conv1d
from semtts.lobes.vits.pointwise import PointwiseConv1d
from semtts.lobes.vits.spline import rational_quadratic_spline

__all__ = ["ElementwiseAffine", "LogFlow", "DDSConv", "ConvFlow"]


class ElementwiseAffine(nn.Module):
    """``y = m + exp(logs) * x`` with a learnt ``m, logs`` per channel.

    Arguments
    ---------
    channels : int
        Channels of ``x``.

    Example
    -------
    >>> flow = ElementwiseAffine(2)
    >>> y, logdet = flow(torch.ones(1, 2, 3), torch.ones(1, 1, 3))
    >>> y.shape, logdet.tolist()
    (torch.Size([1, 2, 3]), [0.0])
    """

    def __init__(self, channels: int):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and shift ``x`` ``[B, C, T]`` (or undo it); returns ``(y, logdet [B])``."""
        logdet = torch.sum(self.logs * mask, dim=[1, 2])
        if reverse:
            return (x - self.m) * torch.exp(-self.logs) * mask, -logdet
        return (self.m + torch.exp(self.logs) * x) * mask, logdet


class LogFlow(nn.Module):
    """``y = log(x)`` for positive ``x`` (clamped at 1e-5); inverse ``exp``.

    Example
    -------
    >>> y, logdet = LogFlow()(torch.full((1, 1, 2), math.e), torch.ones(1, 1, 2))
    >>> [round(v, 5) for v in y.flatten().tolist()], [round(v, 5) for v in logdet.tolist()]  # last bit: by CPU
    ([1.0, 1.0], [-2.0])
    """

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` ``[B, C, T]`` to ``log x`` (or back); returns ``(y, logdet [B])``."""
        if reverse:
            y = torch.exp(x) * mask
            return y, torch.sum(x * mask, dim=[1, 2])
        y = torch.log(x.clamp_min(1e-5)) * mask
        return y, -torch.sum(y, dim=[1, 2])


class DDSConv(nn.Module):
    """Dilated depth-separable convolutions with residual connections.

    Layer ``i``: depthwise conv (dilation ``kernel_size ** i``), layer norm,
    GELU, 1x1 conv, layer norm, GELU, dropout, added to the input. A global
    conditioning ``g`` (same channels, broadcast over time or not) is added
    to the input first.

    Arguments
    ---------
    channels : int
        Input and output channels.
    kernel_size : int
        Depthwise kernel (odd).
    n_layers : int
        Number of layers.
    p_dropout : float
        Dropout at the end of each layer.

    Example
    -------
    >>> DDSConv(8, 3, n_layers=3)(torch.randn(2, 8, 10), torch.ones(2, 1, 10)).shape
    torch.Size([2, 8, 10])
    """

    def __init__(self, channels: int, kernel_size: int, n_layers: int, p_dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(p_dropout)
        self.convs_depthwise = nn.ModuleList()
        self.convs_pointwise = nn.ModuleList()
        self.norms_depthwise = nn.ModuleList()
        self.norms_pointwise = nn.ModuleList()
        for i in range(n_layers):
            dilation = kernel_size**i
            self.convs_depthwise.append(
                Conv1d(
                    channels, channels, kernel_size, groups=channels, dilation=dilation,
                    padding=dilation * (kernel_size - 1) // 2,
                )
            )
            self.convs_pointwise.append(PointwiseConv1d(channels, channels))
            self.norms_depthwise.append(ChannelLayerNorm(channels))
            self.norms_pointwise.append(ChannelLayerNorm(channels))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run the stack on ``x`` ``[B, C, T]``; returns ``[B, C, T]`` masked."""
        if g is not None:
            x = x + g
        for depthwise, norm_d, pointwise, norm_p in zip(
            self.convs_depthwise, self.norms_depthwise, self.convs_pointwise, self.norms_pointwise
        ):
            y = F.gelu(norm_d(depthwise(x * mask)))
            y = F.gelu(norm_p(pointwise(y)))
            x = x + self.dropout(y)
        return x * mask


class ConvFlow(nn.Module):
    """Spline coupling: ``y1 = spline_{theta(x0, g)}(x1)``, ``y0 = x0``.

    The spline parameters of every frame (``num_bins`` widths and heights and
    ``num_bins - 1`` inner derivatives per channel) come from a 1x1 conv, a
    :class:`DDSConv` and a 1x1 projection over the first half. The
    projection starts at zero: uniform bins (not quite the identity, the
    inner knot derivatives start at ``softplus(0)``).

    Arguments
    ---------
    in_channels : int
        Channels of ``x`` (even; 2 in VITS).
    filter_channels : int
        Width of the conditioner.
    kernel_size : int
        DDSConv kernel.
    n_layers : int
        DDSConv layers.
    num_bins : int
        Spline bins.
    tail_bound : float
        The spline acts on ``[-tail_bound, tail_bound]``.

    Example
    -------
    >>> flow = ConvFlow(2, 8, 3, n_layers=2)
    >>> x, mask, g = torch.randn(2, 2, 5), torch.ones(2, 1, 5), torch.randn(2, 8, 5)
    >>> y, logdet = flow(x, mask, g=g)
    >>> x_back, _ = flow(y, mask, g=g, reverse=True)
    >>> y.shape, logdet.shape, bool(torch.allclose(x_back, x, atol=1e-4))
    (torch.Size([2, 2, 5]), torch.Size([2]), True)
    """

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        n_layers: int,
        num_bins: int = 10,
        tail_bound: float = 5.0,
    ):
        super().__init__()
        self.half_channels = in_channels // 2
        self.filter_channels = filter_channels
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.pre = PointwiseConv1d(self.half_channels, filter_channels)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers, p_dropout=0.0)
        self.proj = PointwiseConv1d(filter_channels, self.half_channels * (3 * num_bins - 1))
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform the second half of ``x`` ``[B, C, T]`` (or invert it).

        ``g`` ``[B, filter_channels, T or 1]`` conditions the spline parameters.
        Returns ``(y [B, C, T], logdet [B])``.
        """
        x0, x1 = x.split(self.half_channels, dim=1)
        hidden = self.convs(self.pre(x0), mask, g=g)
        params = self.proj(hidden) * mask
        batch, _, steps = x0.shape
        # [B, half, 3K - 1, T] -> [B, half, T, 3K - 1]
        params = params.view(batch, self.half_channels, -1, steps).permute(0, 1, 3, 2)
        scale = math.sqrt(self.filter_channels)
        widths = params[..., : self.num_bins] / scale
        heights = params[..., self.num_bins : 2 * self.num_bins] / scale
        derivatives = params[..., 2 * self.num_bins :]
        x1, logabsdet = rational_quadratic_spline(
            x1, widths, heights, derivatives, inverse=reverse, tail_bound=self.tail_bound
        )
        y = torch.cat([x0, x1], dim=1) * mask
        return y, torch.sum(logabsdet * mask, dim=[1, 2])
