"""PNG plots of synthesized speech, for stage 9 (``eval/plots/<split>/``)
and ``semtts eval`` (``OUT_DIR/plots/<split>/``):

- :func:`plot_alignment`: the token-to-frame alignment of one utterance, from
  the per-token durations stage 8 writes (``durations.json``), as an image
  (x: frames, y: tokens), one panel per stage;
- :func:`plot_mel_comparison`: the log-mel spectrograms of the reference
  recording and of each stage's synthesis, stacked on one time axis (the mel
  of :class:`semtts.audio.SpectrogramConfig`);
- :func:`plot_duration_histogram`: the distribution of frames per token,
  one outline per stage;
- :func:`plot_synthesized_split`: all three for the first few utterances of
  a split.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas
(no pyplot, no global backend change) and written at 100 dpi. Every function
returns the paths it wrote.

Example
-------
>>> alignment_matrix([2, 0, 1])  # [T_text, T_frames]: token 1 has no frame
array([[1., 1., 0.],
       [0., 0., 0.],
       [0., 0., 1.]], dtype=float32)
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> plot_alignment({"A": [2, 0, 3, 1]}, folder / "u1_alignment.png").name
'u1_alignment.png'
>>> wav = 0.1 * torch.randn(8192)  # [T] samples at 22.05 kHz
>>> plot_mel_comparison({"reference": (wav, 22050), "A": (wav[:4096], 22050)}, folder / "u1_mel.png").stat().st_size > 0
True
"""

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from semtts.audio import SpectrogramConfig, resample
from semtts.data.manifest import resolve_audio_path
from semtts.errors import ConfigError, DataError
from semtts.evaluation.scoring import evaluated_wavs, load_checked_audio

__all__ = ["alignment_matrix", "read_durations", "plot_alignment", "plot_mel_comparison", "plot_duration_histogram",
           "plot_synthesized_split"]

logger = logging.getLogger(__name__)

DPI = 100
MEL_FLOOR = float(np.log(1e-5))  # the log-mel of silence (semtts.audio clamps at 1e-5)


