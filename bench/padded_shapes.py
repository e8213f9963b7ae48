"""How many distinct batch shapes a training meets: the CUDA graphs that
``--compile --compile_mode reduce-overhead`` records with every part graphed.

Every part of the step runs as CUDA graphs only when the training batches
are padded to a multiple of ``pad_frames_to`` frames and ``pad_tokens_to``
tokens (``hparams/train_A.yaml``); inductor then records one graph-tree
path per combination of batch size, padded frames and padded tokens, each
in a slow step (about 5 s for ``vits_base`` on an H200). This script runs
the training sampler (``semtts.data.dataset.make_train_sampler``: length
buckets, ``max_batch_seconds``, at most ``batch_size`` utterances) over a
corpus's durations for some epochs, pads each batch as the Brain does
(``semtts.length_padding.padded_length``), and prints one JSON line per
padding: the distinct shapes after the first and the last epoch, and the
compute the padding adds (padded frames over the batches' own longest).

No GPU and no audio are needed: the durations and token counts come from
stage 2's training manifest (``tokens/train.json`` of a recipe's output
folder) or, without one, from LJSpeech-like random lengths (13,100
utterances, 1.1-10.1 s, mean about 6.6 s, as many tokens as
``bench/train_step.py`` gives). Tokens are counted as the model sees them:
with ``add_blank`` (``train_A.yaml``'s default), ``2n + 1`` for ``n``.

    python bench/padded_shapes.py                                    # LJSpeech-like lengths
    python bench/padded_shapes.py --manifest exp/ljspeech/default/tokens/train.json --epochs 5
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine_info  # noqa: E402
from train_step import FRAMES_PER_TOKEN  # noqa: E402


def ljspeech_like(utterances: int, sample_rate: int, hop: int, seed: int) -> dict[str, dict]:
    """Random utterance lengths shaped like LJSpeech's (a beta distribution over 1.1-10.1 s, mean about
    6.6 s, more long ones than short), with about one token per :data:`FRAMES_PER_TOKEN` frames (+-15%)."""
    with torch.random.fork_rng():  # one seeded stream (Beta.sample takes no generator), the caller's left alone
        torch.manual_seed(seed)
        seconds = (1.1 + 9.0 * torch.distributions.Beta(1.82, 1.18).sample((utterances,))).tolist()
        noise = (0.85 + 0.3 * torch.rand(utterances)).tolist()
    return {f"u{i}": {"duration": s, "tokens": max(1, round(s * sample_rate / hop / FRAMES_PER_TOKEN * n))}
            for i, (s, n) in enumerate(zip(seconds, noise))}


def read_manifest(path: Path) -> dict[str, dict]:
    """``{utt_id: {"duration": seconds, "tokens": count}}`` from stage 2's training manifest (its ``tokens`` a
    list of ids or a count)."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"padded_shapes: cannot read the manifest {path}: {err}") from None
    items = {}
    for utt_id, item in manifest.items():
        if not isinstance(item, dict) or "duration" not in item or "tokens" not in item:
            raise SystemExit(f"padded_shapes: {path}: item {utt_id!r} has no duration and tokens (stage 2's "
                             "tokens/train.json has both)")
        tokens = item["tokens"]
        items[utt_id] = {"duration": float(item["duration"]), "tokens": len(tokens) if isinstance(tokens, list)
                         else int(tokens)}
    if not items:
        raise SystemExit(f"padded_shapes: {path} lists no utterance")
    return items


def batch_shapes(items: dict[str, dict], args) -> list[list[tuple[int, int, int]]]:
    """Per epoch, every batch's (batch size, longest samples, longest tokens), as the sampler draws them."""
    from speechbrain.dataio.dataset import DynamicItemDataset

    from semtts.data.dataset import make_train_sampler

    dataset = DynamicItemDataset(items)
    sampler = make_train_sampler(dataset, args.max_batch_seconds, args.num_buckets, args.seed,
                                 max_batch_size=args.batch_size)
    epochs = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        shapes = []
        for batch in sampler:
            chosen = [items[dataset.data_ids[i]] for i in batch]
            longest_tokens = max(c["tokens"] for c in chosen)
            shapes.append((len(chosen), max(int(c["duration"] * args.sample_rate) for c in chosen),
                           2 * longest_tokens + 1 if args.add_blank else longest_tokens))
        epochs.append(shapes)
    return epochs


