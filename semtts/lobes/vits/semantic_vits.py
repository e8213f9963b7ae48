"""VITS with semantic distillation: the generator of training stages B and C.

:class:`SemanticVITS` is a :class:`~semtts.lobes.vits.synthesizer.VITSSynthesizer`
with two switches:

- ``use_sempred`` (stages B and C): :class:`~semtts.lobes.semantic.SemPred`
  predicts per-token semantics ``[B, T_text, D]`` (the *student*) from the
  text encoder's hidden features ``[B, H, T_text]``; training pulls them
  towards the Whisper teacher brought to the token axis
  (:func:`teacher_on_tokens`).
- ``use_adapter`` (stage C): :class:`~semtts.lobes.semantic.SemanticCrossAttnAdapter`
  acts on the text encoder's hidden output *before* its projection to the
  prior ``m_p, logs_p``, so the prior sees the semantics. Queries come from
  the text features, keys and values from the semantic features (the
  teacher's or the student's, on the token axis). The duration predictor
  keeps reading the un-adapted hidden features.

The training pass (stage C), where the alignment is only known after the
text encoder and the flow ran:

1. text encoder -> ``hidden``; posterior encoder and flow -> ``z_p``;
2. SemPred(``hidden``) -> the student;
3. the alignment: monotonic alignment search against the prior *adapted with
   the student* (without gradient), the prior inference will use. The teacher
   plays no part in choosing the path, so it cannot bias the alignment;
4. the teacher (50 Hz) interpolated to each utterance's spectrogram frames and
   pooled per token along that path (duration-weighted mean) -> the target;
5. the semantics for the adapter, per utterance: the target when
   ``use_teacher`` says so (scheduled by the Brain, see
   :mod:`semtts.semantic_distillation`), else the student (detached when
   ``detach_student``); the adapted prior from them gives the KL, expanded
   along the path of step 3, which is also the duration target.

In stage B (no adapter) this is the plain VITS pass plus steps 2 and 4.
Inference (:meth:`SemanticVITS.infer`) uses the student only: SemPred, then
the adapter with the student's semantics; no teacher, and Whisper is never
imported (this module does not import it, nor :mod:`semtts.extract.teacher`).

Example
-------
>>> base = VITSSynthesizer(n_vocab=10, spec_channels=9, segment_frames=4, inter_channels=4,
...     hidden_channels=8, filter_channels=16, n_heads=2, n_layers=1, kernel_size=3, p_dropout=0.0,
...     resblock="2", resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
...     upsample_rates=[4, 2], upsample_initial_channel=16, upsample_kernel_sizes=[8, 4],
...     posterior_n_layers=1, flow_n_layers=1, sdp_filter_channels=8)
>>> model = SemanticVITS(base, sem_dim=6, use_sempred=True, use_adapter=True, sempred_hidden=8,
...                      adapter_heads=2)
>>> tokens, token_lengths = torch.randint(0, 10, (2, 5)), torch.tensor([5, 3])
>>> teacher = torch.randn(2, 7, 6)                          # [B, T_sem, D] at 50 Hz
>>> out = model(tokens, token_lengths, torch.rand(2, 9, 12), torch.tensor([12, 7]),
...             teacher=teacher, teacher_lengths=torch.tensor([7, 4]),
...             use_teacher=torch.tensor([True, False]))
>>> out.sem_pred.shape, out.sem_target.shape                # [B, T_text, D]
(torch.Size([2, 5, 6]), torch.Size([2, 5, 6]))
>>> model.infer(tokens, token_lengths).waveform.shape[0]    # the student only
2
"""

import contextlib
from typing import NamedTuple

import torch
from torch import nn

from semtts.errors import ConfigError, DataError
from semtts.lobes.semantic import (SemanticCrossAttnAdapter, SemPred, check_teacher_lengths, pool_by_path,
                                   teacher_to_spec_frames)
from semtts.lobes.vits.alignment import expand_by_path, prior_log_likelihood, search_path
from semtts.lobes.vits.input_checks import int64_on, lengths_on_device
from semtts.lobes.vits.segments import random_segments
from semtts.lobes.vits.synthesizer import VITSOutput, VITSSynthesizer
from semtts.lobes.vits.text_encoder import TextEncoderOutput

