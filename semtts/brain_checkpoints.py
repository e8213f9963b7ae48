"""The checkpoint side of :class:`~semtts.brain.VITSBrain`: when and what it saves.

:class:`CheckpointedTraining` is a mixin of the Brain that

- saves the end-of-epoch checkpoints, keeping the best by validation mel L1
  and the latest (a non-finite score never counts as the best);
- decides on intra-epoch checkpoints (``--ckpt_interval_steps`` /
  ``--ckpt_interval_minutes``) without a collective in every step: SpeechBrain
  broadcasts its decision from rank 0 at every step under DDP, which with
  NCCL is also a host-device sync. A step count is the same on every
  process, so it needs no broadcast; the clock is compared (and broadcast)
  every ``log_interval`` steps;
- saves and restores the step counters (SpeechBrain's ``step`` and
  ``avg_train_loss``, the updates, the batches seen and the skipped steps);
- records how the epoch was cut into batches (:func:`batch_plan`): a run
  resumed mid-epoch skips the batches already trained, which are only the
  same batches under the same plan, so another plan (another number of
  processes, batch size, bucketing, seed or training set) is refused in one
  line instead of silently training on the wrong part of the epoch.

Example
-------
>>> from semtts.brain import VITSBrain
>>> CheckpointedTraining in VITSBrain.__mro__
True
"""

import hashlib
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from torch.utils.data import BatchSampler

from semtts.errors import ConfigError

__all__ = ["BUCKETING_KEYS", "CheckpointedTraining", "batch_plan", "check_batch_plan"]

BUCKETING_KEYS = ("seed", "batch_size", "max_batch_seconds", "num_buckets")
"""The hparams that decide the batches of length-bucketed batching (``make_train_sampler``)."""


def batch_plan(dataset: Any, loader: Any, hparams: Any) -> dict:
    """How a training epoch is cut into batches, as far as a resumed run can check it.

    Arguments
    ---------
    dataset : Dataset
        The training set (its ``data_ids`` in order, with their ``duration``
        where the items have one, are digested).
    loader : DataLoader
        The training loader of this process.
    hparams : object
        The Brain's hparams: with a batch sampler (bucketing), the
        :data:`BUCKETING_KEYS` that it has are recorded.

    Returns
    -------
    dict
        ``processes`` (the DDP world size), ``batches`` (per process and
        epoch, None without a length), ``items`` (a digest of the items in
        order, or None), and the batching: ``bucketing`` with its hparams,
        or ``batch_size`` and SpeechBrain's shuffling seed (``SB_GLOBAL_SEED``).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> from torch.utils.data import DataLoader
    >>> data = SimpleNamespace(data_ids=["b", "a"], data={"a": {"duration": 1.5}, "b": {"duration": 2.0}})
    >>> plan = batch_plan(data, DataLoader(range(5), batch_size=2), SimpleNamespace(batch_size=16))
    >>> plan["processes"], plan["batches"], plan["batch_size"], len(plan["items"])
    (1, 3, 2, 16)
    """
    ids = getattr(dataset, "data_ids", None)
    items = None
    if ids is not None:  # in order: the samplers shuffle indices; durations decide the buckets
        table = getattr(dataset, "data", {})
        lines = "\n".join(f"{utt_id}\t{table.get(utt_id, {}).get('duration')}" for utt_id in ids)
        items = hashlib.sha256(lines.encode()).hexdigest()[:16]
    try:
        batches = len(loader)
    except TypeError:  # an iterable dataset: no length
        batches = None
    plan = {"processes": int(os.environ.get("WORLD_SIZE", "1")), "batches": batches, "items": items}
    sampler = getattr(loader, "batch_sampler", None)
    if sampler is not None and not isinstance(sampler, BatchSampler):  # bucketing (make_train_sampler)
        plan["bucketing"] = {key: getattr(hparams, key) for key in BUCKETING_KEYS if hasattr(hparams, key)}
    else:  # fixed batches, shuffled by SpeechBrain's sampler
        plan.update(batch_size=getattr(loader, "batch_size", None), shuffle_seed=os.environ.get("SB_GLOBAL_SEED"))
    return plan


