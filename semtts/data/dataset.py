"""SpeechBrain datasets, pipelines and batching for training and synthesis.

Items come from the stage-2 manifests (``tokens/<split>.json``). The
pipelines load the audio (soundfile), intersperse blanks into the tokens when
``add_blank`` is set, map speakers to ids and, for models conditioned on
speaker vectors, give every item its vector (``spk_embed``, chosen by
:mod:`semtts.data.speaker_vectors`); in training stages B and C they read
every item's Whisper teacher features (``teacher``,
:mod:`semtts.data.teacher_features`); spectrograms are computed on the
training device from the waveform batch (one STFT implementation, fast on a
GPU). Batches are SpeechBrain ``PaddedBatch`` objects whose lengths are
*relative*; :func:`absolute_lengths` turns them into the absolute integer
lengths used everywhere inside semtts.

Example
-------
>>> import torch
>>> from speechbrain.dataio.batch import PaddedBatch, PaddedData
>>> absolute_lengths(PaddedData(torch.zeros(2, 10), torch.tensor([1.0, 0.3])))
tensor([10,  3])
>>> build_speaker_table({"a": {"spk": "s2"}, "b": {"spk": "s1"}, "c": {"spk": "s2"}})
{'s1': 0, 's2': 1}
>>> from speechbrain.dataio.batch import PaddedBatch
>>> batch = PaddedBatch([{"spk_id": 1, "spk_embed": torch.ones(4)}, {"spk_id": 0, "spk_embed": torch.zeros(4)}])
>>> speaker_inputs(batch, "sid", torch.device("cpu"))
{'sid': tensor([1, 0])}
>>> speaker_inputs(batch, "utterance", torch.device("cpu"))["spk_embed"].shape
torch.Size([2, 4])
"""

import logging
from pathlib import Path
from typing import Any

import torch
from speechbrain.dataio.batch import PaddedBatch, PaddedData
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.utils.data_pipeline import provides, takes

from semtts.audio import SpectrogramConfig, load_audio
from semtts.data.manifest import read_manifest, resolve_audio_path
from semtts.data.speaker_vectors import EMBEDDING_MODES
from semtts.errors import ConfigError, DataError
from semtts.text.tokenizer import BLANK_ID, intersperse

__all__ = ["SPEAKER_MODES", "absolute_lengths", "build_speaker_table", "check_speaker_mode", "speaker_inputs",
           "dataio_prepare", "collate_readable", "length_buckets", "make_train_sampler"]

logger = logging.getLogger(__name__)

UNREADABLE_KEYS = ("sig", "teacher")
"""Item fields a pipeline leaves empty when their file cannot be read."""
_reported: set[str] = set()

SPEAKER_MODES = ("sid",) + EMBEDDING_MODES
"""How a model knows its speaker: a speaker-id table (``sid``), or CAM++
vectors, a speaker's mean (``speaker``) or each utterance's own (``utterance``)."""


def absolute_lengths(padded: PaddedData) -> torch.Tensor:
    """SpeechBrain's relative lengths of a padded field as absolute integers.

    Arguments
    ---------
    padded : PaddedData
        A field of a ``PaddedBatch`` (``data`` ``[B, T, ...]``, ``lengths`` ``[B]``).

    Returns
    -------
    torch.Tensor
        ``[B]`` int64 lengths, where ``padded.lengths`` is (with the data, in a ``PaddedBatch``).
    """
    return torch.round(padded.lengths * padded.data.shape[1]).long()


def build_speaker_table(manifest: dict[str, dict]) -> dict[str, int]:
    """Map the speakers of a manifest to ids ``0..S-1`` (sorted, deterministic).

    Arguments
    ---------
    manifest : dict
        ``{utt_id: item}`` with ``"spk"`` fields.

    Returns
    -------
    dict
        ``{speaker: id}``.
    """
    return {spk: i for i, spk in enumerate(sorted({item["spk"] for item in manifest.values()}))}


def check_speaker_mode(speaker_mode: str) -> str:
    """``speaker_mode`` itself if it is one of :data:`SPEAKER_MODES`; a
    one-line :class:`~semtts.errors.ConfigError` otherwise."""
    if speaker_mode not in SPEAKER_MODES:
        raise ConfigError(f"speaker_mode must be one of {', '.join(SPEAKER_MODES)}, got {speaker_mode!r}")
    return speaker_mode


