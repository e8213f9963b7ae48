"""Synthesis from CUDA graphs (semtts.graphed_inference): the eager fallback
on the CPU, and on a CUDA device the same output as eager synthesis."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from semtts.errors import ConfigError
from semtts.graphed_inference import DECODE_DTYPES, GraphedSynthesizer, cuda_index
from semtts.lobes.vits.semantic_vits import SemanticVITS
from semtts.pretrained import SemTTS, check_run_opts
from test_pack_cli import ROOT, packed  # noqa: F401 (fixture)

SEMANTIC = {"use_sempred": True, "use_adapter": True, "sempred_hidden": 16, "sempred_kernel_size": 3,
            "sempred_layers": 1, "sempred_dropout": 0.0, "adapter_heads": 2, "adapter_dropout": 0.0,
            "adapter_gate_init": 0.5}


def generator(semantic: bool = False, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    with open(ROOT / "hparams/model/vits_tiny.yaml") as f:
        hp = load_hyperpyyaml(f, {"n_vocab": 30, "p_dropout": 0.0, "n_speakers": 3} | overrides)
    gen = hp["generator"]
    gen = SemanticVITS(gen, 12, **SEMANTIC) if semantic else gen
    gen.remove_weight_norm()
    return gen.eval()


def batch(lengths: list[int], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(1, 30, (len(lengths), max(lengths)), generator=torch.Generator().manual_seed(1))
    return tokens.to(device), torch.tensor(lengths, device=device)


def test_cpu_runs_eagerly():
    gen = generator()
    fast = GraphedSynthesizer(gen, token_bucket=8, frame_bucket=16)
    tokens, lengths = batch([9, 4], "cpu")
    torch.manual_seed(3)
    ours = fast(tokens, lengths, sid=torch.tensor([0, 2]))
    torch.manual_seed(3)
    ref = gen.infer(tokens, lengths, sid=torch.tensor([0, 2]))
    assert fast.graphs == 0 and torch.equal(ours.waveform, ref.waveform)
    assert torch.equal(ours.durations, ref.durations)


@pytest.mark.parametrize("graphed", [False, True], ids=["eager", "graph_path"])
@pytest.mark.parametrize("precision", ["bf16"] + (["fp16"] if torch.cuda.is_available() else []))
def test_reduced_precision_decodes_in_it_and_keeps_the_durations(monkeypatch, precision, graphed):
    import semtts.graphed_inference as module

    if graphed:  # the graph path's autocast, run eagerly on the CPU
        monkeypatch.setattr(module, "_Graph", EagerGraph)
        monkeypatch.setattr(GraphedSynthesizer, "_use_graphs", lambda self, device: True)
    gen = generator()
    seen = {}
    for name in ("text_encoder", "duration_predictor.pre", "flow.flows.0.post", "decoder"):  # computing layers
        gen.get_submodule(name).register_forward_hook(
            lambda module, inputs, output, name=name: seen.setdefault(name, set()).add(
                (output[0] if isinstance(output, tuple) else output).dtype))
    device = "cuda" if precision == "fp16" else "cpu"  # fp16 is refused off a GPU
    gen = gen.to(device)
    tokens, lengths = batch([9, 4], device)
    sid = torch.tensor([0, 2], device=device)
    quiet = {"sid": sid, "noise_scale": 0.0, "noise_scale_w": 0.0}  # (a graph's capture draws too)
    ref = gen.infer(tokens, lengths, **quiet)
    seen.clear()
    with torch.autocast(device, dtype=torch.bfloat16):  # a caller's autocast changes nothing
        ours = GraphedSynthesizer(gen, token_bucket=8, frame_bucket=16, precision=precision)(tokens, lengths,
                                                                                          **quiet)
    low = DECODE_DTYPES[precision]
    assert seen == {"text_encoder": {torch.float32}, "duration_predictor.pre": {torch.float32},
                    "flow.flows.0.post": {low}, "decoder": {low}}
    assert torch.equal(ours.durations, ref.durations) and ours.waveform.dtype == torch.float32
    assert ours.waveform.shape == ref.waveform.shape
    error = float((ours.waveform - ref.waveform).norm() / ref.waveform.norm())
    assert 0 < error < 0.05, error


def test_precision_is_checked_where_it_is_given():
    with pytest.raises(ConfigError, match="precision must be one of fp32, fp16, bf16, got 'half'"):
        GraphedSynthesizer(generator(), precision="half")
    with pytest.raises(ConfigError, match="run_opts: precision must be one of fp32, fp16, bf16, got 'fp64'"):
        check_run_opts({"precision": "fp64"})
    with pytest.raises(ConfigError, match=r"run_opts: precision fp16 needs a CUDA device \(on cpu: bf16 or fp32\)"):
        check_run_opts({"precision": "fp16"})
    fast = GraphedSynthesizer(generator(), precision="fp16")  # a CUDA model moved to the CPU: refused at the call
    with pytest.raises(ConfigError, match="graphed synthesis: precision fp16 needs a CUDA device"):
        fast(*batch([5], "cpu"), sid=torch.tensor([0]))
    from semtts.cli import build_parser

    synth = build_parser()._subparsers._group_actions[0].choices["synth"]
    choices = next(a.choices for a in synth._actions if a.dest == "precision")
    assert tuple(choices) == tuple(DECODE_DTYPES)


class EagerGraph:
    """A stand-in for a captured graph on the CPU: replay reruns the function
    into the same static outputs, as a CUDA graph writes into its buffers."""

    captured = 0
    devices: list[torch.device] = []

    def __init__(self, fn, device: torch.device, warmup: int = 2):
        self.fn = fn
        self.outputs = fn()
        EagerGraph.captured += 1
        EagerGraph.devices.append(device)

    def replay(self):
        for static, new in zip(self.outputs, self.fn()):
            static.copy_(new)
        return self.outputs


def test_padded_shapes_and_graph_limit_on_the_cpu(monkeypatch):
    # the graph path's padding, bucketing and release of old graphs, run eagerly on the CPU
    import semtts.graphed_inference as module

    monkeypatch.setattr(module, "_Graph", EagerGraph)
    monkeypatch.setattr(GraphedSynthesizer, "_use_graphs", lambda self, device: True)
    gen = generator()
    fast = GraphedSynthesizer(gen, token_bucket=8, frame_bucket=16, max_graphs=3)
    sid = torch.tensor([1, 2])
    EagerGraph.captured, EagerGraph.devices = 0, []
    for lengths in ([9, 4], [13, 11], [3, 2], [9, 4]):
        tokens, token_lengths = batch(lengths, "cpu")
        ref = gen.infer(tokens, token_lengths, sid=sid, noise_scale=0.0, noise_scale_w=0.0)
        ours = fast(tokens, token_lengths, sid=sid, noise_scale=0.0, noise_scale_w=0.0)
        assert torch.equal(ours.durations, ref.durations) and torch.equal(ours.wav_lengths, ref.wav_lengths)
        assert ours.waveform.shape == ref.waveform.shape
        assert (ours.waveform - ref.waveform).abs().max() < 1e-5
        assert fast.graphs <= 3
        decoders_of = {key: [k for k in fast._decoders if k[:len(key)] == key] for key in fast._durations}
        assert all(decoders_of.values()) and sum(map(len, decoders_of.values())) == len(fast._decoders)
    assert EagerGraph.captured == 6  # token buckets 16, 16, 8, 16: the last call recaptures the released pair
    assert EagerGraph.devices == [torch.device("cpu")] * 6  # every graph is given its inputs' device
    # a result is the caller's: the next replay of the same graphs does not overwrite it
    kept = ours.waveform.clone()
    fast(tokens.flip(1), token_lengths, sid=sid, noise_scale=0.0, noise_scale_w=0.0)
    assert EagerGraph.captured == 6 and torch.equal(ours.waveform, kept)
    # after an out-of-memory error every graph is released (their memory pools with them); later calls recapture
    fast.release_graphs()
    assert fast.graphs == 0
    fast(tokens, token_lengths, sid=sid, noise_scale=0.0, noise_scale_w=0.0)
    assert EagerGraph.captured == fast.captured == 8 and fast.graphs == 2
    with pytest.raises(Exception, match="max_graphs must be >= 2"):
        GraphedSynthesizer(gen, max_graphs=1)


def test_graphs_are_captured_on_the_inputs_device_not_the_current_one(monkeypatch):
    # cuda:N captures and replays on device N even while the current device is another one; CUDA's
    # calls are recorded (no GPU here): every one must name device 1, and none may run outside it
    import contextlib

    import semtts.graphed_inference as gi

    assert cuda_index(torch.device("cuda:1")) == 1 and cuda_index(torch.device("cuda:0")) == 0
    with pytest.raises(ConfigError, match="need a CUDA device, got cpu"):
        cuda_index(torch.device("cpu"))
    current, seen = [0], []

    @contextlib.contextmanager
    def device(index):
        current.append(index)
        yield
        current.pop()

    class Stream:
        def __init__(self, device=None):
            seen.append(("stream", device, current[-1]))

        def wait_stream(self, other):
            pass

    class Graph:
        def replay(self):
            seen.append(("replay", None, current[-1]))

    @contextlib.contextmanager
    def recorded(name, index=None):
        seen.append((name, index, current[-1]))
        yield

    monkeypatch.setattr(gi.torch.cuda, "device", device)
    monkeypatch.setattr(gi.torch.cuda, "Stream", Stream)
    def current_stream(index=None):
        seen.append(("current", index, current[-1]))
        return Stream(index)

    monkeypatch.setattr(gi.torch.cuda, "current_stream", current_stream)
    monkeypatch.setattr(gi.torch.cuda, "stream", lambda stream: recorded("use_stream"))
    monkeypatch.setattr(gi.torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(gi.torch.cuda, "graph", lambda graph: recorded("capture"))
    monkeypatch.setattr(gi.torch.random, "fork_rng", lambda devices: recorded("fork_rng", devices))
    graph = gi._Graph(lambda: (torch.ones(1),), torch.device("cuda:1"))
    graph.replay()
    assert {name for name, _, _ in seen} == {"stream", "current", "use_stream", "fork_rng", "capture", "replay"}
    assert all(where == 1 for _, _, where in seen)  # all inside torch.cuda.device(1)
    assert all(index in (None, 1, [1]) for _, index, _ in seen) and ("fork_rng", [1], 1) in seen


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("semantic", [False, True])
def test_cuda_graphs_match_eager(semantic):
    gen = generator(semantic).cuda()
    fast = GraphedSynthesizer(gen, token_bucket=8, frame_bucket=32)
    sid = torch.tensor([1, 2], device="cuda")
    for lengths, scale in [([9, 4], 1.0), ([13, 11], 1.5), ([9, 2], 1.0)]:
        tokens, token_lengths = batch(lengths, "cuda")
        ref = gen.infer(tokens, token_lengths, sid=sid, noise_scale=0.0, noise_scale_w=0.0, length_scale=scale)
        ours = fast(tokens, token_lengths, sid=sid, noise_scale=0.0, noise_scale_w=0.0, length_scale=scale)
        assert torch.equal(ours.durations, ref.durations) and torch.equal(ours.wav_lengths, ref.wav_lengths)
        assert ours.waveform.shape == ref.waveform.shape
        assert (ours.waveform - ref.waveform).abs().max() < 1e-4
    # one token bucket (16) for all three calls: one first-half graph, and one decoding graph per frame bucket
    assert 2 <= fast.graphs <= 4
    graphs = fast.graphs
    tokens, token_lengths = batch([9, 4], "cuda")
    first = fast(tokens, token_lengths, sid=sid)
    second = fast(tokens, token_lengths, sid=sid)
    assert fast.graphs >= graphs and torch.isfinite(first.waveform).all()
    # the random draws live in the graphs and advance on every replay
    assert first.waveform.shape != second.waveform.shape or not torch.equal(first.waveform, second.waveform)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_graphs_match_eager_in_reduced_precision(precision):
    gen = generator().cuda()
    sid = torch.tensor([1, 2], device="cuda")
    tokens, token_lengths = batch([13, 6], "cuda")
    runs = [GraphedSynthesizer(gen, token_bucket=8, frame_bucket=32, precision=precision, enabled=enabled)(
        tokens, token_lengths, sid=sid, noise_scale=0.0, noise_scale_w=0.0) for enabled in (True, False)]
    ref = gen.infer(tokens, token_lengths, sid=sid, noise_scale=0.0, noise_scale_w=0.0)
    assert torch.equal(runs[0].durations, ref.durations) and torch.equal(runs[1].durations, ref.durations)
    assert (runs[0].waveform - runs[1].waveform).abs().max() < 1e-2
    assert float((runs[0].waveform - ref.waveform).norm() / ref.waveform.norm()) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_packed_model_on_cuda(packed):  # noqa: F811
    texts = ["hello there.", "a longer sentence, to be said in the same voice"]
    graphed = SemTTS.from_hparams(packed, run_opts={"device": "cuda"})
    eager = SemTTS.from_hparams(packed, run_opts={"device": "cuda", "cuda_graphs": False})
    ours, _ = graphed.synthesize(texts, speaker="spk1", noise_scale=0.0, noise_scale_w=0.0)
    ref, _ = eager.synthesize(texts, speaker="spk1", noise_scale=0.0, noise_scale_w=0.0)
    assert graphed.synthesizer.graphs >= 2 and eager.synthesizer.graphs == 0
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4
