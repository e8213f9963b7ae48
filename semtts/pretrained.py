"""The inference interface of a packed model (stage 10): :class:`SemTTS`.

It follows SpeechBrain's pretrained interfaces (``from_hparams(source,
savedir, run_opts)``) and loads nothing of the training code: the
generator is rebuilt from the packed ``hyperparams.yaml``
(:mod:`semtts.pack`), the text goes through :class:`~semtts.text.frontend.Frontend`,
and zero-shot voices through CAM++ (:class:`~semtts.extract.speaker.SpeakerEmbedder`);
the folder, frontend and voices are :class:`~semtts.packed_model.PackedModel`'s.

Example
-------
>>> model = SemTTS.from_hparams(source="exp/mini/default/packed")  # doctest: +SKIP
>>> wavs, sr = model.synthesize(["Hello there."], speaker="spk0")  # doctest: +SKIP
>>> wavs[0].shape  # [T] samples  # doctest: +SKIP
torch.Size([30720])
>>> SemTTS.from_hparams("exp/mini/default/packed", run_opts={"devcie": "cpu"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
semtts.errors.ConfigError: run_opts: unknown key 'devcie' (did you mean 'device'?); valid keys: cuda_graphs, ...
"""

import difflib
import logging
from pathlib import Path
from typing import Iterator, NamedTuple

import torch

from semtts.audio import read_checked_audio, resample
from semtts.errors import ConfigError, DataError, first_line
from semtts.graphed_inference import (MAX_FRAMES_PER_TOKEN, DurationsTooLong, GraphedSynthesizer,
                                      check_precision, out_of_memory)
from semtts.inference import check_scales
from semtts.pack import build_packed_generator, load_weights
from semtts.packed_model import PackedModel
from semtts.text.frontend import Frontend

