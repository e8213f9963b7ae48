"""The optional speaker-consistency term of the generator loss: the cosine
distance between the CAM++ embeddings of the generated and the real
waveform windows of a training step.

CAM++ is frozen (eval mode, no gradient to its weights) and loaded with the
settings of stage 3 (``campplus_ckpt``, ``campplus_embed_dim``,
``allow_random_init``, ``campplus_cache_dir``, ``seed``), so the term
measures speakers in the space the model is conditioned on. The features
stay differentiable with respect to the generated audio: torchaudio's
resampling and Kaldi fbank are built from torch operations. The real windows
are embedded without gradient. CAM++ runs in float32 outside autocast.

The term is off by default (``c_spk: 0.0``); :func:`speaker_consistency_loss`
then returns None and CAM++ is not even loaded.

Example
-------
>>> from semtts.lobes.campplus import CAMPPlus
>>> torch.manual_seed(0) is not None
True
>>> loss = SpeakerConsistencyLoss(CAMPPlus(embedding_size=32), sample_rate=22050, weight=1.0)
>>> real = torch.randn(2, 1, 4096) * 0.1                    # [B, 1, S] windows
>>> fake = (real + 0.05 * torch.randn(2, 1, 4096)).requires_grad_()
>>> value = loss(fake, real)
>>> value.shape, bool(value > 0)
(torch.Size([]), True)
>>> float(loss(real, real)) < 1e-6                          # identical windows: no distance
True
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from semtts.audio import resampler
from semtts.errors import ConfigError
from semtts.audio.kaldi_fbank import SAMPLE_RATE, batch_fbank
from semtts.extract.speaker import load_campplus
from semtts.lobes.campplus import CAMPPlus

__all__ = ["SpeakerConsistencyLoss", "speaker_consistency_loss"]

_KEYS = ("campplus_ckpt", "campplus_embed_dim", "allow_random_init", "campplus_cache_dir", "seed")


class SpeakerConsistencyLoss(nn.Module):
    """Mean cosine distance ``1 - cos(e(y_hat), e(y))`` between CAM++ embeddings.

    Arguments
    ---------
    campplus : CAMPPlus
        The speaker network; it is frozen and put in eval mode here.
    sample_rate : int
        Rate of the waveforms (resampled to CAM++'s 16 kHz inside).
    weight : float
        ``c_spk``, the weight :meth:`add_to` applies.

    Example
    -------
    >>> loss = SpeakerConsistencyLoss(CAMPPlus(embedding_size=16), 16000, weight=0.5)
    >>> wav = torch.randn(1, 1, 3200) * 0.1
    >>> terms = loss.add_to({"loss": torch.tensor(1.0)}, wav, wav)
    >>> sorted(terms), round(float(terms["loss"]), 4)  # the same windows: equal embeddings
    (['loss', 'spk'], 1.0)
    """

    def __init__(self, campplus: CAMPPlus, sample_rate: int, weight: float = 1.0) -> None:
        super().__init__()
        self.campplus = campplus.eval().requires_grad_(False)
        self.sample_rate = int(sample_rate)
        self.weight = float(weight)
        self.resample = resampler(self.sample_rate, SAMPLE_RATE)  # its filter moves with the module

    def train(self, mode: bool = True) -> "SpeakerConsistencyLoss":
        """CAM++ stays in eval mode (frozen BatchNorm statistics) whatever ``mode`` is."""
        super().train(mode)
        self.campplus.eval()
        return self

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """CAM++ embeddings of ``[B, 1, S]`` or ``[B, S]`` windows: ``[B, D]``
        (differentiable with respect to ``wav``)."""
        wav = self.resample(wav.reshape(wav.shape[0], -1).float())
        feats = batch_fbank(wav)  # [B, T_frames, 80]
        return self.campplus(feats)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The unweighted term.

        Arguments
        ---------
        y_hat : torch.Tensor
            ``[B, 1, S]`` generated windows (gradients flow back into them).
        y : torch.Tensor
            ``[B, 1, S]`` real windows.

        Returns
        -------
        torch.Tensor
            Float32 scalar in [0, 2].
        """
        device_type = y_hat.device.type
        with torch.autocast(device_type, enabled=False):
            with torch.no_grad():
                real = self.embed(y.detach())
            fake = self.embed(y_hat)
            return (1.0 - F.cosine_similarity(fake, real, dim=-1)).mean()

    def add_to(self, terms: dict[str, torch.Tensor], y_hat: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Add the weighted term to a generator loss dict (``loss``) and log it as ``spk``.

        Arguments
        ---------
        terms : dict
            From :class:`~semtts.losses.VITSGeneratorLoss`.
        y_hat, y : torch.Tensor
            ``[B, 1, S]`` generated and real windows.

        Returns
        -------
        dict
            ``terms`` with ``loss`` increased by ``weight * spk`` and ``spk`` added.
        """
        spk = self(y_hat, y)
        return {**terms, "loss": terms["loss"] + self.weight * spk, "spk": spk}


def speaker_consistency_loss(hp: Any, device: str | torch.device = "cpu") -> SpeakerConsistencyLoss | None:
    """The term a Brain's hparams ask for: None when ``c_spk`` is 0 (or absent),
    else CAM++ loaded as stage 3 loads it, on ``device``.

    Arguments
    ---------
    hp : dict
        Hparams with ``c_spk``, ``sample_rate`` and, when ``c_spk > 0``, the
        CAM++ keys of stage 3.
    device : str or torch.device
        Where CAM++ runs.

    Returns
    -------
    SpeakerConsistencyLoss or None

    Example
    -------
    >>> speaker_consistency_loss({"c_spk": 0.0}) is None  # nothing is loaded
    True
    """
    weight = float(hp.get("c_spk", 0.0) or 0.0)
    if weight < 0:
        raise ConfigError(f"c_spk must be >= 0, got {weight}")
    if weight == 0:
        return None
    missing = [key for key in (*_KEYS, "sample_rate") if key not in hp]
    if missing:
        raise ConfigError(f"c_spk {weight}: the speaker-consistency loss needs CAM++ settings; the hparams lack "
                          f"{', '.join(missing)} (stage 3's keys, in the recipe's corpus.yaml)")
    model, _ = load_campplus(hp["campplus_ckpt"], int(hp["campplus_embed_dim"]), bool(hp["allow_random_init"]),
                             hp["campplus_cache_dir"], int(hp["seed"]))
    return SpeakerConsistencyLoss(model, int(hp["sample_rate"]), weight).to(device)
