"""run.sh --ngpu N: a training stage in N processes under torchrun (SpeechBrain's
DDP), here two CPU processes (over gloo, which a CPU device gets) on a tiny
mini corpus; --ngpu's checks; and the launcher's one-line failures."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.test_recipe_driver import ROOT, _flags, run

FAILING_STAGE = """
import os, sys
from semtts.errors import ConfigError, entry_point

@entry_point
def main():
    if os.environ["RANK"] == "1" or sys.argv[1] == "everywhere":
        if sys.argv[2] == "semtts":
            raise ConfigError("--foo: bad value")
        print("some output", file=sys.stderr)
        raise RuntimeError("boom in process " + os.environ["RANK"])
    return 0

main()
"""


def launch(tmp_path, *args):
    (tmp_path / "failing_stage.py").write_text(textwrap.dedent(FAILING_STAGE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "semtts.stages.launch", "--nproc", "2", "--log_dir", str(tmp_path / "logs"),
               "failing_stage", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_launcher_names_the_process_that_failed_in_one_line(tmp_path):
    out = launch(tmp_path, "rank1", "python")
    assert out.returncode == 1
    line = f"error: process 1 of 2 exited with status 1: RuntimeError: boom in process 1 (its output: {tmp_path}/logs/"
    assert out.stderr.startswith(line) and out.stderr.endswith("/attempt_0/1/stderr.log)\n"), out.stderr
    assert out.stderr.count("\n") == 1  # neither torchrun's report nor process 1's traceback


def test_launcher_names_a_process_that_reported_an_error(tmp_path):
    out = launch(tmp_path, "rank1", "semtts")
    assert out.returncode == 2  # as a single-process stage exits on an error of the user's
    line = f"error: process 1 of 2 exited with status 2: --foo: bad value (its output: {tmp_path}/logs/"
    assert out.stderr.startswith(line) and out.stderr.count("\n") == 1, out.stderr


def test_launcher_prints_an_error_of_every_process_once(tmp_path):
    out = launch(tmp_path, "everywhere", "semtts")
    assert (out.returncode, out.stderr) == (2, "error: --foo: bad value\n")
    logs = list((tmp_path / "logs").glob("*/attempt_0/1/stderr.log"))
    assert len(logs) == 1 and logs[0].read_text() == "error: --foo: bad value\n"  # process 1's, kept in its file


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
        logs = tmp_path / "exp/mini/t/ddp_logs/stage_5"
        assert f"stage 5: train stage A (2 processes; process 1 writes to {logs})" in out.stdout
        # the main process alone logs, sets earlier checkpoints aside and writes the marker
        assert out.stdout.count("(stage 5 train A) started") == 1, out.stdout
        done = json.loads((exp / "done").read_text())
        assert done["summary"] == {"epochs": 1} and done["settings"]["speaker_mode"] == "sid"
        assert done["settings"]["processes"] == 2  # batch_size is per process
        assert len(list((exp / "save").glob("CKPT+*"))) == 1
    assert len(list(exp.glob("save.before-*"))) == 1
    assert "training starts afresh" in out.stdout
    assert len(list(logs.glob("*/attempt_0/1/stderr.log"))) == 2  # process 1's, of both runs

    out = run("--stage", 5, "--stop_stage", 5, *ddp, *_flags(**hp), "--grad_accumulation_factor", 2)
    assert out.returncode == 1
    assert out.stderr.startswith("error: --grad_accumulation_factor 2: not supported")
    assert out.stderr.count("\n") == 1, out.stderr  # once, not once per process


def test_stages_b_and_c_in_two_processes(tmp_path, monkeypatch):
    # the semantic stages under DDP: teacher features on both processes, the previous stage's
    # checkpoint loaded by each, and SemPred / the adapter in the synchronised gradients
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    hp = dict(exp_root=tmp_path / "exp", data_folder=tmp_path / "mini", mini_speakers=3,
              mini_utts_per_speaker=4, heldout_speakers="[spk2]", n_valid=1, n_test=1, tag="t",
              number_of_epochs=1, batch_size=2, nj=1)
    prep = run("--stage", 0, "--stop_stage", 5, "--noprogressbar", *_flags(**hp))
    assert prep.returncode == 0, prep.stderr[-3000:]
    out = run("--stage", 6, "--stop_stage", 7, "--ngpu", 2, "--device", "cpu", "--noprogressbar", *_flags(**hp))
    assert out.returncode == 0, out.stderr[-3000:]
    exp = tmp_path / "exp" / "mini" / "t"
    for number, stage in (("6", "B"), ("7", "C")):
        assert f"stage {number}: train stage {stage} (2 processes; process 1 writes to" in out.stdout
        done = json.loads((exp / f"stage_{stage}" / "done").read_text())
        assert done["settings"]["processes"] == 2 and done["settings"]["previous_stage"]
        assert len(list((exp / f"stage_{stage}" / "save").glob("CKPT+*"))) == 1
        logs = list((exp / "ddp_logs" / f"stage_{number}").glob("*/attempt_0/1/stderr.log"))
        assert len(logs) == 1 and "Traceback" not in logs[0].read_text()
    generator = torch.load(next((exp / "stage_C" / "save").glob("CKPT+*")) / "generator.ckpt", weights_only=True)
    assert any(key.startswith("adapter.") for key in generator) and any(key.startswith("sempred.") for key in generator)
