"""CAM++ speaker conditioning: the start-up check of stage 3's metadata, the
speaker vectors of the data pipeline by speaker_mode, the synthesis
references, zero-shot synthesis from a wav path, and the speaker-consistency
loss (CPU, tiny configs)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch

from ddp_train_worker import build_brain, load_tiny_hparams, synthetic_items, write_corpus_yaml
from semtts.audio import save_audio
from semtts.data.dataset import dataio_prepare
from semtts.data.manifest import write_json_atomic, write_manifest
from semtts.data.speaker_vectors import SpeakerVectors
from semtts.errors import ConfigError, DataError
from semtts.extract.common import feature_path, save_array_atomic
from semtts.extract.speaker import SKIP_SUFFIX, SpeakerEmbedder, speaker_metadata, write_speaker_outputs
from semtts.inference import clone_voice
from semtts.speaker_consistency import SpeakerConsistencyLoss
from semtts.stages.train import train, training_vectors
from semtts.text.tokenizer import TokenList

DIM = 8
SEED = 1234  # write_corpus_yaml's seed: stage 3's random-init identity is random-init-seed1234
SPLITS = {
    "train": ["a_0", "a_1", "a_2", "b_0", "b_1", "b_2"],
    "valid": ["a_3"],
    "test_unseen": ["c_0", "c_1", "c_2"],
}
SKIPPED = {"b_2": "too short (0.200 s < 0.3 s)", "c_0": "too short (0.100 s < 0.3 s)"}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """A corpus.yaml (speaker_mode speaker) whose experiment folder holds
    stage-2 and stage-3 outputs: random 8-d embeddings, two skipped items."""
    folder = tmp_path_factory.mktemp("exp")
    corpus = write_corpus_yaml(folder)
    with open(corpus, "a", encoding="utf-8") as f:
        f.write(f"data_folder: {folder / 'audio'}\nspeaker_mode: speaker\ncampplus_ckpt: null\n"
                f"campplus_embed_dim: {DIM}\nallow_random_init: True\ncampplus_cache_dir: {folder / 'cache'}\n")
    output = folder / "exp"
    tokens = output / "tokens"
    TokenList.build([["a", "b", "c"]]).save(tokens / "tokens.txt")
    items = {}
    for split, utts in SPLITS.items():
        manifest = {u: {"wav": f"{{data_root}}/{u}.wav", "text": "abc", "spk": u[0], "duration": 1.0,
                        "sr": 22050, "tokens": [3, 4, 5]} for u in utts}
        write_manifest(tokens / f"{split}.json", manifest)
        items.update(manifest)
    write_json_atomic(tokens / "done", {"settings": {}})
    rng = np.random.default_rng(0)
    vectors = {u: rng.standard_normal(DIM).astype(np.float32) for u in items if u not in SKIPPED}
    spk_emb = output / "spk_emb"
    for utt_id, vector in vectors.items():
        save_array_atomic(feature_path(spk_emb, utt_id), vector)
    for utt_id, reason in SKIPPED.items():
        write_json_atomic(feature_path(spk_emb, utt_id, SKIP_SUFFIX), {"reason": reason})
    write_speaker_outputs(items, spk_emb, speaker_metadata(f"random-init-seed{SEED}", DIM))
    write_json_atomic(spk_emb / "done", {"settings": {}})
    return corpus, vectors


def _hparams(corpus: Path) -> dict:
    from semtts.stages.common import load_hparams

    return load_hparams(str(corpus))


# ---------------------------------------------------------------------------
# Start-up check
# ---------------------------------------------------------------------------


@pytest.fixture
def nothing_is_built(monkeypatch):
    """Building a generator fails the test: the check must come first."""
    from semtts.lobes.vits.synthesizer import VITSSynthesizer

    def refuse(*args, **kwargs):
        raise AssertionError("the generator was built before the start-up check")

    monkeypatch.setattr(VITSSynthesizer, "__init__", refuse)


@pytest.mark.parametrize("flag, message", [
    (["--campplus_embed_dim", "16"], "embed_dim is 8 there but 16 in the hparams"),
    (["--seed", "7"], "ckpt_sha256 is 'random-init-seed1234' there but 'random-init-seed7' in the hparams"),
])
def test_metadata_mismatch_fails_at_startup_naming_both_sides(experiment, nothing_is_built, flag, message):
    corpus, _ = experiment
    with pytest.raises(ConfigError, match=message) as err:
        train("A", [str(corpus), *flag])
    assert "spk_emb/meta.json" in str(err.value) and "\n" not in str(err.value)
    assert not (corpus.parent / "exp" / "stage_A").exists()


def test_stage_3_not_run_is_a_clear_error(experiment, nothing_is_built, tmp_path, capsys):
    from semtts.stages.train_a import main

    corpus, _ = experiment
    other = tmp_path / "corpus.yaml"
    other.write_text(corpus.read_text().replace(f"output_folder: {corpus.parent / 'exp'}",
                                                f"output_folder: {tmp_path / 'exp'}"))
    (tmp_path / "exp").mkdir()
    with pytest.raises(SystemExit) as stop:
        main([str(other)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "stage 3 (CAM++ speaker embeddings) has not run" in err


# ---------------------------------------------------------------------------
# Speaker vectors of the data pipeline
# ---------------------------------------------------------------------------


def test_dataset_yields_speaker_means_or_utterance_vectors(experiment, capsys):
    corpus, emb = experiment
    hp = _hparams(corpus)
    vectors = SpeakerVectors.load(hp)
    tokens = Path(hp["output_folder"]) / "tokens"
    manifests = {split: tokens / f"{split}.json" for split in ("train", "valid")}
    mean_a = np.mean([emb["a_0"], emb["a_1"], emb["a_2"]], axis=0)  # training utterances only (not a_3)
    mean_b = np.mean([emb["b_0"], emb["b_1"]], axis=0)
    expected = {
        "speaker": {"a_0": mean_a, "a_3": mean_a, "b_0": mean_b, "b_2": mean_b},
        "utterance": {"a_0": emb["a_0"], "a_3": emb["a_3"], "b_0": emb["b_0"]},
    }
    for mode, wanted in expected.items():
        embeds = training_vectors(vectors, manifests, mode)
        logged = capsys.readouterr().out
        datasets = dataio_prepare(manifests, hp["data_folder"], "", 22050, True, spk_embeds=embeds)
        got = {}
        for dataset in datasets.values():
            dataset.set_output_keys(["id", "spk_embed"])
            got.update({item["id"]: item["spk_embed"] for item in dataset})
        for utt_id, vector in wanted.items():
            assert torch.allclose(got[utt_id], torch.from_numpy(vector), atol=1e-6), (mode, utt_id)
        if mode == "utterance":  # b_2 has no embedding of its own: dropped, counted, logged
            assert "b_2" not in got and len(datasets["train"]) == 5
            assert "train: 1 of 6 utterances have no speaker vector and are left out (e.g. b_2: too short" in logged
        else:
            assert len(datasets["train"]) == 6 and not logged
        batch = PaddedBatch([datasets["train"][0], datasets["train"][1]])
        assert batch.spk_embed.data.shape == (2, DIM) and batch.spk_embed.data.dtype == torch.float32


def test_an_item_stage_3_never_saw_is_an_error(experiment):
    vectors = SpeakerVectors.load(_hparams(experiment[0]))
    with pytest.raises(DataError, match="new_1: no speaker embedding and no skip record"):
        vectors.conditioning({"a_0": {"spk": "a"}, "new_1": {"spk": "a"}}, "speaker")


def test_synthesis_references(experiment):
    corpus, emb = experiment
    vectors = SpeakerVectors.load(_hparams(corpus))
    tokens = Path(corpus.parent / "exp" / "tokens")
    train_items = json.loads((tokens / "train.json").read_text())
    items = {**json.loads((tokens / "test_unseen.json").read_text()), "a_3": {"spk": "a"}}
    # speaker mode, first_utterance: seen a by its training mean, unseen c by c_1 (c_0 was skipped)
    got, refs = vectors.references(items, "speaker", "first_utterance", train_items)
    assert refs["a_3"] == {"spk": "a", "reference": "train_mean", "reference_utt": None}
    assert {refs[u]["reference_utt"] for u in ("c_0", "c_1", "c_2")} == {"c_1"}
    assert all(torch.equal(got[u], torch.from_numpy(emb["c_1"])) for u in ("c_0", "c_1", "c_2"))
    # utterance mode: a seen speaker's first training utterance
    got, refs = vectors.references(items, "utterance", "first_utterance", train_items)
    assert refs["a_3"]["reference_utt"] == "a_0" and torch.equal(got["a_3"], torch.from_numpy(emb["a_0"]))
    # speaker_mean: stage 3's mean of the unseen speaker
    got, refs = vectors.references(items, "speaker", "speaker_mean", train_items)
    assert refs["c_2"]["reference"] == "speaker_mean"
    assert torch.allclose(got["c_2"], torch.from_numpy((emb["c_1"] + emb["c_2"]) / 2), atol=1e-6)
    with pytest.raises(ConfigError, match="synth_reference must be one of"):
        vectors.references(items, "speaker", "random", train_items)


# ---------------------------------------------------------------------------
# Zero-shot synthesis from a wav path
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> SpeakerEmbedder:
    return SpeakerEmbedder.from_checkpoint(None, embed_dim=DIM, allow_random_init=True, seed=SEED)


def _generator(tmp_path: Path, spk_embed_dim: int = DIM, n_speakers: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    hp = load_tiny_hparams(write_corpus_yaml(tmp_path), {"spk_embed_dim": spk_embed_dim}, n_speakers=n_speakers)
    return hp["generator"]


def test_clone_voice_from_a_wav_path(tmp_path, embedder):
    generator = _generator(tmp_path).eval()
    reference = tmp_path / "reference.wav"
    save_audio(reference, synthetic_items(1, 16000, 3)[0]["sig"], 16000)  # any rate: resampled inside
    out = clone_voice(generator, [3, 4, 5, 6], reference, embedder, sample_rate=22050)
    assert out.sample_rate == 22050 and out.waveform.dim() == 1
    assert torch.isfinite(out.waveform).all() and out.waveform.abs().max() > 1e-4
    assert out.durations.shape == (9,) and (out.durations >= 0).all()  # blanks interspersed
    assert out.waveform.shape[0] == int(out.durations.sum()) * 256
    assert torch.allclose(out.spk_embed, embedder.embed_file(reference), atol=1e-5)
    with pytest.raises(ConfigError, match="embedder gives 8-d vectors but the generator takes 16-d"):
        clone_voice(_generator(tmp_path / "g16", 16), [3], reference, embedder, sample_rate=22050)
    with pytest.raises(ConfigError, match="not conditioned on speaker vectors"):
        clone_voice(_generator(tmp_path / "sid", 0, 2), [3], reference, embedder, sample_rate=22050)
    with pytest.raises(DataError, match="missing.wav: reference recording not found"):
        clone_voice(generator, [3], tmp_path / "missing.wav", embedder, sample_rate=22050)


# ---------------------------------------------------------------------------
# Speaker-consistency loss
# ---------------------------------------------------------------------------


def test_speaker_consistency_gives_generator_gradients(tmp_path, embedder):
    generator = _generator(tmp_path).train()
    loss = SpeakerConsistencyLoss(embedder.model, sample_rate=22050, weight=1.0)
    items = synthetic_items(2, 4096, 5)
    batch = PaddedBatch([{**item, "spk_embed": torch.randn(DIM)} for item in items])
    from semtts.audio import SpectrogramConfig

    spec = SpectrogramConfig(22050, 1024, 256, 1024, 80).linear_spectrogram(batch.sig.data)
    out = generator(batch.token_ids.data, torch.tensor([5, 5]), spec, torch.tensor([16, 16]),
                    spk_embed=batch.spk_embed.data)
    real = batch.sig.data.unsqueeze(1)  # the one window of a 4096-sample item is the whole item
    value = loss(out.waveform, real)
    assert value.shape == () and torch.isfinite(value) and 0 < float(value.detach()) <= 2
    value.backward()
    grads = [p.grad for p in generator.decoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in loss.campplus.parameters())  # CAM++ is frozen
    assert float(loss(real, real)) == pytest.approx(0.0, abs=1e-6)
    assert not loss.train().campplus.training


def test_brain_loads_campplus_only_when_c_spk_is_positive(tmp_path, monkeypatch):
    import semtts.speaker_consistency as module

    real_loader = module.load_campplus
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return real_loader(*args, **kwargs)

    monkeypatch.setattr(module, "load_campplus", counting)
    cpu = {"device": "cpu", "noprogressbar": True}
    hp = load_tiny_hparams(write_corpus_yaml(tmp_path / "off"))
    assert hp["c_spk"] == 0.0
    assert build_brain(hp, cpu).speaker_loss is None and calls == []

    torch.manual_seed(0)
    hp = load_tiny_hparams(write_corpus_yaml(tmp_path / "on"), {"c_spk": 0.5})
    hp.update(campplus_ckpt=None, campplus_embed_dim=DIM, allow_random_init=True,
              campplus_cache_dir=str(tmp_path / "cache"))
    brain = build_brain(hp, cpu)
    assert len(calls) == 1 and brain.speaker_loss.weight == 0.5
    brain.on_fit_start()
    brain.modules.train()
    brain.fit_batch(PaddedBatch(synthetic_items(2, 4096, 5)))
    assert torch.isfinite(brain.step_stats["spk"]) and torch.isfinite(brain.step_stats["loss_g"])
    assert not brain.speaker_loss.campplus.training
    in_optimizer = {id(p) for group in brain.optimizer_g.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in brain.speaker_loss.parameters()}
