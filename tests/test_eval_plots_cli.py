"""Evaluation plots (semtts.evaluation.plots), stage 9 writing them, and
`semtts eval` on a tiny packed model (random-init CAM++ and Whisper, CPU)."""

import json
import math
import struct
import subprocess
import sys
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_evaluation import ASR_DIMS, _fake_experiment, voice
from test_pack_cli import ENV, FRONTEND, ROOT, TEXTS, packed, tiny, write_wav  # noqa: F401 (packed: a fixture)

from semtts.audio import SpectrogramConfig, load_audio
from semtts.data.manifest import write_json_atomic, write_manifest
from semtts.errors import ConfigError, DataError, WeightsNotFound
from semtts.evaluation import packed_eval
from semtts.evaluation.packed_eval import reference_paths, scoring_embedder, synthesize_manifest
from semtts.evaluation.plots import (alignment_matrix, plot_alignment, plot_duration_histogram, plot_mel_comparison,
                                     plot_synthesized_split, read_durations)
from semtts.pack import pack_model
from semtts.pretrained import SemTTS

torch.set_num_threads(1)
SR = 22050


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG (asserting its signature and header chunk)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def test_alignment_matrix():
    durations = [2, 0, 3, 1]
    matrix = alignment_matrix(durations)
    assert matrix.shape == (4, 6)
    assert matrix.sum(0).tolist() == [1.0] * 6  # every frame belongs to exactly one token
    assert matrix.sum(1).tolist() == [2.0, 0.0, 3.0, 1.0]
    assert np.argmax(matrix, 0).tolist() == [0, 0, 2, 2, 2, 3]  # monotonic
    for bad in ([], [1, -1], [[1, 2]], [1.5, 2.0]):
        with pytest.raises(DataError, match="durations"):
            alignment_matrix(bad)


