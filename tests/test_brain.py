"""Tests of semtts.brain.VITSBrain on the tiny model (CPU): learning, precision,
exact resume, interrupted checkpoints, non-finite steps, DDP and clipping."""

import functools
import math
import subprocess
import sys
from pathlib import Path

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch

from ddp_train_worker import (build_brain, load_tiny_hparams, synthetic_dataset, synthetic_items, varied_dataset,
                              write_corpus_yaml)
from semtts.brain import NonFiniteLossError
from semtts.checkpoint import TMP_PREFIX, make_checkpointer
from semtts.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CPU = {"device": "cpu", "noprogressbar": True}


def make_run(folder: Path, seed: int, overrides: dict | None = None, run_opts: dict | None = None,
             checkpoint: bool = True):
    """Hparams, checkpointer and brain of a tiny run in ``folder``."""
    torch.manual_seed(seed)
    hp = load_tiny_hparams(write_corpus_yaml(folder), overrides)
    checkpointer = None
    if checkpoint:
        checkpointer = make_checkpointer(hp["save_folder"], hp["generator"], hp["discriminator"], hp["epoch_counter"])
    return hp, checkpointer, build_brain(hp, {**CPU, **(run_opts or {})}, checkpointer)


def parameters(*modules: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for m in modules for p in m.parameters()]


def fixed_batch(n_items: int = 2) -> PaddedBatch:
    """Utterances exactly one decoder segment long (4096 samples): the window is fixed."""
    return PaddedBatch(synthetic_items(n_items, 4096, 5))


def mel_l1(brain, batch) -> float:
    """Reconstruction mel L1 in eval mode with a fixed posterior sample."""
    brain.modules.eval()
    with torch.random.fork_rng():
        torch.manual_seed(1)
        value = float(brain.evaluate_batch(batch, sb.Stage.VALID))
    brain.modules.train()
    return value


def test_training_one_batch_lowers_mel_l1(tmp_path):
    hp, _, brain = make_run(tmp_path, 0, {"log_interval": 1000, "audio_log_interval": 1000}, checkpoint=False)
    brain.on_fit_start()
    batch = fixed_batch()
    start, history = mel_l1(brain, batch), []
    for step in range(1, 301):
        brain.fit_batch(batch)
        if step % 10 == 0:
            history.append((step, round(mel_l1(brain, batch), 3)))
            if history[-1][1] <= 0.7 * start:
                break
    print(f"mel L1 {start:.3f} -> {history[-1][1]:.3f} after {history[-1][0]} steps: {history}")
    assert history[-1][1] <= 0.7 * start, history
    assert brain.optimizer_step == brain.global_step == history[-1][0] and brain.nonfinite_total == 0


def test_precision_flag_sets_the_compute_dtype(tmp_path):
    seen = {}
    for precision in ("fp32", "bf16"):
        _, _, brain = make_run(tmp_path / precision, 0, run_opts={"precision": precision}, checkpoint=False)
        brain.on_fit_start()
        def recorder(network: str, precision: str = precision):
            def hook(module, inputs, output):
                seen.setdefault((network, precision), output.dtype)
            return hook

        hooks = [
            brain.modules.generator.decoder.conv_pre.register_forward_hook(recorder("generator")),
            brain.modules.discriminator.discriminators[0].convs[0].register_forward_hook(recorder("discriminator")),
        ]
        loss = brain.fit_batch(fixed_batch())
        for hook in hooks:
            hook.remove()
        assert torch.isfinite(loss) and all(v.dtype == torch.float32 for v in brain.step_stats.values())
        assert next(brain.modules.generator.parameters()).dtype == torch.float32  # master weights
    assert seen == {("generator", "fp32"): torch.float32, ("discriminator", "fp32"): torch.float32,
                    ("generator", "bf16"): torch.bfloat16, ("discriminator", "bf16"): torch.bfloat16}
    # SpeechBrain refuses fp16 autocast on a CPU; the Brain says so in one line
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        make_run(tmp_path / "fp16", 0, run_opts={"precision": "fp16"}, checkpoint=False)


