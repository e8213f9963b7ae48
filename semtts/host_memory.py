"""How the C library hands host memory to PyTorch's CPU tensors.

glibc's ``malloc`` serves every request above a threshold (at most 32 MB
while it adapts it) with a fresh ``mmap`` and gives it back to the system on
``free``. A CPU tensor of that size is then new, zero-filled memory each time
it is allocated, and the kernel's page faults on its first touch cost more
than the arithmetic of the element-wise layers that write it. The HiFi-GAN
decoder of 14 s of audio (``vits_base``, 1200 frames) allocates ~40 MB
activations by the dozen: on a 2-core CPU one call took 5.4 s, with 2.6
million page faults and 5.0 s of system time; with the memory kept, 2.2 s,
10-20 thousand faults and 0.04 s.

:func:`keep_freed_memory` raises both of glibc's thresholds, so that large
tensors come from, and go back to, the process's own heap: once the heap
holds enough freed memory (after a few calls), allocations reuse it instead
of new pages. The process keeps its peak heap (as PyTorch's CUDA allocator
keeps its blocks). semtts's commands (``semtts``, the recipe stages) call it at
start; ``SEMTTS_GLIBC_MALLOC=default`` in the environment leaves glibc as it
is. Elsewhere than glibc it does nothing.

Example
-------
>>> isinstance(keep_freed_memory(), bool)
True
"""

import ctypes
import logging
import os
import sys

__all__ = ["keep_freed_memory"]

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
KEEP_BELOW = 1 << 30
"""Allocations below this (1 GiB) come from the heap, and up to this much freed memory stays there."""


def keep_freed_memory(limit: int = KEEP_BELOW) -> bool:
    """Have glibc serve allocations below ``limit`` bytes from the heap and keep
    up to ``limit`` bytes of freed memory for reuse (see the module's text).

    Arguments
    ---------
    limit : int
        Both thresholds, in bytes.

    Returns
    -------
    bool
        True when glibc took both settings; False elsewhere than glibc on
        Linux, or with ``SEMTTS_GLIBC_MALLOC=default`` in the environment.
    """
    if os.environ.get("SEMTTS_GLIBC_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library: glibc's; musl and others have none
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = min(int(limit), 2**31 - 1)
    done = mallopt(_M_MMAP_THRESHOLD, limit) == 1 and mallopt(_M_TRIM_THRESHOLD, limit) == 1
    if not done:
        logger.debug("glibc did not take the malloc thresholds (%d bytes)", limit)
    return done
