"""The text frontend: cleaner, then phonemes / characters / BPE pieces, then ids.

:class:`Frontend` is what stage 2 and inference use to turn manifest texts
into token ids. Token types:

- ``"phn"``: phonemes: espeak-ng IPA characters, or, for a Mandarin
  ``language`` (``cmn...`` / ``zh...``), pinyin initials and toned finals,
  from the hanzi or from given pinyin transcripts (the ``pinyin`` argument:
  AISHELL-3 manifests carry a ``"pinyin"`` syllable list per item);
- ``"char"``: the characters of the cleaned text;
- ``"bpe"``: sentencepiece pieces of the cleaned text (``bpe_model`` from
  :func:`semtts.text.tokenizer.train_bpe`).

Blanks (VITS ``add_blank``) are not added here: ids stay as the manifest
stores them, and :func:`semtts.text.tokenizer.intersperse` runs in the data
pipeline.

Example
-------
>>> frontend = Frontend("phn", "en-us", "english")
>>> frontend.symbols(["Hi, Dr. Who!"])
[['h', 'ˈ', 'a', 'ɪ', ',', ' ', 'd', 'ˈ', 'ɑ', 'ː', 'k', 't', 'ɚ', ' ', 'h', 'ˈ', 'u', 'ː', '!']]
>>> tokens = frontend.build_token_list(["Hi, Dr. Who!"])
>>> ids, unknown = frontend.encode(["Hi, Dr. Who!", "Hey!"])
>>> [len(x) for x in ids], unknown
([19, 5], Counter({'e': 1}))
"""

from collections import Counter
from pathlib import Path
from typing import Sequence

from semtts.errors import ConfigError, DataError
from semtts.text.cleaners import clean_with_removed, get_cleaner
from semtts.text.phonemize import MandarinPhonemizer, get_phonemizer, is_mandarin
from semtts.text.tokenizer import SentencePieceTokenizer, TokenList

__all__ = ["TOKEN_TYPES", "Frontend"]

TOKEN_TYPES = ("phn", "char", "bpe")
Pinyin = Sequence[str | Sequence[str] | None]


