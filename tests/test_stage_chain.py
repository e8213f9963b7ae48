"""The chain of training stages A -> B -> C, without training: a stage notices
when the stage it started from was retrained (finished: asks for --force;
unfinished: does not resume), only the stage's new modules may start fresh,
a finished stage ignores the keys of modules it does not build, and the
teacher features must come from the current stage-2 manifests."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from semtts.data.manifest import write_json_atomic
from semtts.data.teacher_features import TeacherFeatures
from semtts.errors import ConfigError, DataError
from semtts.lobes.vits.semantic_vits import SemanticVITS
from semtts.lobes.vits.synthesizer import VITSSynthesizer
from semtts.stages import train as train_module
from semtts.stages.train import init_from_previous_stage, train

ROOT = Path(__file__).resolve().parents[1]
MINI = "recipes/mini/hparams/corpus.yaml"
TINY = dict(n_vocab=10, spec_channels=9, segment_frames=4, inter_channels=4, hidden_channels=8, filter_channels=16,
            n_heads=2, n_layers=1, kernel_size=3, p_dropout=0.0, resblock="2", resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]], upsample_rates=[4, 2], upsample_initial_channel=16,
            upsample_kernel_sizes=[8, 4], posterior_n_layers=1, flow_n_layers=1, sdp_filter_channels=8,
            gin_channels=8)


def _finish(root: Path, stage: str, generator: torch.nn.Module, discriminator: torch.nn.Module) -> None:
    """A finished stage: one checkpoint and a done marker (a retraining sets the old checkpoints aside)."""
    save = root / f"stage_{stage}" / "save"
    if save.is_dir():
        save.rename(save.with_name(f"save.before-{len(list(save.parent.iterdir()))}"))
    Checkpointer(save, {"generator": generator, "discriminator": discriminator}).save_checkpoint()
    write_json_atomic(root / f"stage_{stage}" / "done", {"settings": {}})


def _hp(root: Path, stage: str) -> dict:
    return {"output_folder": str(root), "save_folder": str(root / f"stage_{stage}" / "save")}


# ---------------------------------------------------------------- only the new modules start fresh
def test_parameters_missing_outside_the_new_modules_stop_the_transition(tmp_path):
    disc = torch.nn.Sequential(torch.nn.Linear(3, 3))
    _finish(tmp_path, "A", VITSSynthesizer(**TINY), disc)  # A: no speaker conditioning
    conditioned = SemanticVITS(VITSSynthesizer(**TINY, spk_embed_dim=6), sem_dim=6, sempred_hidden=8)
    with pytest.raises(ConfigError, match=r"lacks 21 parameter\(s\) .*\(decoder\.cond\.bias, .*speaker_mode") as err:
        init_from_previous_stage(_hp(tmp_path, "B"), "B", conditioned, disc)
    assert "\n" not in str(err.value) and "sempred" not in str(err.value)
    plain = SemanticVITS(VITSSynthesizer(**TINY), sem_dim=6, sempred_hidden=8)
    bigger = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))  # the discriminator has nothing new
    with pytest.raises(ConfigError, match=r"lacks 2 parameter\(s\) .*\(1\.bias, 1\.weight\)"):
        init_from_previous_stage(_hp(tmp_path, "B"), "B", plain, bigger)
    assert init_from_previous_stage(_hp(tmp_path, "B"), "B", plain, disc)  # only sempred is new


# ---------------------------------------------------------------- an unfinished stage: resume or refuse
def test_an_unfinished_stage_does_not_resume_on_a_retrained_previous_stage(tmp_path):
    disc = torch.nn.Linear(3, 3)
    _finish(tmp_path, "A", VITSSynthesizer(**TINY), disc)
    model_b = SemanticVITS(VITSSynthesizer(**TINY), sem_dim=6, sempred_hidden=8)
    hp = _hp(tmp_path, "B")
    started = init_from_previous_stage(hp, "B", model_b, disc)
    record = json.loads((Path(hp["save_folder"]) / "started_from.json").read_text())
    assert record["stage"] == "A" and started.endswith(record["checkpoint"])
    Checkpointer(hp["save_folder"], {"generator": model_b}).save_checkpoint()  # B interrupted after a checkpoint
    assert init_from_previous_stage(hp, "B", model_b, disc) is None  # same A: resumes
    _finish(tmp_path, "A", VITSSynthesizer(**TINY), disc)  # A retrained (--force)
    with pytest.raises(ConfigError, match=r"started_from\.json: stage A was retrained since stage B started from it "
                                          r".*rerun stage B with --force") as err:
        init_from_previous_stage(hp, "B", model_b, disc)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- finished stages, through train()
@pytest.fixture
def fake_training(tmp_path, monkeypatch):
    """``train(stage, flags)`` of the mini recipe with nothing read, built or
    trained: the done markers are real; returns the stages whose body ran."""
    monkeypatch.chdir(ROOT)  # recipes name their included files from the repository root
    out = tmp_path / "exp" / "mini" / "default"
    write_json_atomic(out / "tokens" / "done", {"settings": {"token_type": "phn"}})
    extra = {"n_vocab": 40, "n_speakers": 0, "spk_embed_dim": 0}
    monkeypatch.setattr(train_module, "load_speaker_vectors", lambda hp: None)
    monkeypatch.setattr(train_module, "model_sizes", lambda *args: (extra, {}))
    monkeypatch.setattr(train_module, "with_teacher", lambda *args: set())
    monkeypatch.setattr(train_module, "build_generator", lambda *args: None)
    monkeypatch.setattr(TeacherFeatures, "load", classmethod(lambda cls, hp: cls(out / "teacher", {"dim": 4})))
    ran, real_run_stage = [], train_module.run_stage

    def run_stage(name, out_dir, settings, body, force=False, ignore=()):
        def fake_body():
            ran.append(name.split()[-1])
            _finish(out, name.split()[-1], torch.nn.Linear(1, 1), torch.nn.Linear(1, 1))
            return {"epochs": settings["number_of_epochs"]}
        return real_run_stage(name, out_dir, settings, fake_body, force=force, ignore=ignore)

    monkeypatch.setattr(train_module, "run_stage", run_stage)

    def run(stage, *flags):
        before = len(ran)
        train(stage, [MINI, "--exp_root", str(tmp_path / "exp"), "--speaker_mode", "sid", *map(str, flags)])
        return ran[before:]

    run.out = out
    return run


def test_a_finished_stage_asks_for_force_after_its_previous_stage_was_retrained(fake_training):
    assert fake_training("A") == ["A"] and fake_training("B") == ["B"] and fake_training("C") == ["C"]
    assert fake_training("C") == []  # nothing changed: skipped
    assert fake_training("B", "--force") == ["B"]  # B retrained, same settings
    with pytest.raises(ConfigError, match=r"stage_C/done: stage B was retrained since stage C started from it .*"
                                          r"rerun stage C with --force") as err:
        fake_training("C")
    assert "\n" not in str(err.value)
    assert fake_training("C", "--force") == ["C"] and fake_training("C") == []


def test_a_done_marker_of_older_semtts_is_logged_as_unchecked(fake_training, capsys):
    fake_training("A"), fake_training("B")
    marker = fake_training.out / "stage_B" / "done"
    done = json.loads(marker.read_text())
    del done["settings"]["previous_stage"]
    marker.write_text(json.dumps(done))
    assert fake_training("B") == []
    assert "does not record which checkpoint of stage A it started from: not checked" in capsys.readouterr().out


def test_a_finished_stage_ignores_the_keys_of_modules_it_does_not_build(fake_training):
    from semtts.stages.flags import recipe_keys

    assert train_module.SEMANTIC_ONLY <= set(recipe_keys(MINI)), train_module.SEMANTIC_ONLY - set(recipe_keys(MINI))
    assert fake_training("A") == ["A"] and fake_training("B") == ["B"]
    adapter_only = ["--p_teacher_start", 0.5, "--p_teacher_end", 0.1, "--p_teacher_steps", 7, "--detach_student",
                    True, "--adapter_heads", 2, "--adapter_dropout", 0.0, "--adapter_gate_init", 0.5]
    assert fake_training("B", *adapter_only) == []  # stage C's tuning leaves a finished B
    assert fake_training("A", *adapter_only, "--sempred_hidden", 32, "--lambda_sem", 2.0) == []
    with pytest.raises(ConfigError, match=r"other settings \(lambda_sem\)"):
        fake_training("B", "--lambda_sem", 2.0)
    assert fake_training("C") == ["C"]
    with pytest.raises(ConfigError, match=r"other settings \(p_teacher_steps\)"):  # C has the adapter
        fake_training("C", "--p_teacher_steps", 7)


# ---------------------------------------------------------------- teacher features of the current manifests
@pytest.fixture
def teacher_folder(tmp_path, monkeypatch):
    """A teacher folder whose metadata check passes; the manifests' digest is up to the test."""
    monkeypatch.setattr("semtts.data.teacher_features.open_extracted", lambda folder, *args: ({"dim": 4}, {}))
    write_json_atomic(tmp_path / "tokens" / "train.json", {"u1": {"wav": "a.wav"}})
    return tmp_path


