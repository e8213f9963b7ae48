"""What every runner of a packed model (stage 10) shares: the folder, its
text frontend and its voices. :class:`PackedModel` holds no generator, so a
runner that brings its own engine (:class:`semtts.pretrained.SemTTS` with
PyTorch, :class:`semtts.onnx_runtime.OnnxSynthesizer` with ONNX Runtime)
adds only that.

Example
-------
>>> PackedModel.open("no/such/dir")
Traceback (most recent call last):
...
semtts.errors.DataError: no/such/dir: model folder not found
"""

import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from semtts.audio import SpectrogramConfig
from semtts.durable import fsync_path, fsync_tree
from semtts.errors import ConfigError, DataError, first_line
from semtts.extract.speaker import SpeakerEmbedder
from semtts.inference import embed_recording
from semtts.pack import CAMPPLUS_FILE, REPLACED, check_packed_sizes, read_packed_hparams
from semtts.text.frontend import Frontend
from semtts.text.tokenizer import BLANK_ID, TokenList, intersperse

__all__ = ["PackedModel", "copy_into_savedir"]

logger = logging.getLogger(__name__)


def _read_means(path: Path, n_speakers: int) -> torch.Tensor:
    """``spk_mean.npy``: ``[S, D]`` float32, one row per speaker; one-line errors naming the file."""
    try:
        means = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: not found (the speakers' mean embeddings; repack the model)") from None
    except Exception as err:  # truncated or foreign files raise many types
        raise DataError(f"{path}: cannot read the speakers' mean embeddings ({first_line(err)})") from None
    if means.ndim != 2 or means.shape[0] != n_speakers or not np.isfinite(means).all():
        raise DataError(f"{path}: expected finite [{n_speakers}, D] mean embeddings, got shape {list(means.shape)}")
    return torch.from_numpy(means.astype(np.float32))


def copy_into_savedir(source: Path, savedir: str | Path) -> Path:
    """Copy a packed folder to ``savedir``, replacing an earlier model there as a whole.

    The model is copied into a hidden folder inside ``savedir`` and flushed
    first; then the files of an earlier model (a pack's own names,
    :data:`semtts.pack.REPLACED`: weights, ``model.onnx``, ``spk_mean.npy``
    ...) and any file the new model brings are moved aside, and the new
    files moved in. ``savedir`` ends up holding exactly the new model plus
    the user's other files; a failed or interrupted copy puts everything
    back as it was. A copy killed outright (the hidden folders are left)
    is finished by the next call, which removes those folders first.

    Arguments
    ---------
    source : Path
        The packed folder.
    savedir : str or Path
        Where the copy goes (created with its parents); neither folder may
        lie inside the other.

    Returns
    -------
    Path
        ``savedir``.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "src").mkdir(); _ = (root / "src" / "tokens.txt").write_text("a")
    >>> (root / "dst").mkdir(); _ = (root / "dst" / "model.onnx").write_text("old")
    >>> _ = (root / "dst" / "notes.txt").write_text("mine")
    >>> sorted(p.name for p in copy_into_savedir(root / "src", root / "dst").iterdir())
    ['notes.txt', 'tokens.txt']
    """
    savedir = Path(savedir)
    target, origin = savedir.resolve(), source.resolve()  # a link to a folder: the folder's files are replaced
    if target.is_relative_to(origin) or origin.is_relative_to(target):
        raise ConfigError(f"savedir {savedir}: must not contain the model folder {source} or lie inside it")
    if target.exists() and not target.is_dir():
        raise DataError(f"savedir {savedir}: is a file, not a folder")
    created = not target.exists()
    if not created:  # the hidden folders of a copy killed outright: the copy below replaces the model anyway
        for leftover in sorted(target.glob(".semtts-new-*")) + sorted(target.glob(".semtts-old-*")):
            logger.warning("savedir %s: removing %s, left by an interrupted copy", savedir, leftover.name)
            shutil.rmtree(leftover, ignore_errors=True)
    staging = trash = None
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".semtts-new-", dir=target))
        trash = Path(tempfile.mkdtemp(prefix=".semtts-old-", dir=target))
        shutil.copytree(source, staging, dirs_exist_ok=True)
        fsync_tree(staging)
        names = sorted(p.name for p in staging.iterdir())
        for entry in sorted(target.iterdir()):
            if entry.name in REPLACED or entry.name in names:
                os.rename(entry, trash / entry.name)
                moved_out.append(entry.name)
        for name in names:
            os.rename(staging / name, target / name)
            moved_in.append(name)
        fsync_path(target)
    except BaseException as err:  # an interrupt too: the earlier model is put back
        kept = _undo_moves(target, staging, trash, moved_in, moved_out)
        if created and not kept:
            shutil.rmtree(target, ignore_errors=True)
        if not isinstance(err, OSError):
            raise
        raise DataError(f"savedir {savedir}: cannot copy the model there ({first_line(err, 150)})"
                        + (f"; the earlier files are in {trash}" if kept else "")) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)
    return savedir


