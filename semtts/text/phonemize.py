"""Grapheme-to-phoneme conversion: espeak-ng (through ``phonemizer``) and pinyin.

Both phonemizers take a batch of *cleaned* texts and return one symbol list
per text:

- :class:`EspeakPhonemizer` (English and any other espeak-ng language): the
  symbols are the single characters of the IPA string, as in the original
  VITS, with stress marks (``ˈ``, ``ˌ``) and length marks kept, a ``" "``
  symbol between words and the punctuation marks as their own symbols.
  The text is cut at punctuation marks and the word chunks of the whole
  batch go through one ``phonemize`` call of one reused backend; the marks
  are put back by this module (phonemizer's own punctuation restoration
  misaligns lines on empty or punctuation-only utterances).
- :class:`MandarinPhonemizer`: hanzi through ``pypinyin`` (tone numbers,
  neutral tone 5), each syllable split into an initial and a final carrying
  the tone (``"zh", "ong1"``; a zero-initial syllable gives only its final,
  with the standard spelling restored: ``yu2 -> v2``, ``wo3 -> uo3``).
  Toned pinyin that the mandarin cleaner kept (``"ni3 hao3"`` written in
  the text) gives its initials and finals too. Punctuation and spaces become
  symbols of their own, and so does any other Latin letter, written in
  capitals (``"ipad"`` gives ``I P A D``) so that a letter is never read as
  the pinyin initial of the same name: a model trained on hanzi or pinyin
  alone does not know these symbols, and synthesis leaves them out.
  :meth:`MandarinPhonemizer.from_pinyin` accepts pinyin transcripts
  (``"guang3 zhou1"``, as in AISHELL-3) directly.

Example
-------
>>> g2p = EspeakPhonemizer("en-us")
>>> g2p(["Hello, world!"])[0]
['h', 'ə', 'l', 'ˈ', 'o', 'ʊ', ',', ' ', 'w', 'ˈ', 'ɜ', 'ː', 'l', 'd', '!']
>>> MandarinPhonemizer()(["你好,世界."])[0]
['n', 'i3', 'h', 'ao3', ',', 'sh', 'i4', 'j', 'ie4', '.']
>>> MandarinPhonemizer().from_pinyin(["guang3 zhou1 yu2"])[0]
['g', 'uang3', 'zh', 'ou1', 'v2']
"""

import logging
import re
from typing import Sequence

from semtts.errors import ConfigError, DataError
from semtts.text.cleaners import HANZI, mandarin_cleaner
from semtts.text.pinyin import pinyin_syllable_to_symbols

__all__ = [
    "PUNCTUATION",
    "EspeakPhonemizer",
    "MandarinPhonemizer",
    "pinyin_syllable_to_symbols",
    "is_mandarin",
    "get_phonemizer",
]

# phonemizer's own messages; its word-count mismatch summary is harmless here
# (no word alignment is used), so only errors get through.
_backend_logger = logging.getLogger(__name__ + ".espeak")
_backend_logger.setLevel(logging.ERROR)

#: Marks that end a word chunk and become symbols of their own.
PUNCTUATION = ',.!?;:¡¿—…"«»“”()[]{}'
# A hyphen is a mark only when it is not inside a word ("well-known" stays a word).
_MARK_RE = re.compile(r"([" + re.escape(PUNCTUATION) + r"]|(?<!\w)-|-(?!\w))")
_SPACES_RE = re.compile(r"\s+")


def is_mandarin(language: str) -> bool:
    """Whether a language code is Mandarin (``cmn...`` or ``zh...``), which
    is phonemized with pypinyin rather than espeak-ng.

    Arguments
    ---------
    language : str
        A language code such as ``"en-us"``, ``"cmn"`` or ``"zh-CN"``.

    Returns
    -------
    bool

    Example
    -------
    >>> is_mandarin("cmn"), is_mandarin("zh-CN"), is_mandarin("en-us")
    (True, True, False)
    """
    return language.lower().startswith(("cmn", "zh"))


