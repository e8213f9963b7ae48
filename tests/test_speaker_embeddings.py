"""CAM++ speaker embeddings: weights loading, the embedder (batch invariance,
determinism) and stage 3 end to end (skips, resume, shards, metadata)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from semtts.data.manifest import write_manifest
from semtts.errors import ConfigError, DataError, WeightsNotFound
from semtts.extract.common import check_metadata, feature_path, file_sha256
from semtts.extract.speaker import (SpeakerEmbedder, compute_fbank, expected_metadata, load_campplus,
                                    load_speaker_embeddings)
from semtts.lobes.campplus import CAMPPlus
from semtts.stages.speaker_embeddings import main

SR = 22050  # the manifests' rate; the embedder resamples to 16 kHz


def _tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


# ---------------------------------------------------------------------------
# Weights and the embedder
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder():
    return SpeakerEmbedder.from_checkpoint(None, 192, allow_random_init=True, seed=11, batch_size=4)


def test_random_init_needs_the_switch(tmp_path):
    with pytest.raises(WeightsNotFound, match="allow_random_init"):
        load_campplus(None, 192, allow_random_init=False, cache_dir=tmp_path)


def test_random_init_leaves_every_generator_as_it_was(monkeypatch):
    # a caller's seed holds: the CPU generator restored, and no CUDA generator seeded (torch.manual_seed would
    # seed them, or queue it until CUDA starts, where fork_rng(devices=[]) restores nothing)
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded.append(seed))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    seeded.clear()
    first, _ = load_campplus(None, 64, allow_random_init=True, seed=3)
    assert torch.equal(torch.rand(3), expected) and seeded == []
    second, _ = load_campplus(None, 64, allow_random_init=True, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def test_missing_file_is_weights_not_found(tmp_path):
    with pytest.raises(WeightsNotFound, match=r"nope\.bin: file not found.*campplus_cn_common\.bin"):
        load_campplus(str(tmp_path / "nope.bin"), 192, allow_random_init=True, cache_dir=tmp_path)


def test_failed_download_is_weights_not_found(tmp_path):
    url = "http://127.0.0.1:9/campplus_cn_common.bin"  # nothing listens on port 9
    with pytest.raises(WeightsNotFound, match="download failed.*speech_campplus_sv_en_voxceleb_16k"):
        load_campplus(url, 192, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "campplus_cn_common.bin").exists()


def test_saved_checkpoint_loads_and_embeds_identically(tmp_path, embedder):
    wavs = [torch.from_numpy(_tone(0.8, 200, 1)), torch.from_numpy(_tone(1.3, 310, 2))]
    reference = embedder.embed(wavs, SR)
    bare = tmp_path / "campplus_cn_common.bin"
    torch.save(embedder.model.state_dict(), bare)
    nested = tmp_path / "nested.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in embedder.model.state_dict().items()}}, nested)
    for path in (bare, nested):
        loaded = SpeakerEmbedder.from_checkpoint(str(path), 192, cache_dir=tmp_path)
        assert torch.equal(loaded.embed(wavs, SR), reference)
        assert loaded.metadata()["ckpt_sha256"] == file_sha256(path)
    # an https-style source already in the cache is not downloaded again
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(bare, cache / bare.name)
    cached = SpeakerEmbedder.from_checkpoint(f"https://example.invalid/x/{bare.name}", 192, cache_dir=cache)
    assert cached.identity == file_sha256(bare)


def test_wrong_checkpoints_are_clear_errors(tmp_path, embedder):
    bare = tmp_path / "c.bin"
    torch.save(embedder.model.state_dict(), bare)
    with pytest.raises(ConfigError, match="192-d CAM\\+\\+ checkpoint, but campplus_embed_dim is 512"):
        load_campplus(str(bare), 512)
    partial = dict(embedder.model.state_dict())
    partial.pop("xvector.tdnn.linear.weight")
    torch.save(partial, tmp_path / "p.bin")
    with pytest.raises(DataError, match="missing: xvector.tdnn.linear.weight"):
        load_campplus(str(tmp_path / "p.bin"), 192)
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.bin: not a readable torch checkpoint"):
        load_campplus(str(tmp_path / "junk.bin"), 192)


def test_random_init_is_deterministic_and_leaves_the_global_rng(embedder):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    other = SpeakerEmbedder.from_checkpoint(None, 192, allow_random_init=True, seed=11)
    assert torch.equal(torch.rand(1), before)
    wav = [torch.from_numpy(_tone(0.7, 150, 3))]
    assert torch.equal(other.embed(wav, SR), embedder.embed(wav, SR))
    different = SpeakerEmbedder.from_checkpoint(None, 192, allow_random_init=True, seed=12)
    assert not torch.allclose(different.embed(wav, SR), embedder.embed(wav, SR))


def test_batched_equals_one_at_a_time(embedder):
    wavs = [torch.from_numpy(_tone(s, f, i)) for i, (s, f) in enumerate([(0.5, 120), (2.6, 180), (1.1, 260),
                                                                          (0.9, 330), (1.7, 90)])]
    batched = embedder.embed(wavs, SR)  # batch_size 4: two padded batches
    alone = torch.cat([embedder.embed([w], SR) for w in wavs])
    assert batched.shape == (5, 192)
    scale = alone.abs().max()
    assert (batched - alone).abs().max() <= 1e-4 * scale
    # and the embeddings do depend on the audio
    assert (alone[0] - alone[1]).abs().max() > 1e-2 * scale


def test_embed_file_and_fbank(tmp_path, embedder):
    audio = _tone(1.0, 240, 5)
    sf.write(tmp_path / "a.wav", np.stack([audio, audio], axis=1), SR, subtype="FLOAT")  # stereo is averaged
    from_file = embedder.embed_file(tmp_path / "a.wav")
    assert from_file.shape == (192,)
    assert torch.allclose(from_file, embedder.embed([torch.from_numpy(audio)], SR)[0], atol=1e-6)
    feats = compute_fbank(torch.randn(16000) * 0.1)
    assert feats.shape == (98, 80) and torch.allclose(feats.mean(0), torch.zeros(80), atol=1e-4)
    with pytest.raises(DataError, match="shorter than one 25.0 ms fbank frame"):
        compute_fbank(torch.randn(300))


def test_fbank_matches_torchaudio_kaldi():
    # semtts.audio.kaldi_fbank computes 3D-Speaker's features without torchaudio's per-call work:
    # the same numbers as kaldi.fbank (minus the utterance mean), for one utterance and a batch
    import torchaudio.compliance.kaldi as kaldi

    from semtts.audio.kaldi_fbank import batch_fbank

    gen = torch.Generator().manual_seed(0)
    wavs = [torch.randn(n, generator=gen) * 0.1 for n in (400, 7777, 16000)]
    wavs.append(torch.from_numpy(_tone(1.0, 180, 3)).float())
    for wav in wavs:
        ref = kaldi.fbank(wav.unsqueeze(0), num_mel_bins=80, frame_length=25.0, frame_shift=10.0, dither=0.0,
                          window_type="povey", sample_frequency=16000)
        ref = ref - ref.mean(dim=0, keepdim=True)
        torch.testing.assert_close(compute_fbank(wav), ref, atol=2e-4, rtol=1e-4)
    batch = torch.stack([wav[:7777] for wav in wavs[1:]])
    torch.testing.assert_close(batch_fbank(batch)[1], compute_fbank(wavs[2][:7777]), atol=1e-5, rtol=1e-5)
    silent = compute_fbank(torch.zeros(1600))  # log floor, no NaN
    assert torch.isfinite(silent).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(embedder):
    wavs = [torch.from_numpy(_tone(1.0, 200, 7)), torch.from_numpy(_tone(1.6, 120, 8))]
    gpu = SpeakerEmbedder(CAMPPlus().eval(), "x", device="cuda")
    gpu.model.load_state_dict(embedder.model.state_dict())
    cpu, cuda = embedder.embed(wavs, SR), gpu.embed(wavs, SR)  # cuDNN may use TF32
    assert torch.nn.functional.cosine_similarity(cpu, cuda).min() > 0.999


# ---------------------------------------------------------------------------
# Stage 3
# ---------------------------------------------------------------------------

SPEAKERS = {"spkA": 110.0, "spkB": 190.0, "spkC": 290.0}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for s, (spk, freq) in enumerate(SPEAKERS.items()):
        for k in range(2):
            sf.write(root / f"{spk}_{k}.wav", _tone(0.6 + 0.3 * k, freq * (1 + 0.05 * k), 10 * s + k), SR)
    sf.write(root / "short.wav", _tone(0.2, 200, 99), SR)
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00junk, not audio")
    return root


def _experiment(corpus: Path, root: Path, **overrides) -> Path:
    """Stage-2 outputs (manifests + done marker) and an hparams file."""
    output = root / "exp"
    items = {}
    for spk in SPEAKERS:
        for k in range(2):
            items[f"{spk}_{k}"] = {"wav": f"{{data_root}}/{spk}_{k}.wav", "text": "hi", "spk": spk,
                                   "duration": 0.6 + 0.3 * k, "sr": SR, "tokens": [3, 4]}
    # one item read through the audio cache of stage 1
    cached = output / "data" / "audio_cache" / "spkA_9.wav"
    cached.parent.mkdir(parents=True)
    sf.write(cached, _tone(1.2, 115.0, 77), SR)
    items["spkA_9"] = {"wav": "{cache_root}/spkA_9.wav", "text": "hi", "spk": "spkA", "duration": 1.2, "sr": SR,
                       "tokens": [5]}
    bad = {"spkD_short": "short.wav", "spkD_corrupt": "corrupt.wav", "spkD_missing": "missing.wav"}
    valid = {u: {"wav": f"{{data_root}}/{name}", "text": "x", "spk": "spkD", "duration": 0.5, "sr": SR,
                 "tokens": [6]} for u, name in bad.items()}
    write_manifest(output / "tokens" / "train.json", items)
    write_manifest(output / "tokens" / "valid.json", valid)
    (output / "tokens" / "report.json").write_text("{}")
    (output / "tokens" / "done").write_text("{}")
    hp = {"output_folder": str(output), "data_folder": str(corpus), "campplus_ckpt": None,
          "campplus_embed_dim": 192, "allow_random_init": True, "campplus_cache_dir": str(root / "cache"),
          "min_speaker_audio": 0.3, "nj": 1, "seed": 3, **overrides}
    (root / "hparams.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in hp.items()))
    return root / "hparams.yaml"


def _run(*argv) -> int:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    return stop.value.code


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to float effects of a different batch composition."""
    return a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-5 * float(np.abs(b).max())


