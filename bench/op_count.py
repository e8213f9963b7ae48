"""Count the operators one VITS training step dispatches, by part of the step.

A GPU step of ``vits_base`` at batch 32 is bound by the host: the time to
launch its operators, not to run them (batch 64 takes hardly longer).
What the host pays for is counted here, on any machine, without a GPU:
every ATen operator of one ``VITSBrain.fit_batch`` (forward passes by
part, the backward passes, the optimizers), and among them the library
calls that cost the most host time per call on CUDA: cuDNN convolutions
(forward and backward) and cuBLAS matrix products. The step is the one
``bench/train_step.py`` times, run as on CUDA: fused AdamW, and the
kernel-1 convolutions as matrix products (``semtts.lobes.vits.pointwise``).
With ``--flops_batch_size N`` it also counts the floating-point operations
of one step on N items of ``bench/train_step.py``'s LJSpeech-like lengths
(2-10 s): how much of a step's GPU time the arithmetic itself can explain.

``--graphed none fixed all`` counts instead what the host would still
launch with parts replayed as CUDA graphs (``--compile_mode
reduce-overhead``): none, the decoder and the discriminator, or every
compiled part of batches padded to few lengths (``pad_frames_to``,
``pad_tokens_to``). The parts are compiled as ``compile_parts`` compiles
them, by a backend that runs their forward and backward graphs as they are
and marks them; ``host_ops`` are the profiler's outermost ATen operators
outside those graphs (``host_ops_launching`` those of them that launch a
kernel: no views, no cast or reshape that copies nothing), ``graph_calls``
the graphs run (one replay each on a GPU). torch.compile steps aside under
the operator counter above, hence the profiler here, whose count differs
from the counter's (operators as called, not as dispatched below autograd):
compare ``host_ops`` with ``host_ops``, not with ``ops_total``. Not
counted: the copies of eager inputs into a graph's buffers.

    python bench/op_count.py --config hparams/model/vits_base.yaml --precisions fp32 bf16 \\
        --flops_batch_size 4 --out bench/results/op_count_cpu.jsonl
    python bench/op_count.py --precisions bf16 --graphed none fixed all --out bench/results/op_count_cpu.jsonl
"""

import argparse
import collections
import contextlib
import sys
import tempfile
import unittest.mock
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_info  # noqa: E402
from profile_train_step import label_regions  # noqa: E402
from train_step import ROOT, audio_seconds, host_copies, load_hparams, make_batch  # noqa: E402

CONVOLUTIONS = {"convolution", "convolution_backward"}
MATMULS = {"mm", "bmm", "addmm", "baddbmm", "addbmm"}


