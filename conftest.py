"""pytest configuration shared by the tests and the doctests.

Without a GPU, Triton kernels run in Triton's CPU interpreter: the variable
must be set before any kernel module is imported.
"""

import importlib.util
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

collect_ignore = []
if importlib.util.find_spec("triton") is None:
    collect_ignore.append("semtts/align/triton_backend.py")
elif not torch.cuda.is_available():
    from semtts.align.maximum_path import triton_interpreter_runs_kernel

    if not triton_interpreter_runs_kernel():  # the doctest runs the kernel: in Triton's interpreter from 3.7
        collect_ignore.append("semtts/align/triton_backend.py")
