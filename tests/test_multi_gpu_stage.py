"""run.sh --ngpu N: a training stage in N processes under torchrun (SpeechBrain's
DDP), here two CPU processes (over gloo, which a CPU device gets) on a tiny
mini corpus; and --ngpu's checks."""

import json

import pytest

from tests.test_recipe_driver import _flags, run


@pytest.mark.parametrize("value", ["0", "two", "-1", "1000"])
def test_ngpu_takes_a_positive_count(value):
    out = run("--stage", 5, "--stop_stage", 5, "--ngpu", value)
    assert out.returncode == 2 and out.stderr.startswith("error: --ngpu takes a number of processes")


def test_stage_a_in_two_processes_then_forced_again(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    hp = dict(exp_root=tmp_path / "exp", data_folder=tmp_path / "mini", mini_speakers=3,
              mini_utts_per_speaker=5, heldout_speakers="[spk2]", n_valid=1, n_test=2, tag="t",
              number_of_epochs=1, batch_size=2, nj=1, speaker_mode="sid")
    prep = run("--stage", 0, "--stop_stage", 2, *_flags(**hp))
    assert prep.returncode == 0, prep.stderr[-2000:]
    ddp = ["--ngpu", 2, "--device", "cpu", "--noprogressbar"]  # (gloo, not NCCL, for a CPU device)
    exp = tmp_path / "exp" / "mini" / "t" / "stage_A"
    for attempt in ("first", "forced"):
        out = run("--stage", 5, "--stop_stage", 5, *ddp, *_flags(**hp), *(["--force"] if attempt == "forced" else []))
        assert out.returncode == 0, out.stderr[-3000:]
        assert "stage 5: train stage A (2 processes)" in out.stdout
        # the main process alone logs, sets earlier checkpoints aside and writes the marker
        assert out.stdout.count("(stage 5 train A) started") == 1, out.stdout
        done = json.loads((exp / "done").read_text())
        assert done["summary"] == {"epochs": 1} and done["settings"]["speaker_mode"] == "sid"
        assert done["settings"]["processes"] == 2  # batch_size is per process
        assert len(list((exp / "save").glob("CKPT+*"))) == 1
    assert len(list(exp.glob("save.before-*"))) == 1
    assert "training starts afresh" in out.stdout