def _outputs(yaml: Path) -> tuple:
    folder = yaml.parent / "exp" / "spk_emb"
    index = json.loads((folder / "index.json").read_text())
    return np.load(folder / "utt_emb.npy"), np.load(folder / "spk_mean.npy"), index


@pytest.fixture(scope="module")
def one_run(corpus, tmp_path_factory) -> Path:
    yaml = _experiment(corpus, tmp_path_factory.mktemp("one"))
    assert _run(yaml) == 0
    return yaml


def test_stage_end_to_end(one_run, corpus):
    folder = one_run.parent / "exp" / "spk_emb"
    utt, spk_mean, meta = load_speaker_embeddings(folder)
    assert sorted(utt) == ["spkA_0", "spkA_1", "spkA_9", "spkB_0", "spkB_1", "spkC_0", "spkC_1"]
    assert all(v.shape == (192,) and v.dtype == np.float32 for v in utt.values())
    assert np.allclose(spk_mean["spkA"], np.mean([utt["spkA_0"], utt["spkA_1"], utt["spkA_9"]], axis=0), atol=1e-7)
    assert meta["model"] == "campplus" and meta["embed_dim"] == 192 and meta["sample_rate"] == 16000
    assert meta["ckpt_sha256"] == "random-init-seed3" and meta["fbank"]["num_mel_bins"] == 80
    assert "semtts_version" in meta
    report = json.loads((folder / "report.json").read_text())
    assert set(report["skipped"]) == {"spkD_short", "spkD_corrupt", "spkD_missing"}
    assert "too short" in report["skipped"]["spkD_short"]
    assert "unreadable audio" in report["skipped"]["spkD_corrupt"]
    assert "not found" in report["skipped"]["spkD_missing"]
    assert report["speakers_without_embeddings"] == ["spkD"]
    assert (folder / "done").is_file()
    # the stage's files are the embedder's embeddings of the same audio
    embedder = SpeakerEmbedder.from_checkpoint(None, 192, allow_random_init=True, seed=3)
    direct = embedder.embed_file(corpus / "spkB_1.wav")
    assert np.allclose(utt["spkB_1"], direct.numpy(), atol=1e-6)


