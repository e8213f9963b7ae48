"""Stage 1: data preparation: validated JSON manifests and a drop report.

Writes ``<output_folder>/data/{train,valid,test,test_unseen}.json`` and
``report.json`` (see :func:`semtts.data.prepare.prepare_manifests`).

The ``done`` marker records the settings below, the absolute corpus folder
(rerunning this stage on a moved corpus stops and says the manifests still
hold; later stages find it through ``--data_folder`` and the manifests'
``{data_root}``)
and, for a corpus that semtts generates (``mini``), the corpus's own
completion marker (:func:`semtts.data.corpora.mini.generation_fingerprint`),
so a corpus regenerated with other settings asks for ``--force`` instead of
reusing manifests of audio that now says other sentences.

    python -m semtts.stages.prepare recipes/mini/hparams/corpus.yaml [--force]
"""

from pathlib import Path

from semtts.data.corpora import get_corpus
from semtts.data.prepare import prepare_manifests
from semtts.errors import ConfigError, entry_point
from semtts.stages.common import (DONE_NAME, changed_settings, comparable_settings, load_stage_hparams,
                                  parse_stage_args, read_done, run_stage)

__all__ = ["SETTINGS", "main"]

# The hparams that decide this stage's outputs.
SETTINGS = (
    "corpus", "data_folder", "sample_rate", "min_duration", "max_duration", "min_keep_ratio",
    "n_valid", "n_test", "heldout_speakers", "seed", "cleaner", "corpus_options",
)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 1 entry point."""
    args = parse_stage_args(argv)
    hp = load_stage_hparams(args.hparams_file, args.overrides)
    out_dir = Path(hp["output_folder"]) / "data"
    settings = {key: hp[key] for key in SETTINGS}
    settings["data_folder"] = str(Path(hp["data_folder"]).resolve())
    fingerprint = getattr(get_corpus(hp["corpus"]), "generation_fingerprint", None)
    if fingerprint is not None:  # a generated corpus: what it was generated with
        settings["corpus_generation"] = fingerprint(hp["data_folder"])

    marker = out_dir / DONE_NAME
    ignore: tuple[str, ...] = ()
    if marker.is_file() and not args.force:
        recorded = read_done(marker, "stage 1")["settings"]
        if "corpus_generation" not in recorded:  # a marker from before semtts recorded it: still valid
            ignore = ("corpus_generation",)
        if changed_settings(recorded, comparable_settings(settings), ignore) == ["data_folder"]:
            raise ConfigError(
                f"{marker}: the manifests were made from the corpus in {recorded['data_folder']}, not "
                f"{settings['data_folder']}; if the corpus only moved they still hold: skip stages 1 and 3 "
                "(they compare the folder) with the new --data_folder; else rerun with --force, or use another --tag")

    def body() -> dict:
        report = prepare_manifests(
            corpus=hp["corpus"],
            data_folder=hp["data_folder"],
            out_dir=out_dir,
            sample_rate=hp["sample_rate"],
            min_duration=hp["min_duration"],
            max_duration=hp["max_duration"],
            min_keep_ratio=hp["min_keep_ratio"],
            n_valid=hp["n_valid"],
            n_test=hp["n_test"],
            heldout_speakers=list(hp["heldout_speakers"]),
            seed=hp["seed"],
            cleaner=hp["cleaner"],
            nj=hp["nj"],
            corpus_options=dict(hp["corpus_options"] or {}),
        )
        return {"kept": report.get("kept"), "dropped": report.get("dropped")}

    run_stage("1 data preparation", out_dir, settings, body, force=args.force, ignore=ignore)
    return 0


if __name__ == "__main__":
    main()