__all__ = ["SemanticVITSOutput", "teacher_on_tokens", "SemanticVITS"]

SemanticVITSOutput = NamedTuple(
    "SemanticVITSOutput",
    [*VITSOutput.__annotations__.items(), ("sem_pred", torch.Tensor), ("sem_target", torch.Tensor | None)],
)
SemanticVITSOutput.__doc__ = """What :meth:`SemanticVITS.forward` returns: the fields of
:class:`~semtts.lobes.vits.synthesizer.VITSOutput`, then ``sem_pred``
``[B, T_text, D]`` (the student, zero on padded tokens) and ``sem_target``
``[B, T_text, D]`` (the teacher pooled per token, no gradient; None
without a teacher)."""


def teacher_on_tokens(
    teacher: torch.Tensor,
    teacher_lengths: torch.Tensor,
    spec_lengths: torch.Tensor,
    path: torch.Tensor,
    token_lengths: torch.Tensor,
) -> torch.Tensor:
    """Teacher features on the token axis: each utterance's 50 Hz features
    interpolated to its own spectrogram frame count, then averaged per token
    along the alignment path (duration-weighted mean).

    Arguments
    ---------
    teacher : torch.Tensor
        ``[B, T_sem, D]`` padded teacher features.
    teacher_lengths : torch.Tensor
        ``[B]`` valid teacher frames.
    spec_lengths : torch.Tensor
        ``[B]`` spectrogram frames.
    path : torch.Tensor
        ``[B, T_spec, T_text]`` {0, 1} alignment.
    token_lengths : torch.Tensor
        ``[B]`` token counts.

    Returns
    -------
    torch.Tensor
        ``[B, T_text, D]`` float32, zero on padded tokens, without gradient.

    Example
    -------
    >>> path = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])   # [1, 4, 2]
    >>> teacher = torch.tensor([[[0.0], [3.0], [9.0]]])     # [1, 3, 1]; 2 valid frames -> 1, 3, 3
    >>> teacher_on_tokens(teacher, torch.tensor([2]), torch.tensor([3]), path, torch.tensor([2])).squeeze(-1)
    tensor([[2., 3.]])
    """
    if teacher.dim() != 3 or teacher.shape[0] != path.shape[0]:
        raise DataError(f"teacher features: expected [{path.shape[0]}, T_sem, D], got {list(teacher.shape)}")
    with torch.no_grad():  # [B, T_spec, D]; lengths checked by SemanticVITS.check_inputs, nothing read back
        frames = teacher_to_spec_frames(teacher.detach(), spec_lengths, teacher_lengths, width=path.shape[1])
        return pool_by_path(frames.to(path.device), path, token_lengths)


