"""The semantic lobes: Whisper teacher features brought to the token axis, the
student that predicts them from text, and the adapter that lets them act on
the prior.

- :func:`teacher_to_spec_frames`: 50 Hz teacher features ``[T_sem, D]``
  linearly interpolated to the utterance's spectrogram frames ``[T_spec, D]``;
- :func:`pool_by_path`: frame features averaged per token along the VITS
  alignment path, ``[B, T_spec, D] -> [B, T_text, D]`` (the distillation
  target of :class:`SemPred`);
- :class:`SemPred`: text-encoder hidden features ``[B, H, T_text]`` to
  predicted semantics ``[B, T_text, D]``;
- :class:`SemanticCrossAttnAdapter`: cross-attention from the text hidden
  features to semantic features (teacher or student), added through a gated
  residual before the prior projection.

Example
-------
>>> teacher = torch.randn(2, 25, 16)                  # [B, T_sem, D] at 50 Hz
>>> frames = teacher_to_spec_frames(teacher, torch.tensor([43, 40]), torch.tensor([25, 23]))
>>> frames.shape                                       # [B, T_spec, D]
torch.Size([2, 43, 16])
>>> path = torch.zeros(2, 43, 6); path[:, torch.arange(43), torch.arange(43) * 5 // 43] = 1.0
>>> target = pool_by_path(frames, path, torch.tensor([6, 5]))
>>> target.shape                                       # [B, T_text, D]
torch.Size([2, 6, 16])
>>> hidden = torch.randn(2, 32, 6)                     # text encoder: [B, H, T_text]
>>> pred = SemPred(32, 16, hidden=24)(hidden, torch.tensor([6, 5]))
>>> pred.shape
torch.Size([2, 6, 16])
>>> adapter = SemanticCrossAttnAdapter(32, 16)
>>> adapter(hidden, torch.tensor([6, 5]), pred, torch.tensor([6, 5])).shape
torch.Size([2, 32, 6])
"""

import torch
import torch.nn.functional as F
from torch import nn

from semtts.errors import ConfigError, DataError
from semtts.lobes.vits.masks import lengths_to_mask

__all__ = ["check_teacher_lengths", "teacher_to_spec_frames", "pool_by_path", "SemPred", "SemanticCrossAttnAdapter"]


def check_teacher_lengths(counts: torch.Tensor, sem_lengths: torch.Tensor, t_sem: int) -> None:
    """Raise :class:`~semtts.errors.DataError` unless every item's spectrogram
    frame count is >= 0 and its valid teacher frames lie in ``[0, t_sem]``,
    with at least one teacher frame where there are spectrogram frames
    (read on the host: no device sync for host tensors).

    Arguments
    ---------
    counts : torch.Tensor
        ``[B]`` spectrogram frames.
    sem_lengths : torch.Tensor
        ``[B]`` valid teacher frames.
    t_sem : int
        The padded teacher length.

    Example
    -------
    >>> check_teacher_lengths(torch.tensor([43, 40]), torch.tensor([25, 0]), 25)
    Traceback (most recent call last):
    ...
    semtts.errors.DataError: teacher_to_spec_frames: item 1 has no teacher frame to interpolate to 40 frames
    """
    if counts.dim() != 1 or sem_lengths.shape != counts.shape:
        raise DataError(f"teacher_to_spec_frames: expected [B] counts and sem_lengths, got "
                        f"{list(counts.shape)} and {list(sem_lengths.shape)}")
    counts, sem_lengths = counts.cpu(), sem_lengths.cpu()
    if bool((counts < 0).any()) or bool((sem_lengths < 0).any()) or bool((sem_lengths > t_sem).any()):
        raise DataError(
            f"teacher_to_spec_frames: counts must be in [0, ...] and sem_lengths in [0, {t_sem}], "
            f"got {counts.tolist()} and {sem_lengths.tolist()}"
        )
    empty = ((counts > 0) & (sem_lengths == 0)).nonzero()
    if empty.numel():
        b = int(empty[0, 0])
        raise DataError(f"teacher_to_spec_frames: item {b} has no teacher frame to interpolate "
                        f"to {int(counts[b])} frames")


