"""One parser module per corpus, found by name.

Every corpus module follows the same small interface:

- ``NAME``: the registry name; ``DOWNLOAD_HINT``: where to get the corpus
  and the folder layout expected;
- ``check(data_folder)``: raises :class:`~semtts.errors.DataError` naming
  the folder, with the download hint, when the corpus is absent or its
  layout is wrong;
- ``list_utterances(data_folder, **options) -> list[dict]``: raw items
  ``{"utt_id", "path" (absolute), "text", "spk"}``, plus ``"split"`` when
  the layout fixes it and any corpus-specific field (e.g. ``"pinyin"``).
  A line or file that cannot be parsed (including one that is not valid
  UTF-8) is skipped with a warning naming the file and line on the module's
  logger (a child of ``semtts.data.corpora``, which
  :func:`semtts.data.prepare.prepare_manifests` records in its report). A
  repeated utterance id keeps its first item; each later one is skipped with
  a warning made by :func:`keep_first`, which the report counts as the drop
  reason ``duplicate_id``.

Listing files are read with :func:`read_listing` (a UTF-8 byte-order mark
is ignored; an undecodable line is skipped) and single-transcript files with
:data:`TEXT_ENCODING` (``utf-8-sig``).

Example
-------
>>> get_corpus("ljspeech").NAME
'ljspeech'
>>> get_corpus("timit")
Traceback (most recent call last):
...
semtts.errors.ConfigError: unknown corpus 'timit' (valid: mini, ljspeech, vctk, libritts_r, aishell3)
"""

import importlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from semtts.errors import ConfigError, DataError

__all__ = ["CORPORA", "DUPLICATE_ID", "TEXT_ENCODING", "get_corpus", "keep_first", "read_listing", "require_layout"]

CORPORA = ("mini", "ljspeech", "vctk", "libritts_r", "aishell3")

# The drop reason of a repeated utterance id (see semtts.data.validate.DROP_REASONS).
DUPLICATE_ID = "duplicate_id"
# Transcript files: UTF-8, a leading byte-order mark ignored.
TEXT_ENCODING = "utf-8-sig"


def get_corpus(name: str) -> ModuleType:
    """Return the parser module of a corpus.

    Arguments
    ---------
    name : str
        One of :data:`CORPORA`.

    Returns
    -------
    module
        The module with ``NAME``, ``DOWNLOAD_HINT``, ``check`` and
        ``list_utterances``.
    """
    if name not in CORPORA:
        raise ConfigError(f"unknown corpus '{name}' (valid: {', '.join(CORPORA)})")
    return importlib.import_module(f"{__name__}.{name}")


def require_layout(data_folder: str | Path, needed: list[str], corpus: str, hint: str) -> Path:
    """Raise :class:`DataError` unless ``data_folder`` exists and holds every
    path in ``needed``: the shared body of the corpus modules' ``check``.

    Arguments
    ---------
    data_folder : str or Path
        The corpus folder.
    needed : list of str
        Paths relative to ``data_folder`` that must exist.
    corpus : str
        The corpus name, for the message.
    hint : str
        The corpus module's ``DOWNLOAD_HINT``.

    Returns
    -------
    Path
        The folder as an absolute path.

    Example
    -------
    >>> require_layout("/no/such/folder", ["wavs"], "LJSpeech", "see keithito.com")
    Traceback (most recent call last):
    ...
    semtts.errors.DataError: /no/such/folder: LJSpeech folder not found; see keithito.com
    """
    root = Path(data_folder).absolute()
    if not root.is_dir():
        raise DataError(f"{root}: {corpus} folder not found; {hint}")
    missing = [name for name in needed if not (root / name).exists()]
    if missing:
        raise DataError(f"{root}: not a {corpus} folder (missing {', '.join(missing)}); {hint}")
    return root


def read_listing(path: str | Path, log: logging.Logger) -> Iterator[tuple[int, str]]:
    """Yield the lines of a UTF-8 corpus listing, skipping undecodable ones.

    A line that is not valid UTF-8 (e.g. a Latin-1 ``\\xe9``) is skipped
    with a warning on ``log`` naming the file, the line number and the bad
    byte; the rest of the file is still read. A byte-order mark at the start
    of a line (the file's first, or one left by concatenating files) is
    dropped, as are line endings (``\\n`` or ``\\r\\n``). Blank lines are
    yielded too, so line numbers stay those of the file.

    Arguments
    ---------
    path : str or Path
        The listing file.
    log : logging.Logger
        Where skipped lines are reported (the corpus module's logger).

    Yields
    ------
    tuple of (int, str)
        The 1-based line number and the decoded line.

    Raises
    ------
    DataError
        When the file cannot be opened.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "metadata.csv"
    >>> _ = path.write_bytes(b"\\xef\\xbb\\xbfa|one\\r\\nb|caf\\xe9\\nc|three\\n")
    >>> list(read_listing(path, logging.getLogger("doctest")))
    [(1, 'a|one'), (3, 'c|three')]
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise DataError(f"{path}: cannot read the corpus listing ({err.strerror or err})") from None
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                log.warning(
                    "%s:%d: skipped, not valid UTF-8 (byte 0x%02x at offset %d): %r",
                    path, line_no, raw[err.start], err.start,
                    raw[:80],
                )
                continue
            yield line_no, line.lstrip("\ufeff")


def keep_first(seen: dict[str, str], utt_id: str, where: str, log: logging.Logger) -> bool:
    """True the first time ``utt_id`` is listed; later times, warn and return False.

    The warning names both places and carries ``drop_reason`` (
    :data:`DUPLICATE_ID`) and ``utt_id`` as record attributes, so that
    :func:`semtts.data.prepare.prepare_manifests` counts it as a drop.

    Arguments
    ---------
    seen : dict
        ``{utt_id: where}`` of the ids listed so far; updated in place.
    utt_id : str
        The id of the item being listed.
    where : str
        Its place in the corpus: ``"<file>:<line>"`` or a file.
    log : logging.Logger
        The corpus module's logger.

    Returns
    -------
    bool
        Whether to keep the item.

    Example
    -------
    >>> seen = {}
    >>> keep_first(seen, "a", "list.txt:1", logging.getLogger("doctest"))
    True
    >>> keep_first(seen, "a", "list.txt:7", logging.getLogger("doctest"))
    False
    """
    if utt_id not in seen:
        seen[utt_id] = where
        return True
    log.warning(
        "%s: skipped, utterance id '%s' appears twice in the corpus listing (first at %s, which is kept)",
        where, utt_id, seen[utt_id],
        extra={"drop_reason": DUPLICATE_ID, "utt_id": utt_id},
    )
    return False
