"""Packed folders that hold together: the sizes a packed model is made of are
checked when packing and opening (tokens, CAM++, generator, mean
embeddings, the ONNX graph's inputs), a repack replaces the folder whole or
not at all, and `semtts eval` finds the CAM++ packed with the model from any
working directory (CPU, tiny generators, random CAM++)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import semtts.pack as pack_module
from semtts.errors import ConfigError, DataError
from semtts.evaluation.packed_eval import scoring_embedder
from semtts.pack import pack_model, read_packed_hparams, recover_interrupted_pack
from semtts.packed_model import PackedModel
from semtts.pretrained import SemTTS
from test_pack_cli import CAMPPLUS, DIM, FRONTEND, tiny

torch.set_num_threads(1)
MEANS = np.random.default_rng(0).standard_normal((2, DIM)).astype(np.float32)


def pack_speaker_model(folder: Path, means: np.ndarray = MEANS, campplus: dict = CAMPPLUS, **extra) -> Path:
    hp, tokens = tiny("speaker", **extra)
    return pack_model(folder, hp["generator"], hp, "A", tokens, "speaker", FRONTEND, speakers=["spk0", "spk1"],
                      spk_means=means, campplus=campplus, campplus_meta={"model": "campplus", "embed_dim": DIM})


@pytest.fixture(scope="module")
def speaker_model(tmp_path_factory) -> Path:
    return pack_speaker_model(tmp_path_factory.mktemp("model") / "packed")


def copy_of(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / "copy"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- 1. `semtts eval` and the packed CAM++ ------------------------------------------------------------------


def test_eval_scores_with_the_packed_campplus_from_another_directory(tmp_path, monkeypatch):
    from semtts.extract.common import file_sha256
    from semtts.lobes.campplus import CAMPPlus
    from semtts.stages.pack import campplus_source

    torch.manual_seed(3)
    ckpt = tmp_path / "campplus_test.bin"
    torch.save(CAMPPlus(embedding_size=DIM).state_dict(), ckpt)
    meta = {"model": "campplus", "embed_dim": DIM, "ckpt_sha256": file_sha256(ckpt)}
    source, path = campplus_source({"campplus_ckpt": str(ckpt), "campplus_embed_dim": DIM,
                                    "campplus_cache_dir": tmp_path / "cache"}, meta)
    hp, tokens = tiny("speaker")
    folder = pack_model(tmp_path / "exp" / "packed", hp["generator"], hp, "A", tokens, "speaker", FRONTEND,
                        speakers=["spk0", "spk1"], spk_means=MEANS, campplus=source, campplus_meta=meta,
                        campplus_file=path)
    assert read_packed_hparams(folder)["campplus"]["ckpt"] == "campplus.bin"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no campplus.bin here: the model's folder holds it
    model = SemTTS.from_hparams(source=folder)
    embedder = scoring_embedder(model)
    assert embedder.identity == meta["ckpt_sha256"] and embedder.embed_dim == DIM
    with pytest.raises(ConfigError, match="--campplus-embed-dim 192: the model's CAM\\+\\+ .* is 16-d"):
        scoring_embedder(model, embed_dim=192)


# --- 2. sizes checked when packing and opening --------------------------------------------------------------


def test_packing_checks_the_sizes(tmp_path):
    with pytest.raises(DataError, match="pack: spk_mean.npy: the mean embeddings are 8-d, but the generator's "
                                        "spk_embed_dim is 16"):
        pack_speaker_model(tmp_path / "a", means=np.ones((2, 8), np.float32))
    with pytest.raises(DataError, match="pack: the CAM\\+\\+ embed_dim is 12, but the generator's spk_embed_dim "
                                        "is 16"):
        pack_speaker_model(tmp_path / "b", campplus=CAMPPLUS | {"embed_dim": 12})
    _, tokens = tiny("sid")
    hp, _ = tiny("sid", n_vocab=len(tokens) + 1)  # a generator sized for another token list
    with pytest.raises(DataError, match=f"pack: tokens.txt holds {len(tokens)} tokens, but the generator's "
                                        f"n_vocab is {len(tokens) + 1}"):
        pack_model(tmp_path / "c", hp["generator"], hp, "A", tokens, "sid", FRONTEND, speakers=["x", "y"])
    hp, tokens = tiny("sid")
    with pytest.raises(DataError, match="speakers.json lists 3 speakers, but the generator's n_speakers is 2"):
        pack_model(tmp_path / "d", hp["generator"], hp, "A", tokens, "sid", FRONTEND, speakers=["x", "y", "z"])
    assert not any(tmp_path.iterdir())  # nothing written


def test_opening_checks_the_sizes(speaker_model, tmp_path):
    copy = copy_of(speaker_model, tmp_path)
    np.save(copy / "spk_mean.npy", np.ones((2, 8), np.float32))
    with pytest.raises(DataError, match="spk_mean.npy: the mean embeddings are 8-d, but the generator's "
                                        "spk_embed_dim is 16"):
        SemTTS.from_hparams(source=copy)
    np.save(copy / "spk_mean.npy", MEANS)
    assert SemTTS.from_hparams(source=copy).spk_means.shape == (2, DIM)

    packed = yaml.safe_load((copy / "hyperparams.yaml").read_text())
    packed["campplus"]["embed_dim"] = 12
    (copy / "hyperparams.yaml").write_text(yaml.safe_dump(packed))
    with pytest.raises(DataError, match="hyperparams.yaml: the CAM\\+\\+ embed_dim is 12, but the generator's "
                                        "spk_embed_dim is 16"):
        SemTTS.from_hparams(source=copy)
    packed["campplus"]["embed_dim"] = DIM
    (copy / "hyperparams.yaml").write_text(yaml.safe_dump(packed))

    lines = (copy / "tokens.txt").read_text(encoding="utf-8").splitlines()
    (copy / "tokens.txt").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"tokens.txt holds {len(lines) - 1} tokens, but the generator's n_vocab "
                                        f"is {len(lines)}"):
        SemTTS.from_hparams(source=copy)


def tiny_graph(path: Path, dim: int) -> Path:
    """A stand-in synthesis graph with the exported graph's inputs (outputs: its inputs passed through)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "n_tokens"]),
              helper.make_tensor_value_info("token_lengths", TensorProto.INT64, ["batch"]),
              helper.make_tensor_value_info("spk_embed", TensorProto.FLOAT, ["batch", dim]),
              helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3])]
    pairs = [("spk_embed", "waveform", TensorProto.FLOAT), ("token_lengths", "wav_lengths", TensorProto.INT64),
             ("tokens", "durations", TensorProto.INT64)]
    nodes = [helper.make_node("Identity", [src], [dst]) for src, dst, _ in pairs]
    outputs = [helper.make_tensor_value_info(dst, kind, None) for _, dst, kind in pairs]
    model = helper.make_model(helper.make_graph(nodes, "tiny", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_inputs_are_checked_against_the_graph(speaker_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from semtts.onnx_runtime import OnnxSynthesizer, onnx_session

    folder, packed, frontend = PackedModel.open(speaker_model)
    graph = tiny_graph(tmp_path / "tiny.onnx", DIM)
    runner = OnnxSynthesizer(folder, packed, frontend, onnx_session(graph), graph)
    tokens, lengths = np.ones((1, 5), np.int64), np.array([5], np.int64)
    _, wav_lengths, _ = runner.run(tokens, lengths, {"spk_embed": np.zeros((1, DIM), np.float32)})
    assert wav_lengths.tolist() == [5]  # a fitting batch runs
    with pytest.raises(DataError, match="tiny.onnx: the ONNX input 'spk_embed' takes shape \\[batch, 16\\], "
                                        "got \\[1, 8\\]"):
        runner.run(tokens, lengths, {"spk_embed": np.zeros((1, 8), np.float32)})
    with pytest.raises(DataError, match="the ONNX input 'tokens' takes shape \\[batch, n_tokens\\], got \\[5\\]"):
        runner.run(tokens[0], lengths, {"spk_embed": np.zeros((1, DIM), np.float32)})
    with pytest.raises(DataError, match="the ONNX input 'spk_embed' has batch 2, but 'tokens' has 1"):
        runner.run(tokens, lengths, {"spk_embed": np.zeros((2, DIM), np.float32)})

    other = tiny_graph(tmp_path / "other.onnx", 8)
    with pytest.raises(DataError, match="other.onnx: the graph's 'spk_embed' input is 8-d, but the generator's "
                                        "spk_embed_dim is 16"):
        OnnxSynthesizer.from_folder(speaker_model, other)


# --- 3. a repack replaces the folder whole or not at all ---------------------------------------------------


def repack_with_other_weights(folder: Path) -> Path:
    hp, tokens = tiny("sid")
    with torch.no_grad():
        for param in hp["generator"].parameters():
            param.add_(0.01)
    return pack_model(folder, hp["generator"], hp, "A", tokens, "sid", FRONTEND, speakers=["spk0", "spk1"])


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def test_a_failed_repack_leaves_the_old_folder(tmp_path, monkeypatch):
    hp, tokens = tiny("sid")
    folder = pack_model(tmp_path / "packed", hp["generator"], hp, "A", tokens, "sid", FRONTEND,
                        speakers=["spk0", "spk1"])
    before = snapshot(folder)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    with monkeypatch.context() as patch:  # fails after the weights are written
        patch.setattr(pack_module, "write_json_atomic", disk_full)
        with pytest.raises(OSError, match="No space left"):
            repack_with_other_weights(folder)
    assert snapshot(folder) == before and siblings(folder) == ["packed"]

    real_rename = os.rename

    def killed_at_the_swap(src, dst):
        if ".tmp-" in str(src):
            raise OSError("simulated failure at the swap")
        return real_rename(src, dst)

    with monkeypatch.context() as patch:  # the old folder was already moved aside: it is put back
        patch.setattr(os, "rename", killed_at_the_swap)
        with pytest.raises(OSError, match="simulated failure"):
            repack_with_other_weights(folder)
    assert snapshot(folder) == before and siblings(folder) == ["packed"]
    model = SemTTS.from_hparams(source=folder)
    assert torch.isfinite(model.synthesize("hi there", speaker="spk1")[0][0]).all()

    (folder / "notes.txt").write_text("kept")
    (folder / "model.onnx").write_bytes(b"an old graph")
    (folder / "done").write_text(json.dumps({"settings": {}}))
    repack_with_other_weights(folder)
    assert (folder / "notes.txt").read_text() == "kept"  # another file is carried over
    assert not (folder / "model.onnx").exists() and not (folder / "done").exists()
    assert snapshot(folder)["generator.pt"] != before["generator.pt"] and siblings(folder) == ["packed"]


def test_an_interrupted_swap_is_undone(tmp_path):
    hp, tokens = tiny("sid")
    folder = pack_model(tmp_path / "packed", hp["generator"], hp, "A", tokens, "sid", FRONTEND,
                        speakers=["spk0", "spk1"])
    before = snapshot(folder)
    # killed between moving the old folder aside and renaming the new one in
    folder.rename(tmp_path / "packed.old-123")
    (tmp_path / "packed.tmp-124").mkdir()
    (tmp_path / "packed.tmp-124" / "generator.pt").write_bytes(b"half")
    with pytest.raises(DataError, match="packed: model folder not found \\(an interrupted repack left .*"
                                        "packed.old-123: run stage 10 again"):
        SemTTS.from_hparams(source=folder)
    assert recover_interrupted_pack(folder)
    assert snapshot(folder) == before and siblings(folder) == ["packed"]
    # killed after the new folder went in, before the old one was deleted
    (tmp_path / "packed.old-125").mkdir()
    assert not recover_interrupted_pack(folder) and siblings(folder) == ["packed"]
    SemTTS.from_hparams(source=folder)
