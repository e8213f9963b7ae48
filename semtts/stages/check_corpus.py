"""Stage 0: check that the corpus is where ``data_folder`` says.

For the built-in ``mini`` corpus this stage generates it with espeak-ng
(idempotent: a complete corpus with the same settings is reused). For a real
corpus it verifies the layout and, when it is absent, says where to
download it.

    python -m semtts.stages.check_corpus recipes/mini/hparams/mini.yaml
"""

from pathlib import Path

from semtts.data.corpora import get_corpus
from semtts.errors import entry_point
from semtts.stages.common import load_stage_hparams, log, parse_stage_args

__all__ = ["check_corpus", "main"]


def check_corpus(hparams: dict) -> Path:
    """Verify (or, for ``mini``, generate) the corpus of the hparams.

    Arguments
    ---------
    hparams : dict
        Needs ``corpus`` and ``data_folder``; ``mini`` also reads ``seed``,
        ``mini_speakers``, ``mini_utts_per_speaker`` and ``nj``.

    Returns
    -------
    Path
        The corpus folder.
    """
    corpus = get_corpus(hparams["corpus"])
    folder = Path(hparams["data_folder"])
    if hparams["corpus"] == "mini":
        corpus.generate(
            folder,
            seed=hparams["seed"],
            n_speakers=hparams["mini_speakers"],
            utts_per_speaker=hparams["mini_utts_per_speaker"],
            nj=hparams["nj"],
        )
    corpus.check(folder)
    return folder


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 0 entry point."""
    args = parse_stage_args(argv)
    hparams = load_stage_hparams(args.hparams_file, args.overrides)
    folder = check_corpus(hparams)
    log("0", f"corpus '{hparams['corpus']}' checked: complete in {folder}")
    return 0


if __name__ == "__main__":
    main()
