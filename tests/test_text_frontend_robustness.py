"""The text frontend on text it cannot read: other scripts, unknown symbols,
numbers glued to letters, Latin letters and raw pinyin in Mandarin, odd
pinyin spellings, a corrupt corpus item in stage 2, Mandarin BPE."""

import json
import logging
import random
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from semtts.errors import ConfigError, DataError
from semtts.packed_model import PackedModel
from semtts.stages import frontend as stage2
from semtts.text.cleaners import clean_text, clean_with_removed
from semtts.text.frontend import Frontend
from semtts.text.phonemize import EspeakPhonemizer, MandarinPhonemizer
from semtts.text.pinyin import find_toned_pinyin, pinyin_syllable_to_symbols, pinyin_syllables
from semtts.text.tokenizer import BLANK_ID, UNK_ID, TokenList, intersperse, train_bpe


@pytest.fixture(scope="module")
def english():
    frontend = Frontend("phn", "en-us", "english")
    frontend.build_token_list(["Hello, world! How are you today?", "The quick brown fox jumps."])
    return frontend


@pytest.fixture(scope="module")
def pinyin_model():
    """A Mandarin model whose tokens come from pinyin transcripts (AISHELL-3): no punctuation, no space."""
    frontend = Frontend("phn", "cmn", "mandarin")
    frontend.token_list = TokenList.build(MandarinPhonemizer().from_pinyin(["ni3 hao3", "wo3 yong4 shi4 jie4"]))
    return model_of(frontend)


def model_of(frontend: Frontend, add_blank: bool = True) -> PackedModel:
    """A PackedModel that has only what ``encode_texts`` uses (no folder, no generator)."""
    model = PackedModel.__new__(PackedModel)
    model.frontend, model.hparams = frontend, {"frontend": {"add_blank": add_blank}}
    return model


# 1. Text that cleans to nothing ------------------------------------------------
@pytest.mark.parametrize("text", ["😀", "Привет", "你好", "Привет!", "...", "--"])
def test_text_with_nothing_to_speak_is_an_error(english, text):
    with pytest.raises(DataError, match=r"^synthesize: text 1 gives no tokens: "):
        model_of(english).encode_texts(["hello", text])


def test_blanks_are_added_after_the_check(english):
    (ids,) = model_of(english).encode_texts("Hello!")
    assert ids[0] == ids[-1] == BLANK_ID and len(ids) % 2 == 1
    assert model_of(english, add_blank=False).encode_texts("Hello!")[0] == ids[1::2]


# 2. Unknown symbols are dropped at synthesis, not turned into <unk> -------------
def test_unknown_symbols_are_dropped_with_one_warning(pinyin_model, caplog):
    with caplog.at_level(logging.WARNING, logger="semtts.packed_model"):
        (ids,) = pinyin_model.encode_texts("你好, 世界!")
    assert UNK_ID not in ids
    tokens = pinyin_model.frontend.token_list
    assert tokens.decode(ids) == ["n", "i3", "h", "ao3", "sh", "i4", "j", "ie4"]
    warnings = [r.getMessage() for r in caplog.records if "outside the model's token list" in r.getMessage()]
    assert len(warnings) == 1 and "',': 1" in warnings[0] and "'!': 1" in warnings[0]
    with pytest.raises(DataError, match="text 0 gives no tokens: '，!。'"):
        pinyin_model.encode_texts("，!。")


def test_drop_unknown_in_token_list_and_frontend():
    tokens = TokenList.build([["a", " ", "b"]])
    seen = Counter()
    assert tokens.encode(["a", "x", "b"], seen) == [4, UNK_ID, 5]
    assert tokens.encode(["a", "x", "b"], seen, drop_unknown=True) == [4, 5] and seen == Counter({"x": 2})
    frontend = Frontend("char", "en-us", "english")
    frontend.build_token_list(["ab ba"])
    ids, unknown = frontend.encode(["zz ab zz ba zz"], drop_unknown=True)
    assert frontend.token_list.decode(ids[0]) == list("ab ba") and unknown == Counter({"z": 6})


