"""English numbers read out in words: cardinals, ordinals, years, money,
decimals, times, percents, fractions, temperatures, phone numbers.

The English cleaner of :mod:`semtts.text.cleaners` runs
:func:`expand_english_numbers`; Mandarin numbers (hanzi numerals) are read by
:mod:`semtts.text.numbers_cmn`. A spoken number that touches a letter is
set off by spaces (``"10am"`` is ``"ten am"``, ``"H2O"`` is ``"H two O"``), so
that it is not read as one word with its neighbours. Dates are read by
:mod:`semtts.text.dates`, which the English cleaner runs first.

English phone numbers are read digit by digit, a comma between groups:
``"555-1234"``, ``"415-555-0100"``, ``"1-800-555-0199"``, ``"415.555.0100"``,
``"(020) 7946 0958"`` and ``"+1 415 555 0100"``, all with 7 to 15 digits,
and the emergency numbers 911, 999 and 112 after "call" or "dial".
Two hyphenated numbers are a range (``"10-20"`` is ``"ten to twenty"``,
``"793-1066"`` ``"seven hundred ninety three to one thousand sixty six"``)
except in the shape ``"555-1234"``, three digits and four, after a cue word
(``call``, ``phone``, ``tel``, ``dial``, ``fax``, ``number``, ``no``, ``#``)
in the 30 characters before it, and unless it is round (``"500-1000"``).
Three or more groups are a phone number where the first has at most three
digits and the last four (``"123-45-6789"``; ``"1862-63-64"`` is a range).
A fraction is read with an ordinal where it is proper and its denominator
small (``"3/4"`` is ``"three quarters"``, ``"5/16"`` ``"five sixteenths"``),
otherwise with "over" (``"3/2"`` is ``"three over two"``); ``"1914/15"``
is a fiscal or academic year, ``"nineteen fourteen to fifteen"``. More than
12 digits in a row are read digit by digit. Money with a scale reads the
currency last (``"$1.5 million"``, ``"£2bn"``: ``"one point five million
dollars"``, ``"two billion pounds"``); yen, which has no cents, and an
amount finer than a cent are read as decimals (``"¥7.5"``, ``"$0.001"``:
``"seven point five yen"``, ``"zero point zero zero one dollars"``), and common units after a number are
read in words, singular for exactly one (``"5 kg"``, ``"1 mph"``, ``"16 GB"``:
``"five kilograms"``, ``"one mile per hour"``, ``"sixteen gigabytes"``), where
espeak would spell them letter by letter.

Example
-------
>>> expand_english_numbers("COVID19 at 10am on the 3rd, in the 1990s: 5.5%")
'COVID nineteen at ten am on the third, in the nineteen nineties:  five point five  percent '
>>> expand_english_numbers("Call 555-1234 for 1 1/2 cups at -5°C")
'Call five five five, one two three four for one and one half cups at  minus five degrees Celsius '
"""

import re
from typing import Callable

__all__ = [
    "number_to_words",
    "ordinal_to_words",
    "year_to_words",
    "fraction_to_words",
    "phone_number_to_words",
    "expand_english_numbers",
]

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


def _cardinal(digits: str) -> str:
    """``digits`` read as a cardinal; more than 12 of them digit by digit (without ``int``:
    Python refuses to convert more than 4300 digits)."""
    return _digits_to_words(digits) if len(digits) > 12 else number_to_words(int(digits))


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
    return _ordinal(number_to_words(n))


def _ordinal(cardinal: str) -> str:
    """The ordinal of a number read as ``cardinal`` (its last word made ordinal)."""
    words = cardinal.split()
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


_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents"), "¥": ("yen", "yen", None, None)}
"""Currency signs: the unit (one, many) and its hundredth (one, many; None: read the amount as a decimal)."""


def _money(match: re.Match) -> str:
    """``$5.50``, ``-$5``, ``$-5``, ``$.99``, ``5€``: the amount in units and cents (a minus sign first);
    ``$0.001``, ``¥7.5``: finer than a cent, or a currency without cents, as a decimal amount."""
    major_one, major_many, minor_one, minor_many = _CURRENCIES[match.group("cur") or match.group("cur2")]
    major = match.group("major").replace(",", "").lstrip("0") or "0"
    cents = (match.group("minor") or "").rstrip("0")  # "¥1.00", "$1.500": trailing zeros add nothing
    sign = "minus " if match.group("sign") or match.group("neg") else ""
    if cents and (minor_one is None or len(cents) > 2):
        return f" {sign}{_decimal_words(major, cents)} {major_many} "
    minor = int((cents + "0")[:2]) if cents else 0
    parts = []
    if major != "0" or not minor:
        parts.append(f"{_cardinal(major)} {major_one if major == '1' else major_many}")
    if minor:
        parts.append(f"{number_to_words(minor)} {minor_one if minor == 1 else minor_many}")
    return " " + sign + " ".join(parts) + " "


