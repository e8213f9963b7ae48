"""Benchmark one VITS training step (discriminator and generator update, the
whole ``VITSBrain.fit_batch``): median time, audio seconds trained per
second, and peak memory, per batch size and precision.

Two times per setting: ``median_ms``, each step alone (the device
synchronised before and after it), and ``steady_ms``, the mean of
consecutive steps with one synchronisation at the end, as a training loop
runs them (the host prepares the next step while the GPU finishes the last);
``enqueue_ms`` is the host's share (the median time for ``fit_batch`` to
return; close to the step also when the GPU is the bottleneck, once CUDA's
launch queue is full), and with ``--gpu_busy`` ``gpu_busy_ms`` the time the
GPU itself is busy in a step (profiled; the floor of a step whose host costs
nothing). ``audio_s_per_s`` uses ``steady_ms``. Every step gets a fresh host
copy of the batch, as from a data loader.

Batches are LJSpeech-like: random audio of ``--min_seconds`` to
``--max_seconds`` (uniform; LJSpeech spans 1-10 s) with one token per 3.2
frames (LJSpeech's average with blanks: about 150 tokens for 6 s), random
token ids, one speaker; every batch spans the whole range (padded to about
9.8 s), or with ``--bucketed`` lies in one of the original VITS's length
buckets, as its sampler makes batches (about 6.3 s). ``padded_s`` reports
it. Models are randomly initialised; the optimizers, losses and schedules
are those of ``hparams/train_A.yaml``. Logging is off
during timing. fp16 needs CUDA (SpeechBrain refuses it on a CPU): on a CPU it
is reported as skipped.

    python bench/train_step.py                               # tiny model, CPU
    python bench/train_step.py --compile                     # torch.compile of discriminator and decoder
    python bench/train_step.py --compile --vary_batches      # a new batch (new lengths) every step
    python bench/train_step.py --device cuda --compile --compile_mode reduce-overhead \\
        --compile_module_keys decoder discriminator          # the fixed-length parts as CUDA graphs
    python bench/train_step.py --device cuda --compile --compile_mode reduce-overhead \\
        --pad_frames_to 32 --pad_tokens_to 16 --batch_pool 4 --bucketed   # every part as CUDA graphs
    python bench/train_step.py --device cuda --config hparams/model/vits_base.yaml \\
        --batch_sizes 32 64 --precisions fp32 bf16 fp16 --out bench/results/train_step_cuda.jsonl

With ``--pad_frames_to`` and ``--pad_tokens_to`` above 1 the batches are padded to
multiples of those lengths, and under a CUDA-graph ``--compile_mode`` every part runs
as CUDA graphs, one recorded per padded shape. ``--batch_pool K`` then times the
steady state of a long training, whose batches take a few padded shapes again and
again: K batches in turn, each seen three times (warmed up, recorded, replayed)
before the timed steps.
"""

import argparse
import copy
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, gpu_busy_ms, host_memory_as_commands, machine_info, median_ms  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRAMES_PER_TOKEN = 3.2


def load_hparams(config: str, output_folder: str) -> dict:
    """The model file and ``train_A.yaml`` merged as the training stage merges them."""
    with open(config) as f:
        hp = load_hyperpyyaml(f, {"n_vocab": 178})
    overrides = {"output_folder": output_folder, "log_interval": 10**9, "audio_log_interval": 10**9,
                 "tensorboard_folder": None, "train_log": f"{output_folder}/train_log.txt"}
    with open(ROOT / "hparams" / "train_A.yaml") as f:
        hp.update(load_hyperpyyaml(f, overrides))
    return hp


VITS_BUCKETS = (32, 300, 400, 500, 600, 700, 800, 900, 1000)
"""The frame boundaries of the original VITS's length buckets (``DistributedBucketSampler``): each of its
batches holds items of one bucket."""


