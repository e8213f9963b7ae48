"""Synthesis replayed from CUDA graphs: the launch overhead of VITS inference removed.

Synthesising one utterance launches well over a thousand small kernels
(text encoder, duration flows, coupling flow, HiFi-GAN); on a fast GPU the
host cannot issue them as fast as the GPU runs them. :class:`GraphedSynthesizer`
captures the two halves of :meth:`VITSSynthesizer.infer` once per padded
shape and replays them:

1. ``predict_durations`` for the batch and the token count rounded up to
   ``token_bucket``;
2. one read-back (the number of frames, which sizes the output, and the
   most frames per token: past ``max_frames_per_token`` the call stops with
   :class:`DurationsTooLong` before decoding), then ``decode_durations``
   for the frame count rounded up to ``frame_bucket``.

Padding changes nothing in the valid part of an utterance (every layer is
masked or sees zeros past the end, exactly as in an unpadded batch), and the
caller gets the waveform cut to the true lengths. The random draws (duration
noise and prior sample) are part of the graphs and advance the CUDA
generator on every replay. Graphs are captured on first use of a shape, so
the first call at a new shape costs a warm-up and a capture (whose random
draws are undone, so a seeded call gives the same audio either way); every
graph keeps its own memory pool, and the least recently used are released
past ``max_graphs``.

On the CPU, or with ``enabled=False``, the same calls run eagerly.

Example
-------
>>> from semtts.lobes.vits.synthesizer import VITSSynthesizer
>>> gen = VITSSynthesizer(n_vocab=10, spec_channels=9, segment_frames=4, inter_channels=4,
...     hidden_channels=8, filter_channels=16, n_heads=2, n_layers=1, kernel_size=3, p_dropout=0.0,
...     resblock="2", resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
...     upsample_rates=[4, 2], upsample_initial_channel=16, upsample_kernel_sizes=[8, 4],
...     posterior_n_layers=2, flow_n_layers=2, sdp_filter_channels=8, n_speakers=3, gin_channels=8).eval()
>>> fast = GraphedSynthesizer(gen)          # eager on the CPU
>>> out = fast(torch.randint(0, 10, (2, 7)), torch.tensor([7, 4]), sid=torch.tensor([0, 2]))
>>> out.waveform.shape[:2], bool(torch.equal(out.wav_lengths, out.durations.sum(1) * 8))
(torch.Size([2, 1]), True)
"""

import math
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from semtts.errors import ConfigError
from semtts.lobes.vits.input_checks import check_tokens, int64_on
from semtts.lobes.vits.synthesizer import VITSInference
from semtts.lobes.vits.text_encoder import TextEncoderOutput

__all__ = ["DECODE_DTYPES", "MAX_FRAMES_PER_TOKEN", "DurationsTooLong", "GraphedSynthesizer", "check_precision",
           "cuda_index", "out_of_memory"]

DECODE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
"""The precisions synthesis can decode in (SpeechBrain's ``--precision`` names)."""


def check_precision(precision: str, device: torch.device | None, where: str = "graphed synthesis") -> None:
    """Refuse a precision synthesis cannot use on ``device``: an unknown
    name, or fp16 off a GPU (a CPU's half-precision convolutions are
    emulated: ``vits_base`` at 200 tokens took over 10 minutes on two cores,
    against 0.7 s in bf16 and 1.2 s in fp32).

    Arguments
    ---------
    precision : str
        ``fp32``, ``fp16`` or ``bf16``.
    device : torch.device or None
        Where synthesis runs (None: not known yet, the name only).
    where : str
        Names the setting in the one-line error.

    Example
    -------
    >>> check_precision("bf16", torch.device("cpu"))
    >>> check_precision("fp16", torch.device("cpu"))
    Traceback (most recent call last):
    ...
    semtts.errors.ConfigError: graphed synthesis: precision fp16 needs a CUDA device (on cpu: bf16 or fp32)
    """
    if precision not in DECODE_DTYPES:
        raise ConfigError(f"{where}: precision must be one of {', '.join(DECODE_DTYPES)}, got {precision!r}")
    if precision == "fp16" and device is not None and torch.device(device).type != "cuda":
        raise ConfigError(f"{where}: precision fp16 needs a CUDA device (on {device}: bf16 or fp32)")


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def cuda_index(device: torch.device) -> int:
    """The CUDA device that graphs for tensors on ``device`` are captured and
    replayed on: its own index, not the current device's (``cuda`` without
    an index: the current device, where such tensors are made).

    Arguments
    ---------
    device : torch.device
        A CUDA device.

    Returns
    -------
    int

    Example
    -------
    >>> cuda_index(torch.device("cuda:1"))
    1
    """
    if device.type != "cuda":
        raise ConfigError(f"graphed synthesis: CUDA graphs need a CUDA device, got {device}")
    return device.index if device.index is not None else torch.cuda.current_device()


