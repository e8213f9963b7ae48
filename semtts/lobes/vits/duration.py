"""Duration predictors of VITS: how many spectrogram frames each token lasts.

Both predictors read the (detached) text-encoder features and the (detached)
speaker conditioning, and share one interface:

- ``loss(x, mask, durations, g)`` ``[B]``: per-item training loss, summed over
  the item's tokens;
- ``log_durations(x, mask, g, noise_scale)`` ``[B, 1, T_text]``: predicted
  log-durations for inference.

:class:`StochasticDurationPredictor` is the flow-based model of VITS: it
bounds the negative log-likelihood of the MAS durations by variational
dequantisation (the integer durations ``d`` are lifted to ``d - u`` with
``u in (0, 1)`` drawn by a posterior flow) and an augmented noise channel;
sampling at inference runs the flow in reverse from Gaussian noise.
:class:`DeterministicDurationPredictor` is the plain conv regressor of
FastSpeech / Glow-TTS (an option).

Example
-------
>>> sdp = StochasticDurationPredictor(8, 8, 3, p_dropout=0.0, n_flows=2)
>>> x, mask = torch.randn(2, 8, 5), torch.ones(2, 1, 5)
>>> sdp.loss(x, mask, torch.randint(1, 6, (2, 1, 5)).float()).shape
torch.Size([2])
>>> sdp.log_durations(x, mask).shape
torch.Size([2, 1, 5])
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from semtts.lobes.vits.attention import ChannelLayerNorm
from semtts.lobes.vits.duration_flows import ConvFlow, DDSConv, ElementwiseAffine, LogFlow
from semtts.lobes.vits.flow import Flip
from semtts.lobes.vits.opaque_conv import Conv1d
from semtts.lobes.vits.pointwise import PointwiseConv1d

__all__ = ["StochasticDurationPredictor", "DeterministicDurationPredictor"]

_LOG_2PI = math.log(2 * math.pi)


def _spline_flows(channels: int, kernel_size: int, n_flows: int) -> nn.ModuleList:
    """Elementwise affine, then ``n_flows`` x (spline coupling, flip) on 2 channels."""
    flows = nn.ModuleList([ElementwiseAffine(2)])
    for _ in range(n_flows):
        flows.append(ConvFlow(2, channels, kernel_size, n_layers=3))
        flows.append(Flip())
    return flows


class StochasticDurationPredictor(nn.Module):
    """Flow-based stochastic duration predictor of VITS.

    Arguments
    ---------
    in_channels : int
        Channels of the text features.
    filter_channels : int
        Width of the conditioner networks.
    kernel_size : int
        DDSConv kernel.
    p_dropout : float
        Dropout of the two conditioner DDSConv stacks.
    n_flows : int
        Spline couplings in each of the two flows.
    gin_channels : int
        Speaker conditioning channels (0: none).

    Example
    -------
    >>> sdp = StochasticDurationPredictor(4, 6, 3, 0.5, n_flows=1, gin_channels=3)
    >>> x, mask, g = torch.randn(1, 4, 7), torch.ones(1, 1, 7), torch.randn(1, 3, 1)
    >>> sdp.loss(x, mask, torch.ones(1, 1, 7), g=g).shape
    torch.Size([1])
    >>> sdp.log_durations(x, mask, g=g, noise_scale=0.8).shape
    torch.Size([1, 1, 7])
    """

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        p_dropout: float,
        n_flows: int = 4,
        gin_channels: int = 0,
    ):
        super().__init__()
        self.log_flow = LogFlow()
        self.flows = _spline_flows(filter_channels, kernel_size, n_flows)
        # posterior q(u, nu | d, text) of the dequantisation noise u and the extra channel nu
        self.post_pre = PointwiseConv1d(1, filter_channels)
        self.post_convs = DDSConv(filter_channels, kernel_size, n_layers=3, p_dropout=p_dropout)
        self.post_proj = PointwiseConv1d(filter_channels, filter_channels)
        self.post_flows = _spline_flows(filter_channels, kernel_size, n_flows)
        # text conditioner shared by both flows
        self.pre = PointwiseConv1d(in_channels, filter_channels)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers=3, p_dropout=p_dropout)
        self.proj = PointwiseConv1d(filter_channels, filter_channels)
        self.cond = PointwiseConv1d(gin_channels, filter_channels) if gin_channels else None

    def _condition(
        self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None
    ) -> torch.Tensor:
        """Text (and speaker) conditioning ``[B, F, T_text]``; no gradient reaches the inputs."""
        h = self.pre(x.detach())
        if g is not None and self.cond is not None:
            h = h + self.cond(g.detach())
        return self.proj(self.convs(h, mask)) * mask

    def loss(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        durations: torch.Tensor,
        g: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Variational upper bound of ``-log p(durations | text)`` per item.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, H, T_text]`` text features.
        mask : torch.Tensor
            ``[B, 1, T_text]`` token mask.
        durations : torch.Tensor
            ``[B, 1, T_text]`` frames per token (the MAS path summed over frames).
        g : torch.Tensor, optional
            ``[B, gin_channels, 1]`` speaker conditioning.

        Returns
        -------
        torch.Tensor
            ``[B]`` negative ELBO summed over each item's tokens.
        """
        h = self._condition(x, mask, g)
        h_d = self.post_proj(self.post_convs(self.post_pre(durations), mask)) * mask
        # sample (u, nu) from the posterior flow, starting from standard noise
        noise = torch.randn(durations.size(0), 2, durations.size(2), device=x.device, dtype=x.dtype)
        noise = noise * mask
        q_sample, logdet_q = noise, 0.0
        for flow in self.post_flows:
            q_sample, logdet = flow(q_sample, mask, g=h + h_d)
            logdet_q = logdet_q + logdet
        u_logits, nu = q_sample.split(1, dim=1)
        u = torch.sigmoid(u_logits) * mask
        # the sigmoid squashing is part of the posterior's change of variables
        logdet_q = logdet_q + torch.sum(
            (F.logsigmoid(u_logits) + F.logsigmoid(-u_logits)) * mask, dim=[1, 2]
        )
        log_q = torch.sum(-0.5 * (_LOG_2PI + noise.pow(2)) * mask, dim=[1, 2]) - logdet_q

        # prior flow on (log(d - u), nu) towards a standard Gaussian
        dequantised, logdet_p = self.log_flow((durations - u) * mask, mask)
        z = torch.cat([dequantised, nu], dim=1)
        for flow in self.flows:
            z, logdet = flow(z, mask, g=h)
            logdet_p = logdet_p + logdet
        nll = torch.sum(0.5 * (_LOG_2PI + z.pow(2)) * mask, dim=[1, 2]) - logdet_p
        return nll + log_q

    def log_durations(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        g: torch.Tensor | None = None,
        noise_scale: float = 1.0,
    ) -> torch.Tensor:
        """Sample log-durations by running the prior flow in reverse.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, H, T_text]`` text features.
        mask : torch.Tensor
            ``[B, 1, T_text]`` token mask.
        g : torch.Tensor, optional
            ``[B, gin_channels, 1]`` speaker conditioning.
        noise_scale : float
            Standard deviation of the starting noise (``noise_scale_w``).

        Returns
        -------
        torch.Tensor
            ``[B, 1, T_text]`` log-durations (frames).
        """
        h = self._condition(x, mask, g)
        z = torch.randn(x.size(0), 2, x.size(2), device=x.device, dtype=x.dtype) * noise_scale
        # The first spline coupling (right after the affine layer) only changes
        # the discarded channel nu, so its inverse is skipped.
        flows = [*reversed(self.flows[2:]), self.flows[0]]
        for flow in flows:
            z, _ = flow(z, mask, g=h, reverse=True)
        return z[:, :1] * mask