def test_letters_the_cleaner_drops_are_named_at_synthesis(english, caplog):
    with caplog.at_level(logging.WARNING, logger="semtts.packed_model"):
        model_of(english).encode_texts("Привет world")
    assert any("left out letters" in r.getMessage() and "'п': 1" in r.getMessage() for r in caplog.records)


# 3. Latin letters and raw pinyin in Mandarin text ----------------------------------
def test_latin_letters_are_not_pinyin_initials():
    g2p = MandarinPhonemizer()
    (symbols,) = g2p([clean_text("我用iPhone。", "mandarin")])
    assert symbols == ["uo3", "iong4", "I", "P", "H", "O", "N", "E", "."]
    assert not {"h", "n"} & set(symbols)


def test_latin_letters_are_dropped_by_a_pinyin_model(pinyin_model, caplog):
    with caplog.at_level(logging.WARNING, logger="semtts.packed_model"):
        (ids,) = pinyin_model.encode_texts("我用iPhone。")
    assert pinyin_model.frontend.token_list.decode(ids) == ["uo3", "iong4"]
    assert any("'H': 1" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "raw, hanzi",
    [("ni3 hao3", "你好"), ("Ni3hao3!", "你好!"), ("我说 ni3 hao3 世界", "我说你好世界"), ("lü4 lue4 ma0", "绿略吗"),
     ("他说 a5 ni3", "他说啊你")],
)
def test_toned_pinyin_in_the_text_is_read_as_pinyin(raw, hanzi):
    frontend = Frontend("phn", "cmn", "mandarin")
    assert frontend.symbols([raw]) == frontend.symbols([hanzi])


def test_what_is_not_pinyin_stays_letters_and_numbers():
    assert clean_text("A4纸, mp3, COVID19, pm2.5, Win10", "mandarin") == "a四纸,mp三,covid十九,pm二点五,win十"
    assert find_toned_pinyin("A4纸 M1 hello3 ni3x") == []
    assert {"zhong", "lve", "hng", "er"} <= pinyin_syllables() and not {"win", "hi", "ten"} & pinyin_syllables()
    assert all(pinyin_syllable_to_symbols(s + "1") for s in pinyin_syllables())


# 4. English numbers next to letters --------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("I have 10am, 3pm, 5km, H2O, mp3, COVID19, No.5, iPhone15, 4G.",
         "i have ten am, three pm, five kilometers, h two o, mp three, covid nineteen, number five, iphone fifteen, four g."),
        ("Meet at 10:30am in the 90s.", "meet at ten thirty am in the nineties."),
        ("Dr.Who won $5 on the 2nd at 4:05, 12.5% of 007.",
         "doctor who won five dollars on the second at four oh five, twelve point five percent of zero zero seven."),
        ("The 1990s, a 21st-century B2B deal", "the nineteen nineties, a twenty first-century b two b deal"),
    ],
)
def test_numbers_glued_to_letters_are_spaced(raw, expected):
    assert clean_text(raw, "english") == expected


# 5. Other scripts: counted, reported, dropped in stage 2 --------------------------
def test_removed_letters_are_counted():
    text, removed = clean_with_removed("Привет world 你好 mixed 😀", "english")
    assert text == "world mixed"
    assert removed == Counter("привет你好")
    assert clean_with_removed("你好 world, γειά", "mandarin") == ("你好 world,", Counter("γειά"))
    assert clean_with_removed("Plain text, 42 #tags ~", "english")[1] == Counter()
    assert clean_with_removed("Ünïcödé ß", "english")[1] == Counter()  # transliterated, not lost
    assert clean_with_removed("Привет", "basic") == ("привет", Counter())


