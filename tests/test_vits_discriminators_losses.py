"""Tests of the VITS discriminators and of semtts.losses."""

import math

import pytest
import torch

from semtts.errors import ConfigError, DataError
from semtts.lobes.vits.discriminators import (
    MultiPeriodDiscriminator,
    PeriodDiscriminator,
    ScaleDiscriminator,
)
from semtts.losses import (
    MaskedL1,
    VITSDiscriminatorLoss,
    VITSGeneratorLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    kl_loss,
    log_duration_loss,
    stochastic_duration_loss,
)

VITS_DISCRIMINATOR_PARAMS = 46.7e6


def _conv_out(length: int, kernel: int, stride: int, pad: int) -> int:
    return (length + 2 * pad - kernel) // stride + 1


def _period_score_len(length: int, period: int) -> int:
    rows = math.ceil(length / period)
    for _ in range(4):
        rows = _conv_out(rows, 5, 3, 2)
    return rows * period  # the stride-1 layers keep the length


@pytest.fixture(scope="module")
def vits_disc():
    torch.manual_seed(0)
    return MultiPeriodDiscriminator().eval()


def test_vits_discriminator_parameter_count(vits_disc):
    count = sum(p.numel() for p in vits_disc.parameters())
    assert abs(count - VITS_DISCRIMINATOR_PARAMS) / VITS_DISCRIMINATOR_PARAMS < 0.02