class _Graph:
    """One callable captured on the CUDA device of its inputs, with static inputs and outputs."""

    def __init__(self, fn: Callable[[], tuple[torch.Tensor, ...]], device: torch.device, warmup: int = 2):
        self.device = device = cuda_index(device)
        with torch.cuda.device(device):  # the stream, the capture and the RNG are the inputs' device's
            side = torch.cuda.Stream(device=device)
            side.wait_stream(torch.cuda.current_stream(device))
            # the warm-up's random draws are undone: a seeded run gives the same audio
            # whether or not this call had to capture a graph first
            with torch.random.fork_rng(devices=[device]), torch.cuda.stream(side):
                for _ in range(warmup):  # cuDNN/cuBLAS choose their kernels outside the capture
                    fn()
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = fn()

    def replay(self) -> tuple[torch.Tensor, ...]:
        with torch.cuda.device(self.device):
            self.graph.replay()
        return self.outputs


MAX_FRAMES_PER_TOKEN = 200
"""The default limit on the predicted frames per token, past which synthesis stops before decoding (``semtts
synth --max-frames-per-token``): 200 frames are 2.3 s per phoneme at 22.05 kHz, far past any real speech."""


class DurationsTooLong(RuntimeError):
    """Predicted durations past :attr:`GraphedSynthesizer.max_frames_per_token`, refused before decoding;
    ``row`` is the batch item with the most frames per token (None when not known)."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row


def _worst_row(per_token: torch.Tensor) -> int:
    """The item with the most frames per token, a non-finite count first."""
    return int(torch.nan_to_num(per_token.double(), nan=math.inf).argmax())


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation that failed: torch's (CUDA or host), cuDNN's or cuBLAS's, Python's.

    Example
    -------
    >>> [out_of_memory(e) for e in (torch.OutOfMemoryError("CUDA out of memory"), MemoryError(),
    ...  RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), RuntimeError("illegal memory access"))]
    [True, True, True, False]
    """
    text = str(err)
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or any(
        s in text for s in ("out of memory", "can't allocate memory", "ALLOC_FAILED"))