@pytest.mark.parametrize("option, value, message", [
    ("grad_accumulation_factor", 4, "--grad_accumulation_factor 4: not supported by the VITS Brain; both networks"),
    ("data_parallel_backend", True, "--data_parallel_backend True: not supported .*run.sh --ngpu N"),
    ("jit", True, "--jit True: not supported by the VITS Brain; use --compile"),
])
def test_run_options_the_gan_steps_cannot_honour_are_refused(tmp_path, option, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        make_run(tmp_path, 0, run_opts={option: value}, checkpoint=False)
    assert "\n" not in str(err.value)


class Killed(Exception):
    """Stands for the process being killed."""


def fit(brain, hp, kill_before_step: int | None = None) -> None:
    if kill_before_step is not None:
        def on_fit_batch_start(batch, should_step):
            if brain.global_step + 1 == kill_before_step:
                raise Killed

        brain.on_fit_batch_start = on_fit_batch_start
    brain.fit(hp["epoch_counter"], synthetic_dataset(8), synthetic_dataset(2, seed=7),
              train_loader_kwargs={"batch_size": 2, "shuffle": True}, valid_loader_kwargs={"batch_size": 2})


def test_resume_repeats_the_uninterrupted_run(tmp_path):
    overrides = {"number_of_epochs": 2, "keep_checkpoints": 1}
    opts = {"ckpt_interval_steps": 3}
    hp_a, _, brain_a = make_run(tmp_path / "a", 0, overrides, opts)
    fit(brain_a, hp_a)  # 2 epochs of 4 steps

    hp_b, _, brain_b = make_run(tmp_path / "b", 0, overrides, opts)
    with pytest.raises(Killed):
        fit(brain_b, hp_b, kill_before_step=4)  # intra-epoch checkpoint after step 3
    assert brain_b.global_step == 3
    hp_c, ckpter_c, brain_c = make_run(tmp_path / "b", 123, overrides, opts)  # other init, same folder
    fit(brain_c, hp_c)

    assert brain_a.global_step == brain_c.global_step == 8 and brain_c.optimizer_step == 8
    for opt in ("optimizer_g", "optimizer_d"):
        lr_a, lr_c = getattr(brain_a, opt).param_groups[0]["lr"], getattr(brain_c, opt).param_groups[0]["lr"]
        assert lr_a == lr_c == pytest.approx(2e-4 * 0.999875**2)
    for a, c in zip(parameters(hp_a["generator"], hp_a["discriminator"]),
                    parameters(hp_c["generator"], hp_c["discriminator"])):
        assert torch.allclose(a, c, rtol=0, atol=1e-6)
    # the right schedulers are checkpointed, and the best-by-mel-L1 policy kept a checkpoint with the metric
    assert ckpter_c.recoverables["scheduler_generator"].optimizer is brain_c.optimizer_g
    assert ckpter_c.recoverables["scheduler_discriminator"].optimizer is brain_c.optimizer_d
    metas = [c.meta for c in ckpter_c.list_checkpoints()]
    assert any("mel_l1" in m for m in metas) and max(m["step"] for m in metas) == 8

    # TensorBoard and the epoch log of the uninterrupted run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(hp_a["tensorboard_folder"]), size_guidance={"images": 0, "audio": 0}).Reload()
    tags = events.Tags()
    for tag in ("train/mel", "train/kl", "train/dur", "train/adv", "train/fm", "train/loss_d", "train/lr_g",
                "train/grad_norm_g", "train/grad_norm_d", "valid/mel_l1"):
        assert tag in tags["scalars"], tag
    assert {"train/alignment", "train/mel_generated", "valid/mel_synthesized"} <= set(tags["images"])
    assert {"train/generated", "valid/synthesized"} <= set(tags["audio"])
    assert "epoch: 2" in Path(hp_a["train_log"]).read_text()


def test_resume_mid_epoch_repeats_the_uninterrupted_run_with_dynamic_batches(tmp_path):
    from semtts.data.dataset import make_train_sampler

    overrides = {"number_of_epochs": 2, "keep_checkpoints": 1}
    opts = {"ckpt_interval_steps": 2}

    def fit_bucketed(brain, hp, seen, kill_before_step=None):
        data = varied_dataset(10)
        sampler = make_train_sampler(data, max_batch_seconds=1.0, num_buckets=2, seed=5, max_batch_size=2)

        def on_fit_batch_start(batch, should_step):
            if brain.global_step + 1 == kill_before_step:
                raise Killed
            seen.append(list(batch.id))

        brain.on_fit_batch_start = on_fit_batch_start
        brain.fit(hp["epoch_counter"], data, train_loader_kwargs={"batch_sampler": sampler})

    hp_a, _, brain_a = make_run(tmp_path / "a", 0, overrides, opts)
    batches_a = []
    fit_bucketed(brain_a, hp_a, batches_a)  # 2 epochs of 5 batches: buckets of 6 and 4, at most 2 each
    hp_b, _, brain_b = make_run(tmp_path / "b", 0, overrides, opts)
    batches_b = []
    with pytest.raises(Killed):
        fit_bucketed(brain_b, hp_b, batches_b, kill_before_step=4)  # checkpoint after step 2
    hp_c, _, brain_c = make_run(tmp_path / "b", 123, overrides, opts)
    fit_bucketed(brain_c, hp_c, batches_b)

    assert len(batches_a) == 10 and batches_a[:5] != batches_a[5:]  # reshuffled in epoch 2
    assert brain_b.global_step == 3
    assert batches_b == batches_a[:3] + batches_a[2:]  # step 3 again after the restart, then the rest
    assert brain_a.global_step == brain_c.global_step == 10
    for a, c in zip(parameters(hp_a["generator"], hp_a["discriminator"]),
                    parameters(hp_c["generator"], hp_c["discriminator"])):
        assert torch.allclose(a, c, rtol=0, atol=1e-6)


def test_resume_mid_epoch_under_another_batch_plan_is_refused(tmp_path, monkeypatch):
    # the resumed loader skips the batches trained before the kill: other batches under another plan
    overrides, opts = {"number_of_epochs": 1}, {"ckpt_interval_steps": 2}

    def fit_killed(brain, hp, batch_size, kill_before_step=None):
        def on_fit_batch_start(batch, should_step):
            if brain.global_step + 1 == kill_before_step:
                raise Killed

        brain.on_fit_batch_start = on_fit_batch_start
        brain.fit(hp["epoch_counter"], synthetic_dataset(8), train_loader_kwargs={"batch_size": batch_size})

    hp, _, brain = make_run(tmp_path / "batches", 0, overrides, opts)
    with pytest.raises(Killed):
        fit_killed(brain, hp, 2, kill_before_step=3)  # checkpoint after step 2 of 4
    hp, _, brain = make_run(tmp_path / "batches", 0, overrides, opts)
    with pytest.raises(ConfigError, match=r"CKPT\+.*: saved 2 batches into an epoch under another batch plan "
                                          r"\(batches 4 now 3, batch_size 2 now 3\)"):
        fit_killed(brain, hp, 3)
    assert brain.global_step == 0  # refused before the counters were restored or anything trained
    hp, _, brain = make_run(tmp_path / "batches", 0, {**overrides, "max_batch_seconds": 99.0}, opts)
    fit_killed(brain, hp, 2)  # the same plan resumes (bucketing's hparams do not cut fixed batches)
    assert brain.global_step == 4

    hp, _, brain = make_run(tmp_path / "loader", 0, overrides, opts)
    with pytest.raises(Killed):
        fit_killed(brain, hp, 2, kill_before_step=3)
    hp, _, brain = make_run(tmp_path / "loader", 0, overrides, opts)
    loader = brain.make_dataloader(synthetic_dataset(8), sb.Stage.TRAIN, batch_size=4)
    brain._batch_plan = None  # a ready-made loader given to fit() gets its plan there
    with pytest.raises(ConfigError, match=r"\(batches 4 now 2, batch_size 2 now 4\)"):
        brain.fit(hp["epoch_counter"], loader)

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it (the batches are the same here)
    hp, _, brain = make_run(tmp_path / "processes", 0, overrides, opts)
    with pytest.raises(Killed):
        fit_killed(brain, hp, 2, kill_before_step=3)
    monkeypatch.delenv("WORLD_SIZE")
    hp, _, brain = make_run(tmp_path / "processes", 0, overrides, opts)
    with pytest.raises(ConfigError, match=r"\(processes 2 now 1\).*same settings \(run.sh --ngpu 2\) until the "
                                          "epoch ends, or move the folder out"):
        fit_killed(brain, hp, 2)


def test_resuming_after_an_epoch_without_validation_starts_the_next_epochs_count(tmp_path):
    # without a validation set the end-of-epoch checkpoint is saved in on_stage_end(TRAIN), before
    # SpeechBrain sets its step counter back to 0 for the next epoch
    hp, _, brain = make_run(tmp_path, 0, {"number_of_epochs": 1})
    brain.fit(hp["epoch_counter"], synthetic_dataset(6), None, train_loader_kwargs={"batch_size": 2})
    assert brain.global_step == 3 and brain.step == 0
    _, _, resumed = make_run(tmp_path, 0, {"number_of_epochs": 1})
    resumed.on_fit_start()
    assert (resumed.step, resumed.avg_train_loss, resumed.global_step, resumed.optimizer_step) == (0, 0.0, 3, 3)


def test_checkpoint_cut_off_mid_save_is_ignored(tmp_path):
    hp, ckpter, brain = make_run(tmp_path, 0, {"number_of_epochs": 1}, {"ckpt_interval_steps": 1})
    saves = []

    def save_then_fail(obj, path):
        saves.append(path)
        if len(saves) == 2:
            raise OSError("killed while saving")
        torch.save(obj.state_dict(), path)

    ckpter.custom_save_hooks["discriminator"] = save_then_fail
    with pytest.raises(OSError, match="killed while saving"):
        fit(brain, hp)
    save = Path(hp["save_folder"])
    entries = sorted(p.name for p in save.iterdir())
    assert len(entries) == 2 and entries[0].startswith(TMP_PREFIX) and entries[1].startswith("CKPT+")
    saved_generator = torch.load(save / entries[1] / "generator.ckpt", weights_only=True)

    hp2, _, brain2 = make_run(tmp_path, 5, {"number_of_epochs": 1}, {"ckpt_interval_steps": 1})
    brain2.on_fit_start()  # resumes
    assert brain2.global_step == 1 and brain2.step == 1
    assert sorted(p.name for p in save.iterdir()) == entries[1:]
    for key, value in hp2["generator"].state_dict().items():
        assert torch.equal(value, saved_generator[key]), key


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_nonfinite_steps_are_skipped_counted_and_stop_training(tmp_path, device):
    # on CUDA the optimizers are fused and the skips decided on the device, read back by settle_steps
    _, _, brain = make_run(tmp_path, 0, run_opts={"nonfinite_patience": 2, "device": device}, checkpoint=False)
    brain.on_fit_start()
    assert brain.gate_g.deferred == brain.gate_d.deferred == (device == "cuda")
    batch, forward = fixed_batch(), brain.compute_forward
    brain.fit_batch(batch)
    poison = {"waveform": lambda p: p._replace(y_hat=p.y_hat * math.nan),
              "kl": lambda p: p._replace(output=p.output._replace(z_p=p.output.z_p * math.nan))}

    def step(kind: str | None) -> torch.Tensor:
        brain.compute_forward = (lambda b, s: poison[kind](forward(b, s))) if kind else forward
        loss = brain.fit_batch(batch)
        brain.settle_steps()
        return loss

    for n, kind in enumerate(("waveform", "kl"), start=1):  # D loss non-finite; reconstruction non-finite
        before = parameters(brain.modules.generator, brain.modules.discriminator)
        assert math.isnan(float(step(kind)))
        after = parameters(brain.modules.generator, brain.modules.discriminator)
        assert all(torch.equal(a, b) for a, b in zip(before, after)), kind
        assert (brain.nonfinite_total, brain.nonfinite_in_a_row, brain.optimizer_step) == (n, n, 1)
    assert math.isfinite(float(step(None))) and brain.nonfinite_in_a_row == 0 and brain.optimizer_step == 2
    step("waveform"), step("waveform")
    with pytest.raises(NonFiniteLossError, match="3 steps in a row .*nonfinite_patience 2") as err:
        step("waveform")
    assert "\n" not in str(err.value) and brain.nonfinite_total == 5


@pytest.mark.parametrize("compile_opts", [["--dynamic_batching", "True"],
                                          ["--compile", "--compile_module_keys", "flow", "duration_predictor",
                                           "discriminator"]],
                         ids=["eager_bucketed", "compiled"])
def test_ddp_processes_end_with_identical_parameters(tmp_path, compile_opts):
    # eager_bucketed: length-bucketed batches (SpeechBrain gives each process every other batch);
    # compiled: variable-length parts of the DDP-wrapped generator (dynamic shapes; the duration predictor block by
    # block) and the discriminator's judge
    write_corpus_yaml(tmp_path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "ddp_train_worker.py"), str(tmp_path), "--distributed_backend", "gloo",
               "--device", "cpu", "--noprogressbar", "--ckpt_interval_steps", "2", *compile_opts]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"params_rank{r}.pt", weights_only=True) for r in (0, 1))
    graphs = [int(rank.pop("compiled_graphs")) for rank in (rank0, rank1)]
    assert (graphs[0] > 0 and graphs[1] > 0) if "--compile" in compile_opts else graphs == [0, 0]
    assert int(rank0["global_step"]) == int(rank1["global_step"]) == 4  # 16 items / 2 ranks / batch 2
    if "--dynamic_batching" in compile_opts:  # every utterance once in the epoch, split between the processes
        assert sorted(int(i) for rank in (rank0, rank1) for i in rank.pop("trained_items")) == list(range(16))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "parameters differ between ranks"
    ckpts = list((tmp_path / "exp" / "stage_A" / "save").glob("CKPT+*"))
    rng = torch.load(ckpts[0] / "rng.ckpt", weights_only=True)
    assert len(ckpts) >= 1 and len(rng["ranks"]) == 2


