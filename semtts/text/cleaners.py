"""Text cleaners: the normalisation that runs before phonemization or tokenization.

A cleaner turns raw corpus text into the written form the phonemizer (or the
character / BPE tokenizer) sees. Three cleaners are registered in
:data:`CLEANERS`:

- ``"english"``: NFKC, ASCII transliteration, abbreviation and number
  expansion (cardinals, decimals, ordinals, years, times, money, percents),
  lowercase; keeps the punctuation ``, . ! ? ; : ' -``;
- ``"mandarin"``: NFKC, full-width punctuation to ASCII ``, . ! ? ; :``,
  Arabic numbers read as Chinese numerals, no spaces between hanzi, Latin
  letters kept (lowercased);
- ``"basic"``: NFKC, lowercase, whitespace collapse.

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
from typing import Callable

from semtts.errors import ConfigError

__all__ = [
    "CLEANERS",
    "clean_text",
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
# English numbers
# ---------------------------------------------------------------------------
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_MAX_CARDINAL = 10**12  # at and above: read digit by digit
_IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}


def _below_thousand(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
        if n == 0:
            return words
    if n < 20:
        words.append(_ONES[n])
    else:
        words.append(_TENS[n // 10])
        if n % 10:
            words.append(_ONES[n % 10])
    return words


def _digits_to_words(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def number_to_words(n: int) -> str:
    """Read an integer as English words (American style, no "and").

    Arguments
    ---------
    n : int
        The number; below one trillion in magnitude it is read as a cardinal,
        larger ones digit by digit.

    Returns
    -------
    str
        Space-separated lowercase words.

    Example
    -------
    >>> number_to_words(1_234_567)
    'one million two hundred thirty four thousand five hundred sixty seven'
    >>> number_to_words(-40)
    'minus forty'
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= _MAX_CARDINAL:
        return _digits_to_words(str(n))
    if n == 0:
        return "zero"
    words = []
    for value, name in _SCALES:
        if n >= value:
            words += _below_thousand(n // value) + [name]
            n %= value
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """Read an integer as an English ordinal.

    Arguments
    ---------
    n : int
        A non-negative integer.

    Returns
    -------
    str
        E.g. ``"twenty first"`` for 21.

    Example
    -------
    >>> [ordinal_to_words(k) for k in (1, 2, 12, 20, 103)]
    ['first', 'second', 'twelfth', 'twentieth', 'one hundred third']
    """
    words = number_to_words(n).split()
    last = words[-1]
    if last in _IRREGULAR_ORDINALS:
        words[-1] = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_to_words(n: int) -> str:
    """Read a four-digit year the way it is spoken.

    Arguments
    ---------
    n : int
        The year; 2000 to 2009 and years outside 1100 to 2099 are read as
        cardinals.

    Returns
    -------
    str
        E.g. ``"nineteen ninety"`` for 1990, ``"nineteen oh five"`` for 1905.

    Example
    -------
    >>> [year_to_words(y) for y in (1990, 1900, 1905, 2005, 2024)]
    ['nineteen ninety', 'nineteen hundred', 'nineteen oh five', 'two thousand five', 'twenty twenty four']
    """
    if not 1100 <= n <= 2099 or 2000 <= n <= 2009:
        return number_to_words(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{number_to_words(high)} hundred"
    if low < 10:
        return f"{number_to_words(high)} oh {number_to_words(low)}"
    return f"{number_to_words(high)} {number_to_words(low)}"


def _plural(words: str) -> str:
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):
        return words + "es"
    return words + "s"


_CURRENCIES = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent")}


def _money(match: re.Match) -> str:
    major_name, minor_name = _CURRENCIES[match.group("cur") or match.group("cur2")]
    major = int(match.group("major").replace(",", ""))
    cents = match.group("minor")
    minor = int((cents + "0")[:2]) if cents else 0
    parts = []
    if major or not minor:
        parts.append(f"{number_to_words(major)} {major_name if major == 1 else major_name + 's'}")
    if minor:
        minor_plural = "pence" if minor_name == "penny" else minor_name + "s"
        parts.append(f"{number_to_words(minor)} {minor_name if minor == 1 else minor_plural}")
    return " " + " ".join(parts) + " "


def _decimal(match: re.Match) -> str:
    whole = match.group(1)
    head = number_to_words(int(whole)) if whole else ""
    return f" {head} point {_digits_to_words(match.group(2))} ".replace("  ", " ")


def _time(match: re.Match) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute == 0:
        return f"{number_to_words(hour)} o'clock"
    if minute < 10:
        return f"{number_to_words(hour)} oh {number_to_words(minute)}"
    return f"{number_to_words(hour)} {number_to_words(minute)}"


def _integer(match: re.Match) -> str:
    digits = match.group(0)
    if len(digits) > 1 and digits.startswith("0"):
        return _digits_to_words(digits)
    n = int(digits)
    return year_to_words(n) if len(digits) == 4 else number_to_words(n)


_NUMBER_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (re.compile(r"(?P<cur>[$£€])\s?(?P<major>\d+(?:,\d{3})*)(?:\.(?P<minor>\d+))?(?P<cur2>)"), _money),
    (re.compile(r"(?P<cur>)(?P<major>\d+(?:,\d{3})*)(?:\.(?P<minor>\d+))?\s?(?P<cur2>[$£€])"), _money),
    (re.compile(r"\b(\d{1,3}(?:,\d{3})+)\b"), lambda m: m.group(1).replace(",", "")),
    (re.compile(r"\b(\d{1,2}):([0-5]\d)\b"), _time),
    (re.compile(r"(?<=\d)\s?-\s?(?=\d)"), " to "),
    (re.compile(r"(?<![\w.])-(?=\d)"), " minus "),
    (re.compile(r"(\d*)\.(\d+)"), _decimal),
    (re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I), lambda m: ordinal_to_words(int(m.group(1)))),
    (re.compile(r"\b(\d{4})s\b"), lambda m: _plural(year_to_words(int(m.group(1))))),
    (re.compile(r"%"), " percent "),
    (re.compile(r"\d+"), _integer),
]


