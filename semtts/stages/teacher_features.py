"""Stage 4: Whisper teacher features for every utterance of every split.

Reads the stage-2 manifests ``<output_folder>/tokens/<split>.json`` and
writes, under ``<output_folder>/teacher/``:

- ``feats/<utt_id>.npy``: fp16 ``[T_sem, D]`` encoder features at 50 Hz
  (see :mod:`semtts.extract.teacher`);
- ``meta.json``: model, checkpoint sha256 (or ``random-init``), layer, ``D``,
  frame and sample rates, ``n_mels``, semtts version; training checks it
  with :func:`semtts.extract.teacher.expected_metadata`;
- ``report.json``: counts, and the utterances skipped with the reason
  (unreadable or too short audio);
- ``settings.json``: what the (partial) outputs are made with: the teacher
  metadata and the sha256 of the stage-2 manifests
  (:func:`semtts.data.manifest_digest.manifests_sha256`; training checks it);
- ``done`` when every shard has finished.

The stage resumes: an utterance whose file exists is not recomputed
(``--force`` starts afresh). ``nj > 1`` runs ``nj`` subprocesses, each on
one interleaved shard; ``--shard i/n`` runs one shard only (a cluster job;
no ``done`` marker, a final run without ``--shard`` finds the files and
finishes the stage; ``--force`` with ``--shard`` recomputes that shard's
files). Outputs made with another teacher or other manifests are refused
(one line, before anything is removed) unless ``--force`` is given without
``--shard``: a shard never mixes its files with those of other settings. A
shard run that writes removes the ``done`` marker (a final run without
``--shard`` writes it again); on a finished stage, a shard without
``--force`` does nothing.

    python -m semtts.stages.teacher_features HPARAMS.yaml [--force] [--shard i/n] [--device cuda]

hparams read: ``output_folder``, ``data_folder``, ``whisper_model``,
``whisper_layer``, ``whisper_cache_dir``, ``allow_random_init``,
``whisper_random_dims``, ``whisper_batch_size``, ``nj``, ``seed``.
"""

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from semtts.data.manifest import read_record, resolve_audio_path, write_json_atomic
from semtts.data.manifest_digest import manifests_sha256
from semtts.errors import ConfigError, DataError, entry_point
from semtts.extract.common import (check_metadata, collect_items, feature_path, parse_shard, pop_option, read_metadata,
                                   run_shards, shard_items, write_metadata)
from semtts.extract.teacher import (UNREADABLE, expected_metadata, extract_teacher_features,
                                   load_whisper_teacher, read_teacher_audio)
from semtts.host_memory import keep_freed_memory
from semtts.stages.common import (DONE_NAME, changed_settings, comparable_settings, load_stage_hparams, log,
                                  parse_stage_args, read_done, run_stage)

__all__ = ["SETTINGS", "collect_audio", "main"]

STAGE = "4 teacher features"
PROGRESS_NAME = "settings.json"  # the teacher and manifests the partial outputs were made with
# The hparams that decide this stage's outputs.
SETTINGS = ("whisper_model", "whisper_layer", "allow_random_init", "whisper_random_dims")


def collect_audio(hp: dict) -> dict[str, str]:
    """``{utt_id: audio file}`` over every stage-2 manifest.

    Arguments
    ---------
    hp : dict
        Hparams with ``output_folder`` and ``data_folder``.

    Returns
    -------
    dict
        The resolved audio paths, sorted by utterance id.
    """
    out = Path(hp["output_folder"])
    audio = {
        utt_id: resolve_audio_path(item["wav"], data_root=hp["data_folder"], cache_root=out / "data" / "audio_cache")
        for utt_id, item in collect_items(out / "tokens").items()
    }
    return dict(sorted(audio.items()))


def _run_option(run_opts: Any, name: str) -> Any:
    return run_opts.get(name) if isinstance(run_opts, dict) else getattr(run_opts, name, None)


def _device(run_opts: Any) -> str:
    device = _run_option(run_opts, "device") or "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available")
    return str(device)


def _load_teacher(hp: dict):
    return load_whisper_teacher(
        str(hp["whisper_model"]),
        layer=hp["whisper_layer"],
        cache_dir=hp["whisper_cache_dir"],
        allow_random_init=bool(hp["allow_random_init"]),
        random_dims=hp["whisper_random_dims"],
        seed=int(hp["seed"]),
    )


def _progress_settings(teacher_meta: dict, tokens_dir: Path) -> dict:
    """What partial outputs are made with: the teacher's metadata and the manifests' digest."""
    return comparable_settings({**teacher_meta, "manifests_sha256": manifests_sha256(tokens_dir)})


