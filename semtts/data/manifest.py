"""JSON manifests: the one format every stage reads and writes.

A manifest maps utterance ids to items::

    {"utt_id": {"wav": "{data_root}/wavs/a.wav", "text": "Hello.",
                "spk": "p225", "duration": 1.93, "sr": 22050}}

``{data_root}`` (the corpus folder) and ``{cache_root}`` (audio that data
preparation resampled or downmixed) are kept literally in the file and
replaced at load time by :func:`resolve_audio_path`, so an experiment folder
survives moving the corpus (SpeechBrain convention).
Stage 2 adds ``"tokens": [int]``.

Example
-------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "train.json")
>>> items = {"u1": {"wav": "{data_root}/a.wav", "text": "Hi.", "spk": "s1",
...                 "duration": 1.0, "sr": 22050}}
>>> write_manifest(path, items)
>>> read_manifest(path)["u1"]["spk"]
's1'
"""

import json
from pathlib import Path
from typing import Any

from semtts.durable import write_atomically
from semtts.errors import ConfigError, DataError

__all__ = [
    "REQUIRED_FIELDS",
    "DATA_ROOT",
    "CACHE_ROOT",
    "read_manifest",
    "write_manifest",
    "resolve_audio_path",
    "write_json_atomic",
    "read_record",
]

DATA_ROOT = "{data_root}"
CACHE_ROOT = "{cache_root}"

REQUIRED_FIELDS = {"wav": str, "text": str, "spk": str, "duration": (int, float), "sr": int}


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename, so a
    killed job never leaves a half-written file behind.

    Arguments
    ---------
    path : str or Path
        The destination; parent folders are created.
    obj : Any
        A JSON-serialisable object.
    """
    text = json.dumps(obj, ensure_ascii=False, indent=1)  # a value JSON cannot hold fails before any file
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_record(path: str | Path, remedy: str | None = None) -> dict | None:
    """A JSON object a stage recorded (a ``done`` marker, ``settings.json``,
    ``started_from.json``); None when it is empty, not JSON or not an object.

    Arguments
    ---------
    path : str or Path
        The record (it must exist).
    remedy : str, optional
        If given, an unreadable record is a one-line :class:`ConfigError`
        naming it and ending with this advice, instead of None.

    Returns
    -------
    dict or None

    Example
    -------
    >>> import tempfile
    >>> record = Path(tempfile.mkdtemp()) / "settings.json"
    >>> _ = record.write_text("[1]")
    >>> read_record(record) is None
    True
    """
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict) and remedy is not None:
        raise ConfigError(f"{path}: unreadable, so what it records is unknown; {remedy}")
    return value if isinstance(value, dict) else None


def write_manifest(path: str | Path, items: dict[str, dict]) -> None:
    """Check every item against :data:`REQUIRED_FIELDS` and write the manifest.

    Arguments
    ---------
    path : str or Path
        The JSON file to write (atomically).
    items : dict
        ``{utt_id: item}``.
    """
    for utt_id, item in items.items():
        _check_item(path, utt_id, item)
    write_json_atomic(path, items)


def read_manifest(path: str | Path, check: bool = True) -> dict[str, dict]:
    """Read a manifest, checking its schema.

    Arguments
    ---------
    path : str or Path
        The JSON file.
    check : bool
        Verify that every item has the required fields.

    Returns
    -------
    dict
        ``{utt_id: item}`` in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (run the stage that writes it first)")
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a valid JSON manifest ({err})") from None
    if not isinstance(items, dict):
        raise DataError(f"{path}: a manifest must map utterance ids to items")
    if check:
        for utt_id, item in items.items():
            _check_item(path, utt_id, item)
    return items


def resolve_audio_path(wav: str, data_root: str | Path, cache_root: str | Path) -> str:
    """Replace the ``{data_root}`` and ``{cache_root}`` placeholders of a
    manifest ``wav`` field with the real folders.

    Arguments
    ---------
    wav : str
        The manifest path, e.g. ``"{cache_root}/wav48/p225/p225_001.wav"``.
    data_root : str or Path
        The corpus folder.
    cache_root : str or Path
        The folder of resampled/downmixed audio written by validation.

    Returns
    -------
    str
        The path with both placeholders replaced (other paths unchanged).

    Example
    -------
    >>> resolve_audio_path("{cache_root}/a/b.wav", "/corpus", "/exp/data/audio_cache")
    '/exp/data/audio_cache/a/b.wav'
    >>> resolve_audio_path("{data_root}/wavs/c.wav", "/corpus", "/cache")
    '/corpus/wavs/c.wav'
    """
    return wav.replace(DATA_ROOT, str(data_root)).replace(CACHE_ROOT, str(cache_root))


def _check_item(path, utt_id, item) -> None:
    if not isinstance(item, dict):
        raise DataError(f"{path}: item '{utt_id}' is not an object")
    for field, types in REQUIRED_FIELDS.items():
        if field not in item:
            raise DataError(f"{path}: item '{utt_id}' has no '{field}' field")
        if not isinstance(item[field], types):
            raise DataError(f"{path}: item '{utt_id}' field '{field}' has type {type(item[field]).__name__}")
