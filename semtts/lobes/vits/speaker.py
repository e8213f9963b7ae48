"""Speaker conditioning of VITS: a speaker id or an external speaker vector to ``g``.

``g`` ``[B, gin_channels, 1]`` is the global conditioning that the posterior
encoder, the flow, the duration predictor and the decoder all receive. It
comes either from a learnt table indexed by speaker id (classic multi-speaker
VITS) or from a fixed-size speaker embedding computed outside (e.g. CAM++),
projected by a linear layer, optionally after L2 normalisation.

Example
-------
>>> table = SpeakerConditioner(gin_channels=16, n_speakers=4)
>>> table(sid=torch.tensor([0, 3])).shape
torch.Size([2, 16, 1])
>>> proj = SpeakerConditioner(gin_channels=16, spk_embed_dim=192, l2_normalize=True)
>>> proj(spk_embed=torch.randn(2, 192)).shape
torch.Size([2, 16, 1])
"""

import torch
import torch.nn.functional as F
from torch import nn

from semtts.errors import ConfigError, DataError
from semtts.lobes.vits.input_checks import check_speaker_ids, int64_on

__all__ = ["SpeakerConditioner"]


class SpeakerConditioner(nn.Module):
    """Map a speaker id or a speaker embedding to the conditioning ``g``.

    Exactly one of ``n_speakers`` and ``spk_embed_dim`` is positive.

    Arguments
    ---------
    gin_channels : int
        Channels of ``g``.
    n_speakers : int
        Size of the speaker table (id mode); 0 for the embedding mode.
    spk_embed_dim : int
        Dimension of the external speaker vectors (embedding mode); 0 for the id mode.
    l2_normalize : bool
        Embedding mode: scale every speaker vector to unit L2 norm first.

    Example
    -------
    >>> cond = SpeakerConditioner(8, n_speakers=2)
    >>> cond(sid=torch.tensor([1])).squeeze(-1).shape
    torch.Size([1, 8])
    """

    def __init__(
        self,
        gin_channels: int,
        n_speakers: int = 0,
        spk_embed_dim: int = 0,
        l2_normalize: bool = False,
    ):
        super().__init__()
        if (n_speakers > 0) == (spk_embed_dim > 0):
            raise ConfigError(
                "speaker conditioning: set exactly one of n_speakers and spk_embed_dim "
                f"(got n_speakers={n_speakers}, spk_embed_dim={spk_embed_dim})"
            )
        if gin_channels <= 0:
            raise ConfigError(f"speaker conditioning: gin_channels must be > 0, got {gin_channels}")
        self.n_speakers = n_speakers
        self.spk_embed_dim = spk_embed_dim
        self.l2_normalize = l2_normalize
        self.table = nn.Embedding(n_speakers, gin_channels) if n_speakers > 0 else None
        self.proj = nn.Linear(spk_embed_dim, gin_channels) if spk_embed_dim > 0 else None

    def forward(
        self, sid: torch.Tensor | None = None, spk_embed: torch.Tensor | None = None, validate: bool = True
    ) -> torch.Tensor:
        """Conditioning for a batch.

        Arguments
        ---------
        sid : torch.Tensor, optional
            ``[B]`` integer speaker ids (id mode), on the host (checked
            without a device sync) or on the table's device.
        spk_embed : torch.Tensor, optional
            ``[B, spk_embed_dim]`` speaker vectors (embedding mode).
        validate : bool
            Check the ids against the table (False: the caller checked them).

        Returns
        -------
        torch.Tensor
            ``g`` ``[B, gin_channels, 1]``.
        """
        if self.table is not None:
            if sid is None:
                raise DataError("speaker conditioning: this model needs speaker ids (sid)")
            if validate:
                check_speaker_ids(sid, self.n_speakers)  # host ids: no device sync
            return self.table(int64_on(sid, self.table.weight.device)).unsqueeze(-1)
        if spk_embed is None:
            raise DataError("speaker conditioning: this model needs speaker embeddings (spk_embed)")
        if spk_embed.dim() != 2 or spk_embed.size(1) != self.spk_embed_dim:
            raise DataError(
                f"speaker conditioning: expected spk_embed [B, {self.spk_embed_dim}], "
                f"got {list(spk_embed.shape)}"
            )
        if self.l2_normalize:
            spk_embed = F.normalize(spk_embed, dim=1)
        return self.proj(spk_embed).unsqueeze(-1)