def _check_progress(out_dir: Path, progress: dict) -> None:
    """Refuse partial outputs made with another teacher or other manifests
    (``settings.json``; for folders of older semtts, the teacher in
    ``meta.json``): files of two settings must never be mixed.

    Arguments
    ---------
    out_dir : Path
        The ``teacher`` folder.
    progress : dict
        From :func:`_progress_settings`.

    Raises
    ------
    ConfigError
        One line naming what differs; only a run without ``--shard`` may
        replace the outputs (``--force``).
    """
    path, meta_path = out_dir / PROGRESS_NAME, out_dir / "meta.json"
    if path.is_file():
        recorded = read_record(path, "rerun without --shard with --force")
        keys = set(recorded) | set(progress)
    elif meta_path.is_file():  # made before settings.json existed: compare the teacher only
        recorded, keys = read_metadata(meta_path), set(progress) - {"manifests_sha256"}
    else:
        return
    changed = sorted(k for k in keys if recorded.get(k) != progress.get(k))
    if changed:
        raise ConfigError(f"{out_dir}: the partial outputs there come from another teacher or other manifests "
                          f"({', '.join(changed)} differ); only a run without --shard may replace them: "
                          f"rerun without --shard with --force, or remove {out_dir}")


def _claim_output(out_dir: Path, progress: dict, meta: dict) -> None:
    """Record the settings of the partial outputs and write ``meta.json``
    (after :func:`_check_progress`; the files are written once)."""
    if not (out_dir / PROGRESS_NAME).is_file():
        write_json_atomic(out_dir / PROGRESS_NAME, progress)
    if not (out_dir / "meta.json").is_file() or any(read_metadata(out_dir / "meta.json").get(k) != v
                                                     for k, v in comparable_settings(meta).items()):
        write_metadata(out_dir / "meta.json", meta)


def _check_done_teacher(out_dir: Path, hp: dict, settings: dict, force: bool) -> None:
    """A finished stage whose settings are the hparams' must also have the
    hparams' weights: the file behind a ``whisper_model`` path (or the cache,
    after a random-init run) can change while the name stays."""
    marker, meta = out_dir / DONE_NAME, out_dir / "meta.json"
    if force or not marker.is_file() or not meta.is_file():
        return
    if changed_settings(read_done(marker)["settings"], comparable_settings(settings)):
        return  # run_stage names the changed settings
    check_metadata(meta, {"sha256": expected_metadata(hp)["sha256"]}, "teacher features")


def _check_done_for_shard(marker: Path, settings: dict, force: bool) -> bool:
    """Whether a shard run has nothing to do: the stage is done with these
    settings (and no ``--force``). A marker of other settings is refused,
    also with ``--force``, before anything is removed."""
    if not marker.is_file():
        return False
    changed = changed_settings(read_done(marker, "stage 4")["settings"], comparable_settings(settings))
    if changed:
        raise ConfigError(f"{marker}: outputs were made with other settings ({', '.join(changed)}); a shard redoes "
                          "only its own files: rerun without --shard with --force, or use another --tag")
    return not force


def _shard_report_path(out_dir: Path, i: int, n: int) -> Path:
    return out_dir / "reports" / f"shard_{i}-of-{n}.json"


def _extract_shard(hp: dict, teacher, audio: dict[str, str], out_dir: Path, i: int, n: int,
                   device: str, overwrite: bool, progress: bool, num_workers: int) -> dict:
    ids = shard_items(list(audio), i, n)
    report = extract_teacher_features(
        teacher, {u: audio[u] for u in ids}, out_dir, batch_size=int(hp["whisper_batch_size"]),
        device=device, overwrite=overwrite, num_workers=num_workers, progress=progress,
        desc=f"teacher features {i}/{n}",
    )
    write_json_atomic(_shard_report_path(out_dir, i, n), report)
    log(STAGE, f"shard {i}/{n}: {report['extracted']} extracted, {report['existing']} already there, "
               f"{len(report['failed'])} skipped")
    return report


