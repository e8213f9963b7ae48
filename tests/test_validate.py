"""Utterance validation, split assignment and manifest preparation."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from semtts.data.manifest import read_manifest
from semtts.data.prepare import prepare_manifests
from semtts.data.splits import assign_splits
from semtts.data.manifest import resolve_audio_path
from semtts.data.validate import DROP_REASONS, validate_utterance
from semtts.errors import ConfigError, DataError

SR = 16000


def _tone(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    mono = 0.4 * np.sin(2 * np.pi * 200 * t)
    if channels == 1:
        return mono.astype("float32")
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1).astype("float32")


def _write(path: Path, data: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype)
    return path


def _raw(path: Path, text: str = "A good sentence.", utt_id: str = "u", spk: str = "s1", **extra) -> dict:
    return {"utt_id": utt_id, "path": str(path), "text": text, "spk": spk, **extra}


def _validate(raw: dict, root: Path, min_duration: float = 0.2, max_duration: float = 2.0):
    return validate_utterance(raw, SR, min_duration, max_duration, root / "cache", "english", data_root=root)


def _broken_files(root: Path) -> dict[str, Path]:
    """One file per audio drop reason (text reasons use a good file)."""
    files = {}
    files["missing_audio"] = root / "wavs" / "gone.wav"
    files["unreadable_audio"] = root / "wavs" / "noise.wav"
    files["unreadable_audio"].parent.mkdir(parents=True, exist_ok=True)
    files["unreadable_audio"].write_bytes(b"this is not a RIFF file at all" * 10)
    whole = _write(root / "wavs" / "whole.wav", _tone(0.5)).read_bytes()
    files["truncated_audio"] = root / "wavs" / "cut.wav"
    files["truncated_audio"].write_bytes(whole[: len(whole) // 2])
    files["empty_audio"] = _write(root / "wavs" / "zeros.wav", np.zeros(SR // 2, dtype="float32"))
    files["too_short"] = _write(root / "wavs" / "short.wav", _tone(0.1))
    files["too_long"] = _write(root / "wavs" / "long.wav", _tone(2.5))
    nan = _tone(0.5)
    nan[100] = np.nan
    files["nonfinite_samples"] = _write(root / "wavs" / "nan.wav", nan, subtype="FLOAT")
    return files


# ---------------------------------------------------------------- validate_utterance
def test_every_drop_reason(tmp_path):
    files = _broken_files(tmp_path)
    good = _write(tmp_path / "wavs" / "good.wav", _tone(0.5))
    for reason, path in files.items():
        assert _validate(_raw(path), tmp_path) == (None, reason), reason
    assert _validate(_raw(good, text="  \t "), tmp_path) == (None, "empty_text")
    assert _validate(_raw(good, text="!!! ... \U0001f600"), tmp_path) == (None, "unusable_text")
    # duplicate_id is set by the corpus readers, before validation.
    assert set(DROP_REASONS) == set(files) | {"empty_text", "unusable_text", "duplicate_id"}

    item, reason = _validate(_raw(good, text=" Hello there. "), tmp_path)
    assert reason is None
    assert item == {"wav": "{data_root}/wavs/good.wav", "text": "Hello there.", "spk": "s1",
                    "duration": 0.5, "sr": SR}
    assert not (tmp_path / "cache").exists()  # nothing to fix, nothing cached


def test_more_broken_audio(tmp_path):
    empty = _write(tmp_path / "wavs" / "empty.wav", np.zeros(0, dtype="float32"))
    assert _validate(_raw(empty), tmp_path) == (None, "empty_audio")
    inf = _tone(0.5)
    inf[5] = np.inf
    inf_wav = _write(tmp_path / "wavs" / "inf.wav", inf, subtype="FLOAT")
    assert _validate(_raw(inf_wav), tmp_path) == (None, "nonfinite_samples")
    flac = _write(tmp_path / "wavs" / "cut.flac", _tone(1.0)).read_bytes()
    (tmp_path / "wavs" / "cut.flac").write_bytes(flac[: len(flac) // 2])
    assert _validate(_raw(tmp_path / "wavs" / "cut.flac"), tmp_path) == (None, "truncated_audio")


def test_resample_cache_and_reuse(tmp_path):
    src = _write(tmp_path / "wav48" / "p1" / "a.flac", _tone(0.5, sr=22050), sr=22050)
    raw = _raw(src, pinyin=["ni3", "hao3"], split="test_unseen")
    item, reason = _validate(raw, tmp_path)
    assert reason is None
    assert item["sr"] == SR and item["wav"] == "{cache_root}/wav48/p1/a.wav"
    assert item["pinyin"] == ["ni3", "hao3"] and "split" not in item and "utt_id" not in item
    cached = Path(resolve_audio_path(item["wav"], tmp_path, tmp_path / "cache"))
    assert cached == tmp_path / "cache" / "wav48" / "p1" / "a.wav"
    info = sf.info(str(cached))
    assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    assert item["duration"] == pytest.approx(0.5, abs=1e-3) == info.frames / SR

    stamp = cached.stat().st_mtime_ns
    assert _validate(raw, tmp_path) == (item, None)
    assert cached.stat().st_mtime_ns == stamp  # reused, not rewritten
    # A cache from another target rate is replaced.
    other, _ = validate_utterance(raw, 8000, 0.2, 2.0, tmp_path / "cache", "english", data_root=tmp_path)
    assert other["sr"] == 8000 and sf.info(str(cached)).samplerate == 8000
    _validate(raw, tmp_path)

    # The source replaced by a longer file with an older date (tar -x, rsync -a keep dates): cached again
    _write(src, _tone(0.8, sr=22050), sr=22050)
    os.utime(src, ns=(10**18, 10**18))
    assert cached.stat().st_mtime_ns > src.stat().st_mtime_ns
    again, _ = _validate(raw, tmp_path)
    assert again["duration"] == pytest.approx(0.8, abs=1e-3) == sf.info(str(cached)).frames / SR
    # another corpus at the same relative path, cached into the same folder: cached again
    other_root = tmp_path / "other"
    moved = _write(other_root / "wav48" / "p1" / "a.flac", _tone(0.3, sr=22050), sr=22050)
    third, _ = validate_utterance({**raw, "path": str(moved)}, SR, 0.2, 2.0, tmp_path / "cache", "english",
                                  data_root=other_root)
    assert third["wav"] == item["wav"] and third["duration"] == pytest.approx(0.3, abs=1e-3)
    assert sf.info(str(cached)).frames / SR == pytest.approx(0.3, abs=1e-3)


def test_audio_files_of_one_stem_cache_into_files_of_their_own(tmp_path):
    low, high = _tone(0.5, sr=22050), 0.5 * _tone(0.7, sr=22050)
    flac = _write(tmp_path / "wavs" / "a.flac", low, sr=22050)
    wav = _write(tmp_path / "wavs" / "a.wav", high, sr=22050)
    items = [_validate(_raw(path, utt_id=path.name), tmp_path)[0] for path in (flac, wav)]
    assert [item["wav"] for item in items] == ["{cache_root}/wavs/a.flac.wav", "{cache_root}/wavs/a.wav"]
    for item, source in zip(items, (low, high)):  # neither overwrote the other
        cached = Path(resolve_audio_path(item["wav"], tmp_path, tmp_path / "cache"))
        assert sf.info(str(cached)).frames / SR == pytest.approx(len(source) / 22050, abs=1e-3)
    assert _validate(_raw(_write(tmp_path / "solo" / "b.flac", low, sr=22050)), tmp_path)[0]["wav"] == (
        "{cache_root}/solo/b.wav")  # a lone source keeps the plain name


def test_downmix(tmp_path):
    stereo = _tone(0.5, channels=2)
    src = _write(tmp_path / "wavs" / "st.wav", stereo)
    item, reason = _validate(_raw(src), tmp_path)
    assert reason is None and item["wav"] == "{cache_root}/wavs/st.wav" and item["sr"] == SR
    mono, sr = sf.read(str(tmp_path / "cache" / "wavs" / "st.wav"), dtype="float32")
    assert sr == SR and mono.ndim == 1
    np.testing.assert_allclose(mono, stereo.mean(axis=1), atol=2 / 32768)


def test_a_float_source_louder_than_full_scale_keeps_its_level_in_the_cache(tmp_path):
    loud = 3.0 * _tone(0.5, sr=22050)  # peak 1.2, as a float wav may hold
    src = _write(tmp_path / "wavs" / "loud.wav", loud, sr=22050, subtype="FLOAT")
    item, reason = _validate(_raw(src), tmp_path)
    assert reason is None and item["wav"] == "{cache_root}/wavs/loud.wav"
    cached, sr = sf.read(str(tmp_path / "cache" / "wavs" / "loud.wav"), dtype="float32")
    assert sr == SR and sf.info(str(tmp_path / "cache" / "wavs" / "loud.wav")).subtype == "FLOAT"
    assert abs(cached).max() == pytest.approx(1.2, abs=0.02)  # clipped to 16-bit PCM, it was 1.0


def test_outside_root_and_bad_cleaner(tmp_path):
    src = _write(tmp_path / "elsewhere" / "x.wav", _tone(0.5))
    item, _ = validate_utterance(_raw(src), SR, 0.2, 2.0, tmp_path / "c", "english", data_root=tmp_path / "corpus")
    assert item["wav"] == str(src.absolute())
    with pytest.raises(ConfigError, match="klingon"):
        validate_utterance(_raw(src), SR, 0.2, 2.0, tmp_path / "c", "klingon", data_root=tmp_path)


# ---------------------------------------------------------------- assign_splits
def _items(n_speakers: int, per_speaker: int) -> list[dict]:
    return [{"utt_id": f"s{s}_{i:02d}", "spk": f"s{s}"} for s in range(n_speakers) for i in range(per_speaker)]


def test_numeric_heldout_speaker_ids_match():
    items = [{"utt_id": f"u{i}", "spk": spk} for i, spk in enumerate(["19", "19", "26", "26", "26"])]
    assert [it["utt_id"] for it in assign_splits(items, 1, 0, [19], seed=0)["test_unseen"]] == ["u0", "u1"]


def test_splits_deterministic_and_stratified():
    items = _items(5, 6)
    first = assign_splits(items, 4, 3, heldout_speakers=["s4"], seed=7)
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    again = assign_splits(shuffled, 4, 3, heldout_speakers=["s4"], seed=7)
    ids = {name: [it["utt_id"] for it in part] for name, part in first.items()}
    assert ids == {name: [it["utt_id"] for it in part] for name, part in again.items()}
    assert list(ids) == ["train", "valid", "test", "test_unseen"]
    assert [len(ids[n]) for n in ids] == [17, 4, 3, 6]
    assert {it["spk"] for it in first["test_unseen"]} == {"s4"}
    assert {it["spk"] for it in first["train"]} == {"s0", "s1", "s2", "s3"}
    assert len({it["spk"] for it in first["valid"]}) == 4  # one per speaker
    assert sum(len(p) for p in first.values()) == len(items)
    assert len({u for part in ids.values() for u in part}) == len(items)
    other = assign_splits(items, 4, 3, heldout_speakers=["s4"], seed=8)
    assert [it["utt_id"] for it in other["valid"]] != ids["valid"]


def test_splits_fixed_short_and_errors():
    items = _items(2, 2) + [{"utt_id": "z_0", "spk": "z", "split": "valid"}]
    splits = assign_splits(items, 10, 10, heldout_speakers=[], seed=0)
    # Each seen speaker keeps one item in train; the fixed one stays in valid.
    assert sorted(it["spk"] for it in splits["train"]) == ["s0", "s1"]
    assert "z_0" in [it["utt_id"] for it in splits["valid"]]
    assert len(splits["valid"]) == 3 and "test" not in splits and "test_unseen" not in splits
    with pytest.raises(DataError, match="s0_00"):
        assign_splits(items + [{"utt_id": "s0_00", "spk": "s0"}], 1, 1, [], 0)
    with pytest.raises(ConfigError, match="n_valid"):
        assign_splits(items, -1, 0, [], 0)


# ---------------------------------------------------------------- prepare_manifests
def _ljspeech(root: Path, bad: bool = True) -> Path:
    """Eight good utterances (one at 22.05 kHz) plus, when ``bad``, one per drop reason
    (line 19 repeats the id of line 4) and an unparsable line (18)."""
    lines = []
    for i in range(8):
        sr = 22050 if i == 0 else SR
        _write(root / "wavs" / f"LJ{i:03d}.wav", _tone(0.4 + 0.05 * i, sr=sr), sr=sr)
        lines.append(f"LJ{i:03d}|Sentence {i}.|Sentence {i}.")
    if bad:
        for reason, path in _broken_files(root).items():
            if path.exists():
                os.replace(path, root / "wavs" / f"{reason}.wav")
            lines.append(f"{reason}|Some words.|Some words.")
        for reason in ("empty_text", "unusable_text"):
            _write(root / "wavs" / f"{reason}.wav", _tone(0.5))
        lines += ["empty_text||", "unusable_text|???|???", "a line the parser cannot read",
                  "LJ003|A repeated id.|A repeated id."]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _prepare(root: Path, out: Path, **overrides) -> dict:
    args = dict(sample_rate=SR, min_duration=0.2, max_duration=2.0, min_keep_ratio=0.3, n_valid=2, n_test=1,
                heldout_speakers=[], seed=3, cleaner="english")
    args.update(overrides)
    return prepare_manifests("ljspeech", root, out, **args)


def test_prepare_report_and_manifests(tmp_path, capsys):
    root = _ljspeech(tmp_path / "LJSpeech-1.1")
    out = tmp_path / "exp" / "data"
    report = _prepare(root, out)
    assert report == json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["total"] == 18 and report["kept"] == 8
    assert report["dropped"] == {reason: 1 for reason in DROP_REASONS}
    assert report["dropped"]["duplicate_id"] == 1
    # The repeated id's first item is kept: it is named in duplicate_lines, not dropped_items.
    assert report["dropped_items"] == {reason: reason for reason in DROP_REASONS if reason != "duplicate_id"}
    assert len(report["skipped_lines"]) == 1 and "metadata.csv:18" in report["skipped_lines"][0]
    assert len(report["duplicate_lines"]) == 1
    assert "metadata.csv:19" in report["duplicate_lines"][0] and "metadata.csv:4," in report["duplicate_lines"][0]
    assert {n: s["utterances"] for n, s in report["splits"].items()} == {"train": 5, "valid": 2, "test": 1}
    assert report["splits"]["train"]["speakers"] == 1 and report["splits"]["train"]["hours"] > 0
    assert report["cache_root"] == str((out / "audio_cache").absolute())

    summary = capsys.readouterr().out
    assert "kept 8 of 18" in summary and "dropped truncated_audio: 1" in summary
    assert "metadata.csv:18: skipped" in summary and "metadata.csv:19: skipped" in summary
    assert summary.count("dropped ") == len(DROP_REASONS)

    merged = {}
    for name in ("train", "valid", "test"):
        merged.update(read_manifest(out / f"{name}.json"))
    assert sorted(merged) == [f"LJ{i:03d}" for i in range(8)]
    assert merged["LJ000"]["wav"] == "{cache_root}/wavs/LJ000.wav" and merged["LJ000"]["sr"] == SR
    assert merged["LJ001"]["wav"] == "{data_root}/wavs/LJ001.wav"
    assert (out / "audio_cache" / "wavs" / "LJ000.wav").is_file()
    hours = sum(s["hours"] for s in report["splits"].values())
    assert hours == pytest.approx(sum(it["duration"] for it in merged.values()) / 3600, abs=1e-3)
    assert not (out / "test_unseen.json").exists()


def test_prepare_parallel_matches_serial(tmp_path, capsys):
    root = _ljspeech(tmp_path / "LJSpeech-1.1")
    serial = _prepare(root, tmp_path / "serial", nj=1)
    parallel = _prepare(root, tmp_path / "parallel", nj=2)
    for key in ("dropped", "dropped_items", "splits", "kept"):
        assert serial[key] == parallel[key]
    for name in serial["splits"]:
        a = (tmp_path / "serial" / f"{name}.json").read_text(encoding="utf-8")
        b = (tmp_path / "parallel" / f"{name}.json").read_text(encoding="utf-8")
        assert a == b


def test_prepare_keep_ratio_and_config_errors(tmp_path, capsys):
    root = _ljspeech(tmp_path / "LJSpeech-1.1")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"only 8 of 18 utterances survived.*report\.json"):
        _prepare(root, out, min_keep_ratio=0.6)
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["kept"] == 8
    assert not (out / "train.json").exists()  # no manifests for a failed run
    with pytest.raises(ConfigError, match="nobody"):
        _prepare(root, out, heldout_speakers=["nobody"])
    with pytest.raises(ConfigError, match="mic"):
        _prepare(root, out, corpus_options={"mic": "mic1"})
    with pytest.raises(ConfigError, match=r"not found in corpus 'ljspeech': 19 \(ids written as numbers"):
        _prepare(root, out, heldout_speakers=[19])  # as YAML reads [19]: one line, not a TypeError
    with pytest.raises(DataError, match="no utterance is left for training"):
        _prepare(root, out, min_keep_ratio=0.0, heldout_speakers=["LJ"])


def test_prepare_removes_the_splits_of_an_earlier_run(tmp_path, capsys):
    root = _ljspeech(tmp_path / "LJSpeech-1.1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"splits": {"dev": {}, "train": {}}}))
    (out / "dev.json").write_text("{}")  # a split a corpus option gave in an earlier run
    (out / "notes.json").write_text("{}")  # not a split: left alone
    report = _prepare(root, out, min_keep_ratio=0.0)
    assert "dev" not in report["splits"] and not (out / "dev.json").exists() and (out / "notes.json").exists()
    with pytest.raises(DataError, match="LJSpeech"):
        _prepare(tmp_path / "nowhere", out)


class _KillsItsProcess:
    """Unpickled in a worker, it ends that process (as an out-of-memory kill or a crash would)."""

    def __reduce__(self):
        return os._exit, (9,)


def test_a_validation_process_that_dies_is_a_one_line_error(tmp_path):
    from semtts.data.prepare import _validate_in_processes

    good = _write(tmp_path / "wavs" / "a.wav", _tone(0.5))
    jobs = [(_raw(good, utt_id=f"u{i}"), SR, 0.2, 2.0, tmp_path / "cache", "english", tmp_path) for i in range(4)]
    assert [item["wav"] for item, _ in _validate_in_processes(jobs, 2)] == ["{data_root}/wavs/a.wav"] * 4
    jobs[2] = ({**jobs[2][0], "crash": _KillsItsProcess()}, *jobs[2][1:])
    with pytest.raises(DataError, match=r"^a validation process died \(killed.*\) while checking one of: .*u2 \.\. u2"):
        _validate_in_processes(jobs, 2)  # multiprocessing.Pool.map waited forever here