def use_scalers(brain, init_scale: float) -> None:
    """Enabled gradient scalers on the CPU, as fp16 has on CUDA (SpeechBrain refuses fp16 on a CPU)."""
    brain.scaler_g = brain.gate_g.scaler = torch.GradScaler("cpu", init_scale=init_scale)
    brain.scaler_d = brain.gate_d.scaler = torch.GradScaler("cpu", init_scale=init_scale)


def test_max_grad_norm_clips_both_networks_after_unscaling(tmp_path):
    limit = 0.01
    runs = {}
    for scale in (None, 1024.0):  # scaled gradients (as with fp16): clipping must see the unscaled ones
        _, _, brain = make_run(tmp_path / str(scale), 0, run_opts={"max_grad_norm": limit}, checkpoint=False)
        brain.on_fit_start()
        if scale:
            use_scalers(brain, scale)
        norms = {}
        for name, opt in (("g", brain.optimizer_g), ("d", brain.optimizer_d)):
            def recording_step(*args, opt=opt, name=name, step=opt.step, **kwargs):
                grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
                norms[name] = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                                          for g in grads])))
                return step(*args, **kwargs)

            opt.step = recording_step
        brain.fit_batch(fixed_batch())
        runs[scale] = brain, norms
    (plain, plain_norms), (scaled, scaled_norms) = runs[None], runs[1024.0]
    for name in ("g", "d"):
        reported = float(scaled.step_stats[f"grad_norm_{name}"])
        assert reported > 10 * limit  # it had to clip
        assert reported == pytest.approx(float(plain.step_stats[f"grad_norm_{name}"]), rel=1e-5), name  # unscaled
        assert scaled_norms[name] == pytest.approx(limit, rel=1e-3) == plain_norms[name], name
    for a, b in zip(parameters(plain.modules.generator, plain.modules.discriminator),
                    parameters(scaled.modules.generator, scaled.modules.discriminator)):
        assert torch.allclose(a, b, rtol=0, atol=1e-7)


