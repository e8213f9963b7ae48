"""ONNX export of the synthesis graph and the ONNX Runtime runner (CPU, tiny
packed generators from tests/test_pack_cli.py's helpers, random CAM++)."""

import numpy as np
import pytest

from semtts.errors import DataError
from semtts.lobes.vits.semantic_vits import SemanticVITS
from semtts.onnx_export import SynthesisGraph, compare_with_pytorch, export_onnx, export_packed_model
from semtts.onnx_runtime import OnnxSynthesizer
from semtts.pack import pack_model
from semtts.pretrained import SemTTS
from test_pack_cli import FRONTEND, packed, run_cli, tiny, wavs  # noqa: F401 (fixtures)

pytest.importorskip("onnxruntime")


def test_packed_export_matches_pytorch(packed, wavs):  # noqa: F811
    result = export_packed_model(packed)
    assert result["inputs"] == ["tokens", "token_lengths", "spk_embed", "scales"]
    assert result["lengths_equal"] and result["runs"] == 6
    assert result["max_abs_diff"] < 1e-3

    onnx_tts, torch_tts = OnnxSynthesizer.from_folder(packed), SemTTS.from_hparams(packed)
    texts = ["hello there.", "a somewhat longer sentence to say"]
    for kwargs in ({"speaker": "spk1"}, {"speaker_wav": wavs["a"]}):
        ours, sr = onnx_tts.synthesize(texts, noise_scale=0.0, noise_scale_w=0.0, length_scale=1.3, **kwargs)
        ref, ref_sr = torch_tts.synthesize(texts, noise_scale=0.0, noise_scale_w=0.0, length_scale=1.3, **kwargs)
        assert sr == ref_sr == 22050
        for a, b, dur in zip(ours, ref, onnx_tts.last_durations):
            assert a.shape == tuple(b.shape) == (int(dur.sum()) * 256,)
            assert np.abs(a - b.numpy()).max() < 1e-3
    # with noise the graph samples: finite, and two runs differ
    first, _ = onnx_tts.synthesize("hello there.", speaker="spk0")
    second, _ = onnx_tts.synthesize("hello there.", speaker="spk0")
    assert np.isfinite(first[0]).all() and first[0].std() > 0
    assert first[0].shape != second[0].shape or not np.array_equal(first[0], second[0])
    # a diverged model's non-finite audio is refused, naming the text, not returned
    run = onnx_tts.run
    onnx_tts.run = lambda *args: (lambda out: (out[0] * np.float32("nan"), *out[1:]))(run(*args))
    with pytest.raises(DataError, match=r"non-finite audio for text 0 \(its weights may have diverged"):
        onnx_tts.synthesize("hello there.", speaker="spk0")


def test_sid_and_semantic_generators(tmp_path):
    hp, _ = tiny("sid")
    generator = hp["generator"].eval()
    path = export_onnx(generator, tmp_path / "sid.onnx")
    assert SynthesisGraph(generator).input_names == ["tokens", "token_lengths", "sid", "scales"]
    result = compare_with_pytorch(generator, path, token_counts=(2, 29), length_scale=1.6)
    assert result["lengths_equal"] and result["max_abs_diff"] < 1e-3
    assert not any("parametrizations" in k for k in generator.state_dict())  # folded in place, as documented

    hp, _ = tiny("speaker")
    semantic = {"use_sempred": True, "use_adapter": True, "sempred_hidden": 16, "sempred_kernel_size": 3,
                "sempred_layers": 1, "sempred_dropout": 0.0, "adapter_heads": 2, "adapter_dropout": 0.0,
                "adapter_gate_init": 0.5}
    generator = SemanticVITS(hp["generator"], 12, **semantic).eval()
    path = export_onnx(generator, tmp_path / "c.onnx")
    result = compare_with_pytorch(generator, path, token_counts=(5, 33))
    assert result["lengths_equal"] and result["max_abs_diff"] < 1e-3


def test_cli_export_and_errors(tmp_path):
    hp, tokens = tiny("sid")
    folder = pack_model(tmp_path / "sid", hp["generator"], hp, "A", tokens, "sid", FRONTEND, speakers=["x", "y"])
    done = run_cli("export-onnx", "--model", folder, "-o", tmp_path / "out" / "g.onnx")
    assert done.returncode == 0, done.stderr
    assert "max abs difference" in done.stdout and "lengths equal" in done.stdout
    tts = OnnxSynthesizer.from_folder(folder, tmp_path / "out" / "g.onnx")
    wav, _ = tts.synthesize("hi there", speaker="y")
    assert wav[0].ndim == 1 and np.isfinite(wav[0]).all()
    with pytest.raises(DataError, match="ONNX model not found"):
        OnnxSynthesizer.from_folder(folder)  # no model.onnx in the folder itself
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    with pytest.raises(DataError, match="broken.onnx: cannot load"):
        OnnxSynthesizer.from_folder(folder, tmp_path / "broken.onnx")
    for args, expected in [(("export-onnx", "--model", tmp_path / "nope"), "model folder not found"),
                           (("export-onnx", "--model", folder, "--opset", "11"), "--opset"),
                           (("export-onnx",), "required")]:
        done = run_cli(*args)
        assert done.returncode == 2 and "Traceback" not in done.stderr and expected in done.stderr, done.stderr
    assert run_cli("export-onnx", "--help").returncode == 0


def test_a_graph_onnx_runtime_cannot_run_is_not_written(tmp_path, monkeypatch):
    # the checked export goes to its place only after ONNX Runtime ran it and it matched PyTorch
    import semtts.onnx_export as module

    hp, tokens = tiny("sid")
    folder = pack_model(tmp_path / "sid", hp["generator"], hp, "A", tokens, "sid", FRONTEND, speakers=["x", "y"])

    def unloadable(generator, path, **kwargs):
        raise DataError(f"{path}: cannot load the ONNX model (NOT_IMPLEMENTED: RandomNormalLike(22))")

    monkeypatch.setattr(module, "compare_with_pytorch", unloadable)
    with pytest.raises(DataError, match=r"model.onnx: not written: ONNX Runtime cannot run the opset 17 graph"):
        module.export_packed_model(folder)
    mismatch = {"max_abs_diff": 0.5, "lengths_equal": True, "runs": 1}
    monkeypatch.setattr(module, "compare_with_pytorch", lambda generator, path, **kwargs: mismatch)
    with pytest.raises(DataError, match="not written: the ONNX graph does not match PyTorch"):
        module.export_packed_model(folder)
    assert sorted(p.name for p in folder.iterdir() if "onnx" in p.name) == []
