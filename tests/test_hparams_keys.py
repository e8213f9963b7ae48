"""Every key of every hparams file is used: referenced by a key of any
hparams file (``<key>``: a recipe's files are merged, so a corpus file may set
a key its training file refers to) or read by the code (``hp["key"]``, a
settings tuple, ...)."""

import re
from pathlib import Path

import pytest

from semtts.stages.flags import hparams_keys

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted(ROOT.glob("hparams/**/*.yaml")) + sorted(ROOT.glob("recipes/*/hparams/*.yaml"))
CODE = "\n".join(p.read_text(encoding="utf-8") for p in sorted(ROOT.glob("semtts/**/*.py")))
REFS = "\n".join(p.read_text(encoding="utf-8") for p in YAMLS)


def test_there_are_hparams_files():
    assert len(YAMLS) >= 5


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_key_is_used(path):
    unused = [
        key
        for key in hparams_keys(path)
        if f"<{key}>" not in REFS and not re.search(rf"[\"']{re.escape(key)}[\"']", CODE)
    ]
    assert not unused, f"{path.relative_to(ROOT)}: keys nobody uses: {unused}"
