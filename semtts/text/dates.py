"""Dates read out in English: the day as an ordinal, the year as it is spoken.

The English cleaner of :mod:`semtts.text.cleaners` runs
:func:`expand_english_dates` before :func:`semtts.text.numbers.expand_english_numbers`,
so that a date is read as one before its numbers are read one by one. It
reads:

- a month name (capitalised; ``Jan``, ``Sept.`` and the other abbreviations
  too) and a day, with an optional year: ``"March 3, 2021"``,
  ``"Dec. 25th"``, ``"March 3-5"`` are ``"March third, twenty twenty one"``,
  ``"December twenty fifth"``, ``"March third to fifth"``;
- a day before a month name: ``"3 March 2021"``, ``"the 3rd of March"`` are
  ``"the third of March, twenty twenty one"``, ``"the third of March"``
  (``"the"`` is added only to the bare ``"3 March"``); without a year, not
  before a capitalised word that does not start a sentence (``"12 May
  Street"`` is no date), and an abbreviated month's full stop stays where
  it ends the sentence (``"on 3 Jan. The ..."``);
- an abbreviated month before a year: ``"Dec. 2020"`` is ``"December 2020"``
  (the year is left to the number reader);
- an ISO date ``"2021-03-04"`` as ``"March fourth, twenty twenty one"``;
- a numeric date with ``/`` or ``-`` and a four-digit year, month first as
  in US English: ``"3/4/2021"`` is ``"March fourth, twenty twenty one"``;
  only where the first number cannot be a month and the second can
  (``"25/12/2020"``) is it read day first. Without a four-digit year
  (``"3/4"``, ``"3/4/21"``) it is not taken for a date.

A day that the month does not have (``"February 30"``, ``"2021-13-01"``) is
not read as a date.

Example
-------
>>> expand_english_dates("On 3 March 2021, Dec. 25th and 2021-03-04.")
'On the third of March, twenty twenty one, December twenty fifth and March fourth, twenty twenty one.'
>>> expand_english_dates("12/25/2020 or 25/12/2020")
'December twenty fifth, twenty twenty or December twenty fifth, twenty twenty'
"""

import re
from typing import Callable

from semtts.text.numbers import ordinal_to_words, year_to_words

__all__ = ["MONTHS", "date_to_words", "expand_english_dates", "is_sentence_starter"]

#: The month names, January first.
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)
_MONTH_BY_PREFIX = {name[:3]: name for name in MONTHS}
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_MONTH = (
    r"(?P<month>(?:" + "|".join(MONTHS) + r")\b"
    r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\b\.?)"
)
_SUFFIX = r"(?:st|nd|rd|th)?\b"
_DAYS = rf"(?P<day>\d{{1,2}}){_SUFFIX}(?:\s?-\s?(?P<last>\d{{1,2}}){_SUFFIX})?"
_YEAR = r"(?:,?\s*(?P<year>\d{4})(?![\w%]|[:.,]\d))?"
_END = r"(?![\w%]|[:.,]\d)"
_THE_BEFORE_RE = re.compile(r"\bthe\s*$", re.I)
_WORD_AFTER_RE = re.compile(r"\s*([A-Z][A-Za-z']*)")
_BLANK_REST_RE = re.compile(r"\s*$")

# Capitalised words that rather start a sentence than name something ("Baker
# St. The ...", "3 May In ..."): pronouns and determiners in any case, the
# other openers only in Title case ("On", not the "ON" of all-caps text).
_STARTERS_ANY_CASE = frozenset(
    "a an the i he she it we you they this that these those there his her its our their my your".split()
)
_STARTERS_TITLE_CASE = frozenset(
    "on in at after before when then while since until during once as if so but and or yet "
    "for from with to by of several many some most every each all both no not one "
    "later today yesterday tomorrow here now however meanwhile although though because also "
    "what where why how".split()
)


def is_sentence_starter(word: str) -> bool:
    """Whether a capitalised word rather starts a sentence than names something.

    Arguments
    ---------
    word : str
        One word, as written.

    Returns
    -------
    bool
        True for pronouns and determiners in any case (``"The"``, ``"THE"``)
        and for other common sentence openers in Title case (``"On"``,
        ``"Several"``, but not ``"ON"``).

    Example
    -------
    >>> [is_sentence_starter(w) for w in ("The", "THE", "Several", "IN", "Street")]
    [True, True, True, False, False]
    """
    lower = word.lower()
    title_case = word[:1].isupper() and word[1:] == word[1:].lower()
    return lower in _STARTERS_ANY_CASE or (title_case and lower in _STARTERS_TITLE_CASE)