def test_an_fp16_overflow_is_the_scalers_skip_not_a_nonfinite_step(tmp_path):
    _, _, brain = make_run(tmp_path, 0, run_opts={"nonfinite_patience": 0}, checkpoint=False)
    brain.on_fit_start()
    use_scalers(brain, 2.0**127)  # every scaled gradient overflows
    before = parameters(brain.modules.generator, brain.modules.discriminator)
    loss = brain.fit_batch(fixed_batch())
    brain.settle_steps()  # patience 0: a counted non-finite step would stop training here
    assert math.isfinite(float(loss))  # the losses themselves are finite
    assert all(torch.equal(a, b) for a, b in zip(before, parameters(brain.modules.generator,
                                                                      brain.modules.discriminator)))
    assert (brain.outcomes.overflows, brain.nonfinite_total, brain.optimizer_step) == (1, 0, 0)
    assert brain.scaler_g.get_scale() == brain.scaler_d.get_scale() == 2.0**126  # each scaler lowered its scale
    assert brain.running.means("window") == {}  # no infinite gradient norm in the logged means
    use_scalers(brain, 1.0)
    brain.fit_batch(fixed_batch())
    brain.settle_steps()
    assert (brain.outcomes.overflows, brain.optimizer_step) == (1, 1)
    assert all(math.isfinite(v) for v in brain.running.means("window").values())