def write_corpus(folder: Path, splits: dict[str, dict[str, str | dict]]) -> Path:
    """Stage-1 manifests: ``{split: {utt: text or item fields}}``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        manifest = {}
        for utt, value in items.items():
            fields = value if isinstance(value, dict) else {"text": value}
            manifest[utt] = {"wav": f"{utt}.wav", "spk": "s1", "duration": 1.0, "sr": 22050, **fields}
        (folder / f"{split}.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    return folder


HP = {"token_type": "phn", "language": "en-us", "cleaner": "english", "bpe_vocab_size": 50, "nj": 1}


def test_stage2_drops_and_reports_other_scripts_and_phonemizes_once(tmp_path, monkeypatch):
    data = write_corpus(tmp_path / "data", {
        "train": {"u1": "Hello world.", "u2": "Привет world", "u3": "😀", "u4": "A quick test."},
        "valid": {"v1": "Hello there!", "v2": "Good 你好 morning", "v3": "Zebra"},
    })
    calls = []
    original = EspeakPhonemizer.phonemize

    def counting(self, texts):
        calls.extend(texts)
        return original(self, texts)

    monkeypatch.setattr(EspeakPhonemizer, "phonemize", counting)
    report = stage2.tokenize_splits(HP, data, tmp_path / "tokens")
    assert sorted(calls) == sorted(["hello world.", "", "a quick test.", "hello there!", "zebra"])
    train, valid = report["splits"]["train"], report["splits"]["valid"]
    assert train["dropped_other_script"] == {"u2": dict(Counter("привет"))}
    assert train["removed_letters"] == dict(Counter("привет")) and train["dropped_no_tokens"] == ["u3"]
    assert valid["dropped_other_script"] == {"v2": {"你": 1, "好": 1}} and valid["kept"] == 2
    assert valid["unknown_total"] > 0  # 'z' of "zebra" is not in the training text: <unk> in training
    written = json.loads((tmp_path / "tokens" / "report.json").read_text(encoding="utf-8"))
    assert written["splits"]["train"]["dropped_other_script"] == train["dropped_other_script"]
    manifest = json.loads((tmp_path / "tokens" / "train.json").read_text(encoding="utf-8"))
    assert set(manifest) == {"u1", "u4"}
    tokens = TokenList.load(tmp_path / "tokens" / "tokens.txt")
    assert report["n_tokens"] == len(tokens) and all(item["tokens"] for item in manifest.values())


def test_stage2_fails_when_no_training_item_is_left(tmp_path):
    data = write_corpus(tmp_path / "data", {"train": {"u1": "Привет", "u2": "😀"}})
    with pytest.raises(DataError, match=r"train\.json: no training utterance is left .*1 other script"):
        stage2.tokenize_splits(HP | {"token_type": "char"}, data, tmp_path / "tokens")


# 6. Mandarin BPE -----------------------------------------------------------------
def hanzi_texts(common: int, rare: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    chars = [chr(0x4E00 + i) for i in range(common + rare)]
    return ["".join(rng.choices(chars[:common], k=30)) for _ in range(1500)] + chars[common:]


def test_stage2_mandarin_bpe_trains_with_more_hanzi_than_pieces(tmp_path, monkeypatch):
    texts = hanzi_texts(450, 350)
    data = write_corpus(tmp_path / "data", {"train": {f"u{i}": t for i, t in enumerate(texts)}})
    coverages = []

    def spy(*args, **kwargs):
        coverages.append(kwargs.get("character_coverage"))
        return train_bpe(*args, **kwargs)

    monkeypatch.setattr(stage2, "train_bpe", spy)
    hp = {"token_type": "bpe", "language": "cmn", "cleaner": "mandarin", "bpe_vocab_size": 500, "nj": 1}
    report = stage2.tokenize_splits(hp, data, tmp_path / "tokens")
    assert coverages == [stage2.MANDARIN_BPE_COVERAGE] and coverages[0] < 1.0
    assert 400 < report["n_tokens"] <= 503 and report["splits"]["train"]["kept"] == len(texts)


def test_bpe_vocabulary_far_too_small_is_a_clear_error(tmp_path):
    rng, chars = random.Random(1), [chr(0x4E00 + i) for i in range(800)]
    uniform = ["".join(rng.choices(chars, k=20)) for _ in range(2000)]
    with pytest.raises(ConfigError, match=r"vocab_size 500 cannot hold .* at least \d+$"):
        train_bpe(uniform, tmp_path / "bpe", 500, character_coverage=0.9995)


# 7. Pinyin spellings; a bad transcript drops its item only -------------------------
@pytest.mark.parametrize(
    "syllable, symbols",
    [("lue4", ["l", "ve4"]), ("nue4", ["n", "ve4"]), ("ma0", ["m", "a5"]), ("lüe4", ["l", "ve4"]),
     (unicodedata.normalize("NFD", "lü4"), ["l", "v4"]), (unicodedata.normalize("NFD", "Nǚ3"), None),
     ("LV3", ["l", "v3"])],
)
def test_pinyin_spellings(syllable, symbols):
    assert pinyin_syllable_to_symbols(syllable) == symbols


def test_frontend_reports_a_bad_transcript_instead_of_raising():
    frontend = Frontend("phn", "cmn", "mandarin")
    failed: dict = {}
    symbols = frontend.symbols(["你好", "x", "好"], pinyin=["ni3 hao3", "xyz2", None], failed=failed)
    assert symbols == [["n", "i3", "h", "ao3"], [], ["h", "ao3"]]
    assert list(failed) == [1] and "'xyz2' is not a pinyin syllable" in failed[1]


def test_stage2_drops_an_item_with_unreadable_pinyin(tmp_path):
    data = write_corpus(tmp_path / "data", {
        "train": {"u1": {"text": "你好", "pinyin": ["ni3", "hao3"]},
                  "u2": {"text": "略", "pinyin": "lue4 ma0"},
                  "u3": {"text": "坏", "pinyin": ["huai4", "qqq9"]},
                  "u4": {"text": "Привет 你好"}},
    })
    hp = {"token_type": "phn", "language": "cmn", "cleaner": "mandarin", "bpe_vocab_size": 50, "nj": 1}
    report = stage2.tokenize_splits(hp, data, tmp_path / "tokens")["splits"]["train"]
    assert report["kept"] == 2 and list(report["dropped_bad_pinyin"]) == ["u3"]
    assert "qqq9" in report["dropped_bad_pinyin"]["u3"]
    assert list(report["dropped_other_script"]) == ["u4"]
    tokens = TokenList.load(tmp_path / "tokens" / "tokens.txt")
    assert {"ve4", "a5"} <= set(tokens.symbols) and "qqq9" not in tokens.symbols


def test_intersperse_of_nothing_is_still_one_blank():
    # encode_texts must check before interspersing: this is why.
    assert intersperse([], BLANK_ID) == [BLANK_ID]


def run_stage2(*argv: str) -> int:
    """Stage 2's exit status (its entry point always exits)."""
    with pytest.raises(SystemExit) as stop:
        stage2.main(list(argv))
    return stop.value.code


