"""The non-causal WaveNet stack of VITS (posterior encoder and coupling layers).

Gated residual layers ``tanh(a) * sigmoid(b)`` over dilated "same"-padded
convolutions, a residual path and a summed skip path, with optional global
conditioning ``g`` added to the gate pre-activations of every layer. All
convolutions use weight normalisation.

Example
-------
>>> wn = WaveNet(8, kernel_size=3, dilation_rate=2, n_layers=3, gin_channels=4)
>>> wn(torch.randn(2, 8, 10), torch.ones(2, 1, 10), g=torch.randn(2, 4, 1)).shape
torch.Size([2, 8, 10])
"""

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from semtts.lobes.vits.opaque_conv import Conv1d
from semtts.lobes.vits.pointwise import PointwiseConv1d
from semtts.lobes.vits.weight_norm import remove_weight_norm

__all__ = ["WaveNet"]


class WaveNet(nn.Module):
    """Non-causal gated residual WaveNet with optional global conditioning.

    Arguments
    ---------
    hidden_channels : int
        Width ``H`` of the residual path (input and output channels).
    kernel_size : int
        Kernel of the dilated convolutions (odd).
    dilation_rate : int
        Layer ``i`` uses dilation ``dilation_rate ** i``.
    n_layers : int
        Number of gated layers.
    gin_channels : int
        Channels of the global conditioning ``g`` (0: unconditioned).
    p_dropout : float
        Dropout on the gated activations.

    Example
    -------
    >>> wn = WaveNet(6, kernel_size=5, dilation_rate=1, n_layers=2)
    >>> mask = torch.tensor([[[1.0, 1, 1, 0]]])
    >>> y = wn(torch.randn(1, 6, 4), mask)
    >>> y.shape, float(y[..., 3].detach().abs().sum())
    (torch.Size([1, 6, 4]), 0.0)
    """

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        p_dropout: float = 0.0,
    ):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.dropout = nn.Dropout(p_dropout)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate**i
            padding = dilation * (kernel_size - 1) // 2
            conv = Conv1d(
                hidden_channels, 2 * hidden_channels, kernel_size, dilation=dilation, padding=padding
            )
            self.in_layers.append(weight_norm(conv))
            # the last layer only feeds the skip path
            out = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(weight_norm(PointwiseConv1d(hidden_channels, out)))
        self.cond_layer = None
        if gin_channels:
            self.cond_layer = weight_norm(PointwiseConv1d(gin_channels, 2 * hidden_channels * n_layers))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run the stack.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, H, T]`` input.
        mask : torch.Tensor
            ``[B, 1, T]`` frame mask.
        g : torch.Tensor, optional
            ``[B, gin_channels, 1]`` global conditioning.

        Returns
        -------
        torch.Tensor
            ``[B, H, T]`` sum of the skip outputs, masked.
        """
        hidden = self.hidden_channels
        cond = self.cond_layer(g) if (g is not None and self.cond_layer is not None) else None
        output = torch.zeros_like(x)
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            pre = in_layer(x)
            if cond is not None:
                pre = pre + cond[:, 2 * hidden * i : 2 * hidden * (i + 1)]
            acts = torch.tanh(pre[:, :hidden]) * torch.sigmoid(pre[:, hidden:])
            res_skip = res_skip_layer(self.dropout(acts))
            if i < self.n_layers - 1:
                x = (x + res_skip[:, :hidden]) * mask
                output = output + res_skip[:, hidden:]
            else:
                output = output + res_skip
        return output * mask

    def remove_weight_norm(self) -> None:
        """Fold the weight-norm parametrisations into plain weights (inference)."""
        remove_weight_norm(self)