class SemanticVITS(VITSSynthesizer):
    """VITS with a semantic student (SemPred) and, optionally, a semantic
    cross-attention adapter on the prior (training stages B and C).

    It takes over the modules of a built :class:`VITSSynthesizer` (the model
    file's ``generator``), so its parameter names are those of the plain
    model and a stage-A checkpoint loads into it; ``sempred.*`` and
    ``adapter.*`` are new. The adapter acts on the text encoder's hidden
    features before their projection to ``m_p, logs_p``: queries from the
    text features, keys and values from the semantics (teacher or student).
    See the module docstring for the training pass and its alignment.

    Arguments
    ---------
    base : VITSSynthesizer
        The plain generator whose modules this one adopts (do not use it
        on its own afterwards: the modules are shared).
    sem_dim : int
        ``D``, the teacher feature width (``teacher/meta.json``).
    use_sempred : bool
        Build the student (needed by both stages).
    use_adapter : bool
        Build the adapter (stage C; needs ``use_sempred``: inference feeds
        it the student).
    sempred_hidden, sempred_kernel_size, sempred_layers : int
        Width, odd kernel and block count of SemPred.
    sempred_dropout : float
        SemPred dropout.
    adapter_heads : int
        Adapter attention heads (they must divide ``hidden_channels``).
    adapter_dropout : float
        Adapter dropout.
    adapter_gate_init : float
        Initial value of the adapter's residual gate.

    Example
    -------
    >>> base = VITSSynthesizer(12, 9, 4, 4, 8, 16, 2, 1, 3, 0.0, "2", [3], [[1, 3]], [4, 2], 16,
    ...     [8, 4], posterior_n_layers=1, flow_n_layers=1, use_sdp=False, dp_filter_channels=8)
    >>> names = set(base.state_dict())
    >>> model = SemanticVITS(base, sem_dim=6, sempred_hidden=8)
    >>> sorted({k.split(".")[0] for k in set(model.state_dict()) - names}), model.adapter is None
    (['sempred'], True)
    """

    def __init__(
        self,
        base: VITSSynthesizer,
        sem_dim: int,
        use_sempred: bool = True,
        use_adapter: bool = False,
        sempred_hidden: int = 256,
        sempred_kernel_size: int = 5,
        sempred_layers: int = 3,
        sempred_dropout: float = 0.1,
        adapter_heads: int = 4,
        adapter_dropout: float = 0.1,
        adapter_gate_init: float = 0.1,
    ) -> None:
        nn.Module.__init__(self)
        if not isinstance(base, VITSSynthesizer) or isinstance(base, SemanticVITS):
            raise ConfigError(f"SemanticVITS: base must be a plain VITSSynthesizer, got {type(base).__name__}")
        if not use_sempred:
            raise ConfigError("SemanticVITS: use_sempred must be True (stages B and C train the student; "
                              "inference feeds the adapter the student's semantics)")
        if sem_dim < 1:
            raise ConfigError(f"SemanticVITS: sem_dim must be >= 1, got {sem_dim}")
        if list(base.named_parameters(recurse=False)) or list(base.named_buffers(recurse=False)):
            raise ConfigError("SemanticVITS: the base generator has parameters of its own; cannot adopt it")
        for name, value in vars(base).items():  # plain settings: n_vocab, hop_length, speaker (None), ...
            if not name.startswith("_") and name != "training":
                setattr(self, name, value)
        for name, module in base.named_children():
            self.add_module(name, module)
        self.train(base.training)
        self.sem_dim = int(sem_dim)
        hidden = self.text_encoder.hidden_channels
        self.sempred = SemPred(hidden, sem_dim, sempred_hidden, sempred_kernel_size, sempred_layers, sempred_dropout)
        self.adapter = None
        if use_adapter:
            self.adapter = SemanticCrossAttnAdapter(hidden, sem_dim, adapter_heads, adapter_dropout,
                                                    adapter_gate_init)

    def prior(self, text: TextEncoderOutput, token_lengths: torch.Tensor,
              sem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior statistics given per-token semantics (the text encoder's
        own without an adapter).

        Arguments
        ---------
        text : TextEncoderOutput
            The text encoder's output.
        token_lengths : torch.Tensor
            ``[B]`` token counts.
        sem : torch.Tensor
            ``[B, T_text, D]`` semantics (teacher or student).

        Returns
        -------
        m_p, logs_p : torch.Tensor
            ``[B, C, T_text]`` each.
        """
        if self.adapter is None:
            return text.m_p, text.logs_p
        hidden = self.adapter(text.hidden, token_lengths, sem, token_lengths)
        return self.text_encoder.project(hidden, text.mask)

    def check_inputs(
        self, tokens: torch.Tensor, token_lengths: torch.Tensor, spec: torch.Tensor, spec_lengths: torch.Tensor,
        sid: torch.Tensor | None = None, teacher: torch.Tensor | None = None,
        teacher_lengths: torch.Tensor | None = None, **extra: torch.Tensor | None,
    ) -> None:
        """:meth:`VITSSynthesizer.check_inputs`, and the teacher features'
        dimension and lengths (on the host: no device sync).

        Arguments
        ---------
        tokens, token_lengths, spec, spec_lengths, sid, teacher, teacher_lengths : torch.Tensor
            As :meth:`forward`.
        **extra
            Unused.
        """
        super().check_inputs(tokens, token_lengths, spec, spec_lengths, sid)
        if teacher is None:
            return
        if teacher.dim() != 3 or teacher.shape[0] != tokens.shape[0] or teacher.shape[-1] != self.sem_dim:
            raise DataError(f"teacher features: expected [{tokens.shape[0]}, T_sem, {self.sem_dim}], "
                            f"got {list(teacher.shape)}")
        lengths = teacher_lengths if teacher_lengths is not None else torch.full((teacher.shape[0],), teacher.shape[1])
        check_teacher_lengths(spec_lengths, lengths, teacher.shape[1])

    def forward(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        sid: torch.Tensor | None = None,
        spk_embed: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
        teacher_lengths: torch.Tensor | None = None,
        use_teacher: torch.Tensor | None = None,
        detach_student: bool = False,
        validate: bool = True,
    ) -> SemanticVITSOutput:
        """Training pass (see the module docstring for the order of things).

        Arguments
        ---------
        tokens, token_lengths, spec, spec_lengths, sid, spk_embed, validate
            As :meth:`VITSSynthesizer.forward`.
        teacher : torch.Tensor, optional
            ``[B, T_sem, D]`` 50 Hz teacher features (data: no gradient).
        teacher_lengths : torch.Tensor, optional
            ``[B]`` valid teacher frames (all when omitted).
        use_teacher : torch.Tensor, optional
            ``[B]`` bool: the adapter gets the teacher's semantics for these
            utterances, the student's for the others (all student when omitted).
        detach_student : bool
            The adapter's use of the student sends no gradient into SemPred.

        Returns
        -------
        SemanticVITSOutput
        """
        token_lengths, spec_lengths = lengths_on_device(self, validate, tokens, token_lengths, spec, spec_lengths, sid,
                                                        teacher=teacher, teacher_lengths=teacher_lengths)
        g = self.speaker_condition(sid, spk_embed, validate=False)  # ids checked with the rest
        text = self.text_encoder(tokens, token_lengths)
        posterior = self.posterior_encoder(spec, spec_lengths, g=g)
        z_p = self.flow(posterior.z, posterior.mask, g=g)

        student = self.sempred(text.hidden, token_lengths)  # [B, T_text, D]
        student_in = student.detach() if detach_student else student
        mixed = self.adapter is not None and teacher is not None and use_teacher is not None
        with torch.no_grad() if mixed else contextlib.nullcontext():  # mixed: only the path needs this prior
            m_p, logs_p = self.prior(text, token_lengths, student_in)
        path = search_path(prior_log_likelihood(z_p, m_p, logs_p), token_lengths, spec_lengths, self.mas_backend)

        target = None
        if teacher is not None:
            lengths = (int64_on(teacher_lengths, teacher.device) if teacher_lengths is not None
                       else torch.full_like(token_lengths, teacher.shape[1]))
            target = teacher_on_tokens(teacher, lengths, spec_lengths, path, token_lengths).to(student.dtype)
        if mixed:
            choose = use_teacher.to(device=student.device, dtype=torch.bool).view(-1, 1, 1)
            m_p, logs_p = self.prior(text, token_lengths, torch.where(choose, target, student_in))

        durations = path.sum(1).unsqueeze(1).to(text.hidden.dtype)  # [B, 1, T_text]
        duration_loss = self.duration_predictor.loss(text.hidden, text.mask, durations, g=g)
        z_slice, slice_starts = random_segments(posterior.z, spec_lengths, self.segment_frames)
        waveform = self.decoder(z_slice, g=g)
        return SemanticVITSOutput(
            waveform, duration_loss, path, slice_starts, text.mask, posterior.mask, posterior.z, z_p,
            expand_by_path(m_p, path), expand_by_path(logs_p, path), posterior.m_q, posterior.logs_q,
            text.hidden, student, target,
        )

    def inference_prior(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> TextEncoderOutput:
        """The text encoding for :meth:`infer`: the un-adapted ``hidden`` (for
        the durations) and the prior adapted with the *student's* semantics.

        Arguments
        ---------
        tokens : torch.Tensor
            ``[B, T_text]`` token ids.
        token_lengths : torch.Tensor
            ``[B]`` token counts.

        Returns
        -------
        TextEncoderOutput
        """
        text = self.text_encoder(tokens, token_lengths)
        if self.adapter is None:
            return text
        m_p, logs_p = self.prior(text, token_lengths, self.sempred(text.hidden, token_lengths))
        return TextEncoderOutput(text.hidden, m_p, logs_p, text.mask)
