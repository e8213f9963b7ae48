"""Monotonic alignment search (MAS): the one public entry point and its checks.

Glow-TTS / VITS find, for every utterance, the monotonic alignment between
``T_text`` tokens and ``T_audio`` spectrogram frames that maximises the summed
log-likelihood ``v``. With ``x`` the text index and ``y`` the frame index::

    Q[x, y] = v[x, y] + max(Q[x, y-1], Q[x-1, y-1]),    Q[0, 0] = v[0, 0]

The path starts at ``(0, 0)`` and ends at ``(x_len-1, y_len-1)``: every valid
frame gets exactly one token and every token at least one frame. Walking
back, the path moves to ``x-1`` only when ``Q[x-1, y-1]`` is strictly greater
than ``Q[x, y-1]`` (ties keep the current token), or when it must (``x == y``).
Unreachable cells are a true ``-inf`` (never ``-1e9``, which corrupts the DP
once cumulative scores pass it) and the DP runs in fp32 whatever the input
dtype.

**Layouts.** ``"vits"`` is ``[B, T_audio, T_text]`` (what VITS computes as
``neg_cent``) and is the native layout of every backend: the DP advances
along ``T_audio`` one step at a time, and each step reads one contiguous row
of ``T_text`` scores, which is a coalesced load on a GPU and a vectorised
loop on a CPU. ``"glow"`` is ``[B, T_text, T_audio]``; it is handled through
strides (a transposed view), never a transposed copy, at the price of strided
reads. The path comes back in the layout it went in.

Example
-------
>>> import torch
>>> neg_cent = torch.zeros(2, 6, 3)          # [B, T_audio, T_text]
>>> path = maximum_path(neg_cent, torch.tensor([3, 2]), torch.tensor([6, 4]))
>>> path.shape
torch.Size([2, 6, 3])
>>> path[0].sum(0).tolist()                  # frames per token (ties keep the token)
[1.0, 1.0, 4.0]
>>> path[1].sum(0).tolist()
[1.0, 3.0, 0.0]
"""

import functools
import importlib.metadata
import importlib.util
import os

import torch

__all__ = ["maximum_path", "available_backends", "triton_interpreter_runs_kernel", "BACKENDS", "LAYOUTS"]

BACKENDS = ("auto", "cpu", "triton", "super_mas")
LAYOUTS = ("vits", "glow")


def triton_interpreter_runs_kernel() -> bool:
    """Whether the Triton kernel can run on a CPU here: ``TRITON_INTERPRET=1`` is
    set and Triton's interpreter is 3.7 or newer (3.6's, which torch 2.11
    brings, gives program ids as one-element arrays, which a loop bound cannot
    take; compiled for a GPU, the kernel runs with 3.6 too).

    Returns
    -------
    bool
        True when the interpreter can run the kernel (False without Triton).
    """
    if os.environ.get("TRITON_INTERPRET") != "1" or importlib.util.find_spec("triton") is None:
        return False
    release = _triton_release()
    return release is None or release >= (3, 7)  # an unparsable version: let the kernel say


@functools.lru_cache(maxsize=1)
def _triton_release() -> tuple[int, int] | None:
    """Triton's (major, minor), read from its metadata once (a directory scan), or None if unparsable."""
    release = importlib.metadata.version("triton").split("+")[0].split(".")
    try:
        return int(release[0]), int(release[1])
    except (IndexError, ValueError):
        return None


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """List the backends that can run on ``device`` in this environment.

    Arguments
    ---------
    device : torch.device or str
        Where the scores live.

    Returns
    -------
    list of str
        A subset of ``["cpu", "triton", "super_mas"]``.
    """
    device = torch.device(device)
    names = ["cpu"]
    has_triton = importlib.util.find_spec("triton") is not None
    if has_triton and (device.type == "cuda" or triton_interpreter_runs_kernel()):
        names.append("triton")
    if device.type == "cuda" and importlib.util.find_spec("super_monotonic_align") is not None:
        names.append("super_mas")
    return names