class DeterministicDurationPredictor(nn.Module):
    """Two conv-ReLU-norm-dropout layers and a projection to log-durations.

    Arguments
    ---------
    in_channels : int
        Channels of the text features.
    filter_channels : int
        Hidden channels.
    kernel_size : int
        Convolution kernel (odd).
    p_dropout : float
        Dropout after each layer.
    gin_channels : int
        Speaker conditioning channels (0: none).

    Example
    -------
    >>> dp = DeterministicDurationPredictor(4, 8, 3, 0.5)
    >>> x, mask = torch.randn(2, 4, 6), torch.ones(2, 1, 6)
    >>> dp.log_durations(x, mask).shape, dp.loss(x, mask, torch.ones(2, 1, 6)).shape
    (torch.Size([2, 1, 6]), torch.Size([2]))
    """

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        p_dropout: float,
        gin_channels: int = 0,
    ):
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = Conv1d(in_channels, filter_channels, kernel_size, padding=padding)
        self.norm1 = ChannelLayerNorm(filter_channels)
        self.conv2 = Conv1d(filter_channels, filter_channels, kernel_size, padding=padding)
        self.norm2 = ChannelLayerNorm(filter_channels)
        self.proj = PointwiseConv1d(filter_channels, 1)
        self.dropout = nn.Dropout(p_dropout)
        self.cond = PointwiseConv1d(gin_channels, in_channels) if gin_channels else None

    def log_durations(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        g: torch.Tensor | None = None,
        noise_scale: float = 1.0,
    ) -> torch.Tensor:
        """Predict log-durations ``[B, 1, T_text]`` (``noise_scale`` is unused: deterministic)."""
        x = x.detach()
        if g is not None and self.cond is not None:
            x = x + self.cond(g.detach())
        x = self.dropout(self.norm1(torch.relu(self.conv1(x * mask))))
        x = self.dropout(self.norm2(torch.relu(self.conv2(x * mask))))
        return self.proj(x * mask) * mask

    def loss(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        durations: torch.Tensor,
        g: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Squared error of the log-durations ``[B]``, summed over each item's tokens.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, H, T_text]`` text features.
        mask : torch.Tensor
            ``[B, 1, T_text]`` token mask.
        durations : torch.Tensor
            ``[B, 1, T_text]`` frames per token.
        g : torch.Tensor, optional
            ``[B, gin_channels, 1]`` speaker conditioning.

        Returns
        -------
        torch.Tensor
            ``[B]`` loss.
        """
        target = torch.log(durations + 1e-6) * mask
        predicted = self.log_durations(x, mask, g)
        return torch.sum((predicted - target).pow(2), dim=[1, 2])
