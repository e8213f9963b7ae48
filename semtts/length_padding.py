"""Pad a training batch to a multiple of a length, so that its shapes fall on a few values.

A batch is padded to its longest item, so every step of VITS training has new
lengths. Padded further, to a multiple of ``pad_frames_to`` spectrogram frames
(its audio to as many hops) and of ``pad_tokens_to`` tokens, its lengths take
a few values, which is what lets the variable-length parts run as CUDA graphs
(one recorded per shape; :mod:`semtts.compiled_parts`). Training is unchanged:
every part of the model masks its padding (``tests/test_length_padding.py``
checks the losses and gradients of a batch padded further against the plain
one), only the random draws of a step cover more positions.

Example
-------
>>> pad_length_to(torch.ones(2, 5), 4).shape
torch.Size([2, 8])
>>> pad_length_to(torch.ones(2, 8), 4).shape, pad_length_to(torch.ones(2, 5), 1).shape
(torch.Size([2, 8]), torch.Size([2, 5]))
>>> check_multiple("pad_frames_to", 0)
Traceback (most recent call last):
...
semtts.errors.ConfigError: pad_frames_to: 0 is not a whole number of at least 1
"""

from typing import Any

import torch
import torch.nn.functional as F

from semtts.errors import ConfigError

__all__ = ["check_multiple", "pad_length_to", "padded_length"]


def check_multiple(name: str, value: Any) -> int:
    """``value`` of the hparam ``name`` as a length multiple: a whole number >= 1 (1: no extra padding).

    Arguments
    ---------
    name : str
        The hparam, named in the error.
    value : Any
        Its value.

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        When ``value`` is not a whole number of at least 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: {value!r} is not a whole number of at least 1")
    return value


def padded_length(length: int, multiple: int) -> int:
    """``length`` rounded up to a multiple of ``multiple``.

    Example
    -------
    >>> padded_length(18, 8), padded_length(16, 8), padded_length(7, 1)
    (24, 16, 7)
    """
    return -(-length // multiple) * multiple


def pad_length_to(x: torch.Tensor, multiple: int, value: float = 0.0) -> torch.Tensor:
    """Pad the last dimension of ``x`` with ``value`` at its end, up to a multiple of ``multiple``.

    Arguments
    ---------
    x : torch.Tensor
        ``[..., T]``.
    multiple : int
        The length multiple (1: ``x`` is returned as it is).
    value : float
        The padding value.

    Returns
    -------
    torch.Tensor
        ``[..., ceil(T / multiple) * multiple]`` (``x`` itself when no padding is needed).
    """
    extra = padded_length(x.size(-1), multiple) - x.size(-1)
    return F.pad(x, (0, extra), value=value) if extra else x
