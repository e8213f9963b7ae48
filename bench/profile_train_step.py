"""Profile one VITS training step on a GPU: where the time goes.

Runs ``VITSBrain.fit_batch`` (the same batches and hparams as
``bench/train_step.py``) under ``torch.profiler`` and prints the operators
that take the most GPU time, the GPU busy share of the wall time, and the
host-device synchronisations per step (the things to remove for speed),
with the source lines of the calls that waited for the GPU (CUDA's sync
debug mode; the training step should have none).

    python bench/profile_train_step.py --batch_size 32 --precision bf16 > bench/results/profile.txt
"""

import argparse
import collections
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import load_hparams, make_batch  # noqa: E402


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hparams/model/vits_base.yaml")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args(argv)
    from semtts.brain import VITSBrain

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        hp = load_hparams(args.config, folder)
        brain = VITSBrain({"generator": hp["generator"], "discriminator": hp["discriminator"]}, hparams=hp,
                          run_opts={"device": "cuda", "precision": args.precision, "noprogressbar": True})
        brain.on_fit_start()
        brain.modules.train()
        spec = hp["spectrogram"]
        batch = make_batch(args.batch_size, spec.sample_rate, spec.hop_length, 2.0, 10.0, seed=args.batch_size)
        # fit_batch moves its batch to the device in place: every step gets its own host copy, as from a loader
        fresh = iter([copy.deepcopy(batch) for _ in range(4 + args.steps)])
        for _ in range(3):
            brain.fit_batch(next(fresh))
        torch.cuda.synchronize()
        sync_sites = synchronising_calls(lambda: brain.fit_batch(next(fresh)))
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            for _ in range(args.steps):
                brain.fit_batch(next(fresh))
            torch.cuda.synchronize()
            wall_ms = (time.perf_counter() - start) * 1000 / args.steps
    events = prof.key_averages()
    # kernels only: an operator's row repeats the time of the kernels it launched
    gpu_ms = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA) / 1000 / args.steps
    syncs = {e.key: e.count // args.steps for e in events
             if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "aten::item",
                          "aten::_local_scalar_dense", "aten::nonzero")}
    print(f"batch {args.batch_size}, {args.precision}: wall {wall_ms:.1f} ms/step, GPU kernels {gpu_ms:.1f} ms/step "
          f"({100 * gpu_ms / wall_ms:.0f}% busy); per step: {syncs}")
    print(f"synchronising calls in one step (torch.cuda.set_sync_debug_mode): {sum(sync_sites.values())} "
          f"{dict(sync_sites)}")
    print(events.table(sort_by="self_device_time_total", row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