def test_a_skipped_step_leaves_the_fp16_scales_as_they_were(tmp_path):
    # a non-finite loss says nothing about the loss scale (which only scales the backward pass)
    _, _, brain = make_run(tmp_path, 0, checkpoint=False)
    brain.on_fit_start()
    use_scalers(brain, 1.0)
    forward = brain.compute_forward
    brain.compute_forward = lambda b, s: (lambda p: p._replace(output=p.output._replace(z_p=p.output.z_p * math.nan)))(
        forward(b, s))
    brain.fit_batch(fixed_batch())
    brain.settle_steps()
    assert (brain.nonfinite_total, brain.outcomes.overflows, brain.optimizer_step) == (1, 0, 0)
    assert brain.scaler_g.get_scale() == brain.scaler_d.get_scale() == 1.0


def test_a_resumed_optimizer_keeps_this_runs_flags(tmp_path):
    # an unfused run's checkpoint (a CPU run's, an older semtts's) resumed where the optimizers are fused
    # (on CUDA): the checkpoint's fused=None would turn off the fused kernel and its device-side skip
    overrides, opts = {"number_of_epochs": 1}, {"ckpt_interval_steps": 2}
    hp, _, brain = make_run(tmp_path, 0, overrides, opts)
    with pytest.raises(Killed):
        fit(brain, hp, kill_before_step=3)
    hp, _, brain = make_run(tmp_path, 0, overrides, opts)
    for key in ("generator_opt_class", "discriminator_opt_class"):
        setattr(brain.hparams, key, functools.partial(getattr(brain.hparams, key), fused=True))
    fit(brain, hp)
    assert brain.global_step == brain.optimizer_step == 4
    for opt in (brain.optimizer_g, brain.optimizer_d):
        assert [group["fused"] for group in opt.param_groups] == [True] * len(opt.param_groups)
        assert float(next(iter(opt.state.values()))["step"]) == 4.0  # the state came from the checkpoint


