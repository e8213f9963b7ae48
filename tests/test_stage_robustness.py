"""Stage robustness: the shared mini corpus is never silently regenerated and
stage 1 notices when it was; stages 2 and 8 drop splits they no longer make
(and stage 9 ignores an earlier run's); a finished training stage compares
only settings that can change its weights; an empty or corrupt ``done``
marker is a one-line error."""

import json
import shutil
from pathlib import Path

import pytest

from semtts.errors import ConfigError
from semtts.stages import check_corpus, evaluate, frontend, prepare, train
from semtts.stages.common import load_stage_hparams, read_done, run_stage
from semtts.stages.synthesize import remove_stale_splits

ROOT = Path(__file__).resolve().parents[1]
MINI = "recipes/mini/hparams/corpus.yaml"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name their included files from the repository root


def _stage(main, tmp_path, capsys, *flags) -> tuple[int, str, str]:
    """Run a stage entry point in-process: (exit status, stdout, stderr)."""
    argv = [MINI, "--exp_root", str(tmp_path / "exp"), "--data_folder", str(tmp_path / "mini"),
            "--mini_speakers", "2", "--n_valid", "1", "--n_test", "1", "--nj", "1", *map(str, flags)]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


# ---------------------------------------------------------------- 1. the shared mini corpus
@needs_espeak
def test_mini_corpus_is_not_regenerated_silently_and_stage_1_notices(tmp_path, capsys):
    utts = ("--mini_utts_per_speaker", 4)
    assert _stage(check_corpus.main, tmp_path, capsys, *utts)[0] == 0
    assert _stage(prepare.main, tmp_path, capsys, *utts, "--heldout_speakers", "[spk1]")[0] == 0
    code, out, _ = _stage(check_corpus.main, tmp_path, capsys, *utts)  # the default rerun: reused, idempotent
    assert code == 0 and "mini corpus reused" in out
    wavs = {p: p.stat().st_mtime_ns for p in (tmp_path / "mini").rglob("*.wav")}

    code, _, err = _stage(check_corpus.main, tmp_path, capsys, "--mini_utts_per_speaker", 5)
    assert code == 2 and err.count("\n") == 1 and str(tmp_path / "mini") in err
    assert "utts_per_speaker 4 -> 5" in err and f"--data_folder {tmp_path / 'mini'}_5utt" in err and "--force" in err
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "mini").rglob("*.wav")} == wavs  # nothing touched

    code, out, _ = _stage(check_corpus.main, tmp_path, capsys, "--mini_utts_per_speaker", 5, "--force")
    assert code == 0 and "regenerating" in out and len(list((tmp_path / "mini").rglob("*.wav"))) == 10
    # stage 1 no longer reuses manifests of the old corpus: its settings hold the corpus's .complete marker
    code, out, err = _stage(prepare.main, tmp_path, capsys, "--mini_utts_per_speaker", 5,
                            "--heldout_speakers", "[spk1]")
    assert code == 2 and "skipped" not in out and "other settings (corpus_generation)" in err
    code, _, _ = _stage(prepare.main, tmp_path, capsys, "--force", "--heldout_speakers", "[spk1]")
    assert code == 0 and len(json.loads((tmp_path / "exp" / "mini" / "default" / "data" / "test_unseen.json")
                                        .read_text())) == 5
    # a marker written before stage 1 recorded the generation still counts as done
    marker = tmp_path / "exp" / "mini" / "default" / "data" / "done"
    done = json.loads(marker.read_text())
    del done["settings"]["corpus_generation"]
    marker.write_text(json.dumps(done))
    code, out, _ = _stage(prepare.main, tmp_path, capsys, "--mini_utts_per_speaker", 5, "--heldout_speakers", "[spk1]")
    assert code == 0 and "skipped: already done" in out

    # a moved corpus: stage 1 says its manifests still hold instead of a bare "other settings"
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "mini", moved)
    with pytest.raises(SystemExit) as exit_:
        prepare.main([MINI, "--exp_root", str(tmp_path / "exp"), "--data_folder", str(moved), "--mini_speakers", "2",
                      "--n_valid", "1", "--n_test", "1", "--nj", "1", "--heldout_speakers", "[spk1]"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"not {moved}" in err and "only moved they still hold" in err


# ---------------------------------------------------------------- 2. splits no longer made
@needs_espeak
def test_stage_2_removes_a_split_stage_1_no_longer_makes(tmp_path, capsys):
    flags = ("--mini_utts_per_speaker", 3)
    tokens = tmp_path / "exp" / "mini" / "default" / "tokens"
    assert _stage(check_corpus.main, tmp_path, capsys, *flags)[0] == 0
    assert _stage(prepare.main, tmp_path, capsys, *flags, "--heldout_speakers", "[spk1]")[0] == 0
    assert _stage(frontend.main, tmp_path, capsys, *flags)[0] == 0
    assert (tokens / "test_unseen.json").is_file()
    assert _stage(prepare.main, tmp_path, capsys, *flags, "--heldout_speakers", "[]", "--force")[0] == 0
    code, out, err = _stage(frontend.main, tmp_path, capsys, *flags, "--force")
    assert code == 0, err
    assert not (tokens / "test_unseen.json").exists() and f"removed {tokens / 'test_unseen.json'}" in out
    assert sorted(p.stem for p in tokens.glob("*.json")) == ["report", "test", "train", "valid"]


def test_stage_8_removes_and_stage_9_ignores_an_earlier_runs_splits(tmp_path, capsys):
    synth = tmp_path / "synth" / "A"
    for split in ("test", "test_unseen"):
        (synth / split).mkdir(parents=True)
        (synth / split / "report.json").write_text("{}")
    (synth / "done").write_text(json.dumps({"settings": {}, "summary": {"test": {"utterances": 2}}}))
    assert evaluate.synthesized_splits(tmp_path) == {"A": ["test"]}
    assert f"{synth / 'test_unseen'}: not synthesized by stage 8's last run" in capsys.readouterr().out
    (synth / "done").write_text(json.dumps({"settings": {}}))  # a marker without a summary: every split folder
    assert evaluate.synthesized_splits(tmp_path) == {"A": ["test", "test_unseen"]}
    assert remove_stale_splits(synth, {"test"}) == ["test_unseen"]
    assert sorted(p.name for p in synth.iterdir()) == ["done", "test"]
    assert remove_stale_splits(tmp_path / "nothing", set()) == []
    (synth / "done").write_text("")
    with pytest.raises(ConfigError, match=r"synth/A/done: empty or not a done marker .*rerun stage 8"):
        evaluate.synthesized_splits(tmp_path)


# ---------------------------------------------------------------- 3. what a training stage compares
def _training_settings(**overrides) -> dict:
    extra = {"n_vocab": 40, "n_speakers": 0, "spk_embed_dim": 192}
    hp = load_stage_hparams(MINI, overrides, include=("model_hparams", "train_A_hparams"), extra=extra)
    return train.training_settings(hp, extra, {"token_type": "phn", "manifests_sha256": "abc"})


def test_a_finished_training_stage_compares_only_training_settings(tmp_path):
    runs = []

    def body():
        runs.append(1)
        return {"epochs": 10}

    def again(**overrides):
        return run_stage("5 train A", tmp_path, _training_settings(**overrides), body, ignore=train.NOT_TRAINING)

    assert again() and len(runs) == 1
    unrelated = dict(pack_stage="B", nj=8, num_workers=2, log_interval=5, synth_splits=["test"], eval_max_utterances=3,
                     exp_root=str(tmp_path / "elsewhere"), data_folder="/moved/mini", number_of_epochs=20)
    for key, value in unrelated.items():
        assert again(**{key: value}) is False, key
    assert again(**unrelated) is False and len(runs) == 1
    for key, value in [("lr", 0.001), ("hidden_channels", 96), ("batch_size", 4), ("seed", 7)]:
        with pytest.raises(ConfigError, match=rf"other settings \({key}\); rerun the stage with --force"):
            again(**{key: value})
    recorded = read_done(tmp_path / "done")["settings"]
    assert recorded["pack_stage"] == "C" and recorded["nj"] == 2  # recorded, only not compared
    # a marker written before (all plain hparams but number_of_epochs) still matches
    old = {k: v for k, v in recorded.items() if k != "number_of_epochs"} | {"nj": 1, "pack_stage": "A"}
    (tmp_path / "done").write_text(json.dumps({"settings": old, "summary": {"epochs": 10}}))
    assert again() is False and len(runs) == 1


def test_non_training_keys_exist_in_the_recipe_files():
    from semtts.stages.flags import recipe_keys

    keys = set(recipe_keys(MINI))
    assert train.NOT_TRAINING <= keys, sorted(train.NOT_TRAINING - keys)


# ---------------------------------------------------------------- 4. empty or corrupt done markers
@pytest.mark.parametrize("text", ["", "not json", "[]", '{"summary": {}}', "\xff"])
def test_an_empty_or_corrupt_done_marker_is_one_line(tmp_path, text):
    (tmp_path / "done").write_text(text, encoding="latin-1")
    ran = []
    with pytest.raises(ConfigError) as err:
        run_stage("2 text frontend", tmp_path, {"a": 1}, lambda: ran.append(1))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'done'}: empty or not a done marker semtts wrote")
    assert message.endswith("rerun the stage with --force") and "\n" not in message and not ran
    assert run_stage("2 text frontend", tmp_path, {"a": 1}, lambda: ran.append(1), force=True) and ran == [1]
    assert read_done(tmp_path / "done")["settings"] == {"a": 1}


def test_a_corrupt_upstream_marker_names_the_stage_to_redo(tmp_path):
    (tmp_path / "done").write_text("")
    with pytest.raises(ConfigError, match=r"rerun stage 2 \(text frontend\) with --force$"):
        read_done(tmp_path / "done", "stage 2 (text frontend)")
