"""Pinyin syllables: initial and toned final, and toned pinyin spotted in raw text.

- :func:`pinyin_syllable_to_symbols` splits one syllable with a tone number
  (``"zhong1"``) into the symbols of the Mandarin phoneme frontend
  (``["zh", "ong1"]``). Spellings are normalised first: NFC, lowercase,
  ``ü`` / ``u:`` written ``v``, ``lue`` / ``nue`` read as ``lve`` / ``nve``
  (lüe, nüe), tone 0 as the neutral tone 5.
- :func:`find_toned_pinyin` finds pinyin with tone numbers written in a raw
  text (``"ni3 hao3"``, ``"ni3hao3"``): runs of syllables that pypinyin's
  dictionary knows, each followed by a tone digit 0-5. A lone one-letter
  syllable (``"A4"``, ``"M1"``) counts only next to another pinyin run, since
  it is far more often a name or a size.

Example
-------
>>> pinyin_syllable_to_symbols("lue4"), pinyin_syllable_to_symbols("ma0")
(['l', 've4'], ['m', 'a5'])
>>> text = "说 ni3 hao3, 用A4纸和mp3"
>>> [text[a:b] for a, b in find_toned_pinyin(text)]
['ni3', 'hao3']
"""

import functools
import re
import unicodedata

__all__ = [
    "pinyin_syllable_to_symbols",
    "normalize_syllable",
    "normalize_pinyin",
    "pinyin_syllables",
    "find_toned_pinyin",
]

_FINALS = frozenset(
    "a o e ai ei ao ou an en ang eng ong er i ia ie iao iou ian in iang ing iong io "
    "u ua uo uai uei uan uen uang ueng v ve van vn ê".split()
)
# Syllabic nasals (interjections such as 嗯 n2, 呣 m2, 哼 hng5): one symbol.
_SYLLABIC_NASALS = frozenset("m n ng hm hng".split())
_SYLLABLE_RE = re.compile(r"^([a-zêv]+)([0-5])?$")
# lüe / nüe written without the diaeresis (as many transcripts do).
_UE_AFTER_LN = {"lue": "lve", "nue": "nve"}
_LETTERS = "A-Za-zÜüÊê"
# A run of toned syllables in raw text, not glued to other letters or digits
# (nor followed by a decimal part: "a1.5" is no pinyin).
_RUN_RE = re.compile(rf"(?<![{_LETTERS}0-9])(?:[{_LETTERS}]+[0-5])+(?![{_LETTERS}0-9]|\.\d)")
_TONED_RE = re.compile(rf"([{_LETTERS}]+)([0-5])")


def normalize_syllable(syllable: str) -> str:
    """Write one pinyin syllable in the spelling this module reads.

    Arguments
    ---------
    syllable : str
        A syllable, with or without a tone digit.

    Returns
    -------
    str
        NFC, lowercase, ü as ``v``, ``lue`` / ``nue`` as ``lve`` / ``nve``,
        tone 0 as 5.

    Example
    -------
    >>> normalize_syllable("Lu:e0"), normalize_syllable("nü3")
    ('lve5', 'nv3')
    """
    text = unicodedata.normalize("NFC", syllable).lower().replace("u:", "v").replace("ü", "v")
    if text.endswith("0"):
        text = text[:-1] + "5"
    base = text.rstrip("012345")
    return _UE_AFTER_LN.get(base, base) + text[len(base):]


def normalize_pinyin(text: str) -> str:
    """:func:`normalize_syllable` on each toned syllable of a text.

    Arguments
    ---------
    text : str
        E.g. a run found by :func:`find_toned_pinyin`.

    Returns
    -------
    str

    Example
    -------
    >>> normalize_pinyin("Nü3 Lue0hao3")
    'nv3 lve5hao3'
    """
    return _TONED_RE.sub(lambda m: normalize_syllable(m.group()), text)


def pinyin_syllable_to_symbols(syllable: str) -> list[str] | None:
    """Split one pinyin syllable with a tone number into initial and final.

    Arguments
    ---------
    syllable : str
        E.g. ``"zhong1"``, ``"lv4"``, ``"nü3"``, ``"lue4"``, ``"er2"``, ``"ma0"``
        or ``"ma"`` (no number, or 0: neutral tone, written 5); see
        :func:`normalize_syllable`.

    Returns
    -------
    list of str or None
        ``[initial, final+tone]``, ``[final+tone]`` for a zero-initial
        syllable, or None if ``syllable`` is not pinyin.

    Example
    -------
    >>> pinyin_syllable_to_symbols("zhong1"), pinyin_syllable_to_symbols("ma")
    (['zh', 'ong1'], ['m', 'a5'])
    >>> pinyin_syllable_to_symbols("yuan2"), pinyin_syllable_to_symbols("hello")
    (['van2'], None)
    """
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    match = _SYLLABLE_RE.match(normalize_syllable(syllable))
    if match is None:
        return None
    base, tone = match.group(1), match.group(2) or "5"
    if base in _SYLLABIC_NASALS:
        return [base + tone]
    initial = to_initials(base, strict=True)
    final = to_finals(base, strict=True)
    if final not in _FINALS or initial + final == "" or len(initial) > 2:
        return None
    return [initial, final + tone] if initial else [final + tone]


@functools.lru_cache(maxsize=1)
def pinyin_syllables() -> frozenset[str]:
    """The toneless syllables of pypinyin's dictionary, ü written ``v`` (built once).

    Returns
    -------
    frozenset of str
        About 420 syllables (``"zhong"``, ``"lve"``, ``"er"``, ``"hng"``, ...).

    Example
    -------
    >>> {"zhong", "lve", "er"} <= pinyin_syllables(), "win" in pinyin_syllables()
    (True, False)
    """
    from pypinyin.contrib.tone_convert import to_normal
    from pypinyin.pinyin_dict import pinyin_dict

    return frozenset(
        to_normal(reading, v_to_u=False) for readings in pinyin_dict.values() for reading in readings.split(",")
    )


def find_toned_pinyin(text: str) -> list[tuple[int, int]]:
    """Where a raw text spells toned pinyin (see the module docstring).

    Arguments
    ---------
    text : str
        Raw (NFKC) text, e.g. hanzi with pinyin written in it.

    Returns
    -------
    list of (int, int)
        ``(start, end)`` of each pinyin run, in order; a run holds one or
        more syllables, each with its tone digit (``"ni3hao3"``).

    Example
    -------
    >>> find_toned_pinyin("ni3hao3 a1, COVID19 he2")
    [(0, 7), (8, 10), (20, 23)]
    """
    runs = []
    for match in _RUN_RE.finditer(text):
        bases = [normalize_syllable(m.group(1)) for m in _TONED_RE.finditer(match.group())]
        if bases and all(base in pinyin_syllables() for base in bases):
            runs.append((match.start(), match.end(), len(bases) == 1 and len(bases[0]) == 1))
    kept = []
    for index, (start, end, lone_letter) in enumerate(runs):
        if lone_letter:
            before = index > 0 and not text[runs[index - 1][1]:start].strip()
            after = index + 1 < len(runs) and not text[end:runs[index + 1][0]].strip()
            if not (before or after):
                continue
        kept.append((start, end))
    return kept
