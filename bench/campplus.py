"""Benchmark CAM++ speaker embedding: embeddings per second and real-time
factor for 3-second clips, batch 1 and 16, on the CPU (and CUDA when present).

    python bench/campplus.py [--batch 1 16] [--seconds 3] [--embed_dim 192] [--out bench/results/campplus.jsonl]

Two measurements per device and batch size: ``model`` (the network on
precomputed fbank) and ``end_to_end`` (16 kHz waveforms through
:meth:`SpeakerEmbedder.embed`: fbank on the CPU, padding, network).
Random weights: the speed does not depend on them. ``rtf`` is compute time
divided by the audio duration (lower is faster).
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_info, median_ms  # noqa: E402

from semtts.extract.speaker import SAMPLE_RATE, SpeakerEmbedder, compute_fbank  # noqa: E402


def bench_device(device: torch.device, args: argparse.Namespace) -> None:
    """Emit one record per (batch size, measurement) on ``device``."""
    embedder = SpeakerEmbedder.from_checkpoint(None, args.embed_dim, allow_random_init=True, seed=0,
                                               device=device, batch_size=max(args.batch))
    info = machine_info(device)
    gen = torch.Generator().manual_seed(0)
    samples = int(args.seconds * SAMPLE_RATE)
    for batch in args.batch:
        wavs = [torch.randn(samples, generator=gen) * 0.1 for _ in range(batch)]
        feats = torch.stack([compute_fbank(w) for w in wavs]).to(device)

        @torch.inference_mode()
        def model_only() -> torch.Tensor:
            return embedder.model(feats)

        for name, fn in (("model", model_only), ("end_to_end", lambda: embedder.embed(wavs, SAMPLE_RATE))):
            ms = median_ms(fn, device, warmup=args.warmup, iters=args.iters)
            emit({"bench": "campplus", **info, "measure": name, "embed_dim": args.embed_dim, "batch": batch,
                  "clip_seconds": args.seconds, "threads": torch.get_num_threads(), "ms_per_batch": round(ms, 2),
                  "embeddings_per_s": round(batch * 1000.0 / ms, 1),
                  "rtf": round(ms / 1000.0 / (batch * args.seconds), 5)}, args.out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", nargs="*", type=int, default=[1, 16])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--embed_dim", type=int, default=192)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu, and cuda when present")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for name in devices:
        bench_device(torch.device(name), args)


if __name__ == "__main__":
    main()
