"""The inference interface of a packed model (stage 10): :class:`SemTTS`.

It follows SpeechBrain's pretrained interfaces (``from_hparams(source,
savedir, run_opts)``) and loads nothing of the training code: the
generator is rebuilt from the packed ``hyperparams.yaml``
(:mod:`semtts.pack`), the text goes through :class:`~semtts.text.frontend.Frontend`,
and zero-shot voices through CAM++ (:class:`~semtts.extract.speaker.SpeakerEmbedder`).

Example
-------
>>> model = SemTTS.from_hparams(source="exp/mini/default/packed")  # doctest: +SKIP
>>> wavs, sr = model.synthesize(["Hello there."], speaker="spk0")  # doctest: +SKIP
>>> wavs[0].shape  # [T] samples  # doctest: +SKIP
torch.Size([30720])
"""

import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from semtts.audio import SpectrogramConfig, load_audio, resample
from semtts.errors import ConfigError, DataError
from semtts.extract.speaker import SpeakerEmbedder
from semtts.pack import build_packed_generator, load_weights, read_packed_hparams
from semtts.text.frontend import Frontend
from semtts.text.tokenizer import BLANK_ID, TokenList, intersperse

__all__ = ["SemTTS"]

logger = logging.getLogger(__name__)


def _read_wav(path: str | Path, what: str) -> tuple[torch.Tensor, int]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        wav, sr = load_audio(path, mono=True)
    except Exception as err:  # soundfile raises several types for foreign files
        raise DataError(f"{path}: cannot read the {what} ({str(err).splitlines()[0][:150]})") from None
    if wav.numel() == 0:
        raise DataError(f"{path}: the {what} is empty")
    return wav.reshape(-1).float(), int(sr)