def count_shapes(epochs: list[list[tuple[int, int, int]]], pad_frames_to: int, pad_tokens_to: int,
                 hop: int) -> dict:
    """The distinct padded shapes after the first and the last epoch, and the padding's extra frames.

    Example
    -------
    >>> epochs = [[(2, 1000, 9), (2, 1100, 11)], [(3, 1000, 10)]]
    >>> count_shapes(epochs, pad_frames_to=8, pad_tokens_to=16, hop=256)
    {'shapes_first_epoch': 1, 'shapes': 2, 'batch_sizes': 2, 'extra_frames': 0.9859}
    """
    from semtts.length_padding import padded_length

    seen: set[tuple[int, int, int]] = set()
    first = 0
    extra = []
    for index, shapes in enumerate(epochs):
        for size, samples, tokens in shapes:
            padded = padded_length(samples, pad_frames_to * hop)
            seen.add((size, padded, padded_length(tokens, pad_tokens_to)))
            extra.append(padded / samples - 1.0)
        if index == 0:
            first = len(seen)
    return {"shapes_first_epoch": first, "shapes": len(seen), "batch_sizes": len({s[0] for s in seen}),
            "extra_frames": round(statistics.mean(extra), 4)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None,
                        help="stage 2's training manifest (tokens/train.json); default: LJSpeech-like lengths")
    parser.add_argument("--utterances", type=int, default=13100, help="without --manifest: how many")
    parser.add_argument("--pads", nargs="*", default=["1x1", "16x8", "32x16", "64x32"],
                        help="paddings to count, FRAMESxTOKENS (pad_frames_to x pad_tokens_to)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=16, help="train_A.yaml's batch_size")
    parser.add_argument("--max_batch_seconds", type=float, default=160.0, help="train_A.yaml's")
    parser.add_argument("--num_buckets", type=int, default=20, help="train_A.yaml's")
    parser.add_argument("--add_blank", type=lambda v: {"true": True, "false": False}[v.lower()], default=True,
                        help="True / False: tokens interleaved with blanks, as train_A.yaml's add_blank")
    parser.add_argument("--sample_rate", type=int, default=22050, help="the model's (vits_base.yaml)")
    parser.add_argument("--hop", type=int, default=256, help="the spectrogram's hop (vits_base.yaml)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    pads = []
    for pad in args.pads:
        try:
            frames, tokens = (int(x) for x in pad.lower().split("x"))
        except ValueError:
            parser.error(f"--pads: {pad!r} is not FRAMESxTOKENS (e.g. 32x16)")
        if frames < 1 or tokens < 1:
            parser.error(f"--pads: {pad!r}: both multiples must be >= 1")
        pads.append((frames, tokens))
    if args.epochs < 1 or args.utterances < 1:
        parser.error("--epochs and --utterances must be >= 1")
    items = read_manifest(args.manifest) if args.manifest else ljspeech_like(args.utterances, args.sample_rate,
                                                                             args.hop, args.seed)
    epochs = batch_shapes(items, args)
    info = {**machine_info(torch.device("cpu")), "bench": "padded_shapes",
            "corpus": str(args.manifest) if args.manifest else f"ljspeech_like_{args.utterances}",
            "utterances": len(items), "epochs": args.epochs, "batches_per_epoch": len(epochs[0]),
            "batch_size": args.batch_size, "max_batch_seconds": args.max_batch_seconds,
            "num_buckets": args.num_buckets, "add_blank": args.add_blank}
    for frames, tokens in pads:
        emit({**info, "pad_frames_to": frames, "pad_tokens_to": tokens,
              **count_shapes(epochs, frames, tokens, args.hop)}, args.out)


if __name__ == "__main__":
    main()