def test_plot_functions_write_pngs(tmp_path):
    ref, synth = voice(150, 0.8), voice(170, 0.6, seed=1)
    cfg = SpectrogramConfig(sample_rate=SR, n_fft=512, hop_length=128, win_length=512, n_mels=40)
    paths = [
        plot_alignment({"A": [2, 0, 3, 1, 4], "C": [1, 1, 5]}, tmp_path / "a.png", "u1"),
        plot_mel_comparison({"reference": (ref, SR), "A": (synth, SR), "C": (synth[::2], SR // 2)},
                            tmp_path / "m.png", cfg, "u1"),
        plot_duration_histogram({"A": [1, 2, 2, 3, 0], "B": [4, 4, 1]}, tmp_path / "sub" / "d.png"),
    ]
    assert paths == [tmp_path / "a.png", tmp_path / "m.png", tmp_path / "sub" / "d.png"]
    for path in paths:
        width, height = png_size(path)
        assert width > 100 and height > 100 and path.stat().st_size > 1000
    # one panel per recording: the stacked mel figure is taller than a two-panel one
    plot_mel_comparison({"reference": (ref, SR), "A": (synth, SR)}, tmp_path / "m2.png", cfg)
    assert png_size(tmp_path / "m.png")[1] > png_size(tmp_path / "m2.png")[1]
    with pytest.raises(DataError, match="too short"):
        plot_mel_comparison({"reference": (ref[:100], SR)}, tmp_path / "x.png", cfg)


def _add_durations(out: Path, stage: str, lengths: dict[str, int]) -> None:
    durations = {utt: {"durations": [(i * 7 + k) % 5 for i in range(n)], "n_samples": 0}
                 for k, (utt, n) in enumerate(lengths.items())}
    write_json_atomic(out / "synth" / stage / "test" / "durations.json", durations)


def test_plot_synthesized_split_and_stage9(tmp_path, capsys, monkeypatch):
    from semtts.stages.evaluate import main, model_spectrogram

    hparams, out = _fake_experiment(tmp_path)
    assert model_spectrogram(str(hparams), "") is None  # no model_hparams: semtts's defaults
    monkeypatch.chdir(ROOT)  # recipes name their model files from the repository root
    mini = model_spectrogram("recipes/mini/hparams/corpus.yaml", "")
    assert isinstance(mini, SpectrogramConfig) and mini.hop_length == 256 and mini.sample_rate == SR
    _add_durations(out, "A", {"u1": 9, "u2": 12, "u3": 4})
    items = json.loads((out / "tokens" / "test.json").read_text())
    assert read_durations(out / "synth" / "A" / "test")["u2"][:3] == [1, 3, 0]
    synth_dirs = {"A": out / "synth" / "A" / "test", "C": out / "synth" / "C" / "test"}  # C: no durations.json
    written = plot_synthesized_split(tmp_path / "plots", synth_dirs, items, tmp_path / "corpus", out, 2)
    assert [p.name for p in written] == ["u1_mel.png", "u1_alignment.png", "u2_mel.png", "u2_alignment.png",
                                         "durations.png"]
    assert all(png_size(p)[0] > 0 for p in written)
    with pytest.raises(ConfigError, match=">= 0"):
        plot_synthesized_split(tmp_path / "plots", synth_dirs, items, tmp_path / "corpus", out, -1)

    _add_durations(out, "C", {"u1": 5, "u2": 5, "u3": 5})
    with pytest.raises(SystemExit) as exit_:
        main([str(hparams), "--eval_max_utterances", "2", "--eval_plot_utterances", "1"])
    assert exit_.value.code == 0, capsys.readouterr().err
    plots = out / "eval" / "plots" / "test"
    assert sorted(p.name for p in plots.iterdir()) == ["durations.png", "u1_alignment.png", "u1_mel.png"]
    assert "3 plots in" in capsys.readouterr().out
    assert png_size(out / "eval" / "mcd.png")[0] > 0  # the bar charts stay


def _manifest(tmp_path: Path) -> tuple[Path, Path]:
    """3 reference recordings (one under {cache_root}) and their stage-2 manifest in an experiment folder."""
    corpus, exp = tmp_path / "corpus", tmp_path / "exp"
    corpus.mkdir()
    write_wav(exp / "data" / "audio_cache" / "u1.wav", 1.0, 180.0)
    items = {"u1": {"wav": "{cache_root}/u1.wav", "text": TEXTS[0], "spk": "spk0", "duration": 1.0, "sr": SR}}
    for k, utt in enumerate(("u2", "u3")):
        write_wav(corpus / f"{utt}.wav", 0.8, 240.0 + 60 * k)
        items[utt] = {"wav": f"{{data_root}}/{utt}.wav", "text": TEXTS[1 - k], "spk": f"spk{k}", "duration": 0.8,
                      "sr": SR}
    write_manifest(exp / "tokens" / "test.json", items)
    return exp / "tokens" / "test.json", corpus


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semtts.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env=ENV)


def test_eval_help_and_errors(packed, tmp_path):  # noqa: F811
    done = run_cli("eval", "--help")
    assert done.returncode == 0 and "--allow-random-init" in done.stdout and "--manifest" in done.stdout
    manifest, corpus = _manifest(tmp_path)
    for args, expected in [
        (("--manifest", tmp_path / "none.json", "--data-root", corpus), "none.json: manifest not found"),
        (("--manifest", manifest, "--asr-model", tmp_path / "asr.pt", "--data-root", corpus),
         "asr.pt: file not found; give the path of a Whisper .pt checkpoint"),
        (("--manifest", manifest), "give --data-root"),
        (("--manifest", manifest, "--data-root", corpus, "--max-utterances", "-1"), "--max-utterances"),
    ]:
        done = run_cli("eval", "--model", packed, "-o", tmp_path / "out", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and expected in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out").exists()  # nothing synthesized before the checks


def test_eval_end_to_end(packed, tmp_path, capsys):  # noqa: F811
    from semtts.cli import main

    manifest, corpus = _manifest(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--model", str(packed), "--manifest", str(manifest), "--data-root", str(corpus), "-o", str(out),
              "--asr-model", str(tmp_path / "asr-random.pt"), "--asr-random-dims", json.dumps(ASR_DIMS),
              "--max-utterances", "2", "--plot-utterances", "1", "--allow-random-init"])
    printed = capsys.readouterr()
    assert exit_.value.code == 0, printed.err
    assert "| split | metric | A |" in printed.out and "| test | MCD (dB) |" in printed.out
    per_utt = json.loads((out / "A" / "test.json").read_text())
    assert sorted(per_utt) == ["u1", "u2"]  # the first 2 by id
    assert all(math.isfinite(u["mcd"]) and u["mcd"] > 0 and -1 <= u["spk_sim"] <= 1 for u in per_utt.values())
    assert per_utt["u1"]["text"] == TEXTS[0] and isinstance(per_utt["u1"]["hypothesis"], str)
    summary = json.loads((out / "metrics.json").read_text())["A"]["test"]
    assert summary["utterances"] == 2 and summary["rtf"] > 0 and math.isfinite(summary["mcd"])
    assert "| test | utterances | 2 |" in (out / "results.md").read_text()
    synth = out / "synth" / "test"
    assert sorted(p.name for p in synth.glob("*.wav")) == ["u1.wav", "u2.wav"]
    durations = json.loads((synth / "durations.json").read_text())
    hop = SemTTS.from_hparams(packed).spectrogram.hop_length
    assert all(sum(d["durations"]) * hop == d["n_samples"] for d in durations.values())
    assert sorted(p.name for p in (out / "plots" / "test").iterdir()) == ["durations.png", "u1_alignment.png",
                                                                          "u1_mel.png"]
    assert png_size(out / "plots" / "test" / "u1_mel.png")[0] > 0 and png_size(out / "mcd.png")[0] > 0


def test_voices_and_weights(packed, tmp_path, monkeypatch):  # noqa: F811
    manifest, corpus = _manifest(tmp_path)
    items = json.loads(manifest.read_text())
    refs = reference_paths(items, manifest, corpus, manifest.parent.parent / "data" / "audio_cache")
    assert refs["u1"].name == "u1.wav" and refs["u2"].parent == corpus
    with pytest.raises(WeightsNotFound, match="allow_random_init"):  # the packed CAM++ was random-init
        scoring_embedder(SemTTS.from_hparams(packed))
    hp, tokens = tiny("sid")
    sid_model = SemTTS.from_hparams(pack_model(tmp_path / "sid", hp["generator"], hp, "A", tokens, "sid", FRONTEND,
                                               speakers=["spk0", "spk1"]))
    report = synthesize_manifest(sid_model, {k: items[k] for k in ("u2", "u3")}, refs, tmp_path / "sid_out")
    assert report["utterances"] == 2 and (tmp_path / "sid_out" / "u3.wav").is_file()
    first = {name: load_audio(tmp_path / "sid_out" / f"{name}.wav")[0] for name in ("u2", "u3")}
    # a call that captured CUDA graphs is left out of the real-time factor (one that replays them is kept),
    # and the audio (its random draws) does not depend on it
    synthesize, clock = sid_model.synthesize, iter(range(100))

    def capturing_first(texts, **kwargs):
        sid_model.synthesizer.captured += texts == [items["u2"]["text"]]  # u2's call captures, slowly
        return synthesize(texts, **kwargs)

    sid_model.synthesize = capturing_first
    monkeypatch.setattr(packed_eval, "time", SimpleNamespace(perf_counter=lambda: 1000.0 * next(clock) ** 2))
    replayed = synthesize_manifest(sid_model, {k: items[k] for k in ("u2", "u3")}, refs, tmp_path / "sid_out")
    u3_seconds = json.loads((tmp_path / "sid_out" / "durations.json").read_text())["u3"]["n_samples"] / SR
    assert replayed["rtf"] == round(5000.0 / u3_seconds, 4)
    for name in ("u2", "u3"):
        assert torch.equal(load_audio(tmp_path / "sid_out" / f"{name}.wav")[0], first[name])
    done = sorted(p.name for p in (tmp_path / "sid_out").iterdir())
    assert done == ["durations.json", "report.json", "u2.wav", "u3.wav"]
    with pytest.raises(ConfigError, match="'zed' is not one of the model's training speakers"):
        synthesize_manifest(sid_model, {"u2": items["u2"] | {"spk": "zed"}}, refs, tmp_path / "sid_out")
    assert sorted(p.name for p in (tmp_path / "sid_out").iterdir()) == done  # checked first: nothing removed
    # a failure part-way leaves no earlier run's records beside the new wavs
    sid_model.synthesize = lambda texts, **kwargs: (_ for _ in ()).throw(DataError("no")) if texts == [
        items["u3"]["text"]] else synthesize(texts, **kwargs)
    with pytest.raises(DataError, match="^'u3': no$"):
        synthesize_manifest(sid_model, {k: items[k] for k in ("u2", "u3")}, refs, tmp_path / "sid_out")
    assert sorted(p.name for p in (tmp_path / "sid_out").iterdir()) == ["u2.wav"]
