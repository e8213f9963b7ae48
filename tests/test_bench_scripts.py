"""The benchmark scripts run, on the CPU at tiny sizes, with the options the
GPU run (``bench/gpu_run.sh``) gives them, and print JSON lines that say
where they ran: a script broken here would waste a lent GPU's minutes.
Nothing is timed or compared here (speed is the scripts' business)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config", "hparams/model/vits_tiny.yaml"]
SHORT = ["--min_seconds", "1", "--max_seconds", "2"]
STEP = ["bench/train_step.py", *TINY, "--batch_sizes", "1", "--steps", "1", "--warmup", "0", *SHORT]

SCRIPTS = {
    "infer": ["bench/infer.py", *TINY, "--tokens", "20", "--iters", "1", "--precisions", "fp32", "bf16", "--onnx"],
    "train_step": [*STEP, "--precisions", "fp32", "bf16"],
    "train_step_bucketed": [*STEP, "--precisions", "bf16", "--bucketed"],
    "train_step_padded_pool": [*STEP, "--precisions", "bf16", "--bucketed", "--pad_frames_to", "8",
                               "--pad_tokens_to", "4", "--batch_pool", "2"],
    "train_step_nhwc_conv1d": [*STEP, "--precisions", "bf16", "--channels_last_conv1d", "--vary_batches"],
    "conv_shapes": ["bench/conv_shapes.py", *TINY, "--batch_size", "1", "--precision", "bf16", "--iters", "1"],
    "op_count": ["bench/op_count.py", *TINY, "--batch_size", "1", "--flops_batch_size", "1"],
    "op_count_graphed": ["bench/op_count.py", *TINY, "--batch_size", "1", "--precisions", "bf16", "--graphed",
                         "none", "all"],
    "mas": ["bench/mas.py", "--backends", "cpu", "--sizes", "16", "--iters", "1"],
    "campplus": ["bench/campplus.py", "--batch", "1", "--seconds", "1", "--iters", "1", "--warmup", "0"],
    "whisper_features": ["bench/whisper_features.py", "--utterances", "2", "--iters", "1"],
    "padded_shapes": ["bench/padded_shapes.py", "--utterances", "300", "--epochs", "2", "--pads", "1x1", "32x16"],
}


def run_bench(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_bench_script_runs_and_prints_json_lines(name, tmp_path):
    out = run_bench([*SCRIPTS[name], "--out", str(tmp_path / "out.jsonl")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert records
    for record in records:
        assert {"bench", "torch", "device", "cpu_cores"} <= set(record), record
        assert record["device"] == "cpu"


def test_profile_script_prints_its_tables(tmp_path):
    out = run_bench(["bench/profile_train_step.py", "--device", "cpu", *TINY, "--batch_size", "1", "--steps", "1",
                     "--rows", "3", *SHORT], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "aten::" in out.stdout and "Self CPU time total" in out.stdout


def test_gpu_only_scripts_say_so_without_cuda(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("a CUDA device is here: the GPU run covers this script")
    out = run_bench(["bench/gpu_check_mas.py", "--skip-bench"], tmp_path)
    assert out.returncode == 1 and out.stderr.strip().endswith("needs a CUDA device")


def test_bench_doctests(tmp_path):
    """The helpers of the benchmark scripts with doctests (the GPU busy time of a profile, the padded shapes)
    keep them true."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--doctest-modules",
                          "bench/common.py", "bench/padded_shapes.py"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and " passed" in out.stdout, out.stdout[-3000:]


@pytest.mark.parametrize("sections, status, why", [("graphs_all graphs_check graphs profile compile", 2, "no_cuda"),
                                                   ("graphs tests bogus", 2, "unknown_section")])
def test_gpu_run_refuses_in_one_line_without_cuda_or_with_an_unknown_section(tmp_path, sections, status, why):
    """The default sections are known to the GPU script, which stops at once (its last line a JSON summary)
    on a machine without a CUDA device or on an unknown section, before installing or running anything."""
    env = {**os.environ, "SECTIONS": sections, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")  # no CUDA device, even on a machine that has one
    (tmp_path / "nvidia-smi").chmod(0o755)
    out = subprocess.run(["bash", "bench/gpu_run.sh", str(tmp_path / "out")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == status and summary["gpu_run"] == why, out.stdout[-2000:]


def test_a_pool_of_bucketed_batches_has_the_same_lengths_at_every_batch_size():
    """``--batch_pool K`` spreads its bucketed batches evenly over the lengths, so batch 32 and 64 are timed on
    batches of the same mean length (LJSpeech-like, about 6 s per item), not on whatever K random buckets give."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from train_step import audio_seconds, make_batches
    finally:
        sys.path.remove(str(ROOT / "bench"))
    means = {}
    for batch_size in (32, 64):
        seconds = [audio_seconds(b, 22050) / batch_size
                   for b in make_batches(4, batch_size, 22050, 256, 2.0, 10.0, bucketed=True, spread=True)]
        assert seconds == sorted(seconds) and seconds[0] < 4.0 < 8.0 < seconds[-1], seconds
        means[batch_size] = sum(seconds) / len(seconds)
    assert 5.5 < means[32] < 6.5 and abs(means[32] - means[64]) < 0.1, means


def test_padded_shapes_counts_a_manifest_and_names_a_bad_item(tmp_path):
    """A recipe's training manifest gives the durations and token counts; fewer shapes with coarser padding;
    an item without a duration is a one-line error naming it."""
    items = {f"u{i}": {"duration": 1.0 + 0.37 * i, "tokens": list(range(20 + 5 * i))} for i in range(40)}
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps(items))
    out = run_bench(["bench/padded_shapes.py", "--manifest", str(manifest), "--pads", "1x1", "64x32",
                     "--max_batch_seconds", "20", "--num_buckets", "4", "--out", str(tmp_path / "o.jsonl")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    fine, coarse = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert fine["utterances"] == 40 and fine["batches_per_epoch"] > 4
    assert coarse["shapes"] < fine["shapes"] and coarse["extra_frames"] > fine["extra_frames"] >= 0
    items["u3"] = {"tokens": [1]}
    manifest.write_text(json.dumps(items))
    out = run_bench(["bench/padded_shapes.py", "--manifest", str(manifest)], tmp_path)
    assert out.returncode == 1 and "item 'u3' has no duration and tokens" in out.stderr.strip().splitlines()[-1]