class Frontend:
    """Texts to symbols to token ids, batched.

    Arguments
    ---------
    token_type : str
        ``"phn"``, ``"char"`` or ``"bpe"``.
    language : str
        ``"en-us"`` (or any espeak-ng language) or a Mandarin code (``"cmn"``,
        ``"zh..."``).
    cleaner : str
        A cleaner of :data:`semtts.text.cleaners.CLEANERS`; ``"english"``
        only with a non-Mandarin language, ``"mandarin"`` only with Mandarin.
    token_list : TokenList, optional
        Needed by :meth:`encode`; :meth:`build_token_list` makes one. For
        ``"bpe"`` it comes from the model (a given one must match it).
    bpe_model : str or Path, optional
        The sentencepiece ``.model``; required for ``"bpe"`` and only there.
    njobs : int
        Parallel espeak-ng jobs.

    Raises
    ------
    ConfigError
        On an unknown or inconsistent setting; the message names it.
    DataError
        If ``bpe_model`` cannot be read.

    Example
    -------
    >>> Frontend("char", "en-us", "english").symbols(["It's 2 pm."])
    [['i', 't', "'", 's', ' ', 't', 'w', 'o', ' ', 'p', 'm', '.']]
    >>> Frontend("phn", "cmn", "mandarin").symbols(["你好!"])
    [['n', 'i3', 'h', 'ao3', '!']]
    >>> Frontend("phn", "cmn", "mandarin").symbols(["你好!"], pinyin=[["ni3", "hao3", "!"]])
    [['n', 'i3', 'h', 'ao3', '!']]
    """

    def __init__(
        self,
        token_type: str = "phn",
        language: str = "en-us",
        cleaner: str = "english",
        token_list: TokenList | None = None,
        bpe_model: str | Path | None = None,
        njobs: int = 1,
    ):
        if token_type not in TOKEN_TYPES:
            raise ConfigError(f"unknown token_type {token_type!r}; valid: {', '.join(TOKEN_TYPES)}")
        if not isinstance(language, str) or not language:
            raise ConfigError(f"language must be a non-empty string, got {language!r}")
        self.clean_one = get_cleaner(cleaner)
        mandarin = is_mandarin(language)
        if mandarin and cleaner == "english":
            raise ConfigError(f"cleaner 'english' does not fit Mandarin language {language!r}; use 'mandarin'")
        if not mandarin and cleaner == "mandarin":
            raise ConfigError(f"cleaner 'mandarin' needs a Mandarin language (cmn, zh...), got {language!r}")
        if token_list is not None and not isinstance(token_list, TokenList):
            raise ConfigError(f"token_list must be a TokenList, got {type(token_list).__name__}")
        self.token_type = token_type
        self.language = language
        self.cleaner = cleaner
        self.token_list = token_list
        self.phonemizer = get_phonemizer(language, njobs) if token_type == "phn" else None
        self.bpe = None
        if token_type == "bpe":
            if bpe_model is None:
                raise ConfigError("token_type 'bpe' needs bpe_model (train one with train_bpe)")
            self.bpe = SentencePieceTokenizer(bpe_model)
            if token_list is not None and token_list != self.bpe.token_list:
                raise ConfigError(
                    f"token_list ({len(token_list)} symbols) does not match the pieces of "
                    f"bpe_model {bpe_model} ({len(self.bpe.token_list)} symbols)"
                )
            self.token_list = self.bpe.token_list
        elif bpe_model is not None:
            raise ConfigError(f"bpe_model is set but token_type is {token_type!r}, not 'bpe'")

    def clean(self, texts: Sequence[str]) -> list[str]:
        """Apply the cleaner to a batch (e.g. to train a BPE model on).

        Arguments
        ---------
        texts : sequence of str
            Raw texts.

        Returns
        -------
        list of str
        """
        return [self.clean_one(text) for text in _check_batch(texts)]

    def removed_letters(self, texts: Sequence[str]) -> list[Counter]:
        """Per text, the letters the cleaner deleted (other scripts; see
        :func:`semtts.text.cleaners.clean_with_removed`).

        Arguments
        ---------
        texts : sequence of str
            Raw texts.

        Returns
        -------
        list of collections.Counter
            One count per text; empty when nothing was lost.

        Example
        -------
        >>> Frontend("char", "en-us", "english").removed_letters(["Привет world", "hi"])
        [Counter({'п': 1, 'р': 1, 'и': 1, 'в': 1, 'е': 1, 'т': 1}), Counter()]
        """
        return [clean_with_removed(text, self.cleaner)[1] for text in _check_batch(texts)]

    def symbols(
        self, texts: Sequence[str], pinyin: Pinyin | None = None, failed: dict[int, str] | None = None
    ) -> list[list[str]]:
        """Turn a batch of raw texts into symbol sequences.

        Arguments
        ---------
        texts : sequence of str
            Raw texts.
        pinyin : sequence, optional
            Mandarin ``"phn"`` only: per text, its pinyin (a syllable list
            such as ``["guang3", "zhou1"]`` or one string ``"guang3
            zhou1"``), used instead of the text; ``None`` entries fall back
            to the text.
        failed : dict, optional
            Where a pinyin transcript cannot be read, put ``{index: message}``
            here and give that text no symbols, instead of raising (so that
            one bad corpus item does not stop the batch).

        Returns
        -------
        list of list of str
            One symbol sequence per text (empty if nothing is left after
            cleaning).

        Raises
        ------
        ConfigError
            If ``pinyin`` is given to a non-Mandarin or non-phoneme frontend.
        DataError
            If ``pinyin`` does not match ``texts``, or holds a non-syllable
            and ``failed`` is not given.
        """
        texts = _check_batch(texts)
        if pinyin is not None:
            return self._symbols_with_pinyin(texts, pinyin, failed)
        cleaned = self.clean(texts)
        if self.phonemizer is not None:
            return self.phonemizer(cleaned)
        if self.bpe is not None:
            return [self.bpe.pieces(text) for text in cleaned]
        return [list(text) for text in cleaned]

    def _symbols_with_pinyin(self, texts: list[str], pinyin: Pinyin, failed: dict | None) -> list[list[str]]:
        if not isinstance(self.phonemizer, MandarinPhonemizer):
            raise ConfigError(
                "pinyin input needs token_type 'phn' and a Mandarin language, "
                f"not token_type {self.token_type!r}, language {self.language!r}"
            )
        if isinstance(pinyin, str) or len(pinyin) != len(texts):
            count = "a string" if isinstance(pinyin, str) else f"{len(pinyin)} entries"
            raise DataError(f"pinyin must be a list with one entry per text: got {count} for {len(texts)} texts")
        # Texts without pinyin go through pypinyin as one batch, then each
        # transcript is put in at its own index.
        symbols = self.phonemizer(self.clean([t for t, p in zip(texts, pinyin) if p is None]))
        for number, entry in enumerate(pinyin):
            if entry is None:
                continue
            try:
                symbols.insert(number, self.phonemizer.pinyin_symbols(entry))
            except DataError as err:
                if failed is None:
                    raise DataError(f"pinyin of text {number}: {err}") from None
                failed[number] = str(err)
                symbols.insert(number, [])
        return symbols

    def build_token_list(
        self, texts: Sequence[str], min_count: int = 1, pinyin: Pinyin | None = None
    ) -> TokenList:
        """Build (and keep) the token list of a corpus.

        For ``"bpe"`` the list is the model's pieces and ``texts`` are not
        needed.

        Arguments
        ---------
        texts : sequence of str
            The corpus texts (usually the training split).
        min_count : int
            Rarer symbols are left out (``"phn"`` / ``"char"``).
        pinyin : sequence, optional
            As in :meth:`symbols`.

        Returns
        -------
        TokenList
            Also stored as :attr:`token_list`.
        """
        if self.bpe is not None:
            self.token_list = self.bpe.token_list
        else:
            self.token_list = TokenList.build(self.symbols(texts, pinyin), min_count=min_count)
        return self.token_list

    def encode(
        self, texts: Sequence[str], pinyin: Pinyin | None = None, drop_unknown: bool = False
    ) -> tuple[list[list[int]], Counter]:
        """Turn a batch of raw texts into token ids (no blanks).

        Arguments
        ---------
        texts : sequence of str
            Raw texts.
        pinyin : sequence, optional
            As in :meth:`symbols`.
        drop_unknown : bool
            Leave symbols outside the token list out (synthesis) instead of
            writing ``<unk>`` (training); a word boundary ``" "`` left at an
            end or next to another one goes too.

        Returns
        -------
        ids : list of list of int
            One id sequence per text.
        unknown : collections.Counter
            Symbols of this batch that became ``<unk>`` (or were left out),
            with their counts.

        Example
        -------
        >>> frontend = Frontend("char", "en-us", "english")
        >>> tokens = frontend.build_token_list(["ab c"])
        >>> frontend.encode(["a x c!"], drop_unknown=True)
        ([[4, 3, 6]], Counter({'x': 1, '!': 1}))

        Raises
        ------
        ConfigError
            If there is no token list yet.
        """
        if self.token_list is None:
            raise ConfigError(
                "the frontend has no token list: pass token_list "
                "(TokenList.load('tokens.txt')) or call build_token_list first"
            )
        unknown: Counter = Counter()
        ids = [self.token_list.encode(seq, unknown, drop_unknown) for seq in self.symbols(texts, pinyin)]
        if drop_unknown and unknown and " " in self.token_list:
            space = self.token_list.encode([" "])[0]
            ids = [_tidy_spaces(x, space) for x in ids]
        return ids, unknown


def _tidy_spaces(ids: list[int], space: int) -> list[int]:
    """No ``space`` id at either end or twice in a row."""
    out: list[int] = []
    for token in ids:
        if token != space or (out and out[-1] != space):
            out.append(token)
    return out[:-1] if out and out[-1] == space else out


def _check_batch(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError("the frontend takes a list of texts, not one string: wrap it in a list")
    texts = list(texts)
    for number, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"text {number} is a {type(text).__name__}, not a string")
    return texts
