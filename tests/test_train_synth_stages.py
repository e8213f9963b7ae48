"""Stages 3 (CAM++), 5 (train A) and 8 (synthesize) of the mini recipe on a
tiny corpus, through the recipe driver: training conditioned on CAM++
speaker means (the mini default), checkpoints, wavs that are finite,
non-silent and as long as their durations say, the held-out speakers
synthesized zero-shot from one reference recording each, and idempotent
reruns."""

import json

import numpy as np
import soundfile as sf

from tests.test_recipe_driver import _flags, run


def test_train_a_then_synthesize(tmp_path):
    hp = dict(exp_root=tmp_path / "exp", data_folder=tmp_path / "mini", mini_speakers=3,
              mini_utts_per_speaker=5, heldout_speakers="[spk2]", n_valid=1, n_test=2, tag="t",
              number_of_epochs=1, batch_size=4, synth_batch_size=2, nj=1)
    prep = run("--stage", 0, "--stop_stage", 3, *_flags(**hp))
    assert prep.returncode == 0, prep.stderr[-2000:]
    out = run("--stage", 5, "--stop_stage", 8, *_flags(**hp))
    assert out.returncode == 0, out.stderr[-3000:]
    exp = tmp_path / "exp" / "mini" / "t"
    assert (exp / "stage_A" / "done").is_file()
    assert list((exp / "stage_A" / "save").glob("CKPT+*"))
    done = json.loads((exp / "stage_A" / "done").read_text())["settings"]
    meta = json.loads((exp / "spk_emb" / "meta.json").read_text())
    assert done["speaker_mode"] == "speaker" and done["n_speakers"] == 0
    assert done["spk_embed_dim"] == meta["embed_dim"] == 192

    unseen = json.loads((exp / "tokens" / "test_unseen.json").read_text())
    for split, n_utts in (("test", 2), ("test_unseen", len(unseen))):
        synth = exp / "synth" / "A" / split
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
    references = json.loads((exp / "synth" / "A" / "test_unseen" / "references.json").read_text())
    assert {r["reference_utt"] for r in references.values()} == {min(unseen)}
    assert {r["spk"] for r in references.values()} == {"spk2"}

    again = run("--stage", 5, "--stop_stage", 8, *_flags(**hp))
    assert again.returncode == 0
    assert again.stdout.count("skipped: already done") == 2
