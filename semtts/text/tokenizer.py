"""Symbol inventories (``tokens.txt``), BPE models and VITS blank interspersal.

Every token id space in semtts starts with three reserved symbols:
``<pad>`` = :data:`PAD_ID` (0), ``<blank>`` = :data:`BLANK_ID` (1) and
``<unk>`` = :data:`UNK_ID` (2). The corpus symbols (phonemes, characters or
sentencepiece pieces) follow.

``tokens.txt`` holds one symbol per line; the line index (from 0) is the id.
The space symbol ``" "`` (the word boundary of phoneme and character
sequences) is written as :data:`SPACE_ESCAPE` (``<space>``) and read back as
``" "``; no other symbol may contain whitespace.

Example
-------
>>> tokens = TokenList.build([["h", "i", " ", "h", "o"]])
>>> tokens.symbols
['<pad>', '<blank>', '<unk>', ' ', 'h', 'i', 'o']
>>> tokens.encode(["h", "a", "i"])
[4, 2, 5]
>>> tokens.unknown
Counter({'a': 1})
>>> intersperse([4, 5], BLANK_ID)
[1, 4, 1, 5, 1]
"""

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from semtts.errors import ConfigError, DataError

__all__ = [
    "PAD",
    "BLANK",
    "UNK",
    "PAD_ID",
    "BLANK_ID",
    "UNK_ID",
    "RESERVED",
    "SPACE_ESCAPE",
    "MIN_CHARACTER_COVERAGE",
    "TokenList",
    "intersperse",
    "train_bpe",
    "SentencePieceTokenizer",
]

logger = logging.getLogger(__name__)

PAD, BLANK, UNK = "<pad>", "<blank>", "<unk>"
PAD_ID, BLANK_ID, UNK_ID = 0, 1, 2
RESERVED = (PAD, BLANK, UNK)
#: How the space symbol is written in ``tokens.txt``.
SPACE_ESCAPE = "<space>"