def teacher_to_spec_frames(
    feats: torch.Tensor,
    n_frames: int | torch.Tensor,
    sem_lengths: torch.Tensor | None = None,
    width: int | None = None,
) -> torch.Tensor:
    """Resample 50 Hz teacher features to an utterance's spectrogram frames.

    Linear interpolation over time, each spectrogram frame read at its own
    centre: VITS frame ``i`` (reflect padding, no centring) is centred at
    ``(i + 1/2)`` hops, and Whisper's encoder frame ``j`` (its stride-2
    convolution over centred mel frames) at ``j`` x 20 ms, so frame ``i``
    takes the teacher at ``(i + 1/2) T_sem / T_spec`` frames, held at the last
    frame past the end. A batch is resampled in one pass on its device; the
    counts and lengths are checked on the host (:func:`check_teacher_lengths`;
    no device sync when they are given there), unless ``width`` is given.

    Arguments
    ---------
    feats : torch.Tensor
        ``[T_sem, D]`` features of one utterance, or a padded batch
        ``[B, T_sem, D]``.
    n_frames : int or torch.Tensor
        The spectrogram frame count: an int for one utterance (or for every
        item of a batch), or ``[B]`` absolute counts for a batch.
    sem_lengths : torch.Tensor, optional
        ``[B]`` valid teacher frames per item of a batch (all when omitted).
    width : int, optional
        The output's frame axis for a batch (at least ``max(n_frames)``):
        given, nothing is read back from the device and the lengths are not
        checked (the caller did); by default ``max(n_frames)``, after the checks.

    Returns
    -------
    torch.Tensor
        ``[n_frames, D]``, or ``[B, width, D]`` with zeros past each
        item's count; float32.

    Example
    -------
    >>> teacher_to_spec_frames(torch.tensor([[0.0], [2.0]]), 4).squeeze(-1).tolist()
    [0.5, 1.5, 2.0, 2.0]
    """
    if feats.dim() == 2:
        if not isinstance(n_frames, int) or n_frames < 0:
            raise DataError(f"teacher_to_spec_frames: n_frames must be an int >= 0 for [T_sem, D] features, got {n_frames!r}")
        return teacher_to_spec_frames(feats.unsqueeze(0), n_frames)[0]
    if feats.dim() != 3:
        raise DataError(f"teacher_to_spec_frames: expected [T_sem, D] or [B, T_sem, D] features, got {list(feats.shape)}")
    batch, t_sem, dim = feats.shape
    counts = torch.full((batch,), n_frames) if isinstance(n_frames, int) else n_frames.reshape(-1)
    lengths = torch.full((batch,), t_sem) if sem_lengths is None else sem_lengths.reshape(-1)
    if counts.shape != (batch,) or lengths.shape != (batch,):
        raise DataError(f"teacher_to_spec_frames: expected [{batch}] n_frames and sem_lengths")
    if width is None:
        check_teacher_lengths(counts, lengths, t_sem)
        width = int(counts.cpu().max()) if batch else 0
    if width == 0 or t_sem == 0:  # nothing to read (checked: no frames where there is no teacher)
        return feats.new_zeros(batch, width, dim, dtype=torch.float32)
    device = feats.device
    counts = counts.to(device, non_blocking=counts.device.type == "cpu").double()  # never a racy read to the host
    lengths = lengths.to(device, non_blocking=lengths.device.type == "cpu").double()
    last = (lengths - 1).clamp(min=0).unsqueeze(1)  # [B, 1]
    frame = torch.arange(width, device=device, dtype=torch.float64).unsqueeze(0)  # [1, W]
    position = torch.minimum((frame + 0.5) * (lengths / counts.clamp(min=1)).unsqueeze(1), last)
    low = position.floor()
    weight = (position - low).to(torch.float32).unsqueeze(2)  # [B, W, 1]
    feats = feats.float()
    below = feats.gather(1, low.long().unsqueeze(2).expand(-1, -1, dim))
    above = feats.gather(1, torch.minimum(low + 1, last).long().unsqueeze(2).expand(-1, -1, dim))
    inside = (frame < counts.unsqueeze(1)).unsqueeze(2)
    below = below.lerp_(above, weight)  # in place: a [B, W, D] tensor fewer at the peak
    del above
    return below.masked_fill_(~inside, 0.0)


