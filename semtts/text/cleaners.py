"""Text cleaners: the normalisation that runs before phonemization or tokenization.

A cleaner turns raw corpus text into the written form the phonemizer (or the
character / BPE tokenizer) sees. Three cleaners are registered in
:data:`CLEANERS`:

- ``"english"``: NFKC, ASCII transliteration, abbreviation expansion
  (``"St."`` and ``"Dr."`` by context: ``"St. Louis"``, ``"Dr. Smith"`` but
  ``"Baker St."``, ``"Mulholland Dr."``), dates (see :mod:`semtts.text.dates`),
  numbers (cardinals, decimals, ordinals, years, times, money, percents,
  fractions, temperatures, phone numbers; see :mod:`semtts.text.numbers`),
  lowercase; keeps the punctuation ``, . ! ? ; : ' -``;
- ``"mandarin"``: NFKC, full-width punctuation to ASCII ``, . ! ? ; :``,
  Arabic numbers read as Chinese numerals (signs, percents, vulgar fractions,
  the minus sign; see :mod:`semtts.text.numbers_cmn`), no spaces between hanzi, Latin
  letters kept (lowercased), toned pinyin written in the text (``"ni3
  hao3"``, see :func:`semtts.text.pinyin.find_toned_pinyin`) kept as it is;
- ``"basic"``: NFKC, lowercase, whitespace collapse.

The English and Mandarin cleaners delete what they cannot read, letters of
other scripts included (Cyrillic in English, Greek in Mandarin, ...);
:func:`clean_with_removed` also says which letters went, so that a caller
can tell a transcript that lost words from one that lost only symbols.

Example
-------
>>> clean_text("Dr. Smith paid $5.50 on the 3rd of May, 1990.", "english")
'doctor smith paid five dollars fifty cents on the third of may, nineteen ninety.'
>>> clean_text("你好，  世界！我有 25 本书。", "mandarin")
'你好,世界!我有二十五本书.'
>>> clean_text("  Hello\\tWORLD ", "basic")
'hello world'
"""

import re
import unicodedata
from collections import Counter
from typing import Callable

from semtts.errors import ConfigError
from semtts.text.dates import expand_english_dates, is_sentence_starter
from semtts.text.numbers import expand_english_numbers, number_to_words, ordinal_to_words, year_to_words
from semtts.text.numbers_cmn import VULGAR_FRACTIONS, expand_mandarin_numbers, number_to_hanzi
from semtts.text.pinyin import find_toned_pinyin, normalize_pinyin

__all__ = [
    "CLEANERS",
    "clean_text",
    "clean_with_removed",
    "get_cleaner",
    "english_cleaner",
    "mandarin_cleaner",
    "basic_cleaner",
    "number_to_words",
    "ordinal_to_words",
    "year_to_words",
    "number_to_hanzi",
    "HANZI",
]

_WHITESPACE_RE = re.compile(r"\s+")


def _collapse_whitespace(text: str) -> str:
    return _WHITESPACE_RE.sub(" ", text).strip()


# ---------------------------------------------------------------------------
# English letters, abbreviations, symbols
# ---------------------------------------------------------------------------
_ASCII_MAP = str.maketrans({
    "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "ł": "l", "Ł": "L",
    "ı": "i", "’": "'", "‘": "'", "‚": "'", "`": "'", "´": "'", "“": '"', "”": '"',
    "„": '"', "«": '"', "»": '"', "–": " - ", "—": " - ", "―": " - ", "…": "...",
    # the minus sign (NFKC's for ⁻ and ₋ too) and the figure dash, the hyphen of "555‒1234":
    # "-", read by the number rules ("−5" minus, "5‒10" a range); the fraction slash of NFKC's "½", "1⁄2"
    "\u2212": "-", "\u2012": "-", "\u2044": "/",
})
# A minus sign between numbers subtracts ("5 − 3"), where a hyphen would make a range.
_BINARY_MINUS_RE = re.compile(r"(?<=\d)\s*\u2212\s*(?=\d)")
# A digit glued to a vulgar fraction is a whole part ("2¾" is "2 3/4"; NFKC would make it "23⁄4").
_BEFORE_VULGAR_FRACTION_RE = re.compile(rf"(?<=\d)(?=[{VULGAR_FRACTIONS}])")

