"""Padding masks from absolute lengths: the one mask helper of the VITS bricks.

Every VITS brick works on padded batches ``[B, C, T]`` and multiplies its
activations by a ``[B, 1, T]`` float mask that is 1 on valid frames and 0 on
padding, so that nothing leaks from the padding into the valid frames.

Example
-------
>>> lengths_to_mask(torch.tensor([3, 1]))
tensor([[[1., 1., 1.]],
<BLANKLINE>
        [[1., 0., 0.]]])
"""

import torch

__all__ = ["lengths_to_mask", "apply_mask"]


def lengths_to_mask(
    lengths: torch.Tensor,
    max_len: int | torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Build a ``[B, 1, T]`` padding mask from absolute lengths.

    Arguments
    ---------
    lengths : torch.Tensor
        ``[B]`` integer lengths (number of valid frames per item).
    max_len : int or torch.Tensor, optional
        Width ``T`` of the mask; the largest length when omitted (kept a
        tensor, so a traced graph stays dynamic in ``T``).
    dtype : torch.dtype
        Type of the mask (float so it can multiply activations).

    Returns
    -------
    torch.Tensor
        ``[B, 1, T]`` mask, 1 where ``t < lengths[b]``.

    Example
    -------
    >>> lengths_to_mask(torch.tensor([2, 4]), max_len=5).shape
    torch.Size([2, 1, 5])
    """
    if max_len is None:
        max_len = lengths.max() if lengths.numel() else 0
    steps = torch.arange(max_len, device=lengths.device)
    return (steps.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1).to(dtype)


def apply_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x * mask``, or ``x`` itself when there is no mask.

    Example
    -------
    >>> apply_mask(torch.ones(1, 2, 3), lengths_to_mask(torch.tensor([2]), 3)).sum().item()
    4.0
    """
    return x if mask is None else x * mask
