"""House rule: every public function and method of ``semtts`` has a docstring
and type hints (every named parameter and the return; ``__init__`` may leave
its ``-> None`` out and documents itself in its class)."""

import importlib
import inspect
import pkgutil

import pytest

import semtts

MODULES = sorted(info.name for info in pkgutil.walk_packages(semtts.__path__, "semtts."))


def public_callables(module):
    """``(qualified name, function)`` of what ``module`` defines publicly."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            yield name, obj
            for attr, member in vars(obj).items():
                member = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                member = member.fget if isinstance(member, property) else member
                if inspect.isfunction(member) and (not attr.startswith("_") or attr == "__init__"):
                    yield f"{name}.{attr}", member


def problems(qualname, obj):
    """What ``obj`` lacks: a docstring, parameter hints, a return hint."""
    if inspect.isclass(obj):
        return [] if obj.__doc__ else ["docstring"]
    found = []
    if not obj.__doc__ and not qualname.endswith("__init__"):
        found.append("docstring")
    signature = inspect.signature(obj)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    found += [f"hint for {name}" for name, p in signature.parameters.items()
              if name not in ("self", "cls") and p.kind not in variadic and p.annotation is inspect.Parameter.empty]
    if signature.return_annotation is inspect.Signature.empty and not qualname.endswith("__init__"):
        found.append("return hint")
    return found


def test_the_package_has_modules():
    assert len(MODULES) > 50


@pytest.mark.parametrize("name", MODULES)
def test_public_functions_have_docstrings_and_type_hints(name):
    module = importlib.import_module(name)
    missing = {qualname: lacks for qualname, obj in public_callables(module) if (lacks := problems(qualname, obj))}
    assert not missing, f"{name}: {missing}"


def test_the_check_finds_what_is_missing():
    def bare(x, y: int = 0):
        return x

    def complete(x: int) -> int:
        """Doubles."""
        return 2 * x

    assert problems("bare", bare) == ["docstring", "hint for x", "return hint"]
    assert problems("complete", complete) == []
