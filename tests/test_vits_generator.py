"""Tests of the VITS generator bricks (semtts.lobes.vits) and the model hparams."""

import math
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize
from hyperpyyaml import load_hyperpyyaml

from semtts.errors import ConfigError, DataError
from semtts.lobes.vits.alignment import durations_to_path, expand_by_path, prior_log_likelihood
from semtts.lobes.vits.attention import RelativeMultiHeadAttention, relative_pairs
from semtts.lobes.vits.duration import DeterministicDurationPredictor, StochasticDurationPredictor
from semtts.lobes.vits.duration_flows import ConvFlow, ElementwiseAffine, LogFlow
from semtts.lobes.vits.flow import ResidualCouplingFlow
from semtts.lobes.vits.hifigan import HiFiGANGenerator
from semtts.lobes.vits.masks import lengths_to_mask
from semtts.lobes.vits.posterior_encoder import PosteriorEncoder
from semtts.lobes.vits.segments import random_segments, slice_segments
from semtts.lobes.vits.speaker import SpeakerConditioner
from semtts.lobes.vits.spline import rational_quadratic_spline
from semtts.lobes.vits.synthesizer import VITSSynthesizer
from semtts.lobes.vits.text_encoder import TextEncoder
from semtts.lobes.vits.wavenet import WaveNet

ROOT = Path(__file__).resolve().parents[1]
SPEC_CHANNELS = 9
HOP = 8


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_synthesizer(**overrides) -> VITSSynthesizer:
    """A very small synthesizer (hop 8) for fast tests."""
    config = dict(
        n_vocab=11, spec_channels=SPEC_CHANNELS, segment_frames=4, inter_channels=4,
        hidden_channels=8, filter_channels=16, n_heads=2, n_layers=2, kernel_size=3,
        p_dropout=0.1, resblock="2", resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        upsample_rates=[4, 2], upsample_initial_channel=16, upsample_kernel_sizes=[8, 4],
        posterior_n_layers=2, flow_n_layers=2, n_flows=2, sdp_filter_channels=8, sdp_n_flows=2,
        dp_filter_channels=8, gin_channels=6, hop_length=HOP,
    )
    config.update(overrides)
    return VITSSynthesizer(**config)


def batch(n_items: int = 3):
    token_lengths = torch.tensor([6, 4, 2][:n_items])
    spec_lengths = torch.tensor([20, 13, 5][:n_items])
    tokens = torch.randint(0, 11, (n_items, 6))
    spec = torch.rand(n_items, SPEC_CHANNELS, 20)
    return tokens, token_lengths, spec, spec_lengths


def randomize(module: torch.nn.Module) -> None:
    """Give zero-initialised output layers random weights (so flows are not the identity)."""
    with torch.no_grad():
        for param in module.parameters():
            if param.abs().sum() == 0:
                param.normal_(0.0, 0.3)


# --------------------------------------------------------------------------- masks, segments


def test_lengths_to_mask_and_segments():
    mask = lengths_to_mask(torch.tensor([3, 0, 5]))
    assert mask.shape == (3, 1, 5) and mask.sum(-1).flatten().tolist() == [3.0, 0.0, 5.0]
    x = torch.arange(24.0).view(2, 1, 12)
    assert slice_segments(x, torch.tensor([2, 10]), 3).tolist() == [[[2, 3, 4]], [[22, 23, 0]]]
    for _ in range(20):
        segments, starts = random_segments(x, torch.tensor([12, 5]), 4)
        assert segments.shape == (2, 1, 4)
        assert 0 <= starts[0] <= 8 and 0 <= starts[1] <= 1
        assert torch.equal(segments, slice_segments(x, starts, 4))


# --------------------------------------------------------------------------- attention, text encoder


def naive_relative_attention(attn: RelativeMultiHeadAttention, x, mask):
    """Loop-by-loop reference of windowed relative attention, for one unmasked item."""
    n_heads, d_head, window = attn.n_heads, attn.head_channels, attn.window_size
    steps = x.size(2)
    q = attn.query(x)[0].view(n_heads, d_head, steps)
    k = attn.key(x)[0].view(n_heads, d_head, steps)
    v = attn.value(x)[0].view(n_heads, d_head, steps)
    e_k, e_v = attn.rel_key[0], attn.rel_value[0]
    out = torch.zeros(n_heads, d_head, steps)
    for h in range(n_heads):
        for i in range(steps):
            logits = torch.full((steps,), -1e4)
            for j in range(steps):
                if mask[0, 0, i] and mask[0, 0, j]:
                    logit = q[h, :, i] @ k[h, :, j]
                    if abs(j - i) <= window:
                        logit = logit + q[h, :, i] @ e_k[j - i + window]
                    logits[j] = logit / math.sqrt(d_head)
            weights = torch.softmax(logits, 0)
            for j in range(steps):
                rel = e_v[j - i + window] if abs(j - i) <= window else 0.0
                out[h, :, i] += weights[j] * (v[h, :, j] + rel)
    return attn.out(out.reshape(1, n_heads * d_head, steps))


