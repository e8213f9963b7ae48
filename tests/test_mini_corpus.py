"""Tests of the espeak-ng mini corpus (semtts.data.corpora.mini)."""

import json
import logging
import shutil

import pytest

from semtts.audio import audio_info, load_audio
from semtts.data.corpora import mini
from semtts.errors import ConfigError, DataError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
SMALL = {"seed": 99, "n_speakers": 3, "utts_per_speaker": 4}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    return mini.generate(tmp_path_factory.mktemp("mini") / "corpus", nj=2, **SMALL)


def _snapshot(folder):
    """metadata.csv text and every wav's bytes, keyed by relative path."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("wavs/*/*.wav"))}
    return (folder / "metadata.csv").read_text(encoding="utf-8"), files


# --- The sentence pool and the draw plan (no synthesis) -----------------------------------


def test_sentence_pool_is_large_varied_and_well_formed():
    sentences = mini.load_sentences()
    assert len(set(sentences)) == len(sentences) >= 240
    assert all(5 <= len(s.split()) <= 15 and "|" not in s for s in sentences)
    assert sum(s.endswith("?") for s in sentences) >= 20
    assert sum(any(c.isdigit() for c in s) for s in sentences) >= 20
    assert sum("Dr." in s.split() for s in sentences) >= 3


def test_default_plan_covers_six_speakers_forty_utts_200_sentences():
    plan = mini.plan_corpus()
    speakers = sorted({item["spk"] for item in plan})
    assert speakers == [f"spk{i}" for i in range(6)]
    for spk in speakers:
        texts = [item["text"] for item in plan if item["spk"] == spk]
        assert len(texts) >= 40 and len(set(texts)) == len(texts)
    assert len({item["text"] for item in plan}) >= 200
    assert len({item["utt_id"] for item in plan}) == len(plan)
    voices = {(item["voice"], item["pitch"], item["rate"]) for item in plan}
    assert len(voices) == 6
    assert len({v for v, _, _ in voices}) == 6 and len({p for _, p, _ in voices}) == 6
    assert set(mini.DEFAULT_HELDOUT) <= set(speakers)


def test_plan_is_seeded():
    assert mini.plan_corpus(seed=5) == mini.plan_corpus(seed=5)
    assert mini.plan_corpus(seed=5) != mini.plan_corpus(seed=6)


def test_plan_overlap_only_when_pool_is_exhausted():
    pool = [f"Sentence number {i} is here." for i in range(10)]
    plan = mini.plan_corpus(seed=0, n_speakers=3, utts_per_speaker=4, sentences=pool)
    assert len({item["text"] for item in plan}) == 10  # 12 draws cover all 10 sentences
    for spk in ("spk0", "spk1", "spk2"):
        texts = [item["text"] for item in plan if item["spk"] == spk]
        assert len(set(texts)) == 4


def test_plan_rejects_bad_settings():
    with pytest.raises(ConfigError, match="n_speakers=99"):
        mini.plan_corpus(n_speakers=99)
    with pytest.raises(ConfigError, match="utts_per_speaker=100000"):
        mini.plan_corpus(utts_per_speaker=100000)


def test_bad_sentence_file_is_named(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("One two three four five.\nToo short.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"s\.txt:2: 2 words"):
        mini.load_sentences(path)


# --- Generation ---------------------------------------------------------------------------


@needs_espeak
def test_generated_audio_is_22k_mono_16bit_and_not_silent(small_corpus):
    utts = mini.list_utterances(small_corpus)
    assert len(utts) == 12
    for utt in utts:
        info = audio_info(utt["path"])
        assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
        audio, _ = load_audio(utt["path"])
        assert 0.5 < audio.shape[1] / 22050 < 10.0
        assert audio.abs().max() > 0.05 and audio.pow(2).mean().sqrt() > 0.005


@needs_espeak
def test_list_utterances_fields(small_corpus):
    utts = mini.list_utterances(small_corpus)
    plan = mini.plan_corpus(**SMALL)
    assert [u["utt_id"] for u in utts] == [p["utt_id"] for p in plan]
    for utt, item in zip(utts, plan):
        assert set(utt) == {"utt_id", "path", "text", "spk"}
        assert (utt["text"], utt["spk"]) == (item["text"], item["spk"])
        assert utt["utt_id"].startswith(utt["spk"] + "_")
        assert utt["path"].startswith("/") and utt["path"].endswith(f"wavs/{utt['spk']}/{utt['utt_id']}.wav")
    assert {u["spk"] for u in mini.list_utterances(small_corpus, speakers=["spk2"])} == {"spk2"}
    with pytest.raises(ConfigError, match="spk9"):
        mini.list_utterances(small_corpus, speakers=["spk9"])
    with pytest.raises(ConfigError, match="mic"):
        mini.list_utterances(small_corpus, mic="mic1")


@needs_espeak
def test_marker_records_settings(small_corpus):
    marker = json.loads((small_corpus / ".complete").read_text())
    assert marker["seed"] == 99 and marker["generator_version"] == mini.GENERATOR_VERSION
    assert marker["counts"] == {"spk0": 4, "spk1": 4, "spk2": 4}
    assert marker["speakers"]["spk1"]["voice"] == mini.VOICES[1][0]


@needs_espeak
def test_same_seed_gives_identical_corpus(small_corpus, tmp_path):
    again = mini.generate(tmp_path / "again", nj=1, **SMALL)
    assert _snapshot(again) == _snapshot(small_corpus)
    other = mini.generate(tmp_path / "other", seed=100, n_speakers=3, utts_per_speaker=4)
    assert _snapshot(other)[0] != _snapshot(small_corpus)[0]


@needs_espeak
def test_rerun_skips_a_complete_corpus(small_corpus, caplog):
    before = {p: p.stat().st_mtime_ns for p in small_corpus.glob("wavs/*/*.wav")}
    with caplog.at_level(logging.INFO, logger=mini.__name__):
        assert mini.generate(small_corpus, **SMALL) == small_corpus
    assert "skipped" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in small_corpus.glob("wavs/*/*.wav")} == before


@needs_espeak
def test_incomplete_corpus_is_regenerated(small_corpus, tmp_path, caplog):
    folder = tmp_path / "partial"
    shutil.copytree(small_corpus, folder)
    reference = _snapshot(folder)
    (folder / ".complete").unlink()
    victim = next(iter(sorted(folder.glob("wavs/spk1/*.wav"))))
    victim.write_bytes(b"half a file")
    (folder / "wavs" / "spk0" / "stale.wav").write_bytes(b"left over")
    with pytest.raises(DataError, match="partial"):
        mini.check(folder)
    with caplog.at_level(logging.INFO, logger=mini.__name__):
        mini.generate(folder, **SMALL)
    assert "skipped" not in caplog.text
    assert _snapshot(folder) == reference
    mini.check(folder)


@needs_espeak
def test_changed_settings_regenerate(small_corpus, tmp_path):
    folder = tmp_path / "grow"
    shutil.copytree(small_corpus, folder)
    mini.generate(folder, seed=99, n_speakers=2, utts_per_speaker=2)
    assert sorted(p.name for p in folder.glob("wavs/*/*.wav")) == [
        "spk0_0000.wav", "spk0_0001.wav", "spk1_0000.wav", "spk1_0001.wav"]
    assert json.loads((folder / ".complete").read_text())["n_utterances"] == 4


def test_missing_espeak_names_the_apt_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(DataError, match="apt-get install -y espeak-ng"):
        mini.generate(tmp_path / "corpus", n_speakers=1, utts_per_speaker=1)
    assert not (tmp_path / "corpus" / ".complete").exists()


def test_check_names_the_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        mini.check(tmp_path)
    with pytest.raises(DataError, match="stage 0"):
        mini.list_utterances(tmp_path)


def test_download_hint_and_interface():
    assert mini.NAME == "mini"
    assert "espeak-ng" in mini.DOWNLOAD_HINT and "apt-get install" in mini.DOWNLOAD_HINT
    assert mini.DEFAULT_HELDOUT == ["spk4", "spk5"]
    assert mini.SAMPLE_RATE == 22050