def make_batch(batch_size: int, sample_rate: int, hop: int, min_s: float, max_s: float, seed: int,
               bucketed: bool = False, anchor_at: float | None = None) -> PaddedBatch:
    """Random audio of LJSpeech-like lengths with about one token per 3.2 frames.

    Lengths are uniform in ``[min_s, max_s]``; with ``bucketed``, as the original VITS batches them, every
    item of the batch lies in the :data:`VITS_BUCKETS` bucket of one such length (less padding): a random
    one, or the one at ``anchor_at`` (0..1) of the range.
    """
    gen = torch.Generator().manual_seed(seed)
    low, high = min_s, max_s
    if bucketed:
        at = float(torch.rand(1, generator=gen)) if anchor_at is None else anchor_at
        anchor = (min_s + (max_s - min_s) * at) * sample_rate / hop  # frames
        edges = [edge for edge in zip(VITS_BUCKETS, VITS_BUCKETS[1:]) if edge[0] <= anchor < edge[1]]
        if edges:
            low = max(min_s, edges[0][0] * hop / sample_rate)
            high = min(max_s, edges[0][1] * hop / sample_rate)
    items = []
    for i in range(batch_size):
        seconds = low + (high - low) * float(torch.rand(1, generator=gen))
        n_samples = int(seconds * sample_rate)
        n_tokens = max(1, int(n_samples // hop / FRAMES_PER_TOKEN))
        items.append({
            "sig": 0.1 * torch.randn(n_samples, generator=gen),
            "token_ids": torch.randint(1, 178, (n_tokens,), generator=gen),
            "spk_id": 0,
        })
    return PaddedBatch(items)


def make_batches(count: int, batch_size: int, sample_rate: int, hop: int, min_s: float, max_s: float,
                 bucketed: bool = False, spread: bool = False) -> list[PaddedBatch]:
    """``count`` :func:`make_batch` batches of new lengths; with ``spread``, bucketed ones spread evenly over the
    lengths (a pool's mean length then the same at every batch size: four random buckets once averaged 3.6 s
    per item at batch 64 and 7.6 s at batch 32)."""
    return [make_batch(batch_size, sample_rate, hop, min_s, max_s, seed=batch_size + 1000 * i, bucketed=bucketed,
                       anchor_at=(i + 0.5) / count if spread else None) for i in range(count)]


def audio_seconds(batch: PaddedBatch, sample_rate: int) -> float:
    """The audio of ``batch``, in seconds (its relative lengths times its padded length)."""
    return float(batch.sig.lengths.sum() * batch.sig.data.shape[1]) / sample_rate


def host_copies(batch: PaddedBatch, count: int, device: torch.device):
    """An iterator over ``count`` host copies of ``batch``: ``fit_batch`` moves its batch to the device in
    place, so every step gets its own, as from a loader (pinned on CUDA, as semtts' training loader gives it)."""
    copies = [copy.deepcopy(batch) for _ in range(count)]
    return iter([b.pin_memory() for b in copies] if device.type == "cuda" else copies)


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated since the last reset, or the process's peak RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_one(args, device: torch.device, precision: str, batch_size: int, info: dict) -> dict:
    """Time ``fit_batch`` for one setting; the record to emit."""
    from semtts.brain import VITSBrain
    from semtts.compiled_parts import compiled_graph_count
    from semtts.errors import ConfigError
    from semtts.length_padding import padded_length

    record = {"bench": "train_step", **info, "config": args.config, "precision": precision,
              "batch_size": batch_size, "threads": torch.get_num_threads()}
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        hp = load_hparams(args.config, folder)
        hp.update(pad_frames_to=args.pad_frames_to, pad_tokens_to=args.pad_tokens_to)
        modules = {"generator": hp["generator"], "discriminator": hp["discriminator"]}
        if args.channels_last_disc:  # experiment: the period discriminators' Conv2d weights in NHWC
            modules["discriminator"].to(memory_format=torch.channels_last)
        if args.channels_last_conv1d:  # experiment: every 1-D convolution as an NHWC 2-D one
            from semtts.conv_layout import use_channels_last_conv1d

            # with --compile, the fixed-shape parts only: the variable-length parts keep their opaque
            # convolutions (semtts.lobes.vits.opaque_conv), which keep their lengths symbolic
            parts = ([modules["generator"].decoder, modules["discriminator"]] if args.compile
                     else list(modules.values()))
            for module in parts:
                use_channels_last_conv1d(module)
        try:
            run_opts = {"device": str(device), "precision": precision, "noprogressbar": True}
            if args.compile:
                run_opts |= {"compile": True, "compile_mode": args.compile_mode,
                             "compile_using_dynamic_shape_tracing": False,
                             "compile_module_keys": args.compile_module_keys}
            brain = VITSBrain(modules, hparams=hp, run_opts=run_opts)
        except ConfigError as err:
            return {**record, "skipped": str(err)}
        brain.on_fit_start()
        brain.modules.train()
        spectrogram = hp["spectrogram"]
        # one batch, or with --vary_batches a new one (new lengths) for every step
        busy = args.gpu_busy and device.type == "cuda"
        warmup = max(args.warmup, 3 * args.batch_pool)  # a pool: every batch seen 3 times (graphs recorded)
        n_steps = 1 + warmup + (3 if busy else 2) * args.steps
        n_batches = args.batch_pool or (n_steps if args.vary_batches else 1)
        batches = make_batches(n_batches, batch_size, spectrogram.sample_rate, spectrogram.hop_length,
                               args.min_seconds, args.max_seconds, bucketed=args.bucketed,
                               spread=bool(args.batch_pool))
        audio_s = statistics.mean(audio_seconds(b, spectrogram.sample_rate) for b in batches)
        tokens_mean = round(statistics.mean(float((b.token_ids.lengths * b.token_ids.data.shape[1]).mean())
                                            for b in batches), 1)
        multiple = args.pad_frames_to * spectrogram.hop_length  # as the Brain pads a training batch
        padded_s = statistics.mean(padded_length(b.sig.data.shape[1], multiple) / spectrogram.sample_rate
                                   for b in batches)
        copies = [host_copies(b, -(-n_steps // n_batches), device) for b in batches]
        fresh = (next(copies[i % n_batches]) for i in range(n_steps))  # the batches in turn
        graphs_before, skips_before = compiled_graph_count(), cudagraph_skips()
        step = lambda: brain.fit_batch(next(fresh))  # noqa: E731
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            started = time.perf_counter()
            step()  # the first step (compiles with --compile)
            brain.settle_steps()
            first_s = time.perf_counter() - started
            progress(record, f"first step {first_s:.1f} s")
            warm_s = []  # each warm-up step's time: where graphs are recorded, or parts compiled again
            for _ in range(warmup):
                began = time.perf_counter()
                step()
                brain.settle_steps()
                warm_s.append(round(time.perf_counter() - began, 2))
            progress(record, f"warm-up steps (s): {warm_s}")
            ms = median_ms(step, device, warmup=0, iters=args.steps)
            steady_ms, enqueue_ms = steady_step_ms(step, device, args.steps)
            busy_ms, busy_error = measured_busy_ms(step, args.steps) if busy else (None, None)
        except torch.OutOfMemoryError as err:
            return {**record, "error": f"out of memory: {str(err).splitlines()[0]}"}
        return {**record, "audio_s_per_batch": round(audio_s, 2), "tokens_mean": tokens_mean,
                "bucketed": args.bucketed, "padded_s": round(padded_s, 2),  # the padded length of the batches
                "median_ms": round(ms, 1), "steady_ms": round(steady_ms, 1), "enqueue_ms": round(enqueue_ms, 1),
                "gpu_busy_ms": busy_ms,  # with --gpu_busy: the GPU's own time per step (the floor)
                "gpu_busy_error": busy_error,  # why it is missing, when it is
                "audio_s_per_s": round(audio_s / (steady_ms / 1000.0), 2),
                "peak_memory_mb": round(peak_memory_mb(device), 1),
                # a CPU's peak RSS cannot be reset: it covers every earlier setting of this run too
                "peak_memory_scope": "this setting" if device.type == "cuda" else "process so far",
                "first_step_s": round(first_s, 2), "warmup_steps_s": warm_s,
                "compile": args.compile and args.compile_mode,
                "compile_module_keys": args.compile and args.compile_module_keys,
                "compiled_graphs": compiled_graph_count() - graphs_before, "vary_batches": args.vary_batches,
                "batch_pool": args.batch_pool, "pad_frames_to": args.pad_frames_to,
                "pad_tokens_to": args.pad_tokens_to,
                # compiled parts that a CUDA-graph mode ran without graphs (the reasons are in the log)
                "cudagraph_skips": cudagraph_skips() - skips_before,
                "cudnn_benchmark": torch.backends.cudnn.benchmark, "channels_last_disc": args.channels_last_disc,
                "channels_last_conv1d": args.channels_last_conv1d,
                "fused_optimizers": brain.gate_g.deferred and brain.gate_d.deferred,
                "skipped_steps": settled(brain).nonfinite_total, "steps": args.steps}


def progress(record: dict, what: str) -> None:
    """One line on stderr while a setting runs (a step killed by its timeout still shows how far it got)."""
    print(f"train_step: batch {record['batch_size']} {record['precision']}: {what}", file=sys.stderr, flush=True)


def measured_busy_ms(step: Callable[[], Any], steps: int) -> tuple[float | None, str | None]:
    """:func:`common.gpu_busy_ms` of ``steps`` steps, or None and why: a profiler that fails or sees no
    kernel (as it may in CUDA-graph replays) costs this field, not the record; a step that fails
    raises as it would unprofiled."""
    failed: list[BaseException] = []

    def watched() -> Any:
        try:
            return step()
        except BaseException as err:
            failed.append(err)
            raise

    try:
        busy = gpu_busy_ms(watched, steps)
    except Exception as err:  # noqa: BLE001 - the profiler's own failure, reported in the record
        if failed:
            raise failed[0] from None
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
    return (round(busy, 1), None) if busy > 0 else (None, "the profiler saw no kernel")


def cudagraph_skips() -> int:
    """How often inductor has declined to run a compiled graph as a CUDA graph in this process
    (``--compile_mode reduce-overhead``; it logs why)."""
    from torch._dynamo.utils import counters

    return counters["inductor"]["cudagraph_skips"]


def steady_step_ms(step, device: torch.device, steps: int) -> tuple[float, float]:
    """Consecutive steps as in training, one device sync at the end: the mean
    time per step, and the median host time for a step to return (its
    enqueue time; close to the step time when the host is the bottleneck)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    host = []
    start = time.perf_counter()
    for _ in range(steps):
        began = time.perf_counter()
        step()
        host.append((time.perf_counter() - began) * 1000.0)
    sync()
    return (time.perf_counter() - start) * 1000.0 / steps, statistics.median(host)


def settled(brain):
    """The Brain after reading back its pending step outcomes."""
    brain.settle_steps()
    return brain


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default=None,
                        help="model file (default: vits_tiny.yaml on a CPU, vits_base.yaml on CUDA)")
    parser.add_argument("--batch_sizes", nargs="*", type=int, default=None,
                        help="default: 2 on a CPU, 32 64 on CUDA")
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min_seconds", type=float, default=2.0)
    parser.add_argument("--max_seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--compile", action="store_true",
                        help="--compile (torch.compile of the parts semtts.compiled_parts names, VITSBrain._compile)")
    parser.add_argument("--compile_mode", default="default", help="torch.compile mode with --compile")
    parser.add_argument("--compile_module_keys", nargs="*", default=None,
                        help="parts to compile with --compile (semtts.compiled_parts; default: all)")
    parser.add_argument("--bucketed", action="store_true",
                        help="batches of similar lengths, as the original VITS's bucket sampler makes them "
                             "(default: lengths uniform over --min_seconds..--max_seconds in every batch)")
    parser.add_argument("--vary_batches", action="store_true",
                        help="a new batch (new lengths) at every step, as in training: shows recompilations")
    parser.add_argument("--batch_pool", type=int, default=0,
                        help="cycle through this many batches of new lengths (0: one, or --vary_batches); the "
                             "warm-up shows each three times, so that the timed steps replay recorded CUDA graphs")
    parser.add_argument("--pad_frames_to", type=int, default=1,
                        help="pad each batch to a multiple of this many frames (train_A.yaml's pad_frames_to)")
    parser.add_argument("--pad_tokens_to", type=int, default=1,
                        help="pad each batch to a multiple of this many tokens (train_A.yaml's pad_tokens_to)")
    parser.add_argument("--channels_last_disc", action="store_true",
                        help="experiment: period-discriminator Conv2d weights in channels-last (NHWC) layout")
    parser.add_argument("--channels_last_conv1d", action="store_true",
                        help="experiment: run every 1-D convolution as a channels-last 2-D one (semtts.conv_layout); "
                             "with --compile, those of the decoder and the discriminator")
    parser.add_argument("--gpu_busy", action="store_true",
                        help="CUDA: also profile --steps more steps for the time the GPU is busy in a step "
                             "(gpu_busy_ms: what the step would take if the host cost nothing)")
    parser.add_argument("--cudnn_benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True (cuDNN picks kernels per shape)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.batch_pool < 0 or args.pad_frames_to < 1 or args.pad_tokens_to < 1:
        parser.error("--batch_pool must be >= 0, --pad_frames_to and --pad_tokens_to >= 1")
    if args.batch_pool and args.vary_batches:
        parser.error("--batch_pool and --vary_batches: choose one (a pool of batches, or a new one every step)")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    args.config = args.config or str(ROOT / "hparams" / "model" / ("vits_base.yaml" if on_cuda else "vits_tiny.yaml"))
    batch_sizes = args.batch_sizes or ([32, 64] if on_cuda else [2])
    if args.threads:
        torch.set_num_threads(args.threads)
    info = {**machine_info(device), **host_memory_as_commands()}
    for batch_size in batch_sizes:
        for precision in args.precisions:
            emit(bench_one(args, device, precision, batch_size, info), args.out)


if __name__ == "__main__":
    main()