def speaker_inputs(batch: PaddedBatch, speaker_mode: str, device: torch.device) -> dict[str, torch.Tensor]:
    """The generator's speaker arguments of a batch, by ``speaker_mode``.

    Arguments
    ---------
    batch : PaddedBatch
        With ``spk_id`` (``sid`` mode) or ``spk_embed`` (``speaker`` and
        ``utterance`` modes).
    speaker_mode : str
        One of :data:`SPEAKER_MODES`.
    device : torch.device
        Where the generator runs.

    Returns
    -------
    dict of str to torch.Tensor
        ``{"sid": [B] int64}`` where the batch is (the host, before it is
        moved: the generator checks and moves the ids), or
        ``{"spk_embed": [B, D] float32}`` on ``device``.
    """
    if check_speaker_mode(speaker_mode) == "sid":
        ids = getattr(batch, "spk_id", None)
        if ids is None:
            raise DataError("speaker_mode 'sid': the batch has no spk_id")
        ids = torch.as_tensor(ids).long()
        unknown = (ids < 0).nonzero() if ids.device.type == "cpu" else ids[:0]  # no sync on a device
        if unknown.numel():
            index = int(unknown[0])
            name = batch.id[index] if hasattr(batch, "id") else f"batch item {index}"
            raise DataError(f"{name}: speaker not in the training speaker table (spk_id -1)")
        return {"sid": ids}  # on the host: the generator checks the ids without a device sync, then moves them
    embed = getattr(batch, "spk_embed", None)
    if embed is None:
        raise DataError(f"speaker_mode '{speaker_mode}': the batch has no spk_embed (speaker vectors)")
    embed = embed.data if isinstance(embed, PaddedData) else embed
    return {"spk_embed": embed.to(device, non_blocking=True).float()}


