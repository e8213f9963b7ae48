"""The VITS side of the text-to-frame alignment.

- :func:`prior_log_likelihood`: the matrix ``neg_cent`` ``[B, T_spec, T_text]``
  of ``log N(z_p[:, :, t]; m_p[:, :, j], exp(logs_p[:, :, j])^2)`` that
  monotonic alignment search maximises (computed in float32, no gradient);
- :func:`search_path`: the hard monotonic path, by
  :func:`semtts.align.maximum_path`;
- :func:`durations_to_path`: the path of given integer durations (inference);
- :func:`expand_by_path`: repeat per-token statistics along a path.

A path is a {0, 1} float tensor ``[B, T_spec, T_text]`` with exactly one token
per valid frame (the "vits" layout of :mod:`semtts.align`).

Example
-------
>>> path = durations_to_path(torch.tensor([[2.0, 1.0]]), torch.ones(1, 1, 2), torch.ones(1, 1, 3))
>>> path[0].tolist()
[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
>>> expand_by_path(torch.tensor([[[5.0, 7.0]]]), path).tolist()
[[[5.0, 5.0, 7.0]]]
"""

import math

import torch

from semtts.align import maximum_path

__all__ = ["prior_log_likelihood", "search_path", "durations_to_path", "expand_by_path"]


@torch.no_grad()
def prior_log_likelihood(
    z_p: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor
) -> torch.Tensor:
    """Gaussian log-likelihood of every frame of ``z_p`` under every token's prior.

    The sum over channels ``c`` of
    ``-log(2 pi)/2 - logs_p - (z_p - m_p)^2 / (2 exp(2 logs_p))`` is expanded
    into four terms so that it costs two batched matrix products instead of a
    ``[B, C, T_spec, T_text]`` tensor. Runs in float32 whatever the input
    type (autocast is switched off).

    Arguments
    ---------
    z_p : torch.Tensor
        ``[B, C, T_spec]`` flowed posterior latent.
    m_p : torch.Tensor
        ``[B, C, T_text]`` prior means.
    logs_p : torch.Tensor
        ``[B, C, T_text]`` prior log standard deviations.

    Returns
    -------
    torch.Tensor
        ``neg_cent`` ``[B, T_spec, T_text]`` float32, without gradient.

    Example
    -------
    >>> z_p, m_p, logs_p = torch.randn(2, 3, 5), torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    >>> direct = torch.distributions.Normal(m_p.unsqueeze(2), logs_p.exp().unsqueeze(2))
    >>> direct = direct.log_prob(z_p.unsqueeze(3)).sum(1)
    >>> bool(torch.allclose(prior_log_likelihood(z_p, m_p, logs_p), direct, atol=1e-4))
    True
    """
    with torch.autocast(device_type=z_p.device.type, enabled=False):
        z_p, m_p, logs_p = z_p.float(), m_p.float(), logs_p.float()
        inv_var = torch.exp(-2 * logs_p)  # [B, C, T_text]
        const = torch.sum(-0.5 * math.log(2 * math.pi) - logs_p, dim=1, keepdim=True)
        quadratic = torch.matmul(-0.5 * z_p.pow(2).transpose(1, 2), inv_var)
        cross = torch.matmul(z_p.transpose(1, 2), m_p * inv_var)
        mean_term = torch.sum(-0.5 * m_p.pow(2) * inv_var, dim=1, keepdim=True)
        return const + quadratic + cross + mean_term


@torch.no_grad()
def search_path(
    neg_cent: torch.Tensor, token_lengths: torch.Tensor, spec_lengths: torch.Tensor, backend: str = "auto"
) -> torch.Tensor:
    """Monotonic alignment search by :func:`semtts.align.maximum_path`.

    The scores are a temporary of the training step, so the path is written
    into them (``inplace``: no second score-sized buffer), and the lengths,
    already checked by the synthesizer, are not validated again (no device
    sync); NaN scores give NaN losses, which the Brain skips.

    Arguments
    ---------
    neg_cent : torch.Tensor
        ``[B, T_spec, T_text]`` scores from :func:`prior_log_likelihood`.
    token_lengths : torch.Tensor
        ``[B]`` absolute token counts.
    spec_lengths : torch.Tensor
        ``[B]`` absolute frame counts.
    backend : str
        ``auto`` (Triton on CUDA, numba on CPU), ``cpu``, ``triton`` or ``super_mas``.

    Returns
    -------
    torch.Tensor
        ``[B, T_spec, T_text]`` {0, 1} path, in the dtype of ``neg_cent``
        (``neg_cent`` itself, overwritten).
    """
    return maximum_path(neg_cent, x_lengths=token_lengths, y_lengths=spec_lengths, backend=backend,
                        inplace=True, validate=False)


def durations_to_path(
    durations: torch.Tensor, token_mask: torch.Tensor, frame_mask: torch.Tensor
) -> torch.Tensor:
    """The monotonic path that gives token ``j`` exactly ``durations[b, j]`` frames.

    Arguments
    ---------
    durations : torch.Tensor
        ``[B, T_text]`` non-negative integer-valued durations.
    token_mask : torch.Tensor
        ``[B, 1, T_text]`` token mask.
    frame_mask : torch.Tensor
        ``[B, 1, T_spec]`` frame mask.

    Returns
    -------
    torch.Tensor
        ``[B, T_spec, T_text]`` {0, 1} path.

    Example
    -------
    >>> durations_to_path(torch.tensor([[0.0, 2.0]]), torch.ones(1, 1, 2), torch.ones(1, 1, 2))[0].tolist()
    [[0.0, 1.0], [0.0, 1.0]]
    """
    ends = torch.cumsum(durations, dim=-1).unsqueeze(1)  # [B, 1, T_text]
    starts = ends - durations.unsqueeze(1)
    frames = torch.arange(frame_mask.size(-1), device=durations.device, dtype=durations.dtype)
    frames = frames.view(1, -1, 1)
    path = (frames >= starts) & (frames < ends)
    return path.to(frame_mask.dtype) * frame_mask.transpose(1, 2) * token_mask


def expand_by_path(stats: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    """Give every frame the statistics of its token: ``[B, C, T_text]`` to ``[B, C, T_spec]``.

    Arguments
    ---------
    stats : torch.Tensor
        ``[B, C, T_text]`` per-token values.
    path : torch.Tensor
        ``[B, T_spec, T_text]`` alignment path.

    Returns
    -------
    torch.Tensor
        ``[B, C, T_spec]`` per-frame values (0 on unaligned frames).
    """
    return torch.matmul(path.to(stats.dtype), stats.transpose(1, 2)).transpose(1, 2)
