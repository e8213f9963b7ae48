"""VCTK-Corpus-0.92: 110 English speakers, 48 kHz FLAC, two microphones.

Layout: ``txt/<spk>/<spk>_<nnn>.txt`` (one transcript per file) and
``wav48_silence_trimmed/<spk>/<spk>_<nnn>_<mic>.flac`` with ``mic`` in
``mic1`` / ``mic2``. Speakers without transcripts (p315) are skipped. The
corpus fixes no split; ``heldout_speakers`` marks whole speakers as
``test_unseen`` for a speaker-disjoint test set.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> (root / "wav48_silence_trimmed" / "p225").mkdir(parents=True)
>>> (root / "txt" / "p225").mkdir(parents=True)
>>> _ = (root / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.\\n")
>>> check(root)
>>> item = list_utterances(root, mic="mic2")[0]
>>> item["utt_id"], item["text"], item["spk"], Path(item["path"]).name
('p225_001', 'Please call Stella.', 'p225', 'p225_001_mic2.flac')
"""

import logging
from pathlib import Path

from semtts.data.corpora import TEXT_ENCODING, require_layout
from semtts.errors import ConfigError

__all__ = ["NAME", "DOWNLOAD_HINT", "AUDIO_DIR", "MICS", "check", "list_utterances"]

logger = logging.getLogger(__name__)

NAME = "vctk"
DOWNLOAD_HINT = (
    "get VCTK-Corpus-0.92.zip from https://datashare.ed.ac.uk/handle/10283/3443 and point "
    "data_folder at the extracted folder holding txt/<spk>/ and wav48_silence_trimmed/<spk>/"
)
AUDIO_DIR = "wav48_silence_trimmed"
MICS = ("mic1", "mic2")


def check(data_folder: str | Path) -> None:
    """Raise :class:`DataError` unless ``data_folder`` holds ``txt/`` and
    ``wav48_silence_trimmed/``.

    Arguments
    ---------
    data_folder : str or Path
        The VCTK-Corpus-0.92 folder.
    """
    require_layout(data_folder, ["txt", AUDIO_DIR], "VCTK-Corpus-0.92", DOWNLOAD_HINT)


def list_utterances(
    data_folder: str | Path,
    mic: str = "mic1",
    heldout_speakers: list[str] | None = None,
) -> list[dict]:
    """List every transcribed utterance with the chosen microphone's audio.

    Arguments
    ---------
    data_folder : str or Path
        The VCTK-Corpus-0.92 folder.
    mic : str
        ``"mic1"`` or ``"mic2"``.
    heldout_speakers : list of str, optional
        Speakers whose items get ``"split": "test_unseen"``.

    Returns
    -------
    list of dict
        ``{"utt_id", "path", "text", "spk"}`` (plus ``"split"`` for held-out
        speakers), sorted by speaker and id. Transcripts that cannot be read
        as UTF-8 (a byte-order mark is ignored) or are not named
        ``<spk>_*.txt`` are skipped with a warning; an audio file that does
        not exist is left for validation to report.
    """
    if mic not in MICS:
        raise ConfigError(f"vctk: mic must be one of {', '.join(MICS)} (got '{mic}')")
    root = Path(data_folder).absolute()
    heldout = set(heldout_speakers or [])
    text_speakers = {p.name for p in (root / "txt").iterdir() if p.is_dir()}
    audio_speakers = {p.name for p in (root / AUDIO_DIR).iterdir() if p.is_dir()}
    untranscribed = sorted(audio_speakers - text_speakers)
    if untranscribed:
        logger.info("vctk: speakers without transcripts skipped: %s", ", ".join(untranscribed))
    unknown = sorted(heldout - text_speakers)
    if unknown:
        raise ConfigError(f"vctk: held-out speakers not in {root / 'txt'}: {', '.join(unknown)}")

    items = []
    for spk in sorted(text_speakers):
        for txt in sorted((root / "txt" / spk).glob("*.txt")):
            if not txt.stem.startswith(f"{spk}_"):
                logger.warning("%s: skipped, file name does not start with '%s_'", txt, spk)
                continue
            try:
                text = txt.read_text(encoding=TEXT_ENCODING).strip()
            except (UnicodeDecodeError, OSError) as err:
                logger.warning("%s: skipped, unreadable transcript (%s)", txt, err)
                continue
            item = {
                "utt_id": txt.stem,
                "path": str(root / AUDIO_DIR / spk / f"{txt.stem}_{mic}.flac"),
                "text": text,
                "spk": spk,
            }
            if spk in heldout:
                item["split"] = "test_unseen"
            items.append(item)
    return items
