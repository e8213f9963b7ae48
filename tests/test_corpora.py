"""Corpus parsers: each layout is rebuilt in miniature under tmp_path."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from semtts.data.corpora import CORPORA, get_corpus
from semtts.errors import ConfigError, DataError

SR = 16000


def _audio(path: Path, seconds: float = 0.3, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), sr, subtype="PCM_16")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- registry
def test_registry_names_and_unknown():
    for name in CORPORA:
        module = get_corpus(name)
        assert module.NAME == name
        assert callable(module.check) and callable(module.list_utterances) and module.DOWNLOAD_HINT
    with pytest.raises(ConfigError, match="unknown corpus 'timit'.*ljspeech, vctk, libritts_r, aishell3"):
        get_corpus("timit")


@pytest.mark.parametrize("name", ["ljspeech", "vctk", "libritts_r", "aishell3"])
def test_check_names_folder_and_hint(tmp_path, name):
    module = get_corpus(name)
    missing = tmp_path / "absent"
    with pytest.raises(DataError) as err:
        module.check(missing)
    assert str(missing) in str(err.value) and module.DOWNLOAD_HINT in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        module.check(empty)
    assert str(empty) in str(err.value) and module.DOWNLOAD_HINT in str(err.value)


# ---------------------------------------------------------------- LJSpeech
def test_ljspeech(tmp_path, caplog):
    root = tmp_path / "LJSpeech-1.1"
    for utt in ("LJ001-0001", "LJ001-0002", "LJ001-0003"):
        _audio(root / "wavs" / f"{utt}.wav")
    _write(
        root / "metadata.csv",
        "LJ001-0001|Printing, in 1 sense|Printing, in one sense\n"
        "LJ001-0002|Only raw text|\n"
        "garbage line without pipes\n"
        "\n"
        'LJ001-0003|He said "no"|He said "no"\n',
    )
    ljspeech = get_corpus("ljspeech")
    ljspeech.check(root)
    with caplog.at_level(logging.WARNING, logger="semtts.data.corpora"):
        items = ljspeech.list_utterances(root)
    assert [it["utt_id"] for it in items] == ["LJ001-0001", "LJ001-0002", "LJ001-0003"]
    assert [it["text"] for it in items] == ["Printing, in one sense", "Only raw text", 'He said "no"']
    assert {it["spk"] for it in items} == {"LJ"}
    assert items[0]["path"] == str(root.absolute() / "wavs" / "LJ001-0001.wav")
    assert all("split" not in it for it in items)
    assert "metadata.csv:3" in caplog.text
    raw = ljspeech.list_utterances(root, transcript="raw")
    assert raw[0]["text"] == "Printing, in 1 sense"
    with pytest.raises(ConfigError, match="transcript"):
        ljspeech.list_utterances(root, transcript="phonemes")


# ---------------------------------------------------------------- VCTK
def _vctk_tree(root: Path) -> None:
    for spk in ("p225", "p226", "p227"):
        for n in ("001", "002"):
            _write(root / "txt" / spk / f"{spk}_{n}.txt", f"Sentence {n} of {spk}.\n")
            for mic in ("mic1", "mic2"):
                _audio(root / "wav48_silence_trimmed" / spk / f"{spk}_{n}_{mic}.flac")
    _audio(root / "wav48_silence_trimmed" / "p315" / "p315_001_mic1.flac")  # no transcript
    _write(root / "txt" / "p225" / "notes.txt", "not an utterance")
    (root / "txt" / "p226" / "p226_003.txt").write_bytes(b"\xff\xfe\xfa broken")


def test_vctk(tmp_path, caplog):
    root = tmp_path / "VCTK-Corpus-0.92"
    _vctk_tree(root)
    vctk = get_corpus("vctk")
    vctk.check(root)
    with caplog.at_level(logging.WARNING, logger="semtts.data.corpora"):
        items = vctk.list_utterances(root)
    assert [it["utt_id"] for it in items] == [
        "p225_001", "p225_002", "p226_001", "p226_002", "p227_001", "p227_002"
    ]
    assert {it["spk"] for it in items} == {"p225", "p226", "p227"}  # p315 skipped
    assert items[0]["text"] == "Sentence 001 of p225."
    assert items[0]["path"].endswith("wav48_silence_trimmed/p225/p225_001_mic1.flac")
    assert all(Path(it["path"]).is_file() for it in items)
    assert all("split" not in it for it in items)
    assert "notes.txt" in caplog.text and "p226_003.txt" in caplog.text

    mic2 = vctk.list_utterances(root, mic="mic2", heldout_speakers=["p227"])
    assert all(it["path"].endswith("_mic2.flac") for it in mic2)
    assert {it["utt_id"]: it.get("split") for it in mic2 if it["spk"] == "p227"} == {
        "p227_001": "test_unseen",
        "p227_002": "test_unseen",
    }
    assert all("split" not in it for it in mic2 if it["spk"] != "p227")
    with pytest.raises(ConfigError, match="p999"):
        vctk.list_utterances(root, heldout_speakers=["p999"])
    with pytest.raises(ConfigError, match="mic"):
        vctk.list_utterances(root, mic="mic3")


# ---------------------------------------------------------------- LibriTTS-R
def _libritts_utt(root: Path, subset: str, spk: str, chapter: str, n: str, text: str | None) -> None:
    stem = f"{spk}_{chapter}_{n}"
    folder = root / subset / spk / chapter
    _audio(folder / f"{stem}.wav")
    if text is not None:
        _write(folder / f"{stem}.normalized.txt", text)
        _write(folder / f"{stem}.original.txt", text.upper())


def test_libritts_r(tmp_path, caplog):
    root = tmp_path / "LibriTTS_R"
    _libritts_utt(root, "train-clean-100", "19", "198", "000000_000000", "Northanger Abbey.")
    _libritts_utt(root, "train-clean-100", "19", "198", "000000_000001", "Chapter one.")
    _libritts_utt(root, "train-clean-100", "26", "495", "000004_000000", "No one who had ever seen her.")
    _libritts_utt(root, "train-clean-100", "26", "495", "000004_000001", None)  # no transcript
    _libritts_utt(root, "dev-clean", "84", "121123", "000007_000001", "Go, do you hear?")
    _libritts_utt(root, "test-clean", "121", "121726", "000004_000003", "Also, a popular contrivance.")
    _audio(root / "test-clean" / "121" / "121726" / "99_121726_000004_000004.wav")  # wrong speaker
    libritts = get_corpus("libritts_r")
    libritts.check(root)

    subsets = {"train": ["train-clean-100"], "valid": ["dev-clean"], "test": ["test-clean"]}
    with caplog.at_level(logging.WARNING, logger="semtts.data.corpora"):
        items = libritts.list_utterances(root, subsets=subsets)
    by_id = {it["utt_id"]: it for it in items}
    assert sorted(by_id) == [
        "121_121726_000004_000003",
        "19_198_000000_000000",
        "19_198_000000_000001",
        "26_495_000004_000000",
        "84_121123_000007_000001",
    ]
    assert by_id["19_198_000000_000000"]["spk"] == "19"
    assert by_id["19_198_000000_000000"]["text"] == "Northanger Abbey."
    assert by_id["26_495_000004_000000"]["split"] == "train"
    assert by_id["84_121123_000007_000001"]["split"] == "valid"
    assert by_id["121_121726_000004_000003"]["split"] == "test"
    assert "26_495_000004_000001" in caplog.text and "99_121726_000004_000004" in caplog.text

    auto = libritts.list_utterances(root, subsets={"auto": ["train-clean-100"]}, transcript="original")
    assert len(auto) == 3 and all("split" not in it for it in auto)
    assert auto[0]["text"] == "NORTHANGER ABBEY."
    # The default mapping asks for train-clean-360, which this tree lacks.
    with pytest.raises(DataError, match="train-clean-360"):
        libritts.list_utterances(root)
    with pytest.raises(ConfigError, match="two splits"):
        libritts.list_utterances(root, subsets={"train": ["dev-clean"], "valid": ["dev-clean"]})


# ---------------------------------------------------------------- AISHELL-3
def test_aishell3(tmp_path, caplog):
    root = tmp_path / "data_aishell3"
    _write(
        root / "train" / "content.txt",
        "SSB00050001.wav\t广 guang3 州 zhou1 女 nv3 大 da4 学 xue2 生 sheng1\n"
        "SSB00050002.wav\t你 ni3 好 hao3\n"
        "SSB00050003.wav\t缺 que1 拼\n"  # odd token count
        "SSB00050004.wav 没 mei2 有 you3\n"  # no tab
        "SSB00060001.wav\t对 dui4 的 de5\n",
    )
    _write(root / "test" / "content.txt", "SSB07100001.wav\t是 shi4\nSSB07100002.wav\t好 hao\n")
    for part, name in (("train", "SSB00050001.wav"), ("train", "SSB00050002.wav"), ("train", "SSB00060001.wav"),
                       ("test", "SSB07100001.wav")):
        _audio(root / part / "wav" / name[:7] / name)
    aishell3 = get_corpus("aishell3")
    aishell3.check(root)
    with caplog.at_level(logging.WARNING, logger="semtts.data.corpora"):
        items = aishell3.list_utterances(root)
    by_id = {it["utt_id"]: it for it in items}
    assert list(by_id) == ["SSB00050001", "SSB00050002", "SSB00060001", "SSB07100001"]
    first = by_id["SSB00050001"]
    assert first["text"] == "广州女大学生"
    assert first["pinyin"] == ["guang3", "zhou1", "nv3", "da4", "xue2", "sheng1"]
    assert first["spk"] == "SSB0005"
    assert first["path"] == str(root.absolute() / "train" / "wav" / "SSB0005" / "SSB00050001.wav")
    assert "split" not in first
    assert by_id["SSB07100001"]["split"] == "test_unseen" and by_id["SSB07100001"]["spk"] == "SSB0710"
    for line in ("content.txt:3", "content.txt:4", "test/content.txt:2"):
        assert line in caplog.text
    assert [it["utt_id"] for it in aishell3.list_utterances(root, parts=["test"])] == ["SSB07100001"]
    with pytest.raises(ConfigError, match="dev"):
        aishell3.list_utterances(root, parts=["dev"])
