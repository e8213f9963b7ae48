"""Whisper teacher features (stage 4): frame counts and values against
Whisper's own encoder, chunking, layer choice, weights handling, and the
stage end to end (corrupt audio, resume, shards, subprocess jobs, metadata).
All with a random-weight tiny encoder."""

import json
import logging
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import whisper
from whisper.model import ModelDimensions, Whisper

from semtts.audio import save_audio
from semtts.errors import ConfigError, DataError, WeightsNotFound
from semtts.extract.common import check_metadata, feature_path, file_sha256, read_metadata, shard_items
from semtts.extract.teacher import (
    RANDOM_INIT,
    WhisperTeacher,
    expected_metadata,
    extract_teacher_features,
    load_teacher,
    load_whisper_teacher,
    read_teacher_audio,
    valid_frames,
)
from semtts.stages import teacher_features

TINY = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
            n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2)


@pytest.fixture(scope="module")
def model() -> Whisper:
    torch.manual_seed(0)
    return Whisper(ModelDimensions(**TINY)).eval()


def _audio(seconds: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    n = int(seconds * 16000)
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(n, generator=gen)


def test_valid_frames_matches_whisper_mel_and_conv_front(model):
    for n in (401, 479, 480, 640, 16000, 16001, 16159, 16160, 23999, 33333):
        mel = whisper.log_mel_spectrogram(torch.zeros(n), 80)
        assert mel.shape[-1] == n // 160
        # The encoder's own stem on the unpadded mel: stride-2 conv rounds up.
        stem = F.gelu(model.encoder.conv2(F.gelu(model.encoder.conv1(mel[None]))))
        assert stem.shape[-1] == valid_frames(n) == -(-(n // 160) // 2)
    assert valid_frames(0) == 0 and valid_frames(480000) == 1500


def test_features_are_the_valid_frames_of_whisper_on_30s_padded_audio(model):
    teacher = WhisperTeacher(model.encoder, model.dims)
    for seconds in (1.37, 2.0):
        audio = _audio(seconds)
        with torch.no_grad():
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), 80)
            reference = model.encoder(mel[None])[0]  # [1500, D]
        feats = teacher.features(audio)
        assert feats.shape == (valid_frames(audio.numel()), 64)
        torch.testing.assert_close(feats, reference[: feats.shape[0]], atol=1e-5, rtol=1e-5)


def test_long_input_is_encoded_in_30s_windows(model):
    teacher = WhisperTeacher(model.encoder, model.dims)
    audio = _audio(33.0)  # 528000 samples
    feats = teacher.features(audio)
    assert feats.shape == (1650, 64) and feats.shape[0] * 320 >= audio.numel() - 320
    # As whisper.transcribe does: one mel of the whole (zero-padded) utterance, 3000-frame windows.
    with torch.no_grad():
        mel = whisper.log_mel_spectrogram(audio, 80, padding=whisper.audio.N_SAMPLES)
        first = model.encoder(mel[None, :, :3000])[0]
        second = model.encoder(whisper.pad_or_trim(mel[:, 3000:6000], 3000)[None])[0]
    torch.testing.assert_close(feats[:1500], first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats[1500:], second[:150], atol=1e-5, rtol=1e-5)


def test_intermediate_layer_is_the_block_output(model):
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(_audio(1.0)), 80)[None]
    captured = {}
    hooks = [block.register_forward_hook(lambda mod, inp, out, k=k: captured.__setitem__(k, out))
             for k, block in enumerate(model.encoder.blocks)]
    try:
        with torch.no_grad():
            final = model.encoder(mel)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for k in (0, 1):
            torch.testing.assert_close(WhisperTeacher(model.encoder, model.dims, layer=k)(mel), captured[k])
        torch.testing.assert_close(WhisperTeacher(model.encoder, model.dims, layer=-1)(mel), final)
    assert not torch.allclose(captured[1], final)  # the last block is not the ln_post output
    for bad in (2, -2):
        with pytest.raises(ConfigError, match="whisper_layer"):
            WhisperTeacher(model.encoder, model.dims, layer=bad)