def check_batch_plan(recorded: dict | None, current: dict | None, checkpoint: str | Path, step: int) -> None:
    """Refuse to resume mid-epoch under another batch plan (:func:`batch_plan`).

    Arguments
    ---------
    recorded : dict or None
        The plan saved with the checkpoint (None: a checkpoint of older semtts, not checked).
    current : dict or None
        This run's plan (None: no training loader, e.g. a checkpoint loaded for evaluation).
    checkpoint : str or Path
        The checkpoint folder, for the message.
    step : int
        Batches of the epoch the checkpoint had trained.

    Raises
    ------
    ConfigError
        The plans differ: the batches the resumed run would skip are not the ones trained.

    Example
    -------
    >>> plan = {"processes": 2, "batches": 50, "items": "ab12", "batch_size": 16}
    >>> check_batch_plan(plan, plan, "ckpt", 10)
    >>> check_batch_plan(plan, {**plan, "processes": 1, "batches": 100}, "save/CKPT+x", 10)
    Traceback (most recent call last):
    ...
    semtts.errors.ConfigError: save/CKPT+x: saved 10 batches into an epoch under another batch plan (processes 2 \
now 1, batches 50 now 100), so resuming would skip other batches than those trained; resume with the same \
settings (run.sh --ngpu 2) until the epoch ends, or move the folder out of the save folder to restart the epoch \
from the previous checkpoint
    """
    if recorded is None or current is None:
        return
    changed = [f"{key} {recorded.get(key)} now {current.get(key)}"
               for key in dict.fromkeys([*current, *recorded]) if recorded.get(key) != current.get(key)]
    if not changed:
        return
    hint = f" (run.sh --ngpu {recorded['processes']})" if recorded.get("processes") != current.get("processes") else ""
    raise ConfigError(
        f"{checkpoint}: saved {step} batches into an epoch under another batch plan ({', '.join(changed)}), so "
        f"resuming would skip other batches than those trained; resume with the same settings{hint} until the "
        "epoch ends, or move the folder out of the save folder to restart the epoch from the previous checkpoint"
    )


@register_checkpoint_hooks
class CheckpointedTraining:
    """Checkpoint decisions and counters of the VITS Brain (a mixin: it uses
    the Brain's ``checkpointer``, ``keep_checkpoints``, ``log_interval``,
    ``global_step``, ``outcomes``, ``_batch_plan`` and SpeechBrain's run options)."""

    def _save_checkpoint(self, epoch: int, mel_l1: float | None) -> None:
        """An end-of-epoch checkpoint; keeps the best by ``mel_l1`` and the latest."""
        if self.checkpointer is None:
            return
        if mel_l1 is not None and not math.isfinite(mel_l1):
            mel_l1 = math.inf  # never "best": a NaN would make the keep-best order arbitrary
        meta = {"epoch": epoch, "step": self.global_step, **({"mel_l1": mel_l1} if mel_l1 is not None else {})}
        self.checkpointer.save_and_keep_only(
            meta=meta, end_of_epoch=True, num_to_keep=self.keep_checkpoints,
            min_keys=["mel_l1"] if mel_l1 is not None else [], importance_keys=[],
        )

    def _should_save_intra_epoch_ckpt(self, last_ckpt_time: float, steps_since_ckpt: int) -> bool:
        """Whether to save an intra-epoch checkpoint now (see the module docstring).

        Arguments
        ---------
        last_ckpt_time : float
            ``time.time()`` of the last checkpoint.
        steps_since_ckpt : int
            Steps since then.

        Returns
        -------
        bool
        """
        if self.checkpointer is None or (self.ckpt_interval_minutes <= 0 and self.ckpt_interval_steps <= 0):
            return False
        if 0 < self.ckpt_interval_steps <= steps_since_ckpt:  # the same on every process
            return True
        if self.ckpt_interval_minutes <= 0:
            return False
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return (time.time() - last_ckpt_time) / 60.0 > self.ckpt_interval_minutes
        if self.global_step % self.log_interval:
            return False
        return super()._should_save_intra_epoch_ckpt(last_ckpt_time, steps_since_ckpt)  # rank 0's clock

    @mark_as_saver
    def _save(self, path) -> None:
        self.settle_steps(stop=False)  # main process only: stopping waits for the next settle on every process
        if self._avg_loss is not None and self.step > 0:
            self.avg_train_loss = float(self._avg_loss)
        state = {
            "step": self.step, "avg_train_loss": float(self.avg_train_loss), "optimizer_step": self.optimizer_step,
            "global_step": self.global_step, "nonfinite_total": self.nonfinite_total,
            "nonfinite_in_a_row": self.nonfinite_in_a_row, "fp16_overflows": self.outcomes.overflows,
            "fp16_overflows_in_a_row": self.outcomes.overflows_in_a_row,
            "batch_plan": self._batch_plan,
        }
        Path(path).write_text(yaml.safe_dump(state), encoding="utf-8")

    @mark_as_loader
    def _recover(self, path, end_of_epoch) -> None:
        state = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not end_of_epoch:  # the loader will skip state["step"] batches: the same ones only under the same plan
            check_batch_plan(state.get("batch_plan"), self._batch_plan, Path(path).parent, state["step"])
        # an end-of-epoch save runs in on_stage_end, before SpeechBrain starts the next epoch's count at 0
        self.step, self.avg_train_loss = (0, 0.0) if end_of_epoch else (state["step"], state["avg_train_loss"])
        self.optimizer_step, self.global_step = state["optimizer_step"], state["global_step"]
        self.outcomes.total, self.outcomes.in_a_row = state["nonfinite_total"], state["nonfinite_in_a_row"]
        # absent from checkpoints before they were counted
        self.outcomes.overflows = state.get("fp16_overflows", 0)
        self.outcomes.overflows_in_a_row = state.get("fp16_overflows_in_a_row", 0)
        self.outcomes.pending, self._avg_loss = [], None
