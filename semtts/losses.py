"""The VITS training losses and a masked L1 loss.

- adversarial: least-squares GAN losses for the discriminator
  (:func:`discriminator_loss`) and the generator (:func:`generator_loss`);
- :func:`feature_matching_loss`: L1 between the discriminator activations of
  real and generated audio;
- :func:`kl_loss`: the VITS KL term between the flow-mapped posterior sample
  and the text-conditioned prior;
- duration: :func:`stochastic_duration_loss` (the stochastic duration
  predictor's NLL) or :func:`log_duration_loss` (the deterministic
  predictor's MSE in the log domain);
- :class:`MaskedL1`: an L1 over the valid frames of a padded ``[B, T, D]``
  batch (used for the semantic distillation targets);
- :class:`VITSGeneratorLoss` and :class:`VITSDiscriminatorLoss`: the weighted
  totals, returned with every term for logging.

All losses are computed in float32, whatever the input dtype or autocast.

Example
-------
>>> real = [torch.ones(2, 5)]
>>> fake = [torch.zeros(2, 5)]
>>> VITSDiscriminatorLoss()(real, fake)["loss"]
tensor(0.)
>>> MaskedL1()(torch.ones(2, 4, 3), torch.zeros(2, 4, 3), torch.tensor([4, 2]))
tensor(1.)
"""

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from semtts.errors import ConfigError, DataError

__all__ = [
    "discriminator_loss",
    "generator_loss",
    "feature_matching_loss",
    "kl_loss",
    "stochastic_duration_loss",
    "log_duration_loss",
    "MaskedL1",
    "VITSGeneratorLoss",
    "VITSDiscriminatorLoss",
]


def _check_same_length(name: str, first: Sequence, second: Sequence) -> None:
    if len(first) != len(second):
        raise DataError(f"{name}: got {len(first)} real and {len(second)} fake discriminator outputs")


def _mask_count(mask: torch.Tensor) -> torch.Tensor:
    """Sum of a mask, at least 1 so that an empty mask gives 0, not NaN."""
    return mask.float().sum().clamp(min=1.0)


