"""The command-line flags a recipe accepts: its hparams keys plus
SpeechBrain's run options. ``run.sh`` asks this module before running any
stage, and every stage asks it again when it parses its own command line
(:func:`semtts.stages.common.parse_stage_args`), so a misspelt flag or a value
of the wrong type fails at once, in one line naming the flag.

    python -m semtts.stages.flags HPARAMS.yaml                   # list them
    python -m semtts.stages.flags HPARAMS.yaml --check [--key value ...]
    python -m semtts.stages.flags HPARAMS.yaml --output-folder [--key value ...]

A value is read as YAML and must have the type of the key's value in the
recipe's files (``corpus.yaml`` first, then the files it includes): an
integer, a number (an integer is accepted), ``True``/``False``, a string (a
number is accepted: ``--tag 2``), a list written ``[a, b]``, or a mapping
written ``{key: value}`` (or ``null``: no options). A bare word for a list
key is an error, not a one-item list: ``--heldout_speakers spk4`` fails,
``--heldout_speakers [spk4]`` works. A key whose value is ``null`` accepts
anything, and a key built by HyperPyYAML (``!ref``, ``!new:``, ``!name:``,
...) is not checked.

Example
-------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "h.yaml"
>>> _ = path.write_text("seed: 1\\nmodel: !new:torch.nn.Linear {in_features: 2, out_features: 2}\\n")
>>> hparams_keys(path)
['seed', 'model']
>>> unknown_flags(path, ["--seed", "--device", "--sede"])
['--sede']
>>> check_overrides(path, "seed: 7\\nmodel: 3")
{'seed': 7, 'model': 3}
>>> check_overrides(path, "seed: abc")
Traceback (most recent call last):
    ...
semtts.errors.ConfigError: --seed: expected an integer, got 'abc'
>>> check_overrides(path, "sede: 7")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
semtts.errors.ConfigError: unknown flag(s) --sede (did you mean --seed?); valid: --force, the hparams of ...
"""

import difflib
import re
import sys
from pathlib import Path
from typing import Any

import speechbrain as sb
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError

from semtts.errors import ConfigError, entry_point

__all__ = ["hparams_keys", "recipe_keys", "recipe_defaults", "run_option_flags", "unknown_flags",
           "split_overrides", "check_value", "check_overrides", "main"]

# HyperPyYAML files keep their top-level keys at column 0.
_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


class _Built:
    """A value HyperPyYAML builds (``!ref``, ``!new:``, ...): not type-checked."""

    def __repr__(self) -> str:
        return "<built>"


_BUILT = _Built()


class _PlainConstructor(SafeConstructor):
    """YAML's safe constructor, reading every ``!tag`` as :data:`_BUILT`."""


_PlainConstructor.add_multi_constructor("!", lambda constructor, suffix, node: _BUILT)


def _load_yaml(text: str) -> Any:
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _PlainConstructor
    return yaml.load(text)


def hparams_keys(hparams_file: str | Path) -> list[str]:
    """Top-level keys of a HyperPyYAML file, read as text (no objects built).

    Arguments
    ---------
    hparams_file : str or Path
        The YAML file.

    Returns
    -------
    list of str
        The keys in file order.
    """
    path = Path(hparams_file)
    if not path.is_file():
        raise ConfigError(f"{path}: hparams file not found")
    keys = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _TOP_LEVEL_KEY.match(line)
        if match and match.group(1) not in keys:
            keys.append(match.group(1))
    return keys


def recipe_keys(hparams_file: str | Path) -> list[str]:
    """The keys of a recipe: its ``corpus.yaml`` and every file it includes
    (keys ending in ``_hparams``), in order, without repeats.

    Arguments
    ---------
    hparams_file : str or Path
        The recipe's ``corpus.yaml``.

    Returns
    -------
    list of str
        Every key a ``--key value`` flag may set.
    """
    from semtts.stages.common import included_files

    keys = hparams_keys(hparams_file)
    for path in included_files(hparams_file).values():
        keys += [key for key in hparams_keys(path) if key not in keys]
    return keys


def recipe_defaults(hparams_file: str | Path) -> dict[str, Any]:
    """The value of every key of a recipe as written in its files (no object
    built, no reference resolved): ``corpus.yaml`` first, then the files it
    includes, where a key already set keeps its first value.

    Arguments
    ---------
    hparams_file : str or Path
        The recipe's ``corpus.yaml``.

    Returns
    -------
    dict
        ``{key: value}``; a tagged value (``!ref``, ``!new:``, ...) is a placeholder
        that :func:`check_value` does not check.
    """
    from semtts.stages.common import included_files

    defaults: dict[str, Any] = {}
    for path in [Path(hparams_file), *map(Path, included_files(hparams_file).values())]:
        if not path.is_file():
            raise ConfigError(f"{path}: hparams file not found")
        try:
            loaded = _load_yaml(path.read_text(encoding="utf-8"))
        except YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({_problem(err)})") from None
        for key, value in (loaded if isinstance(loaded, dict) else {}).items():
            defaults.setdefault(key, value)
    return defaults