class OperatorCounter(TorchDispatchMode):
    """Count dispatched operators under the innermost part of the step (``backward`` inside autograd)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter = collections.Counter()
        self.parts = ["other"]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        part = "backward" if torch._C._current_graph_task_id() != -1 else self.parts[-1]
        self.counts[(part, func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))

    @contextlib.contextmanager
    def part(self, name: str):
        """Count what runs inside under ``name``."""
        self.parts.append(name)
        try:
            yield
        finally:
            self.parts.pop()


def as_on_cuda() -> None:
    """Run the step as on CUDA: kernel-1 convolutions as products, fused AdamW and device-side skips."""
    import semtts.brain
    import semtts.lobes.vits.pointwise
    import semtts.update_gate

    semtts.lobes.vits.pointwise.MATMUL_DEVICES.add("cpu")
    semtts.brain.build_optimizer = lambda opt_class, module, device: opt_class(module.parameters(), fused=True)
    semtts.update_gate.supports_device_skip = lambda opt: getattr(opt, "_step_supports_amp_scaling", False)


@contextlib.contextmanager
def one_step_later(config: str, precision: str, batch_size: int, seconds: tuple[float, float],
                   run_opts: dict | None = None, hparams: dict | None = None) -> Iterator[tuple[Any, Any, int]]:
    """A Brain run as on CUDA (:func:`as_on_cuda`) on the CPU, after one training step (which compiles what
    ``run_opts`` compile): ``(brain, a fresh copy of the batch for the next step, sample rate)``."""
    from semtts.brain import VITSBrain

    as_on_cuda()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        hp = load_hparams(config, folder)
        hp.update(hparams or {})
        brain = VITSBrain({"generator": hp["generator"], "discriminator": hp["discriminator"]}, hparams=hp,
                          run_opts={"device": "cpu", "precision": precision, "noprogressbar": True,
                                    **(run_opts or {})})
        brain.on_fit_start()
        brain.modules.train()
        spec = hp["spectrogram"]
        batch = make_batch(batch_size, spec.sample_rate, spec.hop_length, *seconds, seed=batch_size)
        fresh = host_copies(batch, 2, torch.device("cpu"))
        brain.fit_batch(next(fresh))
        yield brain, next(fresh), spec.sample_rate


GRAPHED = {"none": [], "fixed": ["decoder", "discriminator"], "all": None}
"""``--graphed``: the parts compiled (replayed as CUDA graphs on a GPU); ``all`` (None: every part) also
pads the batches to multiples of 32 frames and 16 tokens."""
GRAPH_MARK = "semtts::compiled_graph"
NO_KERNEL = {f"aten::{name}" for name in ("detach", "view", "unsqueeze", "squeeze", "transpose", "expand", "slice",
                                          "select", "narrow", "alias", "permute", "t", "as_strided", "split",
                                          "chunk", "unbind", "_unsafe_view", "view_as", "unflatten", "numpy_T",
                                          "expand_as", "split_with_sizes", "empty", "lift_fresh")}
"""Operators that launch no kernel (views, and ``empty``'s allocation)."""
COPY_IF_NEEDED = {"aten::to", "aten::reshape", "aten::flatten", "aten::contiguous"}
"""Operators that launch a kernel only when they copy (then the profiler shows an operator under them)."""


def marking_backend() -> Callable:
    """A ``torch.compile`` backend that runs the forward and backward graphs as they are, each call inside a
    profiler range named :data:`GRAPH_MARK`."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    def compiler(gm, example_inputs):
        def run(*args):
            with torch.profiler.record_function(GRAPH_MARK):
                return gm(*args)
        return make_boxed_func(run)

    return aot_autograd(fw_compiler=compiler, bw_compiler=compiler)


def count_host_ops(config: str, precision: str, batch_size: int, graphed: str,
                   seconds: tuple[float, float] = (1.0, 1.5)) -> dict:
    """The outermost ATen operators one training step runs outside the graphs of the ``graphed`` parts
    (:data:`GRAPHED`), and the graphs it runs, after a first step that compiles them."""
    run_opts = {}
    if GRAPHED[graphed] != []:
        run_opts = {"compile": True, "compile_mode": "reduce-overhead", "compile_module_keys": GRAPHED[graphed]}
    pads = {"pad_frames_to": 32, "pad_tokens_to": 16} if graphed == "all" else {}
    torch._dynamo.reset()  # (graphs of an earlier count, compiled by another backend instance)
    real_compile, backend = torch.compile, marking_backend()
    with unittest.mock.patch.object(torch, "compile", lambda fn, mode=None, dynamic=None, fullgraph=False:
                                    real_compile(fn, backend=backend, dynamic=dynamic, fullgraph=fullgraph)), \
            one_step_later(config, precision, batch_size, seconds, run_opts, pads) as (brain, batch, _):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            brain.fit_batch(batch)
    host_ops = launching = graph_calls = 0
    for event in prof.events():
        if event.name == GRAPH_MARK:
            graph_calls += 1
            continue
        if not event.name.startswith("aten::"):
            continue
        parent, outermost = event.cpu_parent, True
        while parent is not None:
            if parent.name.startswith("aten::") or parent.name == GRAPH_MARK:
                outermost = False
                break
            parent = parent.cpu_parent
        if outermost:
            host_ops += 1
            # (a view, or a cast or reshape that copies nothing, launches nothing)
            launching += event.name not in NO_KERNEL and (event.name not in COPY_IF_NEEDED or bool(event.cpu_children))
    return {"graphed": graphed, "host_ops": host_ops, "host_ops_launching": launching, "graph_calls": graph_calls}


def count_step(config: str, precision: str, batch_size: int, seconds: tuple[float, float] = (1.0, 1.5),
               flops: bool = False) -> dict:
    """The operator counts (or with ``flops`` the floating-point operations) of one training step
    (after a first, unmeasured one) on ``batch_size`` items of ``seconds`` (min, max) of audio."""
    with one_step_later(config, precision, batch_size, seconds) as (brain, batch, sample_rate):
        if flops:
            with FlopCounterMode(display=False) as flop_counter:
                brain.fit_batch(batch)
            tflop = flop_counter.get_total_flops() / 1e12
            return {"audio_s": round(audio_seconds(batch, sample_rate), 2), "tflop": round(tflop, 3),
                    "tflop_per_item": round(tflop / batch_size, 4)}
        counter = OperatorCounter()
        label_regions(brain, counter.part)  # the parts bench/profile_train_step.py times
        with counter:
            brain.fit_batch(batch)
    by_part = collections.Counter()
    for (part, _), n in counter.counts.items():
        by_part[part] += n
    calls = lambda names: sum(n for (_, op), n in counter.counts.items() if op in names)  # noqa: E731
    optimizers = by_part["optimizer_g"] + by_part["optimizer_d"]
    forward = sum(by_part.values()) - by_part["backward"] - optimizers
    return {"ops_total": sum(by_part.values()), "ops_forward": forward, "ops_backward": by_part["backward"],
            "ops_optimizers": optimizers, "convolution_calls": calls(CONVOLUTIONS),
            "matmul_calls": calls(MATMULS), "casts": calls({"_to_copy"}), "by_part": dict(by_part.most_common())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "hparams" / "model" / "vits_base.yaml"))
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--batch_size", type=int, default=2, help="counts do not depend on it")
    parser.add_argument("--flops_batch_size", type=int, default=0,
                        help="also count the FLOPs of a step on this many items of 2-10 s (fp32; 0: no)")
    parser.add_argument("--graphed", nargs="+", choices=sorted(GRAPHED), default=None,
                        help="count the host's operators outside the CUDA graphs of these parts instead (see above)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    info = machine_info(torch.device("cpu"))
    for precision in args.precisions:
        record = {"bench": "op_count", **info, "config": Path(args.config).name,
                  "precision": precision, "batch_size": args.batch_size}
        if args.graphed:
            for graphed in args.graphed:
                emit({**record, "bench": "host_ops", **count_host_ops(args.config, precision, args.batch_size,
                                                                       graphed)}, args.out)
            continue
        emit({**record, **count_step(args.config, precision, args.batch_size)}, args.out)
    if args.flops_batch_size:
        record = {"bench": "flop_count", **info, "config": Path(args.config).name, "precision": "fp32",
                  "batch_size": args.flops_batch_size}
        emit({**record, **count_step(args.config, "fp32", args.flops_batch_size, (2.0, 10.0), flops=True)}, args.out)


if __name__ == "__main__":
    main()
