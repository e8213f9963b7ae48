"""Synthesis with ONNX Runtime from a packed folder holding ``model.onnx``.

``semtts export-onnx --model DIR`` (:func:`semtts.onnx_export.export_onnx`)
writes ``DIR/model.onnx``; :class:`OnnxSynthesizer` runs it with the
folder's frontend and voices (:class:`~semtts.packed_model.PackedModel`).
The generator runs in ONNX Runtime only; PyTorch is used for the text
batch and, for zero-shot voices, for CAM++.

Example
-------
>>> tts = OnnxSynthesizer.from_folder("exp/mini/default/packed")  # doctest: +SKIP
>>> wavs, sr = tts.synthesize(["Hello there."], speaker="spk0")   # doctest: +SKIP
>>> wavs[0].shape, wavs[0].dtype                                  # doctest: +SKIP
((30720,), dtype('float32'))
>>> OnnxSynthesizer.from_folder("no/such/dir")
Traceback (most recent call last):
...
semtts.errors.DataError: no/such/dir: model folder not found
"""

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from semtts.errors import ConfigError, DataError, first_line
from semtts.inference import check_scales
from semtts.packed_model import PackedModel
from semtts.text.frontend import Frontend

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["ONNX_FILE", "OnnxSynthesizer", "onnx_session", "check_feeds"]

ONNX_FILE = "model.onnx"


def _shape_text(shape: list) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


def check_feeds(feeds: dict[str, np.ndarray], shapes: dict[str, list], where: str | Path) -> None:
    """Check arrays against a graph's input shapes before ONNX Runtime sees them.

    Arguments
    ---------
    feeds : dict
        ``{input name: array}``.
    shapes : dict
        ``{input name: shape}`` as ONNX Runtime reports it (ints for fixed
        sizes, names for dynamic axes, which must agree across inputs).
    where : str or Path
        The graph file, for the messages.

    Raises
    ------
    DataError
        One line naming the input, the shape it takes and the shape given.

    Example
    -------
    >>> shapes = {"tokens": ["batch", "n_tokens"], "spk_embed": ["batch", 16]}
    >>> check_feeds({"tokens": np.zeros((1, 5)), "spk_embed": np.zeros((1, 8))}, shapes, "model.onnx")
    Traceback (most recent call last):
    ...
    semtts.errors.DataError: model.onnx: the ONNX input 'spk_embed' takes shape [batch, 16], got [1, 8]
    """
    sizes: dict[str, tuple[int, str]] = {}
    for name, value in feeds.items():
        shape = shapes.get(name)
        if shape is None:
            continue
        bad = value.ndim != len(shape) or any(isinstance(d, int) and d != n for d, n in zip(shape, value.shape))
        if bad:
            raise DataError(f"{where}: the ONNX input '{name}' takes shape {_shape_text(shape)}, "
                            f"got {list(value.shape)}")
        for axis, n in zip(shape, value.shape):
            if isinstance(axis, str):
                seen, first = sizes.setdefault(axis, (n, name))
                if seen != n:
                    raise DataError(f"{where}: the ONNX input '{name}' has {axis} {n}, but '{first}' has {seen}")


