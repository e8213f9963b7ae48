"""Stage 0: check that the corpus is where ``data_folder`` says.

For the built-in ``mini`` corpus this stage generates it with espeak-ng
(idempotent: a complete corpus with the same settings is reused, also with
``--force``). The corpus folder is shared by every experiment (every
``--tag``) that reads it, so a complete mini corpus generated with other
settings (``seed``, ``mini_speakers``, ``mini_utts_per_speaker``, the
sentence pool) is not replaced: the stage stops, naming the settings that
differ, unless ``--force`` is given; another ``--data_folder`` (e.g.
``data/mini_seed7``) keeps both. Stage 0 writes no ``done`` marker of its
own: the mini corpus's ``.complete`` marker plays that part, and stage 1
records it, so stage 1 asks for ``--force`` after a regeneration.

For a real corpus it verifies the layout and, when it is absent, says where
to download it (``--force`` changes nothing there).

    python -m semtts.stages.check_corpus recipes/mini/hparams/corpus.yaml [--force]
"""

from pathlib import Path

from semtts.data.corpora import get_corpus
from semtts.errors import ConfigError, entry_point
from semtts.stages.common import load_stage_hparams, log, parse_stage_args

__all__ = ["check_corpus", "main"]

# The mini settings named in a refusal, and how they name another folder.
_FOLDER_SUFFIX = {"seed": "seed{}", "n_speakers": "{}spk", "utts_per_speaker": "{}utt"}


def check_corpus(hparams: dict, force: bool = False) -> Path:
    """Verify (or, for ``mini``, generate) the corpus of the hparams.

    Arguments
    ---------
    hparams : dict
        Needs ``corpus`` and ``data_folder``; ``mini`` also reads ``seed``,
        ``mini_speakers``, ``mini_utts_per_speaker`` and ``nj``.
    force : bool
        ``mini``: replace a complete corpus generated with other settings.

    Returns
    -------
    Path
        The corpus folder.

    Raises
    ------
    ConfigError
        ``mini``, without ``force``: ``data_folder`` holds a complete corpus
        generated with other settings (one line naming them).
    """
    corpus = get_corpus(hparams["corpus"])
    folder = Path(hparams["data_folder"])
    if hparams["corpus"] == "mini":
        sizes = {"seed": hparams["seed"], "n_speakers": hparams["mini_speakers"],
                 "utts_per_speaker": hparams["mini_utts_per_speaker"]}
        changed = corpus.other_settings(folder, **sizes)
        if changed and not force:
            suffix = "_".join(form.format(sizes[key]) for key, form in _FOLDER_SUFFIX.items()
                              if any(c.startswith(f"{key} ") for c in changed)) or "new"
            raise ConfigError(
                f"{folder}: a complete mini corpus generated with other settings is there ({', '.join(changed)}) "
                f"and other experiments may read it; use another folder (e.g. --data_folder {folder}_{suffix}) "
                "or regenerate it in place with --force (experiments that read it then need stage 1 redone)")
        if changed:
            log("0", f"--force: regenerating the mini corpus in {folder} ({', '.join(changed)})")
        corpus.generate(folder, nj=hparams["nj"], **sizes)
    corpus.check(folder)
    return folder


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 0 entry point."""
    args = parse_stage_args(argv)
    hparams = load_stage_hparams(args.hparams_file, args.overrides)
    folder = check_corpus(hparams, force=args.force)
    log("0", f"corpus '{hparams['corpus']}' checked: complete in {folder}")
    return 0


if __name__ == "__main__":
    main()
