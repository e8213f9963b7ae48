"""Fixed-size windows cut from padded sequences (the VITS decoder trains on slices).

:func:`random_segments` draws one start per item inside its valid frames;
:func:`slice_segments` cuts windows at given starts (also used to cut the
matching waveform, with the starts times the hop length). Windows that run
past the end of the tensor are zero-padded, so a batch item shorter than the
segment still gives a full-size window.

Example
-------
>>> x = torch.arange(10.0).view(1, 1, 10).repeat(2, 1, 1)
>>> slice_segments(x, torch.tensor([0, 7]), 4).tolist()
[[[0.0, 1.0, 2.0, 3.0]], [[7.0, 8.0, 9.0, 0.0]]]
"""

import torch
import torch.nn.functional as F

__all__ = ["slice_segments", "random_segments"]


def slice_segments(x: torch.Tensor, starts: torch.Tensor, segment_size: int) -> torch.Tensor:
    """Cut ``x[b, :, starts[b] : starts[b] + segment_size]`` for every item.

    Arguments
    ---------
    x : torch.Tensor
        ``[B, C, T]`` padded sequences.
    starts : torch.Tensor
        ``[B]`` integer start indices.
    segment_size : int
        Window length.

    Returns
    -------
    torch.Tensor
        ``[B, C, segment_size]`` windows (zero past the end of ``x``).
    """
    x = F.pad(x, (0, segment_size))
    offsets = torch.arange(segment_size, device=x.device)
    index = (starts.long().to(x.device).view(-1, 1) + offsets).unsqueeze(1).expand(-1, x.size(1), -1)
    return x.gather(2, index)


def random_segments(
    x: torch.Tensor, lengths: torch.Tensor, segment_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut one uniformly random window per item, inside its valid frames.

    Arguments
    ---------
    x : torch.Tensor
        ``[B, C, T]`` padded sequences.
    lengths : torch.Tensor
        ``[B]`` absolute valid lengths.
    segment_size : int
        Window length.

    Returns
    -------
    segments : torch.Tensor
        ``[B, C, segment_size]`` windows.
    starts : torch.Tensor
        ``[B]`` long start indices (0 for items shorter than the window).

    Example
    -------
    >>> segments, starts = random_segments(torch.randn(3, 2, 20), torch.tensor([20, 9, 5]), 8)
    >>> segments.shape, bool(torch.all(starts + 8 <= torch.tensor([20, 9, 8])))
    (torch.Size([3, 2, 8]), True)
    """
    n_starts = (lengths - segment_size + 1).clamp_min(1)
    starts = (torch.rand(lengths.shape, device=lengths.device) * n_starts).long()
    starts = torch.minimum(starts, n_starts - 1)  # guard the rare rounding of rand() to 1
    return slice_segments(x, starts, segment_size), starts