def run_option_flags() -> list[str]:
    """SpeechBrain's run options (``--device``, ``--precision``, ...)."""
    _, run_opts, _ = sb.parse_arguments(["x.yaml"])
    return sorted(f"--{name}" for name in vars(run_opts) if name not in ("param_file", "overridden_args"))


def unknown_flags(hparams_file: str | Path, flags: list[str]) -> list[str]:
    """The flags that are neither hparams keys nor run options.

    Arguments
    ---------
    hparams_file : str or Path
        The recipe's hparams file.
    flags : list of str
        ``--name`` strings from the command line.

    Returns
    -------
    list of str
        The unknown ones, in the order given.
    """
    valid = {f"--{key}" for key in recipe_keys(hparams_file)} | set(run_option_flags())
    return [flag for flag in flags if flag.split("=", 1)[0] not in valid]


def split_overrides(overrides: str) -> list[tuple[str, str]]:
    """Split the overrides SpeechBrain makes of the command line (one
    ``key: value`` line per flag) into keys and the values as written.

    Arguments
    ---------
    overrides : str
        The YAML text of :func:`speechbrain.parse_arguments`.

    Returns
    -------
    list of (str, str)
        ``(key, value text)`` in command-line order (repeats kept).

    Example
    -------
    >>> split_overrides("n_valid: 3\\nheldout_speakers: [spk4, spk5]\\ntag:")
    [('n_valid', '3'), ('heldout_speakers', '[spk4, spk5]'), ('tag', '')]
    """
    pairs: list[tuple[str, str]] = []
    for line in (overrides or "").splitlines():
        key, colon, raw = line.partition(":")
        if colon and key and not key[0].isspace():
            pairs.append((key, raw.strip()))
        elif pairs:  # a value spanning lines
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]}\n{line}")
        elif line.strip():
            raise ConfigError(f"unexpected argument {line.strip()!r} (flags are --key value)")
    return pairs


def _problem(err: YAMLError) -> str:
    return str(getattr(err, "problem", None) or str(err).splitlines()[0])


def _spaced(raw: str) -> str:
    """``raw`` with a space after every ``:`` and ``,`` that lacks one."""
    return re.sub(r"([:,])(?=\S)", r"\1 ", raw)


def _kind(value: Any) -> str | None:
    for kind, types in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list),
                        ("dict", dict)):
        if isinstance(value, types):
            return kind
    return None


def _fits(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, (int, float))
    if kind == "str":
        return value is not None and not isinstance(value, (list, dict))
    if kind == "list":
        return isinstance(value, list)
    return value is None or isinstance(value, dict)  # a mapping of options: null is none


def check_value(flag: str, raw: str, default: Any) -> Any:
    """Read one override value as YAML and check it against the type of the
    key's value in the hparams files.

    Arguments
    ---------
    flag : str
        The flag, e.g. ``"--n_valid"`` (named in the error).
    raw : str
        The value as written on the command line.
    default : Any
        The key's value in the hparams files (see :func:`recipe_defaults`).

    Returns
    -------
    Any
        The value read.

    Raises
    ------
    ConfigError
        One line naming the flag, the type expected and the value given.

    Example
    -------
    >>> check_value("--min_duration", "1", 0.5), check_value("--heldout_speakers", "[spk4]", ["spk5"])
    (1, ['spk4'])
    >>> check_value("--data_folder", "/data/corpus #2", "data"), check_value("--data_folder", "'/data/c #2'", "data")
    Traceback (most recent call last):
        ...
    semtts.errors.ConfigError: --data_folder: YAML reads the ' #' in '/data/corpus #2' as a comment; put the \
value in quotes, e.g. --data_folder "'/data/corpus #2'"
    >>> check_value("--data_folder", "'/data/c #2'", "data"), check_value("--data_folder", "/data/c#2", "data")
    ('/data/c #2', '/data/c#2')
    >>> check_value("--heldout_speakers", "spk4", ["spk5"])
    Traceback (most recent call last):
        ...
    semtts.errors.ConfigError: --heldout_speakers: expected a list, e.g. [spk4], got 'spk4'
    >>> check_value("--corpus_options", "{speakers:[spk7]}", {})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    semtts.errors.ConfigError: --corpus_options: cannot read '{speakers:[spk7]}' as YAML ...; write it as {speakers: [spk7]} ...
    """
    hint = f"; write it as {_spaced(raw)} (YAML needs a space after each ':' and ',')"
    try:
        value = _load_yaml(f"value: {raw}")["value"]
    except YAMLError as err:
        try:
            _load_yaml(f"value: {_spaced(raw)}")
        except YAMLError:
            hint = ""
        raise ConfigError(f"{flag}: cannot read {raw!r} as YAML ({_problem(err)}){hint}") from None
    if " #" in raw and _cut_by_a_comment(raw, value):  # the value would silently lose its end
        raise ConfigError(f"{flag}: YAML reads the ' #' in {raw!r} as a comment; put the value in quotes, "
                          f"e.g. {flag} \"'{raw}'\"")
    if isinstance(value, dict) and any(isinstance(k, str) and ":" in k and v is None for k, v in value.items()):
        raise ConfigError(f"{flag}: cannot read {raw!r} as a mapping{hint}")  # {a:1} reads as {'a:1': null}
    kind = _kind(default)
    if kind is None or isinstance(value, _Built) or _fits(kind, value):
        return value
    example = "[a, b]" if value is None or isinstance(value, (list, dict)) else f"[{raw}]"
    wanted = {"bool": "True or False", "int": "an integer", "float": "a number", "str": "a string",
              "list": f"a list, e.g. {example}", "dict": "a mapping, e.g. {name: value}"}[kind]
    got = repr(raw) if raw else "no value"
    raise ConfigError(f"{flag}: expected {wanted}, got {got}")


