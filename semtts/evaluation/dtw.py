"""Dynamic time warping between two feature sequences (used by the MCD and
F0 metrics to align synthesized and reference frames).

The classic symmetric recursion: ``D[i, j] = d(i, j) + min(D[i-1, j],
D[i, j-1], D[i-1, j-1])`` with Euclidean frame distances, filled in
``O(N M)`` time by a numba kernel, then traced back from ``(N-1, M-1)`` to
``(0, 0)``.

Example
-------
>>> a = np.array([[0.0], [1.0], [2.0]])
>>> b = np.array([[0.0], [0.0], [1.0], [2.0]])
>>> dtw_path(a, b).tolist()
[[0, 0], [0, 1], [1, 2], [2, 3]]
"""

import numba
import numpy as np

from semtts.errors import DataError

__all__ = ["frame_distances", "dtw_path"]


def frame_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances between every frame of ``x`` and of ``y``.

    Arguments
    ---------
    x : np.ndarray
        ``[N, D]`` features.
    y : np.ndarray
        ``[M, D]`` features.

    Returns
    -------
    np.ndarray
        ``[N, M]`` float64 distances.

    Example
    -------
    >>> frame_distances(np.zeros((2, 3)), np.ones((1, 3))).round(3).tolist()
    [[1.732], [1.732]]
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise DataError(f"dtw: need [N, D] and [M, D] features, got {list(x.shape)} and {list(y.shape)}")
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.sqrt(np.maximum(sq, 0.0))


@numba.njit(cache=True)
def _accumulate(dist: np.ndarray) -> np.ndarray:
    n, m = dist.shape
    acc = np.empty((n, m))
    acc[0, 0] = dist[0, 0]
    for j in range(1, m):
        acc[0, j] = acc[0, j - 1] + dist[0, j]
    for i in range(1, n):
        acc[i, 0] = acc[i - 1, 0] + dist[i, 0]
        for j in range(1, m):
            best = acc[i - 1, j - 1]
            if acc[i - 1, j] < best:
                best = acc[i - 1, j]
            if acc[i, j - 1] < best:
                best = acc[i, j - 1]
            acc[i, j] = dist[i, j] + best
    return acc


@numba.njit(cache=True)
def _backtrack(acc: np.ndarray) -> np.ndarray:
    i, j = acc.shape[0] - 1, acc.shape[1] - 1
    path = np.empty((i + j + 1, 2), dtype=np.int64)
    k = 0
    path[k, 0], path[k, 1] = i, j
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            diag, up, left = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if diag <= up and diag <= left:
                i -= 1
                j -= 1
            elif up <= left:
                i -= 1
            else:
                j -= 1
        k += 1
        path[k, 0], path[k, 1] = i, j
    return path[: k + 1][::-1].copy()


def dtw_path(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The minimum-cost monotonic alignment of two feature sequences.

    Arguments
    ---------
    x : np.ndarray
        ``[N, D]`` features (N >= 1).
    y : np.ndarray
        ``[M, D]`` features (M >= 1).

    Returns
    -------
    np.ndarray
        ``[L, 2]`` int64 pairs ``(i, j)`` from ``(0, 0)`` to ``(N-1, M-1)``,
        each step advancing ``i``, ``j`` or both by one.
    """
    dist = frame_distances(x, y)
    if dist.size == 0:
        raise DataError(f"dtw: empty sequence ({dist.shape[0]} and {dist.shape[1]} frames)")
    return _backtrack(_accumulate(dist))