def pool_by_path(feats: torch.Tensor, path: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
    """Average frame features per token along a monotonic alignment path.

    Token ``j`` gets the mean of the frames ``t`` with ``path[b, t, j] = 1``
    (a duration-weighted mean: a token of ``d`` frames averages those ``d``
    frames). A token with no frame, and every padded token, gets zeros.

    Arguments
    ---------
    feats : torch.Tensor
        ``[B, T_spec, D]`` frame features (e.g. teacher features at
        spectrogram frames, from :func:`teacher_to_spec_frames`).
    path : torch.Tensor
        ``[B, T_spec, T_text]`` {0, 1} path, the layout of the VITS monotonic
        alignment search (zero on padded frames and tokens).
    token_lengths : torch.Tensor
        ``[B]`` absolute token counts.

    Returns
    -------
    torch.Tensor
        ``[B, T_text, D]`` per-token means, float32.

    Example
    -------
    >>> feats = torch.tensor([[[1.0], [3.0], [5.0]]])          # [1, 3, 1]
    >>> path = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> pool_by_path(feats, path, torch.tensor([2])).squeeze(-1).tolist()
    [[2.0, 5.0]]
    """
    if feats.dim() != 3 or path.dim() != 3 or path.shape[:2] != feats.shape[:2]:
        raise DataError(
            f"pool_by_path: expected feats [B, T_spec, D] and path [B, T_spec, T_text], "
            f"got {list(feats.shape)} and {list(path.shape)}"
        )
    batch, _, t_text = path.shape
    if token_lengths.shape != (batch,):
        raise DataError(f"pool_by_path: expected [{batch}] token_lengths, got {list(token_lengths.shape)}")
    weights = path.float()
    counts = weights.sum(dim=1)  # [B, T_text]
    sums = torch.bmm(weights.transpose(1, 2), feats.float())  # [B, T_text, D]
    token_mask = lengths_to_mask(token_lengths.to(path.device), t_text).transpose(1, 2)  # [B, T_text, 1]
    return sums / counts.clamp(min=1.0).unsqueeze(-1) * token_mask


def _key_padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``[B, T]`` bool mask, True on padding (PyTorch attention convention)."""
    return lengths_to_mask(lengths, max_len, dtype=torch.bool)[:, 0] == 0


class SemPred(nn.Module):
    """Predict per-token semantic features from the text encoder's hidden
    features (the student of the Whisper teacher).

    ``Linear(H -> hidden)``, then ``n_layers`` residual blocks
    ``x + Dropout(LayerNorm(GELU(Conv1d(x))))``, then
    ``Linear(hidden -> D)``. Padded tokens are zeroed before every
    convolution and at the output, so padding a batch does not change the
    valid outputs.

    Arguments
    ---------
    in_channels : int
        ``H``, the text encoder's hidden width.
    out_channels : int
        ``D``, the teacher feature width.
    hidden : int
        Width of the convolution stack.
    kernel_size : int
        Odd convolution kernel.
    n_layers : int
        Number of convolution blocks.
    dropout : float
        Dropout after every block.

    Example
    -------
    >>> model = SemPred(in_channels=8, out_channels=6, hidden=16)
    >>> out = model(torch.randn(2, 8, 7), torch.tensor([7, 4]))   # [B, H, T_text]
    >>> out.shape, int(torch.count_nonzero(out[1, 4:]))            # [B, T_text, D]
    (torch.Size([2, 7, 6]), 0)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 256,
        kernel_size: int = 5,
        n_layers: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"SemPred: kernel_size must be odd, got {kernel_size}")
        if min(in_channels, out_channels, hidden, n_layers) < 1:
            raise ConfigError("SemPred: in_channels, out_channels, hidden and n_layers must be >= 1")
        self.input = nn.Linear(in_channels, hidden)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, kernel_size, padding=kernel_size // 2) for _ in range(n_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, out_channels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Predict the semantics of every token.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, H, T_text]`` text encoder hidden features (channel first).
        lengths : torch.Tensor
            ``[B]`` absolute token counts.

        Returns
        -------
        torch.Tensor
            ``[B, T_text, D]``, zero on padded tokens.
        """
        mask = lengths_to_mask(lengths.to(x.device), x.shape[-1], dtype=x.dtype).transpose(1, 2)  # [B, T, 1]
        h = self.input(x.transpose(1, 2) * mask) * mask
        for conv, norm in zip(self.convs, self.norms):
            y = conv(h.transpose(1, 2)).transpose(1, 2)
            h = (h + self.dropout(norm(F.gelu(y)))) * mask
        return self.output(h) * mask


class SemanticCrossAttnAdapter(nn.Module):
    """Gated cross-attention from text features to semantic features.

    **Where it acts on the prior:** on the text encoder's hidden output
    ``[B, C, T_text]`` (after the transformer stack), *before* the 1x1
    projection to the prior statistics ``m_p, logs_p``; its output replaces
    that hidden input of the projection.

    Queries are the layer-normalised text features, keys and values the
    layer-normalised semantic features ``[B, T_k, D]`` (teacher features
    during teacher-forced training, :class:`SemPred` predictions otherwise),
    ``n_heads`` heads, padded keys masked. The result goes through a linear
    projection and a learned scalar gate initialised at ``gate_init``::

        out = x + gate * proj(attn(x, sem))

    so at the start the prior is nearly the plain VITS prior. Padded query
    positions stay zero; an item without any semantic frame gets ``x`` back.

    Arguments
    ---------
    query_channels : int
        ``C``, the text encoder's hidden width (divisible by ``n_heads``).
    sem_channels : int
        ``D``, the width of the semantic features.
    n_heads : int
        Attention heads.
    dropout : float
        Dropout on the attention weights and on the projected output.
    gate_init : float
        Initial value of the residual gate.

    Example
    -------
    >>> adapter = SemanticCrossAttnAdapter(query_channels=8, sem_channels=6, n_heads=4)
    >>> x, sem = torch.randn(2, 8, 5), torch.randn(2, 9, 6)       # [B, C, T_text], [B, T_k, D]
    >>> adapter(x, torch.tensor([5, 3]), sem, torch.tensor([9, 4])).shape
    torch.Size([2, 8, 5])
    >>> round(adapter.gate.item(), 4)
    0.1
    """

    def __init__(
        self,
        query_channels: int,
        sem_channels: int,
        n_heads: int = 4,
        dropout: float = 0.1,
        gate_init: float = 0.1,
    ) -> None:
        super().__init__()
        if n_heads < 1 or query_channels % n_heads:
            raise ConfigError(
                f"SemanticCrossAttnAdapter: query_channels ({query_channels}) must be divisible by n_heads ({n_heads})"
            )
        self.query_norm = nn.LayerNorm(query_channels)
        self.sem_norm = nn.LayerNorm(sem_channels)
        self.attention = nn.MultiheadAttention(
            query_channels, n_heads, dropout=dropout, kdim=sem_channels, vdim=sem_channels, batch_first=True
        )
        self.proj = nn.Linear(query_channels, query_channels)
        self.dropout = nn.Dropout(dropout)
        self.gate = nn.Parameter(torch.tensor(float(gate_init)))

    def forward(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        sem: torch.Tensor,
        sem_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Add the gated semantic context to the text features.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, C, T_text]`` text encoder hidden features.
        x_lengths : torch.Tensor
            ``[B]`` absolute token counts.
        sem : torch.Tensor
            ``[B, T_k, D]`` semantic features (teacher frames or tokens, or
            :class:`SemPred` predictions).
        sem_lengths : torch.Tensor
            ``[B]`` absolute counts of valid semantic positions.

        Returns
        -------
        torch.Tensor
            ``[B, C, T_text]``, zero on padded tokens.
        """
        batch, channels, t_text = x.shape
        if sem.dim() != 3 or sem.shape[0] != batch:
            raise DataError(f"SemanticCrossAttnAdapter: expected sem [{batch}, T_k, D], got {list(sem.shape)}")
        sem_lengths = sem_lengths.to(x.device)
        key_padding = _key_padding_mask(sem_lengths, sem.shape[1])
        empty = sem_lengths == 0
        if sem.shape[1] > 0:  # an empty item attends to one (zeroed-out below) key instead of none: no NaN
            # (no host sync, no in-place op: traceable, exportable and CUDA-graph safe)
            key_padding = torch.cat([key_padding[:, :1] & ~empty.unsqueeze(1), key_padding[:, 1:]], dim=1)
        query = self.query_norm(x.transpose(1, 2))
        keys = self.sem_norm(sem.to(query.dtype))
        mask = lengths_to_mask(x_lengths.to(x.device), t_text, dtype=x.dtype)
        if sem.shape[1] == 0:
            return x * mask
        context, _ = self.attention(query, keys, keys, key_padding_mask=key_padding, need_weights=False)
        delta = self.dropout(self.proj(context)) * (~empty).to(context.dtype).view(batch, 1, 1)
        return (x + self.gate * delta.transpose(1, 2)) * mask