class SemTTS:
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

    Example
    -------
    >>> SemTTS.from_hparams("no/such/dir")
    Traceback (most recent call last):
    ...
    semtts.errors.DataError: no/such/dir: model folder not found
    """

    def __init__(self, folder: Path, packed: dict, generator: torch.nn.Module, frontend: Frontend,
                 device: torch.device):
        self.folder = folder
        self.hparams = packed
        self.generator = generator
        self.frontend = frontend
        self.device = device
        self.speakers: list[str] = list(packed.get("speakers") or [])
        self.sample_rate = int(packed["spectrogram"]["sample_rate"])
        self.spectrogram = SpectrogramConfig(**packed["spectrogram"])
        self.spk_means = None
        if self.embedded:
            self.spk_means = torch.from_numpy(np.load(folder / "spk_mean.npy")).float()
        self._embedder: SpeakerEmbedder | None = None
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
            ``{"device": "cuda:0"}`` (default CPU).

        Returns
        -------
        SemTTS
        """
        folder = Path(source)
        packed = read_packed_hparams(folder)
        if savedir is not None and Path(savedir).resolve() != folder.resolve():
            shutil.copytree(folder, savedir, dirs_exist_ok=True)
            folder = Path(savedir)
        device = torch.device((run_opts or {}).get("device") or "cpu")
        generator = build_packed_generator(packed)
        try:
            generator.load_state_dict(load_weights(folder), strict=True)
        except RuntimeError as err:
            raise DataError(f"{folder}: the weights do not fit hyperparams.yaml ({str(err).splitlines()[0]})") \
                from None
        front = packed["frontend"]
        bpe = folder / "bpe.model" if front["token_type"] == "bpe" else None
        tokens = TokenList.load(folder / "tokens.txt") if bpe is None else None
        frontend = Frontend(front["token_type"], front["language"], front["cleaner"], token_list=tokens,
                            bpe_model=bpe)
        return cls(folder, packed, generator.to(device).eval(), frontend, device)

    @property
    def embedded(self) -> bool:
        """Whether the model is conditioned on CAM++ vectors (zero-shot capable)."""
        return self.hparams["speaker_mode"] in ("speaker", "utterance")

    @property
    def embedder(self) -> SpeakerEmbedder:
        """CAM++ as in training (built on first use; random-init rebuilt from its seed, with a warning)."""
        if not self.embedded:
            raise ConfigError(f"{self.folder}: speaker_mode {self.hparams['speaker_mode']} has no speaker "
                              "embeddings; zero-shot voices need a model trained with speaker or utterance mode")
        if self._embedder is None:
            cam = self.hparams["campplus"]
            if cam.get("random_init"):
                logger.warning("%s: CAM++ was random-init in training; rebuilding it from seed %s (its vectors "
                               "carry no speaker identity)", self.folder, cam.get("seed"))
            self._embedder = SpeakerEmbedder.from_checkpoint(
                None if cam.get("random_init") else cam.get("ckpt"), int(cam["embed_dim"]),
                allow_random_init=bool(cam.get("random_init")), seed=int(cam.get("seed") or 0), device=self.device)
        return self._embedder

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
        if speaker is not None and speaker_wav is not None:
            raise ConfigError(f"give a {what} id or a reference wav, not both")
        gen = self.generator
        if gen.speaker is None:
            if speaker is not None or speaker_wav is not None:
                raise ConfigError(f"{self.folder}: a single-speaker model takes no {what}")
            return None
        if speaker_wav is not None:
            wav, sr = _read_wav(speaker_wav, "reference recording")
            vector = self.embedder.embed([wav], sr)[0]
            if not torch.isfinite(vector).all():
                raise DataError(f"{speaker_wav}: the reference gives a non-finite speaker embedding")
            return gen.speaker_condition(spk_embed=vector[None].to(self.device))
        if speaker is None:
            if not self.speakers:
                raise ConfigError(f"{self.folder}: give a {what} (a reference wav)")
            speaker = self.speakers[0]
        if speaker not in self.speakers:
            shown = ", ".join(self.speakers[:8]) + (" ..." if len(self.speakers) > 8 else "")
            raise ConfigError(f"unknown {what} {speaker!r}; this model knows: {shown}")
        row = self.speakers.index(speaker)
        if self.embedded:
            return gen.speaker_condition(spk_embed=self.spk_means[row:row + 1].to(self.device))
        return gen.speaker_condition(sid=torch.tensor([row], device=self.device))

    def _infer_args(self, speaker: str | None, speaker_wav: str | Path | None, batch: int) -> dict:
        """The ``sid`` / ``spk_embed`` keyword of ``infer`` for a batch."""
        gen = self.generator
        if gen.speaker is None:
            self.speaker_condition(speaker, speaker_wav)  # raises if a speaker was given
            return {}
        if self.embedded:
            if speaker_wav is not None:
                wav, sr = _read_wav(speaker_wav, "reference recording")
                vector = self.embedder.embed([wav], sr)[0]
            else:
                self.speaker_condition(speaker)  # checks the id
                name = speaker if speaker is not None else self.speakers[0]
                vector = self.spk_means[self.speakers.index(name)]
            return {"spk_embed": vector[None].expand(batch, -1).to(self.device)}
        if speaker_wav is not None:
            raise ConfigError(f"{self.folder}: speaker_mode sid cannot clone a voice from a recording")
        self.speaker_condition(speaker)
        row = self.speakers.index(speaker if speaker is not None else self.speakers[0])
        return {"sid": torch.full((batch,), row, dtype=torch.long, device=self.device)}

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
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise DataError("synthesize: give one or more non-empty texts")
        ids, unknown = self.frontend.encode(texts)
        if unknown:
            logger.warning("symbols outside the model's token list became <unk>: %s", dict(unknown))
        if self.hparams["frontend"]["add_blank"]:
            ids = [intersperse(x, BLANK_ID) for x in ids]
        for number, x in enumerate(ids):
            if not x:
                raise DataError(f"synthesize: text {number} gives no tokens: {texts[number]!r}")
        lengths = torch.tensor([len(x) for x in ids], device=self.device)
        tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long, device=self.device)
        for i, x in enumerate(ids):
            tokens[i, :len(x)] = torch.tensor(x)
        out = self.generator.infer(tokens, lengths, noise_scale=noise_scale, noise_scale_w=noise_scale_w,
                                   length_scale=length_scale, **self._infer_args(speaker, speaker_wav, len(ids)))
        self.last_durations = [out.durations[i, :int(lengths[i])].cpu() for i in range(len(ids))]
        wavs = [out.waveform[i, 0, :int(out.wav_lengths[i])].float().cpu() for i in range(len(ids))]
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
        wav, sr = _read_wav(source_wav, "source recording")
        if self.embedded:
            g_src = self.generator.speaker_condition(
                spk_embed=self.embedder.embed([wav], sr)[0][None].to(self.device))
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
        p = self.hparams
        n_params = sum(t.numel() for t in self.generator.parameters())
        cam = p.get("campplus") or {}
        lines = [f"model: {self.folder}", f"stage: {p['stage']}  corpus: {p.get('corpus')}",
                 f"sample rate: {self.sample_rate} Hz  parameters: {n_params:,}",
                 f"text: {p['frontend']['token_type']} ({p['frontend']['language']}), "
                 f"{len(self.frontend.token_list)} tokens",
                 f"speaker mode: {p['speaker_mode']}  speakers ({len(self.speakers)}): "
                 f"{', '.join(self.speakers[:10])}{' ...' if len(self.speakers) > 10 else ''}"]
        if cam:
            source = f"random init (seed {cam.get('seed')})" if cam.get("random_init") else cam.get("ckpt")
            lines.append(f"CAM++: {source}, {cam.get('embed_dim')}-d")
        if p.get("training"):
            lines.append("training: " + ", ".join(f"{k} {v}" for k, v in p["training"].items()))
        return "\n".join(lines)

