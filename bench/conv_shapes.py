"""Where a training step's convolution time goes, shape by shape, and which
memory layout is fastest for each.

Convolutions (mostly their backward) take most of a ``vits_base`` step's GPU
time. This script records every convolution call of one real training step
(``VITSBrain.fit_batch``, the batches of ``bench/train_step.py``): its shape,
and whether it needed an input and/or a weight gradient. It then times each
distinct call alone (forward, plus the backward the step needed), in the
step's dtype, with the layouts an implementation could choose:

- ``default``: what the step does now (NCL / NCHW);
- ``channels_last``: 1-D convolutions as 2-D ones on ``[B, C, 1, L]``
  channels-last tensors (cuDNN's native NHWC kernels, no layout transforms),
  2-D ones with channels-last input and weight;
- ``folded``: a period discriminator's ``(k, 1)`` 2-D convolution on
  ``[B, C, T/p, p]`` as a 1-D convolution on ``[B*p, C, T/p]`` (exactly equal);
- ``conv1d``: a kernel-1 layer (``PointwiseConv1d``, whose default is one
  batched matrix product) through ``F.conv1d`` (cuDNN) instead.

One JSON line per (call shape, layout): milliseconds per call, calls per
step, milliseconds per step; the largest totals are where a faster step has
to come from.

    python bench/conv_shapes.py --device cuda --config hparams/model/vits_base.yaml --batch_size 32 \\
        --precision bf16 --out bench/results/conv_shapes_cuda.jsonl
    python bench/conv_shapes.py --batch_size 2 --iters 2        # tiny model, CPU: checks the script
"""

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_info, median_ms  # noqa: E402
from train_step import load_hparams, make_batch  # noqa: E402

from semtts.graphed_inference import DECODE_DTYPES as DTYPES  # noqa: E402  (--precision's names and dtypes)
from semtts.lobes.vits.pointwise import PointwiseConv1d, pointwise_conv1d  # noqa: E402

# the first class that matches names a call: PointwiseConv1d before the Conv1d it derives from
KINDS = ((PointwiseConv1d, "PointwiseConv1d"), (nn.ConvTranspose1d, "ConvTranspose1d"), (nn.Conv2d, "Conv2d"),
         (nn.Conv1d, "Conv1d"))


def record_calls(config: str, batch_size: int, precision: str, device: torch.device) -> Counter:
    """Run one training step (after one warm-up step) and count its convolution calls.

    Returns
    -------
    Counter
        ``(kind, input shape, weight shape, stride, padding, dilation, groups,
        input grad, weight grad) -> calls``.
    """
    from semtts.brain import VITSBrain

    calls: Counter = Counter()

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x, weight = inputs[0], module.weight
        grad = torch.is_grad_enabled()
        kind = next(name for cls, name in KINDS if isinstance(module, cls))  # parametrized classes differ
        calls[(kind, tuple(x.shape), tuple(weight.shape), module.stride, module.padding, module.dilation,
               module.groups, grad and x.requires_grad, grad and weight.requires_grad)] += 1

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        hp = load_hparams(config, folder)
        brain = VITSBrain({"generator": hp["generator"], "discriminator": hp["discriminator"]}, hparams=hp,
                          run_opts={"device": str(device), "precision": precision, "noprogressbar": True})
        brain.on_fit_start()
        brain.modules.train()
        spec = hp["spectrogram"]
        batch = make_batch(batch_size, spec.sample_rate, spec.hop_length, 2.0, 10.0, seed=batch_size)
        brain.fit_batch(batch)
        handles = [m.register_forward_hook(hook) for m in brain.modules.modules()
                   if isinstance(m, tuple(cls for cls, _ in KINDS))]
        brain.fit_batch(batch)
        brain.settle_steps()
        for handle in handles:
            handle.remove()
    return calls


def layouts(kind: str, weight_shape: tuple) -> list[str]:
    """The layouts worth timing for a call."""
    names = ["default", "channels_last"]
    if kind == "Conv2d" and weight_shape[-1] == 1:
        names.append("folded")
    if kind == "PointwiseConv1d":
        names.append("conv1d")
    return names


