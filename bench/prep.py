"""Benchmark data preparation + validation (stage 1) on the mini corpus:
utterances per second, for one and several jobs.

    python bench/prep.py [--jobs 1 2] [--out bench/results/prep_cpu.jsonl]

The mini corpus is generated (espeak-ng) into a temporary folder first; its
generation time is reported separately.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_info  # noqa: E402

from semtts.data.corpora import mini  # noqa: E402
from semtts.data.prepare import prepare_manifests  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--sample_rate", type=int, default=22050, help="16000 adds resampling to every item")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    info = machine_info(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        corpus = mini.generate(Path(tmp) / "mini", nj=max(args.jobs))
        generation_s = time.perf_counter() - start
        for nj in args.jobs:
            out_dir = Path(tmp) / f"exp{nj}"
            start = time.perf_counter()
            report = prepare_manifests(
                "mini", corpus, out_dir, sample_rate=args.sample_rate, min_duration=0.5, max_duration=15.0,
                min_keep_ratio=0.9, n_valid=12, n_test=12, heldout_speakers=["spk4", "spk5"], seed=1,
                cleaner="english", nj=nj,
            )
            seconds = time.perf_counter() - start
            emit({"bench": "prep", **info, "corpus": "mini", "jobs": nj, "sample_rate": args.sample_rate,
                  "utterances": report["total"], "seconds": round(seconds, 3),
                  "utterances_per_s": round(report["total"] / seconds, 1),
                  "mini_generation_s": round(generation_s, 2)}, args.out)


if __name__ == "__main__":
    main()