def _undo_moves(target: Path, staging: Path | None, trash: Path | None, moved_in: list[str],
                moved_out: list[str]) -> bool:
    """Put ``savedir`` back as it was after a failed :func:`copy_into_savedir`; True when ``trash`` must stay."""
    try:
        for name in reversed(moved_in):
            os.rename(target / name, staging / name)
        for name in reversed(moved_out):
            os.rename(trash / name, target / name)
    except OSError:
        return True
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    return False


class PackedModel:
    """A packed folder's hyperparameters, frontend and voices (no generator).

    Arguments
    ---------
    folder : Path
        The packed folder.
    packed : dict
        Its ``hyperparams.yaml``.
    frontend : Frontend
        Text to token ids.
    device : torch.device
        Where CAM++ runs (zero-shot voices).
    """

    def __init__(self, folder: Path, packed: dict, frontend: Frontend, device: torch.device):
        self.folder = folder
        self.hparams = packed
        self.frontend = frontend
        self.device = device
        self.speakers: list[str] = list(packed.get("speakers") or [])
        try:
            self.spectrogram = SpectrogramConfig(**packed["spectrogram"])
        except (TypeError, ValueError) as err:  # an edited section (ConfigError names the bad value itself)
            raise DataError(f"{folder / 'hyperparams.yaml'}: the 'spectrogram' section does not fit this semtts "
                            f"({first_line(err)})") from None
        self.sample_rate = int(self.spectrogram.sample_rate)
        self.spk_means = None
        if self.embedded:
            self.spk_means = _read_means(folder / "spk_mean.npy", len(self.speakers))
        width = None if self.spk_means is None else int(self.spk_means.shape[1])
        check_packed_sizes(packed, len(frontend.token_list), width, folder)  # before anything runs on them
        self._embedder: SpeakerEmbedder | None = None

    @staticmethod
    def open(source: str | Path, savedir: str | Path | None = None) -> tuple[Path, dict, Frontend]:
        """Read a packed folder's hyperparameters and build its frontend.

        Arguments
        ---------
        source : str or Path
            The packed folder (stage 10's ``<output_folder>/packed``).
        savedir : str or Path, optional
            Copy the folder there first and use the copy (:func:`copy_into_savedir`).

        Returns
        -------
        folder : Path
            The folder in use.
        packed : dict
            Its ``hyperparams.yaml``.
        frontend : Frontend
        """
        folder = Path(source)
        packed = read_packed_hparams(folder)
        if savedir is not None and Path(savedir).resolve() != folder.resolve():
            folder = copy_into_savedir(folder, savedir)
        front = packed["frontend"]
        bpe = folder / "bpe.model" if front["token_type"] == "bpe" else None
        tokens = TokenList.load(folder / "tokens.txt") if bpe is None else None
        frontend = Frontend(front["token_type"], front["language"], front["cleaner"], token_list=tokens,
                            bpe_model=bpe)
        check_packed_sizes(packed, len(frontend.token_list), None, folder)  # before the weights are loaded
        return folder, packed, frontend

    @property
    def embedded(self) -> bool:
        """Whether the model is conditioned on CAM++ vectors (zero-shot capable)."""
        return self.hparams["speaker_mode"] in ("speaker", "utterance")

    @property
    def multi_speaker(self) -> bool:
        """Whether the model takes a speaker at all."""
        gen = self.hparams["generator"]
        return bool(gen.get("n_speakers") or gen.get("spk_embed_dim"))

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
            ckpt = None if cam.get("random_init") else cam.get("ckpt")
            if ckpt == CAMPPLUS_FILE:  # packed with the model
                ckpt = str(self.folder / CAMPPLUS_FILE)
            self._embedder = SpeakerEmbedder.from_checkpoint(
                ckpt, int(cam["embed_dim"]), allow_random_init=bool(cam.get("random_init")),
                seed=int(cam.get("seed") or 0), device=self.device)
            self._check_campplus(self._embedder.identity)
        return self._embedder

    def _check_campplus(self, identity: str) -> None:
        """The CAM++ loaded must be the one the training vectors were made with."""
        meta_file = self.folder / "campplus_meta.json"
        expected = None
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
                raise DataError(f"{meta_file}: unreadable ({first_line(err)}); repack the model (stage 10)") from None
            if not isinstance(meta, dict):
                raise DataError(f"{meta_file}: not a JSON object; repack the model (stage 10)")
            expected = meta.get("ckpt_sha256")
        if expected and identity != expected:
            raise DataError(f"{self.folder}: the CAM++ loaded ({identity[:16]}) is not the one the model was trained "
                            f"with ({expected[:16]}, campplus_meta.json); repack the model (stage 10)")

    def encode_texts(self, texts: list[str] | str, labels: list[str] | None = None) -> list[list[int]]:
        """Raw texts to the model's token ids (blanks interspersed when the model was trained so).

        Symbols outside the model's token list (punctuation a pinyin model
        never saw, letters of another script) are left out with one warning
        that names them; so are letters the cleaner cannot read.

        Arguments
        ---------
        texts : list of str or str
            Raw texts (one string is a batch of one).
        labels : list of str, optional
            What to call each text in an error (default ``text <index>``),
            e.g. ``lines.txt line 3``.

        Returns
        -------
        list of list of int
            One non-empty id sequence per text.

        Raises
        ------
        DataError
            If no text is given, or a text leaves nothing to speak (no
            symbol with a letter or digit) once cleaned and rid of unknown
            symbols.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if labels is not None and len(labels) != len(texts):
            raise ValueError(f"encode_texts: {len(labels)} labels for {len(texts)} texts")
        if not texts:
            raise DataError("synthesize: give one or more non-empty texts")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                label = labels[i] if labels is not None else f"text {i}"
                raise DataError(f"synthesize: {label} is {'empty' if isinstance(text, str) else type(text).__name__}; "
                                "give non-empty texts")
        removed = sum(self.frontend.removed_letters(texts), Counter())
        if removed:
            logger.warning("synthesize: the %s cleaner left out letters it cannot read: %s",
                           self.frontend.cleaner, dict(removed.most_common()))
        ids, unknown = self.frontend.encode(texts, drop_unknown=True)
        if unknown:
            logger.warning("synthesize: left out symbols outside the model's token list: %s",
                           dict(unknown.most_common()))
        empty = [number for number, x in enumerate(ids)
                 if not any(c.isalnum() for symbol in self.frontend.token_list.decode(x) for c in symbol)]
        if empty:  # every such text in the one line, so that one fix pass mends them all
            names = [labels[n] if labels is not None else f"text {n}" for n in empty]
            more = f" (also {', '.join(names[1:4])}{' ...' if len(names) > 4 else ''})" if len(names) > 1 else ""
            raise DataError(f"synthesize: {names[0]} gives no tokens: {texts[empty[0]]!r:.80}{more}")
        if self.hparams["frontend"]["add_blank"]:
            ids = [intersperse(x, BLANK_ID) for x in ids]
        return ids

    def token_batch(self, texts: list[str] | str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw texts to a padded CPU batch: ``tokens`` ``[B, T_text]`` and ``token_lengths`` ``[B]`` (long).

        Arguments
        ---------
        texts : list of str or str
            Raw texts.

        Returns
        -------
        tokens, token_lengths : torch.Tensor
        """
        return self.pad_ids(self.encode_texts(texts))

    @staticmethod
    def pad_ids(ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token id sequences (:meth:`encode_texts`) to a zero-padded CPU batch.

        Arguments
        ---------
        ids : list of list of int
            One non-empty sequence per text.

        Returns
        -------
        tokens, token_lengths : torch.Tensor
            ``[B, max length]`` and ``[B]`` (long).

        Example
        -------
        >>> tokens, lengths = PackedModel.pad_ids([[3, 4, 5], [6]])
        >>> tokens.tolist(), lengths.tolist()
        ([[3, 4, 5], [6, 0, 0]], [3, 1])
        """
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
        for i, x in enumerate(ids):
            tokens[i, :len(x)] = torch.tensor(x)
        return tokens, lengths

    def speaker_row(self, speaker: str | None, what: str = "speaker") -> int:
        """The row of a training speaker in the speaker table (default: the first one).

        Arguments
        ---------
        speaker : str, optional
            A training speaker id (``info`` lists them).
        what : str
            The flag name, for the messages.

        Returns
        -------
        int
        """
        if speaker is None:
            if not self.speakers:
                raise ConfigError(f"{self.folder}: give a {what} (a reference wav)")
            speaker = self.speakers[0]
            if len(self.speakers) > 1:
                logger.warning("no %s given: speaking as %r, the first of the %d this model knows", what, speaker,
                               len(self.speakers))
        if speaker not in self.speakers:
            shown = ", ".join(self.speakers[:8]) + (" ..." if len(self.speakers) > 8 else "")
            raise ConfigError(f"unknown {what} {speaker!r}; this model knows: {shown}")
        return self.speakers.index(speaker)

    def embed_wav(self, path: str | Path, what: str = "reference recording") -> torch.Tensor:
        """The CAM++ vector ``[spk_embed_dim]`` of one recording (embedding models).

        Arguments
        ---------
        path : str or Path
            The recording (any rate; mixed to mono).
        what : str
            What it is, for the messages.

        Returns
        -------
        torch.Tensor
        """
        return embed_recording(self.embedder, path, what)

    def speaker_inputs(self, speaker: str | None, speaker_wav: str | Path | None, batch: int,
                       what: str = "speaker") -> dict:
        """The speaker input of a batch in one voice: ``{"sid": [B] long}``,
        ``{"spk_embed": [B, D] float}`` (CPU tensors) or ``{}`` (single speaker).

        Arguments
        ---------
        speaker : str, optional
            A training speaker (default: the first one).
        speaker_wav : str or Path, optional
            A reference recording to clone (embedding models).
        batch : int
            The batch size.
        what : str
            The flag name, for the messages.

        Returns
        -------
        dict
        """
        if speaker is not None and speaker_wav is not None:
            raise ConfigError(f"give a {what} id or a reference wav, not both")
        if not self.multi_speaker:
            if speaker is not None or speaker_wav is not None:
                raise ConfigError(f"{self.folder}: a single-speaker model takes no {what}")
            return {}
        if self.embedded:
            if speaker_wav is not None:
                # the target of a conversion is its reference recording too: named as such
                vector = self.embed_wav(speaker_wav, "target reference recording" if what == "target speaker"
                                        else "reference recording").cpu()
            else:
                vector = self.spk_means[self.speaker_row(speaker, what)]
            return {"spk_embed": vector[None].expand(batch, -1).contiguous()}
        if speaker_wav is not None:
            raise ConfigError(f"{self.folder}: speaker_mode sid cannot clone a voice from a recording")
        return {"sid": torch.full((batch,), self.speaker_row(speaker, what), dtype=torch.long)}

    def summary_lines(self) -> list[str]:
        """Lines describing the packed model (the runner adds its own)."""
        p = self.hparams
        cam = p.get("campplus") or {}
        lines = [f"model: {self.folder}", f"stage: {p['stage']}  corpus: {p.get('corpus')}",
                 f"sample rate: {self.sample_rate} Hz",
                 f"text: {p['frontend']['token_type']} ({p['frontend']['language']}), "
                 f"{len(self.frontend.token_list)} tokens",
                 f"speaker mode: {p['speaker_mode']}  speakers ({len(self.speakers)}): "
                 f"{', '.join(self.speakers[:10])}{' ...' if len(self.speakers) > 10 else ''}"]
        if cam:
            source = f"random init (seed {cam.get('seed')})" if cam.get("random_init") else cam.get("ckpt")
            lines.append(f"CAM++: {source}, {cam.get('embed_dim')}-d")
        if p.get("training"):
            lines.append("training: " + ", ".join(f"{k} {v}" for k, v in p["training"].items()))
        return lines
