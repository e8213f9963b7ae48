"""Tests of the text frontend: cleaners, phonemizers, token lists, BPE, Frontend."""

from collections import Counter

import pytest

from semtts.errors import ConfigError, DataError
from semtts.text.cleaners import CLEANERS, clean_text, number_to_hanzi, number_to_words
from semtts.text.frontend import Frontend
from semtts.text.phonemize import EspeakPhonemizer, MandarinPhonemizer
from semtts.text.tokenizer import (
    BLANK_ID,
    PAD_ID,
    UNK_ID,
    SentencePieceTokenizer,
    TokenList,
    intersperse,
    train_bpe,
)


@pytest.fixture(scope="module")
def english():
    """One English phoneme frontend (and espeak-ng backend) for the module."""
    return Frontend("phn", "en-us", "english")


@pytest.fixture(scope="module")
def espeak(english):
    assert isinstance(english.phonemizer, EspeakPhonemizer)
    return english.phonemizer


# Cleaners ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Mr. and Mrs. Smith met Dr. Jones on St. Mark's Day.",
         "mister and missus smith met doctor jones on saint mark's day."),
        ("I have 3 cats and 1,250,000 ants.", "i have three cats and one million two hundred fifty thousand ants."),
        ("It costs $5, or £3.", "it costs five dollars, or three pounds."),
        ("$2.50 each", "two dollars fifty cents each"),
        ("Pi is 3.14!", "pi is three point one four!"),
        ("The 1st, 2nd, 3rd and 22nd.", "the first, second, third and twenty second."),
        ("Born in 1990; left in 2005.", "born in nineteen ninety; left in two thousand five."),
        ("7,000,000,042 people", "seven billion forty two people"),
        ("e.g. 50% off", "for example fifty percent off"),
        ("Café — naïve “quote”", "cafe - naive quote"),
        ("Hello ,   WORLD !", "hello, world!"),
    ],
)
def test_english_cleaner(raw, expected):
    assert clean_text(raw, "english") == expected


def test_english_cleaner_keeps_only_allowed_characters():
    cleaned = clean_text("Ünïcödé (brackets) [x] {y} <z> #tag ~ ^ 42", "english")
    assert set(cleaned) <= set("abcdefghijklmnopqrstuvwxyz ,.!?;:'-")
    assert "forty two" in cleaned and "unicode" in cleaned


def test_number_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(1_000_001) == "one million one"
    assert number_to_words(999_999_999_999).startswith("nine hundred ninety nine billion")
    assert number_to_words(10**12) == "one " + "zero " * 11 + "zero"
    assert number_to_hanzi(20_0050) == "二十万零五十"


def test_mandarin_cleaner():
    assert clean_text("你好，世界！  我 爱 你。", "mandarin") == "你好,世界!我爱你."
    assert clean_text("他买了3个 iPhone；真的？", "mandarin") == "他买了三个 iphone;真的?"
    assert clean_text("第1名：共10001人、", "mandarin") == "第一名:共一万零一人,"


def test_basic_cleaner_and_unknown_cleaner():
    assert clean_text(" Ｈｅｌｌｏ\t\nWorld 42 ", "basic") == "hello world 42"
    assert set(CLEANERS) == {"english", "mandarin", "basic"}
    with pytest.raises(ConfigError, match=r"'klingon'.*basic, english, mandarin"):
        clean_text("x", "klingon")


# Phonemizers ------------------------------------------------------------------
def test_english_phonemes_stress_and_punctuation(espeak):
    (symbols,) = espeak(["hello, world! how are you?"])
    assert all(len(s) == 1 for s in symbols)  # one IPA character per symbol
    assert "ˈ" in symbols
    marks = [s for s in symbols if s in ",.!?;:"]
    assert marks == [",", "!", "?"]
    assert symbols[-1] == "?"
    assert "".join(symbols).split(" ")[0] == "həlˈoʊ,"  # words separated by " "


def test_english_batch_stays_aligned(espeak):
    texts = ["", "...", "one. two", "yes - no", "hi", "!"]
    ipa = espeak.phonemize(texts)
    assert len(ipa) == len(texts)
    assert ipa[0] == "" and ipa[1] == "..." and ipa[5] == "!"
    assert ipa[2].count(".") == 1 and ipa[2].index(".") < ipa[2].index(" ")
    assert " - " in ipa[3]
    assert ipa[4] == "hˈaɪ"


