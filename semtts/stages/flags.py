"""The command-line flags a recipe accepts: its hparams keys plus
SpeechBrain's run options. ``run.sh`` asks this module before running any
stage, so a misspelt flag fails at once with the list of valid ones.

    python -m semtts.stages.flags HPARAMS.yaml                   # list them
    python -m semtts.stages.flags HPARAMS.yaml --check --flag1 --flag2 ...
    python -m semtts.stages.flags HPARAMS.yaml --output-folder [--key value ...]

Example
-------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "h.yaml"
>>> _ = path.write_text("seed: 1\\nmodel: !new:torch.nn.Linear {in_features: 2, out_features: 2}\\n")
>>> hparams_keys(path)
['seed', 'model']
>>> unknown_flags(path, ["--seed", "--device", "--sede"])
['--sede']
"""

import re
import sys
from pathlib import Path

import speechbrain as sb

from semtts.errors import ConfigError, entry_point

__all__ = ["hparams_keys", "recipe_keys", "run_option_flags", "unknown_flags", "main"]

# HyperPyYAML files keep their top-level keys at column 0.
_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


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


@entry_point
def main(argv: list[str] | None = None) -> int:
    """List the valid flags, check some (exit 2 naming the unknown ones), or
    print the resolved ``output_folder``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise ConfigError("usage: python -m semtts.stages.flags HPARAMS.yaml [--check --flag ...]")
    hparams_file, rest = argv[0], argv[1:]
    keys = [f"--{key}" for key in recipe_keys(hparams_file)]
    if rest[:1] == ["--check"]:
        bad = unknown_flags(hparams_file, rest[1:])
        if bad:
            raise ConfigError(
                f"unknown flag(s) {' '.join(bad)}; valid: --stage --stop_stage --force --help, "
                f"the hparams of {hparams_file}: {' '.join(keys)}, "
                f"and SpeechBrain's run options (--device, --precision, ...)"
            )
        return 0
    if rest[:1] == ["--output-folder"]:
        from semtts.stages.common import load_stage_hparams, parse_stage_args

        args = parse_stage_args([hparams_file] + rest[1:])
        print(load_stage_hparams(args.hparams_file, args.overrides)["output_folder"])
        return 0
    print("\n".join(keys + run_option_flags()))
    return 0


if __name__ == "__main__":
    main()
