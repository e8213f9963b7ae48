"""Channels-last 1-D convolutions (semtts.conv_layout): same results and
gradients as the default layout, activations kept in [B, L, C] memory."""

import copy

import torch
from torch.nn.utils.parametrizations import weight_norm

from semtts.conv_layout import use_channels_last_conv1d
from semtts.lobes.vits.discriminators import MultiPeriodDiscriminator
from semtts.lobes.vits.hifigan import HiFiGANGenerator


def test_transposed_and_weight_normed_convolutions():
    torch.manual_seed(0)
    up = weight_norm(torch.nn.ConvTranspose1d(6, 4, 16, stride=8, padding=4))
    reflect = torch.nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect")
    model = torch.nn.Sequential(up, torch.nn.LeakyReLU(0.1), reflect)
    switched = copy.deepcopy(model)
    assert use_channels_last_conv1d(switched) == 1  # the reflect-padded one is left alone
    x = torch.randn(2, 6, 20)
    torch.testing.assert_close(switched[0](x), model[0](x), rtol=1e-5, atol=1e-6)
    assert switched[0](x).stride()[1] == 1  # channels innermost
    torch.testing.assert_close(switched(x), model(x), rtol=1e-5, atol=1e-6)


def test_unbatched_inputs_as_nn_conv1d_takes_them():
    torch.manual_seed(1)
    for layer in (torch.nn.Conv1d(4, 6, 3, padding=1), torch.nn.ConvTranspose1d(4, 6, 4, stride=2, padding=1)):
        x = torch.randn(4, 9)
        expected = layer(x)
        use_channels_last_conv1d(layer)
        got = layer(x)
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6)


def test_decoder_and_discriminator_outputs_and_gradients_match():
    torch.manual_seed(0)
    decoder = HiFiGANGenerator(in_channels=8, resblock="1", resblock_kernel_sizes=[3, 5],
                               resblock_dilation_sizes=[[1, 3], [1, 3]], upsample_rates=[4, 4],
                               upsample_initial_channel=32, upsample_kernel_sizes=[8, 8], gin_channels=4)
    disc = MultiPeriodDiscriminator(periods=(2,))
    fast_decoder, fast_disc = copy.deepcopy(decoder), copy.deepcopy(disc)
    assert use_channels_last_conv1d(fast_decoder) > 10 and use_channels_last_conv1d(fast_disc) == 7
    z, g = torch.randn(2, 8, 12), torch.randn(2, 4, 1)
    outputs = []
    for dec, dis in ((decoder, disc), (fast_decoder, fast_disc)):
        wav = dec(z, g=g)
        scores, fmaps = dis.judge(wav)
        sum(s.pow(2).mean() for s in scores).backward()
        outputs.append((wav, scores, [p.grad for p in dec.parameters()], [p.grad for p in dis.parameters()]))
    (wav, scores, dec_grads, dis_grads), (fast_wav, fast_scores, fast_dec_grads, fast_dis_grads) = outputs
    torch.testing.assert_close(fast_wav, wav, rtol=1e-4, atol=1e-6)
    for fast, slow in zip(fast_scores, scores):
        torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    for fast, slow in zip(fast_dec_grads + fast_dis_grads, dec_grads + dis_grads):
        torch.testing.assert_close(fast, slow, rtol=1e-3, atol=1e-5)
