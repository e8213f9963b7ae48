"""LibriTTS-R: the restored LibriTTS, 2,456 English speakers, 24 kHz.

Layout: ``<subset>/<spk>/<chapter>/<spk>_<chapter>_<n>_<m>.wav`` with
``<same stem>.normalized.txt`` (and ``.original.txt``) beside each wav;
subsets are ``train-clean-100``, ``train-clean-360``, ``train-other-500``,
``dev-clean``, ``dev-other``, ``test-clean``, ``test-other``. The ``subsets``
option maps splits to subsets (the subsets' speakers are disjoint, so
``dev-*`` and ``test-*`` hold unseen speakers); the split name ``"auto"``
leaves its subsets' items to the seeded train/valid/test assignment.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> chapter = root / "dev-clean" / "84" / "121123"
>>> chapter.mkdir(parents=True)
>>> _ = (chapter / "84_121123_000007_000001.normalized.txt").write_text("Go, do you hear?")
>>> (chapter / "84_121123_000007_000001.wav").touch()
>>> item = list_utterances(root, subsets={"valid": ["dev-clean"]})[0]
>>> item["utt_id"], item["text"], item["spk"], item["split"]
('84_121123_000007_000001', 'Go, do you hear?', '84', 'valid')
"""

import logging
from pathlib import Path

from semtts.data.corpora import TEXT_ENCODING, keep_first, require_layout
from semtts.errors import ConfigError, DataError

__all__ = ["NAME", "DOWNLOAD_HINT", "DEFAULT_SUBSETS", "AUTO_SPLIT", "KNOWN_SUBSETS", "check", "list_utterances"]

logger = logging.getLogger(__name__)

NAME = "libritts_r"
DOWNLOAD_HINT = (
    "get the LibriTTS-R subsets (e.g. train_clean_100.tar.gz, dev_clean.tar.gz, "
    "test_clean.tar.gz) from https://www.openslr.org/141/ and point data_folder at the "
    "extracted LibriTTS_R/ folder holding <subset>/<spk>/<chapter>/"
)
DEFAULT_SUBSETS = {
    "train": ["train-clean-100", "train-clean-360"],
    "valid": ["dev-clean"],
    "test": ["test-clean"],
}
AUTO_SPLIT = "auto"
KNOWN_SUBSETS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
_TRANSCRIPTS = ("normalized", "original")


def check(data_folder: str | Path) -> None:
    """Raise :class:`DataError` unless ``data_folder`` holds at least one
    LibriTTS-R subset folder (:func:`list_utterances` then checks that the
    subsets it is asked for are all there).

    Arguments
    ---------
    data_folder : str or Path
        The LibriTTS_R folder.
    """
    root = require_layout(data_folder, [], "LibriTTS-R", DOWNLOAD_HINT)
    if not any((root / subset).is_dir() for subset in KNOWN_SUBSETS):
        raise DataError(f"{root}: not a LibriTTS-R folder (none of {', '.join(KNOWN_SUBSETS)}); {DOWNLOAD_HINT}")


def list_utterances(
    data_folder: str | Path,
    subsets: dict[str, list[str]] | None = None,
    transcript: str = "normalized",
) -> list[dict]:
    """List every wav of the chosen subsets that has a transcript beside it.

    Arguments
    ---------
    data_folder : str or Path
        The LibriTTS_R folder.
    subsets : dict, optional
        ``{split: [subset, ...]}``; :data:`DEFAULT_SUBSETS` when omitted.
        Items of a split named ``"auto"`` get no ``"split"`` field.
    transcript : str
        ``"normalized"`` or ``"original"``: which ``.txt`` beside the wav.

    Returns
    -------
    list of dict
        ``{"utt_id", "path", "text", "spk", "split"}`` sorted by subset
        order and path; a wav without a readable UTF-8 transcript (a
        byte-order mark is ignored), whose name does not start with its
        speaker folder, or whose id was already listed by another subset
        (the first is kept), is skipped with a warning.
    """
    if transcript not in _TRANSCRIPTS:
        raise ConfigError(f"libritts_r: transcript must be one of {', '.join(_TRANSCRIPTS)} (got '{transcript}')")
    subsets = DEFAULT_SUBSETS if subsets is None else subsets
    names = _subset_names(subsets)
    root = require_layout(data_folder, names, "LibriTTS-R", DOWNLOAD_HINT)

    items = []
    seen: dict[str, str] = {}
    for split, subset_list in subsets.items():
        for subset in subset_list:
            for wav in sorted((root / subset).glob("*/*/*.wav")):
                spk = wav.parent.parent.name
                if not wav.stem.startswith(f"{spk}_{wav.parent.name}_"):
                    logger.warning("%s: skipped, name does not start with '<spk>_<chapter>_'", wav)
                    continue
                txt = wav.with_name(f"{wav.stem}.{transcript}.txt")
                try:
                    text = txt.read_text(encoding=TEXT_ENCODING).strip()
                except (OSError, UnicodeDecodeError) as err:
                    logger.warning("%s: skipped, no readable %s transcript (%s)", wav, transcript, err)
                    continue
                if not keep_first(seen, wav.stem, str(wav), logger):
                    continue
                item = {"utt_id": wav.stem, "path": str(wav), "text": text, "spk": spk}
                if split != AUTO_SPLIT:
                    item["split"] = split
                items.append(item)
    return items


def _subset_names(subsets: dict[str, list[str]] | None) -> list[str]:
    """The subset folders named by a split mapping, each once; a subset
    listed under two splits is a configuration error."""
    subsets = DEFAULT_SUBSETS if subsets is None else subsets
    if not isinstance(subsets, dict) or not all(isinstance(v, (list, tuple)) for v in subsets.values()):
        raise ConfigError(f"libritts_r: subsets must map split names to lists of subsets (got {subsets!r})")
    names: list[str] = []
    for split, subset_list in subsets.items():
        for subset in subset_list:
            if subset in names:
                raise ConfigError(f"libritts_r: subset '{subset}' is listed under two splits")
            names.append(subset)
    if not names:
        raise ConfigError("libritts_r: no subsets selected (the subsets option is empty)")
    return names
