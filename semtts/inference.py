"""Synthesis with a trained generator: zero-shot voice cloning from one
reference recording.

:func:`clone_voice` loads a wav (:mod:`semtts.audio`), embeds it with CAM++
(:class:`~semtts.extract.speaker.SpeakerEmbedder`, which resamples to 16 kHz)
and synthesizes token ids in that voice with a generator conditioned on
speaker vectors (``speaker_mode`` ``speaker`` or ``utterance``). It is the
small, reusable step under the higher-level synthesis interface.

A reference shorter than :data:`MIN_REFERENCE_SECONDS` or silent (peak
below :data:`SILENCE_PEAK` once mixed to mono: anti-phase stereo cancels
out) is a one-line :class:`~semtts.errors.DataError` naming the file, and
:func:`check_scales` rejects speed and noise settings synthesis cannot use.

Example
-------
>>> import tempfile, pathlib
>>> from semtts.audio import save_audio
>>> from semtts.extract.speaker import SpeakerEmbedder
>>> from semtts.lobes.vits.synthesizer import VITSSynthesizer
>>> _ = torch.manual_seed(0)
>>> generator = VITSSynthesizer(n_vocab=10, spec_channels=9, segment_frames=2, inter_channels=4, hidden_channels=8,
...     filter_channels=8, n_heads=2, n_layers=1, kernel_size=3, p_dropout=0.0, resblock="2",
...     resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 2]], upsample_rates=[4, 2],
...     upsample_initial_channel=8, upsample_kernel_sizes=[8, 4], posterior_n_layers=1, flow_n_layers=1,
...     sdp_filter_channels=8, spk_embed_dim=16, gin_channels=8).eval()
>>> embedder = SpeakerEmbedder.from_checkpoint(None, embed_dim=16, allow_random_init=True)
>>> reference = pathlib.Path(tempfile.mkdtemp()) / "ref.wav"
>>> save_audio(reference, torch.randn(22050) * 0.1, 22050)
>>> out = clone_voice(generator, [3, 4, 5], reference, embedder, sample_rate=22050)
>>> out.waveform.shape[0] == int(out.durations.sum()) * 8, out.durations.shape, out.spk_embed.shape
(True, torch.Size([7]), torch.Size([16]))
>>> save_audio(reference, torch.zeros(22050), 22050)
>>> clone_voice(generator, [3, 4, 5], reference, embedder, sample_rate=22050)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
semtts.errors.DataError: /.../ref.wav: the reference recording is silent (...)
>>> check_scales(length_scale=0.0)
Traceback (most recent call last):
...
semtts.errors.ConfigError: length_scale must be a finite number > 0 and <= 10, got 0.0
"""

import math
import numbers
from pathlib import Path
from typing import NamedTuple

import torch

from semtts.audio import read_checked_audio
from semtts.errors import ConfigError, DataError
from semtts.extract.speaker import SpeakerEmbedder
from semtts.graphed_inference import DurationsTooLong, GraphedSynthesizer
from semtts.text.tokenizer import BLANK_ID, intersperse

__all__ = ["ClonedVoice", "clone_voice", "embed_recording", "check_scales", "scale_problem",
           "MIN_REFERENCE_SECONDS", "SILENCE_PEAK"]

MIN_REFERENCE_SECONDS = 0.3
"""The shortest usable reference recording (CAM++ needs a few hundred ms of speech)."""
SILENCE_PEAK = 1e-4
"""A reference whose peak (mono, DC removed) is below this is silent."""
SCALE_LIMITS = {"length_scale": (0.0, False, 10.0), "noise_scale": (0.0, True, 10.0),
                "noise_scale_w": (0.0, True, 10.0)}
"""``name: (lower, lower bound allowed, upper)`` of the synthesis scales."""


class ClonedVoice(NamedTuple):
    """What :func:`clone_voice` returns."""

    waveform: torch.Tensor
    """``[T]`` float32 samples on the CPU, ``T = durations.sum() * hop_length``."""
    sample_rate: int
    """The rate of ``waveform`` (the generator's)."""
    durations: torch.Tensor
    """``[T_text]`` frames per token (blanks included when ``add_blank``)."""
    spk_embed: torch.Tensor
    """``[D]`` the CAM++ embedding of the reference."""


def scale_problem(name: str, value: object) -> str | None:
    """Why ``value`` is not a usable synthesis scale ``name`` (None: it is).

    Arguments
    ---------
    name : str
        ``length_scale`` (finite, > 0 and <= 10), ``noise_scale`` or
        ``noise_scale_w`` (finite, >= 0 and <= 10).
    value : object
        The value to check.

    Returns
    -------
    str or None
        ``"must be ..., got ..."``, or None.

    Example
    -------
    >>> scale_problem("noise_scale", 0.0) is None, scale_problem("noise_scale_w", float("nan"))
    (True, 'must be a finite number >= 0 and <= 10, got nan')
    """
    lower, inclusive, upper = SCALE_LIMITS[name]
    wanted = f"must be a finite number {'>=' if inclusive else '>'} {lower:g} and <= {upper:g}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return wanted
    value = float(value)
    if not math.isfinite(value) or value > upper or value < lower or (value == lower and not inclusive):
        return wanted
    return None


