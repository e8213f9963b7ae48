"""Checks of the generator's batch inputs, run on host copies of the lengths.

A check such as ``int(lengths.max()) > T`` on a CUDA tensor waits for every
queued kernel before it can read the value (a host sync). The checks here
read the lengths through ``.cpu()``, which is the tensor itself when it is
already on the host: a caller that passes its lengths on the CPU (as
:class:`~semtts.brain.VITSBrain` does in training) has them checked without
a sync, and :func:`int64_on` then copies them to the device without
blocking. Lengths given on the device still work; their check syncs once.

Example
-------
>>> tokens = torch.zeros(2, 5, dtype=torch.long)
>>> check_tokens(tokens, torch.tensor([5, 3]))
>>> check_tokens(tokens, torch.tensor([6, 3]))
Traceback (most recent call last):
    ...
semtts.errors.DataError: vits: token_lengths must lie in [1, 5]
>>> check_alignable(torch.tensor([5, 3]), torch.tensor([9, 2]))
Traceback (most recent call last):
    ...
semtts.errors.DataError: vits: batch item 1 has fewer frames than tokens (no monotonic alignment exists)
"""

from typing import Any

import torch

from semtts.errors import DataError

__all__ = ["check_tokens", "check_spec", "check_alignable", "check_speaker_ids", "int64_on", "lengths_on_device"]


def _check_range(values: torch.Tensor, low: int, high: int, message: str) -> None:
    """Raise ``DataError(message)`` unless every value lies in ``[low, high]`` (read on the host)."""
    host = values.cpu()
    if host.numel() and (int(host.min()) < low or int(host.max()) > high):
        raise DataError(message)


def check_tokens(tokens: torch.Tensor, token_lengths: torch.Tensor) -> None:
    """Raise :class:`~semtts.errors.DataError` on a malformed token batch.

    Arguments
    ---------
    tokens : torch.Tensor
        ``[B, T_text]`` token ids.
    token_lengths : torch.Tensor
        ``[B]`` absolute token counts (on the host: no sync).
    """
    if tokens.dim() != 2 or token_lengths.shape != tokens.shape[:1]:
        raise DataError(
            f"vits: expected tokens [B, T_text] and token_lengths [B], got "
            f"{list(tokens.shape)} and {list(token_lengths.shape)}"
        )
    _check_range(token_lengths, 1, tokens.size(1), f"vits: token_lengths must lie in [1, {tokens.size(1)}]")


def check_spec(spec: torch.Tensor, spec_lengths: torch.Tensor, spec_channels: int) -> None:
    """Raise :class:`~semtts.errors.DataError` on a malformed spectrogram batch.

    Arguments
    ---------
    spec : torch.Tensor
        ``[B, spec_channels, T_spec]`` spectrograms.
    spec_lengths : torch.Tensor
        ``[B]`` absolute frame counts (on the host: no sync).
    spec_channels : int
        The frequency bins the model expects.
    """
    if spec.dim() != 3 or spec.size(1) != spec_channels:
        raise DataError(f"vits: expected spec [B, {spec_channels}, T_spec], got {list(spec.shape)}")
    if spec_lengths.shape != spec.shape[:1]:
        raise DataError(f"vits: expected spec_lengths [{spec.size(0)}], got {list(spec_lengths.shape)}")
    _check_range(spec_lengths, 1, spec.size(2), f"vits: spec_lengths must lie in [1, {spec.size(2)}]")


def check_alignable(token_lengths: torch.Tensor, spec_lengths: torch.Tensor) -> None:
    """Raise :class:`~semtts.errors.DataError` naming the first item with
    fewer spectrogram frames than tokens (no monotonic alignment exists).

    Arguments
    ---------
    token_lengths : torch.Tensor
        ``[B]`` token counts.
    spec_lengths : torch.Tensor
        ``[B]`` frame counts.
    """
    if token_lengths.shape != spec_lengths.shape:
        raise DataError(f"vits: {token_lengths.numel()} token rows but {spec_lengths.numel()} spectrograms")
    too_short = (spec_lengths.cpu() < token_lengths.cpu()).nonzero()
    if too_short.numel():
        raise DataError(
            f"vits: batch item {int(too_short[0, 0])} has fewer frames than tokens "
            "(no monotonic alignment exists)"
        )


def check_speaker_ids(sid: torch.Tensor, n_speakers: int) -> None:
    """Raise :class:`~semtts.errors.DataError` on a speaker id outside the table.

    Arguments
    ---------
    sid : torch.Tensor
        ``[B]`` integer speaker ids (on the host: no sync).
    n_speakers : int
        Size of the speaker table.
    """
    _check_range(sid, 0, n_speakers - 1, f"speaker conditioning: speaker id out of range [0, {n_speakers})")


def int64_on(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Integer ``values`` (lengths, speaker ids) as int64 on ``device``.

    A host tensor goes to a GPU through pinned memory without blocking (no
    wait for the device's queue); a device tensor comes to the host with a
    blocking copy (a non-blocking one could be read before it lands).

    Arguments
    ---------
    values : torch.Tensor
        ``[B]`` integers.
    device : torch.device
        Where the model runs.

    Returns
    -------
    torch.Tensor
    """
    from_host = values.device.type == "cpu"
    if from_host and torch.device(device).type == "cuda":
        values = values.long().pin_memory()
    return values.to(device=device, dtype=torch.long, non_blocking=from_host)


def lengths_on_device(
    model: Any, validate: bool, tokens: torch.Tensor, token_lengths: torch.Tensor, spec: torch.Tensor,
    spec_lengths: torch.Tensor, sid: torch.Tensor | None = None, **extra: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.check_inputs`` (a VITS generator's) when ``validate`` (False: the
    caller checked the batch on the host), then the lengths as int64 on
    ``tokens``'s device: how a training ``forward`` starts.

    Arguments
    ---------
    model : VITSSynthesizer
        The generator (its ``check_inputs``).
    validate : bool
        Check the batch.
    tokens, token_lengths, spec, spec_lengths, sid : torch.Tensor
        As ``model.forward``; ``**extra``: further arguments of ``check_inputs``.

    Returns
    -------
    tuple of torch.Tensor
        ``token_lengths`` and ``spec_lengths``.
    """
    if validate:
        model.check_inputs(tokens, token_lengths, spec, spec_lengths, sid, **extra)
    return int64_on(token_lengths, tokens.device), int64_on(spec_lengths, tokens.device)
