"""ONNX export of the synthesis graph: tokens and speaker conditioning to waveform.

:class:`SynthesisGraph` wraps a generator (:class:`~semtts.lobes.vits.synthesizer.VITSSynthesizer`
or its semantic subclass) as one traceable function with a dynamic batch,
token count and output length; :func:`export_onnx` writes it with
``torch.onnx.export``. The graph's inputs and outputs:

- ``tokens`` int64 ``[B, T_text]``, ``token_lengths`` int64 ``[B]``;
- the speaker: ``sid`` int64 ``[B]`` (speaker-table models) or ``spk_embed``
  float32 ``[B, spk_embed_dim]`` (CAM++ models); none for single-speaker ones;
- ``scales`` float32 ``[3]``: ``noise_scale, length_scale, noise_scale_w``;
- outputs ``waveform`` ``[B, 1, T_wav]``, ``wav_lengths`` int64 ``[B]`` and
  ``durations`` int64 ``[B, T_text]``.

The two noise sources (duration-predictor noise and the prior sample) are
random nodes of the graph; with both noise scales 0 the graph is
deterministic, which is how it is checked against PyTorch. The runner is
:mod:`semtts.onnx_runtime`.

Example
-------
>>> from semtts.lobes.vits.synthesizer import VITSSynthesizer
>>> gen = VITSSynthesizer(n_vocab=10, spec_channels=9, segment_frames=4, inter_channels=4,
...     hidden_channels=8, filter_channels=16, n_heads=2, n_layers=1, kernel_size=3, p_dropout=0.0,
...     resblock="2", resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
...     upsample_rates=[4, 2], upsample_initial_channel=16, upsample_kernel_sizes=[8, 4],
...     posterior_n_layers=2, flow_n_layers=2, sdp_filter_channels=8, n_speakers=3, gin_channels=8)
>>> graph = SynthesisGraph(gen).eval()
>>> graph.input_names
['tokens', 'token_lengths', 'sid', 'scales']
>>> wav, wav_lengths, durations = graph(*graph.example_inputs(n_tokens=5))
>>> wav.shape[:2], durations.shape
(torch.Size([1, 1]), torch.Size([1, 5]))
"""

import copy
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from semtts.durable import write_atomically
from semtts.errors import ConfigError, DataError, first_line
from semtts.lobes.vits.weight_norm import remove_weight_norm

__all__ = ["SynthesisGraph", "export_onnx", "export_packed_model", "compare_with_pytorch", "OUTPUT_NAMES",
           "DEFAULT_OPSET", "MATCH_TOLERANCE"]

OUTPUT_NAMES = ["waveform", "wav_lengths", "durations"]
DEFAULT_OPSET = 17
MATCH_TOLERANCE = 1e-3
"""Largest waveform difference (noise scales 0) a checked export may have from PyTorch."""


