"""Mandarin numbers read as hanzi numerals: integers (with 万 / 亿 grouping),
decimals, percents, signs, years before 年, dates, fractions, ranges, scores,
phone numbers and the minus sign.

The Mandarin cleaner of :mod:`semtts.text.cleaners` runs
:func:`expand_mandarin_numbers`; English numbers are read by
:mod:`semtts.text.numbers`. Thousands separators are dropped (``"1,000"`` is
一千), a four-digit year before 年 is read digit by digit (``"2008年"`` is
二零零八年), ``%`` becomes 百分之 (``"-5%"`` is 负百分之五). A minus sign
(``-`` or U+2212 ``−``) not inside a word is read 负 (``"−5"`` is 负五); the
Unicode minus sign between numbers subtracts (``"5−3"`` is 五减三); the
hyphen between numbers joins a range, a score or a phone number (below).
The vulgar fractions of :data:`VULGAR_FRACTIONS` (the set the English
cleaner reads) and the NFKC spelling ``"1⁄2"`` with the fraction slash
U+2044 are read 分之, a whole part before one with 又 (``"½杯"`` is
二分之一杯, ``"2½"`` 二又二分之一, ``"⅔"`` 三分之二).

Times are read 点 and 分 (``"9:05"`` is 九点零五分, ``"2:00"`` 两点). Dates with
a year, ``yyyy-mm-dd``, ``yyyy/mm/dd`` or ``yyyy.mm.dd``, are read 年月日
(``"2026-11-27"`` is 二零二六年十一月二十七日) when the day exists, a year and
a month 年月 (``"2026-11"``, ``"2026/11"``); a slash between two numbers is
otherwise a fraction (``"3/4"`` is 四分之三). Two numbers joined by a hyphen
are a range, 到, when the second is larger (``"5-10岁"`` is 五到十岁,
``"20-30%"`` 百分之二十到百分之三十, ``"2022-23赛季"`` 二零二二到二三赛季),
otherwise a score, 比 (``"3-1"`` is 三比一); more than two numbers so joined,
or a number with a leading zero or of seven digits or more among them, are
read digit by digit, a comma between groups (``"010-12345678"`` is
零一零,一二三四五六七八). Numbers inside a word or a code (``"A100-40GB"``,
``"PyCharm 2023.3.2"``) get none of these readings. A tilde between numbers
is a range whatever their order (``"3~5天"`` is 三到五天; the Mandarin cleaner
makes ``～``, ``–`` and ``—`` between numbers a tilde). After 比, 比例 or 比分 a
colon joins a ratio or a score (``"比例1:25"`` is 比例一比二十五).

Example
-------
>>> expand_mandarin_numbers("共10001人, 增长3.5%")
'共一万零一人, 增长百分之三点五'
>>> expand_mandarin_numbers("2½杯, 5−3, −5")
'二又二分之一杯, 五减三, 负五'
"""

import calendar
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


def _cmn_plain(number: str) -> str:
    """An unsigned integer or decimal, ``"3.5"``: 三点五."""
    whole, _, fraction = number.partition(".")
    return _cmn_integer(whole) + ("点" + _cmn_digits(fraction) if fraction else "")


def _cmn_groups(groups: list[str]) -> str:
    """Numbers read digit by digit, a comma between them (a phone number, a code)."""
    return ",".join(_cmn_digits(g) for g in groups)


def _cmn_date(match: re.Match) -> str:
    """``2026-11-27``: 二零二六年十一月二十七日; a day that does not exist: its numbers digit by digit."""
    year, month, day = (int(match.group(k)) for k in ("year", "month", "day"))
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return _cmn_groups(match.group("year", "month", "day")) + (match.group("suffix") or "")
    return f"{_cmn_digits(match.group('year'))}年{number_to_hanzi(month)}月{number_to_hanzi(day)}" \
        + (match.group("suffix") or "日")


_YEAR_WORDS = ("年", "赛季", "学年", "年度", "财年")
"""Words after which two hyphenated numbers are years (``"2022-23赛季"``)."""


