"""Run a model's 1-D convolutions as channels-last 2-D ones (an opt-in layout).

PyTorch runs ``conv1d`` in the NCL layout, and for 16-bit tensor-core kernels
cuDNN converts every input, weight and gradient to NHWC and back (in the
H200 profile of a ``vits_base`` bf16 step those conversions took 15% of the
GPU time). :func:`use_channels_last_conv1d` makes every ``Conv1d`` and
``ConvTranspose1d`` of a module compute as a 2-D convolution on
``[B, C, 1, L]`` channels-last tensors and hand back the ``[B, C, L]`` view of
the result, whose memory is ``[B, L, C]``. Element-wise layers keep that
layout, so a stack of convolutions stays in NHWC without conversions.

Parameters, state dicts and results are unchanged (the weights are viewed,
not re-stored); only the memory layout of activations changes. Whether it is
faster depends on the device and the shapes: ``bench/conv_shapes.py`` times
each call of a training step in both layouts, ``bench/train_step.py
--channels_last_conv1d`` the whole step.

Example
-------
>>> conv = torch.nn.Conv1d(4, 6, 3, padding=2, dilation=2)
>>> x = torch.randn(2, 4, 50)
>>> reference = conv(x)
>>> use_channels_last_conv1d(conv)
1
>>> y = conv(x)
>>> y.shape, y.stride(), torch.allclose(y, reference, atol=1e-6)
(torch.Size([2, 6, 50]), (300, 1, 6), True)
"""

import types

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["use_channels_last_conv1d"]


def _as_nhwc(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, L]`` (any layout) -> ``[B, C, 1, L]`` in channels-last memory (a view when ``x`` is NLC)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def _conv_forward(self: nn.Conv1d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if x.dim() == 2:  # unbatched [C, L], as nn.Conv1d takes it
        return _conv_forward(self, x.unsqueeze(0), weight, bias).squeeze(0)
    y = F.conv2d(_as_nhwc(x), _as_nhwc(weight), bias, (1, self.stride[0]), (0, self.padding[0]),
                 (1, self.dilation[0]), self.groups)
    return y.squeeze(2)


def _transposed_forward(self: nn.ConvTranspose1d, x: torch.Tensor,
                        output_size: list[int] | None = None) -> torch.Tensor:
    if x.dim() == 2:  # unbatched [C, L], as nn.ConvTranspose1d takes it
        return _transposed_forward(self, x.unsqueeze(0), output_size).squeeze(0)
    output_padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 1,
                                          self.dilation)
    y = F.conv_transpose2d(_as_nhwc(x), _as_nhwc(self.weight), self.bias, (1, self.stride[0]),
                           (0, self.padding[0]), (0, output_padding[0]), self.groups, (1, self.dilation[0]))
    return y.squeeze(2)


def use_channels_last_conv1d(module: nn.Module) -> int:
    """Make every zero-padded ``Conv1d`` / ``ConvTranspose1d`` in ``module`` run
    as a channels-last 2-D convolution (in place; weight-norm and other
    parametrisations keep working).

    Arguments
    ---------
    module : torch.nn.Module
        Any model.

    Returns
    -------
    int
        How many convolutions were switched (those with another padding
        mode or string padding are left as they are).
    """
    switched = 0
    for conv in module.modules():
        if not isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d)) or conv.padding_mode != "zeros" \
                or isinstance(conv.padding, str):
            continue
        if isinstance(conv, nn.ConvTranspose1d):
            conv.forward = types.MethodType(_transposed_forward, conv)
        else:
            conv._conv_forward = types.MethodType(_conv_forward, conv)
        switched += 1
    return switched