def date_to_words(
    month: int, day: int, year: int | None = None, *, last_day: int | None = None, day_first: bool = False
) -> str:
    """Read a date in words.

    Arguments
    ---------
    month : int
        1 to 12.
    day : int
        A day of that month (1 to 31; February may have 29).
    year : int, optional
        Read after the day and a comma, as :func:`~semtts.text.numbers.year_to_words` reads it.
    last_day : int, optional
        The last day of a range of days (``"March third to fifth"``).
    day_first : bool
        ``"the third of March"`` rather than ``"March third"``.

    Returns
    -------
    str
        The date in words, the month name capitalised.

    Raises
    ------
    ValueError
        If the month has no such day.

    Example
    -------
    >>> date_to_words(3, 4, 2021)
    'March fourth, twenty twenty one'
    >>> date_to_words(3, 3, last_day=5, day_first=True)
    'the third to fifth of March'
    """
    for d in (day, day if last_day is None else last_day):
        if not (1 <= month <= 12 and 1 <= d <= _DAYS_IN_MONTH[month - 1]):
            raise ValueError(f"no day {d} in month {month}")
    days = ordinal_to_words(day)
    if last_day is not None:
        days += " to " + ordinal_to_words(last_day)
    name = MONTHS[month - 1]
    words = f"the {days} of {name}" if day_first else f"{name} {days}"
    return words if year is None else f"{words}, {year_to_words(year)}"


def _date_rule(read: Callable[[re.Match], str]) -> Callable[[re.Match], str]:
    """A ``re.sub`` replacement that leaves the match as it is where ``read`` finds no such day."""

    def replace(match: re.Match) -> str:
        try:
            return read(match)
        except ValueError:
            return match.group(0)

    return replace


def _named_month(match: re.Match, day_first: bool) -> str:
    last, year, text = match.group("last"), match.group("year"), match.string
    following = _WORD_AFTER_RE.match(text, match.end())
    starter_follows = following is None or is_sentence_starter(following.group(1))
    if day_first and year is None and not match.group(0).endswith(".") and not starter_follows:
        return match.group(0)  # "12 May Street", "4 March Lane": a name, not a date
    words = date_to_words(
        MONTHS.index(_MONTH_BY_PREFIX[match.group("month")[:3]]) + 1,
        int(match.group("day")),
        None if year is None else int(year),
        last_day=None if last is None else int(last),
        day_first=day_first,
    )
    if day_first and (match.group("of") or _THE_BEFORE_RE.search(text, max(0, match.start() - 10), match.start())):
        words = words[len("the "):]  # "on the 3rd of March", "the 10th and 11th of June"
    if match.group(0).endswith(".") and (
        (following and starter_follows) or _BLANK_REST_RE.match(text, match.end())
    ):
        words += "."  # "on 3 Jan. The ...": the dot also ends the sentence
    return words


def _numeric(match: re.Match) -> str:
    first, second, year = (int(g) for g in match.group("first", "second", "year"))
    if first > 12 and second <= 12:
        first, second = second, first  # "25/12/2020": day first
    return date_to_words(first, second, year)


_DATE_RULES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"(?<![\w./-])(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?![\w/-]|[.:]\d)"),
     lambda m: date_to_words(int(m.group("month")), int(m.group("day")), int(m.group("year")))),
    (re.compile(r"(?<![\w./-])(?P<first>\d{1,2})(?P<sep>[/-])(?P<second>\d{1,2})(?P=sep)(?P<year>\d{4})"
                r"(?![\w/-]|[.:]\d)"), _numeric),
    (re.compile(rf"\b{_MONTH}\s*{_DAYS}{_YEAR}{_END}(?P<of>)"), lambda m: _named_month(m, day_first=False)),
    (re.compile(rf"(?<![\w.,/-]){_DAYS}\s+(?P<of>of\s+)?{_MONTH}{_YEAR}{_END}"),
     lambda m: _named_month(m, day_first=True)),
    (re.compile(r"\b(?P<abbr>Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\b\.?(?=\s*\d{4}\b)"),
     lambda m: _MONTH_BY_PREFIX[m.group("abbr")[:3]]),
]


def expand_english_dates(text: str) -> str:
    """Read the dates of an English text in words (see the module docstring).

    Arguments
    ---------
    text : str
        NFKC / ASCII text.

    Returns
    -------
    str
        The text with its dates in words; other numbers are left as they are.

    Example
    -------
    >>> expand_english_dates("July 4th, 1776 and the 3rd of May; 3/4 cup, May 2020")
    'July fourth, seventeen seventy six and the third of May; 3/4 cup, May 2020'
    """
    for pattern, replacement in _DATE_RULES:
        text = pattern.sub(_date_rule(replacement), text)
    return text
