"""Monotonic alignment search: every backend against an independent reference,
with exact equality of the paths."""

import numpy as np
import pytest
import torch

from semtts.align import available_backends, maximum_path
from tests.mas_reference import brute_force_best, path_score, reference_batch

BACKENDS = available_backends("cpu")  # "cpu", plus "triton" under TRITON_INTERPRET=1


def _ragged(b, n_y, n_x, gen):
    x = torch.randint(1, n_x + 1, (b,), generator=gen)
    y = torch.maximum(x, torch.randint(1, n_y + 1, (b,), generator=gen))
    x[0], y[0] = n_x, n_y  # one item uses the full tensor
    return x, y


def _grid(shape, gen, step=1 / 256, scale=4.0):
    """Scores on a grid where every fp32 partial sum is exact."""
    return torch.round(torch.randn(shape, generator=gen, dtype=torch.float64) * scale / step) * step


def _check(v64, path, x, y, fp32=False):
    ref = reference_batch(v64.numpy(), x.tolist(), y.tolist(), fp32=fp32)
    assert np.array_equal(path.to(torch.int64).numpy(), ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_grid_inputs_match_float64_reference(backend):
    gen = torch.Generator().manual_seed(0)
    v = _grid((5, 37, 11), gen)
    x, y = _ragged(5, 37, 11, gen)
    path = maximum_path(v.float(), x, y, backend=backend)
    _check(v, path, x, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_randn_matches_fp32_reference(backend):
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(4, 45, 14, generator=gen)
    x, y = _ragged(4, 45, 14, gen)
    path = maximum_path(v, x, y, backend=backend)
    _check(v.double(), path, x, y, fp32=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tie_heavy_integer_inputs(backend):
    gen = torch.Generator().manual_seed(2)
    v = torch.randint(-1, 2, (4, 30, 9), generator=gen).float()
    x, y = _ragged(4, 30, 9, gen)
    _check(v.double(), maximum_path(v, x, y, backend=backend), x, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_gives_the_last_token_the_rest(backend):
    path = maximum_path(torch.zeros(1, 12, 5), backend=backend)
    assert path[0].sum(0).tolist() == [1, 1, 1, 1, 8]


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_lengths(backend):
    gen = torch.Generator().manual_seed(3)
    v = _grid((4, 8, 8), gen)
    x = torch.tensor([1, 8, 5, 1])
    y = torch.tensor([1, 8, 5, 8])  # 1x1, full square, x == y inside padding, one token
    path = maximum_path(v.float(), x, y, backend=backend)
    _check(v, path, x, y)
    assert path[0].sum() == 1 and path[0, 0, 0] == 1
    assert torch.equal(path[1], torch.eye(8))
    assert path[3, :, 0].sum() == 8


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_is_never_read(backend):
    gen = torch.Generator().manual_seed(4)
    v = _grid((3, 20, 7), gen)
    x, y = torch.tensor([7, 4, 2]), torch.tensor([20, 9, 15])
    dirty = v.float().clone()
    for b in range(3):
        dirty[b, y[b]:, :] = float("nan")
        dirty[b, :, x[b]:] = float("inf")
    path = maximum_path(dirty, x, y, backend=backend)
    _check(v, path, x, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_magnitudes_beyond_minus_1e9(backend):
    gen = torch.Generator().manual_seed(5)
    # multiples of 128 around -1e7: every partial sum up to 2**31 is exact in fp32,
    # and cumulative scores pass -1e9 (where a -1e9 guard would break the DP).
    k = torch.randint(-1000, 1001, (3, 150, 12), generator=gen).double()
    v = -1e7 + 128.0 * k
    x, y = torch.tensor([12, 7, 12]), torch.tensor([150, 120, 140])
    path = maximum_path(v.float(), x, y, backend=backend)
    _check(v, path, x, y)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_run_the_dp_in_fp32(backend, dtype):
    gen = torch.Generator().manual_seed(6)
    v = _grid((3, 40, 10), gen, step=1 / 16, scale=2.0).clamp(-7.9, 7.9)
    x, y = _ragged(3, 40, 10, gen)
    path = maximum_path(v.to(dtype), x, y, backend=backend)
    assert path.dtype == dtype
    _check(v, path, x, y)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,big", [(torch.float16, 2048.0), (torch.bfloat16, 256.0)])
def test_half_precision_false_ties_are_avoided(backend, dtype, big):
    # big + 1 is not representable in the half type: a DP there sees 'big' for both ways through the second
    # frame and breaks the false tie towards [1, 2]; in fp32 the path through (1, 0) is worth one more: [2, 1]
    v = torch.zeros(1, 3, 2, dtype=dtype)
    v[0, 0, 0], v[0, 1, 0] = big, 1.0
    assert (v[0, 0, 0] + v[0, 1, 0]).item() == big  # the tie a half-precision DP would see
    path = maximum_path(v, backend=backend)
    assert path[0].sum(0).tolist() == [2, 1]
    _check(v.double(), path, torch.tensor([2]), torch.tensor([3]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_glow_layout_and_non_contiguous_inputs(backend):
    gen = torch.Generator().manual_seed(7)
    v = _grid((3, 33, 9), gen)
    x, y = _ragged(3, 33, 9, gen)
    expected = reference_batch(v.numpy(), x.tolist(), y.tolist())
    glow = v.float().transpose(1, 2).contiguous()  # [B, T_text, T_audio]
    path = maximum_path(glow, x, y, layout="glow", backend=backend)
    assert path.shape == glow.shape
    assert np.array_equal(path.transpose(1, 2).to(torch.int64).numpy(), expected)
    big = torch.full((3, 66, 18), float("nan"))
    big[:, ::2, ::2] = v.float()
    strided = big[:, ::2, ::2]
    assert not strided.is_contiguous()
    path = maximum_path(strided, x, y, backend=backend)
    assert np.array_equal(path.to(torch.int64).numpy(), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_untouched_unless_inplace(backend):
    gen = torch.Generator().manual_seed(8)
    v = torch.randn(2, 16, 6, generator=gen)
    keep = v.clone()
    path = maximum_path(v, backend=backend)
    assert torch.equal(v, keep)
    out = maximum_path(v, backend=backend, inplace=True)
    assert out.data_ptr() == v.data_ptr()
    assert torch.equal(v, path)


def test_brute_force_confirms_the_maximum():
    gen = torch.Generator().manual_seed(9)
    for _ in range(20):
        n_x = int(torch.randint(1, 5, (1,), generator=gen))
        n_y = int(torch.randint(n_x, 9, (1,), generator=gen))
        v = torch.randn(1, n_y, n_x, generator=gen).double()
        path = maximum_path(v)
        assert path[0].sum(1).tolist() == [1.0] * n_y  # one token per frame
        assert (path[0].sum(0) >= 1).all()  # every token at least one frame
        best = brute_force_best(v[0].numpy(), n_x, n_y)
        assert path_score(v[0].numpy(), path[0].numpy()) == pytest.approx(best, abs=1e-9)


@pytest.mark.parametrize(
    "x, y, message",
    [
        ([4, 6], [10, 5], "batch item 1 has more text than audio"),
        ([0, 3], [10, 10], "batch item 0 has x_length 0"),
        ([3, 3], [10, 0], "batch item 1 has y_length 0"),
        ([3, 7], [10, 10], "batch item 1 has x_length 7 outside"),
        ([3, 3], [11, 10], "batch item 0 has y_length 11 outside"),
    ],
)
def test_bad_lengths_name_the_item(x, y, message):
    with pytest.raises(ValueError, match=message):
        maximum_path(torch.zeros(2, 10, 6), torch.tensor(x), torch.tensor(y))


def test_other_bad_input():
    v = torch.zeros(2, 10, 6)
    v[1, 3, 2] = float("nan")
    with pytest.raises(ValueError, match="batch item 1 has NaN"):
        maximum_path(v)
    with pytest.raises(ValueError, match="x_lengths must have shape"):
        maximum_path(torch.zeros(2, 10, 6), torch.tensor([3, 3, 3]), torch.tensor([9, 9]))
    with pytest.raises(ValueError, match="absolute integer"):
        maximum_path(torch.zeros(2, 10, 6), torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="3-D"):
        maximum_path(torch.zeros(10, 6))
    with pytest.raises(ValueError, match="layout"):
        maximum_path(torch.zeros(1, 4, 2), layout="bad")
    with pytest.raises(ValueError, match="backend 'super_mas' cannot run on cpu here; available: cpu"):
        maximum_path(torch.zeros(1, 4, 2), backend="super_mas")


@pytest.mark.parametrize("interpret, version, runs", [("1", "3.6.0", False), ("1", "3.7.1", True),
                                                       ("1", "3.8.0+git1234", True), ("0", "3.8.0", False)])
def test_triton_backend_on_a_cpu_needs_an_interpreter_that_runs_it(monkeypatch, request, interpret, version, runs):
    import importlib.metadata
    import importlib.util

    from semtts.align.maximum_path import _triton_release, triton_interpreter_runs_kernel

    monkeypatch.setenv("TRITON_INTERPRET", interpret)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    _triton_release.cache_clear()  # read once per process: again for each case, and after the last
    request.addfinalizer(_triton_release.cache_clear)
    assert triton_interpreter_runs_kernel() is runs
    assert ("triton" in available_backends("cpu")) is runs


@pytest.mark.parametrize("backend", BACKENDS)
def test_unvalidated_bad_lengths_never_write_out_of_bounds(backend):
    # the path is written in place over the scores, a view into a larger buffer whose ends must stay untouched
    guard = torch.full((3 * 10 * 6 + 64,), 7.0)
    guard[32:32 + 180] = torch.randn(180)
    scores = guard[32:32 + 180].view(3, 10, 6)
    x, y = torch.tensor([99, 4, 0]), torch.tensor([500, 2, 5])
    path = maximum_path(scores, x, y, backend=backend, validate=False, inplace=True)
    assert path.data_ptr() == scores.data_ptr()
    assert torch.all(guard[:32] == 7.0) and torch.all(guard[-32:] == 7.0)
    assert path[1].sum() == 0 and path[2].sum() == 0  # no valid path: all zero
    assert path[0].sum() == 10  # clamped to the tensor: a full path


@pytest.mark.skipif("triton" not in BACKENDS, reason="needs Triton (CUDA or TRITON_INTERPRET=1)")
@pytest.mark.parametrize("ring", [True, False])
def test_triton_row_loading_variants_agree(ring):
    from semtts.align.triton_backend import maximum_path_triton

    gen = torch.Generator().manual_seed(10)
    v = _grid((3, 29, 10), gen)
    x, y = _ragged(3, 29, 10, gen)
    path = torch.full((3, 29, 10), 5.0)
    maximum_path_triton(v.float(), path, x, y, ring=ring, num_warps=2)
    _check(v, path, x, y)


def test_cpu_backend_keeps_torch_thread_count():
    """numba's OpenMP layer sets the OpenMP thread count when it starts, which is torch's too; the CPU backend
    puts torch's back (a fresh process, where the layer starts on this call)."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1); from semtts.align import maximum_path; "
            "maximum_path(torch.randn(2, 9, 4), torch.tensor([4, 3]), torch.tensor([9, 6]), backend='cpu'); "
            "print(torch.get_num_threads())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.split()[-1] == "1"
