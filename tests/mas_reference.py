"""An independent, slow reference for monotonic alignment search.

Plain Python loops over a full grid with explicit -inf cells, in float64 (or
emulating fp32 with numpy float32 scalars). Used only by the tests.
"""

import itertools

import numpy as np


def reference_path(v: np.ndarray, x_len: int, y_len: int, fp32: bool = False) -> np.ndarray:
    """MAS on one ``[T_audio, T_text]`` score matrix; returns a {0,1} int array."""
    cast = np.float32 if fp32 else float
    n_y, n_x = v.shape
    q = [[-np.inf] * x_len for _ in range(y_len)]
    for y in range(y_len):
        for x in range(x_len):
            if x > y:
                continue  # unreachable: more tokens than frames so far
            if y == 0:
                q[y][x] = cast(v[0, 0])
                continue
            stay = q[y - 1][x]
            move = q[y - 1][x - 1] if x > 0 else -np.inf
            q[y][x] = cast(cast(v[y, x]) + cast(max(stay, move)))
    path = np.zeros((n_y, n_x), dtype=np.int64)
    x = x_len - 1
    for y in range(y_len - 1, -1, -1):
        path[y, x] = 1
        if y > 0 and x > 0 and (x == y or q[y - 1][x - 1] > q[y - 1][x]):
            x -= 1
    return path


def reference_batch(v: np.ndarray, x_lengths, y_lengths, fp32: bool = False) -> np.ndarray:
    """:func:`reference_path` over a ``[B, T_audio, T_text]`` batch."""
    return np.stack([reference_path(v[b], int(x), int(y), fp32) for b, (x, y) in enumerate(zip(x_lengths, y_lengths))])


def brute_force_best(v: np.ndarray, x_len: int, y_len: int) -> float:
    """The best score over every monotonic path, by enumeration (tiny sizes)."""
    best = -np.inf
    # A path is a choice of the x_len - 1 frames (among 1..y_len-1) where the token advances.
    for cuts in itertools.combinations(range(1, y_len), x_len - 1):
        x, score, cut_set = 0, 0.0, set(cuts)
        for y in range(y_len):
            if y in cut_set:
                x += 1
            score += float(v[y, x])
        best = max(best, score)
    return best


def path_score(v: np.ndarray, path: np.ndarray) -> float:
    """Sum of the scores on a path."""
    return float((np.asarray(v, dtype=np.float64) * path).sum())
