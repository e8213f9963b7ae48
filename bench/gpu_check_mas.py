"""GPU check of monotonic alignment search, in one command (< 5 minutes):

1. compares the Triton kernel on CUDA with the CPU backend, exactly, over a
   sweep of shapes, length patterns, dtypes and layouts;
2. times the kernel variants (row prefetch ring on/off, warps per program);
3. runs ``bench/mas.py`` on CUDA.

    python bench/gpu_check_mas.py --out bench/results/mas_cuda.jsonl

Exits non-zero if any path differs.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_info, median_ms  # noqa: E402

from semtts.align import maximum_path  # noqa: E402
from semtts.align.triton_backend import maximum_path_triton  # noqa: E402


def cases(gen):
    """Yield (name, scores [B, T_audio, T_text] on the host, x_lengths, y_lengths)."""
    for b, n_x, n_y in [(1, 1, 1), (3, 1, 9), (4, 7, 7), (5, 17, 40), (16, 128, 512), (8, 300, 900),
                        (16, 512, 2048), (2, 1000, 1500), (4, 2048, 8192), (3, 4096, 4500)]:
        x = torch.randint(1, n_x + 1, (b,), generator=gen)
        y = torch.maximum(x, torch.randint(1, n_y + 1, (b,), generator=gen))
        x[0], y[0] = n_x, n_y
        yield f"randn_ragged_{b}x{n_y}x{n_x}", torch.randn(b, n_y, n_x, generator=gen), x, y
        if n_x * n_y <= 512 * 2048:
            full = (torch.full((b,), n_x), torch.full((b,), n_y))
            yield f"zeros_{b}x{n_y}x{n_x}", torch.zeros(b, n_y, n_x), *full
            yield f"int_ties_{b}x{n_y}x{n_x}", torch.randint(-2, 3, (b, n_y, n_x), generator=gen).float(), x, y
            yield f"big_{b}x{n_y}x{n_x}", -1e7 + 128.0 * torch.randint(-999, 1000, (b, n_y, n_x), generator=gen).float(), x, y
            diag = torch.minimum(x, y)
            yield f"square_{b}x{n_y}x{n_x}", torch.randn(b, n_y, n_x, generator=gen), diag, diag


def check(device, out) -> int:
    gen = torch.Generator().manual_seed(0)
    failures = 0
    total = 0
    for name, v, x, y in cases(gen):
        expected = maximum_path(v, x, y, backend="cpu")
        variants = {
            "fp32": v.to(device),
            "fp16": v.half().to(device),
            "bf16": v.bfloat16().to(device),
            "glow": v.transpose(1, 2).contiguous().to(device),
            "strided": torch.stack([v, v], dim=3).flatten(2).to(device)[:, :, ::2],
        }
        for kind, dv in variants.items():
            if kind in ("fp16", "bf16"):
                want = maximum_path(v.to(dv.dtype), x, y, backend="cpu")
            else:
                want = expected
            layout = "glow" if kind == "glow" else "vits"
            got = maximum_path(dv, x.to(device), y.to(device), backend="triton", layout=layout)
            if layout == "glow":
                got = got.transpose(1, 2)
            same = torch.equal(got.cpu().to(want.dtype), want)
            total += 1
            failures += not same
            if not same:
                print(f"MISMATCH {name} {kind}", flush=True)
        inplace = v.to(device)
        maximum_path(inplace, x.to(device), y.to(device), backend="triton", inplace=True)
        total += 1
        if not torch.equal(inplace.cpu(), expected):
            failures += 1
            print(f"MISMATCH {name} inplace", flush=True)
    try:
        maximum_path(torch.zeros(2, 5, 6, device=device), torch.tensor([3, 6], device=device), torch.tensor([5, 5], device=device))
        failures += 1
        print("MISMATCH: bad lengths were not rejected on CUDA")
    except ValueError as err:
        print(f"bad input rejected on CUDA: {err}")
    emit({"bench": "mas_gpu_check", **machine_info(device), "triton": triton.__version__,
          "cases": total, "failures": failures}, out)
    return failures


def variants(device, out) -> None:
    info = {**machine_info(device), "triton": triton.__version__}  # on every line, as in the other benchmarks
    gen = torch.Generator().manual_seed(1)
    for t_text in (512, 2048):
        v = torch.randn(16, 4 * t_text, t_text, generator=gen, device="cpu").to(device)
        x = torch.full((16,), t_text, device=device)
        y = torch.full((16,), 4 * t_text, device=device)
        path = torch.empty_like(v)
        for ring in (True, False):
            for warps in (4, 8, 16):
                ms = median_ms(lambda: maximum_path_triton(v, path, x, y, ring=ring, num_warps=warps), device, 2, 5)
                emit({"bench": "mas_variant", **info, "T_text": t_text, "ring": ring,
                      "num_warps": warps, "median_ms": round(ms, 4)}, out)
        for dtype in (torch.bfloat16, torch.float16):
            vd = v.to(dtype)
            ms = median_ms(lambda: maximum_path(vd, x, y, validate=False), device, 2, 5)
            emit({"bench": "mas_dtype", **info, "T_text": t_text, "dtype": str(dtype),
                  "median_ms": round(ms, 4)}, out)
        glow = v.transpose(1, 2).contiguous()
        ms = median_ms(lambda: maximum_path(glow, x, y, layout="glow", validate=False), device, 2, 5)
        emit({"bench": "mas_layout", **info, "T_text": t_text, "layout": "glow",
              "median_ms": round(ms, 4)}, out)
        ms = median_ms(lambda: maximum_path(v, x, y), device, 2, 5)
        emit({"bench": "mas_validate", **info, "T_text": t_text, "validate": True,
              "median_ms": round(ms, 4)}, out)
        del v, path, glow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/mas_cuda.jsonl")
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: gpu_check_mas.py needs a CUDA device")
    device = torch.device("cuda")
    failures = check(device, args.out)
    variants(device, args.out)
    if not args.skip_bench:
        bench = Path(__file__).resolve().parent / "mas.py"
        subprocess.run([sys.executable, str(bench), "--device", "cuda", "--backends", "triton", "cpu",
                        "--out", args.out], check=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
