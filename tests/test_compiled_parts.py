"""``--compile``: the parts it compiles (semtts.compiled_parts) and the opaque
convolutions that let the variable-length parts compile once for every length
(semtts.lobes.vits.opaque_conv)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semtts.compiled_parts import DYNAMIC_SHAPE_PARTS, compile_parts, compiled_graph_count
from semtts.errors import ConfigError
from semtts.lobes.vits.discriminators import MultiPeriodDiscriminator
from semtts.lobes.vits.hifigan import HiFiGANGenerator
from semtts.lobes.vits.opaque_conv import Conv1d, conv1d
from tests.test_vits_generator import SPEC_CHANNELS, randomize, tiny_synthesizer


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch.manual_seed(0)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_parts_compiles_judge_and_decoder_in_place():
    disc = MultiPeriodDiscriminator(periods=(2,), num_scales=1)
    generator = nn.Module()
    generator.decoder = HiFiGANGenerator(4, resblock="2", resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]],
                                         upsample_rates=[4], upsample_initial_channel=8, upsample_kernel_sizes=[8])
    y, z = torch.randn(2, 1, 1024), torch.randn(2, 4, 6)
    expected, wav = disc.judge(y), generator.decoder(z)
    keys = {name for name, _ in disc.state_dict().items()}
    assert compile_parts(generator, disc, ["discriminator", "decoder"], {"backend": "eager"}) == [
        "discriminator", "decoder"]
    assert hasattr(disc.judge, "_torchdynamo_orig_callable") and generator.decoder._compiled_call_impl is not None
    assert {name for name, _ in disc.state_dict().items()} == keys  # in place: checkpoints keep their keys
    for got, want in zip(disc.judge(y)[0], expected[0]):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(generator.decoder(z), wav)
    with pytest.raises(ConfigError, match="--compile_module_keys: alignment cannot be compiled"):
        compile_parts(generator, disc, ["alignment"], {})


def test_fixed_length_parts_compile_at_most_twice_over_batch_sizes():
    """Batches by total duration change the batch size: the judge and the decoder compile once static and
    once with a symbolic batch size, not once per size (dynamo's recompile limit would then run them eagerly)."""
    disc = MultiPeriodDiscriminator(periods=(2,), num_scales=1)
    generator = nn.Module()
    generator.decoder = HiFiGANGenerator(4, resblock="2", resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]],
                                         upsample_rates=[4], upsample_initial_channel=8, upsample_kernel_sizes=[8])
    compile_parts(generator, disc, ["discriminator", "decoder"], {"backend": "eager", "dynamic": False})
    before = compiled_graph_count()
    for batch in (3, 5, 6, 7, 9, 10):
        disc.judge(torch.randn(batch, 1, 1024))
        generator.decoder(torch.randn(batch, 4, 6))
    assert compiled_graph_count() - before == 4


@pytest.mark.parametrize("bias, padding, dilation, groups", [(True, 1, 1, 1), (False, 0, 1, 1), (True, 4, 2, 4),
                                                             (True, 0, 3, 1)])
def test_opaque_conv_operators_pass_opcheck(bias, padding, dilation, groups):
    """Meta functions, autograd registration and tracing of semtts::conv1d agree with running it."""
    x = torch.randn(2, 4, 11, requires_grad=True)
    weight = torch.randn(6 if groups == 1 else 4, 4 // groups, 3, requires_grad=True)
    b = torch.randn(weight.size(0), requires_grad=True) if bias else None
    torch.library.opcheck(torch.ops.semtts.conv1d.default, (x, weight, b, padding, dilation, groups))
    y = torch.ops.semtts.conv1d(x, weight, b, padding, dilation, groups)
    torch.testing.assert_close(y, F.conv1d(x, weight, b, padding=padding, dilation=dilation, groups=groups))
    grads = torch.autograd.grad(y.square().sum(), [x, weight] + ([b] if bias else []))
    want = torch.autograd.grad(F.conv1d(x, weight, b, padding=padding, dilation=dilation, groups=groups)
                               .square().sum(), [x, weight] + ([b] if bias else []))
    for got, expected in zip(grads, want):
        torch.testing.assert_close(got, expected)


def test_opaque_conv1d_casts_as_autocast_would(monkeypatch):
    # inside a compile trace autocast does not reach the custom operator: conv1d casts as autocast would,
    # the lower-precision type for float32, nothing for float64
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for dtype in (torch.float32, torch.float64):
        x, w = torch.randn(2, 3, 8, dtype=dtype), torch.randn(5, 3, 3, dtype=dtype)
        with torch.autocast("cpu", torch.bfloat16):
            assert conv1d(x, w, None, 1, 1, 1).dtype == F.conv1d(x, w, padding=1).dtype


def test_conv1d_is_f_conv1d_outside_compile_and_its_module_is_nn_conv1d():
    layer, reference = Conv1d(3, 5, 3, padding=1), nn.Conv1d(3, 5, 3, padding=1)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 8)
    assert torch.equal(layer(x), reference(x))
    assert torch.equal(conv1d(x[0], layer.weight, layer.bias, 1), reference(x[0]))  # unbatched
    strided = Conv1d(3, 5, 3, stride=2)  # not stride 1: nn.Conv1d's own call
    assert strided(x).shape == (2, 5, 3)


