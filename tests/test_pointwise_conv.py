"""Kernel-size-1 convolutions as batched matrix products (PointwiseConv1d): the
same outputs, gradients and state dicts as nn.Conv1d(in, out, 1), products
on CUDA and convolutions on a CPU, and every such layer of the VITS
generator uses it."""

import pytest
import torch
from torch.nn.utils.parametrizations import weight_norm
from torch.utils._python_dispatch import TorchDispatchMode

import semtts.lobes.vits.pointwise as pointwise_module
from semtts.lobes.vits.pointwise import PointwiseConv1d
from tests.test_vits_generator import tiny_synthesizer


@pytest.fixture
def products_on_cpu(monkeypatch):
    """Run the matrix-product path (CUDA's) on the CPU."""
    monkeypatch.setattr(pointwise_module, "MATMUL_DEVICES", {"cpu", "cuda"})


class _Operators(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _pair(bias: bool, normed: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(5, 7, 1, bias=bias)
    pointwise = PointwiseConv1d(5, 7, bias=bias)
    if normed:
        conv, pointwise = weight_norm(conv), weight_norm(pointwise)
    pointwise.load_state_dict(conv.state_dict())  # the same names: checkpoints move unchanged
    return conv, pointwise


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("normed", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 11), (5, 11), (3, 5, 1)])
def test_outputs_and_gradients_match_conv1d(bias, normed, shape, products_on_cpu):
    conv, pointwise = _pair(bias, normed)
    x = torch.randn(*shape)
    results = []
    for layer in (conv, pointwise):
        x_in = x.clone().requires_grad_(True)
        y = layer(x_in)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads = [x_in.grad] + [p.grad for p in layer.parameters()]
        results.append((y.detach(), grads))
        layer.zero_grad(set_to_none=True)
    (y_conv, g_conv), (y_point, g_point) = results
    assert y_point.shape == y_conv.shape
    torch.testing.assert_close(y_point, y_conv, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_point, g_conv, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_autocast_computes_in_bf16_like_conv1d(products_on_cpu):
    conv, pointwise = _pair(True, True)
    x = torch.randn(2, 5, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_conv, y_point = conv(x), pointwise(x)
    assert y_point.dtype == y_conv.dtype == torch.bfloat16
    torch.testing.assert_close(y_point.float(), y_conv.float(), rtol=2e-2, atol=2e-2)


def test_products_on_the_matmul_devices_convolutions_elsewhere(monkeypatch):
    layer, x = PointwiseConv1d(3, 5), torch.randn(2, 3, 4)
    for devices, want, other in (({"cuda"}, "convolution", "baddbmm"), ({"cpu"}, "baddbmm", "convolution")):
        monkeypatch.setattr(pointwise_module, "MATMUL_DEVICES", devices)
        with _Operators() as seen:
            layer(x)
        assert want in seen.names and other not in seen.names


def test_state_dicts_move_both_ways(products_on_cpu):
    conv, pointwise = _pair(True, True)
    back = weight_norm(torch.nn.Conv1d(5, 7, 1))
    back.load_state_dict(pointwise.state_dict())
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(back(x), pointwise(x), rtol=1e-5, atol=1e-6)


def test_every_kernel_one_convolution_of_the_generator_is_pointwise():
    """A new 1x1 nn.Conv1d in a VITS brick would silently go back through cuDNN: this catches it."""
    generator = tiny_synthesizer()
    plain = [name for name, m in generator.named_modules()
             if isinstance(m, torch.nn.Conv1d) and m.kernel_size == (1,) and not isinstance(m, PointwiseConv1d)]
    pointwise = [name for name, m in generator.named_modules() if isinstance(m, PointwiseConv1d)]
    assert plain == []
    assert len(pointwise) > 20
