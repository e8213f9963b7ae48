"""The VITS training Brain: GAN training of the generator against the
discriminator, with SpeechBrain's loop, precision, DDP and checkpoints.

One training step (:meth:`VITSBrain.fit_batch`), in the order of VITS:

1. the generator runs on the batch (posterior, flow, alignment, duration
   loss, one decoded window per item); spectrograms are computed here, on
   the device, in float32 (:mod:`semtts.audio`);
2. the discriminator learns to tell the real windows from the (detached)
   generated ones (least-squares loss);
3. the generator learns from the mel L1, KL, duration, adversarial and
   feature-matching losses against the updated discriminator.

Both updates honour ``--precision`` (autocast through SpeechBrain's
``training_ctx``; one gradient scaler per optimizer for fp16; losses and
STFTs in float32) and ``--max_grad_norm`` (gradients unscaled, then clipped,
per network). A step whose discriminator loss, reconstruction losses or
discriminator gradient norm is not finite updates neither network; a
non-finite total generator loss or generator gradient norm skips the
generator update (the discriminator's is done by then). Either is counted
and logged (the fp16 scales left as they were), and more than
``--nonfinite_patience`` such steps in a row stop training with
:class:`NonFiniteLossError`. Under DDP all processes agree on every skip.
With fp16, overflowing scaled gradients are the scalers' business, as in
``torch.GradScaler``: that network's update is skipped and its scale
lowered; such a step is not counted as an update, nor in the loss means,
nor against the patience, unless a run of them outlasts it by 40 halvings
of the scale (gradients not finite at any scale).

Stages A, B and C differ by hparams, not by subclasses. The checkpoint
(:func:`semtts.checkpoint.make_checkpointer`) gets both optimizers and
schedulers, the fp16 scalers, the step counters and the data-loader position
from this class; when and what it saves is :mod:`semtts.brain_checkpoints`.

Example
-------
>>> VITSForward._fields  # what compute_forward hands to the losses (see VITSBrain for a step)
('output', 'y', 'y_hat', 'mel', 'mel_real', 'mel_fake', 'spec_lengths', 'speaker')
"""

import contextlib
import logging
from pathlib import Path
from typing import Any, NamedTuple

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.distributed import if_main_process

from semtts.brain_checkpoints import CheckpointedTraining, batch_plan
from semtts.compiled_parts import begin_step, compile_parts, uses_cuda_graphs
from semtts.data.dataset import absolute_lengths, check_speaker_mode, speaker_inputs
from semtts.errors import ConfigError, DataError, NonFiniteLossError
from semtts.length_padding import check_multiple, pad_length_to
from semtts.run_options import check_run_options
from semtts.lobes.vits.input_checks import int64_on
from semtts.lobes.vits.segments import slice_segments
from semtts.lobes.vits.synthesizer import VITSOutput
from semtts.losses import MaskedL1, kl_loss, stochastic_duration_loss
from semtts.semantic_distillation import semantic_distillation
from semtts.speaker_consistency import speaker_consistency_loss
from semtts.tensorboard_media import log_media
from semtts.update_gate import RunningMeans, StepOutcomes, UpdateGate, build_optimizer, keep_implementation_flags

__all__ = ["NonFiniteLossError", "VITSForward", "VITSBrain"]

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("spectrogram", "generator_opt_class", "discriminator_opt_class", "scheduler_class", "generator_loss",
                 "discriminator_loss", "speaker_mode", "log_interval", "audio_log_interval", "keep_checkpoints")
EPOCH_STATS = ("loss_g", "loss_d", "mel", "kl", "dur", "adv", "fm", "spk", "sem")
"""Training terms written to the epoch log (TensorBoard gets them all)."""
RUN_OPTIONS_LOGGED = ("precision", "max_grad_norm", "nonfinite_patience", "ckpt_interval_steps",
                      "ckpt_interval_minutes")