@torch.no_grad()
def maximum_path(
    neg_cent: torch.Tensor,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    *,
    layout: str = "vits",
    backend: str = "auto",
    inplace: bool = False,
    validate: bool = True,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Return the {0, 1} maximum-score monotonic alignment path.

    Arguments
    ---------
    neg_cent : torch.Tensor
        Scores, ``[B, T_audio, T_text]`` (``layout="vits"``) or
        ``[B, T_text, T_audio]`` (``layout="glow"``); fp32, fp16, bf16 or
        fp64 (the DP runs in fp32); any strides.
    x_lengths : torch.Tensor, optional
        ``[B]`` integer text lengths (default: the full text axis).
    y_lengths : torch.Tensor, optional
        ``[B]`` integer audio lengths (default: the full audio axis).
    layout : str
        ``"vits"`` (native) or ``"glow"``.
    backend : str
        ``"auto"`` (Triton on CUDA, numba on CPU), ``"cpu"``, ``"triton"`` or
        ``"super_mas"`` (the external package, for comparison only).
    inplace : bool
        Write the path into ``neg_cent`` (which must then be fp32 or fp16,
        or any dtype on CUDA) and return it: saves one score-sized buffer.
        Otherwise ``neg_cent`` is never modified.
    validate : bool
        Check the lengths and scores and raise ``ValueError`` naming the bad
        batch item (costs a device sync on CUDA). Without it, lengths are
        still clamped to the tensor, so bad input never writes out of bounds.
    dtype : torch.dtype, optional
        The path's dtype (default: ``neg_cent``'s).

    Returns
    -------
    torch.Tensor
        The path, same shape and layout as ``neg_cent``; zero outside
        ``x_lengths`` and ``y_lengths`` and for items without a valid path.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"maximum_path: layout must be one of {LAYOUTS}, got {layout!r}")
    if backend not in BACKENDS:
        raise ValueError(f"maximum_path: backend must be one of {BACKENDS}, got {backend!r}")
    if neg_cent.dim() != 3:
        raise ValueError(f"maximum_path: neg_cent must be 3-D [B, T, T], got shape {tuple(neg_cent.shape)}")
    value = neg_cent if layout == "vits" else neg_cent.transpose(1, 2)  # a view
    n_b, n_y, n_x = value.shape
    x_lengths = _lengths(x_lengths, n_b, n_x, value.device, "x_lengths")
    y_lengths = _lengths(y_lengths, n_b, n_y, value.device, "y_lengths")
    if validate:
        _validate(value, x_lengths, y_lengths)
    if backend != "cpu":  # the CPU backend runs everywhere: no environment lookups on its path
        available = available_backends(value.device)
        if backend == "auto":
            backend = "triton" if "triton" in available and value.is_cuda else "cpu"
        elif backend not in available:
            raise ValueError(f"maximum_path: backend {backend!r} cannot run on {value.device} here; "
                             f"available: {', '.join(available)}")
    out_dtype = dtype or neg_cent.dtype
    if inplace:
        if out_dtype != neg_cent.dtype:
            raise ValueError("maximum_path: inplace=True writes the path in neg_cent's dtype; drop dtype=")
        path = value
    else:
        path = torch.empty(value.shape, dtype=out_dtype, device=value.device)
    if backend == "cpu":
        _run_cpu(value, path, x_lengths, y_lengths)
    elif backend == "triton":
        _run_triton(value, path, x_lengths, y_lengths)
    else:
        _run_super_mas(value, path, x_lengths, y_lengths)
    return neg_cent if inplace else (path if layout == "vits" else path.transpose(1, 2))


def _lengths(lengths, n_b, n_max, device, name) -> torch.Tensor:
    if lengths is None:
        return torch.full((n_b,), n_max, dtype=torch.int64, device=device)
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"maximum_path: {name} must hold absolute integer lengths, got {lengths.dtype}")
    if lengths.shape != (n_b,):
        raise ValueError(f"maximum_path: {name} must have shape [{n_b}], got {tuple(lengths.shape)}")
    return lengths


def _validate(value, x_lengths, y_lengths) -> None:
    n_b, n_y, n_x = value.shape
    x_host, y_host = x_lengths.tolist(), y_lengths.tolist()
    for b, (x_len, y_len) in enumerate(zip(x_host, y_host)):
        if not 1 <= x_len <= n_x:
            raise ValueError(f"maximum_path: batch item {b} has x_length {x_len} outside [1, {n_x}]")
        if not 1 <= y_len <= n_y:
            raise ValueError(f"maximum_path: batch item {b} has y_length {y_len} outside [1, {n_y}]")
        if x_len > y_len:
            raise ValueError(
                f"maximum_path: batch item {b} has more text than audio "
                f"(x_length {x_len} > y_length {y_len}): no monotonic path exists"
            )
    in_x = torch.arange(n_x, device=value.device)[None, None, :] < x_lengths[:, None, None]
    in_y = torch.arange(n_y, device=value.device)[None, :, None] < y_lengths[:, None, None]
    bad = (torch.isnan(value) | (value == float("inf"))) & in_x & in_y
    bad_items = bad.flatten(1).any(1)
    if bool(bad_items.any()):
        b = int(bad_items.nonzero()[0, 0])
        raise ValueError(f"maximum_path: batch item {b} has NaN or +inf scores inside its lengths")


def _run_cpu(value, path, x_lengths, y_lengths) -> None:
    from semtts.align.cpu_backend import maximum_path_numba

    v_host = value.detach().cpu().float()  # no copy for fp32 CPU scores
    x_np, y_np = x_lengths.cpu().numpy(), y_lengths.cpu().numpy()
    if path.device.type == "cpu" and path.dtype == torch.float32:
        work = path  # may alias v_host (inplace): the kernel reads before it writes
    else:
        work = torch.empty(path.shape, dtype=torch.uint8)
    maximum_path_numba(v_host.numpy(), work.numpy(), x_np, y_np)
    if work is not path:
        path.copy_(work)


def _run_triton(value, path, x_lengths, y_lengths) -> None:
    from semtts.align.triton_backend import maximum_path_triton

    if value.dtype == torch.float64:
        value = value.float()  # no fp64 loads in the kernel; the DP is fp32
    maximum_path_triton(value, path, x_lengths, y_lengths)


def _run_super_mas(value, path, x_lengths, y_lengths) -> None:
    """The external Super-MAS package ([B, T_text, T_audio] contiguous, -1e9
    guard, modifies its input): a transposed copy, for comparison only."""
    import super_monotonic_align

    glow = value.transpose(1, 2).float().contiguous()
    n_b, n_x, n_y = glow.shape
    mask = (torch.arange(n_x, device=glow.device)[None, :, None] < x_lengths[:, None, None]) & (
        torch.arange(n_y, device=glow.device)[None, None, :] < y_lengths[:, None, None]
    )
    out = super_monotonic_align.maximum_path(glow, mask)
    path.copy_(out.transpose(1, 2))
