"""Stage 3: CAM++ speaker embeddings of every utterance of every split.

Reads the stage-2 manifests ``<output_folder>/tokens/<split>.json`` and
writes ``<output_folder>/spk_emb/`` (per-utterance files, ``utt_emb.npy``,
``spk_mean.npy``, ``index.json``, ``report.json``, ``meta.json``; see
:mod:`semtts.extract.speaker`)::

    python -m semtts.stages.speaker_embeddings HPARAMS.yaml [--force] [--shard i/n] [--device cuda] [--key value]

- resumable: utterances whose file exists are not redone; an embedding file
  found corrupt when merging (e.g. after a crash) is removed and redone;
- ``--shard i/n`` embeds every n-th utterance (Kaldi-style jobs); the run
  that finds every utterance finished (or a final call without ``--shard``)
  writes the means, the report, ``meta.json`` and the ``done`` marker;
- ``--nj N`` (hparam ``nj``) runs N shard subprocesses and then merges;
- too short audio (< ``min_speaker_audio`` s) is skipped for good; a missing
  or unreadable file is skipped by this run only: reported, never fatal, and
  tried again by a rerun (also of a finished stage, which merges again when
  the file can be read now);
- ``--force`` redoes everything (with ``--shard``: the utterances of that
  shard); partial or finished outputs of other settings are refused before
  anything is removed, unless ``--force`` is given without ``--shard``.

Hparams read: ``output_folder``, ``data_folder``, ``campplus_ckpt``,
``campplus_embed_dim``, ``allow_random_init``, ``campplus_cache_dir``,
``min_speaker_audio``, ``nj``, ``seed``.
"""

import shutil
import sys
from pathlib import Path

from semtts.data.manifest import read_record, write_json_atomic
from semtts.data.manifest_digest import manifests_sha256
from semtts.errors import ConfigError, DataError, entry_point
from semtts.extract.common import collect_items, parse_shard, pop_option, run_shards, shard_items
from semtts.extract.speaker import (CorruptEmbeddings, SpeakerEmbedder, checkpoint_identity, embed_utterances,
                                    pending_utterances, readable_again, speaker_metadata, write_speaker_outputs)
from semtts.host_memory import keep_freed_memory
from semtts.stages.common import (DONE_NAME, changed_settings, comparable_settings, load_stage_hparams, log,
                                  parse_stage_args, read_done, run_stage)

__all__ = ["STAGE", "stage_settings", "main"]

STAGE = "3 speaker embeddings"
PROGRESS_NAME = "settings.json"  # the settings partial outputs were made with


class _NotAllDone(Exception):
    """A shard finished while other shards still have work (no merge yet)."""

    def __init__(self, remaining: int):
        super().__init__(remaining)
        self.remaining = remaining


def stage_settings(hp: dict, identity: str, tokens_dir: Path) -> dict:
    """The values that decide the outputs of stage 3 (for the ``done`` marker).

    Arguments
    ---------
    hp : dict
        The hparams.
    identity : str
        Checkpoint sha256 or ``random-init-seed<N>``.
    tokens_dir : Path
        The stage-2 folder (its manifests are hashed).

    Returns
    -------
    dict
    """
    return {
        "ckpt_sha256": identity,
        "campplus_embed_dim": int(hp["campplus_embed_dim"]),
        "min_speaker_audio": float(hp["min_speaker_audio"]),
        "data_folder": str(Path(hp["data_folder"]).resolve()),
        "manifests_sha256": manifests_sha256(tokens_dir),
    }


def _check_progress(out_dir: Path, settings: dict, force: bool, sharded: bool) -> None:
    """Refuse, before anything is removed, outputs made with other settings:
    partial ones (``settings.json``), and finished ones that ``--force
    --shard`` would un-finish; only ``--force`` without ``--shard`` starts afresh.

    Arguments
    ---------
    out_dir : Path
        The ``spk_emb`` folder.
    settings : dict
        From :func:`stage_settings`.
    force : bool
        ``--force`` was given.
    sharded : bool
        ``--shard`` was given.

    Raises
    ------
    ConfigError
        One line naming the changed settings.
    """
    if force and not sharded:
        return
    current, marker, progress = comparable_settings(settings), out_dir / DONE_NAME, out_dir / PROGRESS_NAME
    if marker.is_file():
        if not force:
            return  # run_stage compares the marker
        changed = changed_settings(read_done(marker, "stage 3")["settings"], current)
        if changed:  # run_stage would remove a valid marker before the shard finds out
            raise ConfigError(f"{marker}: outputs were made with other settings ({', '.join(changed)}); "
                              "--force with --shard redoes one shard only: rerun without --shard with --force")
    if progress.is_file():
        changed = changed_settings(read_record(progress, "rerun without --shard with --force"), current)
        if changed:
            raise ConfigError(f"{out_dir}: partial outputs were made with other settings ({', '.join(changed)}); "
                              f"rerun without --shard with --force, or remove {out_dir}")


def _prepare_folder(out_dir: Path, settings: dict, force: bool, sharded: bool) -> None:
    """Record the settings of the partial outputs; ``--force`` without
    ``--shard`` starts from an empty folder (after :func:`_check_progress`)."""
    if force and not sharded:
        shutil.rmtree(out_dir / "feats", ignore_errors=True)
        for name in ("utt_emb.npy", "spk_mean.npy", "index.json", "report.json", "meta.json"):
            (out_dir / name).unlink(missing_ok=True)
    write_json_atomic(out_dir / PROGRESS_NAME, settings)