def test_relative_attention_matches_reference():
    attn = RelativeMultiHeadAttention(8, n_heads=2, window_size=2).eval()
    x = torch.randn(1, 8, 7)
    mask = torch.tensor([[[1.0, 1, 1, 1, 1, 0, 0]]])
    got = attn(x, mask.unsqueeze(2) * mask.unsqueeze(-1))
    want = naive_relative_attention(attn, x, mask)
    assert torch.allclose(got[..., :5], want[..., :5], atol=1e-5)
    shared = attn(x, mask.unsqueeze(2) * mask.unsqueeze(-1), relative_pairs(7, 2))  # as the encoder passes it
    assert torch.equal(shared, got)
    with pytest.raises(ValueError, match="do not fit length 7 and window 2"):
        attn(x, mask.unsqueeze(2) * mask.unsqueeze(-1), relative_pairs(7, 3))
    with pytest.raises(ConfigError):
        RelativeMultiHeadAttention(9, n_heads=2)


def test_text_encoder_shapes_and_padding_invariance():
    enc = TextEncoder(11, 4, 8, 16, n_heads=2, n_layers=2, kernel_size=3, p_dropout=0.1).eval()
    tokens = torch.randint(0, 11, (2, 9))
    out = enc(tokens, torch.tensor([9, 5]))
    assert out.hidden.shape == (2, 8, 9) and out.m_p.shape == out.logs_p.shape == (2, 4, 9)
    assert out.mask.shape == (2, 1, 9)
    assert out.hidden[1, :, 5:].abs().sum() == 0 and out.m_p[1, :, 5:].abs().sum() == 0
    alone = enc(tokens[1:, :5], torch.tensor([5]))
    assert torch.allclose(alone.hidden, out.hidden[1:, :, :5], atol=1e-5)
    assert torch.allclose(alone.logs_p, out.logs_p[1:, :, :5], atol=1e-5)


# --------------------------------------------------------------------------- WaveNet, posterior, flow


def test_wavenet_and_posterior_shapes():
    g = torch.randn(2, 3, 1)
    mask = lengths_to_mask(torch.tensor([10, 6]))
    y = WaveNet(8, 5, 2, n_layers=3, gin_channels=3)(torch.randn(2, 8, 10), mask, g=g)
    assert y.shape == (2, 8, 10) and y[1, :, 6:].abs().sum() == 0
    post = PosteriorEncoder(SPEC_CHANNELS, 4, 8, 5, 1, 3, gin_channels=3)
    out = post(torch.rand(2, SPEC_CHANNELS, 10), torch.tensor([10, 6]), g=g)
    assert out.z.shape == out.m_q.shape == out.logs_q.shape == (2, 4, 10)
    assert out.z[1, :, 6:].abs().sum() == 0


def test_flow_is_reversible():
    flow = ResidualCouplingFlow(4, 8, 5, 1, n_layers=2, n_flows=4, gin_channels=3)
    randomize(flow)
    z = torch.randn(2, 4, 12)
    mask = lengths_to_mask(torch.tensor([12, 7]))
    z = z * mask
    g = torch.randn(2, 3, 1)
    z_p = flow(z, mask, g=g)
    assert (z_p - z).abs().max() > 1e-2  # not the identity
    assert torch.allclose(flow(z_p, mask, g=g, reverse=True), z, atol=1e-5)


# --------------------------------------------------------------------------- duration flows, SDP