def test_mandarin_hanzi():
    g2p = MandarinPhonemizer()
    assert g2p(["中国"]) == [["zh", "ong1", "g", "uo2"]]
    # Zero-initial syllable: only the final; neutral tone is 5; punctuation kept.
    assert g2p(["爱吗?"]) == [["ai4", "m", "a5", "?"]]
    assert g2p(["去,鱼."]) == [["q", "v4", ",", "v2", "."]]
    assert g2p([""]) == [[]]


def test_mandarin_pinyin_input():
    g2p = MandarinPhonemizer()
    assert g2p.from_pinyin(["guang3 zhou1 ， wo3 lv4 ma"]) == [
        ["g", "uang3", "zh", "ou1", ",", "uo3", "l", "v4", "m", "a5"]
    ]
    with pytest.raises(DataError, match=r"utterance 1: 'xyz2' is not a pinyin syllable"):
        g2p.from_pinyin(["ni3", "ni3 xyz2"])
    # Through the frontend: pinyin lists (as AISHELL-3 manifests hold them)
    # agree with the hanzi path; None entries fall back to the text.
    frontend = Frontend("phn", "cmn", "mandarin")
    texts = ["广州,我绿吗", "你好", "中国"]
    pinyin = [["guang3", "zhou1", ",", "wo3", "lu:4", "ma5"], None, "zhong1 guo2"]
    assert frontend.symbols(texts, pinyin=pinyin) == frontend.symbols(texts)
    assert frontend.symbols(texts, pinyin=[None, ["ni2"], None])[1] == ["n", "i2"]
    with pytest.raises(DataError, match=r"pinyin of text 2: 'x1'"):
        frontend.symbols(texts, pinyin=[None, None, ["x1"]])
    with pytest.raises(DataError, match="one entry per text: got 1 entries for 3 texts"):
        frontend.symbols(texts, pinyin=[["ni3"]])
    with pytest.raises(ConfigError, match="pinyin input needs token_type 'phn'"):
        Frontend("char", "cmn", "mandarin").symbols(["你"], pinyin=[["ni3"]])


def test_char_mode():
    frontend = Frontend("char", "en-us", "english")
    assert frontend.symbols(["Hi, 2!"]) == [["h", "i", ",", " ", "t", "w", "o", "!"]]
    assert Frontend("char", "cmn", "mandarin").symbols(["你 好。"]) == [["你", "好", "."]]


# Token lists ------------------------------------------------------------------
def test_token_list_build_is_deterministic():
    a = TokenList.build([["b", "a", " "], ["c", "a"]])
    b = TokenList.build([["c", "a"], [" ", "a", "b"]])
    assert a == b
    assert a.symbols == ["<pad>", "<blank>", "<unk>", " ", "a", "b", "c"]
    assert (a.encode(["<pad>"]), PAD_ID, BLANK_ID, UNK_ID) == ([0], 0, 1, 2)
    assert TokenList.build([["b", "a"], ["a"]], min_count=2).symbols[3:] == ["a"]


def test_unknown_symbols_map_to_unk_and_are_counted():
    tokens = TokenList.build([["a", "b"]])
    batch = Counter()
    assert tokens.encode(["a", "x", "b", "x", "y"], batch) == [3, UNK_ID, 4, UNK_ID, UNK_ID]
    assert batch == Counter({"x": 2, "y": 1})
    tokens.encode(["x"])
    assert tokens.unknown == Counter({"x": 3, "y": 1})
    assert tokens.decode([3, BLANK_ID, UNK_ID, PAD_ID]) == ["a", "<unk>"]
    with pytest.raises(DataError, match="token id 9"):
        tokens.decode([9])


def test_intersperse():
    assert intersperse([5, 6], BLANK_ID) == [BLANK_ID, 5, BLANK_ID, 6, BLANK_ID]
    assert intersperse([], 1) == [1]
    assert len(intersperse(list(range(10)), 1)) == 21


def test_tokens_txt_round_trip(tmp_path):
    tokens = TokenList.build([["ˈ", " ", "a", "ŋ", "▁ab"]])
    path = tmp_path / "sub" / "tokens.txt"
    tokens.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:4] == ["<pad>", "<blank>", "<unk>", "<space>"]
    assert len(lines) == len(tokens)
    loaded = TokenList.load(path)
    assert loaded == tokens and loaded.symbols[3] == " "
    assert loaded.encode([" ", "ŋ"]) == tokens.encode([" ", "ŋ"])