class SynthesisGraph(nn.Module):
    """The synthesis path of a generator as one module with tensor-only inputs.

    Arguments
    ---------
    generator : torch.nn.Module
        A :class:`~semtts.lobes.vits.synthesizer.VITSSynthesizer` (or subclass);
        used as is (fold its weight norm first for a deployment graph).
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator
        speaker = generator.speaker
        if speaker is None:
            self.speaker_input = None
        elif speaker.table is not None:
            self.speaker_input = "sid"
        else:
            self.speaker_input = "spk_embed"

    @property
    def input_names(self) -> list[str]:
        """The graph's input names, in call order."""
        middle = [self.speaker_input] if self.speaker_input else []
        return ["tokens", "token_lengths", *middle, "scales"]

    def example_inputs(self, n_tokens: int = 12, batch: int = 1,
                       scales: tuple[float, float, float] = (0.667, 1.0, 0.8)) -> tuple[torch.Tensor, ...]:
        """Inputs of the right types and shapes (for tracing and checks).

        Arguments
        ---------
        n_tokens : int
            Tokens per item.
        batch : int
            Items.
        scales : tuple of float
            ``noise_scale, length_scale, noise_scale_w``.

        Returns
        -------
        tuple of torch.Tensor
            In :attr:`input_names` order.
        """
        generator = torch.Generator().manual_seed(0)
        tokens = torch.randint(1, self.generator.n_vocab, (batch, n_tokens), generator=generator)
        inputs = [tokens, torch.full((batch,), n_tokens, dtype=torch.long)]
        if self.speaker_input == "sid":
            inputs.append(torch.zeros(batch, dtype=torch.long))
        elif self.speaker_input == "spk_embed":
            dim = self.generator.speaker.spk_embed_dim
            inputs.append(torch.randn(batch, dim, generator=generator))
        inputs.append(torch.tensor(scales, dtype=torch.float32))
        return tuple(inputs)

    def forward(self, tokens: torch.Tensor, token_lengths: torch.Tensor,
                *speaker_and_scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Synthesize (see the module docstring for the inputs and outputs).

        Arguments
        ---------
        tokens : torch.Tensor
            ``[B, T_text]`` token ids.
        token_lengths : torch.Tensor
            ``[B]`` token counts.
        *speaker_and_scales : torch.Tensor
            The speaker input when the model has one, then ``scales`` ``[3]``.

        Returns
        -------
        waveform, wav_lengths, durations : torch.Tensor
        """
        *speaker, scales = speaker_and_scales
        gen = self.generator
        g = None
        if self.speaker_input == "sid":
            g = gen.speaker(sid=speaker[0])
        elif self.speaker_input == "spk_embed":
            g = gen.speaker(spk_embed=speaker[0])
        text, durations = gen.predict_durations(tokens, token_lengths, g, noise_scale_w=scales[2],
                                                length_scale=scales[1])
        waveform, spec_lengths, _, _ = gen.decode_durations(text, durations, g, noise_scale=scales[0])
        return waveform, spec_lengths * gen.hop_length, durations.long()


def export_onnx(generator: nn.Module, path: str | Path, opset: int = DEFAULT_OPSET,
                example_tokens: int = 24) -> Path:
    """Write the synthesis graph of ``generator`` to an ONNX file.

    A generator still holding weight-norm parametrisations (a training
    model) has them folded in place first: it is an inference model
    afterwards (a deep copy cannot be folded instead: the copies share
    torch's parametrised classes, and folding one breaks the other). The
    graph is traced from a float32 CPU copy, so the generator keeps its
    device and dtype. Batch, token count and output length are dynamic axes.

    Arguments
    ---------
    generator : torch.nn.Module
        The generator.
    path : str or Path
        The ``.onnx`` file to write (its folder is created).
    opset : int
        ONNX opset (>= 17).
    example_tokens : int
        Token count of the tracing example.

    Returns
    -------
    Path
        ``path``.
    """
    if opset < DEFAULT_OPSET:
        raise ConfigError(f"export-onnx: --opset must be >= {DEFAULT_OPSET}, got {opset}")
    if any(parametrize.is_parametrized(m) for m in generator.modules()):
        remove_weight_norm(generator)
    model = copy.deepcopy(generator).float().cpu().eval()
    graph = SynthesisGraph(model).eval()
    inputs = graph.example_inputs(n_tokens=example_tokens)
    dynamic_axes = {"tokens": {0: "batch", 1: "n_tokens"}, "token_lengths": {0: "batch"},
                    "waveform": {0: "batch", 2: "n_samples"}, "wav_lengths": {0: "batch"},
                    "durations": {0: "batch", 1: "n_tokens"}}
    if graph.speaker_input:
        dynamic_axes[graph.speaker_input] = {0: "batch"}
    path = Path(path)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            # the tracer warns about every Python number it freezes; the graph's
            # dynamic parts are checked against PyTorch at other lengths instead
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, inputs, str(tmp), input_names=graph.input_names, output_names=OUTPUT_NAMES,
                              dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False,
                              do_constant_folding=True)

    write_atomically(path, write)
    return path


def compare_with_pytorch(generator: nn.Module, path: str | Path, token_counts: tuple[int, ...] = (3, 17, 40),
                         length_scale: float = 1.0) -> dict:
    """Run the exported graph and PyTorch on the same inputs with both noise scales 0.

    Each token count is tried at batch 1 and at batch 2 (the second item
    shorter), so the dynamic axes and the padding are exercised too.

    Arguments
    ---------
    generator : torch.nn.Module
        The exported generator (weight norm folded).
    path : str or Path
        The ``.onnx`` file.
    token_counts : tuple of int
        Token counts to try.
    length_scale : float
        The length scale of every run.

    Returns
    -------
    dict
        ``max_abs_diff`` (waveform, over every run), ``lengths_equal`` (the
        durations and output lengths of every run agree) and ``runs``.
    """
    from semtts.onnx_runtime import onnx_session

    session = onnx_session(path)
    graph = SynthesisGraph(copy.deepcopy(generator).float().cpu().eval()).eval()
    worst, equal, runs = 0.0, True, 0
    for n_tokens in token_counts:
        for batch in (1, 2):
            inputs = graph.example_inputs(n_tokens, batch, scales=(0.0, length_scale, 0.0))
            if batch == 2:
                inputs = (inputs[0], torch.tensor([n_tokens, max(1, n_tokens // 2)]), *inputs[2:])
            with torch.no_grad():
                wav, wav_lengths, durations = graph(*inputs)
            ort_wav, ort_lengths, ort_durations = session.run(
                None, {name: value.numpy() for name, value in zip(graph.input_names, inputs)})
            runs += 1
            same = (tuple(ort_wav.shape) == tuple(wav.shape) and (ort_lengths == wav_lengths.numpy()).all()
                    and (ort_durations == durations.numpy()).all())
            equal = equal and bool(same)
            if tuple(ort_wav.shape) == tuple(wav.shape):
                worst = max(worst, float(abs(ort_wav - wav.numpy()).max()))
    return {"max_abs_diff": worst, "lengths_equal": equal, "runs": runs}


def export_packed_model(folder: str | Path, path: str | Path | None = None, opset: int = DEFAULT_OPSET,
                        check: bool = True) -> dict:
    """Export a packed model folder's generator (``semtts export-onnx``).

    Arguments
    ---------
    folder : str or Path
        The packed folder (stage 10).
    path : str or Path, optional
        The ``.onnx`` file (default ``<folder>/model.onnx``, which
        :class:`semtts.onnx_runtime.OnnxSynthesizer` opens by default).
    opset : int
        ONNX opset.
    check : bool
        Run the graph in ONNX Runtime and compare it with PyTorch
        (:func:`compare_with_pytorch`) before it is put at ``path``: a graph
        that does not load or does not match (:data:`MATCH_TOLERANCE`, equal
        lengths) is a :class:`~semtts.errors.DataError` and nothing is written.

    Returns
    -------
    dict
        ``path``, ``inputs`` and, with ``check``, the comparison.
    """
    from semtts.onnx_runtime import ONNX_FILE
    from semtts.pretrained import SemTTS

    model = SemTTS.from_hparams(folder)
    path = Path(path) if path is not None else model.folder / ONNX_FILE
    result = {"path": str(path), "inputs": SynthesisGraph(model.generator).input_names}
    if not check:
        export_onnx(model.generator, path, opset=opset)
        return result
    unchecked = path.with_name(path.name + ".unchecked")  # in place only once ONNX Runtime has run it
    try:
        export_onnx(model.generator, unchecked, opset=opset)
        try:
            result |= compare_with_pytorch(model.generator, unchecked)
        except DataError as err:
            raise DataError(f"{path}: not written: ONNX Runtime cannot run the opset {opset} graph "
                            f"({first_line(err, 150)}); try a lower --opset (17 is the default)") from None
        if not result["lengths_equal"] or result["max_abs_diff"] > MATCH_TOLERANCE:
            lengths = "equal" if result["lengths_equal"] else "differ"
            raise DataError(f"{path}: not written: the ONNX graph does not match PyTorch (max abs difference "
                            f"{result['max_abs_diff']:.2e}, lengths {lengths})")
        unchecked.replace(path)
    finally:
        unchecked.unlink(missing_ok=True)
    return result