_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "drs": "doctors", "jr": "junior",
    "sr": "senior", "prof": "professor", "rev": "reverend",
    "gen": "general", "gov": "governor", "capt": "captain", "col": "colonel",
    "lt": "lieutenant", "sgt": "sergeant", "maj": "major", "hon": "honorable",
    "esq": "esquire", "co": "company", "corp": "corporation", "inc": "incorporated",
    "ltd": "limited", "mt": "mount", "vs": "versus", "etc": "et cetera",
    "approx": "approximately", "dept": "department", "no": "number",
}
# Read by context: before a name (a capitalised word: "St. Louis", "Dr. Smith",
# "Ft. Worth") the first reading; else after a capitalised word, an ordinal or
# a number ("Baker St.", "5th St.", "Mulholland Dr.", "6 ft.") the second,
# unless that word is a determiner ("The Dr. said", "His Dr."); else the
# first. Without the dot only "St" and "Dr", and only where context decides.
# A capitalised word after the abbreviation that rather starts a sentence
# ("Baker St. The ...") is no name: see semtts.text.dates.is_sentence_starter.
_CONTEXT_ABBREVIATIONS = {"st": ("saint", "street"), "dr": ("doctor", "drive"), "ft": ("fort", "feet")}
_DETERMINERS = frozenset(
    "a an the his her its our their my your this that these those every each any some no another "
    "which whose what".split()
)
_NAME_AFTER_RE = re.compile(r"\s*([A-Z][A-Za-z']*)")
_NAME_OR_NUMBER_BEFORE_RE = re.compile(r"(?:\b([A-Z][A-Za-z']*)|\d+(?:st|nd|rd|th)?)\s*$")
_LOOK_BEHIND = 40  # characters searched for the word before: a longer word is no name
_BLANK_REST_RE = re.compile(r"\s*$")
# "no." only before a digit ("No. 5"), so that a sentence-final "no." survives.
_ABBREVIATION_RE = re.compile(
    r"\b(" + "|".join(k for k in [*_ABBREVIATIONS, *_CONTEXT_ABBREVIATIONS] if k != "no") + r")\."
    r"|\b(no)\.(?=\s*\d)|(?-i:\b(St|Dr)\b)",
    re.I,
)
_LATIN_ABBREVIATIONS = [
    (re.compile(r"\be\.g\.", re.I), "for example"),
    (re.compile(r"\bi\.e\.", re.I), "that is"),
]
_SYMBOL_WORDS = [("&", " and "), ("+", " plus "), ("@", " at "), ("=", " equals ")]
_ENGLISH_DISALLOWED_RE = re.compile(r"[^a-z,.!?;:'\- ]+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r" ([,.!?;:])")  # after a whitespace collapse: linear


def _to_ascii(text: str) -> str:
    text = text.translate(_ASCII_MAP)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _expand_abbreviations(text: str) -> str:
    for pattern, words in _LATIN_ABBREVIATIONS:
        text = pattern.sub(words, text)

    def expand(match: re.Match) -> str:
        key = (match.group(1) or match.group(2) or match.group(3)).lower()
        words = _ABBREVIATIONS.get(key) or _by_context(match, *_CONTEXT_ABBREVIATIONS[key])
        if words is None:
            return match.group(0)
        glued = match.end() < len(text) and text[match.end()].isalnum()  # "No.5", "Dr.Who"
        return words + " " if glued else words

    return _ABBREVIATION_RE.sub(expand, text)


def _by_context(match: re.Match, before_name: str, after_name: str) -> str | None:
    """The reading of a context abbreviation (see ``_CONTEXT_ABBREVIATIONS``); None: leave it."""
    text = match.string
    following = _NAME_AFTER_RE.match(text, match.end())
    if following and not is_sentence_starter(following.group(1)):
        return before_name
    before = _NAME_OR_NUMBER_BEFORE_RE.search(text, max(0, match.start() - _LOOK_BEHIND), match.start())
    if before and before.group(1) and before.group(1).lower() in _DETERMINERS:
        return before_name  # "The Dr. said", "The Dr said", "A Ft. was built"
    if before:
        # "Baker St. He ..." and a final "Baker St.": the dot also ends the sentence.
        ends_sentence = match.group(1) and (following or _BLANK_REST_RE.match(text, match.end()))
        return after_name + "." if ends_sentence else after_name
    return None if match.group(3) else before_name


def _drop(pattern: re.Pattern, text: str, removed: Counter | None) -> str:
    """Replace what ``pattern`` matches by a space, counting the letters it held."""
    if removed is not None:
        for match in pattern.finditer(text):
            removed.update(c for c in match.group() if c.isalpha())
    return pattern.sub(" ", text)


def _english(text: str, removed: Counter | None) -> str:
    text = _BEFORE_VULGAR_FRACTION_RE.sub(" ", text)
    text = _BINARY_MINUS_RE.sub(" minus ", unicodedata.normalize("NFKC", text))
    text = _to_ascii(text)
    text = _expand_abbreviations(text)
    text = expand_english_numbers(expand_english_dates(text))
    for symbol, words in _SYMBOL_WORDS:
        text = text.replace(symbol, words)
    text = _collapse_whitespace(_drop(_ENGLISH_DISALLOWED_RE, text.lower(), removed))
    return _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)


