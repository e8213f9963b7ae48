"""Stage 7: train stage C (the semantic cross-attention adapter on the prior,
teacher forcing annealed towards the student), starting from stage B's last
checkpoint; see :mod:`semtts.stages.train`.

    python -m semtts.stages.train_c recipes/mini/hparams/corpus.yaml
"""

from semtts.errors import entry_point
from semtts.stages.train import train

__all__ = ["main"]


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 7 entry point."""
    return train("C", argv)


if __name__ == "__main__":
    main()