def _decimal_words(whole: str, fraction: str) -> str:
    """``whole.fraction`` in words (``"3", "25"``: "three point two five"; no whole part: "point ...")."""
    head = _cardinal(whole) if whole else ""
    return f"{head} point {_digits_to_words(fraction)}".lstrip() if fraction else head


_MONEY_SCALES = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion", "tn": "trillion"}


def _money_scaled(match: re.Match) -> str:
    """``$1.5 million``, ``£2bn``, ``$5M``: the amount, the scale, then the currency (plural)."""
    major_many = _CURRENCIES[match.group("cur")][1]
    whole, _, fraction = match.group("amount").replace(",", "").partition(".")
    amount = _decimal_words(whole.lstrip("0") or "0", fraction)
    scale = (match.group("word") or _MONEY_SCALES[match.group("abbr").lower()]).lower()
    sign = "minus " if match.group("sign") or match.group("neg") else ""
    return f" {sign}{amount} {scale} {major_many} "


# units after a number, which espeak would otherwise spell letter by letter: (singular, plural);
# "ft." with its dot is read earlier, by context, with the abbreviations (semtts.text.cleaners)
_UNITS = {
    "mm": ("millimeter", "millimeters"), "cm": ("centimeter", "centimeters"), "km": ("kilometer", "kilometers"),
    "mg": ("milligram", "milligrams"), "kg": ("kilogram", "kilograms"), "ml": ("milliliter", "milliliters"),
    "ft": ("foot", "feet"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "mph": ("mile per hour", "miles per hour"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"), "kW": ("kilowatt", "kilowatts"), "MW": ("megawatt", "megawatts"),
    "KB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"), "min": ("minute", "minutes"), "mins": ("minute", "minutes"),
    "sec": ("second", "seconds"), "secs": ("second", "seconds"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
}


def _with_unit(match: re.Match) -> str:
    """``5 kg``, ``1.5km``, ``1 mph``: the number, then its unit in words (singular for exactly 1)."""
    whole, _, fraction = match.group(1).partition(".")
    number = _decimal_words(whole.lstrip("0") or "0", fraction)
    singular, plural = _UNITS[match.group(2)]
    return _spaced(match, f"{number} {singular if match.group(1) == '1' else plural}")


def _decimal(match: re.Match) -> str:
    return f" {_decimal_words(match.group(1), match.group(2))} "


def _spaced(match: re.Match, words: str) -> str:
    """``words`` set off by a space on each side where the match touches a letter or digit."""
    text, start, end = match.string, match.start(), match.end()
    before = " " if start > 0 and text[start - 1].isalnum() else ""
    after = " " if end < len(text) and text[end].isalnum() else ""
    return before + words + after


def _time(match: re.Match) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute == 0:
        words = f"{number_to_words(hour)} o'clock"
    elif minute < 10:
        words = f"{number_to_words(hour)} oh {number_to_words(minute)}"
    else:
        words = f"{number_to_words(hour)} {number_to_words(minute)}"
    return _spaced(match, words)


def _integer(match: re.Match) -> str:
    digits = match.group(0)
    if len(digits) > 1 and digits.startswith("0"):
        return _spaced(match, _digits_to_words(digits))
    return _spaced(match, year_to_words(int(digits)) if len(digits) == 4 else _cardinal(digits))


_FRACTION_DENOMINATORS = frozenset(range(2, 13)) | {16, 32, 64, 100}
_FRACTION_NAMES = {2: ("half", "halves"), 4: ("quarter", "quarters"), 100: ("hundredth", "hundredths")}
_FRACTION_IDIOMS = {
    "24/7": "twenty four seven", "9/11": "nine eleven", "50/50": "fifty fifty",
    "20/20": "twenty twenty", "10/10": "ten out of ten",
}


def _is_spoken_fraction(numerator: int, denominator: int) -> bool:
    return 0 < numerator < denominator and denominator in _FRACTION_DENOMINATORS


def fraction_to_words(numerator: int, denominator: int) -> str:
    """Read a fraction in words.

    Arguments
    ---------
    numerator, denominator : int
        Non-negative integers. A proper fraction whose denominator is 2 to
        12, 16, 32, 64 or 100 is read with an ordinal ("halves",
        "quarters" and "hundredths" for 2, 4 and 100); any other with "over".

    Returns
    -------
    str
        The fraction in words.

    Example
    -------
    >>> [fraction_to_words(*f) for f in ((1, 2), (3, 4), (2, 3), (5, 16), (1, 7))]
    ['one half', 'three quarters', 'two thirds', 'five sixteenths', 'one seventh']
    >>> fraction_to_words(3, 2), fraction_to_words(1, 13)
    ('three over two', 'one over thirteen')
    """
    if not _is_spoken_fraction(numerator, denominator):
        return f"{number_to_words(numerator)} over {number_to_words(denominator)}"
    ordinal = ordinal_to_words(denominator)
    singular, plural = _FRACTION_NAMES.get(denominator, (ordinal, ordinal + "s"))
    return f"{number_to_words(numerator)} {singular if numerator == 1 else plural}"


def _year_end(year: int) -> str:
    """The second half of a year read after another ("1914/15": "fifteen", "1902/03": "oh three")."""
    low = year % 100
    if low == 0:
        return year_to_words(year)  # "1999/00": "two thousand"
    return f"oh {_ONES[low]}" if low < 10 else number_to_words(low)


def _fraction(match: re.Match) -> str:
    whole, num, den = match.group("whole", "num", "den")
    if len(num) > 12 or len(den) > 12:
        words = f"{_cardinal(num)} over {_cardinal(den)}"
        return _spaced(match, words if whole is None else f"{number_to_words(int(whole))} {words}")
    numerator, denominator = int(num), int(den)
    if whole is None and 1100 <= numerator <= 2099 and len(den) == 2 and denominator == (numerator + 1) % 100:
        # "1902/03", "1914/15": a fiscal or academic year
        return _spaced(match, f"{year_to_words(numerator)} to {_year_end(numerator + 1)}")
    words = _FRACTION_IDIOMS.get(f"{numerator}/{denominator}") or fraction_to_words(numerator, denominator)
    if whole is not None:  # "1 1/2" is "one and one half", "2 3/2" "two three over two"
        joint = " and " if _is_spoken_fraction(numerator, denominator) else " "
        words = number_to_words(int(whole)) + joint + words
    return _spaced(match, words)


def phone_number_to_words(number: str) -> str:
    """Read a phone number digit by digit, a comma between its groups.

    Arguments
    ---------
    number : str
        Digit groups with any separators; a ``+`` is read "plus", other
        non-digits (spaces, ``-``, ``.``, parentheses) only part groups.

    Returns
    -------
    str
        E.g. ``"plus one, four one five, five five five, zero one zero zero"``.

    Example
    -------
    >>> phone_number_to_words("+44 (020) 7946-0958")
    'plus four four, zero two zero, seven nine four six, zero nine five eight'
    """
    groups = [_digits_to_words(group) for group in re.findall(r"\d+", number)]
    return ("plus " if number.lstrip().startswith("+") else "") + ", ".join(groups)


_PHONE_CUE_RE = re.compile(
    r"(?:\b(?:call(?:s|ed|ing)?|(?:tele)?phone[sd]?|tel|dial(?:s|l?ed|l?ing)?|fax(?:es|ed)?|numbers?|no)\b|#)",
    re.I,
)
_PHONE_CUE_BEFORE = 30  # characters searched for a cue before a bare "555-1234"


def _phone(match: re.Match) -> str:
    number, text = match.group(0), match.string
    digits = sum(c.isdigit() for c in number)
    # "555-1234" is a phone number only after a cue ("call", "tel.", "#"); else
    # a range ("793-1066", "pp. 998-1002"). Round ones are ranges ("500-1000").
    bare = re.fullmatch(r"\d{3}-\d{4}", number)
    cue = bare and _PHONE_CUE_RE.search(text, max(0, match.start() - _PHONE_CUE_BEFORE), match.start())
    round_range = re.fullmatch(r"\d\d0-\d\d00", number)
    if not 7 <= digits <= 15 or round_range or (bare and not cue):
        return number
    return _spaced(match, phone_number_to_words(number))


_ONE_BEFORE_RE = re.compile(r"(?<![\d.,])1\s*$")


def _degrees(match: re.Match) -> str:
    one = _ONE_BEFORE_RE.search(match.string, max(0, match.start() - 10), match.start())
    unit = {"C": " Celsius", "F": " Fahrenheit"}.get(match.group(1) or "", "")
    return (" degree" if one else " degrees") + unit + " "


def _plural_number(match: re.Match) -> str:
    """``1,000s``: the plural of the number; of a round one without its "one" ("thousands", "millions")."""
    words = _plural(_cardinal(match.group(1).replace(",", "")))
    return _spaced(match, words[len("one "):] if re.fullmatch(r"one [a-z]+", words) else words)


def _decade(match: re.Match) -> str:
    digits = match.group(1)
    return _spaced(match, _plural(year_to_words(int(digits)) if len(digits) == 4 else number_to_words(int(digits))))


# a minus sign before money, not inside a word or a number ("-$5", "(-5€)"; "5-$10" is no sign)
_MONEY_SIGN = r"(?:(?<![\w.])(?P<sign>-))?"
# money's whole part, perhaps a minus sign ("$-5") before it and none at all before the cents ("$.99")
_MONEY_MAJOR = r"(?P<neg>-)?(?P<major>\d+(?:,\d{3})*|(?=\.\d))"

_NUMBER_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (re.compile(_MONEY_SIGN + r"(?P<cur>[$£€¥])\s?(?P<neg>-)?(?P<amount>(?=\.?\d)(?:\d+(?:,\d{3})*)?(?:\.\d+)?)"
                r"(?:\s?(?P<word>(?i:thousand|million|billion|trillion))\b|(?P<abbr>(?i:k|m|mn|b|bn|tn))\b)"),
     _money_scaled),
    (re.compile(_MONEY_SIGN + r"(?P<cur>[$£€¥])\s?" + _MONEY_MAJOR + r"(?:\.(?P<minor>\d+))?(?P<cur2>)"), _money),
    (re.compile(_MONEY_SIGN + r"(?<!\d)(?P<cur>)(?P<neg>)(?P<major>\d+(?:,\d{3})*|(?=\.\d))(?:\.(?P<minor>\d+))?"
                r"\s?(?P<cur2>[$£€¥])"), _money),
    # thousands separators: "1,000" before a letter too ("1,000km", "1,000th"); "1,000s" a plural
    (re.compile(r"\b(\d{1,3}(?:,\d{3})+)s\b"), _plural_number),
    (re.compile(r"\b(\d{1,3}(?:,\d{3})+)(?!\d)"), lambda m: m.group(1).replace(",", "")),
    # emergency numbers after "call"/"dial": digit by digit ("call 911" is "call nine one one")
    (re.compile(r"(\b(?i:call(?:s|ed|ing)?|dial(?:s|l?ed|l?ing)?)\s+)(911|999|112)\b(?![.,]\d)"),
     lambda m: m.group(1) + _digits_to_words(m.group(2))),
    (re.compile(r"(?<![\w+/.-])(?:\+\d{1,3}(?:[-. ]?\(\d{1,5}\))?(?:[-. ]\d{1,6})+"
                r"|\((?:0\d{1,4}|\d{3})\)[-. ]?\d{2,5}(?:[-. ]\d{2,5})*"
                r"|\d{1,3}(?:-\d{2,5})+-\d{4}|\d{3}-\d{4}|\d{3}\.\d{3}\.\d{4})(?![\w-]|[.,]\d)"), _phone),
    (re.compile(r"\b(\d{1,2}):([0-5]\d)(?!\d)"), _time),
    (re.compile(r"#(?=\d)"), " number "),
    (re.compile(r"(?<=\d)\s?-\s?(?=\d)"), " to "),
    (re.compile(r"(?<![\w.])-(?=\d)"), " minus "),
    (re.compile(r"(?<![\w./])(\d+(?:\.\d+)?)\s?(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
                + r")(?![\w/])"), _with_unit),
    (re.compile(r"(?<![\d/.])(?:(?P<whole>\d{1,3})\s+)?(?P<num>\d+)/(?P<den>\d+)"
                r"(?![\d/]|\.\d|(?i:st|nd|rd|th)\b)"), _fraction),
    (re.compile(r"((?<!\d)\d*|(?<=\d))\.(\d+)"), _decimal),  # scans a digit run once
    (re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I), lambda m: _spaced(m, _ordinal(_cardinal(m.group(1))))),
    (re.compile(r"\b(\d{4}|[1-9]0)s\b"), _decade),
    (re.compile(r"%"), " percent "),
    (re.compile(r"\s?°\s?([CF](?![A-Za-z]))?"), _degrees),
    (re.compile(r"\d+"), _integer),
]


def expand_english_numbers(text: str) -> str:
    """Read the numbers of an English text in words (see the module docstring).

    Arguments
    ---------
    text : str
        NFKC / ASCII text (abbreviations already expanded).

    Returns
    -------
    str
        The text with money, times, ranges, decimals, ordinals, decades,
        percents and integers in words; whitespace is not collapsed.

    Example
    -------
    >>> expand_english_numbers("mp3, 4G and No 5")
    'mp three, four G and No five'
    """
    for pattern, replacement in _NUMBER_RULES:
        text = pattern.sub(replacement, text)
    return text
