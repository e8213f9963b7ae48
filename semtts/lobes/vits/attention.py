"""Transformer parts of the VITS text encoder, channel-first ``[B, C, T]``.

- :class:`ChannelLayerNorm`: layer normalisation over the channel axis;
- :class:`RelativeMultiHeadAttention`: masked multi-head self-attention with
  windowed relative-position embeddings on keys and values (Shaw et al. 2018),
  as used by VITS (window 4, embeddings shared by the heads);
- :class:`ConvFeedForward`: the position-wise feed-forward network made of two
  masked 1-D convolutions.

Example
-------
>>> x = torch.randn(2, 16, 7)
>>> mask = torch.ones(2, 1, 7)
>>> attn = RelativeMultiHeadAttention(16, n_heads=2, window_size=4)
>>> attn(x, mask.unsqueeze(2) * mask.unsqueeze(-1)).shape
torch.Size([2, 16, 7])
>>> ConvFeedForward(16, 64, kernel_size=3)(x, mask).shape
torch.Size([2, 16, 7])
>>> ChannelLayerNorm(16)(x).shape
torch.Size([2, 16, 7])
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from semtts.errors import ConfigError
from semtts.lobes.vits.opaque_conv import Conv1d
from semtts.lobes.vits.pointwise import PointwiseConv1d, pointwise_conv1d

__all__ = ["ChannelLayerNorm", "RelativeMultiHeadAttention", "ConvFeedForward", "relative_pairs"]


def relative_pairs(steps: int, window_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[T_query, T_key, 2 window + 1]``: 1 where ``j - i`` is the distance ``r - window``, else 0.

    A product with this one-hot table places each distance's term at its
    pairs (and sums a query's weights per distance) exactly, as a gather
    and a scatter would; unlike them, ``torch.compile`` keeps its length
    symbolic through the backward pass. It depends on the length only, so
    a stack of layers builds it once (:class:`~semtts.lobes.vits.text_encoder.RelativeTransformerEncoder`).

    Example
    -------
    >>> pairs = relative_pairs(5, window_size=1)
    >>> pairs.shape
    torch.Size([5, 5, 3])
    >>> pairs[2].argmax(-1).tolist(), pairs[0, 4].sum().item()  # row 2: keys 1, 2, 3 at distances -1, 0, +1
    ([0, 0, 1, 2, 0], 0.0)
    """
    positions = torch.arange(steps, device=device)
    distance = positions.unsqueeze(0) - positions.unsqueeze(1)  # j - i
    window = torch.arange(-window_size, window_size + 1, device=device)
    return (distance.unsqueeze(-1) == window).to(dtype)


class ChannelLayerNorm(nn.Module):
    """Layer normalisation of every frame over its channels, for ``[B, C, T]``.

    Arguments
    ---------
    channels : int
        Number of channels ``C``.
    eps : float
        Added to the variance for numerical stability.

    Example
    -------
    >>> norm = ChannelLayerNorm(4)
    >>> y = norm(torch.randn(3, 4, 10))
    >>> y.shape, bool(y.mean(1).abs().max() < 1e-5)
    (torch.Size([3, 4, 10]), True)
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` ``[B, C, T]`` over ``C``; returns ``[B, C, T]``."""
        y = F.layer_norm(x.transpose(1, -1), self.gamma.shape, self.gamma, self.beta, self.eps)
        return y.transpose(1, -1)