def _cmn_year_month(year: str, month: str) -> str | None:
    """``2026``, ``11``: 二零二六年十一月, for a year of 1900 to 2099 and a month; else None."""
    if len(year) == 4 and 1900 <= int(year) <= 2099 and len(month) <= 2 and 1 <= int(month) <= 12:
        return f"{_cmn_digits(year)}年{number_to_hanzi(int(month))}月"
    return None


def _cmn_hyphenated(match: re.Match) -> str:
    """``5-10``: 五到十; ``3-1``: 三比一; ``2026-11``: 二零二六年十一月; ``2022-23赛季``: 二零二二到二三赛季;
    ``010-12345678``, ``1-2-3``: digit by digit, a comma between groups. The numbers of a range or a
    score are read by the rules after this one (``20-30%``: 百分之二十到百分之三十)."""
    if "~" in match.group(0):  # a range mark ("5~10岁"; the cleaner's for ～, – and — too): 到 between all
        ranges = match.group(0).split("~")
        if len(ranges) == 2 and all(g.isdigit() for g in ranges) and len(ranges[0]) == 4 \
                and len(ranges[1]) in (2, 4) and match.string.startswith(_YEAR_WORDS, match.end()):  # "2022~23年"
            return "到".join(_cmn_digits(g) for g in ranges)
        if ranges[-1].endswith("%"):  # "20~30%": all percents
            ranges = [g if g.endswith("%") else g + "%" for g in ranges]
        return "到".join(ranges)
    groups = match.group(0).split("-")
    whole = all(g.isdigit() for g in groups)
    if whole and len(groups) == 2 and len(groups[0]) == 4:  # a year first: years, or a year and a month
        first, second = groups
        if match.string.startswith(_YEAR_WORDS, match.end()) and len(second) in (2, 4):  # "2008-09赛季"
            return f"{_cmn_digits(first)}到{_cmn_digits(second)}"
        if year_month := _cmn_year_month(first, second):  # "2026-09"
            return year_month
    if whole and (len(groups) > 2 or any(len(g) >= 7 or (len(g) > 1 and g.startswith("0")) for g in groups)):
        return _cmn_groups(groups)
    if len(groups) > 2:  # decimals or percents in a row
        return ",".join(groups)
    first, second = groups
    if second.endswith("%") and not first.endswith("%"):  # "20-30%": both percents
        first += "%"
    larger = float(second.rstrip("%")) > float(first.rstrip("%"))
    return f"{first}{'到' if larger else '比'}{second}"


def _cmn_slash(match: re.Match) -> str:
    """``3/4``: 四分之三; ``-3/4``: 负四分之三; ``2023/10``: 二零二三年十月; ``1/2/3`` (no date): digit by digit,
    a comma between groups."""
    sign = "负" if match.group("sign") else ""
    groups = match.group("numbers").split("/")
    if len(groups) > 2:
        return sign + (_cmn_groups(groups) if all(g.isdigit() for g in groups) else ",".join(groups))
    if all(g.isdigit() for g in groups) and (year_month := _cmn_year_month(*groups)):
        return sign + year_month
    return sign + _cmn_plain(groups[1]) + "分之" + _cmn_plain(groups[0])


def _cmn_clock(hour: str, minute: str) -> str:
    """``9``, ``05``: 九点零五分 (两点 for two o'clock; no 分 on the hour)."""
    spoken = ("两" if int(hour) == 2 else number_to_hanzi(int(hour))) + "点"
    if int(minute):
        spoken += ("零" if minute.startswith("0") else "") + number_to_hanzi(int(minute)) + "分"
    return spoken


def _cmn_time(match: re.Match) -> str:
    """``9:30``: 九点三十分; ``9:00-17:00``: 九点到十七点."""
    spoken = _cmn_clock(match.group("h1"), match.group("m1"))
    return spoken + ("到" + _cmn_clock(match.group("h2"), match.group("m2")) if match.group("h2") else "")