def english_cleaner(text: str) -> str:
    """Normalise English text for espeak-ng (see the module docstring).

    Arguments
    ---------
    text : str
        Raw text.

    Returns
    -------
    str
        Lowercase ASCII words and the punctuation ``, . ! ? ; : ' -``.

    Example
    -------
    >>> english_cleaner("Mr. Müller won 1,000€ — in the 1990s!")
    'mister muller won one thousand euros - in the nineteen nineties!'
    >>> english_cleaner("No.5 at 10am: H2O, mp3, COVID19.")
    'number five at ten am: h two o, mp three, covid nineteen.'
    """
    return _english(text, None)


# ---------------------------------------------------------------------------
# Mandarin
# ---------------------------------------------------------------------------
#: Character-class body matching hanzi (CJK unified ideographs, extensions, 〇).
HANZI = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_CMN_PUNCT_MAP = str.maketrans({
    "。": ".", "、": ",", "·": " ", "・": " ", "…": ".", "—": ",", "–": ",",
})
# Vulgar fractions are kept from NFKC, which glues a whole part to the numerator ("2½" "21⁄2"), for the
# numbers reader; so is the minus sign U+2212 (a sign 负, or 减 between numbers), "-" where it is no number's.
_CMN_VULGAR_FRACTION_RE = re.compile(f"([{VULGAR_FRACTIONS}])")
# A tilde (NFKC's for ～), an en or an em dash between numbers marks a range ("5~10岁"), read 到 by the numbers
# reader; elsewhere the dashes are pauses (_CMN_PUNCT_MAP) and a tilde is dropped.
_CMN_RANGE_MARK_RE = re.compile(r"(?<=[\d%])\s*[~\u2013\u2014]\s*(?=\d)")
_CMN_DROP_RE = re.compile(r"[\"'“”‘’「」『』《》〈〉【】()\[\]{}]")
_CMN_DISALLOWED_RE = re.compile(rf"[^{HANZI}a-z,.!?;:\- ]+")
_CMN_HANZI_SPACE_RE = re.compile(rf"(?<=[{HANZI}]) +(?=[{HANZI}])")
_CMN_PUNCT_SPACE_RE = re.compile(r" *([,.!?;:]) *")
_CMN_REPEATED_STOP_RE = re.compile(r"([,.!?;:])[,.]+")


def _nfkc_keeping_fractions(text: str) -> str:
    pieces = _CMN_VULGAR_FRACTION_RE.split(text)  # the fractions at odd indices
    return "".join(piece if i % 2 else unicodedata.normalize("NFKC", piece) for i, piece in enumerate(pieces))


def _mandarin(text: str, removed: Counter | None) -> str:
    text = _CMN_RANGE_MARK_RE.sub("~", _nfkc_keeping_fractions(text)).translate(_CMN_PUNCT_MAP)
    text = _CMN_DROP_RE.sub("", text)
    # Toned pinyin written in the text ("ni3 hao3") is kept as it is (ü as
    # v); everything else has its numbers read and its other characters dropped.
    pieces, start = [], 0
    for begin, end in find_toned_pinyin(text) + [(len(text), len(text))]:
        rest = expand_mandarin_numbers(text[start:begin]).replace("\u2212", "-")
        pieces += [_drop(_CMN_DISALLOWED_RE, rest.lower(), removed), normalize_pinyin(text[begin:end])]
        start = end
    text = _collapse_whitespace("".join(pieces))
    text = _CMN_HANZI_SPACE_RE.sub("", text)
    text = _CMN_PUNCT_SPACE_RE.sub(r"\1", text)
    text = _CMN_REPEATED_STOP_RE.sub(r"\1", text)
    return text.strip()


