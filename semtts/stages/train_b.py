"""Stage 6: train stage B (semantic distillation: SemPred learns the Whisper
teacher from the text encoder), starting from stage A's last checkpoint; see
:mod:`semtts.stages.train`.

    python -m semtts.stages.train_b recipes/mini/hparams/corpus.yaml
"""

from semtts.errors import entry_point
from semtts.stages.train import train

__all__ = ["main"]


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stage 6 entry point."""
    return train("B", argv)


if __name__ == "__main__":
    main()
