"""The digest of the stage-2 manifests that stage 4 records and training checks.

Stage 4 (:mod:`semtts.stages.teacher_features`) records it as
``manifests_sha256`` in ``teacher/settings.json`` and its ``done`` marker;
training (:meth:`semtts.data.teacher_features.TeacherFeatures.load`)
compares it with the manifests it trains on. It lives here, beside the
manifests, so that the stage and training share it without either
importing the other.

Example
-------
>>> import tempfile
>>> tokens = Path(tempfile.mkdtemp())
>>> _ = (tokens / "train.json").write_text("{}")
>>> before = manifests_sha256(tokens)
>>> _ = (tokens / "report.json").write_text("{}")  # not a manifest
>>> manifests_sha256(tokens) == before
True
>>> _ = (tokens / "valid.json").write_text("{}")
>>> manifests_sha256(tokens) == before
False
"""

import hashlib
from pathlib import Path

__all__ = ["manifests_sha256"]


def manifests_sha256(tokens_dir: str | Path) -> str:
    """The sha256 over the names and bytes of the manifests in ``tokens_dir``
    (every ``*.json`` but ``report.json``, sorted by name).

    Arguments
    ---------
    tokens_dir : str or Path
        ``<output_folder>/tokens``.

    Returns
    -------
    str
        The hex digest.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(tokens_dir).glob("*.json")):
        if path.stem != "report":
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()
