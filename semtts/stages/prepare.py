"""Stage 1: data preparation: validated JSON manifests and a drop report.

Writes ``<output_folder>/data/{train,valid,test,test_unseen}.json`` and
``report.json`` (see :func:`semtts.data.prepare.prepare_manifests`).

    python -m semtts.stages.prepare recipes/mini/hparams/mini.yaml [--force]
"""

from pathlib import Path

from semtts.data.prepare import prepare_manifests
from semtts.errors import entry_point
from semtts.stages.common import load_stage_hparams, parse_stage_args, run_stage

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

    run_stage("1 data preparation", out_dir, settings, body, force=args.force)
    return 0


if __name__ == "__main__":
    main()
