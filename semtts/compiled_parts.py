"""What ``--compile`` compiles in VITS training.

- The parts with fixed lengths: the discriminator and the generator's
  decoder see fixed-size windows (``segment_size`` samples,
  ``segment_size / hop`` frames) at every step, so ``torch.compile`` traces
  them with static lengths. Only the batch size may change (batches by
  total duration, ``dynamic_batching``): unless ``--compile_using_dynamic_shape_tracing``
  asks for dynamic shapes from the start, the first change of batch size
  compiles them once more with a symbolic batch size (torch.compile's
  automatic dynamic shapes), rather than once per size. The discriminator
  is compiled through its ``judge`` method, which the discriminator and the
  generator steps both call.
- The parts with variable lengths, compiled with dynamic shapes: the text
  encoder, the posterior encoder, the flow and the duration predictor
  (what its training loss runs).
  Their convolutions are opaque operators under compilation
  (:mod:`semtts.lobes.vits.opaque_conv`), so one graph serves every batch
  size and length; their many small elementwise operations (masks, gated
  activations, layer norms, the spline) fuse into a few kernels.
  Where a part repeats one block, the block is compiled instead of the
  part (regional compilation): the text encoder's attention and
  feed-forward layers, the duration predictor's spline couplings and
  conditioner stacks. Every
  instance reuses the block's one graph, which cuts the compile time (the
  duration loss took 126 s to compile whole on a 2-core CPU, 41 s so). Only
  training calls take the compiled path (gradients on, forward direction);
  synthesis runs these blocks eagerly and compiles nothing.

The alignment search (numba or Triton) and the losses stay eager.
Everything is compiled in place, so checkpoints keep their keys.

``--compile_mode reduce-overhead`` (or ``max-autotune``) replays the
fixed-length parts, forward and backward, as CUDA graphs: their launches,
cuDNN's included, cost the host nothing, which is what a host-bound step
needs (a graph is recorded per batch size, all in one memory pool). The
variable-length parts are compiled in the same mode without CUDA graphs (a
graph holds one shape; new lengths at every step would record one each
time), unless the batches are padded to a few lengths (``pad_frames_to``
and ``pad_tokens_to`` above 1, :mod:`semtts.length_padding`): then they too
run as CUDA graphs (``graph_lengths``). A step's graphs form one path of
inductor's CUDA-graph tree, so each combination of batch size and padded
lengths is recorded once (warmed up, then recorded: two slower steps), and
the graphs of the parts after the first that changed are recorded again
for it. What stays eager between the graphs includes the text encoder's
embedding, norms, residuals and projection, the duration predictor's
pointwise convolutions and its flows outside its blocks, stage B and C's
student and adapter, the spectrograms, the alignment search, the losses
and the optimizers; an eager result that feeds a graph is copied into its
input buffer (``bench/op_count.py --graphed`` counts what is left). The
Brain marks where each training step begins (:func:`begin_step`), so a
step's graph outputs are not taken for ones still in use.

Example
-------
>>> from torch import nn
>>> compile_parts(nn.Module(), nn.Module(), ["alignment"], {})
Traceback (most recent call last):
...
semtts.errors.ConfigError: --compile_module_keys: alignment cannot be compiled; choose among discriminator, \
decoder, text_encoder, posterior_encoder, flow, duration_predictor
>>> compile_parts(nn.Module(), nn.Module(), None, {"mode": "fast"})
Traceback (most recent call last):
...
semtts.errors.ConfigError: --compile_mode fast: choose among default, reduce-overhead, max-autotune, \
max-autotune-no-cudagraphs
"""

import types
from typing import Any

import torch
from torch import nn

from semtts.errors import ConfigError
from semtts.lobes.vits.attention import ConvFeedForward, RelativeMultiHeadAttention
from semtts.lobes.vits.duration_flows import ConvFlow, DDSConv

__all__ = ["COMPILABLE", "DYNAMIC_SHAPE_PARTS", "MODES", "begin_step", "compile_parts", "compiled_graph_count",
           "uses_cuda_graphs"]

DYNAMIC_SHAPE_PARTS = ("text_encoder", "posterior_encoder", "flow", "duration_predictor")
"""The generator parts compiled with dynamic shapes (their inputs change length at every step)."""

COMPILABLE = ("discriminator", "decoder") + DYNAMIC_SHAPE_PARTS
"""The parts ``--compile_module_keys`` may name."""

REGIONS = {"text_encoder": (RelativeMultiHeadAttention, ConvFeedForward), "duration_predictor": (ConvFlow, DDSConv)}
"""The parts compiled block by block, and their blocks (a block inside another is compiled with it). Blocks
with weight normalisation are not among them: each parametrised layer has a class of its own, so every
instance of such a block would be compiled again (the flow's coupling layers)."""