def test_vits_discriminator_shapes_and_batch_independence(vits_disc):
    y, y_hat = torch.randn(2, 1, 8192), torch.randn(2, 1, 8192)
    with torch.no_grad():
        real, fake, real_fmaps, fake_fmaps = vits_disc(y, y_hat)
        alone, alone_fmaps = vits_disc.discriminators[3](y_hat)  # period 5 on the fake batch alone
    assert len(real) == len(fake) == len(real_fmaps) == len(fake_fmaps) == 6
    expected = [8192 // 4**4] + [_period_score_len(8192, p) for p in (2, 3, 5, 7, 11)]
    assert [s.shape for s in real] == [torch.Size([2, n]) for n in expected]
    assert [s.shape for s in fake] == [s.shape for s in real]
    assert [len(f) for f in real_fmaps] == [7, 6, 6, 6, 6, 6]
    assert real_fmaps[0][0].shape == (2, 16, 8192)
    assert real_fmaps[1][0].shape == (2, 32, _conv_out(4096, 5, 3, 2), 2)
    for f_real, f_fake in zip(real_fmaps[2], fake_fmaps[2]):
        assert f_real.shape == f_fake.shape
    torch.testing.assert_close(fake[3], alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fake_fmaps[3][-1], alone_fmaps[-1], rtol=1e-4, atol=1e-5)


def test_judging_for_the_generator_gives_the_same_gradients_without_weight_gradients():
    # the generator step judges real slices without gradient and fake ones with a gradient
    # to the input only: the generator's gradient must equal judging both as one batch
    torch.manual_seed(0)
    disc = MultiPeriodDiscriminator(periods=(2, 3), num_scales=2).train()
    y = torch.randn(2, 1, 4096)
    y_hat = torch.randn(2, 1, 4096, requires_grad=True)

    def generator_losses(fake_scores, real_fmaps, fake_fmaps):
        return generator_loss(fake_scores)[0] + 2 * feature_matching_loss(real_fmaps, fake_fmaps)

    state = {k: v.clone() for k, v in disc.state_dict().items()}  # spectral norm iterates in training
    _, fake, real_fmaps, fake_fmaps = disc(y, y_hat)
    generator_losses(fake, real_fmaps, fake_fmaps).backward()
    expected, y_hat.grad = y_hat.grad.clone(), None
    assert all(p.grad is not None for p in disc.parameters())  # forward() computes them, wasted
    disc.zero_grad(set_to_none=True)

    disc.load_state_dict(state)
    fake, real_fmaps, fake_fmaps = disc.judge_for_generator(y, y_hat)
    assert all(not f.requires_grad for maps in real_fmaps for f in maps)
    generator_losses(fake, real_fmaps, fake_fmaps).backward()
    torch.testing.assert_close(y_hat.grad, expected, rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.requires_grad for p in disc.parameters())  # restored for the discriminator step


def test_hifigan_multi_scale_option():
    disc = MultiPeriodDiscriminator(periods=(2,), num_scales=3)
    assert len(disc.discriminators) == 4
    first, second = disc.discriminators[0], disc.discriminators[1]
    assert "spectral" in type(first.convs[0].parametrizations.weight[0]).__name__.lower()
    assert "spectral" not in type(second.convs[0].parametrizations.weight[0]).__name__.lower()
    real, fake, _, _ = disc(torch.randn(1, 1, 4096), torch.randn(1, 1, 4096))
    # the second and third scales see the waveform pooled (stride 2) once and twice
    assert [s.shape[1] for s in fake[:3]] == [16, 9, 5]


def test_period_discriminator_pads_to_period():
    disc = PeriodDiscriminator(period=7)
    score, fmaps = disc(torch.randn(1, 1, 700 + 3))
    assert score.shape == (1, _period_score_len(703, 7))
    assert fmaps[0].shape[-1] == 7


def test_scale_discriminator_layers():
    disc = ScaleDiscriminator()
    groups = [conv.groups for conv in disc.convs]
    assert groups == [1, 4, 16, 64, 256, 1]
    assert disc.conv_post.out_channels == 1


def test_discriminator_bad_input():
    disc = MultiPeriodDiscriminator(periods=(2,))
    with pytest.raises(DataError, match="differ in shape"):
        disc(torch.randn(1, 1, 1024), torch.randn(1, 1, 512))
    with pytest.raises(DataError, match=r"\[B, 1, T\]"):
        disc(torch.randn(1, 2, 1024), torch.randn(1, 2, 1024))
    with pytest.raises(ConfigError):
        PeriodDiscriminator(period=0)


# --- adversarial and feature-matching losses ---------------------------------


def test_least_squares_losses():
    real = [torch.ones(2, 5), torch.ones(2, 3)]
    fake = [torch.zeros(2, 5), torch.zeros(2, 3)]
    loss, real_terms, fake_terms = discriminator_loss(real, fake)
    assert loss.item() == 0.0 and all(t.item() == 0.0 for t in real_terms + fake_terms)
    gen, gen_terms = generator_loss(fake)
    assert gen.item() == pytest.approx(2.0) and [t.item() for t in gen_terms] == [1.0, 1.0]
    # a hand example: D(y) = 0.5 everywhere, D(y_hat) = [1, 3]
    loss, real_terms, fake_terms = discriminator_loss([torch.full((1, 2), 0.5)], [torch.tensor([[1.0, 3.0]])])
    assert real_terms[0].item() == pytest.approx(0.25)
    assert fake_terms[0].item() == pytest.approx(5.0)
    assert loss.item() == pytest.approx(5.25)
    out = VITSDiscriminatorLoss()([torch.full((1, 2), 0.5)], [torch.tensor([[1.0, 3.0]])])
    assert sorted(out) == ["fake_0", "loss", "real_0"] and out["loss"].item() == pytest.approx(5.25)


def test_feature_matching_loss():
    maps = [[torch.randn(2, 4, 8), torch.randn(2, 3, 5, 2)], [torch.randn(2, 6)]]
    assert feature_matching_loss(maps, [[m.clone() for m in d] for d in maps]).item() == 0.0
    real = [[torch.zeros(1, 2, 2)], [torch.zeros(1, 4)]]
    fake = [[torch.tensor([[[1.0, -1.0], [2.0, 0.0]]], requires_grad=True)], [torch.full((1, 4), 0.5)]]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1.0 + 0.5)
    real_leaf = torch.zeros(1, 2, 2, requires_grad=True)
    feature_matching_loss([[real_leaf]], [fake[0]]).backward()
    assert real_leaf.grad is None and fake[0][0].grad is not None  # real maps are detached
    with pytest.raises(DataError):
        feature_matching_loss(real, fake[:1])
    with pytest.raises(DataError, match="differ in shape"):
        feature_matching_loss([[torch.zeros(1, 3)]], [[torch.zeros(1, 4)]])


def test_feature_matching_loss_equals_the_sum_of_per_map_means():
    """All maps in one multi-tensor pass: the same value and gradients as one mean |real - fake| per map,
    and mixed precisions compare in float32."""
    torch.manual_seed(0)
    real = [[torch.randn(2, 4, 10 + i, j + 1) for j in range(3)] for i in range(3)]
    fake = [[torch.randn_like(t).requires_grad_() for t in maps] for maps in real]
    flat = [t for maps in fake for t in maps]
    loss = feature_matching_loss(real, fake)
    want = sum(torch.mean(torch.abs(r - g)) for rs, gs in zip(real, fake) for r, g in zip(rs, gs))
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(torch.autograd.grad(loss, flat), torch.autograd.grad(want, flat))
    mixed = feature_matching_loss([[t.bfloat16() for t in maps] for maps in real], fake)
    assert mixed.dtype == torch.float32 and abs(mixed.item() - want.item()) < 1e-2


