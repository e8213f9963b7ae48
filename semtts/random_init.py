"""Random weights that a seed reproduces, leaving every other draw as it was.

Models built with random weights (CAM++, the Whisper teacher, the evaluation
ASR, with ``allow_random_init``) are built on the CPU from their own seed.
Only the CPU generator is seeded, and it is restored afterwards:
``torch.manual_seed`` would also seed every CUDA generator (or queue it
until CUDA starts), which ``fork_rng(devices=[])`` does not restore, and a
caller's ``--seed`` would no longer hold.
"""

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["cpu_seeded"]


@contextlib.contextmanager
def cpu_seeded(seed: int) -> Iterator[None]:
    """Draw from the CPU generator seeded with ``seed`` inside the block; the
    generator is restored after it, and no CUDA generator is touched.

    Arguments
    ---------
    seed : int
        The seed of the draws in the block.

    Example
    -------
    >>> _ = torch.manual_seed(5); expected = torch.rand(2)
    >>> _ = torch.manual_seed(5)
    >>> with cpu_seeded(3):
    ...     a = torch.nn.Linear(2, 2)
    >>> with cpu_seeded(3):
    ...     b = torch.nn.Linear(2, 2)
    >>> torch.equal(a.weight, b.weight), torch.equal(torch.rand(2), expected)
    (True, True)
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield
