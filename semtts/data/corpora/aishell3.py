"""AISHELL-3: 218 Mandarin speakers, 44.1 kHz, with hanzi and pinyin labels.

Layout: ``train/content.txt`` and ``test/content.txt`` with lines
``SSB00050001.wav<TAB>广 guang3 州 zhou1 ...`` (each character followed by
its tone-numbered pinyin) and audio in ``<part>/wav/<spk>/<file>``, where the
speaker is the first 7 characters of the file name. The ``test`` part's
speakers are disjoint from ``train``'s: its items get ``"split":
"test_unseen"``. Items keep the characters as ``"text"`` and the syllables
as ``"pinyin"``.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> (root / "train" / "wav").mkdir(parents=True)
>>> _ = (root / "train" / "content.txt").write_text("SSB00050001.wav\\t广 guang3 州 zhou1\\n")
>>> check(root)
>>> item = list_utterances(root)[0]
>>> item["utt_id"], item["text"], item["pinyin"], item["spk"]
('SSB00050001', '广州', ['guang3', 'zhou1'], 'SSB0005')
"""

import logging
import re
from pathlib import Path

from semtts.data.corpora import keep_first, read_listing, require_layout
from semtts.errors import ConfigError, DataError

__all__ = ["NAME", "DOWNLOAD_HINT", "PARTS", "check", "list_utterances", "parse_content_line"]

logger = logging.getLogger(__name__)

NAME = "aishell3"
DOWNLOAD_HINT = (
    "get data_aishell3.tgz from https://www.openslr.org/93/ and point data_folder at the "
    "extracted folder holding train/content.txt, train/wav/<spk>/, test/content.txt, test/wav/<spk>/"
)
PARTS = {"train": None, "test": "test_unseen"}

# A tone-numbered pinyin syllable (ü written as v or u:; tone 5 = neutral).
_PINYIN = re.compile(r"^[a-z:]+[1-5]$")
_SPEAKER_CHARS = 7


def check(data_folder: str | Path) -> None:
    """Raise :class:`DataError` unless ``data_folder`` holds at least one
    part (``train`` or ``test``) with its ``content.txt`` and ``wav/``.

    Arguments
    ---------
    data_folder : str or Path
        The AISHELL-3 folder.
    """
    root = require_layout(data_folder, [], "AISHELL-3", DOWNLOAD_HINT)
    if not _present_parts(root):
        raise DataError(
            f"{root}: not an AISHELL-3 folder (no train/ or test/ with content.txt and wav/); {DOWNLOAD_HINT}"
        )


def list_utterances(data_folder: str | Path, parts: list[str] | None = None) -> list[dict]:
    """Parse the parts' ``content.txt`` files into raw items.

    Arguments
    ---------
    data_folder : str or Path
        The AISHELL-3 folder.
    parts : list of str, optional
        Which parts to read (``"train"``, ``"test"``); default: those present.

    Returns
    -------
    list of dict
        ``{"utt_id", "path", "text", "spk", "pinyin"}`` (plus ``"split":
        "test_unseen"`` for the test part) in file order; a line that is
        not ``<file>.wav<TAB>`` followed by character/syllable pairs, is not
        valid UTF-8, or repeats an id already listed in any part (the first
        is kept) is skipped with a warning naming the line.
    """
    root = Path(data_folder).absolute()
    if parts is None:
        parts = _present_parts(root)
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        raise ConfigError(f"aishell3: unknown parts {', '.join(unknown)} (valid: {', '.join(PARTS)})")
    require_layout(root, [f"{part}/content.txt" for part in parts], "AISHELL-3", DOWNLOAD_HINT)

    items = []
    seen: dict[str, str] = {}
    for part in parts:
        content = root / part / "content.txt"
        for line_no, line in read_listing(content, logger):
            if not line.strip():
                continue
            parsed = parse_content_line(line)
            if parsed is None:
                logger.warning("%s:%d: skipped, unparsable line: %r", content, line_no, line.strip()[:80])
                continue
            file_name, hanzi, pinyin = parsed
            utt_id = Path(file_name).stem
            if not keep_first(seen, utt_id, f"{content}:{line_no}", logger):
                continue
            spk = file_name[:_SPEAKER_CHARS]
            item = {
                "utt_id": utt_id,
                "path": str(root / part / "wav" / spk / file_name),
                "text": "".join(hanzi),
                "spk": spk,
                "pinyin": pinyin,
            }
            if PARTS[part] is not None:
                item["split"] = PARTS[part]
            items.append(item)
    return items


def parse_content_line(line: str) -> tuple[str, list[str], list[str]] | None:
    """Split one ``content.txt`` line into file name, characters and syllables.

    Arguments
    ---------
    line : str
        ``"<file>.wav<TAB>char syllable char syllable ..."``.

    Returns
    -------
    tuple or None
        ``(file_name, characters, syllables)``, or None when the line does not
        have that shape (no tab, odd token count, a syllable that is not
        tone-numbered pinyin, a file name shorter than a speaker id).

    Example
    -------
    >>> parse_content_line("SSB00050002.wav\\t你 ni3 好 hao3\\n")
    ('SSB00050002.wav', ['你', '好'], ['ni3', 'hao3'])
    >>> parse_content_line("SSB00050002.wav\\t你 好") is None
    True
    """
    file_name, sep, labels = line.strip().partition("\t")
    file_name = file_name.strip()
    tokens = labels.split()
    if (
        not sep
        or not file_name.endswith(".wav")
        or len(file_name) - len(".wav") < _SPEAKER_CHARS
        or "/" in file_name
        or not tokens
        or len(tokens) % 2
    ):
        return None
    hanzi, pinyin = tokens[0::2], tokens[1::2]
    if not all(_PINYIN.match(syllable) for syllable in pinyin):
        return None
    if any(_PINYIN.match(char) for char in hanzi):
        return None
    return file_name, hanzi, pinyin


def _present_parts(root: Path) -> list[str]:
    """The parts (in :data:`PARTS` order) that have content.txt and wav/."""
    return [part for part in PARTS if (root / part / "content.txt").is_file() and (root / part / "wav").is_dir()]