def test_second_run_does_no_work(one_run, capsys):
    folder = one_run.parent / "exp" / "spk_emb"
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    assert _run(one_run) == 0
    assert "skipped: already done" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_resume_redoes_only_missing_utterances(corpus, tmp_path, capsys):
    yaml = _experiment(corpus, tmp_path)
    assert _run(yaml, "--shard", "1/2") == 0
    out = capsys.readouterr().out
    assert "utterances are left to other shards" in out
    folder = tmp_path / "exp" / "spk_emb"
    assert not (folder / "done").exists() and not (folder / "meta.json").exists()
    finished = sorted(p for p in folder.glob("feats/*") if not p.name.endswith(".unreadable.json"))
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    # 10 utterances, every second one; spkD_missing is not skipped for good (a rerun tries it again)
    assert len(finished) == 4 and not feature_path(folder, "spkD_missing", ".skipped.json").exists()
    assert feature_path(folder, "spkD_missing", ".unreadable.json").is_file()
    assert _run(yaml) == 0
    assert "embedding 6 of 10 utterances" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in finished}
    assert (folder / "done").is_file()


def test_two_shards_equal_one_run(corpus, one_run, tmp_path):
    yaml = _experiment(corpus, tmp_path)
    assert _run(yaml, "--shard", "2/2") == 0
    assert not (tmp_path / "exp" / "spk_emb" / "meta.json").exists()
    assert _run(yaml, "--shard=1/2") == 0  # the last shard merges
    assert (tmp_path / "exp" / "spk_emb" / "done").is_file()
    mine, theirs = _outputs(yaml), _outputs(one_run)
    assert _close(mine[0], theirs[0]) and _close(mine[1], theirs[1]) and mine[2] == theirs[2]