class GraphedSynthesizer(nn.Module):
    """:meth:`VITSSynthesizer.infer` from CUDA graphs captured per padded shape.

    Arguments
    ---------
    generator : torch.nn.Module
        A :class:`~semtts.lobes.vits.synthesizer.VITSSynthesizer` (or the
        semantic subclass) in eval mode, weight norm folded for speed.
    token_bucket : int
        Token counts are padded up to a multiple of this.
    frame_bucket : int
        Frame counts are padded up to a multiple of this.
    enabled : bool
        Use graphs when the generator is on a CUDA device (else eager).
    max_graphs : int
        Graphs kept at most (each holds its own memory pool); past it, the
        least recently used are released, a first-half graph with the
        decoder graphs that read its outputs.
    precision : str
        ``fp32``, ``fp16`` or ``bf16``: the flow and the decoder, where a
        synthesis's arithmetic and memory traffic lie, run under autocast to
        this precision (fp16: CUDA only); the text encoder and the duration
        predictor stay float32, so the durations do not change.
    max_frames_per_token : int or None
        An utterance whose predicted frames exceed this many per token
        (blanks included) is refused with :class:`DurationsTooLong` before
        it is decoded (None: no limit). Speech takes about 5 frames per
        token at 22.05 kHz and hop 256; the default, 200 (2.3 s per token
        there), stops a duration noise or speed setting, or a broken
        duration predictor, that would decode hours of audio.
    """

    def __init__(self, generator: nn.Module, token_bucket: int = 32, frame_bucket: int = 128,
                 enabled: bool = True, max_graphs: int = 64, precision: str = "fp32",
                 max_frames_per_token: int | None = MAX_FRAMES_PER_TOKEN):
        super().__init__()
        if max_frames_per_token is not None and max_frames_per_token < 1:
            raise ConfigError("graphed synthesis: max_frames_per_token must be >= 1 or None, "
                              f"got {max_frames_per_token}")
        self.max_frames_per_token = max_frames_per_token
        check_precision(precision, None)  # the device is checked at each call
        self.precision, self.decode_dtype = precision, DECODE_DTYPES[precision]
        if token_bucket < 1 or frame_bucket < 1:
            raise ConfigError(f"graphed synthesis: buckets must be >= 1, got {token_bucket}, {frame_bucket}")
        if max_graphs < 2:
            raise ConfigError(f"graphed synthesis: max_graphs must be >= 2 (one per half), got {max_graphs}")
        self.generator = generator
        self.token_bucket = token_bucket
        self.frame_bucket = frame_bucket
        self.enabled = enabled
        self.max_graphs = max_graphs
        self._durations: dict[tuple, tuple[dict[str, torch.Tensor], _Graph]] = {}
        self._decoders: dict[tuple, _Graph] = {}
        self._last_used: OrderedDict[tuple, None] = OrderedDict()  # both kinds of key, oldest first
        self.captured = 0  # graphs captured so far (a call that captured is no measure of replay speed)

    @property
    def graphs(self) -> int:
        """Number of graphs held now."""
        return len(self._durations) + len(self._decoders)

    def release_graphs(self) -> None:
        """Release every graph held, and with them their memory pools (after an
        out-of-memory error: the memory of the shapes seen before is then free
        for the retry; later calls capture their graphs again)."""
        self._durations.clear()
        self._decoders.clear()
        self._last_used.clear()

    def _used(self, key: tuple) -> None:
        """Mark ``key`` as just used, then release the least recently used
        graphs beyond ``max_graphs`` (never the two of the current call)."""
        self._last_used[key] = None
        self._last_used.move_to_end(key)
        for old in list(self._last_used):
            if self.graphs <= self.max_graphs:
                break
            if old == key or old == key[:len(old)]:  # this call's graphs
                continue
            del self._last_used[old]
            if old in self._decoders:
                del self._decoders[old]
            else:  # a first half: its decoders read its outputs
                del self._durations[old]
                for decode_key in [k for k in self._decoders if k[:len(old)] == old]:
                    del self._decoders[decode_key]
                    self._last_used.pop(decode_key, None)

    def _use_graphs(self, device: torch.device) -> bool:
        return self.enabled and device.type == "cuda"

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, token_lengths: torch.Tensor, sid: torch.Tensor | None = None,
                spk_embed: torch.Tensor | None = None, noise_scale: float = 0.667, length_scale: float = 1.0,
                noise_scale_w: float = 0.8) -> VITSInference:
        """Synthesise (arguments and result as :meth:`VITSSynthesizer.infer`, without ``max_len``).

        Arguments
        ---------
        tokens : torch.Tensor
            ``[B, T_text]`` token ids.
        token_lengths : torch.Tensor
            ``[B]`` token counts.
        sid : torch.Tensor, optional
            ``[B]`` speaker ids.
        spk_embed : torch.Tensor, optional
            ``[B, spk_embed_dim]`` speaker vectors.
        noise_scale, length_scale, noise_scale_w : float
            Prior noise, speed and duration noise.

        Returns
        -------
        VITSInference
            Waveform ``[B, 1, max(spec_lengths) * hop]`` (float32) and the rest, cut to the true sizes.

        Raises
        ------
        DurationsTooLong
            An utterance's frames per token (its average: one long pause
            among many tokens passes) exceed ``max_frames_per_token``.
        """
        gen = self.generator
        check_tokens(tokens, token_lengths)
        check_precision(self.precision, tokens.device)
        token_lengths = int64_on(token_lengths, tokens.device)
        g = gen.speaker_condition(sid, spk_embed)
        graphed = self._use_graphs(tokens.device)
        if graphed:
            static, (hidden, m_p, logs_p, token_mask, durations) = self._predict_graphed(
                tokens, token_lengths, g, noise_scale, length_scale, noise_scale_w)
        else:
            with torch.autocast(tokens.device.type, enabled=False):  # float32 also under a caller's autocast
                text, durations = gen.predict_durations(tokens, token_lengths, g, noise_scale_w=noise_scale_w,
                                                        length_scale=length_scale)
            token_mask = text.mask
        frames = durations.sum(1)
        spec_lengths = frames.long()
        per_token = frames / token_lengths.clamp(min=1)  # (float: non-finite durations stay visible)
        n_frames, most = torch.stack([spec_lengths.max().double(), per_token.max().double()]).tolist()
        n_frames, n_tokens = int(n_frames), tokens.size(1)  # the one read-back: it sizes the output
        if not math.isfinite(most) and self.max_frames_per_token is None:  # (no limit: still no NaN lengths)
            raise DurationsTooLong("not finite", _worst_row(per_token))
        if self.max_frames_per_token is not None and not most <= self.max_frames_per_token:
            raise DurationsTooLong(f"{most:.0f} frames per token, more than max_frames_per_token "
                                   f"{self.max_frames_per_token}", _worst_row(per_token))
        if graphed:
            waveform, path, spec_mask = self._decode_graphed(
                static, (hidden, m_p, logs_p, token_mask, durations), _round_up(n_frames, self.frame_bucket))
        else:
            with self._decoding(tokens.device):
                waveform, _, path, spec_mask = gen.decode_durations(text, durations, g, noise_scale=noise_scale)
        hop = gen.hop_length
        return VITSInference(
            # a copy: a graph's output is overwritten by its next replay
            waveform[:, :, :n_frames * hop].to(torch.float32, copy=True), spec_lengths * hop,
            durations[:, :n_tokens].long(),
            spec_lengths, path[:, :n_frames, :n_tokens].clone(), token_mask[:, :, :n_tokens].clone(),
            spec_mask[:, :, :n_frames].clone(),
        )

    def _decoding(self, device: torch.device):
        """Autocast to :attr:`precision` for the flow and the decoder (float32: autocast off, also a
        caller's). No cast is cached: every weight is used about once, and a graph replays its casts."""
        return torch.autocast(device.type, dtype=self.decode_dtype, enabled=self.decode_dtype != torch.float32,
                              cache_enabled=False)

    def _predict_graphed(self, tokens: torch.Tensor, token_lengths: torch.Tensor, g: torch.Tensor | None,
                         noise_scale: float, length_scale: float, noise_scale_w: float):
        """Replay (captured first at a new shape) the durations graph of the padded token count: its static
        inputs and its outputs (hidden, m_p, logs_p, token mask, durations)."""
        gen = self.generator
        batch, n_tokens = tokens.shape
        key = (batch, _round_up(n_tokens, self.token_bucket), None if g is None else tuple(g.shape), tokens.device)
        if key not in self._durations:
            static = {"key": key,
                      "tokens": torch.zeros(batch, key[1], dtype=torch.long, device=tokens.device),
                      "lengths": torch.ones(batch, dtype=torch.long, device=tokens.device),
                      "scales": torch.zeros(3, device=tokens.device)}
            if g is not None:
                static["g"] = torch.zeros_like(g)

            def durations_fn(s=static):
                with torch.autocast(s["tokens"].device.type, enabled=False):
                    text, durations = gen.predict_durations(s["tokens"], s["lengths"], s.get("g"),
                                                            noise_scale_w=s["scales"][2],
                                                            length_scale=s["scales"][1])
                return text.hidden, text.m_p, text.logs_p, text.mask, durations

            # captured on placeholder inputs, on the tokens' device
            self._durations[key] = (static, _Graph(durations_fn, tokens.device))
            self.captured += 1
        self._used(key)
        static, graph = self._durations[key]
        self._fill(static, tokens, token_lengths, g, noise_scale, length_scale, noise_scale_w)
        return static, graph.replay()

    def _decode_graphed(self, static: dict, outputs: tuple[torch.Tensor, ...], padded_frames: int):
        """Replay (captured first at a new frame count) the decoder graph that reads ``outputs`` of the
        durations graph of ``static``: waveform, path and frame mask, padded."""
        decode_key = (*static["key"], padded_frames)
        if decode_key not in self._decoders:
            def decode_fn(s=static, outputs=outputs, frames=padded_frames):
                text = TextEncoderOutput(*outputs[:4])
                with self._decoding(s["tokens"].device):
                    waveform, _, path, spec_mask = self.generator.decode_durations(
                        text, outputs[4], s.get("g"), noise_scale=s["scales"][0], n_frames=frames)
                return waveform, path, spec_mask

            # reads, never writes, the first half's outputs
            self._decoders[decode_key] = _Graph(decode_fn, static["tokens"].device)
            self.captured += 1
        self._used(decode_key)
        return self._decoders[decode_key].replay()

    @staticmethod
    def _fill(static: dict[str, torch.Tensor], tokens: torch.Tensor, token_lengths: torch.Tensor,
              g: torch.Tensor | None, noise_scale: float, length_scale: float, noise_scale_w: float) -> None:
        """Copy a call's inputs into a graph's static buffers (padding zeroed)."""
        static["tokens"].zero_()
        static["tokens"][:, :tokens.size(1)].copy_(tokens, non_blocking=True)
        static["lengths"].copy_(token_lengths, non_blocking=True)
        if g is not None:
            static["g"].copy_(g, non_blocking=True)
        static["scales"].copy_(torch.tensor([noise_scale, length_scale, noise_scale_w]), non_blocking=True)
