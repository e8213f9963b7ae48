"""Mandarin numbers read as hanzi numerals: integers (with 万 / 亿 grouping),
decimals, percents, signs, years before 年, vulgar fractions and the minus sign.

The Mandarin cleaner of :mod:`semtts.text.cleaners` runs
:func:`expand_mandarin_numbers`; English numbers are read by
:mod:`semtts.text.numbers`. Thousands separators are dropped (``"1,000"`` is
一千), a four-digit year before 年 is read digit by digit (``"2008年"`` is
二零零八年), ``%`` becomes 百分之 (``"-5%"`` is 负百分之五). A minus sign
(``-`` or U+2212 ``−``) not inside a word is read 负 (``"−5"`` is 负五); the
Unicode minus sign between numbers subtracts (``"5−3"`` is 五减三), where the
hyphen ``-`` is left as it is. The vulgar fractions of :data:`VULGAR_FRACTIONS`
(the set the English cleaner reads) and the NFKC spelling ``"1⁄2"`` with the
fraction slash U+2044 are read 分之, a whole part before one with 又
(``"½杯"`` is 二分之一杯, ``"2½"`` 二又二分之一, ``"⅔"`` 三分之二).

Example
-------
>>> expand_mandarin_numbers("共10001人, 增长3.5%")
'共一万零一人, 增长百分之三点五'
>>> expand_mandarin_numbers("2½杯, 5−3, −5")
'二又二分之一杯, 五减三, 负五'
"""

import re
import unicodedata
from typing import Callable

__all__ = [
    "VULGAR_FRACTIONS",
    "number_to_hanzi",
    "expand_mandarin_numbers",
]

_CMN_DIGITS = "零一二三四五六七八九"
_CMN_SECTION_UNITS = ("", "万", "亿", "万亿")

#: The vulgar fraction characters read as fractions (¼ ½ ¾, ⅐ to ⅞, ↉), as a
#: character-class body: the Mandarin reader's and the English cleaner's set.
VULGAR_FRACTIONS = "¼½¾⅐⅑⅒⅓⅔⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞↉"  # U+00BC to U+00BE, U+2150 to U+215E, U+2189
# numerator and denominator (digit strings) of each, exact: from NFKC's "2⁄3" (unicodedata.numeric is a float)
_VULGAR_FRACTION_PARTS = {c: tuple(unicodedata.normalize("NFKC", c).split("\u2044")) for c in VULGAR_FRACTIONS}


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


def _cmn_integer(digits: str) -> str:
    """``digits`` as a numeral; with a leading zero, or past 16 digits, digit by digit (int() refuses > 4300)."""
    if len(digits) > 1 and digits.startswith("0") or len(digits) > 16:
        return _cmn_digits(digits)
    return number_to_hanzi(int(digits))


def _cmn_percent(match: re.Match) -> str:
    """``5%``: 百分之五; ``-5%``: 负百分之五 (the sign before 百分之)."""
    number = _cmn_number(match)
    sign = "负" if match.group(1) else ""
    return sign + "百分之" + number[len(sign):]


def _cmn_number(match: re.Match) -> str:
    sign, whole, frac = match.group(1), match.group(2), match.group(3)
    spoken = _cmn_integer(whole)
    if frac:
        spoken += "点" + _cmn_digits(frac)
    return ("负" if sign else "") + spoken


def _cmn_fraction(match: re.Match) -> str:
    """``½``: 二分之一; ``2½``, ``2 1⁄2``: 二又二分之一; ``-½``: 负二分之一; ``5½%``: 百分之五又二分之一."""
    vulgar = match.group("vulgar")
    numerator, denominator = _VULGAR_FRACTION_PARTS[vulgar] if vulgar else match.group("num", "den")
    spoken = _cmn_integer(denominator) + "分之" + _cmn_integer(numerator)
    if match.group("whole"):
        spoken = _cmn_integer(match.group("whole")) + "又" + spoken
    if match.group("percent"):
        spoken = "百分之" + spoken
    return ("负" if match.group("sign") else "") + spoken


# a minus sign ("-" or U+2212) before a number, not inside a word or a number ("a-5", "1.-5" are no sign)
_CMN_SIGN = r"(?:(?<![0-9a-zA-Z.])(?P<sign>[-\u2212]))?"

_CMN_NUMBER_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (re.compile(r"(\d{1,3}),(?=\d{3}(?!\d))"), r"\1"),
    # the minus sign U+2212 between numbers subtracts ("5 − 3", "½−⅓", "5%−3%"); the hyphen "5-3" is left
    (re.compile(rf"(?<=[\d%{VULGAR_FRACTIONS}])\s*\u2212\s*(?=[\d{VULGAR_FRACTIONS}])"), "减"),
    (re.compile(r"(?<!\d)(\d{4})(?=年)"), lambda m: _cmn_digits(m.group(1))),
    # "½", "2½", "2 ½", and NFKC's "1⁄2", "2 1⁄2" (the fraction slash U+2044; "3/4" may be a date, and is left)
    (re.compile(_CMN_SIGN
                + rf"(?:(?<![\d.])(?P<whole>\d+)(?: ?(?=[{VULGAR_FRACTIONS}])| (?=\d+\u2044\d)))?"
                + rf"(?:(?P<vulgar>[{VULGAR_FRACTIONS}])|(?<![\d.])(?P<num>\d+)\u2044(?P<den>\d+))(?P<percent>%)?"),
     _cmn_fraction),
    (re.compile(_CMN_SIGN + r"(?<!\d)(\d+)(?:\.(\d+))?%"), _cmn_percent),
    (re.compile(_CMN_SIGN + r"(\d+)(?:\.(\d+))?"), _cmn_number),
]


def expand_mandarin_numbers(text: str) -> str:
    """Read the Arabic numbers of a Mandarin text as hanzi numerals (see the module docstring).

    Thousands separators are dropped, a four-digit year before 年 is read
    digit by digit, ``%`` becomes 百分之, a minus sign (``-`` or U+2212) not
    inside a word 负, U+2212 between numbers 减, vulgar fractions 分之.

    Arguments
    ---------
    text : str
        NFKC text, except that vulgar fractions may be kept (NFKC makes
        ``"2½"`` ``"21⁄2"``, twenty-one halves; ``"2 1⁄2"`` is read as
        ``"2½"``).

    Returns
    -------
    str
        The text with its numbers in hanzi; anything else as it was.

    Example
    -------
    >>> expand_mandarin_numbers("2008年, -5, 1,000")
    '二零零八年, 负五, 一千'
    >>> expand_mandarin_numbers("½杯, ⅔, −2¾, 5−3")
    '二分之一杯, 三分之二, 负二又四分之三, 五减三'
    """
    for pattern, replacement in _CMN_NUMBER_RULES:
        text = pattern.sub(replacement, text)
    return text
