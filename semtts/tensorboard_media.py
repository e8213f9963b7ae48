"""TensorBoard images and audio of a training or validation batch (the VITS Brain's media).

Example
-------
>>> to_image(torch.tensor([[0.0, 2.0], [4.0, 4.0]])).tolist()  # [1, H, W], row 0 at the bottom
[[[1.0, 1.0], [0.0, 0.5]]]
"""

from typing import Any

import torch

__all__ = ["to_image", "log_media"]


def to_image(x: torch.Tensor) -> torch.Tensor:
    """A ``[H, W]`` tensor as a ``[1, H, W]`` image in [0, 1], row 0 at the bottom.

    Arguments
    ---------
    x : torch.Tensor
        ``[H, W]`` values.

    Returns
    -------
    torch.Tensor
        ``[1, H, W]`` float32 CPU image.
    """
    x = x.detach().float().cpu()
    return torch.flip((x - x.min()) / (x.max() - x.min()).clamp_min(1e-8), dims=[0]).unsqueeze(0)


def log_media(writer: Any, split: str, step: int, spectrogram: Any, predictions: Any,
              synthesized: torch.Tensor | None = None) -> None:
    """Write the alignment, the real and generated mel windows and the audio of the first item.

    Arguments
    ---------
    writer : torch.utils.tensorboard.SummaryWriter
        The TensorBoard writer.
    split : str
        ``train``, ``valid`` or ``test`` (the tag prefix).
    step : int
        The global step.
    spectrogram : semtts.audio.SpectrogramConfig
        Mel features of ``synthesized`` and the sample rate.
    predictions : semtts.brain.VITSForward
        The batch's forward pass (``output.path``, masks, ``mel_real``,
        ``mel_fake``, ``y``, ``y_hat``).
    synthesized : torch.Tensor, optional
        ``[1, S]`` the first item synthesized from its text.
    """
    out = predictions.output
    n_frames, n_tokens = int(out.spec_mask[0].sum()), int(out.token_mask[0].sum())
    writer.add_image(f"{split}/alignment", to_image(out.path[0, :n_frames, :n_tokens].T), step)
    writer.add_image(f"{split}/mel_real", to_image(predictions.mel_real[0]), step)
    writer.add_image(f"{split}/mel_generated", to_image(predictions.mel_fake[0]), step)
    rate = spectrogram.sample_rate
    waveforms = {"real": predictions.y[0], "generated": predictions.y_hat[0], "synthesized": synthesized}
    for name, wav in waveforms.items():
        if wav is not None:
            writer.add_audio(f"{split}/{name}", wav.detach().float().clamp(-1, 1).cpu(), step, sample_rate=rate)
    if synthesized is not None:
        writer.add_image(f"{split}/mel_synthesized", to_image(spectrogram.mel_spectrogram(synthesized)[0]), step)