def discriminator_loss(
    real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Least-squares GAN loss of the discriminators: real to 1, fake to 0.

    ``sum_k mean((1 - D_k(y))^2) + mean(D_k(y_hat)^2)``.

    Arguments
    ---------
    real_scores : sequence of torch.Tensor
        One ``[B, N_k]`` score map per discriminator, for real audio.
    fake_scores : sequence of torch.Tensor
        Likewise for generated (detached) audio.

    Returns
    -------
    loss : torch.Tensor
        Scalar total.
    real_terms : list of torch.Tensor
        ``mean((1 - D_k(y))^2)`` per discriminator.
    fake_terms : list of torch.Tensor
        ``mean(D_k(y_hat)^2)`` per discriminator.

    Example
    -------
    >>> loss, real, fake = discriminator_loss([torch.ones(2, 3)], [torch.ones(2, 3)])
    >>> loss, real[0], fake[0]
    (tensor(1.), tensor(0.), tensor(1.))
    """
    _check_same_length("discriminator_loss", real_scores, fake_scores)
    real_terms = [torch.mean((1.0 - r.float()) ** 2) for r in real_scores]
    fake_terms = [torch.mean(g.float() ** 2) for g in fake_scores]
    loss = torch.stack(real_terms).sum() + torch.stack(fake_terms).sum()
    return loss, real_terms, fake_terms


def generator_loss(fake_scores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Least-squares GAN loss of the generator: fake scores to 1.

    Arguments
    ---------
    fake_scores : sequence of torch.Tensor
        One ``[B, N_k]`` score map per discriminator, for generated audio.

    Returns
    -------
    loss : torch.Tensor
        Scalar ``sum_k mean((1 - D_k(y_hat))^2)``.
    terms : list of torch.Tensor
        The term of each discriminator.

    Example
    -------
    >>> loss, terms = generator_loss([torch.zeros(2, 3), torch.ones(2, 4)])
    >>> loss, terms
    (tensor(1.), [tensor(1.), tensor(0.)])
    """
    terms = [torch.mean((1.0 - g.float()) ** 2) for g in fake_scores]
    return torch.stack(terms).sum(), terms


def feature_matching_loss(
    real_fmaps: Sequence[Sequence[torch.Tensor]], fake_fmaps: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """L1 between the discriminator activations of real and generated audio.

    ``sum_k sum_l mean(|F_kl(y) - F_kl(y_hat)|)``; the real maps are detached.
    VITS weighs this sum by 2 (``c_fm`` of :class:`VITSGeneratorLoss`).

    Arguments
    ---------
    real_fmaps : sequence of sequence of torch.Tensor
        The feature maps of each discriminator for real audio.
    fake_fmaps : sequence of sequence of torch.Tensor
        Likewise for generated audio (same shapes).

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> feature_matching_loss([[torch.ones(1, 2, 3)]], [[torch.zeros(1, 2, 3)]])
    tensor(1.)
    """
    _check_same_length("feature_matching_loss", real_fmaps, fake_fmaps)
    reals, fakes = [], []
    for k, (real, fake) in enumerate(zip(real_fmaps, fake_fmaps)):
        _check_same_length(f"feature_matching_loss (discriminator {k})", real, fake)
        for r, g in zip(real, fake):
            if r.shape != g.shape:
                raise DataError(f"feature_matching_loss (discriminator {k}): real and fake maps differ in shape: "
                                f"{list(r.shape)} vs {list(g.shape)}")
            reals.append(r.detach())
            fakes.append(g)
    if not fakes:
        raise DataError("feature_matching_loss: no feature maps to compare")
    if len({t.dtype for t in reals + fakes}) > 1:  # mixed precisions: compare in float32
        reals, fakes = [t.float() for t in reals], [t.float() for t in fakes]
    # every map at once (a few multi-tensor kernels, not five per map)
    diffs = torch._foreach_sub(fakes, reals)
    try:  # the L1 sums in float32
        l1_sums = torch._foreach_norm(diffs, 1, dtype=torch.float32)
    except TypeError:  # a torch without the dtype argument: sums in the maps' dtype, accumulated in float32
        l1_sums = torch._foreach_norm(diffs, 1)
    return torch.stack(torch._foreach_div(l1_sums, [float(t.numel()) for t in fakes])).float().sum()


def kl_loss(
    z_p: torch.Tensor,
    logs_q: torch.Tensor,
    m_p: torch.Tensor,
    logs_p: torch.Tensor,
    z_mask: torch.Tensor,
) -> torch.Tensor:
    """The VITS KL term between the posterior and the prior.

    A one-sample estimate of ``KL(q(z|x) || p(z|c))`` computed after the flow,
    per channel and frame::

        logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p)^2 * exp(-2 * logs_p)

    summed over the valid frames and channels and divided by the number of
    valid frames (``z_mask.sum()``). With ``z_p`` drawn from the prior and
    ``logs_q == logs_p`` its expectation is 0; at ``z_p == m_p`` it is -0.5 per
    element.

    Arguments
    ---------
    z_p : torch.Tensor
        ``[B, C, T_spec]`` the posterior sample mapped through the flow.
    logs_q : torch.Tensor
        ``[B, C, T_spec]`` log standard deviation of the posterior.
    m_p : torch.Tensor
        ``[B, C, T_spec]`` prior mean (expanded to frames by the alignment).
    logs_p : torch.Tensor
        ``[B, C, T_spec]`` prior log standard deviation.
    z_mask : torch.Tensor
        ``[B, 1, T_spec]`` 1 on valid frames, 0 on padding.

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> zeros = torch.zeros(1, 2, 3)
    >>> kl_loss(zeros, zeros, zeros, zeros, torch.ones(1, 1, 3))  # 2 channels x -0.5
    tensor(-1.)
    """
    z_p, logs_q, m_p, logs_p = z_p.float(), logs_q.float(), m_p.float(), logs_p.float()
    mask = z_mask.float()
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p) ** 2 * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * mask) / _mask_count(mask)