class TokenList:
    """An ordered symbol inventory: reserved symbols first, then corpus symbols.

    Arguments
    ---------
    symbols : sequence of str
        All symbols in id order, starting with :data:`RESERVED`.

    Attributes
    ----------
    unknown : collections.Counter
        Symbols that :meth:`encode` mapped to ``<unk>``, with their counts,
        accumulated over all calls.

    Raises
    ------
    DataError
        If the reserved symbols are not first, a symbol repeats, is empty,
        contains whitespace (other than the space symbol itself) or is
        :data:`SPACE_ESCAPE`.

    Example
    -------
    >>> tokens = TokenList(["<pad>", "<blank>", "<unk>", " ", "a", "b"])
    >>> len(tokens), tokens.decode([4, 1, 3, 5]), tokens.decode([4, 1, 5], skip_special=False)
    (6, ['a', ' ', 'b'], ['a', '<blank>', 'b'])
    """

    def __init__(self, symbols: Sequence[str]):
        symbols = list(symbols)
        if tuple(symbols[: len(RESERVED)]) != RESERVED:
            raise DataError(f"a token list must start with {', '.join(RESERVED)}; got {symbols[:3]}")
        index: dict[str, int] = {}
        for number, symbol in enumerate(symbols):
            _check_symbol(symbol, f"token {number}")
            if symbol in index:
                raise DataError(f"token {number}: symbol {symbol!r} repeats token {index[symbol]}")
            index[symbol] = number
        self.symbols = symbols
        self._index = index
        self.unknown: Counter = Counter()

    @classmethod
    def build(cls, symbol_sequences: Iterable[Sequence[str]], min_count: int = 1) -> "TokenList":
        """Build the inventory of a corpus: reserved symbols, then every
        symbol seen at least ``min_count`` times, in code-point order.

        Arguments
        ---------
        symbol_sequences : iterable of sequence of str
            The symbol sequences of the corpus (e.g. ``Frontend.symbols``).
        min_count : int
            Rarer symbols are left out (they will encode to ``<unk>``).

        Returns
        -------
        TokenList

        Example
        -------
        >>> TokenList.build([["b", "a"], ["a", "c"]], min_count=2).symbols
        ['<pad>', '<blank>', '<unk>', 'a']
        """
        if min_count < 1:
            raise ConfigError(f"token list min_count must be >= 1, got {min_count}")
        counts: Counter = Counter()
        for sequence in symbol_sequences:
            counts.update(sequence)
        kept = sorted(s for s, n in counts.items() if n >= min_count and s not in RESERVED)
        return cls(list(RESERVED) + kept)

    @classmethod
    def load(cls, path: str | Path) -> "TokenList":
        """Read a ``tokens.txt`` file.

        Arguments
        ---------
        path : str or Path
            The file: one symbol per line, ``<space>`` for the space symbol.

        Returns
        -------
        TokenList

        Raises
        ------
        DataError
            If the file is missing or malformed; the message names it.
        """
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: cannot read the token list ({err})") from None
        symbols = [" " if line == SPACE_ESCAPE else line for line in lines]
        try:
            return cls(symbols)
        except DataError as err:
            raise DataError(f"{path}: {err}") from None

    def save(self, path: str | Path) -> None:
        """Write ``tokens.txt`` (atomically: a temporary file, then a rename).

        Arguments
        ---------
        path : str or Path
            The destination; parent folders are created.

        Example
        -------
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "tokens.txt")
        >>> TokenList.build([["a", " ", "b"]]).save(path)
        >>> open(path).read().split("\\n")[:5]
        ['<pad>', '<blank>', '<unk>', '<space>', 'a']
        >>> TokenList.load(path).symbols[3]
        ' '
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        lines = (SPACE_ESCAPE if s == " " else s for s in self.symbols)
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        os.replace(tmp, path)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenList) and self.symbols == other.symbols

    def __repr__(self) -> str:
        return f"TokenList({len(self)} symbols)"

    def encode(
        self, symbols: Iterable[str], unknown: Counter | None = None, drop_unknown: bool = False
    ) -> list[int]:
        """Map symbols to ids; a symbol outside the list becomes :data:`UNK_ID`
        (training: the id keeps the symbol's place) or is left out
        (``drop_unknown``: synthesis, where ``<unk>`` is an embedding the
        model never learned from a symbol it never saw).

        Arguments
        ---------
        symbols : iterable of str
            One utterance's symbols.
        unknown : collections.Counter, optional
            Also counts the unknown symbols here (besides :attr:`unknown`).
        drop_unknown : bool
            Leave unknown symbols out instead of writing :data:`UNK_ID`.

        Returns
        -------
        list of int
            The ids, one per (kept) symbol.

        Example
        -------
        >>> tokens = TokenList.build([["a", "b"]])
        >>> tokens.encode(["a", "!", "b"]), tokens.encode(["a", "!", "b"], drop_unknown=True)
        ([3, 2, 4], [3, 4])
        """
        ids = []
        for symbol in symbols:
            token = self._index.get(symbol)
            if token is None or token == UNK_ID:
                self.unknown[symbol] += 1
                if unknown is not None:
                    unknown[symbol] += 1
                if drop_unknown:
                    continue
                token = UNK_ID
            ids.append(token)
        return ids

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> list[str]:
        """Map ids back to symbols.

        Arguments
        ---------
        ids : iterable of int
            Token ids.
        skip_special : bool
            Leave ``<pad>`` and ``<blank>`` out (``<unk>`` is always kept).

        Returns
        -------
        list of str

        Raises
        ------
        DataError
            If an id is outside ``[0, len(self))``.
        """
        out = []
        for token in ids:
            token = int(token)
            if not 0 <= token < len(self.symbols):
                raise DataError(f"token id {token} is outside the token list (size {len(self)})")
            if skip_special and token in (PAD_ID, BLANK_ID):
                continue
            out.append(self.symbols[token])
        return out


def _check_symbol(symbol: str, where: str) -> None:
    if not isinstance(symbol, str) or symbol == "":
        raise DataError(f"{where}: a symbol must be a non-empty string, got {symbol!r}")
    if symbol == SPACE_ESCAPE:
        raise DataError(f"{where}: {SPACE_ESCAPE!r} is reserved as the file escape of ' '")
    if symbol != " " and any(c.isspace() for c in symbol):
        raise DataError(f"{where}: symbol {symbol!r} contains whitespace")


def intersperse(ids: Sequence[int], blank_id: int = BLANK_ID) -> list[int]:
    """Put ``blank_id`` before, between and after the ids (VITS ``add_blank``).

    Arguments
    ---------
    ids : sequence of int
        Token ids of one utterance, length ``N``.
    blank_id : int
        The id to insert.

    Returns
    -------
    list of int
        Length ``2 * N + 1``.

    Example
    -------
    >>> intersperse([7, 8, 9], blank_id=1)
    [1, 7, 1, 8, 1, 9, 1]
    """
    out = [blank_id] * (2 * len(ids) + 1)
    out[1::2] = ids
    return out


# Sentencepiece -----------------------------------------------------------------
def train_bpe(
    texts: Iterable[str],
    model_prefix: str | Path,
    vocab_size: int,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
) -> Path:
    """Train a sentencepiece model on cleaned texts, quietly and deterministically.

    The model has ``<unk>`` at its id 0 and no BOS/EOS/PAD pieces; the text is
    used as it is (normalisation ``identity``: the cleaner already ran). If
    the texts cannot support ``vocab_size`` pieces, the model gets fewer and
    a warning is logged.

    Arguments
    ---------
    texts : iterable of str
        Cleaned training texts (stage 2's text).
    model_prefix : str or Path
        Writes ``<model_prefix>.model`` and ``<model_prefix>.vocab``.
    vocab_size : int
        Number of sentencepiece pieces (``<unk>`` included).
    model_type : str
        ``"bpe"`` or ``"unigram"``.
    character_coverage : float
        Share of characters covered (1.0 for alphabetic scripts, about
        0.9995 for Mandarin). When the texts have more distinct characters
        than ``vocab_size`` can hold, it is lowered so that the most frequent
        ones fit (sentencepiece would fail), with a warning: the rarest
        characters then encode to ``<unk>``.

    Returns
    -------
    Path
        The ``.model`` file.

    Raises
    ------
    ConfigError
        If the settings are invalid or sentencepiece fails.

    Example
    -------
    >>> import tempfile, os
    >>> prefix = os.path.join(tempfile.mkdtemp(), "bpe")
    >>> model = train_bpe(["a cat sat", "a cat ran"] * 4, prefix, vocab_size=20)
    >>> model.name
    'bpe.model'
    """
    import sentencepiece as spm

    if model_type not in ("bpe", "unigram"):
        raise ConfigError(f"sentencepiece model_type must be 'bpe' or 'unigram', got {model_type!r}")
    if vocab_size < 2:
        raise ConfigError(f"sentencepiece vocab_size must be >= 2, got {vocab_size}")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ConfigError(f"{model_prefix}: no non-empty text to train sentencepiece on")
    if not 0.0 < character_coverage <= 1.0:
        raise ConfigError(f"sentencepiece character_coverage must be in (0, 1], got {character_coverage}")
    character_coverage = _fitting_coverage(texts, vocab_size, character_coverage, model_prefix)
    Path(model_prefix).parent.mkdir(parents=True, exist_ok=True)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_prefix=str(model_prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            normalization_rule_name="identity",
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            hard_vocab_limit=False,
            shuffle_input_sentence=False,
            input_sentence_size=0,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as err:
        raise ConfigError(f"{model_prefix}: sentencepiece training failed: {err}") from None
    model = Path(f"{model_prefix}.model")
    size = spm.SentencePieceProcessor(model_file=str(model)).get_piece_size()
    if size < vocab_size:
        logger.warning("%s: the texts support only %d pieces (asked for %d)", model, size, vocab_size)
    return model


#: The lowest character coverage sentencepiece accepts.
MIN_CHARACTER_COVERAGE = 0.98


def _fitting_coverage(texts: list[str], vocab_size: int, coverage: float, where: str | Path) -> float:
    """The largest coverage up to ``coverage`` whose characters fit in the vocabulary.

    sentencepiece keeps the most frequent characters until they cover
    ``coverage`` of the text (word boundaries ``▁`` included) and fails if
    they and ``<unk>`` outnumber ``vocab_size``; one slot is kept spare.
    """
    counts: Counter = Counter()
    for text in texts:
        counts.update("\u2581" + "\u2581".join(text.split()))
    room = max(1, vocab_size - 2)
    if len(counts) <= room:
        return coverage
    total = sum(counts.values())
    fit = sum(n for _, n in counts.most_common(room)) / total
    if fit >= coverage:
        return coverage
    if fit < MIN_CHARACTER_COVERAGE:
        needed, covered = 0, 0
        for needed, (_, n) in enumerate(counts.most_common(), start=1):
            covered += n
            if covered / total >= MIN_CHARACTER_COVERAGE:
                break
        raise ConfigError(f"{where}: vocab_size {vocab_size} cannot hold the characters of the text ({len(counts)} "
                          f"distinct; sentencepiece needs those covering {MIN_CHARACTER_COVERAGE:.0%} of it, the "
                          f"{needed} most frequent): use a vocab_size (stage 2: bpe_vocab_size) of at least "
                          f"{needed + 2}")
    logger.warning("%s: %d distinct characters do not fit in %d pieces; the %d rarest (%.3f%% of the text) will "
                   "encode to <unk> (raise the vocabulary size to keep them)", where, len(counts), vocab_size,
                   len(counts) - room, 100 * (1 - fit))
    return fit


class SentencePieceTokenizer:
    """Sentencepiece pieces inside the semtts id scheme.

    The pieces follow the reserved ids in sentencepiece's own order, and
    sentencepiece's ``<unk>`` is semtts' ``<unk>``: piece id ``k > 0`` is
    token id ``k + 2``. A character the model never saw is counted as
    unknown, like any symbol outside a :class:`TokenList`.

    Arguments
    ---------
    model_path : str or Path
        A ``.model`` file from :func:`train_bpe`.

    Raises
    ------
    DataError
        If the model file is missing or unreadable.

    Example
    -------
    >>> import tempfile, os
    >>> prefix = os.path.join(tempfile.mkdtemp(), "bpe")
    >>> sp = SentencePieceTokenizer(train_bpe(["a cat sat", "a cat ran"] * 4, prefix, 20))
    >>> sp.pieces("a cat")
    ['▁a', '▁cat']
    >>> ids = sp.encode("a cat!")
    >>> sp.token_list.decode(ids), sp.token_list.unknown
    (['▁a', '▁cat', '<unk>'], Counter({'!': 1}))
    """

    def __init__(self, model_path: str | Path):
        import sentencepiece as spm

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise DataError(f"{self.model_path}: sentencepiece model not found")
        try:
            self.processor = spm.SentencePieceProcessor(model_file=str(self.model_path))
        except (RuntimeError, OSError) as err:
            raise DataError(f"{self.model_path}: cannot load the sentencepiece model ({err})") from None
        sp = self.processor
        pieces = [
            sp.id_to_piece(i)
            for i in range(sp.get_piece_size())
            if not (sp.is_unknown(i) or sp.is_control(i))
        ]
        try:
            self.token_list = TokenList(list(RESERVED) + pieces)
        except DataError as err:
            raise DataError(f"{self.model_path}: {err}") from None

    def pieces(self, text: str) -> list[str]:
        """Split one cleaned text into pieces (unseen characters stay as they are).

        Arguments
        ---------
        text : str
            A cleaned text.

        Returns
        -------
        list of str
        """
        return self.processor.encode(text, out_type=str)

    def encode(self, text: str, unknown: Counter | None = None) -> list[int]:
        """Encode one cleaned text to token ids (see :meth:`TokenList.encode`).

        Arguments
        ---------
        text : str
            A cleaned text.
        unknown : collections.Counter, optional
            Also counts the unknown pieces here.

        Returns
        -------
        list of int
        """
        return self.token_list.encode(self.pieces(text), unknown)