def _expand_numbers(text: str) -> str:
    for pattern, replacement in _NUMBER_RULES:
        text = pattern.sub(replacement, text)
    return text


# ---------------------------------------------------------------------------
# English letters, abbreviations, symbols
# ---------------------------------------------------------------------------
_ASCII_MAP = str.maketrans({
    "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "ł": "l", "Ł": "L",
    "ı": "i", "’": "'", "‘": "'", "‚": "'", "`": "'", "´": "'", "“": '"', "”": '"',
    "„": '"', "«": '"', "»": '"', "–": " - ", "—": " - ", "―": " - ", "…": "...",
})

_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "drs": "doctors",
    "st": "saint", "jr": "junior", "sr": "senior", "prof": "professor", "rev": "reverend",
    "gen": "general", "gov": "governor", "capt": "captain", "col": "colonel",
    "lt": "lieutenant", "sgt": "sergeant", "maj": "major", "hon": "honorable",
    "esq": "esquire", "co": "company", "corp": "corporation", "inc": "incorporated",
    "ltd": "limited", "mt": "mount", "ft": "fort", "vs": "versus", "etc": "et cetera",
    "approx": "approximately", "dept": "department", "no": "number",
}
# "no." only before a digit ("No. 5"), so that a sentence-final "no." survives.
_ABBREVIATION_RE = re.compile(
    r"\b(" + "|".join(k for k in _ABBREVIATIONS if k != "no") + r")\.|\b(no)\.(?=\s*\d)",
    re.I,
)
_LATIN_ABBREVIATIONS = [
    (re.compile(r"\be\.g\.", re.I), "for example"),
    (re.compile(r"\bi\.e\.", re.I), "that is"),
]
_SYMBOL_WORDS = [("&", " and "), ("+", " plus "), ("@", " at "), ("=", " equals ")]
_ENGLISH_DISALLOWED_RE = re.compile(r"[^a-z,.!?;:'\- ]+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,.!?;:])")