def test_batched_extraction_matches_single_utterances(model, tmp_path):
    teacher = WhisperTeacher(model.encoder, model.dims, layer=0)
    lengths = {"a": 0.8, "b": 31.0, "c": 1.9}
    paths = {}
    for k, (utt, seconds) in enumerate(lengths.items()):
        paths[utt] = str(tmp_path / f"{utt}.wav")
        save_audio(paths[utt], _audio(seconds, seed=k), 16000)
    report = extract_teacher_features(teacher, paths, tmp_path / "teacher", batch_size=2, progress=False)
    assert report == {"extracted": 3, "existing": 0, "failed": {}}
    for utt, path in paths.items():
        stored = load_teacher(tmp_path / "teacher", utt)
        single = teacher.features(read_teacher_audio(path))
        assert stored.dtype == np.float16 and stored.shape == tuple(single.shape)
        np.testing.assert_allclose(stored.astype(np.float32), single.numpy(), atol=2e-2, rtol=2e-3)
    again = extract_teacher_features(teacher, paths, tmp_path / "teacher", batch_size=2, progress=False)
    assert again == {"extracted": 0, "existing": 3, "failed": {}}
    with pytest.raises(DataError, match="no teacher features for 'zzz'"):
        load_teacher(tmp_path / "teacher", "zzz")


def _offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_missing_weights_need_the_random_init_switch(tmp_path, monkeypatch, caplog):
    _offline(monkeypatch)
    with pytest.raises(WeightsNotFound) as err:
        load_whisper_teacher("tiny", cache_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "tiny.pt" in message and str(tmp_path) in message and ".pt checkpoint" in message
    with pytest.raises(WeightsNotFound, match="missing.pt: file not found"):
        load_whisper_teacher(str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="'tinyy': not a Whisper model name"):
        load_whisper_teacher("tinyy")
    with pytest.raises(ConfigError, match="'tinyy': not a Whisper model name"):  # random init needs a valid name
        load_whisper_teacher("tinyy", allow_random_init=True, random_dims=TINY)
    hp = {"whisper_model": str(tmp_path / "missing.pt"), "whisper_layer": -1, "whisper_cache_dir": None,
          "allow_random_init": False, "whisper_random_dims": None, "seed": 1}
    with pytest.raises(WeightsNotFound):
        expected_metadata(hp)
    with caplog.at_level(logging.WARNING, logger="semtts.extract.teacher"):
        teacher = load_whisper_teacher("tiny", cache_dir=tmp_path, allow_random_init=True, seed=3)
    assert "RANDOMLY INITIALISED" in caplog.text
    assert teacher.dim == 384 and teacher.dims.n_audio_layer == 4 and teacher.sha256 == RANDOM_INIT
    small = load_whisper_teacher("large-v3", cache_dir=tmp_path, allow_random_init=True,
                                 random_dims={"n_audio_state": 64, "n_audio_head": 2, "n_audio_layer": 1})
    assert small.n_mels == 128 and small.dim == 64  # n_mels of the named size
    with pytest.raises(ConfigError, match="unknown fields"):
        load_whisper_teacher("tiny", cache_dir=tmp_path, allow_random_init=True, random_dims={"width": 3})


def test_local_checkpoint_is_loaded_and_hashed(model, tmp_path):
    path = tmp_path / "my-whisper.pt"
    torch.save({"dims": asdict(model.dims), "model_state_dict": model.state_dict()}, path)
    teacher = load_whisper_teacher(str(path), layer=1)
    assert teacher.sha256 == file_sha256(path) and teacher.name == "my-whisper.pt"
    audio = _audio(0.5)
    torch.testing.assert_close(teacher.features(audio), WhisperTeacher(model.encoder, model.dims, 1).features(audio))
    hp = {"whisper_model": str(path), "whisper_layer": 1, "whisper_cache_dir": None,
          "allow_random_init": False, "whisper_random_dims": None, "seed": 1}
    assert expected_metadata(hp) == teacher.metadata()
    assert expected_metadata({**hp, "whisper_model": "medium"})["sha256"] == \
        "345ae4da62f9b3d59415adc60127b97c714f32e89e936602e85993674d08dcb1"


# --------------------------------------------------------------------------
# Stage 4 end to end
# --------------------------------------------------------------------------


def _experiment(tmp_path: Path) -> tuple[Path, dict]:
    """A stage-2 output with four readable wavs (one at 22.05 kHz) and a corrupt
    one; the teacher is a missing local checkpoint with random init allowed
    (no network involved, also in the subprocesses). Returns the yaml and hparams."""
    data = tmp_path / "corpus"
    out = tmp_path / "exp"
    items = {}
    for k, seconds in enumerate((0.6, 1.1, 0.9, 1.4)):
        utt = f"spk{k % 2}_utt{k}"
        save_audio(data / "wavs" / f"{utt}.wav", _audio(seconds, seed=k), 16000 if k else 22050)
        items[utt] = {"wav": f"{{data_root}}/wavs/{utt}.wav", "text": "hi", "spk": f"spk{k % 2}",
                      "duration": seconds, "sr": 16000, "tokens": [3, 4]}
    (data / "wavs" / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav file")
    items["broken"] = {"wav": "{data_root}/wavs/broken.wav", "text": "x", "spk": "spk0", "duration": 1.0,
                       "sr": 16000, "tokens": [3]}
    tokens = out / "tokens"
    tokens.mkdir(parents=True)
    names = sorted(items)
    (tokens / "train.json").write_text(json.dumps({u: items[u] for u in names[:3]}))
    (tokens / "valid.json").write_text(json.dumps({u: items[u] for u in names[3:]}))
    (tokens / "report.json").write_text("{}")
    (tokens / "done").write_text("{}")
    hp = {"output_folder": str(out), "data_folder": str(data), "whisper_model": str(tmp_path / "tiny-random.pt"),
          "whisper_layer": -1, "whisper_cache_dir": str(tmp_path / "whisper_cache"), "allow_random_init": True,
          "whisper_random_dims": TINY, "whisper_batch_size": 3, "nj": 1, "seed": 7}
    yaml = tmp_path / "hparams.yaml"
    yaml.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in hp.items()) + "\n")
    return yaml, hp