def test_nj_spawns_shard_jobs(corpus, one_run, tmp_path, capsys):
    yaml = _experiment(corpus, tmp_path)
    assert _run(yaml, "--nj", "2") == 0
    assert "in 2 shard jobs" in capsys.readouterr().out
    mine, theirs = _outputs(yaml), _outputs(one_run)
    assert _close(mine[0], theirs[0]) and _close(mine[1], theirs[1]) and mine[2] == theirs[2]


def test_changed_settings_are_refused(corpus, tmp_path, capsys):
    yaml = _experiment(corpus, tmp_path)
    assert _run(yaml, "--shard", "1/2") == 0
    assert _run(yaml, "--shard", "2/2", "--min_speaker_audio", "0.1") == 2
    assert "partial outputs were made with other settings (min_speaker_audio)" in capsys.readouterr().err
    assert _run(yaml, "--force", "--min_speaker_audio", "0.1") == 0  # a full redo is allowed
    report = json.loads((tmp_path / "exp" / "spk_emb" / "report.json").read_text())
    assert "spkD_short" not in report["skipped"]


def test_metadata_mismatch_names_both_sides(one_run):
    meta_path = one_run.parent / "exp" / "spk_emb" / "meta.json"
    hp = {"campplus_ckpt": None, "campplus_embed_dim": 192, "allow_random_init": True,
          "campplus_cache_dir": "/unused", "seed": 3}
    assert check_metadata(meta_path, expected_metadata(hp), "speaker embeddings")["embed_dim"] == 192
    with pytest.raises(ConfigError, match="embed_dim is 192 there but 512 in the hparams"):
        check_metadata(meta_path, expected_metadata({**hp, "campplus_embed_dim": 512}), "speaker embeddings")
    with pytest.raises(ConfigError, match="'random-init-seed3' there but 'random-init-seed4'"):
        check_metadata(meta_path, expected_metadata({**hp, "seed": 4}), "speaker embeddings")