def _to_ascii(text: str) -> str:
    text = text.translate(_ASCII_MAP)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _expand_abbreviations(text: str) -> str:
    for pattern, words in _LATIN_ABBREVIATIONS:
        text = pattern.sub(words, text)
    return _ABBREVIATION_RE.sub(lambda m: _ABBREVIATIONS[(m.group(1) or m.group(2)).lower()], text)


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
    """
    text = _to_ascii(unicodedata.normalize("NFKC", text))
    text = _expand_abbreviations(text)
    text = _expand_numbers(text)
    for symbol, words in _SYMBOL_WORDS:
        text = text.replace(symbol, words)
    text = _ENGLISH_DISALLOWED_RE.sub(" ", text.lower())
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    return _collapse_whitespace(text)


# ---------------------------------------------------------------------------
# Mandarin
# ---------------------------------------------------------------------------
#: Character-class body matching hanzi (CJK unified ideographs, extensions, 〇).
HANZI = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_CMN_DIGITS = "零一二三四五六七八九"
_CMN_SECTION_UNITS = ("", "万", "亿", "万亿")
_CMN_PUNCT_MAP = str.maketrans({
    "。": ".", "、": ",", "～": " ", "·": " ", "・": " ", "…": ".", "—": ",", "–": ",",
})
_CMN_DROP_RE = re.compile(r"[\"'“”‘’「」『』《》〈〉【】()\[\]{}]")
_CMN_DISALLOWED_RE = re.compile(rf"[^{HANZI}a-z,.!?;:\- ]+")
_CMN_HANZI_SPACE_RE = re.compile(rf"(?<=[{HANZI}]) +(?=[{HANZI}])")
_CMN_PUNCT_SPACE_RE = re.compile(r" *([,.!?;:]) *")
_CMN_REPEATED_STOP_RE = re.compile(r"([,.!?;:])[,.]+")


def _cmn_section(n: int) -> str:
    out, pending_zero = "", False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit == 0:
            pending_zero = pending_zero or bool(out)
            continue
        if pending_zero:
            out += "零"
            pending_zero = False
        out += _CMN_DIGITS[digit] + unit
    return out


def number_to_hanzi(n: int) -> str:
    """Read a non-negative integer as Chinese numerals (with 万 / 亿 grouping).

    Arguments
    ---------
    n : int
        The number; from 10**16 up it is read digit by digit.

    Returns
    -------
    str
        The numeral in hanzi.

    Example
    -------
    >>> [number_to_hanzi(k) for k in (0, 15, 105, 10001, 110000, 300000000)]
    ['零', '十五', '一百零五', '一万零一', '十一万', '三亿']
    """
    if n == 0:
        return _CMN_DIGITS[0]
    if n >= 10**16:
        return "".join(_CMN_DIGITS[int(d)] for d in str(n))
    sections = []
    while n:
        n, section = divmod(n, 10000)
        sections.append(section)
    out, pending_zero = "", False
    for index in reversed(range(len(sections))):
        section = sections[index]
        if section == 0:
            pending_zero = pending_zero or bool(out)
            continue
        if out and (pending_zero or section < 1000):
            out += "零"
        out += _cmn_section(section) + _CMN_SECTION_UNITS[index]
        pending_zero = False
    return out[1:] if out.startswith("一十") else out


def _cmn_digits(digits: str) -> str:
    return "".join(_CMN_DIGITS[int(d)] for d in digits)


def _cmn_number(match: re.Match) -> str:
    sign, whole, frac = match.group(1), match.group(2), match.group(3)
    if len(whole) > 1 and whole.startswith("0"):
        spoken = _cmn_digits(whole)
    else:
        spoken = number_to_hanzi(int(whole))
    if frac:
        spoken += "点" + _cmn_digits(frac)
    return ("负" if sign else "") + spoken


_CMN_NUMBER_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (re.compile(r"(\d{1,3}),(?=\d{3}(?!\d))"), r"\1"),
    (re.compile(r"(\d{4})(?=年)"), lambda m: _cmn_digits(m.group(1))),
    (re.compile(r"(?:(?<![0-9a-zA-Z.])(-))?(\d+)(?:\.(\d+))?%"), lambda m: "百分之" + _cmn_number(m)),
    (re.compile(r"(?:(?<![0-9a-zA-Z.])(-))?(\d+)(?:\.(\d+))?"), _cmn_number),
]


def mandarin_cleaner(text: str) -> str:
    """Normalise Mandarin text for pypinyin (see the module docstring).

    Arguments
    ---------
    text : str
        Raw text (hanzi, possibly with Latin words and Arabic numbers).

    Returns
    -------
    str
        Hanzi, lowercase Latin letters and ASCII ``, . ! ? ; : -``; no space
        between hanzi or around punctuation.

    Example
    -------
    >>> mandarin_cleaner("“我爱 北京”，2008年 用了 3.5% 的 iPhone。")
    '我爱北京,二零零八年用了百分之三点五的 iphone.'
    """
    text = unicodedata.normalize("NFKC", text).translate(_CMN_PUNCT_MAP)
    text = _CMN_DROP_RE.sub("", text)
    for pattern, replacement in _CMN_NUMBER_RULES:
        text = pattern.sub(replacement, text)
    text = _CMN_DISALLOWED_RE.sub(" ", text.lower())
    text = _collapse_whitespace(text)
    text = _CMN_HANZI_SPACE_RE.sub("", text)
    text = _CMN_PUNCT_SPACE_RE.sub(r"\1", text)
    text = _CMN_REPEATED_STOP_RE.sub(r"\1", text)
    return text.strip()


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
