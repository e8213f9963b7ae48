"""Every key of every hparams file is used: referenced by a key of any
hparams file (``<key>``: a recipe's files are merged, so a corpus file may set
a key its training file refers to), read by the code (a string in the code,
``hp["key"]``, a settings tuple, ...; docstrings and comments do not count, so
a doctest that mentions a key does not keep it alive), or a SpeechBrain run
option, which SpeechBrain itself reads from the hparams."""

import ast
from pathlib import Path

import pytest

from semtts.stages.flags import hparams_keys, run_option_flags

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted(ROOT.glob("hparams/**/*.yaml")) + sorted(ROOT.glob("recipes/*/hparams/*.yaml"))
REFS = "\n".join(p.read_text(encoding="utf-8") for p in YAMLS)


def code_strings(source: str) -> set[str]:
    """The string constants of Python ``source``, docstrings (of modules, classes,
    functions and attributes) left out; comments are not constants."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        for statement in getattr(node, "body", []) if isinstance(getattr(node, "body", None), list) else []:
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) \
                    and isinstance(statement.value.value, str):
                docstrings.add(id(statement.value))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


CODE_STRINGS = set().union(*(code_strings(p.read_text(encoding="utf-8")) for p in sorted(ROOT.glob("semtts/**/*.py"))))
RUN_OPTIONS = {flag[2:] for flag in run_option_flags()}


def test_there_are_hparams_files():
    assert len(YAMLS) >= 5


def test_docstrings_and_comments_do_not_count_as_reads():
    source = '''"""Module: hp["in_module_doc"]."""
KEYS = ("in_tuple",)  # "in_comment"
"""An attribute docstring: "in_attribute_doc"."""


def f(hp):
    """>>> f({"in_doctest": 1})"""
    return hp["in_subscript"], hp.get("in_get"), f"{hp['in_fstring']}"
'''
    assert code_strings(source) == {"in_tuple", "in_subscript", "in_get", "in_fstring"}


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_key_is_used(path):
    unused = [key for key in hparams_keys(path)
              if f"<{key}>" not in REFS and key not in CODE_STRINGS and key not in RUN_OPTIONS]
    assert not unused, f"{path.relative_to(ROOT)}: keys nobody uses: {unused}"