def test_feature_files_are_per_utterance(one_run):
    folder = one_run.parent / "exp" / "spk_emb"
    assert feature_path(folder, "spkC_0").is_file()
    assert np.load(feature_path(folder, "spkC_0")).dtype == np.float32
    assert json.loads(feature_path(folder, "spkD_short", ".skipped.json").read_text())["reason"]


# ---------------------------------------------------------------------------
# Stage 3 robustness: transient skips, corrupt files, refused settings
# ---------------------------------------------------------------------------


def test_missing_audio_is_retried_by_a_rerun(corpus, one_run, tmp_path, capsys):
    data = tmp_path / "corpus"
    shutil.copytree(corpus, data)
    yaml = _experiment(data, tmp_path)
    folder = tmp_path / "exp" / "spk_emb"
    away = tmp_path / "spkB_1.wav"
    (data / "spkB_1.wav").rename(away)  # a network file system hiccup
    assert _run(yaml) == 0
    first_report = json.loads((folder / "report.json").read_text())
    # Still missing: a rerun tries again, changes nothing and stays done.
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert _run(yaml) == 0
    assert "skipped: already done" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    # Back: the rerun (no --force) embeds it and merges again; nothing else is redone.
    away.rename(data / "spkB_1.wav")
    kept = feature_path(folder, "spkA_0")
    mtime = kept.stat().st_mtime_ns
    assert _run(yaml) == 0
    utt, _, _ = load_speaker_embeddings(folder)
    assert "spkB_1" in utt
    reference, _, _ = load_speaker_embeddings(one_run.parent / "exp" / "spk_emb")
    assert _close(utt["spkB_1"], reference["spkB_1"]) and kept.stat().st_mtime_ns == mtime
    assert "can be read now" in capsys.readouterr().out
    report = json.loads((folder / "report.json").read_text())
    assert "spkB_1" not in report["skipped"] and json.loads((folder / "done").read_text())["summary"]["n_embedded"] == 7
    # The first run reported it (as one a rerun retries), and did not skip it for good.
    assert "not found" in first_report["skipped"]["spkB_1"] and "spkB_1" in first_report["retried_by_a_rerun"]
    assert "spkD_short" not in first_report["retried_by_a_rerun"]
    assert not feature_path(folder, "spkB_1", ".skipped.json").exists()


def test_skip_records_of_missing_files_from_older_semtts_are_retried(tmp_path):
    from semtts.extract.common import pending_utterances

    for utt_id, reason in (("a", "audio file not found: /x/a.wav"), ("b", "unreadable audio /x/b.wav (junk)"),
                           ("c", "too short (0.100 s < 0.3 s)")):
        (tmp_path / "feats").mkdir(exist_ok=True)
        feature_path(tmp_path, utt_id, ".skipped.json").write_text(json.dumps({"reason": reason}))
    feature_path(tmp_path, "d", ".skipped.json").write_text("")  # cut short: not a skip either
    assert pending_utterances(["a", "b", "c", "d"], tmp_path) == ["a", "b", "d"]
    assert pending_utterances(["a", "b", "c", "d"], tmp_path, untried=True) == ["d"]


def test_truncated_embedding_is_embedded_again_at_merge(corpus, one_run, tmp_path, capsys, caplog):
    yaml = _experiment(corpus, tmp_path)
    folder = tmp_path / "exp" / "spk_emb"
    assert _run(yaml, "--shard", "1/2") == 0
    truncated, wrong = feature_path(folder, "spkA_9"), feature_path(folder, "spkB_1")
    truncated.write_bytes(truncated.read_bytes()[:60])  # what a crash can leave without fsync
    np.save(wrong, np.zeros(7, dtype=np.float32))
    with caplog.at_level("WARNING", logger="semtts.extract.common"):
        assert _run(yaml) == 0  # the merge removes them and embeds them again in place
    mine, theirs = _outputs(yaml), _outputs(one_run)
    assert _close(mine[0], theirs[0]) and _close(mine[1], theirs[1]) and mine[2] == theirs[2]
    assert str(truncated) in caplog.text and "shape (7,), expected (192,)" in caplog.text
    assert "2 embedding file(s) could not be read" in capsys.readouterr().out
    # Called on its own, the merge names them, removes them, and says a plain rerun redoes them.
    from semtts.extract.speaker import CorruptEmbeddings, speaker_metadata, write_speaker_outputs

    truncated.write_bytes(b"")  # an empty file (np.load: EOFError)
    wrong.write_bytes(b"junk")
    items = {u: {"spk": u.split("_")[0]} for u in ("spkA_0", "spkA_9", "spkB_1")}
    with pytest.raises(CorruptEmbeddings, match="2 embedding file.*spkA_9, spkB_1.*no --force needed") as err:
        write_speaker_outputs(items, folder, speaker_metadata("random-init-seed3", 192))
    assert err.value.utt_ids == ["spkA_9", "spkB_1"] and not truncated.exists() and not wrong.exists()


