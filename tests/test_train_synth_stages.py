"""Stages 3 (CAM++), 4 (Whisper teacher), 5, 6, 7 (train A, B, C) and 8
(synthesize with A, B and C), 9 (evaluate) and 10 (pack) of the mini recipe on a tiny corpus, through the recipe
driver: training conditioned on CAM++ speaker means (the mini default), B
starting from A and C from B, checkpoints, stage 8 run with Whisper made
unimportable (a stage-C model synthesizes from the student), wavs that are
finite, non-silent and as long as their durations say, the held-out speakers
synthesized zero-shot from one reference recording each, and idempotent
reruns."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from semtts.data.manifest import resolve_audio_path
from tests.test_recipe_driver import ROOT, _flags, run

NO_WHISPER = "import sys; sys.modules['whisper'] = None; from semtts.stages.synthesize import main; main()"


def test_train_a_b_c_then_synthesize(tmp_path):
    hp = dict(exp_root=tmp_path / "exp", data_folder=tmp_path / "mini", mini_speakers=3,
              mini_utts_per_speaker=5, heldout_speakers="[spk2]", n_valid=1, n_test=2, tag="t",
              number_of_epochs=1, batch_size=4, synth_batch_size=2, nj=1)
    prep = run("--stage", 0, "--stop_stage", 4, *_flags(**hp))
    assert prep.returncode == 0, prep.stderr[-2000:]
    exp = tmp_path / "exp" / "mini" / "t"
    # a training wav spoilt after preparation is skipped and named; training goes on
    train_items = json.loads((exp / "tokens" / "train.json").read_text())
    spoilt = Path(resolve_audio_path(train_items[sorted(train_items)[0]]["wav"], tmp_path / "mini",
                                     exp / "data" / "audio_cache"))
    spoilt.write_bytes(b"not audio at all")
    out = run("--stage", 5, "--stop_stage", 7, *_flags(**hp))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{spoilt}: cannot read audio" in out.stdout + out.stderr and "the item is skipped" in out.stdout + out.stderr
    assert "stage_A/save/CKPT+" in out.stdout and "new (fresh): sempred" in out.stdout
    assert "stage_B/save/CKPT+" in out.stdout and "new (fresh): adapter" in out.stdout
    for stage in "ABC":
        assert (exp / f"stage_{stage}" / "done").is_file()
        assert list((exp / f"stage_{stage}" / "save").glob("CKPT+*"))
    done = json.loads((exp / "stage_A" / "done").read_text())["settings"]
    meta = json.loads((exp / "spk_emb" / "meta.json").read_text())
    assert done["speaker_mode"] == "speaker" and done["n_speakers"] == 0
    assert done["spk_embed_dim"] == meta["embed_dim"] == 192
    done_c = json.loads((exp / "stage_C" / "done").read_text())["settings"]
    teacher_meta = json.loads((exp / "teacher" / "meta.json").read_text())
    assert done_c["sem_dim"] == teacher_meta["dim"] and done_c["use_adapter"] is True
    assert "sem" in (exp / "stage_C" / "log" / "train_log.txt").read_text()

    # stage 8 (every trained stage: A, B and C) with Whisper unimportable
    synth = subprocess.run([sys.executable, "-c", NO_WHISPER, "recipes/mini/hparams/corpus.yaml",
                            *_flags(**hp)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert synth.returncode == 0, synth.stderr[-3000:]

    unseen = json.loads((exp / "tokens" / "test_unseen.json").read_text())
    for split, n_utts in (("test", 2), ("test_unseen", len(unseen))):
        synth = exp / "synth" / "C" / split
        durations = json.loads((synth / "durations.json").read_text())
        assert len(durations) == n_utts, split
        for utt_id, info in durations.items():
            audio, sr = sf.read(synth / f"{utt_id}.wav")
            assert sr == 22050
            assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3
            assert len(audio) == info["n_samples"] == sum(info["durations"]) * 256
            assert all(d >= 0 for d in info["durations"])
        references = json.loads((synth / "references.json").read_text())
        assert set(references) == set(durations)
        assert json.loads((synth / "report.json").read_text())["references"] == {
            "train_mean" if split == "test" else "first_utterance": n_utts}

    # zero-shot: every held-out utterance conditioned on spk2's first recording by id
    references = json.loads((exp / "synth" / "C" / "test_unseen" / "references.json").read_text())
    assert {r["reference_utt"] for r in references.values()} == {min(unseen)}
    assert {r["spk"] for r in references.values()} == {"spk2"}

    for stage in "AB":
        assert (exp / "synth" / stage / "test" / "durations.json").is_file()

    # settings that cannot change the trained weights do not stop a finished stage (nor do they retrain it)
    again = run("--stage", 5, "--stop_stage", 8, *_flags(**{**hp, "nj": 2, "pack_stage": "B", "log_interval": 5}))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped: already done") == 6
    changed = run("--stage", 5, "--stop_stage", 5, *_flags(**{**hp, "lr": 0.001}))
    assert changed.returncode == 1 and "other settings (lr)" in changed.stderr

    # stages 9 (evaluate A, B, C side by side) and 10 (pack C)
    final = run("--stage", 9, "--stop_stage", 10, *_flags(**hp, eval_max_utterances=1))
    assert final.returncode == 0, final.stderr[-3000:]
    assert "| split | metric | A | B | C |" in (exp / "eval" / "results.md").read_text()
    assert (exp / "packed" / "hyperparams.yaml").is_file() and (exp / "packed" / "MODEL_CARD.md").is_file()

    # stage A again: more epochs continue from the last checkpoint; --force trains afresh, keeping the old ones
    more = run("--stage", 5, "--stop_stage", 5, *_flags(**{**hp, "number_of_epochs": 2}))
    assert more.returncode == 0, more.stderr[-3000:]
    assert "continuing from epoch 1 to 2" in more.stdout and "skipped" not in more.stdout
    assert json.loads((exp / "stage_A" / "done").read_text())["summary"]["epochs"] == 2
    kept = sorted(p.name for p in (exp / "stage_A" / "save").glob("CKPT+*"))
    fresh = run("--stage", 5, "--stop_stage", 5, "--force", *_flags(**hp))
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    aside = list((exp / "stage_A").glob("save.before-*"))
    assert len(aside) == 1 and sorted(p.name for p in aside[0].glob("CKPT+*")) == kept
    assert "training starts afresh" in fresh.stdout and list((exp / "stage_A" / "save").glob("CKPT+*"))