# a minus sign ("-" or U+2212) before a number, not inside a word or a number ("a-5", "1.-5" are no sign)
_CMN_SIGN = r"(?:(?<![0-9a-zA-Z.])(?P<sign>[-\u2212]))?"

_CMN_NUMBER_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (re.compile(r"(\d{1,3}),(?=\d{3}(?!\d))"), r"\1"),
    # times, dates, and numbers joined by hyphens or slashes; none inside a word or a code ("A100-40GB",
    # "PyCharm 2023.3.2")
    # a ratio or a score after 比, 比例, 比分 ("比例1:25": 一比二十五), before times
    (re.compile(r"(?:(?<=比)|(?<=比例)|(?<=比分))\s*(\d+)\s*[:：]\s*(\d+)(?![\d:])"), r"\1比\2"),
    (re.compile(r"(?<![\d:.])(?P<h1>[01]?\d|2[0-3]):(?P<m1>[0-5]\d)"
                r"(?:\s*[-~～]\s*(?P<h2>[01]?\d|2[0-4]):(?P<m2>[0-5]\d))?(?![\d:])"), _cmn_time),
    (re.compile(r"(?<![\w./:-])(?<![A-Za-z]\s)(?P<year>\d{4})(?P<sep>[-/.])(?P<month>\d{1,2})(?P=sep)"
                r"(?P<day>\d{1,2})(?![\d/:-]|\.\d)(?P<suffix>[日号])?", re.ASCII), _cmn_date),
    (re.compile(r"(?<![\w./:~-])\d+(?:\.\d+)?%?(?:[-~]\d+(?:\.\d+)?%?)+(?![\d/:~-]|\.\d)", re.ASCII),
     _cmn_hyphenated),
    (re.compile(_CMN_SIGN + r"(?<![\w./:])(?P<numbers>\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)+)(?![\d/:]|\.\d)",
                re.ASCII), _cmn_slash),
    # the minus sign U+2212 between numbers subtracts ("5 − 3", "½−⅓", "5%−3%"); the hyphen "5-3" is left
    (re.compile(rf"(?<=[\d%{VULGAR_FRACTIONS}])\s*\u2212\s*(?=[\d{VULGAR_FRACTIONS}])"), "减"),
    (re.compile(r"(?<!\d)(\d{4})(?=年)"), lambda m: _cmn_digits(m.group(1))),
    # "½", "2½", "2 ½", and NFKC's "1⁄2", "2 1⁄2" (the fraction slash U+2044)
    (re.compile(_CMN_SIGN
                + rf"(?:(?<![\d.])(?P<whole>\d+)(?: ?(?=[{VULGAR_FRACTIONS}])| (?=\d+\u2044\d)))?"
                + rf"(?:(?P<vulgar>[{VULGAR_FRACTIONS}])|(?<![\d.])(?P<num>\d+)\u2044(?P<den>\d+))(?P<percent>%)?"),
     _cmn_fraction),
    (re.compile(_CMN_SIGN + r"(?<!\d)(\d+)(?:\.(\d+))?%"), _cmn_percent),
    (re.compile(_CMN_SIGN + r"(\d+)(?:\.(\d+))?"), _cmn_number),
]


def expand_mandarin_numbers(text: str) -> str:
    """Read the Arabic numbers of a Mandarin text as hanzi numerals (see the module docstring).

    Thousands separators are dropped, dates with a year are read 年月日, a
    four-digit year before 年 digit by digit, ``%`` becomes 百分之, a minus
    sign (``-`` or U+2212) not inside a word 负, U+2212 between numbers 减,
    vulgar fractions and ``a/b`` 分之, a hyphen between two numbers 到 or 比.

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
    >>> expand_mandarin_numbers("2026-11-27, 3/4, 5-10岁, 3-1")
    '二零二六年十一月二十七日, 四分之三, 五到十岁, 三比一'
    """
    for pattern, replacement in _CMN_NUMBER_RULES:
        text = pattern.sub(replacement, text)
    return text