__all__ = ["SemTTS", "SynthesizedBatch", "RUN_OPTS", "DEFAULT_BATCH_SIZE", "resolve_device", "check_run_opts"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8
"""Texts :meth:`SemTTS.synthesize` synthesizes together at most (``semtts synth --batch-size``)."""

RUN_OPTS = {"device": "cpu, cuda or cuda:N (default cpu)",
            "cuda_graphs": "bool: replay synthesis from CUDA graphs on a CUDA device (default True)",
            "precision": "fp32 | fp16 | bf16: the flow and the decoder under autocast (fp16: CUDA; default fp32)",
            "max_frames_per_token": "int >= 1 or None: refuse a text whose predicted durations average more "
                                    "frames per token, before decoding it (default 200; None: no limit)"}
"""The ``run_opts`` keys :meth:`SemTTS.from_hparams` understands."""




def resolve_device(device: str | torch.device | None, what: str = "run_opts device") -> torch.device:
    """A device name as a :class:`torch.device` this machine has; a bad one is a one-line :class:`ConfigError`.

    Arguments
    ---------
    device : str or torch.device, optional
        ``cpu`` (also None), ``cuda``, ``cuda:N`` or ``mps``.
    what : str
        Where the name came from, for the messages (``--device``).

    Returns
    -------
    torch.device

    Example
    -------
    >>> resolve_device(None), resolve_device("cpu")
    (device(type='cpu'), device(type='cpu'))
    >>> resolve_device("foo", "--device")
    Traceback (most recent call last):
    ...
    semtts.errors.ConfigError: --device: 'foo' is not a device (cpu, cuda or cuda:N)
    """
    if device is None or device == "":
        return torch.device("cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip())
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{what}: {str(device)!r} is not a device (cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what}: {str(device)!r} but CUDA is not available on this machine (use cpu)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"{what}: {str(device)!r} but this machine has {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1})")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{what}: {str(device)!r} but MPS is not available on this machine (use cpu)")
        return dev
    raise ConfigError(f"{what}: {str(device)!r} is not supported (cpu, cuda or cuda:N)")


def check_run_opts(run_opts: dict | None) -> dict:
    """Check the ``run_opts`` of :meth:`SemTTS.from_hparams`: unknown keys and bad values are one-line errors.

    Arguments
    ---------
    run_opts : dict, optional
        Keys of :data:`RUN_OPTS`.

    Returns
    -------
    dict
        ``device`` (a :class:`torch.device`), ``cuda_graphs`` (bool), ``precision`` and
        ``max_frames_per_token``.

    Example
    -------
    >>> check_run_opts({"cuda_graphs": False})
    {'device': device(type='cpu'), 'cuda_graphs': False, 'precision': 'fp32', 'max_frames_per_token': 200}
    >>> check_run_opts({"max_frames_per_token": 0})
    Traceback (most recent call last):
    ...
    semtts.errors.ConfigError: run_opts: max_frames_per_token must be an integer >= 1 or None, got 0
    """
    if run_opts is None:
        run_opts = {}
    if not isinstance(run_opts, dict):
        raise ConfigError(f"run_opts must be a dict with keys {', '.join(sorted(RUN_OPTS))}, "
                          f"got {type(run_opts).__name__}")
    valid = ", ".join(sorted(RUN_OPTS))
    for key in run_opts:
        if key not in RUN_OPTS:
            close = difflib.get_close_matches(str(key), list(RUN_OPTS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"run_opts: unknown key {key!r}{hint}; valid keys: {valid}")
    cuda_graphs = run_opts.get("cuda_graphs", True)
    if not isinstance(cuda_graphs, bool):
        raise ConfigError(f"run_opts: cuda_graphs must be True or False, got {cuda_graphs!r}")
    device, precision = resolve_device(run_opts.get("device")), run_opts.get("precision", "fp32")
    check_precision(precision, device, "run_opts")
    most = run_opts.get("max_frames_per_token", MAX_FRAMES_PER_TOKEN)
    if most is not None and (isinstance(most, bool) or not isinstance(most, int) or most < 1):
        raise ConfigError(f"run_opts: max_frames_per_token must be an integer >= 1 or None, got {most!r}")
    return {"device": device, "cuda_graphs": cuda_graphs, "precision": precision, "max_frames_per_token": most}


TOO_LONG_TO_ALLOCATE = "too long to allocate"


def _size_failure(err: BaseException) -> str | None:
    """What went wrong when synthesis failed on an output too long to allocate, non-finite durations, or
    durations past the synthesizer's ``max_frames_per_token`` (:class:`DurationsTooLong`)."""
    text = str(err)
    if isinstance(err, DurationsTooLong):  # refused before decoding
        return text
    if out_of_memory(err):
        return TOO_LONG_TO_ALLOCATE
    if "inconsistent with step sign" in text:  # torch.arange over non-finite lengths
        return "not finite"
    return None


class SynthesizedBatch(NamedTuple):
    """One batch of :meth:`SemTTS.synthesize_batches`."""

    indices: list[int]
    """Where its texts are in the list given."""
    waveforms: list[torch.Tensor]
    """``[T_i]`` float32 CPU samples per text."""
    durations: list[torch.Tensor]
    """``[T_text_i]`` frames per token (blanks included) per text."""


class _TooBig(Exception):
    """A batch whose output could not be allocated, or whose durations are not finite or too long."""

    def __init__(self, failure: str):
        super().__init__(failure)
        self.failure = failure


class SemTTS(PackedModel):
    """A packed semtts model: text to speech, voice cloning and voice conversion.

    Arguments
    ---------
    folder : Path
        The packed folder.
    packed : dict
        Its ``hyperparams.yaml``.
    generator : torch.nn.Module
        The rebuilt generator with its weights, in eval mode.
    frontend : Frontend
        Text to token ids.
    device : torch.device
        Where the generator runs.
    cuda_graphs : bool
        On a CUDA device, replay synthesis from CUDA graphs (one capture per
        padded shape; no effect on the CPU).
    precision : str
        ``fp32``, ``fp16`` or ``bf16`` for the flow and the decoder
        (:class:`~semtts.graphed_inference.GraphedSynthesizer`).

    Example
    -------
    >>> SemTTS.from_hparams("no/such/dir")
    Traceback (most recent call last):
    ...
    semtts.errors.DataError: no/such/dir: model folder not found
    """

    def __init__(self, folder: Path, packed: dict, generator: torch.nn.Module, frontend: Frontend,
                 device: torch.device, cuda_graphs: bool = True, precision: str = "fp32",
                 max_frames_per_token: int | None = MAX_FRAMES_PER_TOKEN):
        super().__init__(folder, packed, frontend, device)
        self.generator = generator
        self.synthesizer = GraphedSynthesizer(generator, enabled=cuda_graphs, precision=precision,
                                              max_frames_per_token=max_frames_per_token)
        """Synthesis: replayed from CUDA graphs on a CUDA device (:mod:`semtts.graphed_inference`), else eager."""
        self.last_durations: list[torch.Tensor] | None = None
        """``[T_text_i]`` frames per token (blanks included) of the texts of the last :meth:`synthesize` call."""

    @classmethod
    def from_hparams(cls, source: str | Path, savedir: str | Path | None = None,
                     run_opts: dict | None = None) -> "SemTTS":
        """Load a packed model folder.

        Arguments
        ---------
        source : str or Path
            The packed folder (stage 10's ``<output_folder>/packed``).
        savedir : str or Path, optional
            Copy the folder there first and load the copy.
        run_opts : dict, optional
            ``{"device": "cuda:0"}`` (default CPU); ``{"cuda_graphs": False}``
            synthesizes eagerly on CUDA too; ``{"precision": "fp16"}`` runs
            the flow and the decoder in half precision (the durations stay
            float32); ``{"max_frames_per_token": 400}`` lets slower speech
            through (None: no limit). Another key, or a device this machine lacks, is a
            :class:`ConfigError` (:func:`check_run_opts`).

        Returns
        -------
        SemTTS
        """
        opts = check_run_opts(run_opts)
        folder, packed, frontend = PackedModel.open(source, savedir)
        device = opts["device"]
        generator = build_packed_generator(packed)
        try:
            generator.load_state_dict(load_weights(folder), strict=True)
        except RuntimeError as err:
            raise DataError(f"{folder}: the weights do not fit hyperparams.yaml ({first_line(err)})") from None
        return cls(folder, packed, generator.to(device).eval(), frontend, device, cuda_graphs=opts["cuda_graphs"],
                   precision=opts["precision"], max_frames_per_token=opts["max_frames_per_token"])

    def speaker_condition(self, speaker: str | None = None, speaker_wav: str | Path | None = None,
                          what: str = "speaker") -> torch.Tensor | None:
        """``g`` ``[1, gin_channels, 1]`` of a training speaker or a reference recording (None: single-speaker).

        Arguments
        ---------
        speaker : str, optional
            A training speaker id (``info`` lists them).
        speaker_wav : str or Path, optional
            A reference recording (embedding modes).
        what : str
            The flag name, for the messages.

        Returns
        -------
        torch.Tensor or None
        """
        inputs = self.speaker_inputs(speaker, speaker_wav, 1, what)
        if not inputs:
            return None
        return self.generator.speaker_condition(**{k: v.to(self.device) for k, v in inputs.items()})

    def synthesize(self, texts: list[str] | str, speaker: str | None = None, speaker_wav: str | Path | None = None,
                   length_scale: float = 1.0, noise_scale: float = 0.667, noise_scale_w: float = 0.8,
                   batch_size: int | None = DEFAULT_BATCH_SIZE) -> tuple[list[torch.Tensor], int]:
        """Synthesize texts in one voice, ``batch_size`` texts of similar length at a time.

        Memory grows with the batch, not with the number of texts; a batch
        too big to allocate (or past ``max_frames_per_token``) is split in halves and retried.
        :meth:`synthesize_batches` hands each batch over as soon as it is
        done (``semtts synth`` writes its files then).

        Arguments
        ---------
        texts : list of str or str
            Raw texts (one string is a batch of one).
        speaker : str, optional
            A training speaker (default: the first one).
        speaker_wav : str or Path, optional
            A reference recording to clone (embedding modes).
        length_scale, noise_scale, noise_scale_w : float
            Speed, prior noise and duration noise (see ``VITSSynthesizer.infer``;
            ranges: :func:`semtts.inference.check_scales`).
        batch_size : int, optional
            Texts synthesized together at most (None: all in one batch).

        Returns
        -------
        waveforms : list of torch.Tensor
            One ``[T_i]`` float32 CPU tensor per text, in the order of ``texts``,
            ``T_i = sum(durations_i) * hop`` (:attr:`last_durations`).
        sample_rate : int
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        wavs: list = [None] * len(texts)
        durations: list = [None] * len(texts)
        for batch in self.synthesize_batches(texts, speaker, speaker_wav, length_scale, noise_scale, noise_scale_w,
                                             batch_size):
            for i, wav, duration in zip(batch.indices, batch.waveforms, batch.durations):
                wavs[i], durations[i] = wav, duration
        self.last_durations = durations
        return wavs, self.sample_rate

    def synthesize_batches(self, texts: list[str] | str, speaker: str | None = None,
                           speaker_wav: str | Path | None = None, length_scale: float = 1.0,
                           noise_scale: float = 0.667, noise_scale_w: float = 0.8,
                           batch_size: int | None = DEFAULT_BATCH_SIZE,
                           labels: list[str] | None = None) -> Iterator[SynthesizedBatch]:
        """Synthesize texts in one voice, yielding each batch as soon as it is done.

        When they do not fit in one batch, the texts are sorted by token
        count (longest first, so a batch pads little and a size problem shows
        early) and cut into batches of at most ``batch_size``. A batch too big to allocate (or with non-finite
        durations, or past ``max_frames_per_token``) is split in halves and retried; a single text that still
        fails is a :class:`DataError` naming it, with the durations hint.

        Arguments
        ---------
        texts : list of str or str
            Raw texts.
        speaker, speaker_wav, length_scale, noise_scale, noise_scale_w
            As in :meth:`synthesize`.
        batch_size : int, optional
            Texts synthesized together at most (None: all).
        labels : list of str, optional
            What to call each text in the messages (default ``text <index>``).

        Yields
        ------
        SynthesizedBatch
            ``indices`` into ``texts``, their ``waveforms`` ``[T_i]`` and ``durations`` ``[T_text_i]``.

        Example
        -------
        >>> model = SemTTS.from_hparams("exp/mini/default/packed")  # doctest: +SKIP
        >>> [b.indices for b in model.synthesize_batches(["a b c.", "hi.", "a b."], batch_size=2)]  # doctest: +SKIP
        [[0, 2], [1]]
        """
        check_scales(length_scale, noise_scale, noise_scale_w)
        texts = [texts] if isinstance(texts, str) else list(texts)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ConfigError(f"synthesize: batch_size must be an integer >= 1 or None, got {batch_size!r}")
        if labels is not None and len(labels) != len(texts):
            raise ValueError(f"synthesize_batches: {len(labels)} labels for {len(texts)} texts")
        ids = self.encode_texts(texts, labels)
        voice = self.speaker_inputs(speaker, speaker_wav, 1)  # a reference is embedded once
        size = min(batch_size or len(ids), len(ids))
        order = list(range(len(ids)))
        if size < len(ids):  # one batch keeps the given order (and so the random draws of each text)
            order.sort(key=lambda i: -len(ids[i]))
        pending = [order[start:start + size] for start in range(0, len(order), size)][::-1]  # a stack
        freed_for = None  # the batch retried as it was after the graphs were released
        while pending:
            indices = pending.pop()
            try:
                batch = self._synthesize_ids([ids[i] for i in indices], indices, voice, length_scale, noise_scale,
                                             noise_scale_w)
            except _TooBig as too_big:
                memory = too_big.failure == TOO_LONG_TO_ALLOCATE
                if memory:  # the graphs of earlier shapes hold their memory pools
                    self.synthesizer.release_graphs()
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                if memory and len(indices) == 1 and freed_for != indices:  # once more, without them
                    freed_for = indices
                    pending.append(indices)
                    continue
                if len(indices) > 1:
                    logger.warning("synthesize: a batch of %d texts failed (the predicted durations are %s); "
                                   "splitting it", len(indices), too_big.failure)
                    half = len(indices) // 2
                    pending += [indices[half:], indices[:half]]
                    continue
                label = labels[indices[0]] if labels is not None else f"text {indices[0]}"
                raise DataError(f"synthesize: {label}: the predicted durations are {too_big.failure} (length_scale "
                                f"{length_scale}, noise_scale_w {noise_scale_w}); lower noise_scale_w or "
                                "length_scale, or split the text (or, for speech this slow on purpose, raise "
                                "max_frames_per_token)") from None
            for index, waveform in zip(batch.indices, batch.waveforms):
                if not bool(torch.isfinite(waveform).all()):  # (saving would clip NaN to a full-scale square)
                    label = labels[index] if labels is not None else f"text {index}"
                    raise DataError(f"{self.folder}: the model synthesized non-finite audio for {label} (its "
                                    "weights may have diverged: pack an earlier checkpoint)")
            yield batch

    @torch.inference_mode()
    def _synthesize_ids(self, ids: list[list[int]], indices: list[int], voice: dict, length_scale: float,
                        noise_scale: float, noise_scale_w: float) -> SynthesizedBatch:
        """One batch of token id sequences; a size failure is :class:`_TooBig`."""
        tokens, lengths = self.pad_ids(ids)
        batch = len(ids)
        speaker_inputs = {k: v.expand(batch, *v.shape[1:]).contiguous().to(self.device) for k, v in voice.items()}
        try:
            out = self.synthesizer(tokens.to(self.device), lengths.to(self.device), noise_scale=noise_scale,
                                   noise_scale_w=noise_scale_w, length_scale=length_scale, **speaker_inputs)
        except (RuntimeError, MemoryError) as err:
            failure = _size_failure(err)
            if failure is None:
                raise
            raise _TooBig(failure) from None
        wav_lengths = out.wav_lengths.tolist()
        return SynthesizedBatch(indices, [out.waveform[i, 0, :wav_lengths[i]].float().cpu() for i in range(batch)],
                                [out.durations[i, :int(lengths[i])].cpu() for i in range(batch)])

    def clone_voice(self, text: str, ref_wav: str | Path, **kwargs) -> tuple[torch.Tensor, int]:
        """Synthesize ``text`` zero-shot in the voice of one recording.

        Arguments
        ---------
        text : str
            A raw text.
        ref_wav : str or Path
            The reference recording (any rate; mixed to mono).
        **kwargs
            ``length_scale``, ``noise_scale``, ``noise_scale_w``.

        Returns
        -------
        waveform : torch.Tensor
            ``[T]``.
        sample_rate : int
        """
        if not self.embedded:
            raise ConfigError(f"{self.folder}: voice cloning needs a model trained with speaker_mode speaker or "
                              f"utterance (this one: {self.hparams['speaker_mode']})")
        wavs, sr = self.synthesize([text], speaker_wav=ref_wav, **kwargs)
        return wavs[0], sr

    @torch.inference_mode()
    def convert_voice(self, source_wav: str | Path, target_wav: str | Path | None = None,
                      target_speaker: str | None = None,
                      source_speaker: str | None = None) -> tuple[torch.Tensor, int]:
        """VITS voice conversion: the source's posterior and flow under the source
        speaker's conditioning, the inverse flow and decoder under the target's.

        The source conditioning: in the embedding modes, the CAM++ vector of
        the source recording itself (zero-shot), or the mean vector of
        training speaker ``source_speaker`` when given; in ``sid`` mode,
        training speaker ``source_speaker``, which is required when the model
        has more than one speaker (as the original VITS takes ``sid_src``).

        Arguments
        ---------
        source_wav : str or Path
            The speech to convert (resampled to the model's rate).
        target_wav : str or Path, optional
            A recording of the target voice (embedding modes).
        target_speaker : str, optional
            A training speaker.
        source_speaker : str, optional
            The training speaker who speaks in ``source_wav`` (``--source-speaker``).

        Returns
        -------
        waveform : torch.Tensor
            ``[T]``, as long as the source (at the model's rate).
        sample_rate : int

        Example
        -------
        >>> model = SemTTS.from_hparams("exp/vctk/default/packed")  # doctest: +SKIP
        >>> wav, sr = model.convert_voice("p225_001.wav", target_speaker="p226",
        ...                               source_speaker="p225")  # doctest: +SKIP
        """
        if (target_wav is None) == (target_speaker is None):
            raise ConfigError("convert_voice: give exactly one of target_wav and target_speaker")
        if self.generator.speaker is None:
            raise ConfigError(f"{self.folder}: a single-speaker model cannot convert voices")
        if not self.embedded:
            if target_wav is not None:
                raise ConfigError(f"{self.folder}: speaker_mode sid converts only to a training speaker "
                                  "(--target-speaker)")
            if source_speaker is None and len(self.speakers) > 1:
                shown = ", ".join(self.speakers[:8]) + (" ..." if len(self.speakers) > 8 else "")
                raise ConfigError(f"{self.folder}: speaker_mode sid needs the training speaker of the source "
                                  f"recording: give --source-speaker (source_speaker=), one of: {shown}")
        if source_speaker is not None:
            g_src = self.speaker_condition(source_speaker, what="source speaker")
        wav, sr = read_checked_audio(source_wav, "source recording")
        if source_speaker is None:
            if self.embedded:
                g_src = self.generator.speaker_condition(spk_embed=self.embed_wav(source_wav, "source recording")
                                                         [None].to(self.device))
            else:
                g_src = self.speaker_condition(None)  # the only training speaker
        g_tgt = self.speaker_condition(target_speaker, target_wav, what="target speaker")
        wav = resample(wav, sr, self.sample_rate)
        n = wav.numel()
        hop = self.spectrogram.hop_length
        padded = torch.nn.functional.pad(wav, (0, (-n) % hop))
        if padded.numel() <= self.spectrogram.n_fft:
            raise DataError(f"{source_wav}: the source recording is too short to convert")
        spec = self.spectrogram.linear_spectrogram(padded[None].to(self.device))
        lengths = torch.tensor([spec.size(-1)], device=self.device)
        out = self.generator.voice_conversion(spec, lengths, g_src, g_tgt)[0, 0, :n].float().cpu()
        if not bool(torch.isfinite(out).all()):
            raise DataError(f"{self.folder}: the model converted {source_wav} to non-finite audio (its weights "
                            "may have diverged: pack an earlier checkpoint)")
        return out, self.sample_rate

    def summary(self) -> str:
        """A few lines describing the packed model (what ``semtts info`` prints)."""
        n_params = sum(t.numel() for t in self.generator.parameters())
        return "\n".join([*self.summary_lines(), f"generator parameters: {n_params:,}"])
