"""Train / valid / test / test_unseen assignment of validated utterances.

Three rules, in order: an item of a held-out speaker goes to
``test_unseen`` (speakers never seen in training), whatever split its corpus
layout gives it; an item whose corpus layout fixes its split (a ``"split"``
field) keeps it; every other item is split
at random, with a seed, into ``train``, ``valid`` and ``test``. The random
part is stratified by speaker: ``valid`` and ``test`` are drawn in turns
across speakers, and each speaker keeps at least one utterance in ``train``,
so ``valid`` and ``test`` only hold speakers that training has seen.

Example
-------
>>> items = [{"utt_id": f"{spk}_{i}", "spk": spk} for spk in ("a", "b") for i in range(4)]
>>> splits = assign_splits(items, n_valid=2, n_test=2, heldout_speakers=[], seed=0)
>>> {name: len(part) for name, part in splits.items()}
{'train': 4, 'valid': 2, 'test': 2}
>>> sorted({item["spk"] for item in splits["valid"]})
['a', 'b']
>>> assign_splits(items, 1, 0, heldout_speakers=["b"], seed=0)["test_unseen"][0]["utt_id"]
'b_0'
>>> fixed = [{"utt_id": f"{spk}_0", "spk": spk, "split": "train"} for spk in ("a", "b")]
>>> {name: [it["spk"] for it in part] for name, part in assign_splits(fixed, 0, 0, ["b"], seed=0).items()}
{'train': ['a'], 'test_unseen': ['b']}
"""

import logging
import random
from collections import defaultdict

from semtts.errors import ConfigError, DataError

__all__ = ["SPLIT_ORDER", "assign_splits"]

logger = logging.getLogger(__name__)

# The order splits are listed in (fixed split names outside it come after).
SPLIT_ORDER = ("train", "valid", "test", "test_unseen")


def assign_splits(
    items: list[dict],
    n_valid: int,
    n_test: int,
    heldout_speakers: list[str],
    seed: int,
) -> dict[str, list[dict]]:
    """Assign every item to a split.

    Arguments
    ---------
    items : list of dict
        Items with ``"utt_id"`` and ``"spk"``, and optionally ``"split"``
        (a split fixed by the corpus layout, kept as is; None means unset).
    n_valid : int
        Number of ``valid`` items drawn from the seen speakers.
    n_test : int
        Number of ``test`` items drawn from the seen speakers. When the seen
        speakers have fewer spare utterances than ``n_valid + n_test``,
        ``valid`` is filled first and a warning is logged.
    heldout_speakers : list of str
        Speakers whose items all go to ``test_unseen`` (also those with a fixed split).
    seed : int
        The random seed; the result depends only on it and on the set of
        items, not on their order.

    Returns
    -------
    dict
        ``{split: [item, ...]}``: the same item objects, each list sorted by
        ``utt_id``; splits without items are left out.
    """
    if n_valid < 0 or n_test < 0:
        raise ConfigError(f"n_valid and n_test must be >= 0 (got {n_valid} and {n_test})")
    seen_ids = set()
    for item in items:
        if item["utt_id"] in seen_ids:
            raise DataError(f"utterance id '{item['utt_id']}' appears twice in the corpus listing")
        seen_ids.add(item["utt_id"])

    heldout = {str(spk) for spk in heldout_speakers}  # (a speaker id YAML read as a number)
    splits: dict[str, list[dict]] = defaultdict(list)
    by_speaker: dict[str, list[dict]] = defaultdict(list)
    for item in sorted(items, key=lambda it: it["utt_id"]):
        if str(item["spk"]) in heldout:
            splits["test_unseen"].append(item)
        elif item.get("split") is not None:
            splits[item["split"]].append(item)
        else:
            by_speaker[item["spk"]].append(item)

    rng = random.Random(seed)
    speakers = sorted(by_speaker)
    rng.shuffle(speakers)
    pools = {}
    for spk in speakers:
        pool = list(by_speaker[spk])
        rng.shuffle(pool)
        pools[spk] = pool
    # One turn-taking draw for both splits, so that with many speakers valid
    # and test come from different ones.
    drawn = _draw_across_speakers(pools, speakers, n_valid + n_test)
    if len(drawn) < n_valid + n_test:
        logger.warning(
            "only %d of the %d requested valid+test utterances could be drawn "
            "(each seen speaker keeps one in train); valid is filled first",
            len(drawn),
            n_valid + n_test,
        )
    splits["valid"].extend(drawn[:n_valid])
    splits["test"].extend(drawn[n_valid:])
    for spk in speakers:
        splits["train"].extend(pools[spk])

    names = [name for name in SPLIT_ORDER if splits.get(name)]
    names += sorted(name for name in splits if name not in SPLIT_ORDER and splits[name])
    return {name: sorted(splits[name], key=lambda it: it["utt_id"]) for name in names}


def _draw_across_speakers(pools: dict[str, list[dict]], speakers: list[str], wanted: int) -> list[dict]:
    """Take one item per speaker in turn (speaker order as given) until
    ``wanted`` items are drawn, never taking a speaker's last item."""
    drawn: list[dict] = []
    while len(drawn) < wanted:
        progress = False
        for spk in speakers:
            if len(drawn) == wanted:
                break
            if len(pools[spk]) > 1:
                drawn.append(pools[spk].pop())
                progress = True
        if not progress:
            break
    return drawn
