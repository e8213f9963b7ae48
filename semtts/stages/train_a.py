"""Stage 5: train stage A (VITS with speaker conditioning); see
:mod:`semtts.stages.train`.

    python -m semtts.stages.train_a recipes/mini/hparams/corpus.yaml
"""

from semtts.errors import entry_point
from semtts.stages.train import train

__all__ = ["main"]


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 5 entry point."""
    return train("A", argv)


if __name__ == "__main__":
    main()
