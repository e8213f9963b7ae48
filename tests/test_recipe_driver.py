"""The shared recipe driver (recipes/stages.sh) through recipes/mini/run.sh:
stage selection, --help, flag checking, overrides reaching Python, and
idempotent stages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "mini" / "run.sh"


def run(*args, cwd=ROOT):
    env = {**os.environ, "SEMTTS_PYTHON": sys.executable}
    return subprocess.run(["bash", str(RUN), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_help_lists_every_stage():
    out = run("--help")
    assert out.returncode == 0
    for number, name in [(0, "corpus check"), (1, "data preparation"), (2, "text frontend"),
                         (5, "train stage A"), (10, "pack the model")]:
        assert f"{number:>2}  {name}" in out.stdout


def test_unknown_flag_fails_naming_the_valid_ones():
    out = run("--stage", "1", "--stop_stage", "1", "--n_tset", "3")
    assert out.returncode != 0
    assert "unknown flag(s) --n_tset" in out.stderr
    assert "--n_test" in out.stderr and "--stop_stage" in out.stderr


@pytest.mark.parametrize("args", [["--stage", "x"], ["--stop_stage", "11"], ["--stage", "08"], ["stray"], ["--tag"]])
def test_bad_driver_arguments_fail(args):
    out = run(*args)
    assert out.returncode == 2
    assert "error:" in out.stderr


def _flags(**overrides):
    return [str(x) for key, value in overrides.items() for x in (f"--{key}", value)]


def test_stages_0_to_2_then_skip_and_overrides(tmp_path):
    hp = dict(exp_root=tmp_path / "exp", data_folder=tmp_path / "mini", mini_speakers=3,
              mini_utts_per_speaker=4, heldout_speakers="[spk2]", n_valid=1, n_test=1, tag="t1")
    first = run("--stage", 0, "--stop_stage", 2, *_flags(**hp))
    assert first.returncode == 0, first.stderr + first.stdout
    exp = tmp_path / "exp" / "mini" / "t1"  # --exp_root and --tag reached the Python side
    for split in ("train", "valid", "test", "test_unseen"):
        manifest = json.loads((exp / "data" / f"{split}.json").read_text())
        tokens = json.loads((exp / "tokens" / f"{split}.json").read_text())
        assert manifest and set(manifest) == set(tokens)
        assert all(item["tokens"] for item in tokens.values())
    unseen = json.loads((exp / "data" / "test_unseen.json").read_text())
    assert {item["spk"] for item in unseen.values()} == {"spk2"}
    assert json.loads((exp / "data" / "report.json").read_text())["kept"] == 12
    assert (exp / "tokens" / "tokens.txt").read_text().splitlines()[:3] == ["<pad>", "<blank>", "<unk>"]

    second = run("--stage", 1, "--stop_stage", 2, *_flags(**hp))
    assert second.returncode == 0
    assert second.stdout.count("skipped: already done") == 2

    changed = run("--stage", 1, "--stop_stage", 1, *_flags(**{**hp, "n_test": 2}))
    assert changed.returncode == 1
    assert "other settings (n_test)" in changed.stderr

    forced = run("--stage", 1, "--stop_stage", 1, "--force", *_flags(**{**hp, "n_test": 2}))
    assert forced.returncode == 0, forced.stderr
    assert len(json.loads((exp / "data" / "test.json").read_text())) == 2


@pytest.mark.parametrize("args, message", [
    (["--batch_size", "abc"], "error: --batch_size: expected an integer, got 'abc'"),
    (["--sample_rate", "16000.5"], "error: --sample_rate: expected an integer, got '16000.5'"),
    (["--min_duration=abc"], "error: --min_duration: expected a number, got 'abc'"),
    (["--heldout_speakers", "spk4"], "error: --heldout_speakers: expected a list, e.g. [spk4], got 'spk4'"),
    (["--corpus_options", "{speakers:[spk7]}"], "error: --corpus_options: cannot read '{speakers:[spk7]}' as YAML"),
])
def test_a_value_of_the_wrong_type_fails_before_any_stage(args, message, tmp_path):
    out = run("--stage", 0, "--stop_stage", 0, "--exp_root", tmp_path / "exp", "--data_folder", tmp_path / "mini", *args)
    assert out.returncode == 2, out.stdout
    assert out.stderr.startswith(message) and out.stderr.count("\n") == 1
    assert "stage 0" not in out.stdout and not (tmp_path / "mini").exists()  # nothing ran


@pytest.mark.parametrize("args", [["--stage", "5", "--stop_stage", "2"], ["--stage=3", "--stop_stage=1"]])
def test_an_inverted_stage_range_fails(args):
    out = run(*args)
    assert out.returncode == 2
    assert out.stderr.startswith("error: --stage") and "--stop_stage" in out.stderr and out.stderr.count("\n") == 1
    assert "done" not in out.stdout


def test_stage_and_stop_stage_take_the_equals_form(tmp_path):
    out = run("--stage=0", "--stop_stage=0", "--data_folder", tmp_path / "mini", "--exp_root", tmp_path / "exp",
              "--mini_speakers=1", "--mini_utts_per_speaker", 1)
    assert out.returncode == 0, out.stderr
    assert "stage 0: corpus check" in out.stdout and "done: stages 0 to 0" in out.stdout
    assert "stage 1" not in out.stdout and len(list((tmp_path / "mini").rglob("*.wav"))) == 1
    bad = run("--stage=x")
    assert bad.returncode == 2 and "got 'x'" in bad.stderr


def test_switches_are_speechbrains_on_off_run_options():
    # stages.sh passes these without a value: they must be exactly SpeechBrain's boolean run options
    import re

    from speechbrain.utils.run_opts import RunOptions

    text = (ROOT / "recipes" / "stages.sh").read_text()
    listed = set(re.search(r'RUN_SWITCHES="([^"]*)"', text).group(1).split())
    assert listed == {key for key, value in RunOptions().as_dict().items() if value is False}
    out = run("--noprogressbar", "--stage", 5, "--stop_stage", 2)  # parsed as a switch: the next check speaks
    assert out.returncode == 2 and "--stage 5 is after --stop_stage 2" in out.stderr
