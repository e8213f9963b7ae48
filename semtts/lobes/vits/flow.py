"""The normalising flow of VITS between the posterior latent ``z`` and ``z_p``.

Every flow brick here (and in :mod:`semtts.lobes.vits.duration_flows`) has the
same interface: ``forward(x, mask, g=None, reverse=False) -> (y, logdet)``
where ``logdet`` ``[B]`` is ``log |det dy/dx|`` summed over the valid frames
of the direction that was run (so the reverse logdet is minus the forward
one).

- :class:`Flip`: reverses the channel order, so the next coupling layer
  transforms the other half;
- :class:`ResidualCouplingLayer`: mean-only (volume-preserving) affine
  coupling whose shift comes from a WaveNet over the first half;
- :class:`ResidualCouplingFlow`: ``n_flows`` coupling layers, each followed
  by a flip.

Example
-------
>>> flow = ResidualCouplingFlow(4, 8, kernel_size=5, dilation_rate=1, n_layers=2, n_flows=2)
>>> z, mask = torch.randn(2, 4, 7), torch.ones(2, 1, 7)
>>> z_p = flow(z, mask)
>>> z_p.shape, bool(torch.allclose(flow(z_p, mask, reverse=True), z, atol=1e-5))
(torch.Size([2, 4, 7]), True)
"""

import torch
from torch import nn

from semtts.errors import ConfigError
from semtts.lobes.vits.pointwise import PointwiseConv1d
from semtts.lobes.vits.wavenet import WaveNet

__all__ = ["Flip", "ResidualCouplingLayer", "ResidualCouplingFlow"]


class Flip(nn.Module):
    """Reverse the channel order (its own inverse, log-determinant 0).

    Example
    -------
    >>> y, logdet = Flip()(torch.arange(3.0).view(1, 3, 1), torch.ones(1, 1, 1))
    >>> y.flatten().tolist(), logdet.tolist()
    ([2.0, 1.0, 0.0], [0.0])
    """

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flip ``x`` ``[B, C, T]`` along ``C``; returns ``(y, zeros [B])``."""
        return torch.flip(x, [1]), x.new_zeros(x.size(0))


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: ``y1 = x1 + m(x0)``, ``y0 = x0``.

    The shift network (1x1 conv, WaveNet, 1x1 conv) sees the first half of the
    channels and the speaker conditioning. Its output convolution starts at
    zero, so a fresh layer is the identity.

    Arguments
    ---------
    channels : int
        Channels of ``x`` (even).
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
    >>> layer = ResidualCouplingLayer(4, 8, 3, 1, 2)
    >>> x, mask = torch.randn(1, 4, 5), torch.ones(1, 1, 5)
    >>> y, logdet = layer(x, mask)
    >>> bool(torch.equal(y, x)), logdet.tolist()   # identity at initialisation
    (True, [0.0])
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ):
        super().__init__()
        if channels % 2:
            raise ConfigError(f"coupling layer: channels must be even, got {channels}")
        self.half_channels = channels // 2
        self.pre = PointwiseConv1d(self.half_channels, hidden_channels)
        self.wavenet = WaveNet(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = PointwiseConv1d(hidden_channels, self.half_channels)
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shift the second half of ``x`` ``[B, C, T]`` (or undo it when ``reverse``).

        Returns ``(y [B, C, T], logdet [B])``; the logdet is 0 (volume preserving).
        """
        x0, x1 = x.split(self.half_channels, dim=1)
        hidden = self.wavenet(self.pre(x0) * mask, mask, g=g)
        shift = self.post(hidden) * mask
        x1 = (x1 - shift) * mask if reverse else (x1 + shift) * mask
        return torch.cat([x0, x1], dim=1), x.new_zeros(x.size(0))


class ResidualCouplingFlow(nn.Module):
    """``n_flows`` x (mean-only coupling, flip): maps ``z`` to ``z_p`` and back.

    Arguments
    ---------
    channels : int
        Latent channels ``C``.
    hidden_channels : int
        WaveNet width in every coupling layer.
    kernel_size : int
        WaveNet kernel.
    dilation_rate : int
        WaveNet dilation growth.
    n_layers : int
        WaveNet layers per coupling layer.
    n_flows : int
        Number of coupling layers.
    gin_channels : int
        Speaker conditioning channels (0: none).

    Example
    -------
    >>> flow = ResidualCouplingFlow(2, 4, 3, 1, 1, n_flows=4, gin_channels=3)
    >>> flow(torch.randn(1, 2, 6), torch.ones(1, 1, 6), g=torch.randn(1, 3, 1)).shape
    torch.Size([1, 2, 6])
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        n_flows: int = 4,
        gin_channels: int = 0,
    ):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                ResidualCouplingLayer(
                    channels, hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels
                )
            )
            self.flows.append(Flip())

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> torch.Tensor:
        """Map ``z`` to ``z_p`` (or ``z_p`` to ``z`` when ``reverse``).

        Arguments
        ---------
        x : torch.Tensor
            ``[B, C, T]`` input latent.
        mask : torch.Tensor
            ``[B, 1, T]`` frame mask.
        g : torch.Tensor, optional
            ``[B, gin_channels, 1]`` speaker conditioning.
        reverse : bool
            Run the inverse map.

        Returns
        -------
        torch.Tensor
            ``[B, C, T]`` output latent (the flow is volume preserving, so no logdet).
        """
        flows = reversed(self.flows) if reverse else self.flows
        for flow in flows:
            x, _ = flow(x, mask, g=g, reverse=reverse)
        return x
