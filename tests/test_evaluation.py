"""Evaluation metrics (MCD, F0, speaker similarity, WER/CER), the report
table, and stage 9 end to end on a fake experiment folder."""

import json
import math

import numpy as np
import pytest
import torch

from semtts.audio import resample, save_audio
from semtts.data.manifest import write_json_atomic, write_manifest
from semtts.errors import ConfigError, DataError, WeightsNotFound
from semtts.evaluation.dtw import dtw_path
from semtts.evaluation.f0 import estimate_f0, f0_rmse
from semtts.evaluation.mcd import mcd
from semtts.evaluation.report import markdown_table, summarize_split, write_report
from semtts.evaluation.speaker_similarity import speaker_similarity
from semtts.evaluation.wer import WhisperASR, edit_distance, error_rates, normalize_text, utterance_errors
from semtts.extract.speaker import SpeakerEmbedder

torch.set_num_threads(1)  # tiny models: threads only contend on a shared CPU

SR = 22050
ASR_DIMS = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 32, "n_audio_head": 2, "n_audio_layer": 1,
            "n_vocab": 51865, "n_text_ctx": 32, "n_text_state": 32, "n_text_head": 2, "n_text_layer": 1}


def voice(f0: float, seconds: float = 1.0, sr: int = SR, seed: int = 0) -> torch.Tensor:
    """A speech-like test signal: harmonics of a gliding F0 under a slow envelope, plus a little noise."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    phase = 2 * math.pi * torch.cumsum(f0 * (1 + 0.1 * torch.sin(2 * math.pi * 1.5 * t)), 0) / sr
    wav = sum(torch.sin(k * phase) / k for k in range(1, 6))
    wav = wav * (0.6 + 0.4 * torch.sin(2 * math.pi * 2 * t)) + 0.003 * torch.randn(t.shape, generator=gen)
    return 0.3 * wav / wav.abs().max()


def test_dtw_path_is_monotonic_and_complete():
    x, y = np.random.default_rng(0).normal(size=(7, 3)), np.random.default_rng(1).normal(size=(5, 3))
    path = dtw_path(x, y)
    assert path[0].tolist() == [0, 0] and path[-1].tolist() == [6, 4]
    steps = np.diff(path, axis=0)
    assert ((steps >= 0) & (steps <= 1)).all() and (steps.sum(1) >= 1).all()
    same = dtw_path(x, x)
    assert same.tolist() == [[i, i] for i in range(7)]
    with pytest.raises(DataError):
        dtw_path(np.zeros((0, 3)), y)


def test_mcd_identical_zero_shifted_positive():
    wav = voice(150)
    assert mcd(wav, wav, SR) == 0.0
    shifted = mcd(wav[:-1500], wav[1500:], SR)
    noisy = mcd(wav, wav + 0.05 * torch.randn(wav.shape, generator=torch.Generator().manual_seed(3)), SR)
    assert math.isfinite(shifted) and shifted > 0 and noisy > 0
    other = mcd(wav, voice(300, seed=1), SR)
    assert other > noisy * 0.1  # a different voice is not at distance 0
    # a 16 kHz reference of the same audio: both analysed at 16 kHz, the bands it lacks are not distortion
    assert mcd(wav, resample(wav, SR, 16000), SR, reference_rate=16000) < 0.05
    assert mcd(resample(wav, SR, 16000), wav, 16000, reference_rate=SR) < 0.05


@pytest.mark.parametrize("freq", [100.0, 220.0, 440.0])
def test_f0_of_a_pure_tone(freq):
    t = torch.arange(SR) / SR
    f0 = estimate_f0(0.5 * torch.sin(2 * math.pi * freq * t), SR)
    assert f0.shape == (100,)
    assert (f0 > 0).mean() > 0.9
    assert abs(np.median(f0[f0 > 0]) / freq - 1) < 0.02
    assert not (estimate_f0(torch.zeros(SR), SR) > 0).any()


def test_f0_rmse_identical_and_transposed():
    wav = voice(140)
    same = f0_rmse(wav, wav, SR)
    assert same["log_f0_rmse"] == 0.0 and same["vuv_error"] == 0.0 and same["voiced_pairs"] > 50
    up = f0_rmse(voice(140 * 1.2), wav, SR)
    assert up["log_f0_rmse"] == pytest.approx(math.log(1.2), abs=0.05)


def test_speaker_similarity_identical_is_one():
    embedder = SpeakerEmbedder.from_checkpoint(None, 192, allow_random_init=True, seed=0)
    a, b = voice(120), voice(250, seed=5)
    sims = speaker_similarity(embedder, [a, b], [a, a], SR)
    assert sims.shape == (2,)
    assert sims[0] == pytest.approx(1.0, abs=1e-4) and sims[1] < 1.0 - 1e-4
    with pytest.raises(DataError):
        speaker_similarity(embedder, [a], [], SR)


def test_edit_distance_by_hand():
    assert edit_distance("kitten", "sitting") == {"errors": 3, "substitutions": 2, "deletions": 0,
                                                  "insertions": 1, "length": 6}
    assert edit_distance("abc", "abc")["errors"] == 0
    assert edit_distance("abc", "")["deletions"] == 3
    assert edit_distance("the cat sat on the mat".split(), "the cat on a mat".split()) == {
        "errors": 2, "substitutions": 1, "deletions": 1, "insertions": 0, "length": 6}


def test_normalizer_and_error_rates():
    assert normalize_text("Hello, World! It costs $3.", "en") == "hello world it costs three dollars"
    assert normalize_text("Twenty-one", "en") == "twenty one"
    assert normalize_text("你好，世界！", "zh") == "你好世界"
    # Whisper often writes Mandarin in traditional characters: they score as the simplified references
    assert normalize_text("我們去北京，他有三個蘋果", "zh") == "我们去北京他有三个苹果"
    assert utterance_errors("他有三个苹果", "他有三個蘋果", "zh")["char_errors"] == 0
    assert utterance_errors("Hello there.", "hello there", "en")["word_errors"] == 0
    assert error_rates(["Hello world.", "Good day!"], ["hello world", "good day"]) == \
        {"wer": 0.0, "cer": 0.0, "words": 4, "chars": 17}
    rates = error_rates(["a b c d"], ["a x c"])
    assert rates["wer"] == 0.5 and rates["cer"] == 0.5
    zh = error_rates(["你好世界"], ["你好视界"], "zh")
    assert zh["wer"] == zh["cer"] == 0.25 and zh["words"] == 4
    with pytest.raises(ConfigError):
        error_rates(["a"], [])


def test_asr_loading_errors(tmp_path):
    with pytest.raises(WeightsNotFound) as err:
        WhisperASR.load(str(tmp_path / "missing.pt"), allow_random_init=False)
    assert "missing.pt" in str(err.value)
    with pytest.raises(ConfigError, match="eval_asr_model"):
        WhisperASR.load("no-such-size", allow_random_init=False)
    asr = WhisperASR.load(str(tmp_path / "random.pt"), "en", allow_random_init=True, random_dims=ASR_DIMS, seed=1)
    assert asr.random_init and isinstance(asr.transcribe(torch.zeros(8000)), str)


def test_report_table_has_stage_columns(tmp_path):
    metrics = {
        "C": {"test": summarize_split({"u": {"mcd": 5.0, "spk_sim": 0.9, "log_f0_rmse": 0.1, "vuv_error": 0.2}},
                                      {"wer": 0.1, "cer": 0.05}, 0.25)},
        "A": {"test": {"mcd": 8.0, "wer": 0.4, "utterances": 1},
              "test_unseen": {"mcd": 9.5, "spk_sim": None, "utterances": 1}},
        "B": {"test": {"mcd": 6.0, "wer": 0.2, "utterances": 1}},
    }
    table = markdown_table(metrics)
    lines = table.splitlines()
    assert lines[0] == "| split | metric | A | B | C |"
    assert "| test | MCD (dB) | 8.00 | 6.00 | 5.00 |" in lines
    assert "| test | WER (%) | 40.00 | 20.00 | 10.00 |" in lines
    assert "| test | real-time factor | - | - | 0.2500 |" in lines
    assert "| test_unseen | MCD (dB) | 9.50 | - | - |" in lines
    assert "| test_unseen | speaker similarity | - | - | - |" in lines
    assert write_report(tmp_path / "eval", metrics) == table
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["A"]["test"]["mcd"] == 8.0
    assert table in (tmp_path / "eval" / "results.md").read_text()


def _fake_experiment(tmp_path):
    """A corpus of 3 reference wavs, a stage-2 manifest, and stage-8 outputs of
    stages A (exact copies of the references) and C (shifted, noisier copies)."""
    data, out = tmp_path / "corpus", tmp_path / "exp"
    items, refs = {}, {}
    for k, (utt, f0) in enumerate([("u1", 110.0), ("u2", 180.0), ("u3", 240.0)]):
        refs[utt] = voice(f0, seconds=0.8, seed=k)
        save_audio(data / "wavs" / f"{utt}.wav", refs[utt], SR)
        items[utt] = {"wav": f"{{data_root}}/wavs/{utt}.wav", "text": f"Sentence number {k + 1}.", "spk": "s1",
                      "duration": 0.8, "sr": SR, "tokens": [1, 2, 3]}
    write_manifest(out / "tokens" / "test.json", items)
    gen = torch.Generator().manual_seed(9)
    for stage in ("A", "C"):
        split_dir = out / "synth" / stage / "test"
        for utt, ref in refs.items():
            wav = ref if stage == "A" else torch.roll(ref, 600) + 0.02 * torch.randn(ref.shape, generator=gen)
            save_audio(split_dir / f"{utt}.wav", wav, SR)
        write_json_atomic(split_dir / "report.json", {"utterances": 3, "audio_seconds": 2.4, "rtf": 0.5})
        write_json_atomic(split_dir / "durations.json", {utt: {"durations": [1], "n_samples": 1} for utt in refs})
        write_json_atomic(out / "synth" / stage / "done", {"settings": {"stage": stage}})
    save_audio(out / "synth" / "A" / "test" / "u0.wav", refs["u1"], SR)  # left by an earlier run: not scored
    (out / "synth" / "B" / "test").mkdir(parents=True)  # unfinished: skipped
    hparams = tmp_path / "corpus.yaml"
    hparams.write_text(
        f"output_folder: {out}\ndata_folder: {data}\nseed: 3\nallow_random_init: True\n"
        f"whisper_cache_dir: {tmp_path / 'whisper'}\neval_asr_model: {tmp_path / 'asr-random.pt'}\n"
        f"eval_asr_language: en\neval_asr_random_dims: {json.dumps(ASR_DIMS)}\neval_max_utterances: 0\neval_plot_utterances: 2\n"
        f"campplus_ckpt: null\ncampplus_embed_dim: 192\ncampplus_cache_dir: {tmp_path / 'campplus'}\n")
    return hparams, out


def test_stage9_end_to_end(tmp_path, capsys):
    from semtts.stages.evaluate import main

    hparams, out = _fake_experiment(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([str(hparams)])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "| split | metric | A | C |" in printed and "synth/B: stage 8 has not finished" in printed
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert sorted(metrics) == ["A", "C"]
    a, c = metrics["A"]["test"], metrics["C"]["test"]
    assert a["utterances"] == c["utterances"] == 3 and a["rtf"] == 0.5
    assert a["f0_utterances"] == c["f0_utterances"] == 3
    assert a["mcd"] == 0.0 and a["log_f0_rmse"] == 0.0 and a["vuv_error"] == 0.0
    assert a["spk_sim"] == pytest.approx(1.0, abs=1e-4)
    assert c["mcd"] > 0 and c["spk_sim"] < a["spk_sim"]
    assert a["wer"] is not None and c["wer"] is not None  # random ASR: a number, meaningless
    per_utt = json.loads((out / "eval" / "A" / "test.json").read_text())
    assert sorted(per_utt) == ["u1", "u2", "u3"] and per_utt["u2"]["text"] == "Sentence number 2."
    assert (out / "eval" / "done").is_file() and "| test | MCD (dB) | 0.00 |" in (out / "eval" / "results.md").read_text()

    with pytest.raises(SystemExit) as exit_:  # done: skipped
        main([str(hparams)])
    assert exit_.value.code == 0 and "skipped: already done" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:  # another cap: asks for --force
        main([str(hparams), "--eval_max_utterances", "2"])
    assert exit_.value.code == 2 and "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(hparams), "--eval_max_utterances", "2", "--force"])
    assert exit_.value.code == 0
    assert json.loads((out / "eval" / "metrics.json").read_text())["C"]["test"]["utterances"] == 2


def test_stage9_bad_inputs(tmp_path, capsys):
    from semtts.stages.evaluate import main

    hparams, out = _fake_experiment(tmp_path)
    (tmp_path / "corpus" / "wavs" / "u2.wav").unlink()
    with pytest.raises(SystemExit) as exit_:
        main([str(hparams)])
    assert exit_.value.code == 2 and "u2.wav: reference ('u2') audio not found" in capsys.readouterr().err
    (out / "synth" / "A" / "test" / "u3.wav").unlink()  # listed by the synthesis run, gone
    with pytest.raises(SystemExit) as exit_:
        main([str(hparams)])
    assert exit_.value.code == 2 and "listed in durations.json are missing (u3.wav)" in capsys.readouterr().err
    for stage in ("A", "C"):
        (out / "synth" / stage / "done").unlink()
    with pytest.raises(SystemExit) as exit_:
        main([str(hparams)])
    assert exit_.value.code == 2 and "no finished synthesis" in capsys.readouterr().err