class EspeakPhonemizer:
    """Batched IPA phonemization with espeak-ng, stress marks and punctuation kept.

    The espeak backend is created once in the constructor and reused for
    every call.

    Arguments
    ---------
    language : str
        An espeak-ng language code (``"en-us"``, ``"en-gb"``, ``"de"``, ...).
    njobs : int
        Parallel phonemizer jobs per call (worth it from thousands of texts).

    Raises
    ------
    ConfigError
        If espeak-ng is missing or does not know ``language``.

    Example
    -------
    >>> g2p = EspeakPhonemizer("en-us")
    >>> g2p.phonemize(["", "It works; ok."])
    ['', 'ɪt wˈɜːks; ˌoʊkˈeɪ.']
    """

    def __init__(self, language: str = "en-us", njobs: int = 1):
        from phonemizer.backend import EspeakBackend
        from phonemizer.separator import Separator

        if njobs < 1:
            raise ConfigError(f"phonemizer njobs must be >= 1, got {njobs}")
        try:
            self.backend = EspeakBackend(
                language,
                preserve_punctuation=False,
                with_stress=True,
                language_switch="remove-flags",
                words_mismatch="ignore",
                logger=_backend_logger,
            )
        except RuntimeError as err:
            raise ConfigError(
                f"espeak-ng phonemizer for language {language!r}: {err} "
                "(is espeak-ng installed? tools/setup.sh installs it)"
            ) from None
        self.language = language
        self.njobs = njobs
        self._separator = Separator(phone="", syllable="", word=" ")

    def phonemize(self, texts: Sequence[str]) -> list[str]:
        """Phonemize a batch of cleaned texts to IPA strings.

        Arguments
        ---------
        texts : sequence of str
            Cleaned texts; an empty text gives an empty string.

        Returns
        -------
        list of str
            One IPA string per text, words separated by single spaces.
        """
        pieces = [_MARK_RE.split(text) for text in texts]
        chunks = [
            _SPACES_RE.sub(" ", piece).strip()
            for split in pieces
            for piece in split[::2]
            if any(c.isalnum() for c in piece)
        ]
        if chunks:
            phonemized = self.backend.phonemize(
                chunks, separator=self._separator, strip=True, njobs=self.njobs
            )
        else:
            phonemized = []
        if len(phonemized) != len(chunks):
            raise DataError(
                f"espeak-ng ({self.language}) returned {len(phonemized)} lines "
                f"for {len(chunks)} word chunks; cannot align the batch"
            )
        outputs = iter(phonemized)
        results = []
        for split in pieces:
            out = []
            for index, piece in enumerate(split):
                if index % 2:  # a punctuation mark
                    out.append(piece)
                    continue
                if any(c.isalnum() for c in piece):
                    words = _SPACES_RE.sub(" ", next(outputs)).strip()
                else:
                    words = ""
                lead = " " if piece[:1].isspace() else ""
                tail = " " if piece[-1:].isspace() else ""
                out.append(f"{lead}{words}{tail}" if words else lead or tail)
            results.append(_SPACES_RE.sub(" ", "".join(out)).strip())
        return results

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        """Phonemize a batch of cleaned texts to symbol lists.

        Arguments
        ---------
        texts : sequence of str
            Cleaned texts.

        Returns
        -------
        list of list of str
            Per text, the IPA characters (word boundary: ``" "``).
        """
        return [list(ipa) for ipa in self.phonemize(texts)]


# Pinyin ----------------------------------------------------------------------
_HANZI_RUN_RE = re.compile(f"([{HANZI}]+)")
# Toned pinyin left in a cleaned text by the mandarin cleaner ("ni3hao3").
_PINYIN_RUN_RE = re.compile(r"((?:[a-zvê]+[0-5])+)")
_PINYIN_SYLLABLE_RE = re.compile(r"[a-zvê]+[0-5]")


def _other_symbols(text: str) -> list[str]:
    """Symbols of a non-hanzi stretch of a cleaned text.

    Toned pinyin gives its initials and finals (no space symbol around
    it, as between hanzi); any other Latin letter is one symbol, written
    in capitals so that it is never a pinyin initial (``h``, ``n``); any
    other character is its own symbol, runs of spaces one ``" "``.
    """
    pieces = _PINYIN_RUN_RE.split(text)
    symbols: list[str] = []
    for index, piece in enumerate(pieces):
        if index % 2:
            syllables = [pinyin_syllable_to_symbols(s) for s in _PINYIN_SYLLABLE_RE.findall(piece)]
            if all(syllables):
                symbols += [symbol for split in syllables for symbol in split]
                continue
        else:
            piece = piece.lstrip() if index > 0 else piece
            piece = piece.rstrip() if index < len(pieces) - 1 else piece
        symbols += [c.upper() if "a" <= c <= "z" else c for c in _SPACES_RE.sub(" ", piece.lower())]
    return symbols


