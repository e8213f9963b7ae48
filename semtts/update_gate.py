"""Skipping non-finite GAN updates, and summing losses, without a host sync in every step.

A training step must not update a network whose loss or gradients are not
finite. Deciding that on the host (``if torch.isfinite(loss): step()``)
stalls the GPU queue twice per GAN step. With a *fused* optimizer (AdamW
``fused=True``) the decision can stay on the device: the optimizer takes a
``found_inf`` tensor and leaves parameters, moments and step count untouched
where it is nonzero, exactly as :class:`torch.GradScaler` uses it for fp16.

:class:`UpdateGate` does that for one optimizer and its scaler, and keeps
the per-step outcomes on the device until the caller reads them all back
at once (``VITSBrain.settle_steps`` every ``log_interval`` steps, at
the end of an epoch and before a checkpoint). With an optimizer that cannot
skip on the device (unfused, or on the CPU where a sync costs nothing) it
decides on the host at once. :class:`RunningMeans` sums the losses of the
updated steps on the device until their means are read.

Example
-------
>>> net = torch.nn.Linear(2, 1)
>>> opt = torch.optim.AdamW(net.parameters(), lr=0.1)
>>> gate = UpdateGate(opt, torch.GradScaler("cpu", enabled=False))
>>> gate.deferred                                   # unfused: decided on the host
False
>>> net(torch.ones(1, 2)).sum().backward()
>>> ok = gate.finite(torch.tensor(float("nan")))   # a non-finite loss
>>> before = net.weight.detach().clone()
>>> gate.step(ok)
>>> bool(torch.equal(before, net.weight)), opt.state == {}
(True, True)
"""

import inspect
import logging
import math
from typing import Any

import torch

from semtts.errors import NonFiniteLossError

__all__ = ["RunningMeans", "StepOutcomes", "UpdateGate", "build_optimizer", "keep_implementation_flags",
           "supports_device_skip"]

logger = logging.getLogger(__name__)

OVERFLOW_HALVINGS = 40
"""fp16 overflows in a row tolerated beyond the patience: the scaler halves its
scale at each, and 2**40 below its start no finite gradient overflows."""


def build_optimizer(opt_class: Any, module: torch.nn.Module, device: str | torch.device) -> torch.optim.Optimizer:
    """``opt_class(module.parameters())``, fused on CUDA when the class offers
    it (one kernel per step, and non-finite steps skipped on the device)
    unless the hparams set ``fused`` themselves.

    Arguments
    ---------
    opt_class : callable
        The optimizer class or a partial of it (``!name:torch.optim.AdamW``).
    module : torch.nn.Module
        Whose parameters it optimizes.
    device : str or torch.device
        Where they live.

    Returns
    -------
    torch.optim.Optimizer

    Example
    -------
    >>> opt = build_optimizer(torch.optim.AdamW, torch.nn.Linear(2, 1), "cpu")
    >>> print(opt.defaults["fused"])  # fused only on CUDA
    None
    """
    preset = getattr(opt_class, "keywords", None) or {}
    fused = torch.device(device).type == "cuda" and "fused" not in preset and _takes_fused(opt_class)
    return opt_class(module.parameters(), **({"fused": True} if fused else {}))


IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")
"""An optimizer's flags that choose how it computes, not what: after a checkpoint is loaded they are
this run's (fused on CUDA), not the saving run's."""


def keep_implementation_flags(optimizer: torch.optim.Optimizer) -> bool:
    """After ``optimizer.load_state_dict``: give every parameter group this
    run's :data:`IMPLEMENTATION_FLAGS` again (``load_state_dict`` takes the
    checkpoint's, so a CPU or unfused checkpoint resumed on CUDA would make a
    fused AdamW run unfused and refuse the device-side skip), and its state
    the placement they need (a fused step counter on the parameters' device).

    Arguments
    ---------
    optimizer : torch.optim.Optimizer
        An optimizer whose state was just loaded.

    Returns
    -------
    bool
        Whether any flag had to change.

    Example
    -------
    >>> net = torch.nn.Linear(2, 1)
    >>> saved = torch.optim.AdamW(net.parameters())           # an unfused run's checkpoint
    >>> net(torch.ones(1, 2)).sum().backward(); saved.step()
    >>> opt = torch.optim.AdamW(net.parameters(), fused=True)
    >>> opt.load_state_dict(saved.state_dict())
    >>> opt.param_groups[0]["fused"], keep_implementation_flags(opt), opt.param_groups[0]["fused"]
    (None, True, True)
    """
    wanted = {key: optimizer.defaults[key] for key in IMPLEMENTATION_FLAGS if key in optimizer.defaults}
    if all(group.get(key) == value for group in optimizer.param_groups for key, value in wanted.items()):
        return False
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        group.update(wanted)
    optimizer.load_state_dict(state)  # places the state as the flags need it (torch reads the groups' flags)
    return True


