"""Bad input to the packed-model runners and the `semtts` CLI: one-line errors
(exit status 2), never a traceback; unusable reference recordings are refused;
`convert --seed` is reproducible; outputs are named as asked (tiny CPU model
built from hparams/model/vits_tiny.yaml, random CAM++; no training)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from semtts import cli
from semtts.audio import load_audio, read_checked_audio, save_audio
from semtts.errors import ConfigError, DataError
from semtts.pack import pack_model
from semtts.pretrained import SemTTS
from semtts.text.frontend import Frontend
from semtts.text.tokenizer import TokenList

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
torch.set_num_threads(1)
DIM, SR = 16, 22050
TEXTS = ["hello there, a short test.", "the quick brown fox jumps over the lazy dog"]
FRONTEND = {"token_type": "char", "language": "en-us", "cleaner": "english", "add_blank": True}
CAMPPLUS = {"ckpt": None, "embed_dim": DIM, "seed": 7, "random_init": True}


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    tokens = TokenList.build(Frontend("char", "en-us", "english").symbols(TEXTS))
    torch.manual_seed(0)
    with open(ROOT / "hparams/model/vits_tiny.yaml") as f:
        hp = load_hyperpyyaml(f, {"n_vocab": len(tokens), "p_dropout": 0.0, "spk_embed_dim": DIM})
    means = np.random.default_rng(0).standard_normal((2, DIM)).astype(np.float32)
    return pack_model(tmp_path_factory.mktemp("model") / "packed", hp["generator"], hp, "A", tokens, "speaker",
                      FRONTEND, speakers=["spk0", "spk1"], spk_means=means, campplus=CAMPPLUS,
                      campplus_meta={"model": "campplus", "embed_dim": DIM}, corpus="unit")


@pytest.fixture(scope="module")
def model(packed) -> SemTTS:
    return SemTTS.from_hparams(packed)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("wavs")
    t = torch.arange(SR) / SR
    tone = 0.3 * torch.sin(2 * torch.pi * 180 * t) + 0.02 * torch.randn_like(t)
    files = {"good": tone, "silent": torch.zeros(SR), "anti_phase": torch.stack([tone, -tone]),
             "short_30ms": tone[:int(0.03 * SR)]}
    paths = {}
    for name, audio in files.items():
        save_audio(folder / f"{name}.wav", audio, SR)
        paths[name] = folder / f"{name}.wav"
    save_audio(folder / "short_10ms.wav", 0.3 * torch.randn(160), 16000)
    paths["short_10ms"] = folder / "short_10ms.wav"
    return paths


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semtts.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=180, env=ENV)


def main_status(capsys, *args) -> tuple[int, str]:
    """Run ``semtts`` in this process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in args])
    return exit_info.value.code, capsys.readouterr().err


def assert_one_line(status: int, stderr: str, expected: str) -> None:
    assert status == 2, stderr
    assert "Traceback" not in stderr and expected in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


# 1. errors whose text is empty --------------------------------------------------------------------------------


def test_empty_error_text_read_audio(monkeypatch, wavs):
    def fail(*args, **kwargs):
        raise RuntimeError("")

    monkeypatch.setattr("semtts.audio.io.load_audio", fail)
    with pytest.raises(DataError, match=r"good.wav: cannot read the reference recording \(RuntimeError\)"):
        read_checked_audio(wavs["good"], "reference recording")


def test_empty_error_text_write_output(monkeypatch, tmp_path):
    def fail(*args, **kwargs):
        raise OSError()

    monkeypatch.setattr("semtts.audio.save_audio", fail)
    with pytest.raises(DataError, match=r"x.wav: cannot write the output \(OSError\)"):
        cli._write(tmp_path / "x.wav", torch.zeros(10), SR)


def test_empty_error_text_onnx_session(monkeypatch, tmp_path):
    ort = pytest.importorskip("onnxruntime")

    def fail(*args, **kwargs):
        raise Exception("  ")

    monkeypatch.setattr(ort, "InferenceSession", fail)
    (tmp_path / "m.onnx").write_bytes(b"")
    from semtts.onnx_runtime import onnx_session

    with pytest.raises(DataError, match=r"m.onnx: cannot load the ONNX model \(Exception\)"):
        onnx_session(tmp_path / "m.onnx")


