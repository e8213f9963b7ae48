"""1-D convolutions that ``torch.compile`` traces as opaque operators, so that
the variable-length parts of VITS compile once for every length.

VITS's encoders, flow and duration predictor see a new text and spectrogram
length at every step. Compiled with dynamic shapes, their elementwise work
(masks, gated activations, layer norms, the spline) fuses into a few kernels
whatever the length; but torch's inductor lowers ``aten.convolution`` and
its backward with layout choices that pin the length to the first one seen
(torch 2.14: one recompilation per new length). Here a convolution is the
custom operator ``semtts::conv1d`` with its backward ``semtts::conv1d_backward``:
the compiler sees their output shapes (from the meta functions below) and
calls cuDNN / oneDNN through them unchanged, and the length stays symbolic.

Outside ``torch.compile`` (eager training, synthesis, ONNX or ``torch.export``
tracing) :func:`conv1d` is plain ``F.conv1d``: the operators cost nothing
there. :class:`Conv1d` is ``nn.Conv1d`` with that behaviour (same parameters,
state-dict names and weight-norm parametrisation).

Example
-------
>>> layer = Conv1d(4, 6, 3, padding=2, dilation=2)
>>> x = torch.randn(2, 4, 9)
>>> bool(torch.equal(layer(x), F.conv1d(x, layer.weight, layer.bias, padding=2, dilation=2)))
True
>>> y = torch.ops.semtts.conv1d(x, layer.weight, layer.bias, 2, 2, 1)  # what a compiled graph calls
>>> y.shape, bool(torch.allclose(y, layer(x), atol=1e-6))
(torch.Size([2, 6, 9]), True)
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Conv1d", "conv1d"]


@torch.library.custom_op("semtts::conv1d", mutates_args=())
def _conv1d_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int, dilation: int,
               groups: int) -> torch.Tensor:
    """Stride-1 ``F.conv1d`` of a batched ``[B, in, T]`` input; a contiguous ``[B, out, T']`` output."""
    return F.conv1d(x, weight, bias, padding=padding, dilation=dilation, groups=groups).contiguous()


@_conv1d_op.register_fake
def _conv1d_meta(x, weight, bias, padding, dilation, groups):
    steps = x.size(2) + 2 * padding - dilation * (weight.size(2) - 1)
    return x.new_empty(x.size(0), weight.size(0), steps)


@torch.library.custom_op("semtts::conv1d_backward", mutates_args=())
def _conv1d_backward_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, has_bias: bool, padding: int,
                        dilation: int, groups: int) -> list[torch.Tensor]:
    """Gradients of :func:`_conv1d_op` for its input, weight (and bias), contiguous."""
    grads = torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.size(0)] if has_bias else None, [1], [padding], [dilation], False, [0], groups,
        [True, True, has_bias])
    return [grads[0].contiguous(), grads[1].contiguous()] + ([grads[2]] if has_bias else [])


@_conv1d_backward_op.register_fake
def _conv1d_backward_meta(grad, x, weight, has_bias, padding, dilation, groups):
    grads = [x.new_empty(x.shape), weight.new_empty(weight.shape)]
    return grads + ([weight.new_empty(weight.size(0))] if has_bias else [])


def _save_for_backward(ctx, inputs, output):
    x, weight, bias, padding, dilation, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.options = (bias is not None, padding, dilation, groups)


def _backward(ctx, grad):
    x, weight = ctx.saved_tensors
    grads = _conv1d_backward_op(grad.contiguous(), x, weight, *ctx.options)
    return grads[0], grads[1], grads[2] if ctx.options[0] else None, None, None, None


_conv1d_op.register_autograd(_backward, setup_context=_save_for_backward)


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int = 0,
           dilation: int = 1, groups: int = 1) -> torch.Tensor:
    """Stride-1 ``F.conv1d``; inside ``torch.compile`` the opaque ``semtts::conv1d``.

    Arguments
    ---------
    x : torch.Tensor
        ``[B, in, T]`` input (or unbatched ``[in, T]``, always ``F.conv1d``).
    weight : torch.Tensor
        ``[out, in / groups, K]`` kernel.
    bias : torch.Tensor, optional
        ``[out]`` bias.
    padding, dilation, groups : int
        As ``F.conv1d`` (zeros padding on both sides).

    Returns
    -------
    torch.Tensor
        ``[B, out, T + 2 padding - dilation (K - 1)]``.

    Example
    -------
    >>> conv1d(torch.randn(2, 3, 10), torch.randn(5, 3, 3), padding=1).shape
    torch.Size([2, 5, 10])
    """
    if x.dim() != 3 or not torch.compiler.is_compiling() or _exporting():
        return F.conv1d(x, weight, bias, padding=padding, dilation=dilation, groups=groups)
    if torch.is_autocast_enabled(x.device.type):  # autocast does not reach custom operators: cast as it would
        dtype = torch.get_autocast_dtype(x.device.type)
        cast = lambda t: t.to(dtype) if t.is_floating_point() and t.dtype != torch.float64 else t  # noqa: E731
        x, weight = cast(x), cast(weight)  # (autocast leaves float64 alone)
        bias = None if bias is None else cast(bias)
    return torch.ops.semtts.conv1d(x, weight, bias, padding, dilation, groups)


def _exporting() -> bool:
    """Whether ``torch.export`` is tracing: the flag behind ``torch.compiler.is_exporting()``, read
    directly because torch 2.11's dynamo answers that call with True in every ``torch.compile`` trace."""
    return getattr(torch.compiler, "_is_exporting_flag", False)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` whose stride-1, zero-padded calls go through :func:`conv1d`.

    Arguments and parameters are those of ``nn.Conv1d``; other strides or
    padding modes run ``nn.Conv1d`` unchanged.

    Example
    -------
    >>> from torch.nn.utils.parametrizations import weight_norm
    >>> layer = weight_norm(Conv1d(3, 5, 5, padding=2))
    >>> layer(torch.randn(2, 3, 7)).shape
    torch.Size([2, 5, 7])
    >>> sorted(layer.state_dict())
    ['bias', 'parametrizations.weight.original0', 'parametrizations.weight.original1']
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """:func:`conv1d` where it applies, else ``nn.Conv1d``'s own call."""
        if self.stride != (1,) or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super()._conv_forward(x, weight, bias)
        return conv1d(x, weight, bias, self.padding[0], self.dilation[0], self.groups)