def _takes_fused(opt_class: Any) -> bool:
    """Whether the optimizer class (or partial) has a ``fused`` argument."""
    try:
        return "fused" in inspect.signature(getattr(opt_class, "func", opt_class)).parameters
    except (TypeError, ValueError):  # classes without a readable signature
        return False


def supports_device_skip(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` can skip a step on the device (a fused Adam/AdamW on CUDA).

    Arguments
    ---------
    optimizer : torch.optim.Optimizer
        The optimizer.

    Returns
    -------
    bool
    """
    if not getattr(optimizer, "_step_supports_amp_scaling", False):
        return False
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return bool(params) and all(p.device.type == "cuda" for p in params)


class UpdateGate:
    """One optimizer's update, applied only where a device flag says the step is finite.

    Arguments
    ---------
    optimizer : torch.optim.Optimizer
        The optimizer.
    scaler : torch.GradScaler
        Its gradient scaler (enabled for fp16).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.GradScaler):
        self.optimizer = optimizer
        self.scaler = scaler
        self.deferred = supports_device_skip(optimizer)

    @staticmethod
    def finite(*values: torch.Tensor) -> torch.Tensor:
        """``1.0`` if every value is finite on every process, else ``0.0`` (a device scalar).

        Arguments
        ---------
        *values : torch.Tensor
            Losses or norms.

        Returns
        -------
        torch.Tensor
        """
        flag = torch.stack([torch.isfinite(v.detach().float()).all() for v in values]).all().float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return flag

    def poison(self, ok: torch.Tensor) -> None:
        """Make the gradients non-finite where ``ok`` is 0, so that an enabled
        (fp16) scaler skips the step by its own overflow check; call it before
        the scaler unscales them.

        Arguments
        ---------
        ok : torch.Tensor
            Device scalar, 1.0 to keep the step.
        """
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            factor = torch.where(ok > 0, 1.0, float("nan")).to(grads[0].dtype)
            torch._foreach_mul_(grads, factor)

    @torch.no_grad()
    def clip(self, max_grad_norm: float | None) -> torch.Tensor:
        """Unscale the gradients, clip them to ``max_grad_norm`` (none if 0 or
        unset) and return their norm before clipping (a device tensor).

        Arguments
        ---------
        max_grad_norm : float, optional
            The largest total norm.

        Returns
        -------
        torch.Tensor
        """
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        with_grad = [p for p in params if p.grad is not None]
        if not with_grad:  # a zero norm where the other checks live
            return torch.zeros((), device=params[0].device if params else None)
        limit = max_grad_norm if max_grad_norm and max_grad_norm > 0 else math.inf
        grads = [p.grad for p in with_grad]
        if len({(g.device, g.dtype) for g in grads}) > 1:
            return torch.nn.utils.clip_grad_norm_(with_grad, limit)
        # torch's clip_grad_norm_, without its per-tensor .to(device) calls (one host call per parameter)
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if limit < math.inf:
            torch._foreach_mul_(grads, torch.clamp(limit / (norm + 1e-6), max=1.0))
        return norm

    def update(self, checks: list[torch.Tensor], max_grad_norm: float | None,
               also: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip, then update where ``checks`` (and, without a scaler, the
        gradient norm) are finite on every process and the flag ``also`` is 1.

        Arguments
        ---------
        checks : list of torch.Tensor
            Losses that must be finite.
        max_grad_norm : float, optional
            Gradient clipping (:meth:`clip`).
        also : torch.Tensor, optional
            Another device flag the update needs (the discriminator's, for the generator).

        Returns
        -------
        ok : torch.Tensor
            The device flag of this update.
        norm : torch.Tensor
            The gradient norm before clipping.
        """
        if self.scaler.is_enabled():  # fp16: the scaler's overflow check covers the gradients
            ok = self.finite(*checks)
            ok = ok if also is None else ok * also
            self.poison(ok)
            norm = self.clip(max_grad_norm)
        else:
            norm = self.clip(max_grad_norm)
            ok = self.finite(*checks, norm)
            ok = ok if also is None else ok * also
        self.step(ok)
        return ok, norm

    def step(self, ok: torch.Tensor) -> None:
        """Update where ``ok`` is 1 (no host sync when :attr:`deferred`), then update the scaler.

        Arguments
        ---------
        ok : torch.Tensor
            Device scalar, 1.0 to update. With an enabled scaler, :meth:`poison`
            must already have folded it into the gradients.
        """
        if self.scaler.is_enabled():
            # the scaler skips on its own overflow check (poisoned gradients
            # included), on the device for a fused optimizer
            kept = self._scale_state()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._restore_scale_where_skipped(ok, kept)
            return
        if self.deferred:
            self.optimizer.found_inf = 1.0 - ok
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        elif bool(ok.item()):
            self.optimizer.step()
        self.scaler.update()

    def _scale_state(self) -> list[torch.Tensor]:
        """Copies of the enabled scaler's scale and growth tracker (none before its first ``scale``)."""
        tensors = [getattr(self.scaler, name, None) for name in ("_scale", "_growth_tracker")]
        return [t.clone() for t in tensors] if all(isinstance(t, torch.Tensor) for t in tensors) else []

    def _restore_scale_where_skipped(self, ok: torch.Tensor, kept: list[torch.Tensor]) -> None:
        """Undo the scaler's back-off where ``ok`` is 0: the step was skipped for a
        non-finite loss (its gradients poisoned), which says nothing about the
        scale, which only scales the backward pass. On the device, no sync."""
        for name, before in zip(("_scale", "_growth_tracker"), kept):
            now = getattr(self.scaler, name)
            now.copy_(torch.where(ok.to(now.device) > 0, now, before))


class RunningMeans:
    """Named running sums of loss terms on the device, read back as means.

    Example
    -------
    >>> running = RunningMeans()
    >>> running.add("train", {"mel": torch.tensor(2.0)})
    >>> running.add("train", {"mel": torch.tensor(float("nan"))}, weight=torch.tensor(0.0))  # a skipped step
    >>> running.add("train", {"mel": torch.tensor(4.0)})
    >>> running.means("train"), running.means("train")
    ({'mel': 3.0}, {})
    """

    def __init__(self):
        self._sums: dict[str, list] = {}

    def add(self, names: str | tuple[str, ...], stats: dict[str, torch.Tensor],
            weight: torch.Tensor | None = None) -> None:
        """Add one step's terms, times ``weight`` (0: a skipped step, left out), to one or several sums.

        Arguments
        ---------
        names : str or tuple of str
            The sums (``window``, ``epoch``, a stage name).
        stats : dict of str to torch.Tensor
            Scalar terms.
        weight : torch.Tensor, optional
            Device scalar, 1 by default.
        """
        keys = list(stats)
        values = torch.stack([v.float() for v in stats.values()])
        weight = values.new_ones(()) if weight is None else weight.float()
        values = torch.where(weight > 0, values, 0.0) * weight
        for name in (names,) if isinstance(names, str) else names:
            current = self._sums.get(name)
            if current is None or current[0] != keys:
                self._sums[name] = [keys, values, weight]
            else:
                current[1] = current[1] + values
                current[2] = current[2] + weight

    def means(self, name: str) -> dict[str, float]:
        """The means of a sum (one host sync), which is then reset; ``{}`` if empty.

        Arguments
        ---------
        name : str
            The sum.

        Returns
        -------
        dict of str to float
        """
        current = self._sums.pop(name, None)
        if current is None:
            return {}
        keys, values, count = current
        *sums, count = torch.cat([values, count.reshape(1)]).tolist()  # one read-back
        return dict(zip(keys, (total / count for total in sums))) if count else {}

    def reset(self, name: str) -> None:
        """Drop a sum.

        Arguments
        ---------
        name : str
            The sum.
        """
        self._sums.pop(name, None)


class StepOutcomes:
    """Which networks each training step updated, kept on the device until
    read back in one sync; counts the skipped steps and decides when too many
    in a row must stop training.

    Arguments
    ---------
    patience : int
        Skipped steps in a row that are tolerated; one more stops training.

    A step with finite losses that an fp16 gradient scaler skipped
    (overflowing gradients, a third flag of 0) is not an update either, but
    it is the scaler's routine work, not a failure: it is counted in
    :attr:`overflows` and neither breaks nor extends a run of skipped steps.
    The scaler halves its scale at each, so more than ``patience`` +
    :data:`OVERFLOW_HALVINGS` of them in a row mean gradients that are not
    finite at any scale (a NaN from a finite loss): that stops training too.

    Example
    -------
    >>> outcomes = StepOutcomes(patience=1)
    >>> for step, flags in enumerate(([1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]), start=1):
    ...     outcomes.add(step, torch.tensor(flags))        # [discriminator, generator, scaler applied]
    >>> outcomes.settle(stop=False)                        # updated steps
    1
    >>> outcomes.total, outcomes.in_a_row, outcomes.overflows, outcomes.stop_reason[:29]
    (2, 2, 1, 'training stopped at step 4: 2')
    """

    def __init__(self, patience: int):
        self.patience = int(patience)
        self.total = 0  # skipped steps
        self.in_a_row = 0
        self.overflows = 0  # steps an fp16 scaler skipped (finite losses, overflowing gradients)
        self.overflows_in_a_row = 0
        self.stop_reason: str | None = None  # set when the patience runs out
        self.pending: list[tuple[int, torch.Tensor]] = []  # (step, device [d_ok, g_ok, applied]) not yet read back

    def add(self, step: int, flags: torch.Tensor) -> None:
        """Keep a step's device flags ``[d_ok, g_ok, applied]`` (nothing read back).

        Arguments
        ---------
        step : int
            The step number.
        flags : torch.Tensor
            ``[3]``: 1 where the discriminator / generator passed its checks, and a third
            flag, 0 where an fp16 gradient scaler then skipped either update (overflow), 1 otherwise.
        """
        if flags.shape != (3,):
            raise ValueError(f"StepOutcomes.add: step {step} gave flags of shape {tuple(flags.shape)}, expected (3,)")
        self.pending.append((step, flags))

    def settle(self, stop: bool = True) -> int:
        """Read back the pending outcomes (one host sync), log each skipped
        step, and count them.

        Arguments
        ---------
        stop : bool
            Raise :class:`NonFiniteLossError` now if the patience ran out
            (also if it ran out at an earlier call with ``stop=False``).

        Returns
        -------
        int
            The number of steps that updated both networks.
        """
        updated = 0
        if self.pending:
            steps = [step for step, _ in self.pending]
            flags = torch.stack([flag for _, flag in self.pending]).tolist()
            self.pending = []
            for step, (d_ok, g_ok, applied) in zip(steps, flags):
                if d_ok and g_ok and not applied:
                    self._overflowed(step)
                elif d_ok and g_ok:
                    updated += 1
                    self.in_a_row = self.overflows_in_a_row = 0
                else:
                    self._skipped(step, "discriminator and generator" if not d_ok else "generator")
        if stop and self.stop_reason is not None:
            raise NonFiniteLossError(self.stop_reason)
        return updated

    def _overflowed(self, step: int) -> None:
        self.overflows += 1
        self.overflows_in_a_row += 1
        if self.overflows_in_a_row > self.patience + OVERFLOW_HALVINGS and self.stop_reason is None:
            self.stop_reason = (
                f"training stopped at step {step}: {self.overflows_in_a_row} steps in a row had finite losses "
                f"but fp16 gradients that overflowed at every scale (--nonfinite_patience {self.patience} + "
                f"{OVERFLOW_HALVINGS} halvings of the scale); try --precision bf16 or fp32, or a lower lr"
            )

    def _skipped(self, step: int, what: str) -> None:
        self.total += 1
        self.in_a_row += 1
        logger.warning(f"step {step}: non-finite loss or gradients, {what} update skipped "
                       f"({self.in_a_row} in a row, {self.total} in total)")
        if self.in_a_row > self.patience and self.stop_reason is None:
            self.stop_reason = (
                f"training stopped at step {step}: {self.in_a_row} steps in a row had "
                f"non-finite losses or gradients (--nonfinite_patience {self.patience}); "
                "try a lower lr, --precision fp32 or a smaller --max_grad_norm"
            )