def test_empty_error_text_load_weights(monkeypatch, packed):
    def fail(*args, **kwargs):
        raise RuntimeError("")

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", fail)
    with pytest.raises(DataError, match=r"weights do not fit hyperparams.yaml \(RuntimeError\)"):
        SemTTS.from_hparams(packed)


# 2. unusable reference recordings ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [("silent", "is silent"), ("anti_phase", "is silent"),
                                            ("short_30ms", "is shorter than 300 ms"),
                                            ("short_10ms", "is shorter than 300 ms")])
def test_unusable_reference_is_refused(model, wavs, name, expected):
    with pytest.raises(DataError, match=rf"{name}.wav: the reference recording {expected}"):
        model.synthesize(["hi there"], speaker_wav=wavs[name])
    with pytest.raises(DataError, match=rf"{name}.wav: the target reference recording {expected}"):
        model.convert_voice(wavs["good"], target_wav=wavs[name])


def test_unusable_source_is_refused(model, wavs):
    with pytest.raises(DataError, match=r"silent.wav: the source recording is silent"):
        model.convert_voice(wavs["silent"], target_speaker="spk1")


def test_short_reference_cli_names_the_file(packed, wavs, tmp_path):
    done = run_cli("synth", "--model", packed, "--text", "hi there", "--speaker-wav", wavs["short_10ms"],
                   "-o", tmp_path / "x.wav")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]  # after CAM++'s warning
    assert len(errors) == 1 and "short_10ms.wav: the reference recording is shorter" in errors[0], done.stderr
    assert not (tmp_path / "x.wav").exists()


# 3. convert --seed ---------------------------------------------------------------------------------------------


def test_convert_seed_is_reproducible(packed, wavs, tmp_path):
    outputs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        done = run_cli("convert", "--model", packed, "--source", wavs["good"], "--target-speaker", "spk1",
                       "--seed", seed, "-o", tmp_path / f"{name}.wav")
        assert done.returncode == 0, done.stderr
        outputs[name] = load_audio(tmp_path / f"{name}.wav")[0]
    assert torch.equal(outputs["a"], outputs["b"])
    assert not torch.equal(outputs["a"], outputs["c"])


# 4. bad flag values --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, value", [("--length-scale", "-1"), ("--length-scale", "nan"), ("--length-scale", "0"),
                                         ("--length-scale", "1e6"), ("--length-scale", "abc"),
                                         ("--noise-scale", "-0.1"), ("--noise-scale", "inf"),
                                         ("--noise-scale-w", "nan")])
def test_bad_scales(capsys, packed, tmp_path, flag, value):
    status, stderr = main_status(capsys, "synth", "--model", packed, "--text", "hi", f"{flag}={value}",
                                 "-o", tmp_path / "x.wav")
    assert_one_line(status, stderr, flag)
    assert not (tmp_path / "x.wav").exists()


def test_scales_library(model):
    from semtts.inference import check_scales

    for kwargs in ({"length_scale": 0.0}, {"length_scale": float("nan")}, {"length_scale": 11.0},
                   {"noise_scale": -1.0}, {"noise_scale_w": float("inf")}, {"length_scale": "1"}):
        with pytest.raises(ConfigError, match=next(iter(kwargs))):
            check_scales(**kwargs)
        with pytest.raises(ConfigError, match=next(iter(kwargs))):
            model.synthesize(["hi there"], **kwargs)
    check_scales(length_scale=10.0, noise_scale=0.0, noise_scale_w=np.float32(0.5))


def unavailable_cuda() -> str:
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda:0"


