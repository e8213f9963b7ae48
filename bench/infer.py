"""Benchmark VITS inference: time and real-time factor for 100 / 200 / 400
input tokens, batch 1.

The generator is randomly initialised (no trained weights are needed to time
it), with weight norm removed as at deployment. An untrained duration
predictor gives arbitrary lengths, so the benchmark fixes every token to
``--frames_per_token`` frames (3, about LJSpeech's average of 3.2 with blanks
interspersed: 200 tokens give 600 frames, 7.0 s of audio). The duration
predictor still runs in full (its conditioning network and reverse flows,
about a third of the operators of a synthesis): only its output value is
replaced. Everything else runs as in synthesis.

    python bench/infer.py --config hparams/model/vits_base.yaml --threads 2
    python bench/infer.py --device cuda --out bench/results/infer_cuda.jsonl
    python bench/infer.py --threads 2 --onnx      # also ONNX Runtime (CPU) on the same graph
    python bench/infer.py --device cuda --precisions fp32 fp16 bf16   # the flow and decoder in half precision

Every line gives ``precision``; those other than eager float32 also give how far their waveform
lies from eager float32's (noise off): ``max_abs_diff_vs_eager`` and ``rel_l2_vs_eager``.

With ``--onnx`` the same generator is exported (:func:`semtts.onnx_export.export_onnx`)
and ONNX Runtime's CPU time is reported next to PyTorch's, with the same
thread count, as ``"backend": "onnxruntime"`` lines.
"""

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, host_memory_as_commands, machine_info, median_ms  # noqa: E402


def build_generator(config: str, device: torch.device, frames_per_token: int) -> tuple[torch.nn.Module, int]:
    """A random-init generator from a model file, ready for timing."""
    with open(config) as f:
        hp = load_hyperpyyaml(f, {"n_vocab": 178})
    generator = hp["generator"].to(device).eval()
    generator.remove_weight_norm()
    log_frames = math.log(frames_per_token - 0.5)  # ceil() in infer gives frames_per_token
    generator.duration_predictor = FixedDurations(generator.duration_predictor, log_frames)
    return generator, hp["spectrogram"].sample_rate


class FixedDurations(torch.nn.Module):
    """A duration predictor that runs in full but answers ``log_frames`` for every token
    (a submodule, so that copies of the generator, e.g. for ONNX export, carry it)."""

    def __init__(self, predictor: torch.nn.Module, log_frames: float):
        super().__init__()
        self.predictor, self.log_frames = predictor, log_frames

    def log_durations(self, hidden, mask, g=None, noise_scale=1.0):
        computed = self.predictor.log_durations(hidden, mask, g=g, noise_scale=noise_scale)  # timed as in synthesis
        return torch.full_like(mask, self.log_frames) * mask + torch.nan_to_num(computed * 0.0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hparams/model/vits_base.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", nargs="*", type=int, default=[100, 200, 400])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--frames_per_token", type=int, default=3)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--onnx", action="store_true", help="also time ONNX Runtime on the CPU")
    parser.add_argument("--no_cuda_graphs", action="store_true",
                        help="on CUDA, time only eager PyTorch (default: also semtts.graphed_inference)")
    parser.add_argument("--precisions", nargs="*", default=["fp32"], choices=["fp32", "fp16", "bf16"],
                        help="the flow and decoder's precision (GraphedSynthesizer's precision; default fp32)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from semtts.graphed_inference import GraphedSynthesizer, check_precision

    for precision in args.precisions:  # before anything is timed or written
        check_precision(precision, device, "--precisions")
    torch.manual_seed(0)
    generator, sample_rate = build_generator(args.config, device, args.frames_per_token)
    info = {**machine_info(device), **host_memory_as_commands()}
    runners = {}  # (backend, precision): synthesis
    for precision in args.precisions:
        runners["pytorch", precision] = GraphedSynthesizer(generator, enabled=False, precision=precision)
        if device.type == "cuda" and not args.no_cuda_graphs:
            runners["pytorch+cuda_graphs", precision] = GraphedSynthesizer(generator, precision=precision)
    for n_tokens in args.tokens:
        tokens = torch.randint(3, 178, (1, n_tokens), device=device)
        lengths = torch.tensor([n_tokens], device=device)
        with torch.inference_mode():
            reference = generator.infer(tokens, lengths, noise_scale=0.0, noise_scale_w=0.0).waveform
        for (backend, precision), run in runners.items():
            with torch.inference_mode():
                out = run(tokens, lengths)
                seconds_audio = out.waveform.shape[-1] / sample_rate
                ms = median_ms(lambda: run(tokens, lengths), device, warmup=2, iters=args.iters)
                record = {"precision": precision}
                if (backend, precision) != ("pytorch", "fp32"):  # against eager fp32, with the noise off
                    waveform = run(tokens, lengths, noise_scale=0.0, noise_scale_w=0.0).waveform
                    record["max_abs_diff_vs_eager"] = float((reference - waveform).abs().max())
                    record["rel_l2_vs_eager"] = float((reference - waveform).norm() / reference.norm())
            emit({"bench": "infer", **info, "config": args.config, "threads": torch.get_num_threads(),
                  "tokens": n_tokens, "audio_s": round(seconds_audio, 3), "median_ms": round(ms, 2),
                  "rtf": round(ms / 1000.0 / seconds_audio, 4), "backend": backend, **record}, args.out)
    if args.onnx:
        bench_onnx(generator, sample_rate, args)


def bench_onnx(generator: torch.nn.Module, sample_rate: int, args: argparse.Namespace) -> None:
    """Export ``generator`` and time ONNX Runtime (CPU) on the same inputs."""
    from semtts.onnx_export import SynthesisGraph, export_onnx
    from semtts.onnx_runtime import onnx_session

    path = Path(tempfile.mkdtemp()) / "bench.onnx"
    export_onnx(generator.cpu(), path)
    session = onnx_session(path, threads=torch.get_num_threads())
    graph = SynthesisGraph(generator)
    info = {**machine_info(torch.device("cpu")), **host_memory_as_commands()}
    for n_tokens in args.tokens:
        inputs = graph.example_inputs(n_tokens=n_tokens)
        feeds = {name: value.numpy() for name, value in zip(graph.input_names, inputs)}
        seconds_audio = session.run(None, feeds)[0].shape[-1] / sample_rate
        ms = median_ms(lambda: session.run(None, feeds), torch.device("cpu"), warmup=2, iters=args.iters)
        emit({"bench": "infer", **info, "config": args.config, "threads": torch.get_num_threads(),
              "tokens": n_tokens, "audio_s": round(seconds_audio, 3), "median_ms": round(ms, 2),
              "rtf": round(ms / 1000.0 / seconds_audio, 4), "backend": "onnxruntime"}, args.out)


if __name__ == "__main__":
    main()