# --- KL ------------------------------------------------------------------------


def test_kl_hand_example_and_mask():
    # one channel, two frames; the second frame is padding with garbage values
    z_p = torch.tensor([[[2.0, 100.0]]])
    m_p = torch.tensor([[[0.0, -50.0]]])
    logs_p = torch.tensor([[[math.log(2.0), 9.0]]])
    logs_q = torch.tensor([[[0.0, -9.0]]])
    mask = torch.tensor([[[1.0, 0.0]]])
    # log 2 - 0 - 0.5 + 0.5 * 2^2 * exp(-2 log 2) = log 2
    assert kl_loss(z_p, logs_q, m_p, logs_p, mask).item() == pytest.approx(math.log(2.0), rel=1e-6)
    # at the prior mean with equal scales the one-sample estimate is -0.5 per element;
    # the denominator counts frames, not channels
    zeros = torch.zeros(2, 3, 4)
    assert kl_loss(zeros, zeros, zeros, zeros, torch.ones(2, 1, 4)).item() == pytest.approx(-1.5)
    # an all-padding batch gives 0, not NaN
    assert kl_loss(zeros, zeros, zeros, zeros, torch.zeros(2, 1, 4)).item() == 0.0


def test_kl_expectation_matches_closed_form():
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    m_q, s_q, m_p, s_p = 0.3, 0.8, -0.2, 1.5
    z = m_q + s_q * torch.randn(1, 1, n, generator=gen)  # z_p ~ q (the flow is the identity here)
    full = torch.ones(1, 1, n)

    def same(v):
        return torch.full((1, 1, n), v)

    estimate = kl_loss(z, same(math.log(s_q)), same(m_p), same(math.log(s_p)), full).item()
    closed = math.log(s_p / s_q) + (s_q**2 + (m_q - m_p) ** 2) / (2 * s_p**2) - 0.5
    assert estimate == pytest.approx(closed, abs=0.01)
    # identical distributions: KL 0 in expectation
    z_same = m_p + s_p * torch.randn(1, 1, n, generator=gen)
    identical = kl_loss(z_same, same(math.log(s_p)), same(m_p), same(math.log(s_p)), full).item()
    assert identical == pytest.approx(0.0, abs=0.01)


# --- durations and the generator total ----------------------------------------


def test_duration_losses():
    x_mask = torch.tensor([[[1.0, 1.0, 1.0]], [[1.0, 0.0, 0.0]]])
    assert stochastic_duration_loss(torch.tensor([6.0, 2.0]), x_mask).item() == pytest.approx(2.0)
    w = torch.tensor([[[1.0, 2.0, 4.0]], [[3.0, 0.0, 0.0]]])
    pred = torch.log(w + 1e-6)
    pred[0, 0, 0] += 2.0  # one error of 2 on a valid token
    pred[1, 0, 2] = 50.0  # an error on padding is ignored
    assert log_duration_loss(pred, w, x_mask).item() == pytest.approx(4.0 / 4.0, rel=1e-5)
    assert log_duration_loss(pred, w, torch.zeros_like(x_mask)).item() == 0.0


def _generator_inputs():
    torch.manual_seed(0)
    z = torch.randn(2, 4, 6)
    return dict(
        mel_real=torch.zeros(2, 8, 6),
        mel_fake=torch.full((2, 8, 6), 0.5),
        fake_scores=[torch.zeros(2, 3), torch.ones(2, 5)],
        real_fmaps=[[torch.zeros(2, 3)], [torch.zeros(2, 5)]],
        fake_fmaps=[[torch.ones(2, 3)], [torch.zeros(2, 5)]],
        z_p=z,
        logs_q=torch.zeros(2, 4, 6),
        m_p=z,
        logs_p=torch.zeros(2, 4, 6),
        z_mask=torch.ones(2, 1, 6),
        x_mask=torch.ones(2, 1, 3),
    )


