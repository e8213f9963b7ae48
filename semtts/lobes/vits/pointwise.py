"""Kernel-size-1 convolutions computed as batched matrix products.

A ``Conv1d`` with a kernel of 1 is a matrix product over channels at every
time step. VITS has well over a hundred of them (the attention projections,
WaveNet's residual/skip and conditioning layers, the flows' and the duration
predictor's pre- and post-projections). As convolutions they go through
cuDNN, whose per-call host cost is several times that of a cuBLAS batched
product, and which converts every 16-bit input, weight and gradient to NHWC
and back; a GPU training step is bound by exactly that host time.
:class:`PointwiseConv1d` keeps the parameters, the state-dict names and the
weight-norm parametrisation of ``nn.Conv1d(in, out, 1)`` (checkpoints move
between the two unchanged) and computes ``weight @ x + bias`` with one
``baddbmm`` (one ``bmm`` without a bias) on the devices of
:data:`MATMUL_DEVICES` (CUDA). On a CPU it stays a convolution: oneDNN's
kernel-1 convolution is about twice as fast as a GEMM of the same shape
(synthesis at 1,200 frames: 0.41 against 0.79 ms per layer on 2 cores), and
an ONNX export keeps its ``Conv`` nodes.

Example
-------
>>> conv = torch.nn.Conv1d(4, 6, 1)
>>> pointwise = PointwiseConv1d(4, 6)
>>> pointwise.load_state_dict(conv.state_dict())
<All keys matched successfully>
>>> x = torch.randn(2, 4, 7)
>>> pointwise(x).shape, bool(torch.allclose(pointwise(x), conv(x), atol=1e-6))
(torch.Size([2, 6, 7]), True)
"""

import torch
from torch import nn

from semtts.lobes.vits.opaque_conv import conv1d

__all__ = ["MATMUL_DEVICES", "PointwiseConv1d", "pointwise_conv1d"]

MATMUL_DEVICES = {"cuda"}
"""Device types on which kernel-1 convolutions run as matrix products (``bench/op_count.py`` adds ``cpu``
to count on a CPU what a CUDA step dispatches)."""


def pointwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     matmul: bool | None = None) -> torch.Tensor:
    """``F.conv1d(x, weight, bias)`` for a kernel of 1, as one batched matrix product where that is faster.

    Arguments
    ---------
    x : torch.Tensor
        ``[B, in, T]`` (or unbatched ``[in, T]``) input.
    weight : torch.Tensor
        ``[out, in, 1]`` kernel.
    bias : torch.Tensor, optional
        ``[out]`` bias.
    matmul : bool, optional
        Compute a matrix product (True) or a convolution (False); None: a product on the
        :data:`MATMUL_DEVICES`.

    Returns
    -------
    torch.Tensor
        ``[B, out, T]`` (``[out, T]`` unbatched).

    Example
    -------
    >>> x, w, b = torch.randn(2, 3, 5), torch.randn(4, 3, 1), torch.randn(4)
    >>> bool(torch.allclose(pointwise_conv1d(x, w, b, matmul=True), torch.nn.functional.conv1d(x, w, b), atol=1e-6))
    True
    """
    if not (x.device.type in MATMUL_DEVICES if matmul is None else matmul):
        return conv1d(x, weight, bias)  # F.conv1d, opaque to torch.compile
    matrix = weight.squeeze(-1)
    if x.dim() == 2:
        return matrix @ x if bias is None else torch.addmm(bias.unsqueeze(-1), matrix, x)
    matrix = matrix.expand(x.size(0), -1, -1)
    if bias is None:
        return torch.bmm(matrix, x)
    return torch.baddbmm(bias.unsqueeze(-1).expand(x.size(0), -1, x.size(-1)), matrix, x)


class PointwiseConv1d(nn.Conv1d):
    """``nn.Conv1d(in_channels, out_channels, 1)``, computed as a batched matrix product on CUDA.

    Arguments
    ---------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    bias : bool
        Learn an additive bias.

    Example
    -------
    >>> from torch.nn.utils.parametrizations import weight_norm
    >>> layer = weight_norm(PointwiseConv1d(3, 5))
    >>> layer(torch.randn(2, 3, 4)).shape, layer(torch.randn(3, 4)).shape  # batched, unbatched
    (torch.Size([2, 5, 4]), torch.Size([5, 4]))
    >>> sorted(layer.state_dict())
    ['bias', 'parametrizations.weight.original0', 'parametrizations.weight.original1']
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``weight [out, in, 1] @ x [B, in, T] (+ bias)`` -> ``[B, out, T]`` (``[in, T] -> [out, T]`` unbatched)."""
        return pointwise_conv1d(x, weight, bias)
