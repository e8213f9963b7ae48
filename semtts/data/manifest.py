"""JSON manifests: the one format every stage reads and writes.

A manifest maps utterance ids to items::

    {"utt_id": {"wav": "{data_root}/wavs/a.wav", "text": "Hello.",
                "spk": "p225", "duration": 1.93, "sr": 22050}}

``{data_root}`` is kept literally in the file and replaced at load time, so
an experiment folder survives moving the corpus (SpeechBrain convention).
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
import os
from pathlib import Path
from typing import Any

from semtts.errors import DataError

__all__ = ["REQUIRED_FIELDS", "read_manifest", "write_manifest", "resolve_wav", "write_json_atomic"]

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def resolve_wav(item: dict, data_root: str | Path) -> str:
    """Return the item's audio path with ``{data_root}`` replaced.

    Arguments
    ---------
    item : dict
        A manifest item.
    data_root : str or Path
        The corpus root folder.

    Returns
    -------
    str
        The absolute (or as-given) audio path.
    """
    return item["wav"].replace("{data_root}", str(data_root))


def _check_item(path, utt_id, item) -> None:
    if not isinstance(item, dict):
        raise DataError(f"{path}: item '{utt_id}' is not an object")
    for field, types in REQUIRED_FIELDS.items():
        if field not in item:
            raise DataError(f"{path}: item '{utt_id}' has no '{field}' field")
        if not isinstance(item[field], types):
            raise DataError(f"{path}: item '{utt_id}' field '{field}' has type {type(item[field]).__name__}")
