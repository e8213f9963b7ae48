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
  ``avg_train_loss``, the updates, the batches seen and the skipped steps).

Example
-------
>>> from semtts.brain import VITSBrain
>>> CheckpointedTraining in VITSBrain.__mro__
True
"""

import math
import time
from pathlib import Path

import torch
import yaml
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

__all__ = ["CheckpointedTraining"]


@register_checkpoint_hooks
class CheckpointedTraining:
    """Checkpoint decisions and counters of the VITS Brain (a mixin: it uses
    the Brain's ``checkpointer``, ``keep_checkpoints``, ``log_interval``,
    ``global_step``, ``outcomes`` and SpeechBrain's run options)."""

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
        }
        Path(path).write_text(yaml.safe_dump(state), encoding="utf-8")

    @mark_as_loader
    def _recover(self, path, end_of_epoch) -> None:
        state = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        # an end-of-epoch save runs in on_stage_end, before SpeechBrain starts the next epoch's count at 0
        self.step, self.avg_train_loss = (0, 0.0) if end_of_epoch else (state["step"], state["avg_train_loss"])
        self.optimizer_step, self.global_step = state["optimizer_step"], state["global_step"]
        self.outcomes.total, self.outcomes.in_a_row = state["nonfinite_total"], state["nonfinite_in_a_row"]
        self.outcomes.overflows = state.get("fp16_overflows", 0)  # absent from checkpoints before it was counted
        self.outcomes.pending, self._avg_loss = [], None
