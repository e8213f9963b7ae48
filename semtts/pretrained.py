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
"""

from pathlib import Path

import torch

from semtts.audio import read_checked_audio, resample
from semtts.errors import ConfigError, DataError
from semtts.graphed_inference import GraphedSynthesizer
from semtts.pack import build_packed_generator, load_weights
from semtts.packed_model import PackedModel
from semtts.text.frontend import Frontend

__all__ = ["SemTTS"]


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

    Example
    -------
    >>> SemTTS.from_hparams("no/such/dir")
    Traceback (most recent call last):
    ...
    semtts.errors.DataError: no/such/dir: model folder not found
    """

    def __init__(self, folder: Path, packed: dict, generator: torch.nn.Module, frontend: Frontend,
                 device: torch.device, cuda_graphs: bool = True):
        super().__init__(folder, packed, frontend, device)
        self.generator = generator
        self.synthesizer = GraphedSynthesizer(generator, enabled=cuda_graphs)
        """Synthesis: replayed from CUDA graphs on a CUDA device (:mod:`semtts.graphed_inference`), else eager."""
        self.last_durations: list[torch.Tensor] | None = None
        """``[T_text_i]`` frames per token (blanks included) of the last :meth:`synthesize` batch."""

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
            synthesizes eagerly on CUDA too.

        Returns
        -------
        SemTTS
        """
        folder, packed, frontend = PackedModel.open(source, savedir)
        device = torch.device((run_opts or {}).get("device") or "cpu")
        generator = build_packed_generator(packed)
        try:
            generator.load_state_dict(load_weights(folder), strict=True)
        except RuntimeError as err:
            raise DataError(f"{folder}: the weights do not fit hyperparams.yaml ({str(err).splitlines()[0]})") \
                from None
        return cls(folder, packed, generator.to(device).eval(), frontend, device,
                   cuda_graphs=bool((run_opts or {}).get("cuda_graphs", True)))

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

    @torch.inference_mode()
    def synthesize(self, texts: list[str] | str, speaker: str | None = None, speaker_wav: str | Path | None = None,
                   length_scale: float = 1.0, noise_scale: float = 0.667,
                   noise_scale_w: float = 0.8) -> tuple[list[torch.Tensor], int]:
        """Synthesize a batch of texts in one voice.

        Arguments
        ---------
        texts : list of str or str
            Raw texts (one string is a batch of one).
        speaker : str, optional
            A training speaker (default: the first one).
        speaker_wav : str or Path, optional
            A reference recording to clone (embedding modes).
        length_scale, noise_scale, noise_scale_w : float
            Speed, prior noise and duration noise (see ``VITSSynthesizer.infer``).

        Returns
        -------
        waveforms : list of torch.Tensor
            One ``[T_i]`` float32 CPU tensor per text, ``T_i = sum(durations_i) * hop``.
        sample_rate : int
        """
        tokens, lengths = self.token_batch(texts)
        tokens, batch = tokens.to(self.device), len(lengths)
        speaker_inputs = {k: v.to(self.device) for k, v in self.speaker_inputs(speaker, speaker_wav, batch).items()}
        out = self.synthesizer(tokens, lengths.to(self.device), noise_scale=noise_scale, noise_scale_w=noise_scale_w,
                                   length_scale=length_scale, **speaker_inputs)
        self.last_durations = [out.durations[i, :int(lengths[i])].cpu() for i in range(batch)]
        wav_lengths = out.wav_lengths.tolist()
        wavs = [out.waveform[i, 0, :wav_lengths[i]].float().cpu() for i in range(batch)]
        return wavs, self.sample_rate

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
                      target_speaker: str | None = None) -> tuple[torch.Tensor, int]:
        """VITS voice conversion: the source's posterior and flow under its own
        conditioning, the inverse flow and decoder under the target's. In the
        embedding modes both sides come from CAM++ (zero-shot); in ``sid``
        mode the source is assumed to be the first training speaker.

        Arguments
        ---------
        source_wav : str or Path
            The speech to convert (resampled to the model's rate).
        target_wav : str or Path, optional
            A recording of the target voice (embedding modes).
        target_speaker : str, optional
            A training speaker.

        Returns
        -------
        waveform : torch.Tensor
            ``[T]``, as long as the source (at the model's rate).
        sample_rate : int
        """
        if (target_wav is None) == (target_speaker is None):
            raise ConfigError("convert_voice: give exactly one of target_wav and target_speaker")
        if self.generator.speaker is None:
            raise ConfigError(f"{self.folder}: a single-speaker model cannot convert voices")
        wav, sr = read_checked_audio(source_wav, "source recording")
        if self.embedded:
            g_src = self.generator.speaker_condition(spk_embed=self.embed_wav(source_wav, "source recording")
                                                     [None].to(self.device))
        else:
            if target_wav is not None:
                raise ConfigError(f"{self.folder}: speaker_mode sid converts only to a training speaker "
                                  "(--target-speaker)")
            g_src = self.speaker_condition(None)
        g_tgt = self.speaker_condition(target_speaker, target_wav, what="target speaker")
        wav = resample(wav, sr, self.sample_rate)
        n = wav.numel()
        hop = self.spectrogram.hop_length
        padded = torch.nn.functional.pad(wav, (0, (-n) % hop))
        if padded.numel() <= self.spectrogram.n_fft:
            raise DataError(f"{source_wav}: the source recording is too short to convert")
        spec = self.spectrogram.linear_spectrogram(padded[None].to(self.device))
        lengths = torch.tensor([spec.size(-1)], device=self.device)
        out = self.generator.voice_conversion(spec, lengths, g_src, g_tgt)
        return out[0, 0, :n].float().cpu(), self.sample_rate

    def summary(self) -> str:
        """A few lines describing the packed model (what ``semtts info`` prints)."""
        n_params = sum(t.numel() for t in self.generator.parameters())
        return "\n".join([*self.summary_lines(), f"generator parameters: {n_params:,}"])
