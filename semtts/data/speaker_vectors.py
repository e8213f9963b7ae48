"""Speaker vectors for training and synthesis, from the CAM++ embeddings of
stage 3 (``<output_folder>/spk_emb/``).

The ``speaker_mode`` of training decides what conditions each utterance:

- ``speaker``: the mean CAM++ embedding of its speaker over the *training*
  utterances; only a speaker with no embedded training utterance (every
  one skipped by stage 3, or a speaker outside training) falls back to
  stage 3's mean over all of its utterances, whatever their split;
- ``utterance``: the utterance's own embedding (the model sees one-recording
  vectors in training, as in zero-shot use);
- ``sid``: a speaker-id table (no vectors; not handled here).

Stage 3 skips utterances it cannot embed (too short, unreadable) and records
why. Such an item has no vector in ``utterance`` mode and is left out (the
caller logs the count); in ``speaker`` mode it keeps its speaker's mean. An
item stage 3 never saw is an error (stage 3 ran on other manifests).

For synthesis, :meth:`SpeakerVectors.references` conditions every speaker
from one reference: seen speakers by their training mean (``speaker`` mode),
others by ``synth_reference``: ``first_utterance`` (the embedding of the
speaker's first utterance by id: in the training split for a seen speaker,
in the synthesized split for an unseen one) or ``speaker_mean`` (stage 3's
mean over all of the speaker's utterances, the synthesized ones included: for
an unseen speaker an oracle reference, not a zero-shot one).

Example
-------
>>> import numpy as np
>>> vectors = SpeakerVectors(
...     utt={"a1": np.array([1.0, 0.0], np.float32), "a2": np.array([3.0, 0.0], np.float32),
...          "b1": np.array([0.0, 2.0], np.float32)},
...     spk_mean={}, skipped={"b2": "too short"}, meta={"embed_dim": 2})
>>> train = {u: {"spk": u[0]} for u in ("a1", "a2", "b1", "b2")}
>>> by_speaker, dropped = vectors.conditioning(train, "speaker")
>>> by_speaker["a1"], by_speaker["b2"], dropped  # the training means of a and b
(tensor([2., 0.]), tensor([0., 2.]), {})
>>> by_utt, dropped = vectors.conditioning(train, "utterance")
>>> by_utt["a1"], dropped  # [D] per item; b2 has no embedding of its own
(tensor([1., 0.]), {'b2': 'too short'})
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semtts.errors import ConfigError, DataError
from semtts.extract.common import open_extracted
from semtts.extract.speaker import expected_metadata, load_speaker_embeddings

__all__ = ["EMBEDDING_MODES", "REFERENCES", "SpeakerVectors"]

EMBEDDING_MODES = ("speaker", "utterance")
"""The ``speaker_mode`` values conditioned on speaker vectors."""
REFERENCES = ("first_utterance", "speaker_mean")
"""The ``synth_reference`` values."""
_CAMPPLUS_KEYS = ("campplus_ckpt", "campplus_embed_dim", "allow_random_init", "campplus_cache_dir", "seed")


@dataclass
class SpeakerVectors:
    """What stage 3 wrote, as training and synthesis use it.

    Arguments
    ---------
    utt : dict
        ``{utt_id: [D] float32}`` utterance embeddings.
    spk_mean : dict
        ``{speaker: [D] float32}`` stage 3's means over all of a speaker's utterances.
    skipped : dict
        ``{utt_id: reason}`` utterances stage 3 could not embed.
    meta : dict
        ``spk_emb/meta.json`` (``embed_dim``, ``ckpt_sha256``, ...).

    Example
    -------
    >>> SpeakerVectors({"u": np.zeros(4, np.float32)}, {}, {}, {"embed_dim": 4}).dim
    4
    """

    utt: dict[str, np.ndarray]
    spk_mean: dict[str, np.ndarray]
    skipped: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, hp: dict) -> "SpeakerVectors":
        """Read ``<output_folder>/spk_emb/`` after checking that stage 3 has
        finished and that its metadata matches the hparams (model, dimension,
        checkpoint: :func:`semtts.extract.speaker.expected_metadata`).

        Arguments
        ---------
        hp : dict
            Hparams with ``output_folder`` and the CAM++ keys of stage 3
            (``campplus_ckpt``, ``campplus_embed_dim``, ``allow_random_init``,
            ``campplus_cache_dir``, ``seed``).

        Returns
        -------
        SpeakerVectors

        Raises
        ------
        DataError
            Stage 3 has not finished.
        ConfigError
            A CAM++ key is missing, or the metadata disagrees with the hparams
            (the message names both values).
        """
        folder = Path(hp["output_folder"]) / "spk_emb"
        _, skipped = open_extracted(
            folder, hp, _CAMPPLUS_KEYS, expected_metadata, "speaker embeddings",
            f"stage 3 (CAM++ speaker embeddings) has not run; speaker_mode {hp.get('speaker_mode')} needs it "
            "(run the recipe with --stage 3, or set --speaker_mode sid)",
        )
        utt, spk_mean, meta = load_speaker_embeddings(folder)
        return cls(utt, spk_mean, skipped, meta)

    @property
    def dim(self) -> int:
        """The embedding dimension ``D``."""
        return int(self.meta["embed_dim"])

    def _check_known(self, utt_id: str) -> None:
        if utt_id not in self.utt and utt_id not in self.skipped:
            raise DataError(f"{utt_id}: no speaker embedding and no skip record in spk_emb: stage 3 ran on "
                            "other manifests; rerun it with --force")

    def speaker_means(self, items: dict[str, dict]) -> dict[str, np.ndarray]:
        """The mean embedding of every speaker over ``items`` (those with an embedding).

        Arguments
        ---------
        items : dict
            ``{utt_id: item}`` with ``spk`` fields, e.g. the training split.

        Returns
        -------
        dict
            ``{speaker: [D] float32}``; a speaker none of whose items has an
            embedding is absent.
        """
        rows: dict[str, list[np.ndarray]] = {}
        for utt_id, item in sorted(items.items()):
            self._check_known(utt_id)
            if utt_id in self.utt:
                rows.setdefault(item["spk"], []).append(self.utt[utt_id])
        return {spk: np.mean(np.stack(vectors), axis=0).astype(np.float32) for spk, vectors in rows.items()}

    def conditioning(self, items: dict[str, dict], mode: str,
                     train_items: dict[str, dict] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The training-time vector of every item by ``speaker_mode``.

        Arguments
        ---------
        items : dict
            ``{utt_id: item}`` of one split.
        mode : str
            ``speaker`` or ``utterance``.
        train_items : dict, optional
            The training split, whose means serve ``speaker`` mode (default:
            ``items``). A speaker absent from it gets stage 3's mean.

        Returns
        -------
        vectors : dict
            ``{utt_id: [D] float32 tensor}``.
        dropped : dict
            ``{utt_id: reason}`` of the items without a vector.
        """
        if mode not in EMBEDDING_MODES:
            raise ConfigError(f"speaker vectors: speaker_mode must be one of {', '.join(EMBEDDING_MODES)}, "
                              f"got {mode!r}")
        means = self.speaker_means(items if train_items is None else train_items) if mode == "speaker" else {}
        vectors, dropped = {}, {}
        for utt_id, item in items.items():
            self._check_known(utt_id)
            if mode == "utterance":
                vector = self.utt.get(utt_id)
            else:
                vector = means.get(item["spk"], self.spk_mean.get(item["spk"]))
            if vector is None:
                dropped[utt_id] = self.skipped.get(utt_id, f"speaker {item['spk']} has no embedded utterance")
            else:
                vectors[utt_id] = torch.from_numpy(np.array(vector, dtype=np.float32))
        return vectors, dropped

    def references(self, items: dict[str, dict], mode: str, how: str,
                   train_items: dict[str, dict]) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
        """The synthesis-time vector of every item: one reference per speaker.

        Arguments
        ---------
        items : dict
            ``{utt_id: item}`` of the split to synthesize.
        mode : str
            The training ``speaker_mode`` (``speaker`` or ``utterance``).
        how : str
            ``first_utterance`` or ``speaker_mean`` (``synth_reference``).
        train_items : dict
            The training split: its speakers are the seen ones.

        Returns
        -------
        vectors : dict
            ``{utt_id: [D] float32 tensor}``; items of a speaker without any
            usable reference are absent.
        references : dict
            ``{utt_id: {"spk", "reference", "reference_utt"}}``: ``reference``
            is ``train_mean``, ``speaker_mean`` or ``first_utterance`` (then
            ``reference_utt`` names the recording), or ``none`` for an absent item.

        Example
        -------
        >>> v = SpeakerVectors({"a1": np.ones(2, np.float32), "c2": np.zeros(2, np.float32)}, {}, {"c1": "short"},
        ...                    {"embed_dim": 2})
        >>> _, refs = v.references({"c1": {"spk": "c"}, "c2": {"spk": "c"}}, "speaker", "first_utterance",
        ...                        {"a1": {"spk": "a"}})
        >>> refs["c1"]  # c1 itself was skipped by stage 3: the first embedded one
        {'spk': 'c', 'reference': 'first_utterance', 'reference_utt': 'c2'}
        """
        if how not in REFERENCES:
            raise ConfigError(f"synth_reference must be one of {', '.join(REFERENCES)}, got {how!r}")
        means = self.speaker_means(train_items)
        for utt_id in items:
            self._check_known(utt_id)
        chosen: dict[str, tuple[np.ndarray | None, str, str | None]] = {}
        for spk in sorted({item["spk"] for item in items.values()}):
            seen = spk in means
            if seen and (mode == "speaker" or how == "speaker_mean"):
                chosen[spk] = (means[spk], "train_mean", None)
            elif how == "speaker_mean":
                chosen[spk] = (self.spk_mean.get(spk), "speaker_mean", None)
            else:
                pool = train_items if seen else items
                first = next((u for u in sorted(pool) if pool[u]["spk"] == spk and u in self.utt), None)
                chosen[spk] = (self.utt.get(first) if first else None, "first_utterance", first)
        vectors, records = {}, {}
        for utt_id, item in items.items():
            vector, kind, reference_utt = chosen[item["spk"]]
            if vector is None:
                records[utt_id] = {"spk": item["spk"], "reference": "none", "reference_utt": None}
                continue
            vectors[utt_id] = torch.from_numpy(np.array(vector, dtype=np.float32))
            records[utt_id] = {"spk": item["spk"], "reference": kind, "reference_utt": reference_utt}
        return vectors, records