def dataio_prepare(
    manifests: dict[str, str | Path],
    data_root: str | Path,
    cache_root: str | Path,
    sample_rate: int,
    add_blank: bool,
    speaker_table: dict[str, int] | None = None,
    spk_embeds: dict[str, torch.Tensor] | None = None,
    teacher: Any = None,
    keep: set[str] | None = None,
    spectrogram: SpectrogramConfig | None = None,
) -> dict[str, DynamicItemDataset]:
    """Build one ``DynamicItemDataset`` per split with the semtts pipelines.

    Output keys: ``id``, ``sig`` (``[T]`` waveform), ``token_ids`` (blanks
    interspersed when ``add_blank``), ``spk_id`` (``-1`` for speakers outside
    ``speaker_table``), ``spk``, ``duration``, and ``spk_embed`` (``[D]``
    float32) when ``spk_embeds`` is given: a batch then holds ``spk_embed``
    ``[B, D]``; ``teacher`` (``[T_sem, D]`` float32, read from disk item by
    item) when ``teacher`` is given: a batch then holds ``teacher``
    ``[B, T_sem, D]`` (padded).

    Arguments
    ---------
    manifests : dict
        ``{split: path to tokens/<split>.json}``.
    data_root : str or Path
        Replaces ``{data_root}`` in the audio paths.
    cache_root : str or Path
        Replaces ``{cache_root}`` in the audio paths.
    sample_rate : int
        The rate every file must have (stage 1 guarantees it).
    add_blank : bool
        Intersperse the blank token (VITS).
    speaker_table : dict, optional
        ``{speaker: id}``; default: built on the ``train`` split.
    spk_embeds : dict, optional
        ``{utt_id: [D] tensor}`` speaker vectors
        (:meth:`~semtts.data.speaker_vectors.SpeakerVectors.conditioning`);
        items without one are left out (the caller reports them).
    teacher : TeacherFeatures, optional
        Stage 4's features (:class:`semtts.data.teacher_features.TeacherFeatures`,
        or any object with ``features(utt_id) -> [T_sem, D] tensor``).
    keep : set, optional
        Only these utterance ids (e.g. those with teacher features); all when omitted.
    spectrogram : SpectrogramConfig, optional
        The model's spectrogram settings (training): an item with fewer samples than
        :attr:`~semtts.audio.SpectrogramConfig.min_samples`, or fewer frames than tokens (no
        monotonic alignment exists: a transcript that does not belong to its audio), is skipped
        with a warning naming it, as an unreadable file is.

    Returns
    -------
    dict
        ``{split: DynamicItemDataset}``.

    Example
    -------
    >>> import tempfile, pathlib
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> from semtts.data.manifest import write_manifest
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "test.json"
    >>> write_manifest(path, {u: {"wav": "x.wav", "text": "a", "spk": "s", "duration": 1.0, "sr": 16000,
    ...                           "tokens": [3, 4]} for u in ("u1", "u2")})
    >>> data = dataio_prepare({"test": path}, "", "", 16000, True, {"s": 0},
    ...                       spk_embeds={"u1": torch.ones(4)})["test"]
    >>> data.set_output_keys(["id", "token_ids", "spk_embed"])
    >>> len(data), data[0]["token_ids"].tolist(), PaddedBatch([data[0]]).spk_embed.data.shape  # u2 left out
    (1, [1, 3, 1, 4, 1], torch.Size([1, 4]))
    """
    loaded = {split: read_manifest(path) for split, path in manifests.items()}
    for split, manifest in loaded.items():
        missing = [utt for utt, item in manifest.items() if "tokens" not in item]
        if missing:
            raise DataError(f"{manifests[split]}: item '{missing[0]}' has no tokens (run stage 2)")
    if speaker_table is None:
        if "train" not in loaded:
            raise DataError("dataio_prepare: no train split to build the speaker table from")
        speaker_table = build_speaker_table(loaded["train"])

    @takes("wav", "tokens")
    @provides("sig")
    def audio_pipeline(wav: str, tokens: list[int]) -> torch.Tensor:
        path = resolve_audio_path(wav, data_root, cache_root)
        try:
            audio, sr = load_audio(path, mono=True)
        except Exception as err:  # a file spoilt after preparation: skipped, named
            return _unreadable(str(path), f"cannot read audio ({err.__class__.__name__}: {err})")
        if sr != sample_rate:
            return _unreadable(str(path), f"sample rate {sr} != {sample_rate} (rerun stage 1)")
        if audio.numel() == 0 or not torch.isfinite(audio).all():
            return _unreadable(str(path), "empty or non-finite audio")
        if spectrogram is not None:
            samples, n_tokens = audio.shape[-1], 2 * len(tokens) + 1 if add_blank else len(tokens)
            if samples < spectrogram.min_samples:
                return _unreadable(str(path), f"{samples} samples, fewer than the spectrogram needs "
                                              f"({spectrogram.min_samples})")
            if spectrogram.num_frames(samples) < n_tokens:
                return _unreadable(str(path), f"{spectrogram.num_frames(samples)} frames for {n_tokens} tokens "
                                              "(no monotonic alignment exists; is the transcript this audio's?)")
        return audio[0]

    @takes("tokens")
    @provides("token_ids")
    def token_pipeline(tokens: list[int]) -> torch.Tensor:
        ids = intersperse(tokens, BLANK_ID) if add_blank else list(tokens)
        return torch.tensor(ids, dtype=torch.long)

    @takes("spk")
    @provides("spk_id")
    def speaker_pipeline(spk: str) -> int:
        return speaker_table.get(spk, -1)

    @takes("id")
    @provides("spk_embed")
    def embedding_pipeline(utt_id: str) -> torch.Tensor:
        return spk_embeds[utt_id]

    @takes("id")
    @provides("teacher")
    def teacher_pipeline(utt_id: str) -> torch.Tensor:
        try:
            return teacher.features(utt_id)
        except DataError as err:  # a feature file spoilt after stage 4: skipped, named
            return _unreadable(utt_id, str(err))

    pipelines = [audio_pipeline, token_pipeline, speaker_pipeline]
    keys = ["id", "sig", "token_ids", "spk_id", "spk", "duration"]
    if spk_embeds is not None:
        pipelines.append(embedding_pipeline)
        keys.append("spk_embed")
    if teacher is not None:
        pipelines.append(teacher_pipeline)
        keys.append("teacher")
    datasets = {}
    for split, manifest in loaded.items():
        if spk_embeds is not None:
            manifest = {utt: item for utt, item in manifest.items() if utt in spk_embeds}
        if keep is not None:
            manifest = {utt: item for utt, item in manifest.items() if utt in keep}
        datasets[split] = DynamicItemDataset(manifest, dynamic_items=pipelines, output_keys=keys)
    return datasets


def _unreadable(what: str, reason: str) -> torch.Tensor:
    """The empty marker of an item whose file cannot be read, warned once per process."""
    if what not in _reported:
        _reported.add(what)
        logger.warning(f"{what}: {reason}; the item is skipped")
    return torch.empty(0)


