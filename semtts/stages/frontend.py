"""Stage 2: text frontend and token list.

Reads the stage-1 manifests, turns every text into tokens (phonemes through
espeak-ng or pypinyin, characters, or BPE pieces trained here on the cleaned
training text), and writes

- ``<output_folder>/tokens/tokens.txt``: the token list, built on the
  training split (``<pad>``, ``<blank>``, ``<unk>`` reserved as ids 0, 1, 2);
- ``<output_folder>/tokens/<split>.json``: the manifests with ``"tokens"``
  (ids without blanks; ``add_blank`` is applied when batches are made);
- ``<output_folder>/tokens/report.json``: unknown symbols per split (mapped to
  ``<unk>`` and counted) and the items dropped because no token was left;
- ``bpe.model`` when ``token_type`` is ``bpe``.

    python -m semtts.stages.frontend recipes/mini/hparams/mini.yaml
"""

import hashlib
from collections import Counter
from pathlib import Path

from semtts.data.manifest import read_manifest, write_json_atomic, write_manifest
from semtts.errors import DataError, entry_point
from semtts.stages.common import load_stage_hparams, log, parse_stage_args, run_stage
from semtts.text import Frontend, is_mandarin, train_bpe

__all__ = ["SETTINGS", "tokenize_splits", "main"]

SETTINGS = ("token_type", "language", "cleaner", "bpe_vocab_size")


def _pinyin(frontend: Frontend, items: list[dict]) -> list | None:
    """AISHELL-3 style pinyin transcripts, when the frontend can use them."""
    if frontend.token_type != "phn" or not is_mandarin(frontend.language):
        return None
    if not any("pinyin" in item for item in items):
        return None
    return [item.get("pinyin") for item in items]


def tokenize_splits(hp: dict, data_dir: Path, out_dir: Path) -> dict:
    """Build the token list on ``train`` and encode every split.

    Arguments
    ---------
    hp : dict
        The hparams (``token_type``, ``language``, ``cleaner``,
        ``bpe_vocab_size``, ``nj``).
    data_dir : Path
        The stage-1 folder with ``<split>.json``.
    out_dir : Path
        Where to write tokens and manifests.

    Returns
    -------
    dict
        The report (also written to ``report.json``).
    """
    splits = {p.stem: read_manifest(p) for p in sorted(data_dir.glob("*.json")) if p.stem != "report"}
    if "train" not in splits:
        raise DataError(f"{data_dir}/train.json: no training manifest (run stage 1 first)")
    out_dir.mkdir(parents=True, exist_ok=True)
    train = list(splits["train"].values())
    bpe_model = None
    if hp["token_type"] == "bpe":
        cleaner = Frontend("char", hp["language"], hp["cleaner"])
        bpe_model = train_bpe(cleaner.clean([it["text"] for it in train]), out_dir / "bpe", hp["bpe_vocab_size"])
    frontend = Frontend(hp["token_type"], hp["language"], hp["cleaner"], bpe_model=bpe_model,
                        njobs=hp["nj"])
    if bpe_model is None:
        frontend.build_token_list([it["text"] for it in train], pinyin=_pinyin(frontend, train))
    frontend.token_list.save(out_dir / "tokens.txt")
    report = {"token_type": hp["token_type"], "n_tokens": len(frontend.token_list), "splits": {}}
    for split, manifest in splits.items():
        items = list(manifest.values())
        ids, unknown = frontend.encode([it["text"] for it in items], pinyin=_pinyin(frontend, items))
        kept, dropped = {}, []
        for (utt_id, item), tokens in zip(manifest.items(), ids):
            if tokens:
                kept[utt_id] = {**item, "tokens": tokens}
            else:
                dropped.append(utt_id)
        write_manifest(out_dir / f"{split}.json", kept)
        report["splits"][split] = {
            "kept": len(kept),
            "dropped_no_tokens": dropped,
            "unknown_symbols": dict(Counter(unknown).most_common()),
            "unknown_total": sum(unknown.values()),
        }
        note = f", {sum(unknown.values())} unknown symbols -> <unk>" if unknown else ""
        drops = f", {len(dropped)} dropped (no tokens)" if dropped else ""
        log("2", f"{split}: {len(kept)} utterances tokenised{note}{drops}")
    write_json_atomic(out_dir / "report.json", report)
    log("2", f"token list: {len(frontend.token_list)} symbols in {out_dir / 'tokens.txt'}")
    return report


def _manifest_digest(data_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(data_dir.glob("*.json")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 2 entry point."""
    args = parse_stage_args(argv)
    hp = load_stage_hparams(args.hparams_file, args.overrides)
    data_dir = Path(hp["output_folder"]) / "data"
    out_dir = Path(hp["output_folder"]) / "tokens"
    if not (data_dir / "done").is_file():
        raise DataError(f"{data_dir}: stage 1 (data preparation) has not finished")
    settings = {key: hp[key] for key in SETTINGS}
    settings["manifests_sha256"] = _manifest_digest(data_dir)

    def body() -> dict:
        report = tokenize_splits(hp, data_dir, out_dir)
        return {"n_tokens": report["n_tokens"]}

    run_stage("2 text frontend", out_dir, settings, body, force=args.force)
    return 0


if __name__ == "__main__":
    main()
