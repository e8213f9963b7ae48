"""The VITS generator: text encoder, posterior encoder, flow, duration predictor
and HiFi-GAN decoder assembled into one trainable synthesizer.

Training (:meth:`VITSSynthesizer.forward`): the posterior encoder turns the
linear spectrogram into ``z``; the flow maps it to ``z_p``; monotonic
alignment search finds the path between frames and tokens that maximises the
prior likelihood of ``z_p``; the duration predictor learns the path's
durations; the decoder turns a random window of ``z`` into waveform.
Inference (:meth:`VITSSynthesizer.infer`): durations are predicted, the prior
is expanded along them, sampled, flowed back to ``z`` and decoded.

Example
-------
>>> model = VITSSynthesizer(n_vocab=10, spec_channels=9, segment_frames=4, inter_channels=4,
...     hidden_channels=8, filter_channels=16, n_heads=2, n_layers=1, kernel_size=3, p_dropout=0.0,
...     resblock="2", resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
...     upsample_rates=[4, 2], upsample_initial_channel=16, upsample_kernel_sizes=[8, 4],
...     posterior_n_layers=2, flow_n_layers=2, sdp_filter_channels=8, n_speakers=3, gin_channels=8)
>>> tokens, token_lengths = torch.randint(0, 10, (2, 5)), torch.tensor([5, 3])
>>> out = model(tokens, token_lengths, torch.rand(2, 9, 12), torch.tensor([12, 7]),
...             sid=torch.tensor([0, 2]))
>>> out.waveform.shape, out.path.shape, out.z_p.shape, out.text_hidden.shape
(torch.Size([2, 1, 32]), torch.Size([2, 12, 5]), torch.Size([2, 4, 12]), torch.Size([2, 8, 5]))
>>> gen = model.infer(tokens, token_lengths, sid=torch.tensor([1, 1]))
>>> bool(torch.equal(gen.wav_lengths, gen.durations.sum(1) * 8))
True
"""

import math
from typing import NamedTuple

import torch
from torch import nn

from semtts.errors import ConfigError, DataError
from semtts.align import BACKENDS
from semtts.lobes.vits.alignment import (
    durations_to_path,
    expand_by_path,
    prior_log_likelihood,
    search_path,
)
from semtts.lobes.vits.duration import DeterministicDurationPredictor, StochasticDurationPredictor
from semtts.lobes.vits.flow import ResidualCouplingFlow
from semtts.lobes.vits.hifigan import HiFiGANGenerator
from semtts.lobes.vits.input_checks import (check_alignable, check_spec, check_speaker_ids, check_tokens,
                                            int64_on, lengths_on_device)
from semtts.lobes.vits.masks import lengths_to_mask
from semtts.lobes.vits.posterior_encoder import PosteriorEncoder
from semtts.lobes.vits.segments import random_segments
from semtts.lobes.vits.speaker import SpeakerConditioner
from semtts.lobes.vits.text_encoder import TextEncoder, TextEncoderOutput
from semtts.lobes.vits.weight_norm import remove_weight_norm

__all__ = ["VITSOutput", "VITSInference", "VITSSynthesizer"]


class VITSOutput(NamedTuple):
    """What :meth:`VITSSynthesizer.forward` returns (training)."""

    waveform: torch.Tensor
    """``[B, 1, segment_frames * hop]`` decoded random window."""
    duration_loss: torch.Tensor
    """``[B]`` duration loss of each item summed over its tokens (negative ELBO
    of the stochastic predictor, squared log error of the deterministic one);
    VITS's ``loss_dur`` is ``duration_loss.sum() / token_mask.sum()``."""
    path: torch.Tensor
    """``[B, T_spec, T_text]`` {0, 1} MAS alignment."""
    slice_starts: torch.Tensor
    """``[B]`` first frame of each decoded window (times hop: first sample)."""
    token_mask: torch.Tensor
    """``[B, 1, T_text]``."""
    spec_mask: torch.Tensor
    """``[B, 1, T_spec]``."""
    z: torch.Tensor
    """``[B, C, T_spec]`` posterior sample."""
    z_p: torch.Tensor
    """``[B, C, T_spec]`` posterior sample through the flow."""
    m_p: torch.Tensor
    """``[B, C, T_spec]`` prior means expanded along the path."""
    logs_p: torch.Tensor
    """``[B, C, T_spec]`` prior log-stds expanded along the path."""
    m_q: torch.Tensor
    """``[B, C, T_spec]`` posterior means."""
    logs_q: torch.Tensor
    """``[B, C, T_spec]`` posterior log-stds."""
    text_hidden: torch.Tensor
    """``[B, H, T_text]`` text-encoder features."""


