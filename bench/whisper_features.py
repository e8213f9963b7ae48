"""Benchmark Whisper teacher-feature extraction (the work of stage 4):
utterances per second and times real time, on the CPU and on CUDA when
present, reading, resampling, log-mel, encoder and fp16 writes included.

    python bench/whisper_features.py [--model tiny] [--cache_dir DIR] [--utterances 8]
                                     [--batch_size 8] [--layer -1] [--out results.jsonl]

The utterances are generated (2 to 8 s of tones and noise at 22.05 kHz, so
every one is resampled as in a real recipe). When the weights of ``--model``
are not available (not cached, no network), the encoder is built with the
named size's dimensions and random weights; the JSON says so in
``"weights"``. The speed of the encoder does not depend on its weights.
Every utterance costs at least one 30-s window, as Whisper pads its input.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_info, median_ms  # noqa: E402

from semtts.audio import save_audio  # noqa: E402
from semtts.errors import WeightsNotFound  # noqa: E402
from semtts.extract.teacher import (  # noqa: E402
    RANDOM_INIT,
    extract_teacher_features,
    load_whisper_teacher,
)

SOURCE_RATE = 22050


def _make_corpus(folder: Path, n: int, seed: int) -> tuple[dict[str, str], float]:
    """``n`` utterances of 2 to 8 s; returns their paths and total seconds."""
    gen = torch.Generator().manual_seed(seed)
    paths, total = {}, 0.0
    for k in range(n):
        seconds = 2.0 + 6.0 * float(torch.rand(1, generator=gen))
        t = torch.arange(int(seconds * SOURCE_RATE)) / SOURCE_RATE
        wav = 0.3 * torch.sin(2 * torch.pi * (150 + 50 * k) * t) + 0.03 * torch.randn(t.numel(), generator=gen)
        paths[f"utt{k:03d}"] = str(folder / f"utt{k:03d}.wav")
        save_audio(paths[f"utt{k:03d}"], wav, SOURCE_RATE)
        total += t.numel() / SOURCE_RATE
    return paths, total


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="Whisper name or local .pt checkpoint")
    parser.add_argument("--cache_dir", default=None, help="whisper download folder (default ~/.cache/whisper)")
    parser.add_argument("--layer", type=int, default=-1)
    parser.add_argument("--utterances", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8, help="30-s windows per encoder call")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        teacher = load_whisper_teacher(args.model, args.layer, cache_dir=args.cache_dir)
    except WeightsNotFound:
        teacher = load_whisper_teacher(args.model, args.layer, cache_dir=args.cache_dir, allow_random_init=True)
    load_s = time.perf_counter() - start
    weights = "random-init (no weights available)" if teacher.sha256 == RANDOM_INIT else "pretrained"
    params = sum(p.numel() for p in teacher.encoder.parameters())
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        paths, audio_s = _make_corpus(Path(tmp) / "wavs", args.utterances, seed=0)
        windows = len(paths)  # every generated utterance is shorter than 30 s
        for device in devices:
            out_dir = Path(tmp) / f"teacher_{device.type}"

            def run() -> None:
                report = extract_teacher_features(teacher, paths, out_dir, batch_size=args.batch_size,
                                                  device=device, overwrite=True, progress=False)
                assert report["extracted"] == len(paths), report

            ms = median_ms(run, device, warmup=1, iters=args.iters)
            emit({
                "bench": "whisper_features", **machine_info(device),
                "model": teacher.name, "weights": weights, "layer": teacher.layer, "dim": teacher.dim,
                "encoder_layers": teacher.dims.n_audio_layer, "encoder_params_M": round(params / 1e6, 2),
                "n_mels": teacher.n_mels, "precision": "fp16" if device.type == "cuda" else "fp32",
                "batch_size": args.batch_size, "utterances": len(paths), "audio_s": round(audio_s, 2),
                "windows_30s": windows, "median_s": round(ms / 1000.0, 3),
                "utterances_per_s": round(len(paths) / (ms / 1000.0), 2),
                "x_real_time": round(audio_s / (ms / 1000.0), 2),
                "model_load_s": round(load_s, 2), "iters": args.iters,
            }, args.out)
            teacher.to("cpu")


if __name__ == "__main__":
    main()