def test_speaker_inputs_follow_the_speaker_mode(tmp_path):
    from semtts.errors import DataError

    items = synthetic_items(2, 4096, 5)
    # speaker vectors (speaker / utterance modes)
    torch.manual_seed(0)
    hp = load_tiny_hparams(write_corpus_yaml(tmp_path / "emb"), {"speaker_mode": "utterance", "spk_embed_dim": 4},
                           n_speakers=0)
    brain = build_brain(hp, CPU)
    brain.on_fit_start()
    with pytest.raises(DataError, match="no spk_embed"):
        brain.fit_batch(PaddedBatch(items))
    embedded = PaddedBatch([{**item, "spk_embed": torch.randn(4)} for item in items])
    assert brain._speaker_inputs(embedded)["spk_embed"].shape == (2, 4)
    assert torch.isfinite(brain.fit_batch(embedded))
    # speaker ids: unknown speakers are named; a one-speaker model takes none
    _, _, brain = make_run(tmp_path / "sid", 0, checkpoint=False)
    brain.on_fit_start()
    with pytest.raises(DataError, match="utt1: speaker not in the training speaker table"):
        brain.fit_batch(PaddedBatch([items[0], {**items[1], "spk_id": -1}]))
    hp = load_tiny_hparams(write_corpus_yaml(tmp_path / "one"), n_speakers=0)
    brain = build_brain(hp, CPU)
    brain.on_fit_start()
    assert brain._speaker_inputs(PaddedBatch(items)) == {}
    assert torch.isfinite(brain.fit_batch(PaddedBatch(items)))