def check_scales(length_scale: float = 1.0, noise_scale: float = 0.667, noise_scale_w: float = 0.8) -> None:
    """Raise a one-line :class:`ConfigError` for a speed or noise setting synthesis cannot use.

    Arguments
    ---------
    length_scale, noise_scale, noise_scale_w : float
        Speed, prior noise and duration noise (see :func:`scale_problem` for the ranges).
    """
    for name, value in (("length_scale", length_scale), ("noise_scale", noise_scale),
                        ("noise_scale_w", noise_scale_w)):
        problem = scale_problem(name, value)
        if problem:
            raise ConfigError(f"{name} {problem}")


def embed_recording(embedder: SpeakerEmbedder, path: str | Path, what: str = "reference recording") -> torch.Tensor:
    """The CAM++ vector ``[embed_dim]`` of one recording; one-line errors name ``path``.

    Arguments
    ---------
    embedder : SpeakerEmbedder
        CAM++.
    path : str or Path
        Any audio file soundfile reads, at any rate (mixed to mono), at
        least :data:`MIN_REFERENCE_SECONDS` long and not silent.
    what : str
        What it is, for the messages.

    Returns
    -------
    torch.Tensor
    """
    wav, sr = read_checked_audio(path, what, min_seconds=MIN_REFERENCE_SECONDS)  # (finite samples)
    peak = float((wav - wav.mean()).abs().max())
    if peak < SILENCE_PEAK:
        raise DataError(f"{path}: the {what} is silent (peak {peak:.1e} < {SILENCE_PEAK:g} once mixed to mono; "
                        "anti-phase stereo channels cancel out)")
    try:
        vector = embedder.embed([wav], sr)[0]
    except DataError as err:
        raise DataError(f"{path}: the {what} cannot be embedded ({err})") from None
    if not torch.isfinite(vector).all():
        raise DataError(f"{path}: the {what} gives a non-finite speaker embedding")
    return vector


@torch.inference_mode()
def clone_voice(
    generator: torch.nn.Module,
    token_ids: list[int],
    reference_wav: str | Path,
    embedder: SpeakerEmbedder,
    sample_rate: int,
    add_blank: bool = True,
    noise_scale: float = 0.667,
    noise_scale_w: float = 0.8,
    length_scale: float = 1.0,
) -> ClonedVoice:
    """Synthesize ``token_ids`` in the voice of one reference recording.

    Arguments
    ---------
    generator : VITSSynthesizer
        A trained generator conditioned on speaker vectors of the embedder's
        dimension (its ``speaker.spk_embed_dim``), in eval mode.
    token_ids : list of int
        Token ids from the model's token list, without blanks.
    reference_wav : str or Path
        Any audio file soundfile reads, at any rate (mixed to mono).
    embedder : SpeakerEmbedder
        CAM++ loaded as in stage 3 (same checkpoint as the training embeddings).
    sample_rate : int
        The generator's output rate (the recipe's ``sample_rate``).
    add_blank : bool
        Intersperse the blank token, as the model was trained (``add_blank``).
    noise_scale, noise_scale_w, length_scale : float
        Prior noise, duration noise and speed (see ``VITSSynthesizer.infer``).

    Returns
    -------
    ClonedVoice
        ``waveform`` ``[T]``, ``sample_rate``, ``durations`` ``[T_text]``, ``spk_embed`` ``[D]``.
    """
    speaker = getattr(generator, "speaker", None)
    expected = getattr(speaker, "spk_embed_dim", 0) if speaker is not None else 0
    if expected <= 0:
        raise ConfigError("clone_voice: the generator is not conditioned on speaker vectors (train it with "
                          "speaker_mode speaker or utterance)")
    if embedder.embed_dim != expected:
        raise ConfigError(f"clone_voice: the embedder gives {embedder.embed_dim}-d vectors but the generator "
                          f"takes {expected}-d ones (use the CAM++ checkpoint of its training)")
    if not token_ids:
        raise DataError("clone_voice: no tokens to synthesize")
    check_scales(length_scale, noise_scale, noise_scale_w)
    spk_embed = embed_recording(embedder, reference_wav)
    ids = intersperse(token_ids, BLANK_ID) if add_blank else list(token_ids)
    device = next(generator.parameters()).device
    tokens = torch.tensor([ids], dtype=torch.long, device=device)
    synthesizer = GraphedSynthesizer(generator, enabled=False)  # eager; refuses runaway durations before decoding
    try:
        out = synthesizer(tokens, torch.tensor([len(ids)], device=device), spk_embed=spk_embed[None].to(device),
                          noise_scale=noise_scale, noise_scale_w=noise_scale_w, length_scale=length_scale)
    except DurationsTooLong as err:
        raise DataError(f"clone_voice: the predicted durations are {err} (length_scale {length_scale}, "
                        f"noise_scale_w {noise_scale_w})") from None
    n = int(out.wav_lengths[0])
    waveform = out.waveform[0, 0, :n].float().cpu()
    if not bool(torch.isfinite(waveform).all()):
        raise DataError("clone_voice: the generator synthesized non-finite audio (its weights may have diverged)")
    return ClonedVoice(waveform, int(sample_rate), out.durations[0].cpu(), spk_embed)
