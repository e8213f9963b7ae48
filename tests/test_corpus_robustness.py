"""Corrupt corpus listings: a non-UTF-8 line, a byte-order mark, a repeated
utterance id; and what stage 0 says about the mini corpus it generates or
reuses. Each corpus layout is rebuilt in miniature under tmp_path."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from semtts.data.corpora import get_corpus, mini, read_listing
from semtts.data.manifest import read_manifest
from semtts.data.prepare import prepare_manifests
from semtts.errors import DataError

SR = 16000
BOM = b"\xef\xbb\xbf"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _audio(path: Path, seconds: float = 0.3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), SR, subtype="PCM_16")


def _bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _ljspeech(root: Path, extra: list[bytes], bom: bool = False) -> Path:
    """Ten good lines LJ001-0001..0010 (with wavs), then ``extra`` lines."""
    lines = [f"LJ001-{i:04d}|Text {i}.|Text number {i}.".encode() for i in range(1, 11)]
    for i in range(1, 12):
        _audio(root / "wavs" / f"LJ001-{i:04d}.wav")
    _bytes(root / "metadata.csv", (BOM if bom else b"") + b"\n".join(lines + extra) + b"\n")
    return root


def _prepare(root: Path, out: Path, corpus: str = "ljspeech") -> dict:
    return prepare_manifests(corpus, root, out, sample_rate=SR, min_duration=0.1, max_duration=5.0,
                             min_keep_ratio=0.5, n_valid=1, n_test=1, heldout_speakers=[], seed=0,
                             cleaner="english")


def _mini_folder(root: Path, listing: bytes) -> Path:
    """A mini corpus folder as check() accepts it, without espeak-ng."""
    _bytes(root / ".complete", b"{}")
    _bytes(root / "metadata.csv", listing)
    return root


def _aishell3(root: Path, train: bytes, test: bytes | None = None) -> Path:
    (root / "train" / "wav").mkdir(parents=True)
    _bytes(root / "train" / "content.txt", train)
    if test is not None:
        (root / "test" / "wav").mkdir(parents=True)
        _bytes(root / "test" / "content.txt", test)
    return root


# ---------------------------------------------------------------- 1. a line that is not UTF-8
def test_read_listing_skips_bad_bytes_and_names_the_line(tmp_path, caplog):
    path = _bytes(tmp_path / "list.txt", b"a\nb caf\xe9\r\n\nc\n")
    with caplog.at_level(logging.WARNING, logger="robustness"):
        lines = list(read_listing(path, logging.getLogger("robustness")))
    assert lines == [(1, "a"), (3, ""), (4, "c")]
    assert f"{path}:2: skipped, not valid UTF-8 (byte 0xe9" in caplog.text
    with pytest.raises(DataError, match=str(tmp_path)):
        list(read_listing(tmp_path, logging.getLogger("robustness")))  # a folder, not a file


def test_ljspeech_latin1_line_is_skipped_and_reported(tmp_path, capsys):
    root = _ljspeech(tmp_path / "LJSpeech-1.1", [b"LJ001-0011|Caf\xe9 text.|Caf\xe9 text."])
    report = _prepare(root, tmp_path / "out")
    assert report["total"] == 10 and report["kept"] == 10
    assert len(report["skipped_lines"]) == 1
    assert "metadata.csv:11: skipped, not valid UTF-8" in report["skipped_lines"][0]
    assert "metadata.csv:11: skipped" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "report.json").read_text())["skipped_lines"] == report["skipped_lines"]


def test_mini_listing_latin1_line_is_skipped(tmp_path, caplog):
    root = _mini_folder(tmp_path / "mini", b"spk0_0000|spk0|Fine.\nspk0_0001|spk0|Caf\xe9 au lait.\n"
                                           b"spk0_0002|spk0|Also fine.\n")
    with caplog.at_level(logging.WARNING, logger="semtts.data.corpora"):
        items = mini.list_utterances(root)
    assert [it["utt_id"] for it in items] == ["spk0_0000", "spk0_0002"]
    assert "metadata.csv:2: skipped, not valid UTF-8" in caplog.text


def test_aishell3_latin1_line_is_skipped(tmp_path, caplog):
    root = _aishell3(tmp_path / "aishell3",
                     "SSB00050001.wav\t广 guang3\n".encode() + b"SSB00050002.wav\t\xe9 guang3\n"
                     + "SSB00050003.wav\t州 zhou1\n".encode())
    with caplog.at_level(logging.WARNING, logger="semtts.data.corpora"):
        items = get_corpus("aishell3").list_utterances(root)
    assert [it["utt_id"] for it in items] == ["SSB00050001", "SSB00050003"]
    assert "content.txt:2: skipped, not valid UTF-8" in caplog.text


def test_libritts_r_latin1_transcript_is_skipped(tmp_path, caplog):
    chapter = tmp_path / "LibriTTS_R" / "dev-clean" / "84" / "121123"
    for n, text in (("000001_000000", b"Fine."), ("000001_000001", b"Caf\xe9.")):
        _audio(chapter / f"84_121123_{n}.wav")
        _bytes(chapter / f"84_121123_{n}.normalized.txt", text)
    with caplog.at_level(logging.WARNING, logger="semtts.data.corpora"):
        items = get_corpus("libritts_r").list_utterances(tmp_path / "LibriTTS_R", subsets={"train": ["dev-clean"]})
    assert [it["utt_id"] for it in items] == ["84_121123_000001_000000"]
    assert "84_121123_000001_000001.wav: skipped" in caplog.text


# ---------------------------------------------------------------- 2. a byte-order mark
def test_ljspeech_bom_is_ignored(tmp_path, capsys):
    root = _ljspeech(tmp_path / "LJSpeech-1.1", [], bom=True)
    assert get_corpus("ljspeech").list_utterances(root)[0]["utt_id"] == "LJ001-0001"
    report = _prepare(root, tmp_path / "out")
    assert report["kept"] == 10 and report["dropped_items"] == {} and report["skipped_lines"] == []


def test_bom_is_ignored_by_every_reader(tmp_path):
    root = _mini_folder(tmp_path / "mini", BOM + b"spk0_0000|spk0|Fine.\n")
    assert mini.list_utterances(root)[0]["utt_id"] == "spk0_0000"

    root = _aishell3(tmp_path / "aishell3", BOM + "SSB00050001.wav\t广 guang3\n".encode())
    item = get_corpus("aishell3").list_utterances(root)[0]
    assert item["utt_id"] == "SSB00050001" and item["spk"] == "SSB0005"

    chapter = tmp_path / "LibriTTS_R" / "dev-clean" / "84" / "121123"
    _audio(chapter / "84_121123_000001_000000.wav")
    _bytes(chapter / "84_121123_000001_000000.normalized.txt", BOM + b"Go, do you hear?")
    items = get_corpus("libritts_r").list_utterances(tmp_path / "LibriTTS_R", subsets={"train": ["dev-clean"]})
    assert items[0]["text"] == "Go, do you hear?"

    vctk = tmp_path / "VCTK"
    (vctk / "wav48_silence_trimmed" / "p225").mkdir(parents=True)
    _bytes(vctk / "txt" / "p225" / "p225_001.txt", BOM + b"Please call Stella.\n")
    assert get_corpus("vctk").list_utterances(vctk)[0]["text"] == "Please call Stella."


# ---------------------------------------------------------------- 3. a repeated utterance id
def test_ljspeech_duplicate_keeps_the_first_and_reports_the_line(tmp_path, capsys):
    root = _ljspeech(tmp_path / "LJSpeech-1.1", [b"LJ001-0011|Eleven.|Eleven.", b"LJ001-0002|Again.|Again.",
                                                 b"LJ001-0002|Thrice.|Thrice."])
    out = tmp_path / "out"
    report = _prepare(root, out)
    assert report["total"] == 13 and report["kept"] == 11
    assert report["dropped"]["duplicate_id"] == 2
    assert "LJ001-0002" not in report["dropped_items"]
    first, second = report["duplicate_lines"]
    assert "metadata.csv:12: skipped, utterance id 'LJ001-0002' appears twice" in first
    assert "metadata.csv:2," in first and "metadata.csv:13: skipped" in second
    summary = capsys.readouterr().out
    assert "dropped duplicate_id: 2" in summary and "metadata.csv:12: skipped" in summary
    merged = {}
    for name in report["splits"]:
        merged.update(read_manifest(out / f"{name}.json"))
    assert merged["LJ001-0002"]["text"] == "Text number 2."  # the first line's


def test_duplicates_across_files_and_from_any_reader(tmp_path, caplog):
    root = _mini_folder(tmp_path / "mini", b"spk0_0000|spk0|One.\nspk0_0000|spk0|Two.\n")
    with caplog.at_level(logging.WARNING, logger="semtts.data.corpora"):
        assert [it["text"] for it in mini.list_utterances(root)] == ["One."]
    assert "metadata.csv:2: skipped, utterance id 'spk0_0000' appears twice" in caplog.text

    root = _aishell3(tmp_path / "aishell3", "SSB00050001.wav\t广 guang3\n".encode(),
                     "SSB00050001.wav\t州 zhou1\n".encode())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="semtts.data.corpora"):
        items = get_corpus("aishell3").list_utterances(root)
    assert [(it["utt_id"], it["text"]) for it in items] == [("SSB00050001", "广")]
    assert "test/content.txt:1: skipped" in caplog.text and "train/content.txt:1" in caplog.text

    for subset in ("dev-clean", "test-clean"):
        chapter = tmp_path / "LibriTTS_R" / subset / "84" / "121123"
        _audio(chapter / "84_121123_000001_000000.wav")
        _bytes(chapter / "84_121123_000001_000000.normalized.txt", subset.encode())
    items = get_corpus("libritts_r").list_utterances(
        tmp_path / "LibriTTS_R", subsets={"train": ["dev-clean"], "test": ["test-clean"]})
    assert [(it["text"], it["split"]) for it in items] == [("dev-clean", "train")]


def test_prepare_survives_a_reader_that_repeats_ids(tmp_path, monkeypatch, capsys):
    """A reader that does not filter repeats: the run goes on, the repeat is a drop."""
    root = _ljspeech(tmp_path / "LJSpeech-1.1", [])
    ljspeech = get_corpus("ljspeech")
    listed = ljspeech.list_utterances(root)
    monkeypatch.setattr(ljspeech, "list_utterances", lambda data_folder: listed + [dict(listed[4], text="Nope.")])
    report = _prepare(root, tmp_path / "out")
    assert report["total"] == 11 and report["kept"] == 10 and report["dropped"]["duplicate_id"] == 1
    assert "item 11: skipped, utterance id 'LJ001-0005'" in report["duplicate_lines"][0]


# ---------------------------------------------------------------- 4. stage 0 of the mini corpus
def test_regeneration_reason_names_the_changed_settings(tmp_path):
    folder = tmp_path / "mini"
    assert mini.regeneration_reason(folder) == "there is no mini corpus there yet"
    _bytes(folder / "metadata.csv", b"")
    assert "incomplete" in mini.regeneration_reason(folder)
    recorded = mini._settings(99, 3, 4, mini.load_sentences())
    _bytes(folder / ".complete", json.dumps(recorded).encode())
    reason = mini.regeneration_reason(folder, seed=100, n_speakers=2, utts_per_speaker=4)
    assert reason == "settings changed: seed 99 -> 100, n_speakers 3 -> 2"
    assert "wavs are missing" in mini.regeneration_reason(folder, seed=99, n_speakers=3, utts_per_speaker=4)


@needs_espeak
def test_generate_says_generated_reused_and_why_it_regenerates(tmp_path, capsys):
    folder = tmp_path / "mini"
    mini.generate(folder, seed=5, n_speakers=1, utts_per_speaker=1, nj=1)
    out = capsys.readouterr().out
    assert "mini corpus generated in" in out and "reused" not in out and "regenerating" not in out

    mini.generate(folder, seed=5, n_speakers=1, utts_per_speaker=1, nj=1)
    out = capsys.readouterr().out
    assert "mini corpus reused (already there" in out and "mini corpus generated" not in out

    mini.generate(folder, seed=6, n_speakers=1, utts_per_speaker=1, nj=1)
    out = capsys.readouterr().out
    assert "regenerating" in out and "settings changed: seed 5 -> 6" in out and "removing its wavs/" in out
    assert "mini corpus generated in" in out
    assert json.loads((folder / ".complete").read_text())["seed"] == 6


def test_a_cache_that_cannot_be_written_stops_the_run_and_drops_nothing(tmp_path):
    # resampled audio goes to the cache: a full or unwritable cache is not a corrupt corpus file
    root = _ljspeech(tmp_path / "LJ", [])
    cache = _bytes(tmp_path / "cache", b"a file where the cache folder should be")
    with pytest.raises(DataError, match=r"cannot write the resampled audio \(NotADirectoryError.*then rerun"):
        prepare_manifests("ljspeech", root, tmp_path / "out", sample_rate=22050, min_duration=0.1,
                          max_duration=5.0, min_keep_ratio=0.5, n_valid=1, n_test=1, heldout_speakers=[], seed=0,
                          cleaner="english", cache_dir=cache)
    assert not (tmp_path / "out" / "report.json").exists()
    cache.unlink()  # space freed: the rerun resamples every file
    report = prepare_manifests("ljspeech", root, tmp_path / "out", sample_rate=22050, min_duration=0.1,
                               max_duration=5.0, min_keep_ratio=0.5, n_valid=1, n_test=1, heldout_speakers=[],
                               seed=0, cleaner="english", cache_dir=cache)
    assert report["kept"] == 10 and len(list(cache.rglob("*.wav"))) == 10