def test_dynamic_batches_reshuffle_every_epoch_in_one_process(tmp_path):
    # SpeechBrain reseeds only self.train_sampler: the length-bucketed batch sampler must be it
    from speechbrain.dataio.dataset import DynamicItemDataset

    from semtts.data.dataset import make_train_sampler

    _, _, brain = make_run(tmp_path, 0, checkpoint=False)
    data = DynamicItemDataset({f"u{i}": {"duration": 1.0 + i % 5 * 0.1} for i in range(40)})
    sampler = make_train_sampler(data, max_batch_seconds=5.0, num_buckets=2, seed=3)
    brain.make_dataloader(data, sb.Stage.TRAIN, batch_sampler=sampler)
    assert brain.train_sampler is sampler
    orders = []
    for epoch in (1, 2):
        brain.train_sampler.set_epoch(epoch)  # what SpeechBrain's _fit_train does at each epoch
        orders.append([list(batch) for batch in sampler])
    assert orders[0] != orders[1]


def test_a_non_finite_validation_score_never_counts_as_the_best(tmp_path):
    hp, checkpointer, brain = make_run(tmp_path, 0, {"keep_checkpoints": 1})
    brain.on_fit_start()
    for epoch, score in enumerate([0.5, float("nan"), 0.9, float("nan")], start=1):
        brain._save_checkpoint(epoch, score)
        assert checkpointer.find_checkpoint(min_key="mel_l1").meta["epoch"] == 1  # kept, and still the best
        if score != score:
            assert checkpointer.find_checkpoint(max_key="epoch").meta["mel_l1"] == float("inf")


def test_the_progress_bar_mean_leaves_out_skipped_steps(tmp_path):
    _, _, brain = make_run(tmp_path, 0, checkpoint=False)
    brain.on_fit_start()
    avg = 0.0
    for step, loss in enumerate((float("nan"), 1.0, float("nan"), 4.0), start=1):  # an epoch starting skipped
        brain.step = step
        avg = brain.update_average(torch.tensor(loss), avg)
    assert float(brain._avg_loss) == 2.5


def test_a_checkpoint_save_never_stops_training_by_itself(tmp_path):
    # _save runs on the main process only: it counts the pending skips but leaves stopping to the
    # next regular settle, which every DDP process runs at the same step
    _, _, brain = make_run(tmp_path, 0, run_opts={"nonfinite_patience": 1}, checkpoint=False)
    for step in (1, 2):
        brain.outcomes.add(step, torch.tensor([1.0, 0.0, 1.0]))
    brain._save(tmp_path / "counters.yaml")
    assert (brain.nonfinite_total, brain.nonfinite_in_a_row, brain.optimizer_step) == (2, 2, 0)
    with pytest.raises(NonFiniteLossError, match="stopped at step 2: 2 steps in a row"):
        brain.settle_steps()


def test_intra_epoch_checkpoints_under_ddp_broadcast_only_every_log_interval(tmp_path, monkeypatch):
    # SpeechBrain broadcasts its decision at every step under DDP (a collective, and with NCCL a host
    # sync); a step count needs no broadcast, and the clock is compared every log_interval steps
    import speechbrain.core

    asked = []
    monkeypatch.setattr(speechbrain.core.Brain, "_should_save_intra_epoch_ckpt",
                        lambda self, last, steps: asked.append(self.global_step) or True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    _, _, by_time = make_run(tmp_path / "minutes", 0, run_opts={"ckpt_interval_minutes": 0.001})
    _, _, by_steps = make_run(tmp_path / "steps", 0, run_opts={"ckpt_interval_steps": 5})
    saved = []
    for step in range(1, 9):
        by_time.global_step = by_steps.global_step = step
        if by_time._should_save_intra_epoch_ckpt(last_ckpt_time=0.0, steps_since_ckpt=step):
            saved.append(step)
        assert by_steps._should_save_intra_epoch_ckpt(last_ckpt_time=0.0, steps_since_ckpt=step) == (step >= 5)
    assert asked == saved == [2, 4, 6, 8]  # log_interval 2 in the tiny run: the only collective calls