def onnx_session(path: str | Path, threads: int | None = None) -> "onnxruntime.InferenceSession":
    """An ONNX Runtime CPU session of ``path``.

    Arguments
    ---------
    path : str or Path
        The ``.onnx`` file.
    threads : int, optional
        Intra-op threads (default: ONNX Runtime's).

    Returns
    -------
    onnxruntime.InferenceSession
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("onnxruntime is not installed: pip install semtts[onnx]") from None
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: ONNX model not found (write it with `semtts export-onnx --model DIR`)")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for broken files
        reason = first_line(err, 150)
        raise DataError(f"{path}: cannot load the ONNX model ({reason})") from None


class OnnxSynthesizer(PackedModel):
    """Text to speech with ONNX Runtime.

    Arguments
    ---------
    folder : Path
        The packed folder.
    packed : dict
        Its ``hyperparams.yaml``.
    frontend : Frontend
        Text to token ids.
    session : onnxruntime.InferenceSession
        The exported synthesis graph.
    onnx_file : Path, optional
        Its file, for the messages (default ``<folder>/model.onnx``).
    """

    def __init__(self, folder: Path, packed: dict, frontend: Frontend, session: "onnxruntime.InferenceSession",
                 onnx_file: Path | None = None) -> None:
        super().__init__(folder, packed, frontend, torch.device("cpu"))
        self.session = session
        self.onnx_file = Path(onnx_file) if onnx_file is not None else Path(folder) / ONNX_FILE
        self.input_shapes = {i.name: list(i.shape) for i in session.get_inputs()}
        self.input_names = list(self.input_shapes)
        graph_dim = (self.input_shapes.get("spk_embed") or [None])[-1]
        model_dim = int(packed["generator"].get("spk_embed_dim") or 0)
        if isinstance(graph_dim, int) and graph_dim != model_dim:
            raise DataError(f"{self.onnx_file}: the graph's 'spk_embed' input is {graph_dim}-d, but the generator's "
                            f"spk_embed_dim is {model_dim} ({folder / 'hyperparams.yaml'}); export it again")
        self.last_durations: list[np.ndarray] | None = None
        """``[T_text_i]`` frames per token of the last :meth:`synthesize` batch."""

    @classmethod
    def from_folder(cls, folder: str | Path, onnx_file: str | Path | None = None,
                    threads: int | None = None) -> "OnnxSynthesizer":
        """Open a packed folder and its exported graph.

        Arguments
        ---------
        folder : str or Path
            The packed folder.
        onnx_file : str or Path, optional
            The graph (default ``<folder>/model.onnx``).
        threads : int, optional
            ONNX Runtime intra-op threads.

        Returns
        -------
        OnnxSynthesizer
        """
        folder, packed, frontend = PackedModel.open(folder)
        onnx_file = Path(onnx_file or folder / ONNX_FILE)
        return cls(folder, packed, frontend, onnx_session(onnx_file, threads), onnx_file)

    def run(self, tokens: np.ndarray, token_lengths: np.ndarray, speaker: dict[str, np.ndarray],
            noise_scale: float = 0.667, length_scale: float = 1.0,
            noise_scale_w: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the graph on a prepared batch.

        Arguments
        ---------
        tokens : numpy.ndarray
            ``[B, T_text]`` int64 token ids.
        token_lengths : numpy.ndarray
            ``[B]`` int64 token counts.
        speaker : dict
            ``{"sid": [B] int64}``, ``{"spk_embed": [B, D] float32}`` or ``{}``.
        noise_scale, length_scale, noise_scale_w : float
            As in ``VITSSynthesizer.infer`` (ranges: :func:`semtts.inference.check_scales`).

        Returns
        -------
        waveform : numpy.ndarray
            ``[B, 1, T_wav]``.
        wav_lengths : numpy.ndarray
            ``[B]``.
        durations : numpy.ndarray
            ``[B, T_text]``.

        Raises
        ------
        DataError
            An input's shape does not fit the graph (:func:`check_feeds`).
        """
        check_scales(length_scale, noise_scale, noise_scale_w)
        feeds = {"tokens": np.asarray(tokens, dtype=np.int64),
                 "token_lengths": np.asarray(token_lengths, dtype=np.int64),
                 "scales": np.array([noise_scale, length_scale, noise_scale_w], dtype=np.float32)}
        for name, value in speaker.items():
            feeds[name] = np.asarray(value, dtype=np.int64 if name == "sid" else np.float32)
        missing = sorted(set(self.input_names) - set(feeds))
        extra = sorted(set(feeds) - set(self.input_names))
        if missing or extra:
            raise ConfigError(f"{self.folder}: the ONNX graph takes {self.input_names}; "
                              f"missing {missing}, unexpected {extra}")
        check_feeds(feeds, self.input_shapes, self.onnx_file)
        waveform, wav_lengths, durations = self.session.run(None, feeds)
        return waveform, wav_lengths, durations

    def synthesize(self, texts: list[str] | str, speaker: str | None = None, speaker_wav: str | Path | None = None,
                   length_scale: float = 1.0, noise_scale: float = 0.667,
                   noise_scale_w: float = 0.8) -> tuple[list[np.ndarray], int]:
        """Synthesize a batch of texts in one voice (as :meth:`semtts.pretrained.SemTTS.synthesize`).

        Arguments
        ---------
        texts : list of str or str
            Raw texts.
        speaker : str, optional
            A training speaker (default: the first one).
        speaker_wav : str or Path, optional
            A reference recording to clone (embedding models; CAM++ runs in PyTorch).
        length_scale, noise_scale, noise_scale_w : float
            Speed, prior noise and duration noise.

        Returns
        -------
        waveforms : list of numpy.ndarray
            One float32 ``[T_i]`` array per text.
        sample_rate : int
        """
        tokens, lengths = self.token_batch(texts)
        speaker_inputs = {k: v.numpy() for k, v in self.speaker_inputs(speaker, speaker_wav, len(lengths)).items()}
        waveform, wav_lengths, durations = self.run(tokens.numpy(), lengths.numpy(), speaker_inputs,
                                                    noise_scale, length_scale, noise_scale_w)
        self.last_durations = [durations[i, :n] for i, n in enumerate(lengths.tolist())]
        waveforms = [waveform[i, 0, :int(n)].astype(np.float32) for i, n in enumerate(wav_lengths)]
        for index, wav in enumerate(waveforms):
            if not np.isfinite(wav).all():  # (saving would clip NaN to a full-scale square)
                raise DataError(f"{self.folder}: the model synthesized non-finite audio for text {index} (its "
                                "weights may have diverged: export an earlier checkpoint)")
        return waveforms, self.sample_rate
