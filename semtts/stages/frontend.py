"""Stage 2: text frontend and token list.

Reads the stage-1 manifests, turns every text into tokens (phonemes through
espeak-ng or pypinyin, characters, or BPE pieces trained here on the cleaned
training text), and writes

- ``<output_folder>/tokens/tokens.txt``: the token list, built on the
  training split (``<pad>``, ``<blank>``, ``<unk>`` reserved as ids 0, 1, 2);
- ``<output_folder>/tokens/<split>.json``: the manifests with ``"tokens"``
  (ids without blanks; ``add_blank`` is applied when batches are made);
- ``<output_folder>/tokens/report.json``: per split, the unknown symbols
  (mapped to ``<unk>`` and counted), the letters the cleaner deleted, and
  the items dropped, by reason;
- ``bpe.model`` when ``token_type`` is ``bpe``.

A split manifest of an earlier run that stage 1 no longer makes (e.g.
``test_unseen.json`` after ``--force --heldout_speakers []``) is removed, and
the log says so, so that later stages never read a stale split.

An item is dropped (and listed in the report), never the whole stage, when

- its text has letters the cleaner cannot read (another script: Cyrillic in
  an English corpus, kana in a Mandarin one): its tokens would no longer
  match its recording, and training would align the audio of the lost words
  to the words around them (``dropped_other_script``, with the letters);
- its pinyin transcript holds a token that is neither a syllable nor
  punctuation (``dropped_bad_pinyin``, with the message);
- nothing is left of it (``dropped_no_tokens``).

Each split goes through the phonemizer once. The ``done`` marker records,
beside the settings, a fingerprint of what else decides the tokens (the
source of :mod:`semtts.text` and the espeak-ng or pypinyin version), so a
rerun after an upgrade that changes them says so instead of reusing stale
tokens.

    python -m semtts.stages.frontend recipes/mini/hparams/corpus.yaml [--force]
"""

import hashlib
import importlib.metadata
from collections import Counter
from pathlib import Path

import semtts.text

from semtts.data.manifest import read_manifest, write_json_atomic, write_manifest
from semtts.errors import DataError, entry_point
from semtts.stages.common import load_stage_hparams, log, parse_stage_args, run_stage
from semtts.text import Frontend, TokenList, is_mandarin, train_bpe

__all__ = ["SETTINGS", "MANDARIN_BPE_COVERAGE", "frontend_fingerprint", "tokenize_splits", "main"]

SETTINGS = ("token_type", "language", "cleaner", "bpe_vocab_size")
#: sentencepiece's character coverage for Mandarin BPE (its own CJK default);
#: :func:`semtts.text.tokenizer.train_bpe` lowers it further when the
#: vocabulary cannot hold that many characters.
MANDARIN_BPE_COVERAGE = 0.9995


def _pinyin(token_type: str, language: str, items: list[dict]) -> list | None:
    """AISHELL-3 style pinyin transcripts, when a frontend of this kind can use them."""
    if token_type != "phn" or not is_mandarin(language):
        return None
    if not any("pinyin" in item for item in items):
        return None
    return [item.get("pinyin") for item in items]


def _screen(probe: Frontend, items: list[dict], pinyin: list | None) -> tuple[list[int], dict[int, Counter]]:
    """Indices of the items that keep every letter, and the others with the letters they lose.

    Items read from a pinyin transcript do not depend on their text.
    """
    removed = probe.removed_letters([item["text"] for item in items])
    kept, lost = [], {}
    for index, letters in enumerate(removed):
        if letters and (pinyin is None or pinyin[index] is None):
            lost[index] = letters
        else:
            kept.append(index)
    return kept, lost


