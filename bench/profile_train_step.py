"""Profile one VITS training step on a GPU: where the time goes.

Runs ``VITSBrain.fit_batch`` (the same batches and hparams as
``bench/train_step.py``) under ``torch.profiler`` and prints the operators
that take the most GPU time, the GPU busy share of the wall time, and the
host-device synchronisations per step (the things to remove for speed),
with the source lines of the calls that waited for the GPU (CUDA's sync
debug mode; the training step should have none), and the host and GPU time
of each part of the step (text encoder, posterior encoder, flow, duration
predictor, decoder, discriminator, alignment, losses, optimizers, and the
backward passes): where a host-bound step spends its launches.

    python bench/profile_train_step.py --batch_size 32 --precision bf16 > bench/results/profile.txt
    python bench/profile_train_step.py --device cpu --config hparams/model/vits_tiny.yaml --batch_size 2 \\
        --precision fp32 --min_seconds 1 --max_seconds 2      # smoke test
"""

import argparse
import collections
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_busy_ms, emit, machine_info  # noqa: E402
from train_step import host_copies, load_hparams, make_batch  # noqa: E402


def synchronising_calls(step) -> collections.Counter:
    """Run ``step`` once with CUDA's sync debug mode and count the calls that
    waited for the GPU, by the source line that made them."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught
                               if "synchroniz" in str(w.message))


# the parts of a step whose host and GPU time are shown apart: (name, object path, method)
REGIONS = [
    ("text_encoder", "generator.text_encoder", "forward"),
    ("posterior_encoder", "generator.posterior_encoder", "forward"),
    ("flow", "generator.flow", "forward"),
    ("duration_predictor", "generator.duration_predictor", "loss"),
    ("decoder", "generator.decoder", "forward"),
    ("discriminator", "discriminator", "judge"),
    ("alignment", "alignment", "search_path"),
    ("generator_loss", "brain", "compute_objectives"),  # includes the generator step's judge
    ("optimizer_g", "brain.optimizer_g", "step"),
    ("optimizer_d", "brain.optimizer_d", "step"),
]


def label_regions(brain, region=None) -> None:
    """Wrap the parts of :data:`REGIONS` in ``region(name)`` contexts: by default
    ``record_function`` ranges (forward passes; the backward runs in the autograd
    engine, reported as one row). ``bench/op_count.py`` counts operators by them."""
    region = region or (lambda name: torch.profiler.record_function(f"region::{name}"))
    import semtts.lobes.vits.semantic_vits as semantic_vits
    import semtts.lobes.vits.synthesizer as synthesizer
    from semtts.brain import _unwrap

    roots = {"generator": _unwrap(brain.modules["generator"]), "discriminator": _unwrap(brain.modules["discriminator"]),
             "brain": brain}

    def wrapped(name, method):
        def run(*args, **kwargs):
            with region(name):
                return method(*args, **kwargs)
        return run

    for name, where, method in REGIONS:
        if where == "alignment":  # a module function, called by both generator classes
            for module in (synthesizer, semantic_vits):
                setattr(module, method, wrapped(name, getattr(module, method)))
            continue
        first, *rest = where.split(".")
        owner = roots[first]
        for attribute in rest:
            owner = getattr(owner, attribute)
        setattr(owner, method, wrapped(name, getattr(owner, method)))


def region_table(events, steps: int) -> str:
    """Host (CPU total) and GPU time per step of every region, and of the backward passes
    (``generator_loss`` holds the discriminator's judging in the generator step)."""
    rows = []
    for event in events:
        if event.key.startswith("region::"):
            rows.append((event.key[8:], event.cpu_time_total, event.device_time_total))
    backward = [e for e in events if e.key.startswith("autograd::engine::evaluate_function")]
    rows.append(("backward (autograd engine)", sum(e.cpu_time_total for e in backward),
                 sum(e.device_time_total for e in backward)))
    lines = [f"{'region':<28}{'host ms/step':>14}{'GPU ms/step':>14}"]
    lines += [f"{name:<28}{cpu / 1000 / steps:>14.1f}{gpu / 1000 / steps:>14.1f}" for name, cpu, gpu in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hparams/model/vits_base.yaml")
    parser.add_argument("--device", default="cuda", help="cuda (the point), or cpu for a smoke test")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--min_seconds", type=float, default=2.0)
    parser.add_argument("--max_seconds", type=float, default=10.0)
    parser.add_argument("--compile_mode", default=None,
                        help="profile the step compiled in this torch.compile mode (default: eager), e.g. "
                             "reduce-overhead; the warm-up steps compile")
    parser.add_argument("--compile_module_keys", nargs="*", default=None, help="with --compile_mode: the parts")
    args = parser.parse_args(argv)
    # first line: the machine, torch version, device and settings (JSON, as the other benchmarks), then the tables
    emit({"bench": "profile_train_step", **machine_info(torch.device(args.device)), **vars(args)})
    from semtts.brain import VITSBrain

    on_cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        hp = load_hparams(args.config, folder)
        run_opts = {"device": args.device, "precision": args.precision, "noprogressbar": True}
        if args.compile_mode:
            run_opts |= {"compile": True, "compile_mode": args.compile_mode,
                         "compile_module_keys": args.compile_module_keys}
        brain = VITSBrain({"generator": hp["generator"], "discriminator": hp["discriminator"]}, hparams=hp,
                          run_opts=run_opts)
        brain.on_fit_start()
        brain.modules.train()
        if not args.compile_mode:  # (compiled parts would trace the regions' wrappers)
            label_regions(brain)
        spec = hp["spectrogram"]
        batch = make_batch(args.batch_size, spec.sample_rate, spec.hop_length, args.min_seconds, args.max_seconds,
                           seed=args.batch_size)
        fresh = host_copies(batch, 4 + args.steps, torch.device(args.device))
        for _ in range(3):
            brain.fit_batch(next(fresh))
        sync()
        sync_sites = synchronising_calls(lambda: brain.fit_batch(next(fresh))) if on_cuda else None
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            for _ in range(args.steps):
                brain.fit_batch(next(fresh))
            sync()
            wall_ms = (time.perf_counter() - start) * 1000 / args.steps
    events = prof.key_averages()
    gpu_ms = device_busy_ms(prof.events()) / args.steps
    syncs = {e.key: e.count // args.steps for e in events
             if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "aten::item",
                          "aten::_local_scalar_dense", "aten::nonzero")}
    print(f"batch {args.batch_size}, {args.precision}: wall {wall_ms:.1f} ms/step, GPU kernels {gpu_ms:.1f} ms/step "
          f"({100 * gpu_ms / wall_ms:.0f}% busy); per step: {syncs}")
    if sync_sites is not None:
        print(f"synchronising calls in one step (torch.cuda.set_sync_debug_mode): {sum(sync_sites.values())} "
              f"{dict(sync_sites)}")
    print(region_table(events, args.steps))
    sort = "self_device_time_total" if on_cuda else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
