"""What ``--compile`` compiles in VITS training.

- The parts with fixed shapes: the discriminator and the generator's
  decoder see fixed-size windows (``segment_size`` samples,
  ``segment_size / hop`` frames) at every step, so ``torch.compile`` traces
  them once. The discriminator is compiled through its ``judge`` method,
  which the discriminator and the generator steps both call.
- The parts with variable lengths, compiled with dynamic shapes: the text
  encoder, the posterior encoder, the flow and the duration predictor's
  training loss.
  Their convolutions are opaque operators under compilation
  (:mod:`semtts.lobes.vits.opaque_conv`), so one graph serves every batch
  size and length; their many small elementwise operations (masks, gated
  activations, layer norms, the spline) fuse into a few kernels.

The alignment search (numba or Triton) and the losses stay eager.
Everything is compiled in place, so checkpoints keep their keys.

Example
-------
>>> from torch import nn
>>> compile_parts(nn.Module(), nn.Module(), ["alignment"], {})
Traceback (most recent call last):
...
semtts.errors.ConfigError: --compile_module_keys: alignment cannot be compiled; choose among discriminator, \
decoder, text_encoder, posterior_encoder, flow, duration_predictor
"""

from typing import Any

import torch
from torch import nn

from semtts.errors import ConfigError

__all__ = ["COMPILABLE", "DYNAMIC_SHAPE_PARTS", "compile_parts", "compiled_graph_count"]

DYNAMIC_SHAPE_PARTS = ("text_encoder", "posterior_encoder", "flow", "duration_predictor")
"""The generator parts compiled with dynamic shapes (their inputs change length at every step)."""

COMPILABLE = ("discriminator", "decoder") + DYNAMIC_SHAPE_PARTS
"""The parts ``--compile_module_keys`` may name."""


def compile_parts(generator: nn.Module, discriminator: nn.Module, keys: list[str] | None,
                  options: dict[str, Any]) -> list[str]:
    """``torch.compile`` the chosen parts in place.

    Arguments
    ---------
    generator : nn.Module
        The VITS generator (unwrapped from DDP): its ``decoder``, ``text_encoder``,
        ``posterior_encoder``, ``flow`` and ``duration_predictor.loss`` are compiled.
    discriminator : nn.Module
        The multi-period discriminator (unwrapped); its ``judge`` is compiled.
    keys : list of str or None
        Among :data:`COMPILABLE` (None or empty: all).
    options : dict
        ``torch.compile`` keyword arguments (``mode``, ``fullgraph``, ``dynamic``); the
        :data:`DYNAMIC_SHAPE_PARTS` are always compiled with ``dynamic=True``.

    Returns
    -------
    list of str
        The parts compiled.
    """
    keys = list(keys or COMPILABLE)
    unknown = sorted(set(keys) - set(COMPILABLE))
    if unknown:
        raise ConfigError(f"--compile_module_keys: {', '.join(unknown)} cannot be compiled; "
                          f"choose among {', '.join(COMPILABLE)}")
    dynamic = {**options, "dynamic": True}
    for key in keys:
        if key == "discriminator":  # both training steps go through judge()
            discriminator.judge = torch.compile(discriminator.judge, **options)
        elif key == "decoder":
            generator.decoder.compile(**options)
        elif key == "duration_predictor":  # training calls loss(); synthesis's log_durations stays eager
            predictor = generator.duration_predictor
            predictor.loss = torch.compile(predictor.loss, **dynamic)
        else:
            getattr(generator, key).compile(**dynamic)
    return keys


def compiled_graph_count() -> int:
    """The graphs ``torch.compile`` has built in this process so far, recompilations
    included: a part compiled with dynamic shapes adds one, however many lengths it sees.

    Returns
    -------
    int
        dynamo's ``unique_graphs`` counter.

    Example
    -------
    >>> before = compiled_graph_count()
    >>> double = torch.compile(lambda x: 2 * x, backend="eager")
    >>> _ = double(torch.ones(3)), double(torch.ones(3))
    >>> compiled_graph_count() - before
    1
    """
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]