def test_force_shard_with_other_settings_keeps_the_done_marker(one_run, corpus, tmp_path, capsys):
    yaml = _experiment(corpus, tmp_path)
    marker = tmp_path / "exp" / "spk_emb" / "done"
    assert _run(yaml) == 0
    finished = marker.read_text()
    assert _run(yaml, "--force", "--shard", "1/2", "--min_speaker_audio", "0.1") == 2
    err = capsys.readouterr().err.strip()
    assert "other settings (min_speaker_audio)" in err and "without --shard" in err and "\n" not in err
    assert marker.read_text() == finished
    assert _run(yaml) == 0 and "skipped: already done" in capsys.readouterr().out


def test_save_array_atomic_flushes_before_the_rename(tmp_path, monkeypatch):
    import os

    from semtts.extract.common import save_array_atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(("replace", str(src))),
                                                         real_replace(src, dst))[1])
    target = tmp_path / "feats" / "u.npy"
    save_array_atomic(target, np.arange(3, dtype=np.float32))
    # the file's data flushed, then renamed (one feature file of many: the folder is not flushed after each)
    assert [kind for kind, _ in events] == ["fsync", "replace"] and events[0][1] == events[1][1]
    np.testing.assert_array_equal(np.load(target), np.arange(3))

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        save_array_atomic(target, np.zeros(3, dtype=np.float32))
    assert sorted(p.name for p in target.parent.iterdir()) == ["u.npy"]  # no temporary file left behind


def test_audio_cut_off_since_stage_1_stays_pending(tmp_path):
    # a file cut off (a copy in progress) is not embedded in part nor skipped for good: a rerun tries again
    from semtts.audio import save_audio
    from semtts.extract.speaker import _load_16k

    path = tmp_path / "cut.wav"
    save_audio(path, 0.1 * torch.randn(1, 32000), 16000)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    wav, reason, retry = _load_16k(str(path), 0.5)
    assert wav is None and retry and reason.startswith(f"unreadable audio {path} (truncated: ")
    path.write_bytes(whole)  # copied again whole
    wav, reason, retry = _load_16k(str(path), 0.5)
    assert wav is not None and wav.numel() == 32000 and not retry


def test_checkpoint_urls_are_cached_by_url(tmp_path, monkeypatch):
    # ModelScope API URLs all end in /repo?...&FilePath=<file>: two models must not share one cached file
    from semtts.extract.speaker import resolve_checkpoint

    downloads = []

    def download(url, dst, progress=True):
        downloads.append(url)
        Path(dst).write_text(url)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    base = "https://modelscope.cn/api/v1/models/iic/{}/repo?Revision=master&FilePath=campplus_cn_common.bin"
    first, second = (base.format(model) for model in ("model_a", "model_b"))
    paths = [resolve_checkpoint(url, tmp_path) for url in (first, second, first)]
    assert paths[0] != paths[1] and paths[0] == paths[2] and downloads == [first, second]
    assert paths[0].name.endswith("-campplus_cn_common.bin") and paths[1].read_text() == second
    # a file downloaded under the earlier cache name (the URL path's last part) is still found, offline
    plain = "https://example.org/ckpts/campplus_voxceleb.bin"
    (tmp_path / "campplus_voxceleb.bin").write_text("downloaded before")
    assert resolve_checkpoint(plain, tmp_path).read_text() == "downloaded before" and plain not in downloads
