"""Semantic distillation in training stages B and C: the teacher inputs of
the generator, the teacher-forcing schedule, and the distillation loss.

The Brain asks :meth:`SemanticDistillation.inputs` for the generator's extra
arguments of a batch (the padded teacher features of the batch's ``teacher``
field and, per utterance, whether the adapter gets the teacher's semantics),
and :meth:`SemanticDistillation.add_to` adds ``lambda_sem`` times the masked
L1 between the student and the pooled teacher (over valid tokens) to the
generator loss, logged as ``sem``.

Teacher forcing: in training each utterance's adapter input is the teacher's
with probability ``p_teacher``, which goes linearly from ``p_teacher_start``
to ``p_teacher_end`` over the first ``p_teacher_steps`` batches of the stage
(:func:`teacher_probability`), else the student's (detached when
``detach_student``). Validation uses the student, as inference does. The
teacher is data: it gets no gradient.

The term is used when the hparams have ``lambda_sem`` (the stage B and C
files); :func:`semantic_distillation` returns None otherwise (stage A).

Example
-------
>>> [round(teacher_probability(step, 1.0, 0.0, 4), 2) for step in (0, 2, 4, 9)]
[1.0, 0.5, 0.0, 0.0]
>>> from types import SimpleNamespace
>>> distill = SemanticDistillation(lambda_sem=2.0)
>>> out = SimpleNamespace(sem_pred=torch.zeros(2, 3, 4), sem_target=torch.ones(2, 3, 4),
...                       token_mask=torch.tensor([[[1.0, 1.0, 1.0]], [[1.0, 0.0, 0.0]]]))
>>> terms = distill.add_to({"loss": torch.tensor(1.0)}, out)
>>> float(terms["sem"]), float(terms["loss"])
(1.0, 3.0)
"""

from typing import Any

import torch
from speechbrain.dataio.batch import PaddedBatch, PaddedData

from semtts.data.dataset import absolute_lengths
from semtts.errors import ConfigError, DataError
from semtts.losses import MaskedL1

__all__ = ["teacher_probability", "SemanticDistillation", "semantic_distillation"]

KEYS = ("lambda_sem", "p_teacher_start", "p_teacher_end", "p_teacher_steps", "detach_student")
"""The hparams of the term (hparams/train_B.yaml, train_C.yaml)."""


def teacher_probability(step: int, start: float, end: float, steps: int) -> float:
    """The teacher-forcing probability after ``step`` training batches: linear
    from ``start`` to ``end`` over ``steps`` batches, then ``end``.

    Arguments
    ---------
    step : int
        Training batches seen before this one (0 for the first).
    start, end : float
        The probabilities at step 0 and from step ``steps`` on.
    steps : int
        Length of the ramp (0: ``end`` at once).

    Returns
    -------
    float
    """
    if steps <= 0:
        return float(end)
    fraction = min(max(step, 0) / steps, 1.0)
    return float(start + (end - start) * fraction)