def test_teacher_features_of_other_manifests_are_refused(teacher_folder):
    from semtts.data.manifest_digest import manifests_sha256

    hp, tokens = {"output_folder": str(teacher_folder)}, teacher_folder / "tokens"
    write_json_atomic(teacher_folder / "teacher" / "settings.json", {"manifests_sha256": manifests_sha256(tokens)})
    assert TeacherFeatures.load(hp).dim == 4
    write_json_atomic(tokens / "valid.json", {"u2": {"wav": "b.wav"}})  # stage 2 rerun since stage 4
    with pytest.raises(DataError, match=r"teacher/settings\.json: the teacher features were extracted from other "
                                        r"stage-2 manifests .*rerun stage 4 with --force") as err:
        TeacherFeatures.load(hp)
    assert "\n" not in str(err.value)
    shutil.rmtree(teacher_folder / "teacher")  # older semtts: no settings.json, the digest in done only
    write_json_atomic(teacher_folder / "teacher" / "done", {"settings": {"manifests_sha256": "0" * 64}})
    with pytest.raises(DataError, match=r"teacher/done: the teacher features were extracted from other"):
        TeacherFeatures.load(hp)


def test_teacher_features_without_a_recorded_digest_are_logged_as_unchecked(teacher_folder, caplog):
    write_json_atomic(teacher_folder / "teacher" / "done", {"settings": {}})
    with caplog.at_level(logging.WARNING, logger="semtts.data.teacher_features"):
        assert TeacherFeatures.load({"output_folder": str(teacher_folder)}).dim == 4
    assert "recorded no manifests_sha256" in caplog.text and "could not be checked" in caplog.text
