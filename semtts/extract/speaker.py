"""CAM++ speaker embeddings: fbank features, checkpoint loading, the
:class:`SpeakerEmbedder`, and the per-utterance / per-speaker outputs of
stage 3 (the entry point is :mod:`semtts.stages.speaker_embeddings`).

Features follow 3D-Speaker: 16 kHz audio in [-1, 1], Kaldi fbank (80 bins,
25 ms / 10 ms, povey window, dither 0) minus the utterance mean of every bin
(:mod:`semtts.audio.kaldi_fbank`).

Stage 3 writes to ``<output_folder>/spk_emb/``:

- ``feats/<utt>.npy``: one float32 ``[D]`` embedding per utterance (written
  atomically and flushed; existing files are skipped on resume, a corrupt one
  found when merging is removed and embedded again), or
  ``feats/<utt>.skipped.json`` with the reason (too short or non-finite audio;
  a missing or unreadable file is not recorded, so a rerun tries it again);
- ``utt_emb.npy`` ``[N, D]`` and ``spk_mean.npy`` ``[S, D]`` (the mean of a
  speaker's utterance embeddings), with ``index.json`` giving the row order
  (``utts``, ``spks``, ``speakers``, ``n_utts``);
- ``report.json`` (skipped utterances and why, ``retried_by_a_rerun``: those
  whose audio could not be read) and ``meta.json`` (model,
  checkpoint sha256, dimension, sample rate, fbank settings, semtts version).

Example
-------
>>> embedder = SpeakerEmbedder.from_checkpoint(None, embed_dim=192, allow_random_init=True, seed=0)
>>> wavs = [torch.randn(16000) * 0.1, torch.randn(24000) * 0.1]
>>> embedder.embed(wavs, sample_rate=16000).shape  # [N, D]
torch.Size([2, 192])
>>> embedder.metadata()["ckpt_sha256"]
'random-init-seed0'
"""

import hashlib
import logging
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qs, urlparse

import numpy as np
import torch
from tqdm import tqdm

from semtts.audio import cut_off, load_audio, resample
from semtts.audio.kaldi_fbank import FBANK, SAMPLE_RATE, compute_fbank
from semtts.data.manifest import resolve_audio_path, write_json_atomic
from semtts.errors import ConfigError, DataError, WeightsNotFound, first_line
from semtts.extract.common import (RETRIED_REASONS, SKIP_SUFFIX, UNREADABLE_SUFFIX, feature_path, file_sha256,
                                   load_array, load_or_discard, pending_utterances, read_metadata, save_array_atomic,
                                   skip_reason, unreadable_reason, write_metadata)
from semtts.lobes.campplus import CAMPPlus
from semtts.random_init import cpu_seeded

__all__ = [
    "SAMPLE_RATE", "FBANK", "CHECKPOINTS", "SKIP_SUFFIX", "UNREADABLE_SUFFIX", "RETRIED_REASONS", "compute_fbank",
    "resolve_checkpoint", "checkpoint_identity", "load_campplus", "speaker_metadata", "SpeakerEmbedder",
    "CorruptEmbeddings",
    "pending_utterances", "readable_again", "embed_utterances", "write_speaker_outputs", "load_speaker_embeddings",
    "expected_metadata",
]

logger = logging.getLogger(__name__)

# The published 3D-Speaker CAM++ checkpoints (ModelScope model id, file name), by dimension.
CHECKPOINTS = {
    192: ("iic/speech_campplus_sv_zh-cn_16k-common", "campplus_cn_common.bin"),
    512: ("iic/speech_campplus_sv_en_voxceleb_16k", "campplus_voxceleb.bin"),
}
_NESTING_KEYS = ("state_dict", "model", "embedding_model", "model_state_dict")


def _where_to_get() -> str:
    pages = "; ".join(f"{dim}-d: https://modelscope.cn/models/{model_id} (file {name})"
                      for dim, (model_id, name) in CHECKPOINTS.items())
    return (f"get a 3D-Speaker CAM++ checkpoint from ModelScope ({pages}) and set campplus_ckpt to "
            "its path or URL, or set allow_random_init: True (tests only)")