def time_call(call: tuple, layout: str, dtype: torch.dtype, device: torch.device, iters: int) -> float:
    """Median milliseconds of one call's forward and the backward the step needed."""
    kind, x_shape, w_shape, stride, padding, dilation, groups, x_grad, w_grad = call
    x = torch.randn(x_shape, device=device, dtype=dtype)
    w = 0.05 * torch.randn(w_shape, device=device, dtype=dtype)
    bias_size = w_shape[1] * groups if kind == "ConvTranspose1d" else w_shape[0]
    b = torch.zeros(bias_size, device=device, dtype=dtype)
    if kind == "Conv2d" and layout == "folded":
        batch, channels, height, width = x_shape
        x = x.permute(0, 3, 1, 2).reshape(batch * width, channels, height)
        w = w.squeeze(-1)

        def conv(x, w, b):
            return F.conv1d(x, w, b, stride[0], padding[0], dilation[0], groups)
    elif kind == "Conv2d":
        if layout == "channels_last":
            x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)

        def conv(x, w, b):
            return F.conv2d(x, w, b, stride, padding, dilation, groups)
    elif kind == "PointwiseConv1d" and layout == "default":  # what the step does: a batched product
        def conv(x, w, b):
            return pointwise_conv1d(x, w, b)
    elif layout == "channels_last":  # 1-D as 2-D on [B, C, 1, L] in NHWC
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        w = w.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        if kind != "ConvTranspose1d":
            def conv(x, w, b):
                return F.conv2d(x, w, b, (1, stride[0]), (0, padding[0]), (1, dilation[0]), groups)
        else:
            def conv(x, w, b):
                return F.conv_transpose2d(x, w, b, (1, stride[0]), (0, padding[0]), 0, groups, (1, dilation[0]))
    elif kind in ("Conv1d", "PointwiseConv1d"):  # a pointwise layer's "conv1d" layout: cuDNN
        def conv(x, w, b):
            return F.conv1d(x, w, b, stride, padding, dilation, groups)
    else:
        def conv(x, w, b):
            return F.conv_transpose1d(x, w, b, stride, padding, 0, groups, dilation)
    x.requires_grad_(x_grad)
    w.requires_grad_(w_grad)
    b.requires_grad_(w_grad)
    backward = x_grad or w_grad
    out_grad = torch.randn_like(conv(x, w, b).detach()) if backward else None

    def step() -> None:
        y = conv(x, w, b)
        if backward:
            y.backward(out_grad)
            x.grad = w.grad = b.grad = None

    with torch.set_grad_enabled(backward):
        return median_ms(step, device, warmup=2, iters=iters)


def main(argv: list[str] | None = None) -> None:
    """Record the calls of one step, time each in every layout, print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "hparams/model/vits_tiny.yaml"))
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--iters", type=int, default=10, help="timed repetitions per call (median)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    info = {"bench": "conv_shapes", **machine_info(device), "config": args.config, "batch_size": args.batch_size,
            "precision": args.precision}
    calls = record_calls(args.config, args.batch_size, args.precision, device)
    totals, best = Counter(), 0.0
    for call, count in sorted(calls.items(), key=lambda item: -item[1]):
        kind, x_shape, w_shape, stride, padding, dilation, groups, x_grad, w_grad = call
        timed = {}
        for layout in layouts(kind, w_shape):
            try:
                timed[layout] = time_call(call, layout, DTYPES[args.precision], device, args.iters)
            except RuntimeError as err:  # a layout a backend does not support
                emit({**info, "kind": kind, "input": list(x_shape), "layout": layout,
                      "error": str(err).splitlines()[0][:200]}, args.out)
                continue
            emit({**info, "kind": kind, "input": list(x_shape), "weight": list(w_shape), "stride": list(stride),
                  "padding": list(padding), "dilation": list(dilation), "groups": groups,
                  "input_grad": x_grad, "weight_grad": w_grad, "layout": layout, "calls_per_step": count,
                  "ms_per_call": round(timed[layout], 4), "ms_per_step": round(timed[layout] * count, 3)}, args.out)
        for layout in ("default", "channels_last", "folded", "conv1d"):  # a layout that does not apply counts as default
            totals[layout] += timed.get(layout, timed.get("default", 0.0)) * count
        best += min(timed.values(), default=0.0) * count
    emit({**info, "summary": "every convolution call of one step, each timed alone",
          "distinct_calls": len(calls), "calls_per_step": sum(calls.values()),
          **{f"{layout}_ms_per_step": round(ms, 2) for layout, ms in totals.items()},  # default where n/a
          "best_layout_per_call_ms_per_step": round(best, 2)}, args.out)


if __name__ == "__main__":
    main()
