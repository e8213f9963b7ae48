"""LJSpeech-1.1: 13,100 utterances of one female English speaker, 22.05 kHz.

Layout: ``metadata.csv`` with ``id|raw transcript|normalized transcript``
lines (pipes, no quoting) and ``wavs/<id>.wav``. The speaker is ``"LJ"``.
The corpus fixes no split.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> (root / "wavs").mkdir()
>>> _ = (root / "metadata.csv").write_text("LJ001-0001|Dr. Smith|Doctor Smith\\n")
>>> check(root)
>>> item = list_utterances(root)[0]
>>> item["utt_id"], item["text"], item["spk"], Path(item["path"]).name
('LJ001-0001', 'Doctor Smith', 'LJ', 'LJ001-0001.wav')
"""

import logging
from pathlib import Path

from semtts.data.corpora import keep_first, read_listing, require_layout
from semtts.errors import ConfigError

__all__ = ["NAME", "DOWNLOAD_HINT", "SPEAKER", "check", "list_utterances"]

logger = logging.getLogger(__name__)

NAME = "ljspeech"
DOWNLOAD_HINT = (
    "get LJSpeech-1.1 from https://keithito.com/LJ-Speech-Dataset/ (LJSpeech-1.1.tar.bz2) "
    "and point data_folder at the extracted folder holding metadata.csv and wavs/"
)
SPEAKER = "LJ"

_COLUMNS = {"raw": 1, "normalized": 2}


def check(data_folder: str | Path) -> None:
    """Raise :class:`DataError` unless ``data_folder`` holds ``metadata.csv``
    and ``wavs/``.

    Arguments
    ---------
    data_folder : str or Path
        The LJSpeech-1.1 folder.
    """
    require_layout(data_folder, ["metadata.csv", "wavs"], "LJSpeech-1.1", DOWNLOAD_HINT)


def list_utterances(data_folder: str | Path, transcript: str = "normalized") -> list[dict]:
    """Parse ``metadata.csv`` into raw items.

    Arguments
    ---------
    data_folder : str or Path
        The LJSpeech-1.1 folder.
    transcript : str
        ``"normalized"`` (numbers and abbreviations spelled out; the raw
        column is used where a line's normalized one is absent or empty) or
        ``"raw"``.

    Returns
    -------
    list of dict
        ``{"utt_id", "path", "text", "spk"}`` in file order; lines without an
        id or transcript column, lines that are not valid UTF-8, and repeats
        of an id already listed (the first is kept) are skipped with a
        warning naming the line.
    """
    if transcript not in _COLUMNS:
        raise ConfigError(f"ljspeech: transcript must be one of {sorted(_COLUMNS)} (got '{transcript}')")
    root = Path(data_folder).absolute()
    metadata = root / "metadata.csv"
    items = []
    seen: dict[str, str] = {}
    for line_no, line in read_listing(metadata, logger):
        if not line.strip():
            continue
        fields = line.split("|")
        utt_id = fields[0].strip()
        if len(fields) < 2 or not utt_id or "/" in utt_id:
            logger.warning("%s:%d: skipped, expected 'id|raw|normalized': %r", metadata, line_no, line[:80])
            continue
        if not keep_first(seen, utt_id, f"{metadata}:{line_no}", logger):
            continue
        column = _COLUMNS[transcript]
        if column >= len(fields) or not fields[column].strip():
            column = _COLUMNS["raw"]
        items.append(
            {
                "utt_id": utt_id,
                "path": str(root / "wavs" / f"{utt_id}.wav"),
                "text": fields[column],
                "spk": SPEAKER,
            }
        )
    return items