def resolve_checkpoint(ckpt: str, cache_dir: str | Path) -> Path:
    """The local file of a checkpoint given as a path or an http(s) URL;
    a URL is downloaded into ``cache_dir`` once.

    Arguments
    ---------
    ckpt : str
        A file path or URL.
    cache_dir : str or Path
        Where downloaded checkpoints are kept (by URL).

    Returns
    -------
    Path
        The checkpoint file.

    Raises
    ------
    WeightsNotFound
        When the file is missing or the download fails (e.g. offline).
    """
    if str(ckpt).startswith(("http://", "https://")):
        url = urlparse(ckpt)
        # the file's name (a ModelScope API URL names it in FilePath=), after a digest of the whole URL: two
        # URLs that end alike (.../repo?FilePath=...) never share a cached file
        name = Path(parse_qs(url.query).get("FilePath", [url.path])[0]).name or "campplus.bin"
        target = Path(cache_dir).expanduser() / f"{hashlib.sha256(ckpt.encode()).hexdigest()[:12]}-{name}"
        legacy = Path(cache_dir).expanduser() / (Path(url.path).name or "campplus.bin")  # the name it had before
        if not target.is_file() and legacy.is_file():
            logger.info("campplus_ckpt %s: using %s, downloaded under its earlier cache name", ckpt, legacy)
            return legacy
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(ckpt, str(target), progress=False)
            except (URLError, OSError, ValueError) as err:
                raise WeightsNotFound(f"campplus_ckpt {ckpt}: download failed ({err}); {_where_to_get()}") from None
        return target
    path = Path(ckpt).expanduser()
    if not path.is_file():
        raise WeightsNotFound(f"campplus_ckpt {ckpt}: file not found; {_where_to_get()}")
    return path


def checkpoint_identity(ckpt: str | None, allow_random_init: bool, cache_dir: str | Path, seed: int = 0) -> str:
    """What identifies the weights: the checkpoint's sha256, or
    ``"random-init-seed<N>"`` when ``ckpt`` is None and random init is allowed.

    Arguments
    ---------
    ckpt : str or None
        Path or URL of the checkpoint.
    allow_random_init : bool
        Whether a missing ``ckpt`` may mean random weights.
    cache_dir : str or Path
        Download cache for URLs.
    seed : int
        Seed of the random init.

    Returns
    -------
    str
        The identity stored as ``ckpt_sha256`` in the metadata.

    Example
    -------
    >>> checkpoint_identity(None, True, "/tmp", seed=7)
    'random-init-seed7'
    """
    if not ckpt:
        if not allow_random_init:
            raise WeightsNotFound(f"campplus_ckpt is not set and allow_random_init is False; {_where_to_get()}")
        return f"random-init-seed{seed}"
    return file_sha256(resolve_checkpoint(ckpt, cache_dir))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A bare state dict, or one nested under a usual key (``state_dict``,
    ``model``, ...), with a DataParallel ``module.`` prefix removed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on foreign files
        reason = first_line(err)
        raise DataError(f"{path}: not a readable torch checkpoint ({reason[:200]})") from None
    for _ in range(2):
        if isinstance(state, dict) and not all(torch.is_tensor(v) for v in state.values()):
            inner = next((state[k] for k in _NESTING_KEYS if isinstance(state.get(k), dict)), None)
            if inner is not None:
                state = inner
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise DataError(f"{path}: no state dict of tensors found (keys tried: {', '.join(_NESTING_KEYS)})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_campplus(ckpt: str | None, embed_dim: int = 192, allow_random_init: bool = False,
                  cache_dir: str | Path = "~/.cache/semtts/campplus", seed: int = 0) -> tuple[CAMPPlus, str]:
    """Build CAM++ and load its weights (strictly), in eval mode.

    Arguments
    ---------
    ckpt : str or None
        A 3D-Speaker state dict (``torch.save``) as a file path or an http(s)
        URL (downloaded into ``cache_dir``); None means random weights, which
        needs ``allow_random_init``. A given but missing file is always an error.
    embed_dim : int
        Embedding dimension (192 for ``campplus_cn_common.bin``, 512 for
        ``campplus_voxceleb.bin``).
    allow_random_init : bool
        Allow ``ckpt=None`` (a warning is logged).
    cache_dir : str or Path
        Download cache.
    seed : int
        Seed of the random init (the global RNG is left untouched).

    Returns
    -------
    model : CAMPPlus
        In eval mode, on the CPU.
    identity : str
        The checkpoint sha256 or ``"random-init-seed<N>"``.

    Example
    -------
    >>> model, identity = load_campplus(None, 512, allow_random_init=True, seed=1)
    >>> model.embedding_size, identity
    (512, 'random-init-seed1')
    """
    if not ckpt:
        identity = checkpoint_identity(ckpt, allow_random_init, cache_dir, seed)
        with cpu_seeded(seed):
            model = CAMPPlus(embedding_size=embed_dim)
        logger.warning("CAM++ has random weights (allow_random_init, seed %d): its embeddings carry no "
                       "speaker identity; use a pretrained checkpoint for real training", seed)
        return model.eval(), identity
    path = resolve_checkpoint(ckpt, cache_dir)
    state = _read_state_dict(path)
    dense = state.get("xvector.dense.linear.weight")
    if dense is not None and dense.shape[0] != embed_dim:
        raise ConfigError(f"{path}: a {dense.shape[0]}-d CAM++ checkpoint, but campplus_embed_dim is {embed_dim}")
    model = CAMPPlus(embedding_size=embed_dim)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key in expected:  # BatchNorm counters are absent from some older saves
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                 if keys]
        raise DataError(f"{path}: not a 3D-Speaker CAM++ state dict ({'; '.join(parts)})")
    model.load_state_dict(state, strict=True)
    return model.eval(), file_sha256(path)