def _finished_with(out_dir: Path, settings: dict) -> bool:
    """Whether ``out_dir`` holds a ``done`` marker of these settings."""
    marker = out_dir / DONE_NAME
    return marker.is_file() and not changed_settings(read_done(marker, "stage 3")["settings"],
                                                    comparable_settings(settings))


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 3 entry point."""
    keep_freed_memory()
    argv = list(sys.argv[1:] if argv is None else argv)
    shard_arg, argv = pop_option(argv, "--shard")
    args = parse_stage_args(argv)
    hp = load_stage_hparams(args.hparams_file, args.overrides)
    shard = parse_shard(shard_arg) if shard_arg is not None else None
    device = args.run_opts.get("device") or "cpu"
    output = Path(hp["output_folder"])
    tokens_dir, out_dir = output / "tokens", output / "spk_emb"
    if not (tokens_dir / "done").is_file():
        raise DataError(f"{tokens_dir}: stage 2 (text frontend) has not finished")
    identity = checkpoint_identity(hp["campplus_ckpt"], bool(hp["allow_random_init"]), hp["campplus_cache_dir"],
                                   int(hp["seed"]))
    settings = stage_settings(hp, identity, tokens_dir)
    items = collect_items(tokens_dir)
    nj = max(1, int(hp["nj"]))
    label = f"shard {shard[0]}/{shard[1]}" if shard else "all"
    ids = shard_items(list(items), *shard) if shard else sorted(items)
    audio_roots = (hp["data_folder"], output / "data" / "audio_cache")
    min_seconds = float(hp["min_speaker_audio"])
    _check_progress(out_dir, settings, args.force, sharded=shard is not None)
    embedders: list[SpeakerEmbedder] = []

    def embed(todo: list[str], total: int) -> None:
        if not embedders:
            embedders.append(SpeakerEmbedder.from_checkpoint(
                hp["campplus_ckpt"], int(hp["campplus_embed_dim"]), bool(hp["allow_random_init"]),
                hp["campplus_cache_dir"], int(hp["seed"]), device=device))
        weights = identity if identity.startswith("random-init") else f"sha256 {identity[:12]}"
        log(STAGE, f"{label}: embedding {len(todo)} of {total} utterances on {device} ({weights})")
        done = embed_utterances(embedders[0], {u: items[u] for u in todo}, out_dir, *audio_roots, min_seconds,
                                desc=f"CAM++ {label}")
        for what, skipped in (("skipped {} utterances", done["skipped"]),
                              ("could not read the audio of {} utterances (a rerun tries again)", done["unavailable"])):
            if skipped:
                first = next(iter(skipped.items()))
                log(STAGE, f"{label}: {what.format(len(skipped))}, e.g. {first[0]}: {first[1]}")

    if not args.force and _finished_with(out_dir, settings):  # retry what could not be read, if it can be now
        pending = pending_utterances(ids, out_dir)
        back = readable_again({u: items[u] for u in pending}, *audio_roots, min_seconds) if pending else []
        if back:
            log(STAGE, f"{label}: {len(back)} of the {len(pending)} utterances whose audio could not be read "
                       f"can be read now (e.g. {back[0]}): embedding them and merging again")
            (out_dir / DONE_NAME).unlink()
        elif pending:
            log(STAGE, f"{label}: the audio of {len(pending)} utterances still cannot be read (e.g. {pending[0]}; "
                       f"see {out_dir / 'report.json'})")

    def body() -> dict:
        _prepare_folder(out_dir, settings, args.force, sharded=shard is not None)
        spawned = shard is None and nj > 1
        if spawned:
            log(STAGE, f"{len(items)} utterances in {nj} shard jobs")
            _, shard_argv = pop_option([a for a in argv if a != "--force"], "--nj")
            run_shards("semtts.stages.speaker_embeddings", shard_argv + ["--nj", "1"], nj, "speaker embeddings")
        redo = args.force and not spawned  # the shard jobs already redid everything
        todo = ids if redo else pending_utterances(ids, out_dir)
        if todo:
            embed(todo, len(ids))
        remaining = pending_utterances(list(items), out_dir, untried=True)  # unreadable ones are reported
        if remaining:
            raise _NotAllDone(len(remaining))
        meta = speaker_metadata(identity, int(hp["campplus_embed_dim"]), hp["campplus_ckpt"])
        try:
            report = write_speaker_outputs(items, out_dir, meta)
        except CorruptEmbeddings as bad:  # e.g. cut short by a crash: embedded again in place
            log(STAGE, f"{len(bad.utt_ids)} embedding file(s) could not be read and were removed "
                       f"(e.g. {bad.utt_ids[0]}): embedding them again")
            embed(bad.utt_ids, len(bad.utt_ids))
            report = write_speaker_outputs(items, out_dir, meta)
        note = f"; {report['n_skipped']} skipped (see {out_dir / 'report.json'})" if report["n_skipped"] else ""
        log(STAGE, f"{report['n_embedded']} utterances, {report['n_speakers']} speakers{note}")
        return {key: report[key] for key in ("n_utterances", "n_embedded", "n_skipped", "n_speakers")}

    try:
        run_stage(STAGE, out_dir, settings, body, force=args.force)
    except _NotAllDone as pending:
        log(STAGE, f"{label} finished; {pending.remaining} utterances are left to other shards "
                   "(the last shard, or a run without --shard, writes the means and meta.json)")
    return 0


if __name__ == "__main__":
    main()