def _figure(rows: int, width: float, row_height: float, sharex: bool = False):
    """A matplotlib Figure (Agg canvas) with ``rows`` stacked axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 0.6 + row_height * rows))
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    except OSError as err:
        raise DataError(f"{path}: cannot write the plot ({err.__class__.__name__}: {err.strerror})") from None
    return path


def _check_durations(durations: Sequence[int], what: str) -> np.ndarray:
    d = np.asarray(durations)
    if d.ndim != 1 or d.size == 0 or not np.issubdtype(d.dtype, np.integer) or (d < 0).any():
        raise DataError(f"{what}: durations must be a non-empty list of frame counts >= 0")
    return d.astype(np.int64)


def alignment_matrix(durations: Sequence[int]) -> np.ndarray:
    """The hard alignment that per-token durations describe.

    Arguments
    ---------
    durations : sequence of int
        Frames per token (``[T_text]``, zeros allowed).

    Returns
    -------
    numpy.ndarray
        ``[T_text, T_frames]`` float32, 1 where a frame belongs to a token,
        ``T_frames = sum(durations)``.
    """
    d = _check_durations(durations, "alignment_matrix")
    ends = np.cumsum(d)
    frames = np.arange(int(ends[-1]))
    return ((frames[None, :] >= (ends - d)[:, None]) & (frames[None, :] < ends[:, None])).astype(np.float32)


def read_durations(synth_dir: str | Path) -> dict[str, list[int]]:
    """Read the per-token durations of a synthesized split (stage 8's ``durations.json``).

    Arguments
    ---------
    synth_dir : str or Path
        ``synth/<stage>/<split>/``.

    Returns
    -------
    dict
        ``{utt_id: [frames per token]}``.
    """
    path = Path(synth_dir) / "durations.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: durations not found (written by stage 8)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a valid durations file ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected {{utt_id: {{\"durations\": [int], \"n_samples\": int}}}}")
    out = {}
    for utt_id, record in data.items():
        durations = record.get("durations") if isinstance(record, dict) else None
        if not isinstance(durations, list):
            raise DataError(f"{path}: item '{utt_id}' has no 'durations' list")
        out[utt_id] = _check_durations(durations, f"{path}: item '{utt_id}'").tolist()
    return out


def plot_alignment(durations: dict[str, Sequence[int]], path: str | Path, title: str = "") -> Path:
    """Draw the token-to-frame alignment of one utterance, one panel per stage.

    Arguments
    ---------
    durations : dict
        ``{label: [frames per token]}`` (e.g. ``{"A": [...], "C": [...]}``).
    path : str or Path
        The PNG to write.
    title : str
        The figure title (e.g. the utterance id).

    Returns
    -------
    Path
        ``path``.
    """
    if not durations:
        raise DataError(f"{path}: no durations to draw")
    fig, axes = _figure(len(durations), 8.0, 2.4)
    for ax, (label, item) in zip(axes, durations.items()):
        matrix = alignment_matrix(item)
        ax.imshow(matrix, aspect="auto", origin="lower", interpolation="nearest", cmap="Greys",
                  extent=(0, matrix.shape[1], 0, matrix.shape[0]))
        ax.set_ylabel("token")
        ax.set_title(f"{label}: {matrix.shape[0]} tokens, {matrix.shape[1]} frames", fontsize=9)
    axes[-1].set_xlabel("frame")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_mel_comparison(panels: dict[str, tuple[torch.Tensor, int]], path: str | Path,
                        spectrogram: SpectrogramConfig | None = None, title: str = "") -> Path:
    """Stack the log-mel spectrograms of several recordings of one utterance.

    Arguments
    ---------
    panels : dict
        ``{label: (waveform [T], sample_rate)}``, drawn top to bottom
        (e.g. ``reference``, then stages ``A``, ``B``, ``C``).
    path : str or Path
        The PNG to write.
    spectrogram : SpectrogramConfig, optional
        The mel settings (default: semtts's at the first panel's rate); every
        waveform is resampled to its ``sample_rate``.
    title : str
        The figure title.

    Returns
    -------
    Path
        ``path``.
    """
    if not panels:
        raise DataError(f"{path}: no audio to draw")
    cfg = spectrogram or SpectrogramConfig(sample_rate=int(next(iter(panels.values()))[1]))
    mels = {}
    for label, (wav, sr) in panels.items():
        wav = resample(torch.as_tensor(wav).float().reshape(-1), int(sr), cfg.sample_rate)
        if wav.numel() <= cfg.n_fft:
            raise DataError(f"{path}: the '{label}' audio is too short for a spectrogram")
        mels[label] = cfg.mel_spectrogram(wav).numpy()  # [n_mels, T_spec]
    top = max(float(m.max()) for m in mels.values())
    seconds = cfg.hop_length / cfg.sample_rate
    fig, axes = _figure(len(mels), 8.0, 2.0, sharex=True)
    for ax, (label, mel) in zip(axes, mels.items()):
        image = ax.imshow(mel, aspect="auto", origin="lower", interpolation="nearest", vmin=max(MEL_FLOOR, top - 12),
                          vmax=top, extent=(0, mel.shape[1] * seconds, 0, mel.shape[0]))
        ax.set_ylabel("mel")
        ax.set_title(label, fontsize=9)
        fig.colorbar(image, ax=ax, pad=0.01)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_duration_histogram(durations: dict[str, Sequence[int]], path: str | Path, title: str = "") -> Path:
    """Draw the distribution of frames per token of each stage, overlaid.

    Arguments
    ---------
    durations : dict
        ``{label: [frames per token of all its utterances]}``.
    path : str or Path
        The PNG to write.
    title : str
        The figure title.

    Returns
    -------
    Path
        ``path``.
    """
    values = {label: _check_durations(d, f"{path}: '{label}'") for label, d in durations.items()}
    if not values:
        raise DataError(f"{path}: no durations to draw")
    bins = np.arange(-0.5, max(int(v.max()) for v in values.values()) + 1.5)
    fig, (ax,) = _figure(1, 6.0, 3.2)
    for label, v in values.items():
        ax.hist(v, bins=bins, density=True, histtype="step", linewidth=1.5,
                label=f"{label} ({v.size} tokens, mean {v.mean():.2f})")
    ax.set_xlabel("frames per token")
    ax.set_ylabel("fraction of tokens")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_synthesized_split(plots_dir: str | Path, synth_dirs: dict[str, Path], items: dict[str, dict],
                           data_root: str | Path, cache_root: str | Path, n_utterances: int = 3,
                           spectrogram: SpectrogramConfig | None = None, max_utterances: int = 0) -> list[Path]:
    """The plots of one split synthesized by one or more stages.

    Writes, in ``plots_dir``: ``<utt_id>_mel.png`` (reference and every stage)
    and ``<utt_id>_alignment.png`` for the first ``n_utterances`` evaluated
    utterances by id, and ``durations.png`` over all evaluated utterances.
    A stage folder without ``durations.json`` gets no alignment or duration
    plot (logged).

    Arguments
    ---------
    plots_dir : str or Path
        Where the PNGs go (e.g. ``eval/plots/<split>``).
    synth_dirs : dict
        ``{stage: synth/<stage>/<split>/}`` in drawing order.
    items : dict
        The split's stage-2 manifest (the reference recordings).
    data_root, cache_root : str or Path
        The ``{data_root}`` and ``{cache_root}`` folders.
    n_utterances : int
        Utterances drawn one by one (0: none, only the histogram).
    spectrogram : SpectrogramConfig, optional
        The mel settings (see :func:`plot_mel_comparison`).
    max_utterances : int
        The evaluation's cap per split (0: all), see
        :func:`semtts.evaluation.scoring.evaluated_wavs`.

    Returns
    -------
    list of Path
        The PNGs written.
    """
    if n_utterances < 0:
        raise ConfigError(f"the number of utterances to plot must be >= 0, got {n_utterances}")
    plots_dir = Path(plots_dir)
    wavs = {stage: {p.stem: p for p in evaluated_wavs(folder, max_utterances)} for stage, folder in synth_dirs.items()}
    durations = {}
    for stage, folder in synth_dirs.items():
        if (Path(folder) / "durations.json").is_file():
            durations[stage] = {utt: d for utt, d in read_durations(folder).items() if utt in wavs[stage]}
        else:
            logger.warning("%s: no durations.json, so no alignment or duration plots for it", folder)
    written = []
    for utt_id in sorted(set().union(*wavs.values()))[:n_utterances]:
        if utt_id not in items:
            raise DataError(f"utterance '{utt_id}' is synthesized but not in the split's manifest")
        ref_path = resolve_audio_path(items[utt_id]["wav"], data_root=data_root, cache_root=cache_root)
        panels = {"reference": load_checked_audio(ref_path, f"reference ('{utt_id}')")}
        panels |= {stage: load_checked_audio(found[utt_id], "synthesized")
                   for stage, found in wavs.items() if utt_id in found}
        written.append(plot_mel_comparison(panels, plots_dir / f"{utt_id}_mel.png", spectrogram, utt_id))
        aligned = {stage: d[utt_id] for stage, d in durations.items() if utt_id in d}
        if aligned:
            written.append(plot_alignment(aligned, plots_dir / f"{utt_id}_alignment.png", utt_id))
    pooled = {stage: [n for d in per_utt.values() for n in d] for stage, per_utt in durations.items() if per_utt}
    if pooled:
        written.append(plot_duration_histogram(pooled, plots_dir / "durations.png",
                                               f"{plots_dir.name}: frames per token"))
    return written