def speaker_metadata(identity: str, embed_dim: int, ckpt_source: str | None = None) -> dict[str, Any]:
    """The ``meta.json`` content of speaker embeddings (without the version,
    which :func:`~semtts.extract.common.write_metadata` adds).

    Example
    -------
    >>> speaker_metadata("random-init-seed0", 192)["sample_rate"]
    16000
    """
    return {"model": "campplus", "ckpt_sha256": identity, "ckpt_source": ckpt_source, "embed_dim": int(embed_dim),
            "sample_rate": SAMPLE_RATE, "fbank": dict(FBANK)}


class SpeakerEmbedder:
    """CAM++ speaker embeddings of waveforms or files, batched with padding.

    Arguments
    ---------
    model : CAMPPlus
        The network (put in eval mode and moved to ``device``).
    identity : str
        Checkpoint sha256 or ``"random-init-seed<N>"``, for the metadata.
    device : str or torch.device
        Where the network runs (fbank is computed on the CPU).
    batch_size : int
        Utterances per forward pass (sorted by length to limit padding).

    Example
    -------
    >>> model, identity = load_campplus(None, 192, allow_random_init=True)
    >>> embedder = SpeakerEmbedder(model, identity)
    >>> embedder.embed([torch.randn(1, 22050) * 0.1], sample_rate=22050).shape
    torch.Size([1, 192])
    """

    def __init__(self, model: CAMPPlus, identity: str, device: str | torch.device = "cpu", batch_size: int = 16):
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.identity = identity
        self.batch_size = max(1, int(batch_size))

    @classmethod
    def from_checkpoint(cls, ckpt: str | None, embed_dim: int = 192, allow_random_init: bool = False,
                        cache_dir: str | Path = "~/.cache/semtts/campplus", seed: int = 0,
                        device: str | torch.device = "cpu", batch_size: int = 16) -> "SpeakerEmbedder":
        """Load the weights with :func:`load_campplus` and wrap them.

        Returns
        -------
        SpeakerEmbedder
        """
        model, identity = load_campplus(ckpt, embed_dim, allow_random_init, cache_dir, seed)
        return cls(model, identity, device, batch_size)

    @property
    def embed_dim(self) -> int:
        """Dimension of the embeddings."""
        return self.model.embedding_size

    def metadata(self, ckpt_source: str | None = None) -> dict[str, Any]:
        """The feature metadata of these embeddings (see :func:`speaker_metadata`)."""
        return speaker_metadata(self.identity, self.embed_dim, ckpt_source)

    def features(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``[T]`` or ``[C, T]`` audio at ``sample_rate`` -> ``[T_frames, 80]`` fbank
        (channels averaged, resampled to 16 kHz)."""
        wav = wav.detach().float().cpu()
        if wav.dim() == 2:
            wav = wav.mean(dim=0)
        return compute_fbank(resample(wav, int(sample_rate), SAMPLE_RATE))

    @torch.inference_mode()
    def embed(self, wavs: list[torch.Tensor], sample_rate: int) -> torch.Tensor:
        """Embed several waveforms.

        Arguments
        ---------
        wavs : list of torch.Tensor
            ``[T]`` or ``[C, T]`` waveforms of any lengths (at least 25 ms).
        sample_rate : int
            Their sample rate.

        Returns
        -------
        torch.Tensor
            ``[N, D]`` float32 on the CPU, in the order of ``wavs``; equal
            (to float precision) to embedding them one at a time.
        """
        feats = [self.features(w, sample_rate) for w in wavs]
        out = torch.zeros(len(feats), self.embed_dim)
        order = sorted(range(len(feats)), key=lambda i: -feats[i].shape[0])
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            frames = torch.tensor([feats[i].shape[0] for i in chunk], dtype=torch.float)
            batch = torch.nn.utils.rnn.pad_sequence([feats[i] for i in chunk], batch_first=True)
            rel = frames / frames.max()
            out[chunk] = self.model(batch.to(self.device), rel.to(self.device)).float().cpu()
        return out

    def embed_file(self, path: str | Path) -> torch.Tensor:
        """Embed one audio file: ``[D]``."""
        wav, sr = load_audio(path, mono=True)
        return self.embed([wav], sr)[0]


# ---------------------------------------------------------------------------
# Stage 3 outputs
# ---------------------------------------------------------------------------


class CorruptEmbeddings(DataError):
    """Embedding files that could not be read (``utt_ids``); they were removed, so a rerun embeds them again."""

    def __init__(self, message: str, utt_ids: list[str]):
        super().__init__(message)
        self.utt_ids = utt_ids


def _load_16k(path: str, min_seconds: float) -> tuple[torch.Tensor | None, str, bool]:
    """Mono 16 kHz audio, or None, the reason it cannot be embedded, and
    whether a rerun should try again (a missing or unreadable file)."""
    if not Path(path).is_file():
        return None, f"audio file not found: {path}", True
    try:
        wav, sr = load_audio(path, mono=True)
        missing = cut_off(path, wav.shape[-1])
    except (RuntimeError, OSError, ValueError, EOFError) as err:
        return None, f"unreadable audio {path} ({str(err).strip()[:160]})", True
    if missing:  # cut off since stage 1 checked it (a copy in progress): retried by a rerun
        return None, f"unreadable audio {path} ({missing})", True
    seconds = wav.shape[-1] / sr
    if seconds < max(min_seconds, FBANK["frame_length_ms"] / 1000):
        return None, f"too short ({seconds:.3f} s < {min_seconds} s)", False
    if not torch.isfinite(wav).all():
        return None, "non-finite samples", False
    return resample(wav[0], sr, SAMPLE_RATE), "", False


def readable_again(items: dict[str, dict], data_root: str | Path, cache_root: str | Path,
                   min_seconds: float) -> list[str]:
    """The ids of ``items`` (pending utterances) whose audio can now be read or
    is skipped for good, sorted: the ones a rerun of a finished stage does."""
    return sorted(u for u, item in items.items() if not _load_16k(
        resolve_audio_path(item["wav"], data_root=data_root, cache_root=cache_root), min_seconds)[2])


def embed_utterances(embedder: SpeakerEmbedder, items: dict[str, dict], out_dir: str | Path,
                     data_root: str | Path, cache_root: str | Path, min_seconds: float,
                     desc: str = "CAM++") -> dict[str, Any]:
    """Embed ``items`` and write one file per utterance (embedding or skip record).

    Too short or non-finite audio is skipped for good (a skip record); a missing
    or unreadable file only gets a note (the utterance stays pending: a rerun tries again).

    Arguments
    ---------
    embedder : SpeakerEmbedder
        The network.
    items : dict
        ``{utt_id: manifest item}`` to do (existing outputs are overwritten).
    out_dir : str or Path
        The ``spk_emb`` folder.
    data_root, cache_root : str or Path
        Replace ``{data_root}`` / ``{cache_root}`` in the ``wav`` fields.
    min_seconds : float
        Shorter audio is skipped.
    desc : str
        Progress bar label.

    Returns
    -------
    dict
        ``{"embedded": int, "skipped": {utt_id: reason}, "unavailable": {utt_id: reason}}``:
        skipped for good, and not readable now.
    """
    out_dir = Path(out_dir)
    todo = sorted(items, key=lambda u: (float(items[u].get("duration", 0.0)), u))
    skipped: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    embedded = 0
    batch: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        nonlocal embedded
        if not batch:
            return
        vectors = embedder.embed([wav for _, wav in batch], SAMPLE_RATE)
        for (utt_id, _), vector in zip(batch, vectors):
            if not torch.isfinite(vector).all():
                _record_skip(out_dir, utt_id, "non-finite embedding", skipped)
                continue
            save_array_atomic(feature_path(out_dir, utt_id), vector.numpy().astype(np.float32))
            for suffix in (SKIP_SUFFIX, UNREADABLE_SUFFIX):
                feature_path(out_dir, utt_id, suffix).unlink(missing_ok=True)
            embedded += 1
        batch.clear()

    with tqdm(total=len(todo), desc=desc, unit="utt", disable=None, mininterval=1.0) as bar:
        for utt_id in todo:
            path = resolve_audio_path(items[utt_id]["wav"], data_root=data_root, cache_root=cache_root)
            wav, reason, retry = _load_16k(path, min_seconds)
            if wav is None and retry:  # an existing embedding (same settings) is kept
                write_json_atomic(feature_path(out_dir, utt_id, UNREADABLE_SUFFIX), {"reason": reason})
                feature_path(out_dir, utt_id, SKIP_SUFFIX).unlink(missing_ok=True)  # an older semtts recorded it
                unavailable[utt_id] = reason
            elif wav is None:
                _record_skip(out_dir, utt_id, reason, skipped)
            else:
                batch.append((utt_id, wav))
                if len(batch) >= embedder.batch_size:
                    flush()
            bar.update(1)
        flush()
    return {"embedded": embedded, "skipped": skipped, "unavailable": unavailable}


def _record_skip(out_dir: Path, utt_id: str, reason: str, skipped: dict[str, str]) -> None:
    write_json_atomic(feature_path(out_dir, utt_id, SKIP_SUFFIX), {"reason": reason})
    feature_path(out_dir, utt_id).unlink(missing_ok=True)
    feature_path(out_dir, utt_id, UNREADABLE_SUFFIX).unlink(missing_ok=True)
    skipped[utt_id] = reason


def write_speaker_outputs(items: dict[str, dict], out_dir: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Gather the per-utterance files into ``utt_emb.npy``, the speaker means
    ``spk_mean.npy``, ``index.json``, ``report.json`` and ``meta.json``.

    Arguments
    ---------
    items : dict
        All utterances (every one must be finished: embedded, skipped, or
        tried and found unreadable, which is reported as skipped).
    out_dir : str or Path
        The ``spk_emb`` folder.
    meta : dict
        From :func:`speaker_metadata`.

    Returns
    -------
    dict
        The report.

    Raises
    ------
    CorruptEmbeddings
        Some embedding files could not be read: they are removed (named in
        warnings), nothing else is written, and a rerun embeds them again.
    """
    out_dir = Path(out_dir)
    pending = pending_utterances(list(items), out_dir, untried=True)
    if pending:
        raise DataError(f"{out_dir}: {len(pending)} utterances not embedded yet (e.g. '{pending[0]}')")
    utts, vectors, skipped, retried, corrupt = [], [], {}, [], []
    for utt_id in sorted(items):
        path = feature_path(out_dir, utt_id)
        if path.is_file():
            vector = load_or_discard(path, (meta["embed_dim"],), "a rerun of stage 3 embeds the utterance again")
            if vector is None:
                corrupt.append(utt_id)
                continue
            utts.append(utt_id)
            vectors.append(vector.astype(np.float32))
        elif skip_reason(out_dir, utt_id) is not None:
            skipped[utt_id] = skip_reason(out_dir, utt_id)
        else:
            skipped[utt_id] = unreadable_reason(out_dir, utt_id)
            retried.append(utt_id)
    if corrupt:
        raise CorruptEmbeddings(f"{out_dir}: {len(corrupt)} embedding file(s) could not be read and were removed "
                                f"({', '.join(corrupt[:3])}{' ...' if len(corrupt) > 3 else ''}); rerun stage 3 "
                                "(no --force needed) to embed them again", corrupt)
    spks = [items[u]["spk"] for u in utts]
    speakers = sorted(set(spks))
    matrix = np.stack(vectors) if vectors else np.zeros((0, meta["embed_dim"]), dtype=np.float32)
    rows: dict[str, list[int]] = {spk: [] for spk in speakers}
    for i, spk in enumerate(spks):
        rows[spk].append(i)
    means = np.stack([matrix[rows[s]].mean(axis=0) for s in speakers]) if speakers else matrix[:0]
    report = {
        "n_utterances": len(items),
        "n_embedded": len(utts),
        "n_skipped": len(skipped),
        "n_speakers": len(speakers),
        "speakers_without_embeddings": sorted({items[u]["spk"] for u in items} - set(speakers)),
        "skipped": skipped,
        "retried_by_a_rerun": retried,
    }
    write_json_atomic(out_dir / "report.json", report)
    if not utts:
        raise DataError(f"{out_dir}: no utterance could be embedded (reasons in {out_dir / 'report.json'})")
    save_array_atomic(out_dir / "utt_emb.npy", matrix)
    save_array_atomic(out_dir / "spk_mean.npy", means.astype(np.float32))
    write_json_atomic(out_dir / "index.json", {"utts": utts, "spks": spks, "speakers": speakers,
                                               "n_utts": [len(rows[s]) for s in speakers]})
    write_metadata(out_dir / "meta.json", meta)
    return report


def load_speaker_embeddings(spk_emb_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """Read what stage 3 wrote.

    Arguments
    ---------
    spk_emb_dir : str or Path
        The ``spk_emb`` folder.

    Returns
    -------
    utt : dict
        ``{utt_id: [D] float32}`` (views into one array).
    spk_mean : dict
        ``{speaker: [D] float32}``.
    meta : dict
        The metadata (check it with
        :func:`~semtts.extract.common.check_metadata` and :func:`expected_metadata`).
    """
    folder = Path(spk_emb_dir)
    meta = read_metadata(folder / "meta.json")
    index = read_metadata(folder / "index.json")
    matrix = load_array(folder / "utt_emb.npy")
    means = load_array(folder / "spk_mean.npy")
    dim = meta.get("embed_dim")
    if matrix.shape != (len(index["utts"]), dim) or means.shape != (len(index["speakers"]), dim):
        raise DataError(f"{folder}: utt_emb.npy {matrix.shape} / spk_mean.npy {means.shape} do not match "
                        f"index.json and embed_dim {dim}; re-extract (--force)")
    utt = {u: matrix[i] for i, u in enumerate(index["utts"])}
    spk_mean = {s: means[i] for i, s in enumerate(index["speakers"])}
    return utt, spk_mean, meta


def expected_metadata(hp: dict) -> dict[str, Any]:
    """What the hparams imply for ``spk_emb/meta.json``, for
    :func:`~semtts.extract.common.check_metadata` at training start-up.

    Arguments
    ---------
    hp : dict
        Hparams with ``campplus_ckpt``, ``campplus_embed_dim``,
        ``allow_random_init``, ``campplus_cache_dir`` and ``seed``.

    Returns
    -------
    dict
        ``model``, ``embed_dim`` and ``ckpt_sha256``.

    Example
    -------
    >>> expected_metadata({"campplus_ckpt": None, "campplus_embed_dim": 192, "allow_random_init": True,
    ...                    "campplus_cache_dir": "/tmp", "seed": 3})
    {'model': 'campplus', 'embed_dim': 192, 'ckpt_sha256': 'random-init-seed3'}
    """
    identity = checkpoint_identity(hp["campplus_ckpt"], bool(hp["allow_random_init"]),
                                   hp["campplus_cache_dir"], int(hp["seed"]))
    return {"model": "campplus", "embed_dim": int(hp["campplus_embed_dim"]), "ckpt_sha256": identity}