def test_compiled_conv1d_is_opaque_follows_autocast_and_keeps_lengths_symbolic():
    """Under torch.compile the layer is the custom operator: one graph for three lengths, bf16 under autocast
    as F.conv1d would be, same values and gradients as eager."""
    layer = Conv1d(4, 4, 5, padding=4, dilation=2, groups=2)

    def block(x, mask):
        return torch.tanh(layer(x * mask)) * mask

    compiled = torch.compile(block, dynamic=True, backend="aot_eager")
    before = compiled_graph_count()
    for steps in (9, 14, 23):
        x, mask = torch.randn(3, 4, steps, requires_grad=True), torch.ones(3, 1, steps)
        got = compiled(x, mask)
        (grad_got,) = torch.autograd.grad(got.sum(), x)
        want = block(x, mask)
        (grad_want,) = torch.autograd.grad(want.sum(), x)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(grad_got, grad_want)
    assert compiled_graph_count() - before == 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = torch.randn(3, 4, 9)
        got, want = torch.compile(layer, backend="aot_eager")(x), layer(x)
        assert got.dtype == want.dtype == torch.bfloat16
        torch.testing.assert_close(got, want)
    graph = torch._dynamo.explain(block)(torch.randn(2, 4, 7), torch.ones(2, 1, 7)).graphs[0]
    assert "semtts.conv1d" in graph.code and "conv1d(" not in graph.code.replace("semtts.conv1d", "")


@pytest.mark.parametrize("strict", [False, True])
def test_exported_conv1d_is_plain(strict):
    """torch.export (which ONNX's dynamo exporter uses) gets aten's convolution, not the custom operator."""
    layer = Conv1d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 9)
    program = torch.export.export(layer, (x,), strict=strict)
    code = program.graph_module.code
    assert "semtts" not in code and "aten.conv" in code
    torch.testing.assert_close(program.module()(x), layer(x))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (Triton kernels with dynamic shapes)"))])
