"""A tiny VITS training run for the Brain tests, and its DDP entry point.

The helpers (hparams from ``hparams/model/vits_tiny.yaml`` and
``hparams/train_A.yaml`` loaded like the training stage loads them, and a
synthetic dataset of short harmonic signals) are shared with
``tests/test_brain.py``. Run as a script under torchrun, every process trains
a few steps and saves its parameters to ``OUT_DIR/params_rank<r>.pt``::

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_train_worker.py OUT_DIR \\
        --distributed_backend gloo --device cpu

``OUT_DIR/corpus.yaml`` must exist (:func:`write_corpus_yaml`).
"""

import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 22050
N_VOCAB = 20
N_SPEAKERS = 2


def write_corpus_yaml(folder: Path) -> Path:
    """A minimal recipe ``corpus.yaml`` including the tiny model and train_A files."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.yaml"
    path.write_text(
        f"output_folder: {folder / 'exp'}\n"
        "seed: 1234\n"
        f"sample_rate: {SAMPLE_RATE}\n"
        f"model_hparams: {ROOT / 'hparams' / 'model' / 'vits_tiny.yaml'}\n"
        f"train_A_hparams: {ROOT / 'hparams' / 'train_A.yaml'}\n",
        encoding="utf-8",
    )
    return path


def load_tiny_hparams(corpus_yaml: Path, overrides: dict | None = None, n_speakers: int = N_SPEAKERS) -> dict:
    """The merged stage-A hparams of the tiny model, as the training stage loads them."""
    from semtts.stages.common import load_stage_hparams

    settings = {"num_workers": 0, "log_interval": 2, "audio_log_interval": 3, "speaker_mode": "sid"}
    settings.update(overrides or {})
    return load_stage_hparams(
        str(corpus_yaml), settings, include=("model_hparams", "train_A_hparams"),
        extra={"n_vocab": N_VOCAB, "n_speakers": n_speakers},
    )


def harmonic_signal(n_samples: int, f0: float, seed: int) -> torch.Tensor:
    """A voiced-like test signal: five harmonics of ``f0`` under a smooth envelope, ``[T]``."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n_samples) / SAMPLE_RATE
    wav = sum(torch.sin(2 * math.pi * f0 * k * t + float(torch.rand(1, generator=gen)) * 6.28) / k
              for k in range(1, 6))
    envelope = 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(n_samples) / n_samples)
    return (0.3 * wav * (0.2 + 0.8 * envelope)).float()


def synthetic_items(n_items: int, n_samples: int, n_tokens: int, seed: int = 0) -> list[dict]:
    """Items like the data pipeline's: ``sig`` ``[T]``, ``token_ids`` ``[T_text]``, ``spk_id``."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n_items):
        items.append({
            "id": f"utt{i}",
            "sig": harmonic_signal(n_samples, 110.0 + 25.0 * i, seed + i),
            "token_ids": torch.randint(1, N_VOCAB, (n_tokens,), generator=gen),
            "spk_id": i % N_SPEAKERS,
        })
    return items


def synthetic_dataset(n_items: int, n_samples: int = 6144, n_tokens: int = 7, seed: int = 0):
    """A SpeechBrain ``DynamicItemDataset`` of :func:`synthetic_items`."""
    from speechbrain.dataio.dataset import DynamicItemDataset

    data = {item.pop("id"): item for item in synthetic_items(n_items, n_samples, n_tokens, seed)}
    return DynamicItemDataset(data, output_keys=["id", "sig", "token_ids", "spk_id"])


def build_brain(hp: dict, run_opts: dict | object, checkpointer=None):
    """A VITSBrain over the hparams' generator and discriminator."""
    from semtts.brain import VITSBrain

    modules = {"generator": hp["generator"], "discriminator": hp["discriminator"]}
    return VITSBrain(modules=modules, hparams=hp, run_opts=run_opts, checkpointer=checkpointer)


def varied_dataset(n_items: int):
    """Synthetic utterances of five lengths (0.19-0.37 s), with their ``duration`` for the bucketing."""
    from speechbrain.dataio.dataset import DynamicItemDataset

    data = {}
    for i in range(n_items):
        item = synthetic_items(1, 4096 + 1024 * (i % 5), 7, seed=i)[0]
        del item["id"]
        data[f"utt{i}"] = {**item, "duration": item["sig"].numel() / SAMPLE_RATE}
    return DynamicItemDataset(data, output_keys=["id", "sig", "token_ids", "spk_id"])


def main(argv: list[str]) -> None:
    """Train one epoch of four batches per process (DDP) and save the parameters."""
    import speechbrain as sb

    from semtts.checkpoint import make_checkpointer
    from semtts.compiled_parts import compiled_graph_count
    from semtts.data.dataset import make_train_sampler

    out_dir, run_opts, overrides = sb.parse_arguments(argv)
    bucketed = "dynamic_batching: true" in overrides.lower()  # --dynamic_batching True
    sb.utils.distributed.ddp_init_group(run_opts)
    out_dir = Path(out_dir)
    torch.manual_seed(torch.distributed.get_rank())  # different inits: DDP must broadcast rank 0's
    hp = load_tiny_hparams(out_dir / "corpus.yaml", {"number_of_epochs": 1})
    checkpointer = make_checkpointer(hp["save_folder"], hp["generator"], hp["discriminator"], hp["epoch_counter"])
    brain = build_brain(hp, run_opts, checkpointer)
    data, loader_kwargs = synthetic_dataset(16), {"batch_size": 2}
    if bucketed:  # buckets of 10 and 6 utterances, 8 batches of 2
        data = varied_dataset(16)
        loader_kwargs = {"batch_sampler": make_train_sampler(data, 1.0, num_buckets=2, seed=5, max_batch_size=2)}
    batches = []
    brain.on_fit_batch_start = lambda batch, should_step: batches.append(batch.id)
    brain.fit(hp["epoch_counter"], data, train_loader_kwargs=loader_kwargs)
    params = {f"generator.{k}": v for k, v in hp["generator"].state_dict().items()}
    params.update({f"discriminator.{k}": v for k, v in hp["discriminator"].state_dict().items()})
    params["global_step"] = torch.tensor(brain.global_step)
    params["compiled_graphs"] = torch.tensor(compiled_graph_count())  # --compile
    if bucketed:
        params["trained_items"] = torch.tensor([int(utt_id[3:]) for batch in batches for utt_id in batch])
    torch.save(params, out_dir / f"params_rank{torch.distributed.get_rank()}.pt")


if __name__ == "__main__":
    main(sys.argv[1:])