def collate_readable(items: list[dict]) -> PaddedBatch | None:
    """SpeechBrain's ``PaddedBatch`` of the items whose files could be read.

    A file spoilt after data preparation (its audio or teacher features) is
    warned about by name and its item left out of the batch, so that one bad
    file never stops a long training run; ``None`` when no item is left.

    Arguments
    ---------
    items : list of dict
        Dataset items (:func:`dataio_prepare`).

    Returns
    -------
    PaddedBatch or None

    Example
    -------
    >>> batch = collate_readable([{"id": "a", "sig": torch.ones(3)}, {"id": "b", "sig": torch.empty(0)}])
    >>> batch.id, batch.sig.data.shape
    (['a'], torch.Size([1, 3]))
    >>> collate_readable([{"id": "b", "sig": torch.empty(0)}]) is None
    True
    """
    readable = [item for item in items
                if not any(torch.is_tensor(item.get(key)) and item[key].numel() == 0 for key in UNREADABLE_KEYS)]
    return PaddedBatch(readable) if readable else None


MIN_BUCKET_SECONDS = 0.01
"""The smallest bucket bound (utterances listed as 0 s long share it; the loader skips them)."""


def length_buckets(durations: list[float], num_buckets: int) -> list[float]:
    """Upper bounds of ``num_buckets`` length buckets holding about as many
    utterances each (quantiles of the training durations); the last is the
    longest utterance, so every utterance falls in a bucket.

    SpeechBrain's own ``num_buckets`` spaces its buckets up to the batch's
    total length (160 s for a 160 s batch), which puts every utterance
    shorter than about 6 s into the first bucket.

    Arguments
    ---------
    durations : list of float
        Utterance lengths (seconds).
    num_buckets : int
        At most this many buckets (fewer where durations repeat).

    Returns
    -------
    list of float
        Ascending upper bounds.

    Example
    -------
    >>> length_buckets([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], num_buckets=4)
    [2.0, 4.0, 6.0, 8.0]
    >>> length_buckets([3.0, 3.0, 3.0], num_buckets=4)
    [3.0]
    >>> length_buckets([0.0, 0.0, 2.0], num_buckets=2)
    [0.01, 2.0]
    """
    if not durations or num_buckets < 1:
        raise ConfigError(f"length_buckets: {len(durations)} durations and num_buckets {num_buckets}: "
                          "need at least one of each")
    ordered = sorted(max(float(d), MIN_BUCKET_SECONDS) for d in durations)  # a 0 s bound: 160 s / 0
    bounds = {ordered[max(0, -(-len(ordered) * k // num_buckets) - 1)] for k in range(1, num_buckets + 1)}
    return sorted(bounds)


def make_train_sampler(
    dataset: DynamicItemDataset, max_batch_seconds: float, num_buckets: int, seed: int,
    max_batch_size: int | None = None,
) -> DynamicBatchSampler:
    """Length-bucketed dynamic batching, as the original VITS batches: each
    batch holds utterances of one length bucket (:func:`length_buckets`), at
    most ``max_batch_seconds`` of padded audio and ``max_batch_size`` of them.

    Arguments
    ---------
    dataset : DynamicItemDataset
        The training set (items with ``duration``).
    max_batch_seconds : float
        Padded audio per batch: a bucket's batches hold ``max_batch_seconds``
        over its longest length utterances (frames, not utterances, bound
        the memory of the encoders).
    num_buckets : int
        Length buckets.
    seed : int
        Shuffling seed (SpeechBrain reseeds per epoch).
    max_batch_size : int, optional
        At most this many utterances per batch (the decoder and the
        discriminators see one fixed-length slice per utterance, so their
        memory grows with the count, not the length).

    Returns
    -------
    DynamicBatchSampler

    Example
    -------
    >>> data = DynamicItemDataset({f"u{i}": {"duration": 1.0 + i} for i in range(8)})
    >>> sampler = make_train_sampler(data, max_batch_seconds=16.0, num_buckets=2, seed=0, max_batch_size=3)
    >>> [[data.data[data.data_ids[i]]["duration"] for i in batch] for batch in sampler]  # buckets <= 4 s, <= 8 s
    [[5.0, 8.0], [1.0, 4.0, 3.0], [2.0], [6.0, 7.0]]
    """
    durations = [dataset.data[utt_id]["duration"] for utt_id in dataset.data_ids]
    return DynamicBatchSampler(
        dataset,
        max_batch_length=max_batch_seconds,
        bucket_boundaries=length_buckets(durations, num_buckets),
        max_batch_ex=max_batch_size,
        length_func=lambda item: item["duration"],
        shuffle=True,
        batch_ordering="random",
        seed=seed,
    )
