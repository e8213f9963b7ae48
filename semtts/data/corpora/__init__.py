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
  A line or file that cannot be parsed is skipped with a warning on the
  module's logger (a child of ``semtts.data.corpora``, which
  :func:`semtts.data.prepare.prepare_manifests` records in its report).

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
from pathlib import Path
from types import ModuleType

from semtts.errors import ConfigError, DataError

__all__ = ["CORPORA", "get_corpus", "require_layout"]

CORPORA = ("mini", "ljspeech", "vctk", "libritts_r", "aishell3")


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