class VITSInference(NamedTuple):
    """What :meth:`VITSSynthesizer.infer` returns."""

    waveform: torch.Tensor
    """``[B, 1, max(spec_lengths) * hop]`` waveform (padded past ``wav_lengths``)."""
    wav_lengths: torch.Tensor
    """``[B]`` valid samples per item (``durations.sum(1) * hop``)."""
    durations: torch.Tensor
    """``[B, T_text]`` long frames per token (0 on padding)."""
    spec_lengths: torch.Tensor
    """``[B]`` frames per item."""
    path: torch.Tensor
    """``[B, T_spec, T_text]`` alignment built from the durations."""
    token_mask: torch.Tensor
    """``[B, 1, T_text]``."""
    spec_mask: torch.Tensor
    """``[B, 1, T_spec]``."""


class VITSSynthesizer(nn.Module):
    """End-to-end VITS generator (Kim et al. 2021) with optional speaker conditioning.

    Arguments
    ---------
    n_vocab : int
        Number of token ids.
    spec_channels : int
        Linear spectrogram bins (``n_fft // 2 + 1``).
    segment_frames : int
        Latent frames decoded per item in training.
    inter_channels : int
        Latent channels ``C`` of ``z``.
    hidden_channels : int
        Width ``H`` of the text encoder and of the WaveNets.
    filter_channels : int
        Feed-forward width of the text encoder.
    n_heads : int
        Text-encoder attention heads.
    n_layers : int
        Text-encoder layers.
    kernel_size : int
        Text-encoder feed-forward kernel.
    p_dropout : float
        Text-encoder dropout.
    resblock : str
        HiFi-GAN residual block type, ``"1"`` or ``"2"``.
    resblock_kernel_sizes : list of int
        HiFi-GAN residual block kernels.
    resblock_dilation_sizes : list of list of int
        HiFi-GAN residual block dilations.
    upsample_rates : list of int
        HiFi-GAN upsampling factors (product: the hop length).
    upsample_initial_channel : int
        HiFi-GAN channels before upsampling.
    upsample_kernel_sizes : list of int
        HiFi-GAN transposed-convolution kernels.
    posterior_kernel_size, posterior_dilation_rate, posterior_n_layers : int
        Posterior-encoder WaveNet (5, 1, 16 in VITS).
    flow_kernel_size, flow_dilation_rate, flow_n_layers : int
        WaveNet of each coupling layer (5, 1, 4 in VITS).
    n_flows : int
        Coupling layers of the flow (4).
    use_sdp : bool
        Stochastic duration predictor (True) or the deterministic one.
    sdp_filter_channels : int
        Width of the stochastic duration predictor (192).
    sdp_n_flows : int
        Spline couplings of each of its two flows (4).
    dp_filter_channels : int
        Width of the deterministic duration predictor (256).
    duration_kernel_size : int
        Kernel of either duration predictor (3).
    duration_p_dropout : float
        Dropout of either duration predictor (0.5).
    window_size : int
        Relative-attention window of the text encoder (4).
    n_speakers : int
        Speaker-table size (id mode); 0 for none.
    spk_embed_dim : int
        External speaker-vector size (embedding mode); 0 for none.
    spk_embed_l2norm : bool
        L2-normalise the external speaker vectors before the projection.
    gin_channels : int
        Channels of the speaker conditioning ``g`` (ignored, and no
        conditioning layer built, when neither speaker mode is set).
    hop_length : int, optional
        Samples per frame, checked against ``prod(upsample_rates)``.
    mas_backend : str
        Monotonic alignment search backend: ``auto`` (Triton on CUDA, numba on
        CPU), ``cpu``, ``triton`` or ``super_mas``.

    Example
    -------
    >>> model = VITSSynthesizer(12, 9, 4, 4, 8, 16, 2, 1, 3, 0.1, "2", [3], [[1, 3]], [4, 2], 16,
    ...     [8, 4], posterior_n_layers=1, flow_n_layers=1, use_sdp=False, dp_filter_channels=8,
    ...     spk_embed_dim=6, gin_channels=8, hop_length=8)
    >>> out = model(torch.randint(0, 12, (1, 4)), torch.tensor([4]), torch.rand(1, 9, 10),
    ...             torch.tensor([10]), spk_embed=torch.randn(1, 6))
    >>> out.waveform.shape, out.duration_loss.shape
    (torch.Size([1, 1, 32]), torch.Size([1]))
    """

    def __init__(
        self,
        n_vocab: int,
        spec_channels: int,
        segment_frames: int,
        inter_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        resblock: str,
        resblock_kernel_sizes: list[int],
        resblock_dilation_sizes: list[list[int]],
        upsample_rates: list[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: list[int],
        posterior_kernel_size: int = 5,
        posterior_dilation_rate: int = 1,
        posterior_n_layers: int = 16,
        flow_kernel_size: int = 5,
        flow_dilation_rate: int = 1,
        flow_n_layers: int = 4,
        n_flows: int = 4,
        use_sdp: bool = True,
        sdp_filter_channels: int = 192,
        sdp_n_flows: int = 4,
        dp_filter_channels: int = 256,
        duration_kernel_size: int = 3,
        duration_p_dropout: float = 0.5,
        window_size: int = 4,
        n_speakers: int = 0,
        spk_embed_dim: int = 0,
        spk_embed_l2norm: bool = False,
        gin_channels: int = 256,
        hop_length: int | None = None,
        mas_backend: str = "auto",
    ):
        super().__init__()
        if hop_length is not None and hop_length != math.prod(upsample_rates):
            raise ConfigError(
                f"vits: hop_length {hop_length} differs from prod(upsample_rates) "
                f"{math.prod(upsample_rates)} = {upsample_rates}"
            )
        if segment_frames < 1:
            raise ConfigError(f"vits: segment_frames must be >= 1, got {segment_frames}")
        self.n_vocab = n_vocab
        self.spec_channels = spec_channels
        self.segment_frames = segment_frames
        self.hop_length = math.prod(upsample_rates)
        if mas_backend not in BACKENDS:
            raise ConfigError(f"mas_backend must be one of {', '.join(BACKENDS)}, got {mas_backend!r}")
        self.mas_backend = mas_backend
        self.use_sdp = use_sdp

        self.speaker = None
        if n_speakers > 0 or spk_embed_dim > 0:
            self.speaker = SpeakerConditioner(gin_channels, n_speakers, spk_embed_dim, spk_embed_l2norm)
        else:
            gin_channels = 0
        self.gin_channels = gin_channels

        self.text_encoder = TextEncoder(
            n_vocab, inter_channels, hidden_channels, filter_channels,
            n_heads, n_layers, kernel_size, p_dropout, window_size,
        )
        self.posterior_encoder = PosteriorEncoder(
            spec_channels, inter_channels, hidden_channels, posterior_kernel_size,
            posterior_dilation_rate, posterior_n_layers, gin_channels,
        )
        self.flow = ResidualCouplingFlow(
            inter_channels, hidden_channels, flow_kernel_size, flow_dilation_rate,
            flow_n_layers, n_flows, gin_channels,
        )
        if use_sdp:
            self.duration_predictor = StochasticDurationPredictor(
                hidden_channels, sdp_filter_channels, duration_kernel_size,
                duration_p_dropout, sdp_n_flows, gin_channels,
            )
        else:
            self.duration_predictor = DeterministicDurationPredictor(
                hidden_channels, dp_filter_channels, duration_kernel_size,
                duration_p_dropout, gin_channels,
            )
        self.decoder = HiFiGANGenerator(
            inter_channels, resblock, resblock_kernel_sizes, resblock_dilation_sizes,
            upsample_rates, upsample_initial_channel, upsample_kernel_sizes, gin_channels,
        )

    def speaker_condition(
        self, sid: torch.Tensor | None = None, spk_embed: torch.Tensor | None = None, validate: bool = True
    ) -> torch.Tensor | None:
        """The conditioning ``g`` ``[B, gin_channels, 1]`` (``None`` for a single-speaker model).

        Arguments
        ---------
        sid : torch.Tensor, optional
            ``[B]`` speaker ids (speaker-table models).
        spk_embed : torch.Tensor, optional
            ``[B, spk_embed_dim]`` speaker vectors (embedding models).
        validate : bool
            Check the ids against the table (False: the caller checked them).

        Returns
        -------
        torch.Tensor or None
            ``g``.
        """
        if self.speaker is None:
            if sid is not None or spk_embed is not None:
                raise DataError("vits: this model is single-speaker; do not pass sid or spk_embed")
            return None
        return self.speaker(sid=sid, spk_embed=spk_embed, validate=validate)

    def check_inputs(
        self, tokens: torch.Tensor, token_lengths: torch.Tensor, spec: torch.Tensor, spec_lengths: torch.Tensor,
        sid: torch.Tensor | None = None, **extra: torch.Tensor | None,
    ) -> None:
        """Check a training batch (:mod:`~semtts.lobes.vits.input_checks`), as
        :meth:`forward` does unless told ``validate=False``. Lengths and ids
        are read on the host: given there, no device sync. :class:`~semtts.brain.VITSBrain`
        checks each batch so before it moves, then runs the model with
        ``validate=False`` (a DDP wrapper moves host arguments to the device first).

        Arguments
        ---------
        tokens, token_lengths, spec, spec_lengths, sid : torch.Tensor
            As :meth:`forward`; ``**extra``: a subclass's further arguments.
        """
        check_tokens(tokens, token_lengths)
        check_spec(spec, spec_lengths, self.spec_channels)
        if tokens.size(0) != spec.size(0):
            raise DataError(f"vits: {tokens.size(0)} token rows but {spec.size(0)} spectrograms")
        check_alignable(token_lengths, spec_lengths)
        if sid is not None and self.speaker is not None and self.speaker.table is not None:
            check_speaker_ids(sid, self.speaker.n_speakers)

    def forward(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        sid: torch.Tensor | None = None,
        spk_embed: torch.Tensor | None = None,
        validate: bool = True,
    ) -> VITSOutput:
        """Training pass.

        Arguments
        ---------
        tokens : torch.Tensor
            ``[B, T_text]`` token ids.
        token_lengths : torch.Tensor
            ``[B]`` absolute token counts (on the host, checked without a device sync).
        spec : torch.Tensor
            ``[B, spec_channels, T_spec]`` linear magnitude spectrograms.
        spec_lengths : torch.Tensor
            ``[B]`` absolute frame counts (host or device, as ``token_lengths``).
        sid : torch.Tensor, optional
            ``[B]`` speaker ids (speaker-table models; host or device).
        spk_embed : torch.Tensor, optional
            ``[B, spk_embed_dim]`` speaker vectors (embedding models).
        validate : bool
            Run :meth:`check_inputs` (False: the caller did, on the host).

        Returns
        -------
        VITSOutput
            Decoded window, duration loss, alignment, slice starts, masks and
            the latent statistics for the KL loss.
        """
        token_lengths, spec_lengths = lengths_on_device(self, validate, tokens, token_lengths, spec, spec_lengths, sid)
        g = self.speaker_condition(sid, spk_embed, validate=False)  # ids checked with the rest
        text = self.text_encoder(tokens, token_lengths)
        posterior = self.posterior_encoder(spec, spec_lengths, g=g)
        z_p = self.flow(posterior.z, posterior.mask, g=g)

        neg_cent = prior_log_likelihood(z_p, text.m_p, text.logs_p)
        path = search_path(neg_cent, token_lengths, spec_lengths, self.mas_backend)  # [B, T_spec, T_text]

        durations = path.sum(1).unsqueeze(1).to(text.hidden.dtype)  # [B, 1, T_text]
        duration_loss = self.duration_predictor.loss(text.hidden, text.mask, durations, g=g)

        m_p = expand_by_path(text.m_p, path)
        logs_p = expand_by_path(text.logs_p, path)
        z_slice, slice_starts = random_segments(posterior.z, spec_lengths, self.segment_frames)
        waveform = self.decoder(z_slice, g=g)
        return VITSOutput(
            waveform, duration_loss, path, slice_starts, text.mask, posterior.mask,
            posterior.z, z_p, m_p, logs_p, posterior.m_q, posterior.logs_q, text.hidden,
        )

    @torch.no_grad()
    def infer(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        sid: torch.Tensor | None = None,
        spk_embed: torch.Tensor | None = None,
        noise_scale: float = 0.667,
        length_scale: float = 1.0,
        noise_scale_w: float = 0.8,
        max_len: int | None = None,
    ) -> VITSInference:
        """Synthesise waveforms from tokens.

        Arguments
        ---------
        tokens : torch.Tensor
            ``[B, T_text]`` token ids.
        token_lengths : torch.Tensor
            ``[B]`` absolute token counts.
        sid : torch.Tensor, optional
            ``[B]`` speaker ids (speaker-table models).
        spk_embed : torch.Tensor, optional
            ``[B, spk_embed_dim]`` speaker vectors (embedding models).
        noise_scale : float
            Standard deviation of the prior sample (relative to ``exp(logs_p)``).
        length_scale : float
            Multiplies the predicted durations (> 1: slower speech).
        noise_scale_w : float
            Noise of the stochastic duration predictor.
        max_len : int, optional
            Largest number of frames per item; later frames are cut and the
            durations trimmed to match.

        Returns
        -------
        VITSInference
            Waveform, its lengths, per-token durations, path and masks.
        """
        check_tokens(tokens, token_lengths)
        token_lengths = int64_on(token_lengths, tokens.device)
        g = self.speaker_condition(sid, spk_embed)
        text, durations = self.predict_durations(tokens, token_lengths, g, noise_scale_w, length_scale, max_len)
        waveform, spec_lengths, path, spec_mask = self.decode_durations(text, durations, g, noise_scale)
        return VITSInference(
            waveform, spec_lengths * self.hop_length, durations.long(), spec_lengths, path,
            text.mask, spec_mask,
        )

    def predict_durations(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        g: torch.Tensor | None = None,
        noise_scale_w: float | torch.Tensor = 0.8,
        length_scale: float | torch.Tensor = 1.0,
        max_len: int | None = None,
    ) -> tuple[TextEncoderOutput, torch.Tensor]:
        """First half of :meth:`infer`: the text encoding and integer frames per token.

        It never reads a value back to the host, so it can be traced (ONNX
        export) or captured in a CUDA graph; the scales may be tensors.

        Arguments
        ---------
        tokens : torch.Tensor
            ``[B, T_text]`` token ids.
        token_lengths : torch.Tensor
            ``[B]`` absolute token counts.
        g : torch.Tensor, optional
            ``[B, gin_channels, 1]`` speaker conditioning (:meth:`speaker_condition`).
        noise_scale_w : float or torch.Tensor
            Noise of the stochastic duration predictor.
        length_scale : float or torch.Tensor
            Multiplies the predicted durations.
        max_len : int, optional
            Largest number of frames per item (later ones are cut).

        Returns
        -------
        text : TextEncoderOutput
            :meth:`inference_prior`'s output.
        durations : torch.Tensor
            ``[B, T_text]`` float, integer-valued frames per token (0 on padding,
            at least one frame per utterance).
        """
        text = self.inference_prior(tokens, token_lengths)
        log_w = self.duration_predictor.log_durations(
            text.hidden, text.mask, g=g, noise_scale=noise_scale_w
        )
        durations = torch.ceil(torch.exp(log_w) * text.mask * length_scale).squeeze(1)
        # every utterance gets at least one frame (on its first token)
        empty = (durations.sum(1, keepdim=True) == 0).to(durations.dtype)
        durations = durations + torch.cat([empty, torch.zeros_like(durations[:, 1:])], dim=1)
        if max_len is not None:
            ends = torch.cumsum(durations, dim=1).clamp(max=max_len)
            durations = torch.diff(ends, dim=1, prepend=torch.zeros_like(ends[:, :1]))
        return text, durations

    def decode_durations(
        self,
        text: TextEncoderOutput,
        durations: torch.Tensor,
        g: torch.Tensor | None = None,
        noise_scale: float | torch.Tensor = 0.667,
        n_frames: int | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Second half of :meth:`infer`: expand the prior along the durations, sample, decode.

        Arguments
        ---------
        text : TextEncoderOutput
            The text encoding.
        durations : torch.Tensor
            ``[B, T_text]`` integer-valued frames per token.
        g : torch.Tensor, optional
            ``[B, gin_channels, 1]`` speaker conditioning.
        noise_scale : float or torch.Tensor
            Standard deviation of the prior sample (relative to ``exp(logs_p)``).
        n_frames : int or torch.Tensor, optional
            Frames of the output (at least the longest item's); the default,
            the longest item's, is a 0-d tensor, so a traced graph keeps the
            output length dynamic. A fixed ``n_frames`` (padding) changes
            nothing in the valid part and lets a CUDA graph be replayed.

        Returns
        -------
        waveform : torch.Tensor
            ``[B, 1, n_frames * hop]``.
        spec_lengths : torch.Tensor
            ``[B]`` long frames per item.
        path : torch.Tensor
            ``[B, n_frames, T_text]``.
        spec_mask : torch.Tensor
            ``[B, 1, n_frames]``.
        """
        spec_lengths = durations.sum(1).long()
        if n_frames is None:
            n_frames = spec_lengths.max()
        spec_mask = lengths_to_mask(spec_lengths, n_frames, dtype=text.mask.dtype)
        path = durations_to_path(durations, text.mask, spec_mask)

        m_p = expand_by_path(text.m_p, path)
        logs_p = expand_by_path(text.logs_p, path)
        z_p = m_p + torch.randn_like(m_p) * torch.exp(logs_p) * noise_scale
        z = self.flow(z_p, spec_mask, g=g, reverse=True)
        waveform = self.decoder(z * spec_mask, g=g, lengths=spec_lengths)
        return waveform, spec_lengths, path, spec_mask

    def inference_prior(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> TextEncoderOutput:
        """The text encoding :meth:`infer` uses: ``hidden`` feeds the duration
        predictor, ``m_p, logs_p`` the prior (here the text encoder's output;
        a subclass may change the prior, e.g. with semantic features).

        Arguments
        ---------
        tokens : torch.Tensor
            ``[B, T_text]`` token ids.
        token_lengths : torch.Tensor
            ``[B]`` absolute token counts.

        Returns
        -------
        TextEncoderOutput
        """
        return self.text_encoder(tokens, token_lengths)

    @torch.no_grad()
    def voice_conversion(
        self,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        g_src: torch.Tensor,
        g_tgt: torch.Tensor,
    ) -> torch.Tensor:
        """Re-synthesise speech in another voice through the speaker-independent ``z_p``.

        Arguments
        ---------
        spec : torch.Tensor
            ``[B, spec_channels, T_spec]`` linear spectrograms of the source speech.
        spec_lengths : torch.Tensor
            ``[B]`` absolute frame counts.
        g_src : torch.Tensor
            ``[B, gin_channels, 1]`` source-speaker conditioning (:meth:`speaker_condition`).
        g_tgt : torch.Tensor
            ``[B, gin_channels, 1]`` target-speaker conditioning.

        Returns
        -------
        torch.Tensor
            ``[B, 1, T_spec * hop]`` converted waveform (valid up to ``spec_lengths * hop``).
        """
        if self.speaker is None:
            raise ConfigError("vits: voice conversion needs a multi-speaker model")
        check_spec(spec, spec_lengths, self.spec_channels)
        spec_lengths = int64_on(spec_lengths, spec.device)
        posterior = self.posterior_encoder(spec, spec_lengths, g=g_src)
        z_p = self.flow(posterior.z, posterior.mask, g=g_src)
        z = self.flow(z_p, posterior.mask, g=g_tgt, reverse=True)
        return self.decoder(z * posterior.mask, g=g_tgt, lengths=spec_lengths)

    def remove_weight_norm(self) -> None:
        """Fold all weight normalisation into plain weights (inference only)."""
        remove_weight_norm(self)