def tokenize_splits(hp: dict, data_dir: Path, out_dir: Path) -> dict:
    """Build the token list on ``train`` and encode every split; remove the
    split manifests of ``out_dir`` that stage 1 no longer makes.

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

    Raises
    ------
    DataError
        If there is no training manifest, or no training item is left.
    """
    splits = {p.stem: read_manifest(p) for p in sorted(data_dir.glob("*.json")) if p.stem != "report"}
    if "train" not in splits:
        raise DataError(f"{data_dir}/train.json: no training manifest (run stage 1 first)")
    out_dir.mkdir(parents=True, exist_ok=True)
    token_type, language = hp["token_type"], hp["language"]
    # Items that lose letters of another script go first, so that they
    # neither train the BPE model nor add symbols to the token list.
    probe = Frontend("char", language, hp["cleaner"])
    screened = {}
    for split, manifest in splits.items():
        items = list(manifest.items())
        kept, lost = _screen(probe, [item for _, item in items], _pinyin(token_type, language, list(manifest.values())))
        screened[split] = ([items[i] for i in kept], {items[i][0]: letters for i, letters in lost.items()})
    bpe_model = None
    if token_type == "bpe":
        coverage = MANDARIN_BPE_COVERAGE if is_mandarin(language) else 1.0
        texts = probe.clean([item["text"] for _, item in screened["train"][0]])
        bpe_model = train_bpe(texts, out_dir / "bpe", hp["bpe_vocab_size"], character_coverage=coverage)
    frontend = Frontend(token_type, language, hp["cleaner"], bpe_model=bpe_model, njobs=hp["nj"])
    report: dict = {"token_type": token_type, "n_tokens": None, "splits": {}}
    # train first: its symbols (phonemized once) build the token list.
    for split in ["train"] + [name for name in splits if name != "train"]:
        items, lost = screened[split]
        values = [item for _, item in items]
        failed: dict[int, str] = {}
        symbols = frontend.symbols([it["text"] for it in values], _pinyin(token_type, language, values), failed)
        if split == "train" and bpe_model is None:
            frontend.token_list = TokenList.build(symbols)
        unknown: Counter = Counter()
        kept, dropped, bad_pinyin = {}, [], {}
        for index, ((utt_id, item), seq) in enumerate(zip(items, symbols)):
            tokens = frontend.token_list.encode(seq, unknown)
            if index in failed:
                bad_pinyin[utt_id] = failed[index]
            elif tokens:
                kept[utt_id] = {**item, "tokens": tokens}
            else:
                dropped.append(utt_id)
        if split == "train" and not kept:
            raise DataError(f"{data_dir}/train.json: no training utterance is left after the text frontend "
                            f"({len(lost)} other script, {len(bad_pinyin)} bad pinyin, {len(dropped)} no tokens)")
        write_manifest(out_dir / f"{split}.json", kept)
        removed = sum(lost.values(), Counter())
        report["splits"][split] = {
            "kept": len(kept),
            "dropped_no_tokens": dropped,
            "dropped_other_script": {utt_id: dict(letters.most_common()) for utt_id, letters in lost.items()},
            "dropped_bad_pinyin": bad_pinyin,
            "removed_letters": dict(removed.most_common()),
            "unknown_symbols": dict(unknown.most_common()),
            "unknown_total": sum(unknown.values()),
        }
        notes = [f"{sum(unknown.values())} unknown symbols -> <unk>" if unknown else "",
                 f"{len(lost)} dropped (letters of another script: {_shown(removed)})" if lost else "",
                 f"{len(bad_pinyin)} dropped (unreadable pinyin)" if bad_pinyin else "",
                 f"{len(dropped)} dropped (no tokens)" if dropped else ""]
        note = "".join(f", {n}" for n in notes if n)
        see = f" (see {out_dir / 'report.json'})" if lost or bad_pinyin or dropped else ""
        log("2", f"{split}: {len(kept)} utterances tokenised{note}{see}")
    for stale in sorted(out_dir.glob("*.json")):
        if stale.stem not in splits and stale.stem != "report":
            stale.unlink()
            log("2", f"removed {stale}: stage 1 no longer makes the split '{stale.stem}' (an earlier run's)")
    report["n_tokens"] = len(frontend.token_list)
    report["splits"] = dict(sorted(report["splits"].items()))
    frontend.token_list.save(out_dir / "tokens.txt")
    write_json_atomic(out_dir / "report.json", report)
    log("2", f"token list: {len(frontend.token_list)} symbols in {out_dir / 'tokens.txt'}")
    return report


def _shown(letters: Counter, most: int = 8) -> str:
    """``'п' x3, 'р' x2 ...``: the most frequent letters of a count."""
    shown = ", ".join(f"{c!r} x{n}" for c, n in letters.most_common(most))
    return shown + (" ..." if len(letters) > most else "")


def _manifest_digest(data_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(data_dir.glob("*.json")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def frontend_fingerprint(token_type: str, language: str) -> str:
    """A digest of what decides the tokens beyond the stage's settings: the
    source files of :mod:`semtts.text` and, for phonemes, the version of the
    espeak-ng library or of pypinyin (Mandarin).

    Arguments
    ---------
    token_type : str
        ``phn``, ``char`` or ``bpe``.
    language : str
        The corpus language.

    Returns
    -------
    str
        16 hex digits.

    Example
    -------
    >>> len(frontend_fingerprint("char", "en-us"))
    16
    """
    digest = hashlib.sha256()
    for path in sorted(Path(semtts.text.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    if token_type == "phn":
        digest.update(_g2p_version(language).encode())
    return digest.hexdigest()[:16]


def _g2p_version(language: str) -> str:
    """The version of the grapheme-to-phoneme engine for ``language``."""
    if is_mandarin(language):
        return "pypinyin " + importlib.metadata.version("pypinyin")
    from phonemizer.backend import EspeakBackend

    try:
        return "espeak-ng " + ".".join(map(str, EspeakBackend.version()))
    except RuntimeError:  # no espeak-ng: the stage itself says how to install it
        return "espeak-ng missing"


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
    settings["frontend_fingerprint"] = frontend_fingerprint(hp["token_type"], hp["language"])

    def body() -> dict:
        report = tokenize_splits(hp, data_dir, out_dir)
        return {"n_tokens": report["n_tokens"]}

    run_stage("2 text frontend", out_dir, settings, body, force=args.force)
    return 0


if __name__ == "__main__":
    main()