MODES = {"default": "default", "reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs",
         "max-autotune-no-cudagraphs": "max-autotune-no-cudagraphs"}
"""The ``torch.compile`` modes ``--compile_mode`` takes, and the mode of the variable-length parts under each
(the same optimisations, without CUDA graphs)."""


def uses_cuda_graphs(mode: str | None) -> bool:
    """Whether ``--compile_mode`` ``mode`` replays the fixed-shape parts as CUDA graphs.

    Example
    -------
    >>> uses_cuda_graphs("reduce-overhead"), uses_cuda_graphs("max-autotune"), uses_cuda_graphs("default")
    (True, True, False)
    """
    return MODES.get(mode or "default", "default") != (mode or "default")


def begin_step() -> None:
    """Tell CUDA-graph replays that a new training step begins: the outputs of the last
    step's replays are no longer in use and may be overwritten (without it, a replay whose
    earlier outputs still live would be recorded again). Called by the Brain at every step
    under a CUDA-graph ``--compile_mode``."""
    torch.compiler.cudagraph_mark_step_begin()


def compile_parts(generator: nn.Module, discriminator: nn.Module, keys: list[str] | None,
                  options: dict[str, Any], graph_lengths: bool = False) -> list[str]:
    """``torch.compile`` the chosen parts in place.

    Arguments
    ---------
    generator : nn.Module
        The VITS generator (unwrapped from DDP): its ``decoder``, ``text_encoder``,
        ``posterior_encoder``, ``flow`` and ``duration_predictor`` are compiled (the text
        encoder and the duration predictor block by block, :data:`REGIONS`).
    discriminator : nn.Module
        The multi-period discriminator (unwrapped); its ``judge`` is compiled.
    keys : list of str or None
        Among :data:`COMPILABLE` (None or empty: all).
    options : dict
        ``torch.compile`` keyword arguments (``mode``, ``fullgraph``, ``dynamic``); the
        :data:`DYNAMIC_SHAPE_PARTS` are always compiled with ``dynamic=True``, in the
        mode :data:`MODES` gives them (no CUDA graphs) unless ``graph_lengths``; the
        fixed-length parts with ``dynamic=None`` (automatic) unless ``dynamic`` is True.
    graph_lengths : bool
        The batches take few lengths (padded to multiples): the :data:`DYNAMIC_SHAPE_PARTS`
        get ``options``'s own mode, CUDA graphs included (one recorded per shape).

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
    mode = options.get("mode") or "default"
    if mode not in MODES:
        raise ConfigError(f"--compile_mode {mode}: choose among {', '.join(MODES)}")
    dynamic = {**options, "dynamic": True, "mode": mode if graph_lengths else MODES[mode]}
    fixed = {**options, "dynamic": True if options.get("dynamic") else None}  # None: a symbolic batch size later
    for key in keys:
        if key == "discriminator":  # both training steps go through judge()
            discriminator.judge = torch.compile(discriminator.judge, **fixed)
        elif key == "decoder":
            generator.decoder.compile(**fixed)
        elif key in REGIONS:
            outer: list[str] = []  # the blocks compiled so far: a block inside one is traced with it
            for name, block in getattr(generator, key).named_modules():
                if isinstance(block, REGIONS[key]) and not any(name.startswith(f"{o}.") for o in outer):
                    outer.append(name)
                    if not hasattr(block, "eager_forward"):
                        compile_for_training(block, dynamic)
        else:
            getattr(generator, key).compile(**dynamic)
    return keys


def compile_for_training(block: nn.Module, options: dict[str, Any]) -> None:
    """Compile ``block``'s forward for training calls only, in place: with gradients on and not
    ``reverse``; other calls (synthesis, a flow run backwards) run the eager forward, kept as
    ``block.eager_forward``. Blocks of one class share their compiled graphs. Both are methods
    of the block, so a deep copy of it runs its own weights.

    Example
    -------
    >>> block = nn.Linear(2, 2)
    >>> compile_for_training(block, {"backend": "eager", "dynamic": True})
    >>> before = compiled_graph_count()
    >>> with torch.no_grad():
    ...     _ = block(torch.ones(1, 2))  # eager: nothing compiled
    >>> _ = block(torch.ones(3, 2)).sum().backward()  # a training call
    >>> compiled_graph_count() - before
    1
    """
    eager = type(block).forward
    compiled = torch.compile(eager, **options)

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        training_call = torch.is_grad_enabled() and not kwargs.get("reverse", False)
        return (compiled if training_call else eager)(self, *args, **kwargs)

    block.eager_forward = types.MethodType(eager, block)
    block.forward = types.MethodType(forward, block)


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