def test_stage2_rerun_after_a_frontend_change_says_so(tmp_path, monkeypatch, capsys):
    # the done marker holds a fingerprint of semtts.text and the g2p version: an upgrade that
    # changes them is an error naming it, never a silent reuse of the old tokens
    data = write_corpus(tmp_path / "exp" / "data", {"train": {"u1": "Hello world.", "u2": "A quick test."}})
    (data / "done").write_text("{}", encoding="utf-8")
    hparams = str(tmp_path / "corpus.yaml")
    Path(hparams).write_text(f"output_folder: {tmp_path / 'exp'}\ntoken_type: char\nlanguage: en-us\n"
                             "cleaner: english\nbpe_vocab_size: 50\nnj: 1\n", encoding="utf-8")
    assert run_stage2(hparams) == 0
    marker = json.loads((tmp_path / "exp" / "tokens" / "done").read_text(encoding="utf-8"))
    assert marker["settings"]["frontend_fingerprint"] == stage2.frontend_fingerprint("char", "en-us")
    assert run_stage2(hparams) == 0 and "skipped: already done" in capsys.readouterr().out  # unchanged
    monkeypatch.setattr(stage2, "frontend_fingerprint", lambda token_type, language: "0" * 16)
    assert run_stage2(hparams) == 2
    assert "other settings (frontend_fingerprint)" in capsys.readouterr().err
    assert run_stage2(hparams, "--force") == 0
