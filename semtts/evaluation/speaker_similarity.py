"""Speaker similarity: the cosine between CAM++ embeddings
(:class:`semtts.extract.speaker.SpeakerEmbedder`) of synthesized and
reference audio, utterance by utterance.

Example
-------
>>> import torch
>>> from semtts.extract.speaker import SpeakerEmbedder
>>> embedder = SpeakerEmbedder.from_checkpoint(None, 192, allow_random_init=True, seed=0)
>>> wav = torch.randn(16000) * 0.1
>>> sims = speaker_similarity(embedder, [wav], [wav], 16000)
>>> sims.shape, bool(abs(sims[0] - 1) < 1e-4)
(torch.Size([1]), True)
"""

import torch
import torch.nn.functional as F

from semtts.errors import DataError
from semtts.extract.speaker import SpeakerEmbedder

__all__ = ["speaker_similarity"]


def speaker_similarity(embedder: SpeakerEmbedder, synthesized: list[torch.Tensor], references: list[torch.Tensor],
                       sample_rate: int, reference_rate: int | None = None) -> torch.Tensor:
    """Cosine similarity of the CAM++ embeddings of paired waveforms.

    Arguments
    ---------
    embedder : SpeakerEmbedder
        A loaded CAM++ embedder.
    synthesized : list of torch.Tensor
        ``N`` waveforms ``[T]`` at ``sample_rate``.
    references : list of torch.Tensor
        The ``N`` matching reference waveforms at ``reference_rate``.
    sample_rate : int
        Rate of ``synthesized``.
    reference_rate : int, optional
        Rate of ``references`` (default: ``sample_rate``).

    Returns
    -------
    torch.Tensor
        ``[N]`` cosines in [-1, 1]; 1 for identical audio.
    """
    if len(synthesized) != len(references):
        raise DataError(f"speaker_similarity: {len(synthesized)} synthesized but {len(references)} reference waveforms")
    if not synthesized:
        return torch.zeros(0)
    x = embedder.embed(list(synthesized), sample_rate)
    y = embedder.embed(list(references), reference_rate or sample_rate)
    return F.cosine_similarity(x, y, dim=-1)
