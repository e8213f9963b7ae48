"""Packing (stage 10's folder), the SemTTS interface and the `semtts` CLI
(CPU, tiny generators built from hparams/model/vits_tiny.yaml, random CAM++;
no recipe run, no training)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from semtts.audio import load_audio, save_audio
from semtts.errors import ConfigError, DataError
from semtts.extract.speaker import SpeakerEmbedder
from semtts.lobes.vits.semantic_vits import SemanticVITS
from semtts.pack import SEMANTIC_KEYS, load_weights, pack_model, read_packed_hparams
from semtts.pretrained import SemTTS
from semtts.text.frontend import Frontend
from semtts.text.tokenizer import TokenList

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: threads only contend on a shared CPU
torch.set_num_threads(1)
DIM, SEED = 16, 7
TEXTS = ["hello there, a short test.", "the quick brown fox jumps over the lazy dog"]
FRONTEND = {"token_type": "char", "language": "en-us", "cleaner": "english", "add_blank": True}
CAMPPLUS = {"ckpt": None, "embed_dim": DIM, "seed": SEED, "random_init": True}


def tiny(speaker_mode: str, **extra) -> tuple[dict, TokenList]:
    tokens = TokenList.build(Frontend("char", "en-us", "english").symbols(TEXTS))
    overrides = {"n_vocab": len(tokens), "p_dropout": 0.0}
    overrides |= {"spk_embed_dim": DIM} if speaker_mode != "sid" else {"n_speakers": 2}
    torch.manual_seed(0)
    with open(ROOT / "hparams/model/vits_tiny.yaml") as f:
        hp = load_hyperpyyaml(f, overrides | extra)
    return hp, tokens


def write_wav(path: Path, seconds: float, freq: float) -> Path:
    t = torch.arange(int(22050 * seconds)) / 22050
    save_audio(path, 0.3 * torch.sin(2 * torch.pi * freq * t) + 0.02 * torch.randn_like(t), 22050)
    return path


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    hp, tokens = tiny("speaker")
    means = np.random.default_rng(0).standard_normal((2, DIM)).astype(np.float32)
    return pack_model(tmp_path_factory.mktemp("model") / "packed", hp["generator"], hp, "A", tokens, "speaker",
                      FRONTEND, speakers=["spk0", "spk1"], spk_means=means, campplus=CAMPPLUS,
                      campplus_meta={"model": "campplus", "embed_dim": DIM}, training={"epoch": 3, "step": 42},
                      corpus="unit")


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("wavs")
    return {"a": write_wav(folder / "a.wav", 1.0, 180.0), "b": write_wav(folder / "b.wav", 0.8, 420.0)}


def test_packed_folder(packed):
    names = {p.name for p in packed.iterdir()}
    assert {"hyperparams.yaml", "generator.pt", "tokens.txt", "speakers.json", "spk_mean.npy",
            "campplus_meta.json", "MODEL_CARD.md"} <= names
    card = (packed / "MODEL_CARD.md").read_text()
    assert "random weights" in card and "step 42" in card and "unit" in card
    hp = read_packed_hparams(packed)
    assert hp["speaker_mode"] == "speaker" and hp["campplus"]["seed"] == SEED
    state = load_weights(packed)
    assert not any("weight_g" in k or "parametrizations" in k for k in state)  # weight norm folded


def test_synthesize_clone_convert(packed, wavs):
    model = SemTTS.from_hparams(source=packed)
    torch.manual_seed(0)
    out, sr = model.synthesize(TEXTS, speaker="spk1")
    assert sr == 22050 and len(out) == 2
    hop = model.spectrogram.hop_length
    for wav, durations in zip(out, model.last_durations):
        assert torch.isfinite(wav).all() and wav.numel() == int(durations.sum()) * hop > 0
    torch.manual_seed(0)
    single, _ = model.synthesize(TEXTS[0], speaker="spk1")
    assert single[0].shape == out[0].shape  # a string is a batch of one; padding does not change durations
    clone, _ = model.clone_voice(TEXTS[0], wavs["a"])
    assert clone.dim() == 1 and clone.numel() % hop == 0 and torch.isfinite(clone).all()

    source_len = load_audio(wavs["a"])[0].shape[-1]
    to_b, sr = model.convert_voice(wavs["a"], target_wav=wavs["b"])
    to_self, _ = model.convert_voice(wavs["a"], target_wav=wavs["a"])
    to_spk, _ = model.convert_voice(wavs["a"], target_speaker="spk0")
    assert to_b.shape == to_self.shape == to_spk.shape == (source_len,) and torch.isfinite(to_b).all()
    assert (to_b - to_self).abs().max() > 1e-4  # the target conditioning reaches the decoder
    embedder = SpeakerEmbedder.from_checkpoint(None, DIM, allow_random_init=True, seed=SEED)
    assert torch.allclose(embedder.embed([load_audio(wavs["b"], mono=True)[0]], 22050),
                          model.embedder.embed([load_audio(wavs["b"], mono=True)[0]], 22050))  # same random CAM++


def test_errors(packed, wavs, tmp_path):
    model = SemTTS.from_hparams(source=packed, savedir=tmp_path / "copy")
    assert (tmp_path / "copy" / "hyperparams.yaml").is_file()
    with pytest.raises(ConfigError, match="unknown speaker 'nobody'"):
        model.synthesize(["hi"], speaker="nobody")
    with pytest.raises(DataError, match="missing.wav"):
        model.clone_voice("hi", tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(DataError, match="cannot read"):
        model.convert_voice(tmp_path / "bad.wav", target_speaker="spk0")
    with pytest.raises(ConfigError, match="exactly one"):
        model.convert_voice(wavs["a"])
    with pytest.raises(DataError, match="not found"):
        SemTTS.from_hparams(source=tmp_path / "nothing")


def test_sid_and_semantic_stage(tmp_path, wavs):
    hp, tokens = tiny("sid")
    sid_dir = pack_model(tmp_path / "sid", hp["generator"], hp, "A", tokens, "sid", FRONTEND,
                         speakers=["x", "y"])
    model = SemTTS.from_hparams(sid_dir)
    out, _ = model.synthesize(["hi there"], speaker="y")
    assert torch.isfinite(out[0]).all()
    with pytest.raises(ConfigError, match="voice cloning needs"):
        model.clone_voice("hi", wavs["a"])
    assert model.convert_voice(wavs["a"], target_speaker="y", source_speaker="x")[0].numel() == 22050

    hp, tokens = tiny("speaker")
    semantic = {"use_sempred": True, "use_adapter": True, "sempred_hidden": 16, "sempred_kernel_size": 3,
                "sempred_layers": 1, "sempred_dropout": 0.0, "adapter_heads": 2, "adapter_dropout": 0.0,
                "adapter_gate_init": 0.5}
    generator = SemanticVITS(hp["generator"], 12, **semantic)
    c_dir = pack_model(tmp_path / "c", generator, hp | semantic, "C", tokens, "speaker", FRONTEND,
                       speakers=["s"], spk_means=np.ones((1, DIM), np.float32), campplus=CAMPPLUS)
    model = SemTTS.from_hparams(c_dir)
    assert isinstance(model.generator, SemanticVITS) and model.generator.adapter is not None
    assert set(SEMANTIC_KEYS) <= set(read_packed_hparams(c_dir)["semantic"])
    assert torch.isfinite(model.synthesize("hi there")[0][0]).all()
    assert any("parametrizations" in k for k in generator.state_dict())  # packing left the caller's model as is
    with pytest.raises(ConfigError, match="do not describe"):  # hparams that do not fit the generator
        pack_model(tmp_path / "bad", generator, hp | semantic | {"hidden_channels": 48}, "C", tokens,
                   "speaker", FRONTEND, speakers=["s"], spk_means=np.ones((1, DIM), np.float32), campplus=CAMPPLUS)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semtts.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env=ENV)


def test_cli(packed, wavs, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("first line.\n\nsecond line here.\n")
    done = run_cli("synth", "--model", packed, "--text-file", lines, "--speaker-wav", wavs["a"],
                   "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0001.wav", "0003.wav"]
    done = run_cli("convert", "--model", packed, "--source", wavs["b"], "--target-speaker", "spk1",
                   "-o", tmp_path / "conv.wav")
    assert done.returncode == 0, done.stderr
    wav, sr = load_audio(tmp_path / "conv.wav")
    assert sr == 22050 and wav.shape[-1] == load_audio(wavs["b"])[0].shape[-1]
    done = run_cli("info", packed)
    assert done.returncode == 0 and "speaker mode: speaker" in done.stdout and "spk1" in done.stdout
    for args, expected in [
        (("synth", "--model", tmp_path / "nope", "--text", "hi", "-o", tmp_path / "x.wav"), "model folder not found"),
        (("synth", "--model", packed, "--text", "hi", "--speaker", "zed", "-o", tmp_path / "x.wav"), "zed"),
        (("convert", "--model", packed, "--source", tmp_path / "none.wav", "--target-speaker", "spk0",
          "-o", tmp_path / "x.wav"), "none.wav"),
        (("synth", "--model", packed, "--bogus", "-o", tmp_path / "x.wav"), "--bogus"),
        (("info",), "required"),
    ]:
        done = run_cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and expected in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert run_cli("synth", "--help").returncode == 0


def test_no_training_code_imported(packed, wavs):
    script = (
        "import sys, torch\n"
        "from semtts.pretrained import SemTTS\n"
        f"m = SemTTS.from_hparams({str(packed)!r})\n"
        "m.synthesize(['hi there'], speaker='spk0')\n"
        f"m.convert_voice({str(wavs['a'])!r}, target_speaker='spk1')\n"
        "training = ('semtts.brain', 'semtts.stages.train', 'semtts.losses', 'whisper')\n"
        "bad = [n for n in training if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=ENV)
    assert done.returncode == 0, done.stderr


def test_pretrained_campplus_travels_with_the_folder(tmp_path, wavs):
    # a "pretrained" CAM++ checkpoint (random weights saved to a file): packed into the folder,
    # so zero-shot voices work after the folder moves and the original file is gone
    from semtts.extract.common import file_sha256
    from semtts.lobes.campplus import CAMPPlus
    from semtts.stages.pack import campplus_source

    torch.manual_seed(3)
    ckpt = tmp_path / "campplus_test.bin"
    torch.save(CAMPPlus(embedding_size=DIM).state_dict(), ckpt)
    meta = {"model": "campplus", "embed_dim": DIM, "ckpt_sha256": file_sha256(ckpt)}
    hp, tokens = tiny("speaker")
    source, path = campplus_source({"campplus_ckpt": str(ckpt), "campplus_embed_dim": DIM,
                                    "campplus_cache_dir": tmp_path / "cache"}, meta)
    means = np.random.default_rng(0).standard_normal((2, DIM)).astype(np.float32)
    folder = pack_model(tmp_path / "packed", hp["generator"], hp, "A", tokens, "speaker", FRONTEND,
                        speakers=["spk0", "spk1"], spk_means=means, campplus=source, campplus_meta=meta,
                        campplus_file=path)
    assert (folder / "campplus.bin").is_file() and read_packed_hparams(folder)["campplus"]["ckpt"] == "campplus.bin"
    moved = folder.rename(tmp_path / "elsewhere")
    ckpt.unlink()
    model = SemTTS.from_hparams(source=moved)
    wave, _ = model.clone_voice("hello there.", wavs["a"])
    assert wave.numel() > 0 and model.embedder.identity == meta["ckpt_sha256"]

    # another CAM++ than stage 3's: refused when packing, and when loading a tampered folder
    other = tmp_path / "other.bin"
    torch.save(CAMPPlus(embedding_size=DIM).state_dict(), other)
    with pytest.raises(ConfigError, match="is not the CAM\\+\\+ stage 3 embedded with"):
        campplus_source({"campplus_ckpt": str(other), "campplus_embed_dim": DIM, "campplus_cache_dir": tmp_path}, meta)
    (moved / "campplus.bin").write_bytes(other.read_bytes())
    with pytest.raises(DataError, match="is not the one the model was trained with"):
        SemTTS.from_hparams(source=moved).clone_voice("hello there.", wavs["a"])


def test_repacking_removes_a_stale_onnx_graph_and_broken_files_are_named(tmp_path):
    hp, tokens = tiny("sid")
    folder = pack_model(tmp_path / "packed", hp["generator"], hp, "A", tokens, "sid", FRONTEND,
                        speakers=["spk0", "spk1"])
    (folder / "model.onnx").write_bytes(b"an old graph")
    pack_model(folder, hp["generator"], hp, "A", tokens, "sid", FRONTEND, speakers=["spk0", "spk1"])
    assert not (folder / "model.onnx").exists()  # it belonged to the weights it was exported from
    weights = next(p for p in folder.iterdir() if p.name.startswith("generator."))
    weights.write_bytes(b"")
    with pytest.raises(DataError, match=f"{weights.name}: cannot read the weights"):
        load_weights(folder)
    (folder / "hyperparams.yaml").write_bytes(b"stage: \xe9\n")
    with pytest.raises(DataError, match="hyperparams.yaml: not valid YAML"):
        read_packed_hparams(folder)


def test_broken_speaker_means_are_named(packed, tmp_path):
    import shutil

    copy = Path(shutil.copytree(packed, tmp_path / "copy"))
    (copy / "spk_mean.npy").write_bytes(b"")
    with pytest.raises(DataError, match="spk_mean.npy: cannot read the speakers' mean embeddings"):
        SemTTS.from_hparams(source=copy)
    (copy / "spk_mean.npy").unlink()
    with pytest.raises(DataError, match="spk_mean.npy: not found"):
        SemTTS.from_hparams(source=copy)
