"""Removal of weight normalisation for inference, shared by the VITS bricks.

The bricks wrap convolutions with
:func:`torch.nn.utils.parametrizations.weight_norm` (parameters ``g`` and
``v`` per weight); for inference the parametrisation is folded back into a
plain weight, which gives the same outputs at a lower cost.

Example
-------
>>> from torch.nn.utils.parametrizations import weight_norm
>>> conv = weight_norm(torch.nn.Conv1d(2, 3, 3))
>>> x = torch.randn(1, 2, 8)
>>> before = conv(x)
>>> remove_weight_norm(conv)
>>> sorted(name for name, _ in conv.named_parameters()), bool(torch.allclose(conv(x), before))
(['bias', 'weight'], True)
"""

import torch
from torch.nn.utils import parametrize

__all__ = ["remove_weight_norm"]


def remove_weight_norm(module: torch.nn.Module) -> None:
    """Fold every weight parametrisation under ``module`` into a plain weight.

    Arguments
    ---------
    module : torch.nn.Module
        Any module; its submodules are visited recursively.
    """
    for sub in list(module.modules()):  # removal edits the tree: walk a snapshot
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight")