def _cut_by_a_comment(raw: str, value: Any) -> bool:
    """Whether YAML read ``value`` from ``raw`` only up to a `` #`` (a comment)."""
    try:
        return _load_yaml(f"value: {raw.split(' #')[0]}")["value"] == value
    except YAMLError:  # a quoted value: the '#' is inside the quotes
        return False


def _unknown_message(hparams_file: str | Path, unknown: list[str], keys: list[str], driver: bool) -> str:
    options = [flag[2:] for flag in run_option_flags()]
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, keys + options + (["ngpu", "stop_stage"] if driver else []), n=1)
        if key == "shard":  # a flag of the sharded stages' modules, not of a range of stages
            close = None
            key += (" (a flag of stages 3 and 4 run as modules: python -m semtts.stages.speaker_embeddings "
                    "HPARAMS --shard i/n; run.sh takes --nj N)")
        named.append(f"--{key}" + (f" (did you mean --{close[0]}?)" if close else ""))
    own = "--stage --stop_stage --force --ngpu --help" if driver else "--force"
    return (f"unknown flag(s) {' '.join(named)}; valid: {own}, the hparams of {hparams_file}: "
            f"{' '.join('--' + key for key in keys)}, and SpeechBrain's run options (--device, --precision, ...)")


def check_overrides(hparams_file: str | Path, overrides: str, driver: bool = False) -> dict[str, Any]:
    """Check the overrides of a command line before anything runs: every key
    is a key of the recipe, given once, with a value of the right type
    (:func:`check_value`).

    Arguments
    ---------
    hparams_file : str or Path
        The recipe's ``corpus.yaml``.
    overrides : str
        The overrides as :func:`speechbrain.parse_arguments` returns them.
    driver : bool
        Name ``run.sh``'s own flags (``--stage``, ``--stop_stage``) in the
        unknown-flag error.

    Returns
    -------
    dict
        ``{key: value}`` as read.

    Raises
    ------
    ConfigError
        One line: the unknown flags (with the closest valid ones), a flag
        given twice, or every value of the wrong type.
    """
    pairs = split_overrides(overrides)
    keys = recipe_keys(hparams_file)
    unknown = list(dict.fromkeys(key for key, _ in pairs if key not in keys))
    if unknown:
        raise ConfigError(_unknown_message(hparams_file, unknown, keys, driver))
    given = [key for key, _ in pairs]
    twice = list(dict.fromkeys(key for key in given if given.count(key) > 1))
    if twice:
        raise ConfigError(f"{' '.join('--' + key for key in twice)}: given more than once")
    defaults = recipe_defaults(hparams_file)
    values, errors = {}, []
    for key, raw in pairs:
        try:
            values[key] = check_value(f"--{key}", raw, defaults.get(key))
        except ConfigError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError("; ".join(errors))
    return values


@entry_point
def main(argv: list[str] | None = None) -> int:
    """List the valid flags, check a command line (exit 2 naming the unknown
    flags or the values of the wrong type), or print the resolved
    ``output_folder``."""
    from semtts.stages.common import load_stage_hparams, parse_stage_args

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise ConfigError("usage: python -m semtts.stages.flags HPARAMS.yaml [--check --key value ...]")
    hparams_file, rest = argv[0], argv[1:]
    if rest[:1] == ["--check"]:
        parse_stage_args([hparams_file] + rest[1:], driver=True)
        return 0
    if rest[:1] == ["--output-folder"]:
        args = parse_stage_args([hparams_file] + rest[1:])
        print(load_stage_hparams(args.hparams_file, args.overrides)["output_folder"])
        return 0
    print("\n".join([f"--{key}" for key in recipe_keys(hparams_file)] + run_option_flags()))
    return 0


if __name__ == "__main__":
    main()
