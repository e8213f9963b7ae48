"""Whisper teacher features for training stages B and C, from stage 4
(``<output_folder>/teacher/``).

:meth:`TeacherFeatures.load` runs before anything is built: stage 4 must have
finished (``teacher/done``) and ``teacher/meta.json`` must match what the
hparams imply (:func:`semtts.extract.teacher.expected_metadata`: model,
checkpoint, layer, dimension; a mismatch is a one-line error naming both
sides), and the stage-2 manifests must be those stage 4 read (the
``manifests_sha256`` it recorded in ``teacher/settings.json`` and ``done``,
:func:`semtts.data.manifest_digest.manifests_sha256`; a mismatch is a
one-line error saying to rerun stage 4; a folder of older semtts that
recorded none is logged as unchecked). Utterances stage 4 skipped are left out of training (the caller logs
the count); the features of the others are read lazily, one item at a time,
by the data pipeline (:func:`semtts.data.dataset.dataio_prepare`), as float32
``[T_sem, D]`` tensors.

This module imports the Whisper stage module (and so ``whisper``): training
imports it, synthesis never does.

Example
-------
>>> import tempfile, numpy as np
>>> from semtts.extract.common import feature_path, save_array_atomic
>>> folder = Path(tempfile.mkdtemp())
>>> save_array_atomic(feature_path(folder, "u1"), np.ones((5, 4), np.float16))
>>> teacher = TeacherFeatures(folder, meta={"dim": 4}, skipped={"u2": "too short"})
>>> kept, dropped = teacher.available({"u1": {}, "u2": {}})
>>> sorted(kept), dropped, teacher.dim
(['u1'], {'u2': 'too short'}, 4)
>>> teacher.features("u1").shape, teacher.features("u1").dtype     # [T_sem, D]
(torch.Size([5, 4]), torch.float32)
"""

import json
import logging
from pathlib import Path
from typing import Any

import torch

from semtts.data.manifest_digest import manifests_sha256
from semtts.errors import DataError
from semtts.extract.common import feature_path, open_extracted
from semtts.extract.teacher import expected_metadata, load_teacher

__all__ = ["TeacherFeatures", "check_manifests"]

_WHISPER_KEYS = ("whisper_model", "whisper_layer", "whisper_cache_dir", "allow_random_init", "whisper_random_dims",
                 "seed")
_RECORDS = ("settings.json", "done")  # where stage 4 records the manifests' digest
logger = logging.getLogger(__name__)


