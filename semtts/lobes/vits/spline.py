"""Monotonic piecewise rational-quadratic splines (Durkan et al. 2019, "Neural
Spline Flows") with linear tails, the elementwise transform of the VITS
stochastic duration predictor's conv flows.

On ``[-tail_bound, tail_bound]`` the map is made of ``K`` bins; in each bin it
is a monotonic ratio of two quadratics fixed by the bin's width, height and
the derivatives at its two knots. Outside the interval it is the identity
(the boundary derivatives are 1, so the map is smooth there).

Example
-------
>>> x = torch.linspace(-6, 6, 13)
>>> w, h, d = torch.randn(4).expand(13, 4), torch.randn(4).expand(13, 4), torch.randn(3).expand(13, 3)
>>> y, logdet = rational_quadratic_spline(x, w, h, d)
>>> x_back, logdet_back = rational_quadratic_spline(y, w, h, d, inverse=True)
>>> bool(torch.allclose(x_back, x, atol=1e-4)), bool(torch.allclose(logdet + logdet_back, torch.zeros(13), atol=1e-4))
(True, True)
>>> bool(torch.all(torch.diff(y) > 0))   # one spline for all: increasing
True
"""

import math

import torch
import torch.nn.functional as F

from semtts.errors import ConfigError

__all__ = ["rational_quadratic_spline"]


def _knots(unnormalized: torch.Tensor, bound: float, min_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes (softmax, floored at ``min_size``) and their ``K + 1`` knots on ``[-bound, bound]``
    (the end knots exactly at the bounds), along the last dimension of ``unnormalized [..., K]``."""
    n_bins = unnormalized.size(-1)
    fractions = torch.softmax(unnormalized, dim=-1).mul(1.0 - min_size * n_bins).add(min_size)
    inner = torch.cumsum(fractions[..., :-1], dim=-1).mul(2 * bound).sub(bound)
    knots = F.pad(F.pad(inner, (1, 0), value=-bound), (0, 1), value=bound)
    return knots[..., 1:] - knots[..., :-1], knots


def rational_quadratic_spline(
    inputs: torch.Tensor,
    unnormalized_widths: torch.Tensor,
    unnormalized_heights: torch.Tensor,
    unnormalized_derivatives: torch.Tensor,
    inverse: bool = False,
    tail_bound: float = 5.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply (or invert) a rational-quadratic spline with linear tails elementwise.

    Arguments
    ---------
    inputs : torch.Tensor
        ``[...]`` values to transform.
    unnormalized_widths : torch.Tensor
        ``[..., K]`` bin widths before the softmax.
    unnormalized_heights : torch.Tensor
        ``[..., K]`` bin heights before the softmax.
    unnormalized_derivatives : torch.Tensor
        ``[..., K - 1]`` derivatives at the inner knots before the softplus.
    inverse : bool
        Compute the inverse map.
    tail_bound : float
        Half-width of the interval where the spline acts.
    min_bin_width : float
        Smallest bin width (as a fraction of the interval).
    min_bin_height : float
        Smallest bin height (as a fraction of the interval).
    min_derivative : float
        Smallest knot derivative.

    Returns
    -------
    outputs : torch.Tensor
        ``[...]`` transformed values.
    logabsdet : torch.Tensor
        ``[...]`` log of the absolute derivative of the map that was applied.

    Example
    -------
    >>> x, zeros = torch.tensor([-1.0, 0.5, 7.0]), torch.zeros(3, 5)
    >>> unit = torch.full((3, 4), math.log(math.expm1(1 - 1e-3)))  # knot slopes of 1
    >>> y, logdet = rational_quadratic_spline(x, zeros, zeros, unit)
    >>> bool(torch.allclose(y, x, atol=1e-5)), bool(logdet.abs().max() < 1e-5)  # identity
    (True, True)
    """
    n_bins = unnormalized_widths.size(-1)
    if min_bin_width * n_bins > 1.0 or min_bin_height * n_bins > 1.0:
        raise ConfigError(f"spline: minimal bin size too large for {n_bins} bins")
    # boundary derivatives fixed to 1 to join the identity tails smoothly
    boundary = math.log(math.expm1(1.0 - min_derivative))
    derivatives = F.softplus(F.pad(unnormalized_derivatives, (1, 1), value=boundary)).add(min_derivative)
    if min_bin_width == min_bin_height:  # widths and heights in one pass: [..., 2, K]
        sizes, knots = _knots(torch.stack([unnormalized_widths, unnormalized_heights], dim=-2), tail_bound,
                              min_bin_width)
    else:
        (widths, x_knots), (heights, y_knots) = (_knots(unnormalized_widths, tail_bound, min_bin_width),
                                                 _knots(unnormalized_heights, tail_bound, min_bin_height))
        sizes, knots = torch.stack([widths, heights], dim=-2), torch.stack([x_knots, y_knots], dim=-2)

    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    values = inputs.clamp(-tail_bound, tail_bound)
    search = knots[..., 1 if inverse else 0, :]
    bin_index = ((values.unsqueeze(-1) >= search).sum(-1) - 1).clamp(0, n_bins - 1)

    # every per-bin quantity in one table, read with one gather: [x_k, width, y_k, height, d_k, d_k+1]
    table = torch.cat([torch.cat([knots[..., :-1], sizes], dim=-1).flatten(-2), derivatives[..., :-1],
                       derivatives[..., 1:]], dim=-1)
    offsets = torch.arange(0, 6 * n_bins, n_bins, device=inputs.device)
    x_k, width, y_k, height, d_k, d_k1 = table.gather(-1, bin_index.unsqueeze(-1) + offsets).unbind(-1)
    slope = height / width
    curvature = d_k1 + d_k - 2 * slope

    if inverse:
        shift = values - y_k
        a = height * (slope - d_k) + shift * curvature
        b = height * d_k - shift * curvature
        c = -slope * shift
        discriminant = (b.pow(2) - 4 * a * c).clamp_min(0.0)
        theta = (2 * c) / (-b - torch.sqrt(discriminant))
        mapped = x_k + theta * width
    else:
        theta = (values - x_k) / width

    complement = 1 - theta
    mixed = theta * complement
    theta_sq = theta.pow(2)
    denominator = slope + curvature * mixed
    slope_numerator = slope.pow(2) * (d_k1 * theta_sq + 2 * slope * mixed + d_k * complement.pow(2))
    logabsdet = torch.log(slope_numerator) - 2 * torch.log(denominator)  # no squared denominator to overflow
    if inverse:
        logabsdet = -logabsdet
    else:
        mapped = y_k + height * (slope * theta_sq + d_k * mixed) / denominator

    outputs = torch.where(inside, mapped, inputs)
    logabsdet = torch.where(inside, logabsdet, 0.0)
    return outputs, logabsdet