class VITSForward(NamedTuple):
    """What :meth:`VITSBrain.compute_forward` returns."""

    output: VITSOutput
    """The generator's training output."""
    y: torch.Tensor
    """``[B, 1, S]`` real waveform windows (S = segment frames x hop)."""
    y_hat: torch.Tensor
    """``[B, 1, S]`` generated windows."""
    mel: torch.Tensor
    """``[B, n_mels, T_spec]`` float32 log mel of the whole utterances."""
    mel_real: torch.Tensor
    """``[B, n_mels, S / hop]`` the windows of ``mel``."""
    mel_fake: torch.Tensor
    """``[B, n_mels, S / hop]`` float32 log mel of ``y_hat``."""
    spec_lengths: torch.Tensor
    """``[B]`` frames per utterance."""
    speaker: dict
    """The speaker keyword arguments given to the generator."""


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return module
        module = inner


class VITSBrain(CheckpointedTraining, sb.Brain):
    """Train the VITS generator and its discriminator (SpeechBrain Brain).

    Arguments
    ---------
    modules : dict
        ``{"generator": VITSSynthesizer, "discriminator": MultiPeriodDiscriminator}``.
    opt_class : None
        Not used: the optimizers come from ``generator_opt_class`` and
        ``discriminator_opt_class`` in the hparams.
    hparams : dict
        The merged stage hparams: ``spectrogram`` (SpectrogramConfig),
        ``generator_opt_class``, ``discriminator_opt_class``,
        ``scheduler_class`` (per-epoch, one per optimizer),
        ``generator_loss`` (VITSGeneratorLoss), ``discriminator_loss``,
        ``speaker_mode`` (sid | speaker | utterance), ``log_interval``,
        ``audio_log_interval`` (steps), ``keep_checkpoints``; optional
        ``tensorboard_folder``, ``train_logger``, ``seed``, ``c_spk`` (> 0: the
        CAM++ speaker-consistency term, :mod:`semtts.speaker_consistency`),
        ``lambda_sem`` and its schedule (stages B, C: :mod:`semtts.semantic_distillation`),
        ``pad_frames_to`` and ``pad_tokens_to`` (:mod:`semtts.length_padding`).
    run_opts : dict or RunOptions, optional
        SpeechBrain's run options (``--device``, ``--precision``, ...).
    checkpointer : AtomicCheckpointer, optional
        From :func:`semtts.checkpoint.make_checkpointer`.

    Example
    -------
    >>> import tempfile
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> folder = Path(__file__).resolve().parents[1] / "hparams"
    >>> hp = load_hyperpyyaml((folder / "model" / "vits_tiny.yaml").read_text(),
    ...                       {"n_speakers": 2, "disc_periods": [2]})
    >>> hp.update(load_hyperpyyaml((folder / "train_A.yaml").read_text(), {"output_folder": tempfile.mkdtemp()}))
    >>> brain = VITSBrain({"generator": hp["generator"], "discriminator": hp["discriminator"]},
    ...                   hparams=hp, run_opts={"device": "cpu", "precision": "bf16"})
    >>> brain.on_fit_start()
    >>> items = [{"sig": torch.randn(8192) * 0.1, "token_ids": torch.arange(1, 9), "spk_id": i} for i in (0, 1)]
    >>> batch = PaddedBatch(items)  # sig [2, 8192], token_ids [2, 8], spk_id [2]
    >>> loss = brain.fit_batch(batch)
    >>> loss.shape, brain.global_step, brain.optimizer_step, brain.step_stats["mel"].dtype
    (torch.Size([]), 1, 1, torch.float32)
    >>> sorted(key for key in brain.step_stats if not key[-1].isdigit())
    ['adv', 'dur', 'fm', 'grad_norm_d', 'grad_norm_g', 'kl', 'loss_d', 'loss_g', 'mel']
    """

    def __init__(
        self,
        modules: dict[str, torch.nn.Module] | None = None,
        opt_class: Any = None,
        hparams: dict | None = None,
        run_opts: Any = None,
        checkpointer: Any = None,
    ) -> None:
        if opt_class is not None:
            raise ConfigError("VITSBrain: give generator_opt_class and discriminator_opt_class in the hparams")
        missing = [k for k in ("generator", "discriminator") if k not in (modules or {})]
        if missing:
            raise ConfigError(f"VITSBrain: modules lacks {', '.join(missing)}")
        missing = [k for k in REQUIRED_KEYS if k not in (hparams or {})]
        if missing:
            raise ConfigError(f"VITSBrain: hparams lack {', '.join(missing)} (see hparams/train_A.yaml)")
        check_speaker_mode(hparams["speaker_mode"])
        check_run_options(run_opts, hparams)  # before SpeechBrain acts on them
        try:
            super().__init__(modules, None, hparams, run_opts, checkpointer)
        except ValueError as err:
            if "fp16" in str(err):
                raise ConfigError("--precision fp16 needs a CUDA device (SpeechBrain refuses it on CPU); "
                                  "use --precision bf16 or fp32") from err
            raise
        self.spectrogram = hparams["spectrogram"]
        generator = _unwrap(self.modules["generator"])
        if (self.spectrogram.hop_length, self.spectrogram.n_freqs) != (generator.hop_length, generator.spec_channels):
            raise ConfigError(
                f"spectrogram (hop {self.spectrogram.hop_length}, {self.spectrogram.n_freqs} bins) does not match "
                f"the generator (hop {generator.hop_length}, {generator.spec_channels} bins)"
            )
        self.speaker_mode = hparams["speaker_mode"]
        self.generator_loss = hparams["generator_loss"]
        self.discriminator_loss = hparams["discriminator_loss"]
        self.speaker_loss = speaker_consistency_loss(hparams, self.device)  # None (no CAM++) when c_spk is 0
        self.semantic = semantic_distillation(hparams)  # None in stage A (no lambda_sem)
        self.log_interval = int(hparams["log_interval"])
        self.audio_log_interval = int(hparams["audio_log_interval"])
        self.keep_checkpoints = int(hparams["keep_checkpoints"])
        if min(self.log_interval, self.audio_log_interval, self.keep_checkpoints) < 1:
            raise ConfigError("log_interval, audio_log_interval and keep_checkpoints must be >= 1")
        self.pad_frames_to, self.pad_tokens_to = (check_multiple(key, hparams.get(key, 1))  # few batch shapes
                                                  for key in ("pad_frames_to", "pad_tokens_to"))
        # SpeechBrain's self.scaler serves the generator; the discriminator gets its own
        self.scaler_g = self.scaler
        self.scaler_d = torch.GradScaler(self.device_type, enabled=self.scaler.is_enabled())
        if self.scaler_d.is_enabled() and self.checkpointer is not None:
            self.checkpointer.add_recoverable("scaler_discriminator", self.scaler_d, optional_load=True)
        self.global_step = 0          # training batches seen (updated or skipped)
        self.step_stats: dict[str, torch.Tensor] = {}
        self.tensorboard = None
        self._has_valid = True
        self.running = RunningMeans()  # loss sums kept on the device
        self.outcomes = StepOutcomes(self.nonfinite_patience)  # device flags of the steps, read back in batches
        self._avg_loss: torch.Tensor | None = None  # the progress bar's mean of the finite losses, and their count
        self._avg_count: torch.Tensor | None = None
        self._eval_sample = None
        self._batch_plan: dict | None = None  # how the training epoch is cut into batches (checked on resume)

    # ------------------------------------------------------------------ set-up

    def init_optimizers(self) -> None:
        """Build both AdamW optimizers (fused on CUDA) and their per-epoch
        schedulers, and register them with the checkpointer."""
        self.optimizer_g = build_optimizer(self.hparams.generator_opt_class, self.modules.generator, self.device)
        self.optimizer_d = build_optimizer(self.hparams.discriminator_opt_class, self.modules.discriminator,
                                            self.device)
        self.gate_g = UpdateGate(self.optimizer_g, self.scaler_g)
        self.gate_d = UpdateGate(self.optimizer_d, self.scaler_d)
        self.scheduler_g = self.hparams.scheduler_class(self.optimizer_g)
        self.scheduler_d = self.hparams.scheduler_class(self.optimizer_d)
        self.optimizers_dict = {"generator": self.optimizer_g, "discriminator": self.optimizer_d}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer_generator", self.optimizer_g)
            self.checkpointer.add_recoverable("optimizer_discriminator", self.optimizer_d)
            self.checkpointer.add_recoverable("scheduler_generator", self.scheduler_g)
            self.checkpointer.add_recoverable("scheduler_discriminator", self.scheduler_d)

    def on_fit_start(self) -> None:
        """Wrap for DDP, build the optimizers, resume, open TensorBoard (main process)."""
        super().on_fit_start()
        for name, optimizer in self.optimizers_dict.items():  # not the checkpoint's flags (e.g. an unfused run's)
            if keep_implementation_flags(optimizer):
                logger.info(f"VITSBrain: the {name} optimizer resumed with this run's flags, not the checkpoint's")
        folder = getattr(self.hparams, "tensorboard_folder", None)
        if folder and if_main_process() and self.tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(folder))
        train_logger = getattr(self.hparams, "train_logger", None)
        if train_logger is not None and if_main_process():
            Path(train_logger.save_file).parent.mkdir(parents=True, exist_ok=True)
        options = ", ".join(f"{key} {getattr(self, key)}" for key in RUN_OPTIONS_LOGGED)
        logger.info(f"VITSBrain: {options}; resuming at step {self.global_step}")

    def _compile(self) -> None:
        """``--compile``: the chosen parts, in place (:func:`semtts.compiled_parts.compile_parts`)."""
        if not self.compile:
            return super()._compile()
        if uses_cuda_graphs(self.compile_mode) and not hasattr(torch.compiler, "set_stance"):
            raise ConfigError(f"--compile_mode {self.compile_mode} needs torch >= 2.6 (this is {torch.__version__}); "
                              "use --compile_mode default")
        options = {"mode": self.compile_mode, "fullgraph": self.compile_using_fullgraph,
                   "dynamic": self.compile_using_dynamic_shape_tracing}
        few_lengths = self.pad_frames_to > 1 and self.pad_tokens_to > 1
        keys = compile_parts(_unwrap(self.modules["generator"]), _unwrap(self.modules["discriminator"]),
                             self.compile_module_keys, options, graph_lengths=few_lengths)
        logger.info(f"VITSBrain: compiled {', '.join(keys)} (mode {self.compile_mode}"
                    f"{', lengths padded: every part as CUDA graphs' if few_lengths and self.graph_steps else ''})")

    def fit(self, epoch_counter: Any, train_set: Any, valid_set: Any = None, progressbar: bool | None = None,
            train_loader_kwargs: dict | None = None, valid_loader_kwargs: dict | None = None) -> None:
        """SpeechBrain's ``fit``; without a validation set, checkpoints are saved
        at the end of each training epoch instead of after validation. The
        training batches' plan is recorded (a mid-epoch resume under another is refused)."""
        self._has_valid = valid_set is not None
        if isinstance(train_set, torch.utils.data.DataLoader):  # (a dataset gets its plan in make_dataloader)
            self._batch_plan = batch_plan(train_set.dataset, train_set, self.hparams)
        super().fit(epoch_counter, train_set, valid_set, progressbar,
                    dict(train_loader_kwargs or {}), dict(valid_loader_kwargs or {}))

    def make_dataloader(self, dataset: Any, stage: sb.Stage, ckpt_prefix: str | None = "dataloader-",
                        **loader_kwargs) -> Any:
        """SpeechBrain's loader; the training loader gets its own seeded
        ``generator`` so that making an iterator never draws from the global
        generators (a resumed run then repeats the uninterrupted one), and
        its batch plan is recorded (a mid-epoch resume under another is refused)."""
        if stage == sb.Stage.TRAIN and "generator" not in loader_kwargs:
            loader_kwargs["generator"] = torch.Generator().manual_seed(int(getattr(self.hparams, "seed", 0)))
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        batches = loader_kwargs.get("batch_sampler")
        if stage == sb.Stage.TRAIN and self.train_sampler is None and hasattr(batches, "set_epoch"):
            self.train_sampler = batches  # single process: SpeechBrain then reseeds its shuffle every epoch
        if stage == sb.Stage.TRAIN:
            self._batch_plan = batch_plan(dataset, loader, self.hparams)
        return loader

    # ------------------------------------------------------------------ forward and losses

    def _speaker_inputs(self, batch: PaddedBatch) -> dict[str, torch.Tensor]:
        """The generator's speaker arguments (:func:`~semtts.data.dataset.speaker_inputs`;
        none for a single-speaker model)."""
        if _unwrap(self.modules["generator"]).speaker is None:
            return {}
        return speaker_inputs(batch, self.speaker_mode, self.device)

    def compute_forward(self, batch: PaddedBatch, stage: sb.Stage) -> VITSForward:
        """Run the generator on a batch.

        Arguments
        ---------
        batch : PaddedBatch
            ``sig`` ``[B, T]``, ``token_ids`` ``[B, T_text]``, and ``spk_id``
            or ``spk_embed`` by ``speaker_mode``; ``teacher`` ``[B, T_sem, D]`` in stages B, C.
        stage : sb.Stage
            TRAIN: teacher forcing by its schedule (stage C); otherwise the student.

        Returns
        -------
        VITSForward
        """
        # Lengths and speaker ids are read and checked on the host, before the batch
        # moves: nothing in the step waits for the GPU (the model skips its checks).
        speaker = self._speaker_inputs(batch)
        host_teacher_lengths = None if self.semantic is None else self.semantic.teacher_lengths(batch)
        host_wav_lengths, host_token_lengths = absolute_lengths(batch.sig), absolute_lengths(batch.token_ids)
        raw = _unwrap(self.modules["generator"])
        hop, frames = raw.hop_length, raw.segment_frames
        host_spec_lengths = torch.div(host_wav_lengths, hop, rounding_mode="floor")
        batch = batch.to(self.device, non_blocking=True)
        semantic = {} if self.semantic is None else self.semantic.inputs(  # teacher features (stages B, C)
            batch, stage == sb.Stage.TRAIN, self.global_step - 1, self.device, host_teacher_lengths)
        wav, tokens = batch.sig.data.float(), batch.token_ids.data
        if stage == sb.Stage.TRAIN:  # few shapes (every part masks its padding: the same training)
            wav, tokens = pad_length_to(wav, self.pad_frames_to * hop), pad_length_to(tokens, self.pad_tokens_to)
        wav_lengths, token_lengths, spec_lengths = (int64_on(lengths, self.device) for lengths in (
            host_wav_lengths, host_token_lengths, host_spec_lengths))
        spec = self.spectrogram.linear_spectrogram(wav, wav_lengths)  # [B, F, T // hop], float32, per item
        raw.check_inputs(tokens, host_token_lengths, spec, host_spec_lengths, **speaker, **semantic)
        on_device = {k: int64_on(v, self.device) if k in ("sid", "teacher_lengths") else v
                     for k, v in {**speaker, **semantic}.items()}
        out = self.modules.generator(tokens, token_lengths, spec, spec_lengths, **on_device, validate=False)
        mel, starts = self.spectrogram.spec_to_mel(spec), out.slice_starts
        y = slice_segments(wav.unsqueeze(1), starts * hop, frames * hop)
        return VITSForward(out, y, out.waveform, mel, slice_segments(mel, starts, frames),
                           self.spectrogram.mel_spectrogram(out.waveform), spec_lengths, speaker)

    def compute_objectives(
        self, predictions: VITSForward, batch: PaddedBatch, stage: sb.Stage
    ) -> dict[str, torch.Tensor]:
        """The generator losses against the current discriminator.

        Arguments
        ---------
        predictions : VITSForward
            From :meth:`compute_forward`.
        batch, stage
            Unused (the targets travel in ``predictions``).

        Returns
        -------
        dict of str to torch.Tensor
            ``loss`` (weighted total), the terms of :class:`~semtts.losses.VITSGeneratorLoss`, ``spk``
            (speaker consistency) when ``c_spk > 0``, ``sem`` (semantic distillation) in stages B, C.
        """
        out = predictions.output
        fake_scores, real_fmaps, fake_fmaps = _unwrap(self.modules.discriminator).judge_for_generator(
            predictions.y, predictions.y_hat)
        terms = self.generator_loss(
            mel_real=predictions.mel_real, mel_fake=predictions.mel_fake, fake_scores=fake_scores,
            real_fmaps=real_fmaps, fake_fmaps=fake_fmaps, z_p=out.z_p, logs_q=out.logs_q, m_p=out.m_p,
            logs_p=out.logs_p, z_mask=out.spec_mask, x_mask=out.token_mask, duration_nll=out.duration_loss,
        )
        terms = terms if self.semantic is None else self.semantic.add_to(terms, out)
        return terms if self.speaker_loss is None else self.speaker_loss.add_to(terms, predictions.y_hat, predictions.y)

    @staticmethod
    @torch.no_grad()
    def reconstruction_check(predictions: VITSForward) -> torch.Tensor:
        """The unweighted sum of the discriminator-free generator terms (mel
        L1, KL, duration) of ``predictions`` (:class:`VITSForward`), without
        gradient: a float32 scalar, finite exactly when they are, so that a
        step can be skipped before either network is updated."""
        out = predictions.output
        mel = F.l1_loss(predictions.mel_fake.float(), predictions.mel_real.float())
        kl = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.spec_mask)
        return mel + kl + stochastic_duration_loss(out.duration_loss, out.token_mask)

    # ------------------------------------------------------------------ the training step

    def fit_batch(self, batch: PaddedBatch) -> torch.Tensor:
        """One discriminator update, then one generator update.

        With fused optimizers (CUDA) nothing in the step waits for the GPU:
        the skip decisions stay on the device and are read back every
        ``log_interval`` steps (:meth:`settle_steps`), the batch's lengths
        and speaker ids are checked on the host before it moves, and the
        moves do not block (``tests/test_host_syncs.py`` checks all of it).

        Arguments
        ---------
        batch : PaddedBatch or None
            A training batch (None: all its files were unreadable, skipped).

        Returns
        -------
        torch.Tensor
            The generator's total loss (a device scalar; NaN for a skipped step).
        """
        if batch is None:  # every file of the batch was unreadable (each warned by name): nothing to learn
            return self._skip_unreadable_batch()
        self.on_fit_batch_start(batch, True)
        self.global_step += 1
        if self.graph_steps:
            begin_step()
        disc = self.modules.discriminator
        with self.training_ctx:
            predictions = self.compute_forward(batch, sb.Stage.TRAIN)
            real_scores, fake_scores, _, _ = disc(predictions.y, predictions.y_hat.detach())
        d_terms = self.discriminator_loss(real_scores, fake_scores)
        self.scaler_d.scale(d_terms["loss"]).backward()
        d_ok, norm_d = self.gate_d.update([d_terms["loss"], self.reconstruction_check(predictions)],
                                          self.max_grad_norm)
        self.optimizer_d.zero_grad(set_to_none=True)

        with self.training_ctx:  # outside DDP: no discriminator gradient to reduce here
            g_terms = self.compute_objectives(predictions, batch, sb.Stage.TRAIN)
        self.scaler_g.scale(g_terms["loss"]).backward()  # reaches the generator only (judge_for_generator)
        g_ok, norm_g = self.gate_g.update([g_terms["loss"]], self.max_grad_norm, also=d_ok)
        self.optimizer_g.zero_grad(set_to_none=True)

        stats = {"loss_g": g_terms["loss"], **{k: v for k, v in g_terms.items() if k != "loss"}}
        stats.update({"loss_d": d_terms["loss"], **{f"d_{k}": v for k, v in d_terms.items() if k != "loss"}})
        stats.update(grad_norm_g=norm_g, grad_norm_d=norm_d)
        self.step_stats = {k: v.detach() for k, v in stats.items()}
        # fp16: a finite step whose scaled gradients overflowed was skipped by the scaler (its norm is not finite)
        applied = torch.isfinite(norm_d) & torch.isfinite(norm_g)
        self.running.add(("window", "epoch"), self.step_stats, g_ok * applied)
        self.outcomes.add(self.global_step, torch.stack([d_ok, g_ok, applied.float()]))
        if not (self.gate_g.deferred and self.gate_d.deferred):
            self.settle_steps()
        self._log_train(predictions)
        self.on_fit_batch_end(batch, predictions, g_terms["loss"], True)
        return torch.where(g_ok > 0, g_terms["loss"].detach().float(), float("nan"))

    def _skip_unreadable_batch(self) -> torch.Tensor:
        """Skip a batch left empty by unreadable files (single process; under
        DDP the other processes would wait for this one's gradients)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            raise DataError("a whole batch of unreadable files (named in the warnings above) under DDP: "
                            "rerun data preparation (stage 1 with --force), then resume")
        logger.warning(f"step {self.global_step + 1}: every file of the batch was unreadable; batch skipped")
        return torch.tensor(float("nan"), device=self.device)

    def settle_steps(self, stop: bool = True) -> None:
        """Read back the outcome of the steps since the last call (one host
        sync) and count the updates (:class:`~semtts.update_gate.StepOutcomes`).

        Arguments
        ---------
        stop : bool
            Raise :class:`NonFiniteLossError` now if the patience ran out.
            A checkpoint save settles with False: it runs on the main process
            only, and every process must stop at the same step (the next
            regular settle), or the others would wait for it in DDP.
        """
        self.optimizer_step += self.outcomes.settle(stop)

    @property
    def nonfinite_total(self) -> int:
        """Skipped (non-finite) steps so far, as of the last :meth:`settle_steps`."""
        return self.outcomes.total

    @property
    def nonfinite_in_a_row(self) -> int:
        """Skipped steps in a row, as of the last :meth:`settle_steps`."""
        return self.outcomes.in_a_row

    def update_average(self, loss: torch.Tensor, avg_loss: float) -> float:
        """SpeechBrain's running mean of the finite losses, kept on the device;
        the float the progress bar shows is refreshed every ``log_interval`` steps."""
        if self.step == 1 or self._avg_loss is None:  # an epoch's start, or a resumed run's first step
            self._avg_loss = loss.new_tensor(0.0 if self.step == 1 else float(avg_loss))
            self._avg_count = loss.new_tensor(float(self.step - 1))  # finite losses so far (resumed: all)
        finite = torch.isfinite(loss)
        self._avg_count = self._avg_count + finite
        previous = self._avg_loss
        self._avg_loss = torch.where(finite, previous + (torch.nan_to_num(loss) - previous)
                                     / self._avg_count.clamp_min(1.0), previous)
        if self.step == 1 or self.step % self.log_interval == 0 or not self.gate_g.deferred:
            return float(self._avg_loss)
        return avg_loss

    # ------------------------------------------------------------------ logging

    def _log_train(self, predictions: VITSForward) -> None:
        """Settle the pending steps and write TensorBoard scalars every
        ``log_interval`` steps, images and audio every ``audio_log_interval``
        steps (main process; no media of a skipped step)."""
        media = self.global_step % self.audio_log_interval == 0
        if self.global_step % self.log_interval == 0 or media:
            self.settle_steps()
            media = media and self.optimizer_step > 0 and self.nonfinite_in_a_row == 0
        if self.global_step % self.log_interval == 0:
            means = self.running.means("window")
            if self.tensorboard is not None:
                for key, value in means.items():
                    self.tensorboard.add_scalar(f"train/{key}", value, self.global_step)
                self.tensorboard.add_scalar("train/lr_g", self.optimizer_g.param_groups[0]["lr"], self.global_step)
                self.tensorboard.add_scalar("train/lr_d", self.optimizer_d.param_groups[0]["lr"], self.global_step)
                self.tensorboard.add_scalar("train/nonfinite_steps", self.nonfinite_total, self.global_step)
                if self.scaler_g.is_enabled():
                    self.tensorboard.add_scalar("train/fp16_overflow_steps", self.outcomes.overflows,
                                                self.global_step)
        if media and self.tensorboard is not None:
            log_media(self.tensorboard, "train", self.global_step, self.spectrogram, predictions)

    # ------------------------------------------------------------------ evaluation and stages

    @torch.no_grad()
    def evaluate_batch(self, batch: PaddedBatch, stage: sb.Stage) -> torch.Tensor:
        """Losses and the mel L1 of the whole reconstructed utterances.

        Arguments
        ---------
        batch : PaddedBatch or None
            A validation or test batch.
        stage : sb.Stage
            VALID or TEST.

        Returns
        -------
        torch.Tensor
            The batch's ``mel_l1`` (CPU scalar): the L1 between the log mel of
            the utterances decoded from their posterior and the real one.
        """
        if batch is None:  # every file of the batch was unreadable (each warned by name)
            return torch.tensor(float("nan"))
        with self.evaluation_ctx, self._eager_if_graphed():
            predictions = self.compute_forward(batch, stage)
            terms = self.compute_objectives(predictions, batch, stage)
            raw = _unwrap(self.modules["generator"])
            g = raw.speaker_condition(**predictions.speaker)
            wav = raw.decoder(predictions.output.z * predictions.output.spec_mask, g=g,
                              lengths=predictions.spec_lengths)
        mel = self.spectrogram.mel_spectrogram(wav, predictions.spec_lengths * raw.hop_length)
        mel_l1 = MaskedL1()(mel.transpose(1, 2), predictions.mel.transpose(1, 2), predictions.spec_lengths)
        stats = {"mel_l1": mel_l1, "loss_g": terms["loss"], **{k: v for k, v in terms.items() if k != "loss"}}
        self.running.add(stage.name, {k: v.detach() for k, v in stats.items()})
        if self._eval_sample is None:
            self._eval_sample = (predictions, batch)
        return mel_l1.detach().cpu()

    @property
    def graph_steps(self) -> bool:
        """Whether ``--compile`` replays parts as CUDA graphs (``--compile_mode reduce-overhead``)."""
        return bool(self.compile) and uses_cuda_graphs(self.compile_mode)

    def _eager_if_graphed(self) -> contextlib.AbstractContextManager:
        """Under a CUDA-graph ``--compile_mode``, run the compiled parts eagerly: evaluation decodes
        whole utterances of every length (a graph holds one shape) and keeps a batch's outputs."""
        return torch.compiler.set_stance("force_eager") if self.graph_steps else contextlib.nullcontext()

    def _synthesize_sample(self, predictions: VITSForward, batch: PaddedBatch) -> torch.Tensor:
        """Synthesise the first item of a batch from its text (at most 4x its length)."""
        raw = _unwrap(self.modules["generator"])
        tokens, lengths = batch.token_ids.data[:1], absolute_lengths(batch.token_ids)[:1]
        speaker = {k: v[:1] for k, v in predictions.speaker.items()}
        result = raw.infer(tokens, lengths, max_len=4 * int(predictions.spec_lengths[0]), **speaker)
        return result.waveform[0, :, : int(result.wav_lengths[0])]

    def on_stage_start(self, stage: sb.Stage, epoch: int | None = None) -> None:
        """Reset the running sums of the stage."""
        self.running.reset(stage.name)
        if stage == sb.Stage.TRAIN:
            self.running.reset("epoch")
        self._eval_sample = None

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        """TRAIN: step both schedulers (per epoch). VALID: log, then save a
        checkpoint, keeping the best ``keep_checkpoints`` by mel L1 and the
        latest. TEST: log."""
        if stage == sb.Stage.TRAIN:
            self.settle_steps()
            if self._avg_loss is not None:
                self.avg_train_loss = float(self._avg_loss)
            self.train_stats = {k: v for k, v in self.running.means("epoch").items() if k in EPOCH_STATS}
            self.scheduler_g.step()
            self.scheduler_d.step()
            if self.tensorboard is not None:
                self.tensorboard.flush()
            if not self._has_valid:
                self._save_checkpoint(epoch, None)
            return
        stats = self.running.means(stage.name)
        lr_g = self.optimizer_g.param_groups[0]["lr"] if hasattr(self, "optimizer_g") else None
        meta = {"epoch": epoch, "step": self.global_step, "lr_g": lr_g}
        train_logger = getattr(self.hparams, "train_logger", None)
        if train_logger is not None:
            brief = {k: v for k, v in stats.items() if k in EPOCH_STATS or k == "mel_l1"}
            if stage == sb.Stage.VALID:
                train_logger.log_stats(meta, train_stats=getattr(self, "train_stats", None), valid_stats=brief)
            else:
                train_logger.log_stats(meta, test_stats=brief)
        if self.tensorboard is not None:
            for key, value in stats.items():
                self.tensorboard.add_scalar(f"{stage.name.lower()}/{key}", value, self.global_step)
            if self._eval_sample is not None:
                predictions, batch = self._eval_sample
                with self._eager_if_graphed():
                    sample = self._synthesize_sample(predictions, batch)
                log_media(self.tensorboard, stage.name.lower(), self.global_step, self.spectrogram, predictions,
                          sample)
            self.tensorboard.flush()
        self._eval_sample = None
        if stage == sb.Stage.VALID:
            self._save_checkpoint(epoch, stats.get("mel_l1"))