def _run(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        teacher_features.main([*argv, "--noprogressbar"])
    return exit_info.value.code


def _features(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in sorted((out / "teacher" / "feats").glob("*.npy"))}


def test_stage_end_to_end_resume_and_metadata(tmp_path, capsys):
    yaml, hp = _experiment(tmp_path)
    out = tmp_path / "exp"
    assert _run(str(yaml)) == 0
    feats = _features(out)
    assert sorted(feats) == ["spk0_utt0", "spk0_utt2", "spk1_utt1", "spk1_utt3"]
    # The 22.05 kHz file is resampled to 16 kHz first.
    n_16k = read_teacher_audio(tmp_path / "corpus" / "wavs" / "spk0_utt0.wav").numel()
    assert n_16k == round(9600 * 16000 / 22050)
    assert feats["spk0_utt0"].shape == (valid_frames(n_16k), 64) and feats["spk0_utt0"].dtype == np.float16
    report = json.loads((out / "teacher" / "report.json").read_text())
    assert report["total"] == 5 and report["with_features"] == 4 and list(report["skipped"]) == ["broken"]
    assert "cannot read the audio" in report["skipped"]["broken"]
    assert "1 utterance(s) skipped" in capsys.readouterr().out

    meta = read_metadata(out / "teacher" / "meta.json")
    assert meta["sha256"] == RANDOM_INIT and meta["dim"] == 64 and meta["layer"] == -1
    assert meta["frame_rate"] == 50 and meta["sample_rate"] == 16000 and meta["n_mels"] == 80
    assert meta["model"] == "tiny-random.pt" and meta["random_init_seed"] == 7 and "semtts_version" in meta
    check_metadata(out / "teacher" / "meta.json", expected_metadata(hp), "teacher features")
    with pytest.raises(ConfigError, match="layer is -1 there but 0"):
        check_metadata(out / "teacher" / "meta.json", expected_metadata({**hp, "whisper_layer": 0}), "teacher")

    # Resume: one file lost and the marker gone -> only that file is recomputed.
    kept = feature_path(out / "teacher", "spk1_utt3")
    mtime = kept.stat().st_mtime_ns
    feature_path(out / "teacher", "spk0_utt2").unlink()
    (out / "teacher" / "done").unlink()
    assert _run(str(yaml)) == 0
    done = json.loads((out / "teacher" / "done").read_text())["summary"]
    assert done["extracted"] == 1 and done["existing"] == 3 and done["skipped"] == 1
    assert kept.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(_features(out)["spk0_utt2"], feats["spk0_utt2"])  # same seed, same teacher
    assert _run(str(yaml)) == 0 and "skipped: already done" in capsys.readouterr().out
    # Another layer: refused without --force, recomputed with it.
    assert _run(str(yaml), "--whisper_layer", "0") == 2
    assert "other settings" in capsys.readouterr().err
    assert _run(str(yaml), "--whisper_layer", "0", "--force") == 0
    assert read_metadata(out / "teacher" / "meta.json")["layer"] == 0
    assert not np.array_equal(_features(out)["spk0_utt0"], feats["spk0_utt0"])


def test_a_done_stage_with_other_weights_behind_the_same_name_is_refused(model, tmp_path, capsys):
    # done with random weights (the checkpoint was missing); then the checkpoint appears under the same name
    yaml, hp = _experiment(tmp_path)
    assert _run(str(yaml)) == 0 and "already done" not in capsys.readouterr().out
    path = Path(hp["whisper_model"])
    torch.save({"dims": asdict(model.dims), "model_state_dict": model.state_dict()}, path)
    assert _run(str(yaml)) == 2
    err = capsys.readouterr().err
    assert f"sha256 is '{RANDOM_INIT}' there but '{file_sha256(path)}' in the hparams" in err and "--force" in err
    assert _run(str(yaml), "--force") == 0
    assert read_metadata(tmp_path / "exp" / "teacher" / "meta.json")["sha256"] == file_sha256(path)
    assert _run(str(yaml)) == 0 and "skipped: already done" in capsys.readouterr().out


def test_a_rerun_extracts_skipped_audio_that_can_be_read_now(tmp_path, capsys):
    yaml, _ = _experiment(tmp_path)
    out = tmp_path / "exp"
    assert _run(str(yaml)) == 0 and "broken" not in _features(out)
    assert _run(str(yaml)) == 0 and "1 utterance(s) still skipped (e.g. broken" in capsys.readouterr().out
    save_audio(tmp_path / "corpus" / "wavs" / "broken.wav", _audio(0.8, seed=9), 16000)  # copied again, whole
    kept = {u: feature_path(out / "teacher", u).stat().st_mtime_ns for u in _features(out)}
    assert _run(str(yaml)) == 0
    assert "1 of the 1 skipped utterances can be read now (e.g. broken)" in capsys.readouterr().out
    done = json.loads((out / "teacher" / "done").read_text())["summary"]
    assert done["extracted"] == 1 and done["existing"] == 4 and done["skipped"] == 0
    assert all(feature_path(out / "teacher", u).stat().st_mtime_ns == t for u, t in kept.items())
    assert _run(str(yaml)) == 0 and "skipped: already done" in capsys.readouterr().out
    # features that came out non-finite are skipped for good: readable audio is no reason to redo the stage
    feature_path(out / "teacher", "broken").unlink()
    report = json.loads((out / "teacher" / "report.json").read_text())
    report["skipped"] = {"broken": "non-finite teacher features (fp16 overflow?)"}
    (out / "teacher" / "report.json").write_text(json.dumps(report))
    assert _run(str(yaml)) == 0
    printed = capsys.readouterr().out
    assert "1 utterance(s) still skipped (e.g. broken" in printed and "skipped: already done" in printed


def test_stage_bad_whisper_model_is_one_line(tmp_path, capsys):
    yaml, _ = _experiment(tmp_path)
    cases = [
        (("--whisper_model", "/etc/passwd", "--allow_random_init", "False"),
         "error: whisper_model /etc/passwd: not a Whisper checkpoint (not a readable torch file"),
        (("--whisper_model", "tinyy"), "error: whisper_model 'tinyy': not a Whisper model name (tiny.en, tiny,"),
        (("--whisper_model", "/nonexistent/x.pt", "--whisper_random_dims", "null"),
         "error: whisper_model /nonexistent/x.pt: file not found"),
    ]
    for argv, message in cases:
        assert _run(str(yaml), *argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(message) and "\n" not in err and "Traceback" not in err, err
    assert not (tmp_path / "exp" / "teacher" / "meta.json").exists()


def test_stage_shards_and_subprocess_jobs(tmp_path, capsys):
    yaml, _ = _experiment(tmp_path)
    out = tmp_path / "exp"
    ids = sorted(["spk0_utt0", "spk0_utt2", "spk1_utt1", "spk1_utt3", "broken"])
    assert _run(str(yaml), "--shard", "1/2") == 0
    first = set(_features(out))
    assert first == set(shard_items(ids, 1, 2)) - {"broken"} and not (out / "teacher" / "done").exists()
    # A shard of another teacher is refused: the folder's meta.json says otherwise.
    assert _run(str(yaml), "--shard", "2/2", "--whisper_layer", "1") == 2
    assert "another teacher" in capsys.readouterr().err
    assert _run(str(yaml), "--shard=2/2") == 0
    shard_report = json.loads((out / "teacher" / "reports" / "shard_2-of-2.json").read_text())
    assert set(shard_report["failed"]) == {"broken"} & set(shard_items(ids, 2, 2))
    assert set(_features(out)) == set(ids) - {"broken"}
    sharded = _features(out)
    # The final run finds every file; then --force with nj=2 recomputes them in two subprocesses
    # that must build the same random teacher (same seed): identical features.
    assert _run(str(yaml)) == 0
    done = json.loads((out / "teacher" / "done").read_text())["summary"]
    assert done["extracted"] == 0 and done["existing"] == 4
    assert _run(str(yaml), "--nj", "2", "--force") == 0
    resharded = _features(out)
    assert sorted(resharded) == sorted(sharded)
    for utt in sharded:
        np.testing.assert_array_equal(resharded[utt], sharded[utt])
    assert (out / "teacher" / "reports" / "shard_2-of-2.json").is_file()


def test_a_shard_never_mixes_features_of_two_teachers(tmp_path, capsys):
    # An earlier cluster run (layer -1, both shards); the user switches to layer 0, resubmits shard 1
    # with --force and shard 2 without: neither may write, else the folder holds features of both layers.
    yaml, _ = _experiment(tmp_path)
    out, teacher = tmp_path / "exp", tmp_path / "exp" / "teacher"
    for shard in ("1/2", "2/2"):
        assert _run(str(yaml), "--shard", shard) == 0
    before = _features(out)
    assert _run(str(yaml), "--shard", "1/2", "--force", "--whisper_layer", "0") == 2
    err = capsys.readouterr().err.strip()
    assert "another teacher" in err and "(layer differ)" in err and "without --shard" in err and "\n" not in err
    assert _run(str(yaml), "--shard", "2/2", "--whisper_layer", "0") == 2
    assert "another teacher" in capsys.readouterr().err
    after = _features(out)
    assert sorted(after) == sorted(before) and all(np.array_equal(after[u], before[u]) for u in before)
    assert read_metadata(teacher / "meta.json")["layer"] == -1
    recorded = json.loads((teacher / "settings.json").read_text())
    assert recorded["layer"] == -1 and recorded["manifests_sha256"]
    # Folders of older semtts have no settings.json: their meta.json still protects them.
    (teacher / "settings.json").unlink()
    assert _run(str(yaml), "--shard", "2/2", "--whisper_layer", "0") == 2
    assert "another teacher" in capsys.readouterr().err
    # Only a run without --shard replaces them, all of them.
    assert _run(str(yaml), "--whisper_layer", "0", "--force") == 0
    assert json.loads((teacher / "settings.json").read_text())["layer"] == 0
    replaced = _features(out)
    assert sorted(replaced) == sorted(before) and not any(np.array_equal(replaced[u], before[u]) for u in before)


def test_shard_runs_and_the_done_marker(tmp_path, capsys):
    yaml, _ = _experiment(tmp_path)
    marker = tmp_path / "exp" / "teacher" / "done"
    assert _run(str(yaml)) == 0
    finished = marker.read_text()
    # --force --shard with other settings is refused before anything is removed: the marker stays valid.
    assert _run(str(yaml), "--shard", "1/2", "--force", "--whisper_layer", "0") == 2
    err = capsys.readouterr().err.strip()
    assert "other settings (whisper_layer)" in err and "without --shard" in err and "\n" not in err
    assert marker.read_text() == finished
    assert _run(str(yaml)) == 0 and "skipped: already done" in capsys.readouterr().out
    # A shard of a finished stage without --force does nothing; one that writes removes the marker.
    assert _run(str(yaml), "--shard", "1/2") == 0 and "already done" in capsys.readouterr().out
    assert marker.read_text() == finished
    assert _run(str(yaml), "--shard", "1/2", "--force") == 0
    assert not marker.exists()
    assert _run(str(yaml)) == 0 and json.loads(marker.read_text())["summary"]["existing"] == 4


def test_partial_outputs_of_other_manifests_are_refused(tmp_path, capsys):
    yaml, _ = _experiment(tmp_path)
    out = tmp_path / "exp"
    assert _run(str(yaml), "--shard", "1/2") == 0  # an interrupted run: partial outputs, no done marker
    manifest = out / "tokens" / "valid.json"
    items = json.loads(manifest.read_text())
    items[next(iter(items))]["text"] = "another text"  # stage 2 was rerun meanwhile
    manifest.write_text(json.dumps(items))
    for extra in ((), ("--shard", "2/2"), ("--shard", "2/2", "--force")):
        assert _run(str(yaml), *extra) == 2
        err = capsys.readouterr().err.strip()
        assert "(manifests_sha256 differ)" in err and "\n" not in err
    assert not (out / "teacher" / "done").exists()
    assert _run(str(yaml), "--force") == 0 and (out / "teacher" / "done").is_file()


def test_audio_cut_off_since_stage_1_is_refused_not_read_in_part(tmp_path):
    path = tmp_path / "cut.wav"
    save_audio(path, _audio(1.0).unsqueeze(0), 16000)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])  # the header still promises 16000 samples
    with pytest.raises(DataError, match=r"cut.wav: cannot read the audio \(truncated: \d+ of 16000 samples\)"):
        read_teacher_audio(path)