class MandarinPhonemizer:
    """Mandarin initials and tone-numbered finals from hanzi (pypinyin) or pinyin.

    Example
    -------
    >>> g2p = MandarinPhonemizer()
    >>> g2p(["我用 ipad."])[0]
    ['uo3', 'iong4', ' ', 'I', 'P', 'A', 'D', '.']
    >>> g2p(["说 ni3 hao3."])[0]
    ['sh', 'uo1', 'n', 'i3', 'h', 'ao3', '.']
    """

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        """Phonemize a batch of cleaned Mandarin texts.

        Arguments
        ---------
        texts : sequence of str
            Cleaned texts (see ``clean_text(..., "mandarin")``).

        Returns
        -------
        list of list of str
            Per text: initials, finals with tones (also of toned pinyin
            in the text), and one symbol per other character (punctuation,
            ``" "``, Latin letters in capitals).
        """
        from pypinyin import Style, lazy_pinyin

        results = []
        for text in texts:
            symbols: list[str] = []
            for index, run in enumerate(_HANZI_RUN_RE.split(text)):
                if not index % 2:
                    symbols += _other_symbols(run)
                    continue
                readings = lazy_pinyin(run, style=Style.TONE3, neutral_tone_with_five=True)
                for reading in readings:
                    split = pinyin_syllable_to_symbols(reading)
                    # A hanzi without a reading comes back as itself.
                    symbols += split if split is not None else list(reading)
            results.append(symbols)
        return results

    def pinyin_symbols(self, syllables: str | Sequence[str]) -> list[str]:
        """Phonemize one pinyin transcript (no hanzi needed).

        Arguments
        ---------
        syllables : str or sequence of str
            A whitespace-separated string such as ``"guang3 zhou1 , da4
            xue2"`` or a list of syllables; ``v``, ``ü`` and ``u:`` are all
            read as ü, ``lue`` / ``nue`` as lüe / nüe, tone 0 as 5 (see
            :func:`semtts.text.pinyin.normalize_syllable`); punctuation
            tokens (``,`` or ``，``) become ASCII symbols.

        Returns
        -------
        list of str
            The initial / final symbols.

        Raises
        ------
        DataError
            If a token is neither a pinyin syllable nor punctuation.

        Example
        -------
        >>> MandarinPhonemizer().pinyin_symbols(["nv3", "，", "er2"])
        ['n', 'v3', ',', 'er2']
        """
        tokens = syllables.split() if isinstance(syllables, str) else list(syllables)
        symbols: list[str] = []
        for token in tokens:
            split = pinyin_syllable_to_symbols(token) if isinstance(token, str) else None
            if split is not None:
                symbols += split
                continue
            mark = mandarin_cleaner(token) if isinstance(token, str) else ""
            if not mark or any(c not in ",.!?;:-" for c in mark):
                raise DataError(
                    f"{token!r} is not a pinyin syllable (letters and a tone number 0-5) "
                    "nor punctuation"
                )
            symbols += list(mark)
        return symbols

    def from_pinyin(self, utterances: Sequence[str | Sequence[str]]) -> list[list[str]]:
        """Phonemize a batch of pinyin transcripts (see :meth:`pinyin_symbols`).

        Arguments
        ---------
        utterances : sequence of (str or sequence of str)
            One transcript per utterance.

        Returns
        -------
        list of list of str
            Per utterance, the initial / final symbols.

        Raises
        ------
        DataError
            If a token is neither a pinyin syllable nor punctuation; the
            message names the utterance index and the token.
        """
        results = []
        for number, utterance in enumerate(utterances):
            try:
                results.append(self.pinyin_symbols(utterance))
            except DataError as err:
                raise DataError(f"pinyin utterance {number}: {err}") from None
        return results


def get_phonemizer(language: str, njobs: int = 1) -> EspeakPhonemizer | MandarinPhonemizer:
    """The phonemizer for a language: pypinyin for Mandarin, espeak-ng otherwise.

    Arguments
    ---------
    language : str
        ``"cmn"`` / ``"zh..."`` for Mandarin, else an espeak-ng language code.
    njobs : int
        Parallel jobs for espeak-ng.

    Returns
    -------
    EspeakPhonemizer or MandarinPhonemizer

    Example
    -------
    >>> type(get_phonemizer("cmn")).__name__
    'MandarinPhonemizer'
    """
    if is_mandarin(language):
        return MandarinPhonemizer()
    return EspeakPhonemizer(language, njobs=njobs)