def test_tokens_txt_errors(tmp_path):
    bad = tmp_path / "tokens.txt"
    bad.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"tokens\.txt: a token list must start with"):
        TokenList.load(bad)
    bad.write_text("<pad>\n<blank>\n<unk>\na\na\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"token 4: symbol 'a' repeats token 3"):
        TokenList.load(bad)
    with pytest.raises(DataError, match="missing.txt"):
        TokenList.load(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="contains whitespace"):
        TokenList.build([["a b"]])


# BPE ---------------------------------------------------------------------------
BPE_TEXTS = [
    "the cat sat on the mat.",
    "the dog sat on the log.",
    "a cat and a dog met on the mat!",
    "the mat was flat, the log was not.",
] * 5


def test_bpe_training_and_encoding(tmp_path):
    model = train_bpe(BPE_TEXTS, tmp_path / "bpe", vocab_size=40)
    again = train_bpe(BPE_TEXTS, tmp_path / "bpe2", vocab_size=40)
    assert (tmp_path / "bpe.vocab").read_text() == (tmp_path / "bpe2.vocab").read_text()
    sp = SentencePieceTokenizer(model)
    assert sp.token_list.symbols[:3] == ["<pad>", "<blank>", "<unk>"]
    assert sp.token_list == SentencePieceTokenizer(again).token_list
    # Piece id k of sentencepiece is token id k + 2 (its <unk> is ours).
    piece_ids = sp.processor.encode("the cat")
    assert sp.encode("the cat") == [k + 2 for k in piece_ids]
    unknown = Counter()
    ids = sp.encode("the zebra", unknown)
    assert UNK_ID in ids and "z" in unknown
    assert all(i > UNK_ID for i in sp.encode("the cat sat"))


def test_bpe_frontend(tmp_path):
    plain = Frontend("char", "en-us", "english")
    model = train_bpe(plain.clean(BPE_TEXTS), tmp_path / "bpe", vocab_size=40)
    frontend = Frontend("bpe", "en-us", "english", bpe_model=model)
    ids, unknown = frontend.encode(["The CAT sat!", "Zoo"])
    assert len(ids) == 2 and UNK_ID not in ids[0] and unknown["z"] == 1
    assert frontend.build_token_list(["ignored"]) is frontend.token_list
    with pytest.raises(ConfigError, match="does not match the pieces"):
        Frontend("bpe", "en-us", "english", token_list=TokenList.build([["a"]]), bpe_model=model)


# Frontend ---------------------------------------------------------------------
def test_frontend_build_and_encode(english):
    tokens = english.build_token_list(["Hello, world!"])
    assert "ˈ" in tokens and "," in tokens and " " in tokens
    ids, unknown = english.encode(["Hello, world!", "Zebra"])
    assert tokens.decode(ids[0]) == english.symbols(["Hello, world!"])[0]
    assert UNK_ID not in ids[0] and UNK_ID in ids[1]
    assert sum(unknown.values()) == ids[1].count(UNK_ID)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(token_type="word"), r"unknown token_type 'word'; valid: phn, char, bpe"),
        (dict(cleaner="nope"), r"unknown text cleaner 'nope'"),
        (dict(language="cmn", cleaner="english"), r"cleaner 'english' does not fit Mandarin"),
        (dict(language="en-us", cleaner="mandarin"), r"cleaner 'mandarin' needs a Mandarin language"),
        (dict(token_type="bpe"), r"token_type 'bpe' needs bpe_model"),
        (dict(token_type="phn", bpe_model="x.model"), r"bpe_model is set but token_type is 'phn'"),
        (dict(language="xx-klingon"), r"language 'xx-klingon'"),
    ],
)
def test_frontend_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Frontend(**kwargs)


def test_frontend_usage_errors(tmp_path):
    frontend = Frontend("char", "en-us", "english")
    with pytest.raises(ConfigError, match="no token list"):
        frontend.encode(["hi"])
    with pytest.raises(ConfigError, match="not one string"):
        frontend.symbols("hi")
    with pytest.raises(DataError, match="sentencepiece model not found"):
        Frontend("bpe", "en-us", "english", bpe_model=tmp_path / "none.model")
