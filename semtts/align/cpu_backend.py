"""CPU backend of monotonic alignment search: numba, parallel over the batch.

The DP walks the audio axis (``y``) in the outer loop and the text axis
(``x``) in the inner loop, so in the native ``[B, T_audio, T_text]`` layout
the inner loop reads one contiguous row per step and vectorises. Only the
band of cells that lie on some complete path is computed; one bit per cell
(as a byte) records whether the best predecessor is the diagonal one, and a
backward walk over those bits yields the path.

Example
-------
>>> import numpy as np
>>> v = np.zeros((1, 5, 3), dtype=np.float32)
>>> path = np.empty_like(v)
>>> lengths = np.array([3]), np.array([5])
>>> maximum_path_numba(v, path, *lengths)
>>> path[0].argmax(axis=1)
array([0, 1, 2, 2, 2])
"""

import numba
import numpy as np
import torch

__all__ = ["maximum_path_numba"]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _path_one(value, path, x_len, y_len):  # pragma: no cover - compiled
    """Fill ``path[:y_len, :x_len]`` for one item; zero the whole ``path``."""
    n_y, n_x = path.shape
    # Never trust lengths for addressing: clamp them to the tensor.
    x_len = min(max(x_len, 0), n_x)
    y_len = min(max(y_len, 0), n_y)
    neg_inf = np.float32(-np.inf)
    prev = np.full(max(x_len, 1), neg_inf, dtype=np.float32)
    cur = np.full(max(x_len, 1), neg_inf, dtype=np.float32)
    diag = np.zeros((max(y_len, 1), max(x_len, 1)), dtype=np.uint8)
    valid = x_len >= 1 and y_len >= x_len
    if valid:
        prev[0] = np.float32(value[0, 0])
        for y in range(1, y_len):
            lo = max(0, x_len - y_len + y)
            hi = min(x_len - 1, y)
            row = value[y]
            drow = diag[y]
            for x in range(lo, hi + 1):
                stay = prev[x]
                move = prev[x - 1] if x > 0 else neg_inf
                take = (move > stay) or (x == y)
                best = move if take else stay
                cur[x] = np.float32(row[x]) + best
                drow[x] = take
            prev, cur = cur, prev
    # The DP is done with ``value``: ``path`` may alias it (inplace mode).
    for y in range(n_y):
        for x in range(n_x):
            path[y, x] = 0
    if valid:
        index = x_len - 1
        for y in range(y_len - 1, -1, -1):
            path[y, index] = 1
            if y > 0 and diag[y, index]:
                index -= 1


@numba.njit(cache=True, parallel=True, nogil=True)
def _path_batch(value, path, x_lengths, y_lengths):  # pragma: no cover - compiled
    for b in numba.prange(value.shape[0]):
        _path_one(value[b], path[b], x_lengths[b], y_lengths[b])


def maximum_path_numba(
    value: np.ndarray, path: np.ndarray, x_lengths: np.ndarray, y_lengths: np.ndarray
) -> None:
    """Write the maximum-score monotonic path of every item into ``path``.

    Arguments
    ---------
    value : np.ndarray
        ``[B, T_audio, T_text]`` float32 scores (any strides: a transposed
        view of the ``[B, T_text, T_audio]`` layout works without a copy).
    path : np.ndarray
        ``[B, T_audio, T_text]`` output of any numeric dtype; it may be
        ``value`` itself (then the scores are overwritten by the path).
    x_lengths : np.ndarray
        ``[B]`` text lengths (integers).
    y_lengths : np.ndarray
        ``[B]`` audio lengths (integers); items with ``x > y`` or zero
        lengths get an all-zero path (the dispatcher rejects them first).
    """
    threads = torch.get_num_threads()
    _path_batch(value, path, x_lengths.astype(np.int64), y_lengths.astype(np.int64))
    if torch.get_num_threads() != threads:
        # numba's OpenMP layer starts by setting the OpenMP thread count, which is torch's too: put torch's
        # back (a set_num_threads(1) would be lost, and torch.compile guards on the count)
        torch.set_num_threads(threads)
