"""What ``--compile`` compiles in VITS training: the parts with fixed shapes.

The discriminator and the generator's decoder see fixed-size windows
(``segment_size`` samples, ``segment_size / hop`` frames) at every step, so
``torch.compile`` traces them once. The rest of the generator (variable
lengths, alignment search) stays eager. Both are compiled in place, so
checkpoints keep their keys; the discriminator through its ``judge`` method,
which the discriminator and the generator steps both call.

Example
-------
>>> from torch import nn
>>> compile_fixed_shape_parts(nn.Module(), nn.Module(), ["flow"], {})
Traceback (most recent call last):
...
semtts.errors.ConfigError: --compile_module_keys: flow cannot be compiled; choose among discriminator, decoder
"""

from typing import Any

import torch
from torch import nn

from semtts.errors import ConfigError

__all__ = ["COMPILABLE", "compile_fixed_shape_parts"]

COMPILABLE = ("discriminator", "decoder")
"""The parts ``--compile_module_keys`` may name."""


def compile_fixed_shape_parts(generator: nn.Module, discriminator: nn.Module, keys: list[str] | None,
                              options: dict[str, Any]) -> list[str]:
    """``torch.compile`` the chosen fixed-shape parts in place.

    Arguments
    ---------
    generator : nn.Module
        The VITS generator (unwrapped from DDP); its ``decoder`` is compiled.
    discriminator : nn.Module
        The multi-period discriminator (unwrapped); its ``judge`` is compiled.
    keys : list of str or None
        Among :data:`COMPILABLE` (None or empty: both).
    options : dict
        ``torch.compile`` keyword arguments (``mode``, ``fullgraph``, ``dynamic``).

    Returns
    -------
    list of str
        The parts compiled.
    """
    keys = list(keys or COMPILABLE)
    unknown = sorted(set(keys) - set(COMPILABLE))
    if unknown:
        raise ConfigError(f"--compile_module_keys: {', '.join(unknown)} cannot be compiled; "
                          f"choose among {', '.join(COMPILABLE)}")
    for key in keys:
        if key == "discriminator":  # both training steps go through judge()
            discriminator.judge = torch.compile(discriminator.judge, **options)
        else:
            generator.decoder.compile(**options)
    return keys
