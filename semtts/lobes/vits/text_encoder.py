"""The VITS text (prior) encoder: tokens to the prior Gaussian per token.

:class:`RelativeTransformerEncoder` is the post-norm transformer stack with
relative-position self-attention; :class:`TextEncoder` embeds the tokens, runs
the stack and projects every token to the mean and log-std of the prior
``m_p, logs_p``. The hidden features are returned too (a semantic predictor
reads them).

Example
-------
>>> enc = TextEncoder(n_vocab=10, out_channels=4, hidden_channels=8,
...                   filter_channels=16, n_heads=2, n_layers=1)
>>> out = enc(torch.randint(0, 10, (2, 5)), torch.tensor([5, 3]))
>>> out.hidden.shape, out.m_p.shape, out.logs_p.shape, out.mask.shape
(torch.Size([2, 8, 5]), torch.Size([2, 4, 5]), torch.Size([2, 4, 5]), torch.Size([2, 1, 5]))
"""

import math
from typing import NamedTuple

import torch
from torch import nn

from semtts.lobes.vits.attention import ChannelLayerNorm, ConvFeedForward, RelativeMultiHeadAttention, relative_pairs
from semtts.lobes.vits.masks import lengths_to_mask
from semtts.lobes.vits.pointwise import PointwiseConv1d

__all__ = ["RelativeTransformerEncoder", "TextEncoderOutput", "TextEncoder"]


class RelativeTransformerEncoder(nn.Module):
    """Stack of post-norm transformer layers with relative-position attention.

    Each layer: ``x = norm1(x + drop(attn(x)))`` then
    ``x = norm2(x + drop(ffn(x)))``; padded frames are kept at zero.

    Arguments
    ---------
    hidden_channels : int
        Width of the features.
    filter_channels : int
        Hidden width of the feed-forward networks.
    n_heads : int
        Attention heads.
    n_layers : int
        Number of layers.
    kernel_size : int
        Kernel of the feed-forward convolutions.
    p_dropout : float
        Dropout on attention weights and on both residual branches.
    window_size : int
        Relative-position window of the attention.

    Example
    -------
    >>> stack = RelativeTransformerEncoder(8, 16, n_heads=2, n_layers=2)
    >>> stack(torch.randn(2, 8, 6), torch.ones(2, 1, 6)).shape
    torch.Size([2, 8, 6])
    """

    def __init__(
        self,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int = 3,
        p_dropout: float = 0.0,
        window_size: int = 4,
    ):
        super().__init__()
        self.dropout = nn.Dropout(p_dropout)
        self.window_size = window_size
        self.attentions = nn.ModuleList()
        self.norms_attention = nn.ModuleList()
        self.feed_forwards = nn.ModuleList()
        self.norms_feed_forward = nn.ModuleList()
        for _ in range(n_layers):
            self.attentions.append(
                RelativeMultiHeadAttention(hidden_channels, n_heads, window_size, p_dropout)
            )
            self.norms_attention.append(ChannelLayerNorm(hidden_channels))
            self.feed_forwards.append(
                ConvFeedForward(hidden_channels, filter_channels, kernel_size, p_dropout)
            )
            self.norms_feed_forward.append(ChannelLayerNorm(hidden_channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` ``[B, C, T]`` under ``mask`` ``[B, 1, T]``; returns ``[B, C, T]``."""
        attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)
        x = x * mask
        pairs = None  # the relative-position table depends on the length only: built once for every layer
        if self.window_size is not None:
            device = x.device.type
            dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
            pairs = relative_pairs(x.shape[-1], self.window_size, x.device, dtype)
        for attention, norm_a, feed_forward, norm_f in zip(
            self.attentions, self.norms_attention, self.feed_forwards, self.norms_feed_forward
        ):
            x = norm_a(x + self.dropout(attention(x, attn_mask, pairs)))
            x = norm_f(x + self.dropout(feed_forward(x, mask)))
        return x * mask


class TextEncoderOutput(NamedTuple):
    """What :class:`TextEncoder` returns (all channel-first)."""

    hidden: torch.Tensor
    """``[B, H, T_text]`` transformer features."""
    m_p: torch.Tensor
    """``[B, C, T_text]`` prior means."""
    logs_p: torch.Tensor
    """``[B, C, T_text]`` prior log standard deviations."""
    mask: torch.Tensor
    """``[B, 1, T_text]`` token mask."""


class TextEncoder(nn.Module):
    """Token ids to the per-token prior ``N(m_p, exp(logs_p)^2)`` of VITS.

    Arguments
    ---------
    n_vocab : int
        Number of token ids.
    out_channels : int
        Channels ``C`` of the latent ``z`` (``inter_channels``).
    hidden_channels : int
        Width ``H`` of the embedding and of the transformer.
    filter_channels : int
        Hidden width of the feed-forward networks.
    n_heads : int
        Attention heads.
    n_layers : int
        Transformer layers.
    kernel_size : int
        Kernel of the feed-forward convolutions.
    p_dropout : float
        Transformer dropout.
    window_size : int
        Relative-position window.

    Example
    -------
    >>> enc = TextEncoder(12, 4, 8, 16, n_heads=2, n_layers=2, kernel_size=3)
    >>> out = enc(torch.randint(0, 12, (3, 9)), torch.tensor([9, 4, 1]))
    >>> out.m_p.shape, float(out.m_p[2, :, 1:].detach().abs().sum())
    (torch.Size([3, 4, 9]), 0.0)
    """

    def __init__(
        self,
        n_vocab: int,
        out_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int = 3,
        p_dropout: float = 0.0,
        window_size: int = 4,
    ):
        super().__init__()
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.embedding = nn.Embedding(n_vocab, hidden_channels)
        nn.init.normal_(self.embedding.weight, 0.0, hidden_channels**-0.5)
        self.encoder = RelativeTransformerEncoder(
            hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout, window_size
        )
        self.proj = PointwiseConv1d(hidden_channels, 2 * out_channels)

    def forward(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> TextEncoderOutput:
        """Encode a padded batch of token ids.

        Arguments
        ---------
        tokens : torch.Tensor
            ``[B, T_text]`` token ids.
        token_lengths : torch.Tensor
            ``[B]`` absolute lengths.

        Returns
        -------
        TextEncoderOutput
            ``hidden`` ``[B, H, T_text]``, ``m_p`` and ``logs_p``
            ``[B, C, T_text]``, ``mask`` ``[B, 1, T_text]``.
        """
        x = self.embedding(tokens) * math.sqrt(self.hidden_channels)  # [B, T, H]
        x = x.transpose(1, 2)
        mask = lengths_to_mask(token_lengths, tokens.size(1), x.dtype)
        hidden = self.encoder(x, mask)
        m_p, logs_p = self.project(hidden, mask)
        return TextEncoderOutput(hidden, m_p, logs_p, mask)

    def project(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior statistics of hidden features (also of features a
        semantic adapter changed after the transformer).

        Arguments
        ---------
        hidden : torch.Tensor
            ``[B, H, T_text]`` features.
        mask : torch.Tensor
            ``[B, 1, T_text]`` token mask.

        Returns
        -------
        m_p, logs_p : torch.Tensor
            ``[B, C, T_text]`` each, zero on padded tokens.
        """
        stats = self.proj(hidden) * mask
        m_p, logs_p = stats.split(self.out_channels, dim=1)
        return m_p, logs_p