def test_generator_loss_weights_and_terms():
    inputs = _generator_inputs()
    out = VITSGeneratorLoss()(**inputs, duration_nll=torch.tensor([3.0, 3.0]))
    assert out["adv"].item() == pytest.approx(1.0)
    assert out["adv_0"].item() == pytest.approx(1.0) and out["adv_1"].item() == 0.0
    assert out["fm"].item() == pytest.approx(1.0)
    assert out["mel"].item() == pytest.approx(0.5)
    assert out["kl"].item() == pytest.approx(-0.5 * 4)  # 4 channels at the prior mean
    assert out["dur"].item() == pytest.approx(1.0)
    expected = 1.0 * 1.0 + 2.0 * 1.0 + 45.0 * 0.5 + 1.0 * -2.0 + 1.0 * 1.0
    assert out["loss"].item() == pytest.approx(expected)
    custom = VITSGeneratorLoss(c_mel=1.0, c_kl=0.0, c_fm=0.0, c_dur=2.0, c_adv=0.0)
    assert custom(**inputs, duration_nll=torch.tensor([3.0, 3.0]))["loss"].item() == pytest.approx(0.5 + 2.0)


def test_generator_loss_deterministic_durations_and_errors():
    inputs = _generator_inputs()
    w = torch.ones(2, 1, 3)
    out = VITSGeneratorLoss()(**inputs, log_duration_pred=torch.log(w + 1e-6), durations=w)
    assert out["dur"].item() == 0.0
    with pytest.raises(ConfigError):
        VITSGeneratorLoss()(**inputs)
    with pytest.raises(ConfigError):
        VITSGeneratorLoss()(**inputs, duration_nll=torch.ones(2), log_duration_pred=w, durations=w)
    with pytest.raises(ConfigError):
        VITSGeneratorLoss()(**inputs, log_duration_pred=w)


def test_losses_are_float32_from_half_inputs():
    half = [torch.zeros(2, 3, dtype=torch.bfloat16)]
    assert discriminator_loss(half, half)[0].dtype == torch.float32
    assert generator_loss(half)[0].dtype == torch.float32
    z = torch.zeros(1, 2, 3, dtype=torch.bfloat16)
    assert kl_loss(z, z, z, z, torch.ones(1, 1, 3, dtype=torch.bfloat16)).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert MaskedL1()(torch.ones(1, 2, 2, dtype=torch.bfloat16), torch.zeros(1, 2, 2)).dtype == torch.float32


# --- MaskedL1 -------------------------------------------------------------------


def test_masked_l1_padding_equals_unpadded():
    torch.manual_seed(0)
    lengths = torch.tensor([5, 2, 7])
    pred, target = torch.randn(3, 7, 4), torch.randn(3, 7, 4)
    pred_pad, target_pad = pred.clone(), target.clone()
    for b, n in enumerate(lengths.tolist()):
        pred_pad[b, n:] = 1e3  # padding garbage must not matter
    expected = torch.cat([(pred[b, :n] - target[b, :n]).abs().flatten() for b, n in enumerate(lengths.tolist())])
    loss = MaskedL1()(pred_pad, target_pad, lengths)
    torch.testing.assert_close(loss, expected.mean())
    torch.testing.assert_close(MaskedL1()(pred, target), (pred - target).abs().mean())


def test_masked_l1_all_padding_item_and_batch():
    pred = torch.zeros(2, 4, 3, requires_grad=True)
    target = torch.ones(2, 4, 3)
    target[0] = 5.0  # item 0 is all padding: its error must not count
    loss = MaskedL1()(pred, target, torch.tensor([0, 2]))
    assert loss.item() == pytest.approx(1.0)
    empty = MaskedL1()(pred, target, torch.tensor([0, 0]))
    assert empty.item() == 0.0
    empty.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() == 0


def test_masked_l1_bad_input():
    x = torch.zeros(2, 4, 3)
    with pytest.raises(DataError, match="differ in shape"):
        MaskedL1()(x, torch.zeros(2, 4, 2), torch.tensor([1, 2]))
    with pytest.raises(DataError, match="lengths"):
        MaskedL1()(x, x, torch.tensor([1, 5]))
    with pytest.raises(DataError, match="lengths"):
        MaskedL1()(x, x, torch.tensor([0.5, 1.0]))  # relative lengths are converted at the Brain
    with pytest.raises(DataError, match="lengths"):
        MaskedL1()(x, x, torch.tensor([1]))
