"""The evaluation report: per-utterance metrics summarised per stage and
split, ``eval/metrics.json``, and ``eval/results.md``, a Markdown table with
the trained stages A, B and C side by side (only the stages evaluated), and
PNG bar charts (``eval/<metric>.png``, stages by splits). The per-utterance
plots (alignments, mels, durations) are :mod:`semtts.evaluation.plots`'.

Example
-------
>>> metrics = {"A": {"test": {"mcd": 7.5, "wer": 0.5, "utterances": 2}},
...            "C": {"test": {"mcd": 6.25, "wer": 0.25, "utterances": 2}}}
>>> print(markdown_table(metrics))
| split | metric | A | C |
|---|---|---|---|
| test | MCD (dB) | 7.50 | 6.25 |
| test | WER (%) | 50.00 | 25.00 |
| test | utterances | 2 | 2 |
"""

import math
from pathlib import Path

from semtts.data.manifest import write_json_atomic

__all__ = ["STAGES", "METRICS", "mean_of", "summarize_split", "markdown_table", "write_report"]

STAGES = ("A", "B", "C")
# metric key -> (row label, scale for display, decimals)
METRICS: dict[str, tuple[str, float, int]] = {
    "mcd": ("MCD (dB)", 1.0, 2),
    "log_f0_rmse": ("log-F0 RMSE", 1.0, 4),
    "f0_utterances": ("utterances with log-F0 (voiced in both)", 1.0, 0),
    "vuv_error": ("V/UV error (%)", 100.0, 2),
    "spk_sim": ("speaker similarity", 1.0, 4),
    "wer": ("WER (%)", 100.0, 2),
    "cer": ("CER (%)", 100.0, 2),
    "rtf": ("real-time factor", 1.0, 4),
    "utterances": ("utterances", 1.0, 0),
}


def mean_of(values: list) -> float | None:
    """The mean of the finite numbers among ``values`` (None if there are none).

    Example
    -------
    >>> mean_of([1.0, None, float("nan"), 3.0]), mean_of([None])
    (2.0, None)
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return round(sum(finite) / len(finite), 6) if finite else None


def summarize_split(utterances: dict[str, dict], rates: dict, rtf: float | None) -> dict:
    """The metrics of one split: means over utterances, corpus-level error rates.

    Arguments
    ---------
    utterances : dict
        ``{utt_id: {"mcd", "log_f0_rmse", "vuv_error", "spk_sim", ...}}``.
    rates : dict
        ``wer`` and ``cer`` from :func:`semtts.evaluation.wer.error_rates`.
    rtf : float or None
        The real-time factor from stage 8's ``report.json``.

    Returns
    -------
    dict
        One value per key of :data:`METRICS`; ``f0_utterances`` counts the
        utterances in the log-F0 mean (one with no frame voiced in both the
        synthesis and the reference, e.g. a silent synthesis, has no log-F0).

    Example
    -------
    >>> summary = summarize_split({"u1": {"mcd": 4.0, "log_f0_rmse": 0.1}, "u2": {"mcd": 6.0, "log_f0_rmse": None}},
    ...                           {"wer": 0.1, "cer": 0.05}, 0.2)
    >>> summary["mcd"], summary["log_f0_rmse"], summary["f0_utterances"], summary["utterances"]
    (5.0, 0.1, 1, 2)
    """
    out = {key: mean_of([u.get(key) for u in utterances.values()])
           for key in ("mcd", "log_f0_rmse", "vuv_error", "spk_sim")}
    out["f0_utterances"] = sum(mean_of([u.get("log_f0_rmse")]) is not None for u in utterances.values())
    out.update({"wer": rates.get("wer"), "cer": rates.get("cer"), "rtf": rtf, "utterances": len(utterances)})
    return out


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    label, scale, decimals = METRICS.get(key, (key, 1.0, 4))
    return f"{float(value) * scale:.{decimals}f}"


def markdown_table(metrics: dict[str, dict[str, dict]]) -> str:
    """A Markdown table: one row per split and metric, one column per stage (A, B, C order).

    Arguments
    ---------
    metrics : dict
        ``{stage: {split: {metric: value}}}``.

    Returns
    -------
    str
        The table (no trailing newline); missing values are ``-``.
    """
    stages = [s for s in STAGES if s in metrics] + sorted(s for s in metrics if s not in STAGES)
    splits: list[str] = []
    for stage in stages:
        splits += [split for split in metrics[stage] if split not in splits]
    lines = ["| split | metric | " + " | ".join(stages) + " |", "|---" * (len(stages) + 2) + "|"]
    for split in splits:
        keys = [k for k in METRICS if any(k in metrics[s].get(split, {}) for s in stages)]
        for key in keys:
            cells = [_cell(key, metrics[s].get(split, {}).get(key)) for s in stages]
            lines.append(f"| {split} | {METRICS[key][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(eval_dir: Path, metrics: dict[str, dict[str, dict]]) -> list[str]:
    """Bar charts per metric (stages x splits), drawn on matplotlib's Agg canvas."""
    from matplotlib.figure import Figure

    stages = [s for s in STAGES if s in metrics] + sorted(s for s in metrics if s not in STAGES)
    splits = sorted({split for stage in stages for split in metrics[stage]})
    written = []
    for key, (label, scale, _) in METRICS.items():
        if key == "utterances":
            continue
        fig = Figure(figsize=(1.5 + 1.2 * len(stages) * max(len(splits), 1), 3.5))
        ax = fig.subplots()
        width = 0.8 / max(len(splits), 1)
        drawn = False
        for k, split in enumerate(splits):
            values = [metrics[s].get(split, {}).get(key) for s in stages]
            heights = [float(v) * scale if v is not None else 0.0 for v in values]
            drawn |= any(v is not None for v in values)
            ax.bar([i + k * width for i in range(len(stages))], heights, width, label=split)
        if drawn:
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(stages))], stages)
            ax.set_ylabel(label)
            ax.legend()
            fig.tight_layout()
            path = eval_dir / f"{key}.png"
            fig.savefig(path, dpi=100)
            written.append(str(path))
    return written


def write_report(eval_dir: str | Path, metrics: dict[str, dict[str, dict]],
                 rtf_source: str = "stage 8's synthesis") -> str:
    """Write ``metrics.json``, ``results.md`` and the bar charts.

    Arguments
    ---------
    eval_dir : str or Path
        The ``<output_folder>/eval`` folder.
    metrics : dict
        ``{stage: {split: {metric: value}}}``.
    rtf_source : str
        What the real-time factor measured, for the text of ``results.md``.

    Returns
    -------
    str
        The Markdown table.
    """
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(eval_dir / "metrics.json", metrics)
    table = markdown_table(metrics)
    text = ("# Evaluation\n\nMCD, log-F0 RMSE and V/UV error are DTW-aligned to the reference recording; "
            "speaker similarity is the CAM++ cosine to it; WER/CER from the Whisper ASR; "
            f"the real-time factor is that of {rtf_source}.\n\n" + table + "\n")
    tmp = eval_dir / "results.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(eval_dir / "results.md")
    _plot(eval_dir, metrics)
    return table
