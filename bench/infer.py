"""Benchmark VITS inference: time and real-time factor for 100 / 200 / 400
input tokens, batch 1.

The generator is randomly initialised (no trained weights are needed to time
it), with weight norm removed as at deployment. An untrained duration
predictor gives arbitrary lengths, so the benchmark fixes every token to
``--frames_per_token`` frames (3, about LJSpeech's average of 3.2 with blanks
interspersed: 200 tokens give 600 frames, 7.0 s of audio); everything else
runs as in synthesis.

    python bench/infer.py --config hparams/model/vits_base.yaml --threads 2
    python bench/infer.py --device cuda --out bench/results/infer_cuda.jsonl
"""

import argparse
import math
import sys
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_info, median_ms  # noqa: E402


def build_generator(config: str, device: torch.device, frames_per_token: int) -> tuple[torch.nn.Module, int]:
    """A random-init generator from a model file, ready for timing."""
    with open(config) as f:
        hp = load_hyperpyyaml(f, {"n_vocab": 178})
    generator = hp["generator"].to(device).eval()
    generator.remove_weight_norm()
    log_frames = math.log(frames_per_token - 0.5)  # ceil() in infer gives frames_per_token

    def fixed_log_durations(hidden, mask, g=None, noise_scale=1.0):
        return torch.full_like(mask, log_frames) * mask

    generator.duration_predictor.log_durations = fixed_log_durations
    return generator, hp["spectrogram"].sample_rate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hparams/model/vits_base.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", nargs="*", type=int, default=[100, 200, 400])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--frames_per_token", type=int, default=3)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    generator, sample_rate = build_generator(args.config, device, args.frames_per_token)
    info = machine_info(device)
    for n_tokens in args.tokens:
        tokens = torch.randint(3, 178, (1, n_tokens), device=device)
        lengths = torch.tensor([n_tokens], device=device)
        with torch.inference_mode():
            out = generator.infer(tokens, lengths)
            seconds_audio = out.waveform.shape[-1] / sample_rate
            ms = median_ms(lambda: generator.infer(tokens, lengths), device, warmup=2, iters=args.iters)
        emit({"bench": "infer", **info, "config": args.config, "threads": torch.get_num_threads(),
              "tokens": n_tokens, "audio_s": round(seconds_audio, 3), "median_ms": round(ms, 2),
              "rtf": round(ms / 1000.0 / seconds_audio, 4), "backend": "pytorch"}, args.out)


if __name__ == "__main__":
    main()
