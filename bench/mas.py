"""Benchmark monotonic alignment search on every backend present here.

Protocols:

- ``supermas``: B=16, T_text in {128, 512, 1024, 2048}, T_audio = 4 * T_text,
  fp32 randn scores, full lengths (the Super-MAS protocol);
- ``vits``: B=32, ragged VITS-like lengths (T_text 100-400, T_audio about
  3 * T_text), padded batch.

Medians after warm-up, with device synchronisation. The path of every
benchmarked backend is asserted equal to the CPU backend's on every input.

    python bench/mas.py                         # CPU backend, 1 and all threads
    python bench/mas.py --device cuda --out bench/results/mas_cuda.jsonl
"""

import argparse
import sys
from pathlib import Path

import numba
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_info, median_ms  # noqa: E402

from semtts.align import available_backends, maximum_path  # noqa: E402


def make_inputs(protocol: str, t_text: int, gen: torch.Generator):
    """Scores ``[B, T_audio, T_text]`` and lengths for one benchmark point."""
    if protocol == "supermas":
        b, t_audio = 16, 4 * t_text
        v = torch.randn(b, t_audio, t_text, generator=gen)
        return v, torch.full((b,), t_text), torch.full((b,), t_audio)
    b = 32
    x = torch.randint(100, 401, (b,), generator=gen)
    y = (x.float() * (2.6 + 0.8 * torch.rand(b, generator=gen))).long()
    v = torch.randn(b, int(y.max()), int(x.max()), generator=gen)
    return v, x, y


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backends", nargs="*", default=None, help="default: all available on the device")
    parser.add_argument("--sizes", nargs="*", type=int, default=[128, 512, 1024, 2048])
    parser.add_argument("--protocols", nargs="*", default=["supermas", "vits"])
    parser.add_argument("--threads", nargs="*", type=int, default=None, help="CPU thread counts (default: 1 and all)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    backends = args.backends or available_backends(device)
    threads = args.threads or sorted({1, numba.config.NUMBA_NUM_THREADS})
    info = machine_info(device)
    gen = torch.Generator().manual_seed(0)
    for protocol in args.protocols:
        sizes = args.sizes if protocol == "supermas" else [0]
        for t_text in sizes:
            v_host, x_host, y_host = make_inputs(protocol, t_text, gen)
            expected = maximum_path(v_host, x_host, y_host, backend="cpu")
            v, x, y = v_host.to(device), x_host.to(device), y_host.to(device)
            for backend in backends:
                for n_threads in threads if backend == "cpu" else [None]:
                    if n_threads is not None:
                        numba.set_num_threads(n_threads)
                    path = maximum_path(v, x, y, backend=backend, validate=False)
                    assert torch.equal(path.cpu(), expected), f"{backend} path differs at {protocol} {t_text}"
                    ms = median_ms(
                        lambda: maximum_path(v, x, y, backend=backend, validate=False),
                        device,
                        warmup=2,
                        iters=args.iters if v.numel() < 2**27 or device.type == "cuda" else 3,
                    )
                    emit(
                        {
                            "bench": "mas",
                            **info,
                            "backend": backend,
                            "threads": n_threads,
                            "protocol": protocol,
                            "B": v.shape[0],
                            "T_text": v.shape[2],
                            "T_audio": v.shape[1],
                            "dtype": "float32",
                            "median_ms": round(ms, 4),
                            "path_equal_to_cpu": True,
                        },
                        args.out,
                    )


if __name__ == "__main__":
    main()