def mandarin_cleaner(text: str) -> str:
    """Normalise Mandarin text for pypinyin (see the module docstring).

    Arguments
    ---------
    text : str
        Raw text (hanzi, possibly with Latin words, Arabic numbers and toned
        pinyin).

    Returns
    -------
    str
        Hanzi, lowercase Latin letters, toned pinyin and ASCII
        ``, . ! ? ; : -``; no space between hanzi or around punctuation.

    Example
    -------
    >>> mandarin_cleaner("“我爱 北京”，2008年 用了 3.5% 的 iPhone。")
    '我爱北京,二零零八年用了百分之三点五的 iphone.'
    >>> mandarin_cleaner("你好 Ni3 hao3, lü4 mp3!")
    '你好 ni3 hao3,lv4 mp三!'
    """
    return _mandarin(text, None)


def basic_cleaner(text: str) -> str:
    """NFKC, lowercase and whitespace collapse; nothing else.

    Arguments
    ---------
    text : str
        Raw text.

    Returns
    -------
    str
        The normalised text.

    Example
    -------
    >>> basic_cleaner("Ｆｕｌｌ  width\\n")
    'full width'
    """
    return _collapse_whitespace(unicodedata.normalize("NFKC", text).lower())


CLEANERS: dict[str, Callable[[str], str]] = {
    "english": english_cleaner,
    "mandarin": mandarin_cleaner,
    "basic": basic_cleaner,
}


def get_cleaner(name: str) -> Callable[[str], str]:
    """Look a cleaner up in :data:`CLEANERS`.

    Arguments
    ---------
    name : str
        The cleaner name.

    Returns
    -------
    callable
        ``str -> str``.

    Raises
    ------
    ConfigError
        If ``name`` is not registered; the message lists the valid names.

    Example
    -------
    >>> get_cleaner("basic")("A  B")
    'a b'
    """
    try:
        return CLEANERS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(CLEANERS))
        raise ConfigError(f"unknown text cleaner {name!r}; valid cleaners: {valid}") from None


def clean_text(text: str, cleaner: str) -> str:
    """Clean one text with the named cleaner.

    Arguments
    ---------
    text : str
        Raw text.
    cleaner : str
        A key of :data:`CLEANERS`: ``"english"``, ``"mandarin"`` or ``"basic"``.

    Returns
    -------
    str
        The cleaned text.

    Example
    -------
    >>> clean_text("It's 4:30 p.m.", "english")
    "it's four thirty p.m."
    """
    return get_cleaner(cleaner)(text)


def clean_with_removed(text: str, cleaner: str) -> tuple[str, Counter]:
    """Clean one text and count the letters the cleaner deleted.

    Letters are characters of any script (``str.isalpha``: Latin, Cyrillic,
    hanzi, kana, ...) that the cleaner could neither keep nor transliterate;
    deleted digits, emoji and other symbols are not counted. A non-empty
    count means the cleaned text lost words that the raw text (and its
    recording) has.

    Arguments
    ---------
    text : str
        Raw text.
    cleaner : str
        A key of :data:`CLEANERS`.

    Returns
    -------
    cleaned : str
        As :func:`clean_text` returns it.
    removed : collections.Counter
        The deleted letters (lowercased) and how often each went.

    Example
    -------
    >>> clean_with_removed("Привет world 😀!", "english")
    ('world!', Counter({'п': 1, 'р': 1, 'и': 1, 'в': 1, 'е': 1, 'т': 1}))
    >>> clean_with_removed("你好, café", "mandarin")
    ('你好,caf', Counter({'é': 1}))
    """
    removed: Counter = Counter()
    counting = {"english": _english, "mandarin": _mandarin}.get(cleaner)
    if counting is None:
        return get_cleaner(cleaner)(text), removed
    return counting(text, removed), removed