def _recorded_digest(path: Path) -> str | None:
    """The ``manifests_sha256`` that stage 4 recorded in ``settings.json``
    (top level) or ``done`` (under ``settings``); None where there is none."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(record, dict) and isinstance(record.get("settings"), dict):
        record = record["settings"]
    return record.get("manifests_sha256") if isinstance(record, dict) else None


def check_manifests(folder: str | Path, tokens_dir: str | Path) -> bool:
    """Check that stage 4 extracted ``folder`` from the manifests now in
    ``tokens_dir``, by every ``manifests_sha256`` it recorded
    (``settings.json``, ``done``).

    Arguments
    ---------
    folder : str or Path
        ``<output_folder>/teacher``.
    tokens_dir : str or Path
        ``<output_folder>/tokens``.

    Returns
    -------
    bool
        True if checked; False (and logged) when stage 4 recorded no digest
        (a folder of older semtts).

    Raises
    ------
    DataError
        A recorded digest differs from the manifests' (one line).

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "teacher").mkdir(); (root / "tokens").mkdir()
    >>> _ = (root / "tokens" / "train.json").write_text("{}")
    >>> _ = (root / "teacher" / "settings.json").write_text('{"manifests_sha256": "0"}')
    >>> check_manifests(root / "teacher", root / "tokens")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    semtts.errors.DataError: .../settings.json: the teacher features were extracted from other stage-2 manifests ...
    """
    folder = Path(folder)
    current, checked = manifests_sha256(tokens_dir), False
    for name in _RECORDS:
        recorded = _recorded_digest(folder / name)
        if recorded is None:
            continue
        if recorded != current:
            raise DataError(f"{folder / name}: the teacher features were extracted from other stage-2 manifests "
                            f"than those now in {tokens_dir} (manifests_sha256 differs); rerun stage 4 with --force")
        checked = True
    if not checked:
        logger.warning("%s: stage 4 (older semtts) recorded no manifests_sha256, so whether the teacher features "
                       "belong to the manifests in %s could not be checked", folder, tokens_dir)
    return checked


class TeacherFeatures:
    """What stage 4 wrote, as training reads it.

    Arguments
    ---------
    folder : str or Path
        ``<output_folder>/teacher``.
    meta : dict
        ``teacher/meta.json`` (``dim``, ``model``, ``sha256``, ...).
    skipped : dict
        ``{utt_id: reason}`` of the utterances stage 4 could not process.

    Example
    -------
    >>> TeacherFeatures("teacher", {"dim": 384}).dim
    384
    """

    def __init__(self, folder: str | Path, meta: dict[str, Any], skipped: dict[str, str] | None = None) -> None:
        self.folder = Path(folder)
        self.meta = dict(meta)
        self.skipped = dict(skipped or {})

    @classmethod
    def load(cls, hp: dict) -> "TeacherFeatures":
        """Open ``<output_folder>/teacher/`` after checking that stage 4 has
        finished and that its metadata matches the hparams.

        Arguments
        ---------
        hp : dict
            Hparams with ``output_folder`` and stage 4's Whisper keys
            (``whisper_model``, ``whisper_layer``, ``whisper_cache_dir``,
            ``allow_random_init``, ``whisper_random_dims``, ``seed``).

        Returns
        -------
        TeacherFeatures

        Raises
        ------
        DataError
            Stage 4 has not finished, or ran on other stage-2 manifests
            (:func:`check_manifests`).
        ConfigError
            A Whisper key is missing, or the metadata disagrees with the
            hparams (the message names both values).
        """
        folder = Path(hp["output_folder"]) / "teacher"
        meta, skipped = open_extracted(
            folder, hp, _WHISPER_KEYS, expected_metadata, "teacher features",
            "stage 4 (Whisper teacher features) has not finished; stages B and C need it "
            "(run the recipe with --stage 4)",
        )
        check_manifests(folder, Path(hp["output_folder"]) / "tokens")
        return cls(folder, meta, skipped)

    @property
    def dim(self) -> int:
        """The feature width ``D``."""
        return int(self.meta["dim"])

    def available(self, items: dict[str, dict]) -> tuple[set[str], dict[str, str]]:
        """Which items have a feature file.

        Arguments
        ---------
        items : dict
            ``{utt_id: item}`` of one split.

        Returns
        -------
        kept : set
            The ids with features.
        dropped : dict
            ``{utt_id: reason}`` of the others (stage 4's reason when it gave one).
        """
        kept, dropped = set(), {}
        for utt_id in items:
            if feature_path(self.folder, utt_id).is_file():
                kept.add(utt_id)
            else:
                dropped[utt_id] = self.skipped.get(utt_id, "no teacher feature file (stage 4 ran on other "
                                                           "manifests? rerun it with --force)")
        return kept, dropped

    def features(self, utt_id: str) -> torch.Tensor:
        """``[T_sem, D]`` float32 features of one utterance; a missing,
        corrupt or wrongly sized file is a :class:`DataError` naming it."""
        feats = load_teacher(self.folder, utt_id)
        if feats.shape[1] != self.dim:
            raise DataError(f"{feature_path(self.folder, utt_id)}: teacher features have D = {feats.shape[1]}, "
                            f"meta.json says {self.dim}; re-extract them (stage 4 with --force)")
        return torch.from_numpy(feats.astype("float32"))