def test_bad_device(capsys, packed, wavs, tmp_path):
    for device, expected in (("foo", "not a device"), (unavailable_cuda(), "cuda"), ("meta", "not supported")):
        status, stderr = main_status(capsys, "synth", "--model", packed, "--text", "hi", "--device", device,
                                     "-o", tmp_path / "x.wav")
        assert_one_line(status, stderr, f"--device: '{device}'")
        assert expected in stderr
        status, stderr = main_status(capsys, "convert", "--model", packed, "--source", wavs["good"],
                                     "--target-speaker", "spk0", "--device", device, "-o", tmp_path / "x.wav")
        assert_one_line(status, stderr, "--device")
    with pytest.raises(ConfigError, match="run_opts device"):
        SemTTS.from_hparams(packed, run_opts={"device": unavailable_cuda()})
    from semtts.pretrained import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_flags_in_a_subprocess(packed, tmp_path):
    for args, expected in [
        (("synth", "--model", packed, "--text", "hi", "--device", "foo", "-o", tmp_path / "x.wav"), "--device"),
        (("synth", "--model", packed, "--text", "hi", "--length-scale", "-1", "-o", tmp_path / "x.wav"),
         "--length-scale"),
        (("export-onnx", "--model", packed, "--opset", "30"), "--opset"),
    ]:
        done = run_cli(*args)
        assert_one_line(done.returncode, done.stderr, expected)


def test_export_onnx_bad_output_and_opset(capsys, packed, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    unwritable = ["/proc/x.onnx"] if Path("/proc").is_dir() else []
    for output in [*unwritable, tmp_path / "file.txt" / "x.onnx"]:
        status, stderr = main_status(capsys, "export-onnx", "--model", packed, "-o", output, "--no-check")
        assert_one_line(status, stderr, f"{output}: cannot write the ONNX model")
    for opset in ("30", "16", "x"):
        status, stderr = main_status(capsys, "export-onnx", "--model", packed, "-o", tmp_path / "m.onnx",
                                     "--opset", opset)
        assert_one_line(status, stderr, "--opset")
    assert not (tmp_path / "m.onnx").exists()


# 5. output names -----------------------------------------------------------------------------------------------


def test_output_paths():
    assert cli.output_paths("out.flac", 1) == [Path("out.flac")]
    assert cli.output_paths("d/out.ogg", 2, [2, 5]) == [Path("d/out_0002.ogg"), Path("d/out_0005.ogg")]
    assert cli.output_paths("out", 2, [1, 3]) == [Path("out/0001.wav"), Path("out/0003.wav")]
    with pytest.raises(ConfigError, match=r"out.m4a: cannot write .m4a"):
        cli.output_paths("out.m4a", 1)


def test_single_text_to_flac_and_numbering_by_line(packed, tmp_path):
    done = run_cli("synth", "--model", packed, "--text", "hi there", "-o", tmp_path / "out.flac")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.flac").is_file()
    audio, sr = load_audio(tmp_path / "out.flac")
    assert sr == SR and audio.numel() > 0

    lines = tmp_path / "lines.txt"
    lines.write_text("first line.\n\n   \nfourth line here.\n")
    done = run_cli("synth", "--model", packed, "--text-file", lines, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0001.wav", "0004.wav"]
    assert "line number" in run_cli("synth", "--help").stdout


def test_unsupported_audio_suffix(capsys, packed, tmp_path):
    status, stderr = main_status(capsys, "synth", "--model", packed, "--text", "hi", "-o", tmp_path / "out.m4a")
    assert_one_line(status, stderr, "out.m4a")
    assert not (tmp_path / "out.m4a").exists()


# 6. run_opts ---------------------------------------------------------------------------------------------------


def test_unknown_run_opts(packed):
    from semtts.pretrained import check_run_opts

    with pytest.raises(ConfigError, match=r"unknown key 'devcie' \(did you mean 'device'\?\); valid keys: "
                                          r"cuda_graphs, device"):
        SemTTS.from_hparams(packed, run_opts={"devcie": "cpu"})
    with pytest.raises(ConfigError, match="cuda_graphs must be True or False"):
        SemTTS.from_hparams(packed, run_opts={"cuda_graphs": "no"})
    with pytest.raises(ConfigError, match="run_opts must be a dict"):
        check_run_opts(["device"])
    assert check_run_opts({"device": "cpu", "cuda_graphs": False})["cuda_graphs"] is False