class RelativeMultiHeadAttention(nn.Module):
    """Masked multi-head self-attention with windowed relative positions.

    Besides the usual content term ``q_i . k_j``, the attention logit of query
    ``i`` for key ``j`` gets a position term ``q_i . E_k[j - i]``, and the output
    of query ``i`` gets ``sum_j p_ij E_v[j - i]``, where ``E_k`` and ``E_v`` are
    learnt embeddings of the relative distances ``-window_size .. window_size``;
    farther pairs get no position term. The queries are scaled by
    ``1 / sqrt(d_head)`` for both terms.

    Arguments
    ---------
    channels : int
        Input and output channels (split across the heads).
    n_heads : int
        Number of attention heads; must divide ``channels``.
    window_size : int or None
        Largest relative distance with its own embedding; ``None`` for plain
        (position-free) attention.
    p_dropout : float
        Dropout on the attention weights.
    heads_share : bool
        One relative embedding table shared by all heads (as in VITS).

    Example
    -------
    >>> attn = RelativeMultiHeadAttention(8, n_heads=2, window_size=2)
    >>> x = torch.randn(1, 8, 5)
    >>> mask = torch.tensor([[[1.0, 1, 1, 0, 0]]])
    >>> y = attn(x, mask.unsqueeze(2) * mask.unsqueeze(-1))
    >>> y.shape
    torch.Size([1, 8, 5])
    """

    def __init__(
        self,
        channels: int,
        n_heads: int,
        window_size: int | None = 4,
        p_dropout: float = 0.0,
        heads_share: bool = True,
    ):
        super().__init__()
        if channels % n_heads:
            raise ConfigError(f"attention: channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.head_channels = channels // n_heads
        self.window_size = window_size
        self.query = PointwiseConv1d(channels, channels)
        self.key = PointwiseConv1d(channels, channels)
        self.value = PointwiseConv1d(channels, channels)
        self.out = PointwiseConv1d(channels, channels)
        self.dropout = nn.Dropout(p_dropout)
        for conv in (self.query, self.key, self.value):
            nn.init.xavier_uniform_(conv.weight)
        if window_size is not None:
            tables = 1 if heads_share else n_heads
            scale = self.head_channels**-0.5
            shape = (tables, 2 * window_size + 1, self.head_channels)
            self.rel_key = nn.Parameter(torch.randn(shape) * scale)
            self.rel_value = nn.Parameter(torch.randn(shape) * scale)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, pairs: torch.Tensor | None = None) -> torch.Tensor:
        """Attend ``x`` to itself.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, C, T]`` input features.
        attn_mask : torch.Tensor
            ``[B, 1, T, T]`` mask, 1 where query ``i`` may attend to key ``j``.
        pairs : torch.Tensor, optional
            :func:`relative_pairs` for ``T`` and this layer's window, when a
            stack of layers shares it (built here when omitted).

        Returns
        -------
        torch.Tensor
            ``[B, C, T]`` attended features.
        """
        batch, channels, steps = x.shape
        # the three projections as one product (three separate layers in the state dict)
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        projected = pointwise_conv1d(x, weight, bias).view(batch, 3, self.n_heads, self.head_channels, steps)
        query, key, value = projected.transpose(3, 4).unbind(1)  # [B, heads, T, d_head] each
        query = query / math.sqrt(self.head_channels)

        scores = query @ key.transpose(2, 3)
        if self.window_size is not None:
            if pairs is None:
                pairs = relative_pairs(steps, self.window_size, x.device, query.dtype)
            elif pairs.shape != (steps, steps, 2 * self.window_size + 1):
                raise ValueError(f"attention: relative pairs {list(pairs.shape)} do not fit length {steps} "
                                  f"and window {self.window_size}")
            pairs = pairs.to(query.dtype)
            # q_i . E_k[r] for every relative distance r, placed at j = i + r
            rel_scores = query @ self.rel_key.unsqueeze(0).transpose(2, 3)  # [B, heads, T, 2w + 1]
            scores = scores + torch.einsum("bhir,ijr->bhij", rel_scores, pairs)
        scores = scores.masked_fill(attn_mask == 0, -1e4)
        weights = self.dropout(torch.softmax(scores, dim=-1))

        output = weights @ value
        if self.window_size is not None:
            # sum the weights of each query per relative distance, then mix E_v
            rel_weights = torch.einsum("bhij,ijr->bhir", weights, pairs)
            output = output + rel_weights @ self.rel_value.unsqueeze(0)
        output = output.transpose(2, 3).reshape(batch, channels, steps)
        return self.out(output)


class ConvFeedForward(nn.Module):
    """Position-wise feed-forward network of two masked 1-D convolutions.

    ``conv2(dropout(relu(conv1(x * mask))) * mask) * mask``, both convolutions
    with "same" padding.

    Arguments
    ---------
    channels : int
        Input and output channels.
    filter_channels : int
        Hidden channels.
    kernel_size : int
        Kernel of both convolutions (odd).
    p_dropout : float
        Dropout after the activation.

    Example
    -------
    >>> ffn = ConvFeedForward(8, 32, kernel_size=3)
    >>> ffn(torch.randn(2, 8, 6), torch.ones(2, 1, 6)).shape
    torch.Size([2, 8, 6])
    """

    def __init__(self, channels: int, filter_channels: int, kernel_size: int, p_dropout: float = 0.0):
        super().__init__()
        self.conv1 = Conv1d(channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.conv2 = Conv1d(filter_channels, channels, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(p_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Map ``x`` ``[B, C, T]`` with ``mask`` ``[B, 1, T]`` to ``[B, C, T]``."""
        hidden = self.dropout(torch.relu(self.conv1(x * mask)))
        return self.conv2(hidden * mask) * mask