def stochastic_duration_loss(nll: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
    """The stochastic duration predictor loss: summed NLL over the valid tokens.

    Arguments
    ---------
    nll : torch.Tensor
        ``[B]`` negative log-likelihood of each item's durations (summed over
        its tokens), as the stochastic duration predictor returns it.
    x_mask : torch.Tensor
        ``[B, 1, T_text]`` 1 on valid tokens.

    Returns
    -------
    torch.Tensor
        Scalar ``nll.sum() / x_mask.sum()``.

    Example
    -------
    >>> stochastic_duration_loss(torch.tensor([3.0, 5.0]), torch.ones(2, 1, 4))
    tensor(1.)
    """
    return nll.float().sum() / _mask_count(x_mask)


def log_duration_loss(
    log_w_pred: torch.Tensor, durations: torch.Tensor, x_mask: torch.Tensor
) -> torch.Tensor:
    """The deterministic duration predictor loss: MSE in the log domain.

    ``sum(((log_w_pred - log(durations + 1e-6)) * x_mask)^2) / x_mask.sum()``.

    Arguments
    ---------
    log_w_pred : torch.Tensor
        ``[B, 1, T_text]`` predicted log durations.
    durations : torch.Tensor
        ``[B, 1, T_text]`` durations in frames from the alignment.
    x_mask : torch.Tensor
        ``[B, 1, T_text]`` 1 on valid tokens.

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> w = torch.tensor([[[2.0, 3.0, 0.0]]])
    >>> log_duration_loss(torch.log(w + 1e-6), w, torch.tensor([[[1.0, 1.0, 0.0]]]))
    tensor(0.)
    """
    mask = x_mask.float()
    target = torch.log(durations.float() + 1e-6)
    return torch.sum(((log_w_pred.float() - target) * mask) ** 2) / _mask_count(mask)


class MaskedL1(nn.Module):
    """Mean absolute error over the valid frames of a padded batch.

    The sum of ``|pred - target|`` over the frames ``t < lengths[b]`` divided
    by the number of those elements: a padded batch gives the value of the
    unpadded one, and an item of length 0 contributes nothing (an all-padding
    batch gives 0, not NaN).

    Example
    -------
    >>> loss = MaskedL1()
    >>> pred, target = torch.zeros(2, 5, 4), torch.ones(2, 5, 4)
    >>> loss(pred, target, torch.tensor([5, 0]))
    tensor(1.)
    """

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compute the loss.

        Arguments
        ---------
        pred : torch.Tensor
            ``[B, T, D]`` (or ``[B, T]``, or ``[B, T, ...]``) predictions.
        target : torch.Tensor
            Targets of the same shape.
        lengths : torch.Tensor, optional
            ``[B]`` absolute number of valid frames per item (0 to ``T``),
            checked on the host (a device sync for CUDA lengths).
        mask : torch.Tensor, optional
            ``[B, T]`` 1 on the valid frames, 0 elsewhere, instead of
            ``lengths`` (nothing read back: for a training step on a GPU).
            All frames when neither is given.

        Returns
        -------
        torch.Tensor
            Scalar float32.
        """
        if pred.shape != target.shape:
            raise DataError(
                f"MaskedL1: prediction and target differ in shape: {list(pred.shape)} vs {list(target.shape)}"
            )
        if pred.dim() < 2:
            raise DataError(f"MaskedL1: expected [B, T, D] tensors, got {list(pred.shape)}")
        error = torch.abs(pred.float() - target.float())
        if lengths is None and mask is None:
            return error.mean()
        if lengths is not None and mask is not None:
            raise DataError("MaskedL1: give lengths or mask, not both")
        batch, frames = pred.shape[:2]
        if mask is None:
            if lengths.shape != (batch,):
                raise DataError(f"MaskedL1: expected [{batch}] lengths, got {list(lengths.shape)}")
            host = lengths.cpu()
            if host.is_floating_point() or bool((host < 0).any()) or bool((host > frames).any()):
                raise DataError(
                    f"MaskedL1: lengths must be integers in [0, {frames}] (absolute frames), got {host.tolist()}"
                )
            steps = torch.arange(frames, device=pred.device)
            mask = steps.unsqueeze(0) < host.to(pred.device, non_blocking=True).unsqueeze(1)  # [B, T]
        elif mask.shape != (batch, frames):
            raise DataError(f"MaskedL1: expected a [{batch}, {frames}] mask, got {list(mask.shape)}")
        mask = mask.float().view(batch, frames, *([1] * (pred.dim() - 2)))
        per_frame = error[0, 0].numel()
        masked = error * mask
        count = (mask.sum() * per_frame).clamp(min=1.0)
        return masked.sum() / count


class VITSGeneratorLoss(nn.Module):
    """The VITS generator objective: weighted adversarial, feature matching,
    mel L1, KL and duration terms.

    ``loss = c_adv * adv + c_fm * fm + c_mel * mel + c_kl * kl + c_dur * dur``
    with the VITS weights by default. The returned dict holds ``loss`` and the
    unweighted terms (``adv``, ``fm``, ``mel``, ``kl``, ``dur`` and ``adv_<k>``
    per discriminator) for logging.

    Arguments
    ---------
    c_mel : float
        Weight of the mel L1.
    c_kl : float
        Weight of the KL term.
    c_fm : float
        Weight of the feature-matching sum.
    c_dur : float
        Weight of the duration loss.
    c_adv : float
        Weight of the adversarial loss.

    Example
    -------
    >>> crit = VITSGeneratorLoss()
    >>> z, mask = torch.zeros(1, 2, 4), torch.ones(1, 1, 4)
    >>> out = crit(mel_real=torch.ones(1, 80, 4), mel_fake=torch.ones(1, 80, 4),
    ...            fake_scores=[torch.ones(1, 3)], real_fmaps=[[z]], fake_fmaps=[[z]],
    ...            z_p=z, logs_q=z, m_p=z, logs_p=z, z_mask=mask,
    ...            x_mask=torch.ones(1, 1, 2), duration_nll=torch.tensor([4.0]))
    >>> sorted(out), out["loss"]
    (['adv', 'adv_0', 'dur', 'fm', 'kl', 'loss', 'mel'], tensor(1.))
    """

    def __init__(
        self,
        c_mel: float = 45.0,
        c_kl: float = 1.0,
        c_fm: float = 2.0,
        c_dur: float = 1.0,
        c_adv: float = 1.0,
    ) -> None:
        super().__init__()
        self.c_mel, self.c_kl, self.c_fm, self.c_dur, self.c_adv = c_mel, c_kl, c_fm, c_dur, c_adv

    def forward(
        self,
        mel_real: torch.Tensor,
        mel_fake: torch.Tensor,
        fake_scores: Sequence[torch.Tensor],
        real_fmaps: Sequence[Sequence[torch.Tensor]],
        fake_fmaps: Sequence[Sequence[torch.Tensor]],
        z_p: torch.Tensor,
        logs_q: torch.Tensor,
        m_p: torch.Tensor,
        logs_p: torch.Tensor,
        z_mask: torch.Tensor,
        x_mask: torch.Tensor,
        duration_nll: torch.Tensor | None = None,
        log_duration_pred: torch.Tensor | None = None,
        durations: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute every term and the weighted total.

        Arguments
        ---------
        mel_real : torch.Tensor
            ``[B, n_mels, T_slice]`` log mel of the ground-truth slices.
        mel_fake : torch.Tensor
            ``[B, n_mels, T_slice]`` log mel of the generated slices.
        fake_scores : sequence of torch.Tensor
            Discriminator scores of the generated slices.
        real_fmaps : sequence of sequence of torch.Tensor
            Discriminator feature maps of the ground-truth slices.
        fake_fmaps : sequence of sequence of torch.Tensor
            Discriminator feature maps of the generated slices.
        z_p, logs_q, m_p, logs_p : torch.Tensor
            ``[B, C, T_spec]`` inputs of :func:`kl_loss`.
        z_mask : torch.Tensor
            ``[B, 1, T_spec]`` frame mask.
        x_mask : torch.Tensor
            ``[B, 1, T_text]`` token mask.
        duration_nll : torch.Tensor, optional
            ``[B]`` stochastic duration predictor NLL (give this, or the next two).
        log_duration_pred : torch.Tensor, optional
            ``[B, 1, T_text]`` deterministic predictor output (log durations).
        durations : torch.Tensor, optional
            ``[B, 1, T_text]`` alignment durations, with ``log_duration_pred``.

        Returns
        -------
        dict of str to torch.Tensor
            ``loss`` (weighted total) and the unweighted terms.
        """
        deterministic = (log_duration_pred is not None, durations is not None)
        if (duration_nll is None) != all(deterministic) or (duration_nll is not None and any(deterministic)):
            raise ConfigError(
                "VITSGeneratorLoss: give either duration_nll (stochastic predictor) or "
                "log_duration_pred and durations (deterministic predictor), not both or neither"
            )
        if mel_real.shape != mel_fake.shape:
            raise DataError(
                f"VITSGeneratorLoss: mel shapes differ: {list(mel_real.shape)} vs {list(mel_fake.shape)}"
            )
        adv, adv_terms = generator_loss(fake_scores)
        fm = feature_matching_loss(real_fmaps, fake_fmaps)
        mel = F.l1_loss(mel_fake.float(), mel_real.float())
        kl = kl_loss(z_p, logs_q, m_p, logs_p, z_mask)
        if duration_nll is not None:
            dur = stochastic_duration_loss(duration_nll, x_mask)
        else:
            dur = log_duration_loss(log_duration_pred, durations, x_mask)
        total = self.c_adv * adv + self.c_fm * fm + self.c_mel * mel + self.c_kl * kl + self.c_dur * dur
        terms = {"loss": total, "adv": adv, "fm": fm, "mel": mel, "kl": kl, "dur": dur}
        terms.update({f"adv_{k}": t for k, t in enumerate(adv_terms)})
        return terms


class VITSDiscriminatorLoss(nn.Module):
    """The VITS discriminator objective (least squares), with every term.

    The returned dict holds ``loss`` and, per discriminator ``k``,
    ``real_<k>`` and ``fake_<k>`` for logging.

    Example
    -------
    >>> out = VITSDiscriminatorLoss()([torch.ones(1, 4)], [torch.ones(1, 4)])
    >>> out["loss"], out["real_0"], out["fake_0"]
    (tensor(1.), tensor(0.), tensor(1.))
    """

    def forward(
        self, real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Compute the loss.

        Arguments
        ---------
        real_scores : sequence of torch.Tensor
            ``[B, N_k]`` discriminator scores of the ground-truth slices.
        fake_scores : sequence of torch.Tensor
            ``[B, N_k]`` scores of the generated (detached) slices.

        Returns
        -------
        dict of str to torch.Tensor
            ``loss`` and the per-discriminator terms.
        """
        loss, real_terms, fake_terms = discriminator_loss(real_scores, fake_scores)
        out = {"loss": loss}
        out.update({f"real_{k}": t for k, t in enumerate(real_terms)})
        out.update({f"fake_{k}": t for k, t in enumerate(fake_terms)})
        return out