def _summarise(out_dir: Path, audio: dict[str, str], reports: list[dict]) -> dict:
    failed = {u: r for report in reports for u, r in report["failed"].items()}
    missing = [u for u in audio if not feature_path(out_dir, u).is_file()]
    summary = {
        "total": len(audio),
        "with_features": len(audio) - len(missing),
        "extracted": sum(r["extracted"] for r in reports),
        "existing": sum(r["existing"] for r in reports),
        "skipped": {u: failed.get(u, "no feature file (unknown reason: rerun the stage)") for u in missing},
    }
    write_json_atomic(out_dir / "report.json", summary)
    log(STAGE, f"{summary['with_features']}/{summary['total']} utterances have teacher features "
               f"({summary['extracted']} extracted now, {summary['existing']} already there)")
    if missing:
        log(STAGE, f"{len(missing)} utterance(s) skipped (see {out_dir / 'report.json'}): "
                   + "; ".join(f"{u}: {summary['skipped'][u]}" for u in missing[:5]))
    if not summary["with_features"]:
        raise DataError(f"{out_dir}: no utterance could be processed (see report.json)")
    return summary


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 4 entry point."""
    keep_freed_memory()
    shard, argv = pop_option(list(sys.argv[1:] if argv is None else argv), "--shard")
    args = parse_stage_args(argv)
    hp = load_stage_hparams(args.hparams_file, args.overrides)
    tokens_dir, out_dir = Path(hp["output_folder"]) / "tokens", Path(hp["output_folder"]) / "teacher"
    device = _device(args.run_opts)
    progress = not _run_option(args.run_opts, "noprogressbar")
    num_workers = min(4, os.cpu_count() or 1) if device.startswith("cuda") else 0
    nj = int(hp["nj"])
    if nj < 1:
        raise ConfigError(f"nj must be >= 1, got {nj}")

    settings = {key: hp[key] for key in SETTINGS}
    settings["seed"] = hp["seed"] if hp["allow_random_init"] else None
    settings["manifests_sha256"] = manifests_sha256(tokens_dir)

    if shard is not None:  # one shard: no done marker
        i, n = parse_shard(shard)
        if _check_done_for_shard(out_dir / DONE_NAME, settings, args.force):
            log(STAGE, f"shard {i}/{n} skipped: the stage is already done ({out_dir / DONE_NAME}); --force redoes it")
            return 0
        audio = collect_audio(hp)
        teacher = _load_teacher(hp)
        made_with = _progress_settings(teacher.metadata(), tokens_dir)
        _check_progress(out_dir, made_with)  # also with --force: files of two teachers are never mixed
        (out_dir / DONE_NAME).unlink(missing_ok=True)  # this shard writes: the stage is not finished any more
        _claim_output(out_dir, made_with, teacher.metadata())
        _extract_shard(hp, teacher, audio, out_dir, i, n, device, args.force, progress, num_workers)
        return 0

    def body() -> dict:
        audio = collect_audio(hp)
        teacher = _load_teacher(hp)  # downloads the weights once, before any subprocess
        made_with = _progress_settings(teacher.metadata(), tokens_dir)
        if args.force:
            for stale in ("feats", "reports"):
                shutil.rmtree(out_dir / stale, ignore_errors=True)
            for stale in (PROGRESS_NAME, "meta.json", "report.json"):
                (out_dir / stale).unlink(missing_ok=True)
        _check_progress(out_dir, made_with)
        _claim_output(out_dir, made_with, teacher.metadata())
        log(STAGE, f"{len(audio)} utterances, Whisper {teacher.name} layer {teacher.layer} (D={teacher.dim}) "
                   f"on {device}, {nj} job(s)")
        shutil.rmtree(out_dir / "reports", ignore_errors=True)
        if nj == 1:
            reports = [_extract_shard(hp, teacher, audio, out_dir, 1, 1, device, False, progress, num_workers)]
        else:
            del teacher
            run_shards("semtts.stages.teacher_features", [a for a in argv if a != "--force"], nj, "teacher features")
            reports = []
            for k in range(1, nj + 1):
                path = _shard_report_path(out_dir, k, nj)
                if not path.is_file():
                    raise DataError(f"{path}: shard {k}/{nj} wrote no report")
                reports.append(json.loads(path.read_text()))
        summary = _summarise(out_dir, audio, reports)
        return {k: v for k, v in summary.items() if k != "skipped"} | {"skipped": len(summary["skipped"])}

    _check_done_teacher(out_dir, hp, settings, args.force)
    if not args.force:
        _retry_readable_again(out_dir, hp, settings)
    run_stage(STAGE, out_dir, settings, body, force=args.force)
    return 0


def _retry_readable_again(out_dir: Path, hp: dict, settings: dict) -> None:
    """A finished stage that skipped utterances whose audio can be read now
    (restored, copied again whole) is not finished: the rerun extracts those
    (and keeps every feature file there)."""
    marker = out_dir / DONE_NAME
    if not marker.is_file() or changed_settings(read_done(marker)["settings"], comparable_settings(settings)):
        return
    audio = collect_audio(hp)
    missing = [u for u in audio if not feature_path(out_dir, u).is_file()]
    try:  # why each was skipped: only audio that could not be read may have changed (not non-finite features)
        reasons = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))["skipped"]
    except (OSError, ValueError, KeyError, TypeError):
        reasons = {}
    back = [u for u in missing if UNREADABLE in str(reasons.get(u, UNREADABLE)) and _readable(audio[u])]
    if back:
        log(STAGE, f"{len(back)} of the {len(missing)} skipped utterances can be read now (e.g. {back[0]}): "
                   "extracting them")
        marker.unlink()
    elif missing:
        log(STAGE, f"{len(missing)} utterance(s) still skipped (e.g. {missing[0]}; see {out_dir / 'report.json'})")


def _readable(path: str) -> bool:
    try:
        read_teacher_audio(path)
    except DataError:
        return False
    return True


if __name__ == "__main__":
    main()