def test_dynamic_shape_parts_compile_once_for_every_length_and_match_eager(device):
    """Inductor compiles the posterior encoder, the flow, and the blocks of the text encoder and the duration
    loss once: three batches of new sizes and lengths reuse the six graphs, with eager's values and gradients
    (eager random numbers)."""
    generator = tiny_synthesizer(n_speakers=3, p_dropout=0.0).to(device)
    randomize(generator)
    eager = copy.deepcopy(generator)
    compile_parts(generator, nn.Module(), list(DYNAMIC_SHAPE_PARTS), {})
    before = compiled_graph_count()
    for n_items, t_text, t_spec in ((3, 7, 20), (2, 9, 31), (4, 5, 17)):  # no length equal to a width at first
        tokens = torch.randint(0, 11, (n_items, t_text), device=device)
        token_lengths = torch.randint(2, t_text + 1, (n_items,))
        token_lengths[0] = t_text
        spec_lengths = torch.maximum(token_lengths * 2, torch.randint(4, t_spec + 1, (n_items,)))
        spec_lengths[0] = t_spec
        spec = torch.rand(n_items, SPEC_CHANNELS, t_spec, device=device)
        sid = torch.randint(0, 3, (n_items,))  # lengths and ids on the host, as the Brain gives them
        outputs = []
        for model in (generator, eager):
            torch.manual_seed(n_items)
            with torch._inductor.config.patch(fallback_random=True):
                out = model(tokens, token_lengths, spec, spec_lengths, sid=sid)
            loss = (out.waveform.square().mean() + out.duration_loss.sum()
                    + (out.z_p * out.m_p).mean() + out.logs_q.mean())
            grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
            outputs.append((out.text_hidden, out.z_p, out.duration_loss, out.waveform, grads))
        (hidden, z_p, dur, wav, grads), (hidden_e, z_p_e, dur_e, wav_e, grads_e) = outputs
        torch.testing.assert_close(hidden, hidden_e, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(z_p, z_p_e, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(dur, dur_e, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(wav, wav_e, rtol=1e-4, atol=1e-5)
        for (name, _), got, want in zip(generator.named_parameters(), grads, grads_e):
            assert (got is None) == (want is None), name
            if got is not None:  # fused kernels round differently: compare each gradient as a whole
                assert (got - want).norm() <= 1e-3 * want.norm() + 1e-6, name
    # the posterior encoder and the flow whole, the text encoder by its attention and feed-forward layers,
    # the duration loss by its spline coupling and its conditioner stack (every instance reuses its graph)
    assert compiled_graph_count() - before == 6


@pytest.fixture
def compiled_modes(monkeypatch) -> list:
    """The (mode, dynamic) of every ``torch.compile`` call from here on; each compiles with the eager backend."""
    compiled, real_compile = [], torch.compile

    def recording_compile(fn, mode=None, dynamic=None, fullgraph=False):
        compiled.append((mode, dynamic))
        return real_compile(fn, backend="eager", dynamic=dynamic, fullgraph=fullgraph)

    monkeypatch.setattr(torch, "compile", recording_compile)
    return compiled


def test_cuda_graph_modes_mark_every_step_and_evaluate_eagerly(tmp_path, monkeypatch, compiled_modes):
    """``--compile_mode reduce-overhead``: the fixed-shape parts get it, the variable-length ones the same
    optimisations without CUDA graphs; each training step is marked as a new one for the graph replays, and
    evaluation (whole utterances of every length, a batch's outputs kept for the logs) runs them eagerly."""
    import semtts.brain
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.core import Stage

    from tests.test_brain import fixed_batch, make_run, synthetic_items

    compiled = compiled_modes
    marks = []
    monkeypatch.setattr(semtts.brain, "begin_step", lambda: marks.append(brain.global_step))
    _, _, brain = make_run(tmp_path, 0, {"log_interval": 1000, "audio_log_interval": 1000}, checkpoint=False,
                           run_opts={"compile": True, "compile_mode": "reduce-overhead",
                                     "compile_module_keys": ["decoder", "flow"]})
    brain.on_fit_start()
    assert compiled == [("reduce-overhead", None), ("default", True)]  # (None: a symbolic batch size later)
    brain.modules.train()
    for _ in range(2):
        brain.fit_batch(fixed_batch())
    assert marks == [1, 2]
    graphs = compiled_graph_count()
    brain.modules.eval()
    value = brain.evaluate_batch(PaddedBatch(synthetic_items(2, 5120, 6)), Stage.VALID)
    assert torch.isfinite(value) and compiled_graph_count() == graphs and marks == [1, 2]


def test_padded_lengths_give_every_part_cuda_graphs(tmp_path, compiled_modes):
    """Batches padded to multiples of a length (pad_frames_to, pad_tokens_to > 1) take few shapes: under
    ``--compile_mode reduce-overhead`` the variable-length parts get the mode too, CUDA graphs included."""
    from tests.test_brain import make_run

    compiled = compiled_modes
    for pads, variable_mode in (({"pad_frames_to": 8}, "default"),
                                ({"pad_frames_to": 8, "pad_tokens_to": 4}, "reduce-overhead")):
        compiled.clear()
        _, _, brain = make_run(tmp_path / str(len(pads)), 0, pads, checkpoint=False,
                               run_opts={"compile": True, "compile_mode": "reduce-overhead",
                                         "compile_module_keys": ["decoder", "flow"]})
        brain.on_fit_start()
        assert compiled == [("reduce-overhead", None), (variable_mode, True)], pads


GRAPHED = {"fixed-length parts": ({"compile_module_keys": ["decoder", "discriminator"]}, {}, 1),
           "every part, padded lengths": ({}, {"pad_frames_to": 8, "pad_tokens_to": 4}, 2)}
"""Run options and hparams of the graphed runs, and how many batches of other shapes they take in turn."""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("graphed", GRAPHED)
def test_cuda_graph_parts_train_as_eager_does(tmp_path, graphed):
    """``--compile_mode reduce-overhead`` on the decoder and the discriminator, or on every part of batches
    padded to few lengths (two batch sizes and padded lengths in turn: two paths of the graph tree):
    inductor replays them as CUDA graphs (none declined), and every step (warm-up, recording, replays of
    each shape) gives eager's losses and gradient norms (eager on the same padded batches)."""
    from speechbrain.dataio.batch import PaddedBatch
    from torch._dynamo.utils import counters

    from tests.test_brain import fixed_batch, make_run, synthetic_items

    keys, pads, n_shapes = GRAPHED[graphed]
    batches = [fixed_batch, lambda: PaddedBatch(synthetic_items(3, 6144, 9, seed=2))][:n_shapes]
    runs = []
    for graphs in (False, True):
        extra = {"compile": True, "compile_mode": "reduce-overhead", **keys} if graphs else {}
        _, _, brain = make_run(tmp_path / str(graphs), 0, {"log_interval": 1000, "audio_log_interval": 1000,
                                                           **pads},
                               checkpoint=False, run_opts={"device": "cuda", **extra})
        brain.on_fit_start()
        brain.modules.train()
        skips, graphs = counters["inductor"]["cudagraph_skips"], compiled_graph_count()
        torch.manual_seed(1)
        stats = []
        for step in range(max(4, 3 * n_shapes)):  # cudagraph trees: per shape a warm-up, a recording, replays
            with torch._inductor.config.patch(fallback_random=True):  # eager's random numbers (dropout, noise)
                brain.fit_batch(batches[step % n_shapes]())
            stats.append({k: float(v) for k, v in brain.step_stats.items()})
        brain.settle_steps()
        assert brain.nonfinite_total == 0
        runs.append((stats, counters["inductor"]["cudagraph_skips"] - skips, compiled_graph_count() - graphs))
    (eager_stats, _, _), (graph_stats, skipped, compiled) = runs
    assert compiled > 0 and skipped == 0  # compiled, and run as CUDA graphs (a part declined would count)
    # every step's losses and both gradient norms, replays included: wrong gradients would move them apart
    for step, (got, want) in enumerate(zip(graph_stats, eager_stats)):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=2e-3, abs=1e-5), (step, key)


def test_blocks_compiled_for_training_run_synthesis_eagerly():
    """A duration-predictor block compiled block by block: a training call compiles it once for every
    length; a reverse call (synthesis runs the flows backwards) and a call without gradients run eagerly,
    compile nothing, and give the eager results."""
    from semtts.compiled_parts import compile_for_training
    from semtts.lobes.vits.duration_flows import ConvFlow

    flow = ConvFlow(2, 8, 3, n_layers=2)
    torch.nn.init.normal_(flow.proj.weight, std=0.1)
    reference = copy.deepcopy(flow)
    compile_for_training(flow, {"backend": "eager", "dynamic": True})
    # (batch sizes unlike the channel counts 2 and 8, which dynamo would otherwise take for one size)
    x, mask, g = torch.randn(3, 2, 7), torch.ones(3, 1, 7), torch.randn(3, 8, 7)
    before = compiled_graph_count()
    y, logdet = flow(x, mask, g=g)
    flow(torch.randn(5, 2, 9), torch.ones(5, 1, 9), g=torch.randn(5, 8, 9))  # new sizes: the same graph
    assert compiled_graph_count() - before == 1
    back, _ = flow(y, mask, g=g, reverse=True)
    with torch.no_grad():
        again, _ = flow(x, mask, g=g)
    assert compiled_graph_count() - before == 1
    torch.testing.assert_close(back, x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(again, reference(x, mask, g=g)[0])
    torch.testing.assert_close(logdet, reference(x, mask, g=g)[1])
    copied = copy.deepcopy(flow)  # a copy runs its own weights, compiled or not
    torch.nn.init.zeros_(copied.proj.weight)
    torch.testing.assert_close(copied(x, mask, g=g)[1], copied.eager_forward(x, mask, g=g)[1])
    assert not torch.allclose(copied(x, mask, g=g)[1], flow(x, mask, g=g)[1])
    torch.testing.assert_close(flow(x, mask, g=g)[1], logdet)