class SemanticDistillation:
    """The generator inputs and the loss term of semantic distillation.

    Arguments
    ---------
    lambda_sem : float
        Weight of the masked L1 between student and pooled teacher.
    p_teacher_start, p_teacher_end : float
        Teacher-forcing probability at the start and at the end of the ramp.
    p_teacher_steps : int
        Batches over which the probability moves from start to end.
    detach_student : bool
        The adapter's use of the student sends no gradient into SemPred
        (SemPred then learns from the distillation loss only).

    Example
    -------
    >>> distill = SemanticDistillation(1.0, p_teacher_start=1.0, p_teacher_end=0.0, p_teacher_steps=10)
    >>> batch = PaddedBatch([{"teacher": torch.ones(5, 4)}, {"teacher": torch.ones(3, 4)}])
    >>> inputs = distill.inputs(batch, train=True, step=0, device=torch.device("cpu"))
    >>> inputs["teacher"].shape, inputs["teacher_lengths"].tolist(), inputs["use_teacher"].tolist()
    (torch.Size([2, 5, 4]), [5, 3], [True, True])
    >>> distill.inputs(batch, train=False, step=0, device=torch.device("cpu"))["use_teacher"].tolist()
    [False, False]
    """

    def __init__(
        self,
        lambda_sem: float,
        p_teacher_start: float = 1.0,
        p_teacher_end: float = 0.0,
        p_teacher_steps: int = 0,
        detach_student: bool = False,
    ) -> None:
        for name, p in (("p_teacher_start", p_teacher_start), ("p_teacher_end", p_teacher_end)):
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {p}")
        if lambda_sem < 0 or p_teacher_steps < 0:
            raise ConfigError(f"lambda_sem and p_teacher_steps must be >= 0, got {lambda_sem} and {p_teacher_steps}")
        self.lambda_sem = float(lambda_sem)
        self.p_teacher_start = float(p_teacher_start)
        self.p_teacher_end = float(p_teacher_end)
        self.p_teacher_steps = int(p_teacher_steps)
        self.detach_student = bool(detach_student)
        self.l1 = MaskedL1()

    def p_teacher(self, step: int) -> float:
        """The teacher-forcing probability after ``step`` training batches."""
        return teacher_probability(step, self.p_teacher_start, self.p_teacher_end, self.p_teacher_steps)

    @staticmethod
    def teacher_lengths(batch: PaddedBatch) -> torch.Tensor:
        """The batch's valid teacher frames ``[B]``, where the batch is (read
        them before it moves: the generator's checks then cost no device sync).

        Arguments
        ---------
        batch : PaddedBatch
            With ``teacher`` (``[B, T_sem, D]``, from :mod:`semtts.data.teacher_features`).

        Returns
        -------
        torch.Tensor
        """
        teacher = getattr(batch, "teacher", None)
        if not isinstance(teacher, PaddedData):
            raise DataError("semantic distillation: the batch has no teacher features (stage 4's teacher/feats)")
        return absolute_lengths(teacher)

    def inputs(self, batch: PaddedBatch, train: bool, step: int, device: torch.device,
               teacher_lengths: torch.Tensor | None = None) -> dict[str, Any]:
        """The generator's semantic arguments for a batch.

        Arguments
        ---------
        batch : PaddedBatch
            With ``teacher`` (``[B, T_sem, D]``, from
            :mod:`semtts.data.teacher_features`).
        train : bool
            Training (teacher forcing by the schedule) or evaluation (the student).
        step : int
            Training batches before this one.
        device : torch.device
            Where the generator runs.
        teacher_lengths : torch.Tensor, optional
            :meth:`teacher_lengths`, read before the batch moved (default: read now).

        Returns
        -------
        dict
            ``teacher`` ``[B, T_sem, D]`` float32 and ``use_teacher`` ``[B]``
            bool on ``device``, ``teacher_lengths`` ``[B]``, ``detach_student``.
        """
        lengths = self.teacher_lengths(batch) if teacher_lengths is None else teacher_lengths
        teacher = batch.teacher
        p = self.p_teacher(step) if train else 0.0
        use_teacher = torch.rand(teacher.data.shape[0]) < p  # CPU draw: same stream on every device
        return {
            "teacher": teacher.data.to(device, non_blocking=True).float(),
            "teacher_lengths": lengths,
            "use_teacher": use_teacher.to(device, non_blocking=True),
            "detach_student": self.detach_student,
        }

    def loss(self, output: Any) -> torch.Tensor:
        """The unweighted masked L1 between ``output.sem_pred`` and
        ``output.sem_target`` over the valid tokens (``output.token_mask``)."""
        if output.sem_target is None:
            raise DataError("semantic distillation: the generator produced no teacher target (no teacher given)")
        return self.l1(output.sem_pred, output.sem_target, mask=output.token_mask[:, 0])  # [B, T_text]

    def add_to(self, terms: dict[str, torch.Tensor], output: Any) -> dict[str, torch.Tensor]:
        """Add ``lambda_sem`` times :meth:`loss` to ``terms["loss"]`` and log it as ``sem``.

        Arguments
        ---------
        terms : dict
            The generator terms (with ``loss``).
        output : SemanticVITSOutput
            The generator's output.

        Returns
        -------
        dict
            ``terms`` with ``loss`` increased and ``sem`` (unweighted) added.
        """
        sem = self.loss(output)
        return {**terms, "loss": terms["loss"] + self.lambda_sem * sem, "sem": sem}


def semantic_distillation(hparams: dict) -> SemanticDistillation | None:
    """The term of a stage's hparams: None without ``lambda_sem`` (stage A).

    Arguments
    ---------
    hparams : dict
        The stage hparams (``lambda_sem``, ``p_teacher_start``,
        ``p_teacher_end``, ``p_teacher_steps``, ``detach_student``).

    Returns
    -------
    SemanticDistillation or None
    """
    if "lambda_sem" not in hparams:
        return None
    missing = [key for key in KEYS if key not in hparams]
    if missing:
        raise ConfigError(f"semantic distillation: the hparams lack {', '.join(missing)} (see hparams/train_B.yaml)")
    return SemanticDistillation(*(hparams[key] for key in KEYS))
