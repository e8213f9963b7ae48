"""Non-finite updates skipped on the device (semtts.update_gate): the host
path on the CPU, the fused-optimizer path on CUDA."""

import pytest
import torch

from semtts.errors import NonFiniteLossError
from semtts.update_gate import OVERFLOW_HALVINGS, RunningMeans, StepOutcomes, UpdateGate, build_optimizer


def make(device: str, precision_scaler: bool = False):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2).to(device)
    opt = build_optimizer(torch.optim.AdamW, net, device)
    scaler = torch.GradScaler(device if device != "cpu" else "cpu", enabled=precision_scaler)
    return net, opt, UpdateGate(opt, scaler)


def step(net, gate, loss_scale: float, max_norm=None):
    loss = net(torch.ones(3, 4, device=net.weight.device)).sum() * loss_scale
    gate.scaler.scale(loss).backward()
    ok, norm = gate.update([loss], max_norm)
    gate.optimizer.zero_grad(set_to_none=True)
    return ok, norm


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_skips_exactly_the_nonfinite_steps(device):
    net, opt, gate = make(device)
    assert gate.deferred == (device == "cuda") and bool(opt.defaults["fused"]) == (device == "cuda")
    ok, _ = step(net, gate, 1.0)
    after_one = [p.detach().clone() for p in net.parameters()]
    state_step = float(opt.state[net.weight]["step"])
    ok_bad, norm = step(net, gate, float("inf"))
    assert float(ok) == 1.0 and float(ok_bad) == 0.0
    assert all(torch.equal(a, p) for a, p in zip(after_one, net.parameters()))
    assert float(opt.state[net.weight]["step"]) == state_step == 1.0
    ok, norm = step(net, gate, 1.0, max_norm=1e-3)  # clipped update
    assert float(ok) == 1.0 and float(norm) > 1e-3 and float(opt.state[net.weight]["step"]) == 2.0
    assert not all(torch.equal(a, p) for a, p in zip(after_one, net.parameters()))


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("why", ["other network skipped", "non-finite loss"])
def test_an_enabled_scaler_skips_a_poisoned_step(device, why):
    # an enabled (fp16) scaler skips by its own overflow check: poison() must make the gradients non-finite
    net, opt, gate = make(device, precision_scaler=True)
    step(net, gate, 1.0)
    before = [p.detach().clone() for p in net.parameters()]
    state_step = float(opt.state[net.weight]["step"])
    scale, tracker = gate.scaler.get_scale(), int(gate.scaler._growth_tracker)
    loss = net(torch.ones(3, 4, device=device)).sum()
    gate.scaler.scale(loss).backward()
    if why == "other network skipped":
        ok, _ = gate.update([loss], None, also=torch.zeros((), device=device))
    else:
        ok, _ = gate.update([loss * float("nan")], None)  # the gradients themselves are finite
    assert float(ok) == 0.0 and all(torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert float(opt.state[net.weight]["step"]) == state_step
    # a skip for a non-finite loss says nothing about the scale: the scaler's back-off is undone
    assert (gate.scaler.get_scale(), int(gate.scaler._growth_tracker)) == (scale, tracker) == (65536.0, 1)
    step(net, gate, 1e30)  # finite loss, overflowing scaled gradients: the scaler's own back-off stays
    assert gate.scaler.get_scale() == scale / 2 and float(opt.state[net.weight]["step"]) == state_step


def test_running_means_leave_out_skipped_steps():
    running = RunningMeans()
    running.add("w", {"a": torch.tensor(1.0), "b": torch.tensor(3.0)})
    running.add("w", {"a": torch.tensor(float("nan")), "b": torch.tensor(9.0)}, weight=torch.tensor(0.0))
    assert running.means("w") == {"a": 1.0, "b": 3.0} and running.means("w") == {}
    running.add("x", {"a": torch.tensor(float("nan"))}, weight=torch.tensor(0.0))
    assert running.means("x") == {}


def test_step_outcomes_take_three_flags_per_step():
    outcomes = StepOutcomes(patience=2)
    with pytest.raises(ValueError, match="step 7 gave flags of shape \\(2,\\)"):
        outcomes.add(7, torch.ones(2))  # the scaler's flag cannot be left out (it was read as 'applied')
    outcomes.add(8, torch.tensor([1.0, 1.0, 0.0]))
    assert outcomes.settle() == 0 and outcomes.overflows == 1 and outcomes.total == 0


def test_overflows_at_every_scale_stop_training():
    # an fp16 scaler halves its scale at each overflow: a run this long is a NaN gradient from a finite loss
    outcomes = StepOutcomes(patience=2)
    limit = 2 + OVERFLOW_HALVINGS
    for step in range(1, limit + 1):
        outcomes.add(step, torch.tensor([1.0, 1.0, 0.0]))
    outcomes.add(limit + 1, torch.tensor([1.0, 1.0, 1.0]))  # an update ends the run
    outcomes.add(limit + 2, torch.tensor([1.0, 0.0, 1.0]))  # a skipped step neither ends nor extends it
    for step in range(limit + 3, 2 * limit + 3):
        outcomes.add(step, torch.tensor([1.0, 1.0, 0.0]))
    assert outcomes.settle() == 1 and outcomes.overflows_in_a_row == limit and outcomes.total == 1
    outcomes.add(2 * limit + 3, torch.tensor([1.0, 1.0, 0.0]))
    with pytest.raises(NonFiniteLossError, match=f"^training stopped at step {2 * limit + 3}: {limit + 1} steps in "
                                                 "a row had finite losses but fp16 gradients that overflowed"):
        outcomes.settle()


@pytest.mark.parametrize("limit", [0.5, 1e6, None])
@pytest.mark.parametrize("grads", ["float32", "bfloat16", "mixed", "inf"])
def test_clipping_is_torchs_clip_grad_norm(limit, grads):
    """The gate's clipping (foreach norms, no per-parameter host call) gives torch's norm and gradients:
    float32 or bfloat16 gradients, mixed types (torch's own function then), a non-finite gradient."""
    import copy

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    if grads in ("bfloat16", "mixed"):
        (net if grads == "bfloat16" else net[1]).to(torch.bfloat16)
    reference, x = copy.deepcopy(net), torch.randn(5, 4)
    for model in (net, reference):
        model[1](model[0](x.to(model[0].weight.dtype)).to(model[1].weight.dtype)).float().square().sum().backward()
        if grads == "inf":
            model[1].bias.grad[0] = float("inf")
    want = torch.nn.utils.clip_grad_norm_(reference.parameters(), limit or float("inf"))
    got = UpdateGate(torch.optim.AdamW(net.parameters()), torch.GradScaler("cpu", enabled=False)).clip(limit)
    torch.testing.assert_close(got, want)
    assert not got.requires_grad
    if grads == "inf" and limit is None:  # torch multiplies by inf / inf; the gate leaves the step's skip to it
        return
    for param, expected in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(param.grad, expected.grad, equal_nan=True)
    if grads == "float32":
        assert (limit is not None and float(want) > limit) == (limit == 0.5)  # only the first limit clips