def test_spline_inverse_and_log_derivative():
    x = torch.linspace(-6.0, 6.0, 50, requires_grad=True)
    params = [torch.randn(5).expand(50, 5), torch.randn(5).expand(50, 5), torch.randn(4).expand(50, 4)]
    y, logdet = rational_quadratic_spline(x, *params, tail_bound=5.0)
    (dy,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(logdet, torch.log(dy), atol=1e-4)
    assert torch.all(torch.diff(y) > 0)
    assert torch.allclose(y[x.abs() > 5], x[x.abs() > 5])  # identity tails
    x_back, logdet_back = rational_quadratic_spline(y.detach(), *params, inverse=True)
    assert torch.allclose(x_back, x.detach(), atol=1e-4)
    assert torch.allclose(logdet_back, -logdet.detach(), atol=1e-4)


@pytest.mark.parametrize("flow", [ElementwiseAffine(2), LogFlow(), ConvFlow(2, 8, 3, n_layers=2)])
def test_duration_flows_logdet_and_reverse(flow):
    randomize(flow)
    with torch.no_grad():
        for param in flow.parameters():
            param.add_(0.2 * torch.randn_like(param))
    x = torch.rand(1, 2, 4) + 0.5
    mask = torch.ones(1, 1, 4)
    g = torch.randn(1, 8, 4)
    y, logdet = flow(x, mask, g=g)
    jacobian = torch.autograd.functional.jacobian(lambda t: flow(t, mask, g=g)[0], x).reshape(8, 8)
    assert torch.allclose(logdet, torch.linalg.slogdet(jacobian)[1], atol=1e-4)
    x_back, logdet_back = flow(y, mask, g=g, reverse=True)
    assert torch.allclose(x_back, x, atol=1e-4) and torch.allclose(logdet_back, -logdet, atol=1e-4)


def test_stochastic_duration_predictor_loss_and_sampling():
    sdp = StochasticDurationPredictor(8, 8, 3, p_dropout=0.5, n_flows=2, gin_channels=3)
    randomize(sdp)
    x = torch.randn(2, 8, 6, requires_grad=True)
    mask = lengths_to_mask(torch.tensor([6, 4]))
    g = torch.randn(2, 3, 1)
    durations = torch.randint(1, 7, (2, 1, 6)).float() * mask
    nll = sdp.loss(x, mask, durations, g=g)
    assert nll.shape == (2,) and torch.isfinite(nll).all()
    nll.sum().backward()
    assert x.grad is None  # the predictor does not train the text encoder
    for name, param in sdp.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert sum(p.grad.abs().sum() for p in sdp.parameters()) > 0

    sdp.eval()
    log_w = sdp.log_durations(x, mask, g=g, noise_scale=0.8)
    assert log_w.shape == (2, 1, 6) and log_w[1, :, 4:].abs().sum() == 0
    # the skipped first coupling only changes the discarded channel
    torch.manual_seed(1)
    skipped = sdp.log_durations(x, mask, g=g)
    torch.manual_seed(1)
    h = sdp._condition(x, mask, g)
    z = torch.randn(2, 2, 6)
    for flow in reversed(sdp.flows):
        z, _ = flow(z, mask, g=h, reverse=True)
    assert torch.allclose(skipped, z[:, :1] * mask, atol=1e-5)


def test_deterministic_duration_predictor():
    dp = DeterministicDurationPredictor(8, 16, 3, 0.5, gin_channels=3)
    x, mask, g = torch.randn(2, 8, 5), lengths_to_mask(torch.tensor([5, 3])), torch.randn(2, 3, 1)
    loss = dp.loss(x, mask, torch.full((2, 1, 5), 3.0) * mask, g=g)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert dp.conv1.weight.grad is not None and dp.cond.weight.grad is not None


# --------------------------------------------------------------------------- HiFi-GAN


@pytest.mark.parametrize("resblock,kernels,dilations", [("1", [3, 5], [[1, 3], [1, 3]]), ("2", [3], [[1, 3]])])
def test_hifigan_shapes_and_weight_norm_removal(resblock, kernels, dilations):
    gen = HiFiGANGenerator(4, resblock, kernels, dilations, [4, 2], 16, [8, 4], gin_channels=3).eval()
    z, g = torch.randn(2, 4, 6), torch.randn(2, 3, 1)
    wav = gen(z, g=g)
    assert wav.shape == (2, 1, 48) and wav.abs().max() <= 1
    assert any("original0" in name for name, _ in gen.named_parameters())  # weight norm: g and v
    gen.remove_weight_norm()
    assert not any("original" in name for name, _ in gen.named_parameters())
    assert torch.allclose(gen(z, g=g), wav, atol=1e-5)


def test_hifigan_bad_config():
    with pytest.raises(ConfigError, match="resblock"):
        HiFiGANGenerator(4, "3", [3], [[1]], [4], 8, [8])
    with pytest.raises(ConfigError, match="kernel"):
        HiFiGANGenerator(4, "1", [3], [[1]], [4], 8, [7])


# --------------------------------------------------------------------------- alignment helpers


def test_prior_log_likelihood_matches_direct_and_is_fp32():
    z_p, m_p, logs_p = torch.randn(2, 4, 7), torch.randn(2, 4, 5), 0.3 * torch.randn(2, 4, 5)
    direct = torch.distributions.Normal(m_p.unsqueeze(2), logs_p.exp().unsqueeze(2))
    direct = direct.log_prob(z_p.unsqueeze(3)).sum(1)
    assert torch.allclose(prior_log_likelihood(z_p, m_p, logs_p), direct, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        neg_cent = prior_log_likelihood(z_p.bfloat16(), m_p.bfloat16(), logs_p.bfloat16())
    assert neg_cent.dtype == torch.float32 and neg_cent.shape == (2, 7, 5)


def test_durations_to_path():
    durations = torch.tensor([[2.0, 0.0, 3.0], [1.0, 2.0, 0.0]])
    token_mask = lengths_to_mask(torch.tensor([3, 2]))
    frame_mask = lengths_to_mask(torch.tensor([5, 3]))
    path = durations_to_path(durations, token_mask, frame_mask)
    assert path.shape == (2, 5, 3)
    assert torch.equal(path.sum(1), durations)
    assert path[0].argmax(1).tolist() == [0, 0, 2, 2, 2]
    assert path[1, 3:].sum() == 0
    stats = torch.arange(6.0).view(2, 1, 3)
    assert expand_by_path(stats, path)[1].tolist() == [[3.0, 4.0, 4.0, 0.0, 0.0]]


# --------------------------------------------------------------------------- speakers


def test_speaker_conditioner_modes_and_errors():
    table = SpeakerConditioner(6, n_speakers=3)
    assert table(sid=torch.tensor([2, 0])).shape == (2, 6, 1)
    with pytest.raises(DataError, match="out of range"):
        table(sid=torch.tensor([3]))
    with pytest.raises(DataError, match="sid"):
        table(spk_embed=torch.randn(1, 6))
    proj = SpeakerConditioner(6, spk_embed_dim=5, l2_normalize=True)
    e = torch.randn(2, 5)
    assert torch.allclose(proj(spk_embed=e), proj(spk_embed=10 * e), atol=1e-5)
    with pytest.raises(DataError, match="spk_embed"):
        proj(spk_embed=torch.randn(2, 4))
    with pytest.raises(ConfigError):
        SpeakerConditioner(6, n_speakers=3, spk_embed_dim=5)
    with pytest.raises(ConfigError):
        SpeakerConditioner(6)


# --------------------------------------------------------------------------- synthesizer


def check_training_output(model, out, token_lengths, spec_lengths):
    n_items = token_lengths.numel()
    assert out.waveform.shape == (n_items, 1, model.segment_frames * HOP)
    assert out.duration_loss.shape == (n_items,) and torch.isfinite(out.duration_loss).all()
    assert out.path.shape == (n_items, 20, 6)
    for b in range(n_items):
        valid = out.path[b, : spec_lengths[b], : token_lengths[b]]
        assert torch.equal(valid.sum(1), torch.ones(int(spec_lengths[b])))  # one token per frame
        assert bool(torch.all(valid.sum(0) >= 1))  # every token gets a frame
        assert bool(torch.all(torch.diff(valid.argmax(1)) >= 0))  # monotonic
        assert out.path[b].sum() == spec_lengths[b]
    for name in ("z", "z_p", "m_p", "logs_p", "m_q", "logs_q"):
        assert getattr(out, name).shape == (n_items, 4, 20), name
    assert out.text_hidden.shape == (n_items, 8, 6)
    assert out.token_mask.shape == (n_items, 1, 6) and out.spec_mask.shape == (n_items, 1, 20)
    assert bool(torch.all(out.slice_starts + model.segment_frames <= spec_lengths.clamp_min(4)))


@pytest.mark.parametrize("mode", ["sid", "spk_embed"])
def test_synthesizer_training_pass(mode):
    tokens, token_lengths, spec, spec_lengths = batch()
    if mode == "sid":
        model = tiny_synthesizer(n_speakers=4)
        speaker = dict(sid=torch.tensor([0, 3, 1]))
    else:
        model = tiny_synthesizer(spk_embed_dim=5, spk_embed_l2norm=True)
        speaker = dict(spk_embed=torch.randn(3, 5))
    out = model(tokens, token_lengths, spec, spec_lengths, **speaker)
    check_training_output(model, out, token_lengths, spec_lengths)
    kl = (out.z_p - out.m_p).pow(2) * torch.exp(-2 * out.logs_p) + out.logs_p - out.logs_q
    loss = out.waveform.abs().mean() + out.duration_loss.sum() / out.token_mask.sum()
    (loss + (kl * out.spec_mask).sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"no gradient for {name}"


def test_synthesizer_rejects_bad_batches():
    model = tiny_synthesizer()
    tokens, token_lengths, spec, spec_lengths = batch()
    with pytest.raises(DataError, match="fewer frames than tokens"):
        model(tokens, token_lengths, spec, torch.tensor([20, 13, 1]))
    with pytest.raises(DataError, match="spec"):
        model(tokens, token_lengths, spec[:, :5], spec_lengths)
    with pytest.raises(DataError, match="single-speaker"):
        model(tokens, token_lengths, spec, spec_lengths, sid=torch.tensor([0, 0, 0]))
    with pytest.raises(ConfigError, match="hop_length"):
        tiny_synthesizer(hop_length=256)


@pytest.mark.parametrize("use_sdp", [True, False])
def test_synthesizer_inference_lengths(use_sdp):
    model = tiny_synthesizer(n_speakers=2, use_sdp=use_sdp).eval()
    tokens, token_lengths, _, _ = batch()
    gen = model.infer(tokens, token_lengths, sid=torch.tensor([0, 1, 1]), length_scale=2.0)
    assert gen.durations.shape == (3, 6) and gen.durations.dtype == torch.long
    assert torch.equal(gen.durations[1, 4:], torch.zeros(2, dtype=torch.long))
    assert torch.equal(gen.spec_lengths, gen.durations.sum(1))
    assert torch.equal(gen.wav_lengths, gen.durations.sum(1) * HOP)
    assert gen.waveform.shape == (3, 1, int(gen.wav_lengths.max()))
    assert gen.path.shape == (3, int(gen.spec_lengths.max()), 6)
    assert torch.equal(gen.path.sum(1).long(), gen.durations)

    cut = model.infer(tokens, token_lengths, sid=torch.tensor([0, 1, 1]), max_len=3)
    assert bool(torch.all(cut.spec_lengths <= 3))
    assert torch.equal(cut.wav_lengths, cut.durations.sum(1) * HOP)
    assert cut.waveform.shape[-1] == int(cut.wav_lengths.max())


def test_voice_conversion_and_weight_norm_removal():
    model = tiny_synthesizer(n_speakers=2).eval()
    _, _, spec, spec_lengths = batch(2)
    g_src = model.speaker_condition(sid=torch.tensor([0, 1]))
    g_tgt = model.speaker_condition(sid=torch.tensor([1, 0]))
    assert model.voice_conversion(spec, spec_lengths, g_src, g_tgt).shape == (2, 1, 20 * HOP)
    tokens, token_lengths, _, _ = batch(2)
    torch.manual_seed(3)
    before = model.infer(tokens, token_lengths, sid=torch.tensor([0, 1]))
    assert any(parametrize.is_parametrized(m) for m in model.modules())
    model.remove_weight_norm()
    assert not any(parametrize.is_parametrized(m) for m in model.modules())  # folded into plain weights
    assert not any("original0" in name or "weight_g" in name for name, _ in model.named_parameters())
    torch.manual_seed(3)
    after = model.infer(tokens, token_lengths, sid=torch.tensor([0, 1]))
    assert torch.allclose(before.waveform, after.waveform, atol=1e-5)
    with pytest.raises(ConfigError):
        tiny_synthesizer().voice_conversion(spec, spec_lengths, g_src, g_tgt)


# --------------------------------------------------------------------------- hparams


def load_model_yaml(name: str, overrides: dict | None = None) -> dict:
    with open(ROOT / "hparams" / "model" / name) as handle:
        return load_hyperpyyaml(handle, overrides or {})


def test_base_yaml_parameter_count_matches_vits():
    hparams = load_model_yaml("vits_base.yaml")
    model = hparams["generator"]
    assert model.speaker is None and model.hop_length == 256 and model.segment_frames == 32
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 36.3e6) / 36.3e6 < 0.02, n_params


def test_tiny_yaml_train_step_and_spectrogram_settings():
    hparams = load_model_yaml("vits_tiny.yaml", {"n_speakers": 3})
    model, spectrogram = hparams["generator"], hparams["spectrogram"]
    assert model.spec_channels == spectrogram.n_freqs and model.hop_length == spectrogram.hop_length
    token_lengths, spec_lengths = torch.tensor([7, 5]), torch.tensor([30, 22])
    out = model(
        torch.randint(0, 178, (2, 7)), token_lengths, torch.rand(2, model.spec_channels, 30),
        spec_lengths, sid=torch.tensor([0, 2]),
    )
    (out.waveform.abs().mean() + out.duration_loss.sum()).backward()
    assert out.waveform.shape == (2, 1, hparams["segment_size"])
