"""``semtts eval``: evaluate a packed model (stage 10) on a test manifest.

Every utterance of a stage-2 manifest (``{utt_id: {"wav", "text", "spk",
...}}``; at most ``max_utterances``, by id) is synthesized with the packed
model, in the voice of its reference: zero-shot from its own recording when
the model is conditioned on CAM++ vectors, else its training speaker id (a
single-speaker model takes none). The synthesis is written as stage 8 writes
it and scored by the same code as stage 9
(:func:`semtts.evaluation.scoring.evaluate_split`): MCD, log-F0 RMSE and V/UV
error, CAM++ speaker similarity, WER / CER of a Whisper ASR, and the
real-time factor measured here (one utterance at a time; zero-shot includes
embedding the reference).

``OUT_DIR`` gets stage 9's layout, the model's stage as the column:
``synth/<split>/`` (wavs, ``durations.json``, ``report.json``),
``<stage>/<split>.json`` (per utterance), ``metrics.json``, ``results.md``,
``<metric>.png`` and ``plots/<split>/`` (:mod:`semtts.evaluation.plots`).

    semtts eval --model exp/ljspeech/default/packed --manifest exp/ljspeech/default/tokens/test.json \\
        --data-root /data/LJSpeech-1.1 -o eval_packed/

Example
-------
>>> asr_language("en-us"), asr_language("cmn")
('en', 'zh')
>>> items = {"u2": {"wav": "{data_root}/b.wav"}, "u1": {"wav": "{cache_root}/a.wav"}}
>>> list(select_utterances(items, 1))
['u1']
"""

import time
from pathlib import Path

import torch

from semtts.audio import save_audio
from semtts.data.manifest import CACHE_ROOT, DATA_ROOT, read_manifest, resolve_audio_path, write_json_atomic
from semtts.errors import ConfigError, DataError, WeightsNotFound
from semtts.evaluation.plots import plot_synthesized_split
from semtts.evaluation.report import write_report
from semtts.evaluation.scoring import evaluate_split
from semtts.evaluation.wer import WhisperASR
from semtts.extract.speaker import SpeakerEmbedder
from semtts.pretrained import SemTTS
from semtts.text.phonemize import is_mandarin

__all__ = ["asr_language", "select_utterances", "reference_paths", "synthesize_manifest", "scoring_embedder",
           "evaluate_packed_model"]


def asr_language(frontend_language: str) -> str:
    """The Whisper language code of a model's text frontend language.

    Arguments
    ---------
    frontend_language : str
        An espeak-ng language (``en-us``, ``fr-fr``) or a Mandarin code (``cmn``, ``zh``).

    Returns
    -------
    str
        ``zh`` for Mandarin, else the language part of the code (``en``).
    """
    if is_mandarin(frontend_language):
        return "zh"
    return str(frontend_language).lower().replace("_", "-").split("-")[0]


def select_utterances(items: dict[str, dict], max_utterances: int = 0) -> dict[str, dict]:
    """The utterances to evaluate: the first ``max_utterances`` by id.

    Arguments
    ---------
    items : dict
        A manifest.
    max_utterances : int
        At most this many (0: all).

    Returns
    -------
    dict
        ``{utt_id: item}`` sorted by id.
    """
    if max_utterances < 0:
        raise ConfigError(f"--max-utterances must be >= 0, got {max_utterances}")
    ids = sorted(items)
    return {utt_id: items[utt_id] for utt_id in (ids[:max_utterances] if max_utterances else ids)}


def reference_paths(items: dict[str, dict], manifest: str | Path, data_root: str | Path | None,
                    cache_root: str | Path | None) -> dict[str, Path]:
    """The reference recordings of a manifest's items, checked to exist.

    Arguments
    ---------
    items : dict
        The utterances (``wav`` may hold ``{data_root}`` / ``{cache_root}``).
    manifest : str or Path
        Their manifest, for the messages.
    data_root, cache_root : str or Path, optional
        The folders of the placeholders (required when a path uses one).

    Returns
    -------
    dict
        ``{utt_id: Path}``.
    """
    for placeholder, root, flag in ((DATA_ROOT, data_root, "--data-root"), (CACHE_ROOT, cache_root, "--cache-root")):
        users = [utt for utt, item in items.items() if placeholder in item["wav"]]
        if users and root is None:
            raise ConfigError(f"{manifest}: wav paths use {placeholder} (e.g. '{users[0]}'): give {flag} DIR")
    paths = {}
    for utt_id, item in items.items():
        path = Path(resolve_audio_path(item["wav"], data_root=data_root or "", cache_root=cache_root or ""))
        if not path.is_file():
            raise DataError(f"{path}: reference recording of '{utt_id}' ({manifest}) not found")
        paths[utt_id] = path
    return paths


def _voice(model: SemTTS, utt_id: str, item: dict, reference: Path) -> dict:
    """The ``speaker`` / ``speaker_wav`` keyword that conditions one utterance."""
    if not model.multi_speaker:
        return {}
    if model.embedded:
        return {"speaker_wav": reference}
    if item["spk"] not in model.speakers:
        raise ConfigError(f"'{utt_id}': speaker {item['spk']!r} is not one of the model's training speakers, and "
                          f"speaker_mode {model.hparams['speaker_mode']} cannot clone an unseen voice")
    return {"speaker": item["spk"]}


def synthesize_manifest(model: SemTTS, items: dict[str, dict], references: dict[str, Path], out_dir: str | Path,
                        seed: int = 0) -> dict:
    """Synthesize utterances one by one into a folder laid out as stage 8's.

    Writes ``<utt_id>.wav`` (earlier wavs in ``out_dir`` are removed),
    ``durations.json`` (``{utt_id: {"durations": [frames per token],
    "n_samples"}}``) and ``report.json``.

    Arguments
    ---------
    model : SemTTS
        The packed model.
    items : dict
        The utterances (``text``, ``spk``).
    references : dict
        Their recordings (:func:`reference_paths`), the voices of an embedding model.
    out_dir : str or Path
        The output folder.
    seed : int
        Seed of the sampling noise.

    Returns
    -------
    dict
        The report: ``utterances``, ``audio_seconds``, ``rtf``, ``silent``.
    """
    out_dir = Path(out_dir)
    voices = {utt_id: _voice(model, utt_id, item, references[utt_id]) for utt_id, item in items.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("*.wav"), out_dir / "durations.json", out_dir / "report.json"]:
        stale.unlink(missing_ok=True)  # (a failure part-way never leaves new wavs beside old records)
    torch.manual_seed(seed)
    durations, silent, audio_s = {}, [], 0.0
    timed = {"all": [0.0, 0.0], "replayed": [0.0, 0.0]}  # seconds, audio seconds
    for utt_id, item in items.items():
        voice = voices[utt_id]
        captured, start = model.synthesizer.captured, time.perf_counter()
        try:
            wavs, sr = model.synthesize([item["text"]], **voice)
        except DataError as err:
            raise DataError(f"'{utt_id}': {err}") from None
        elapsed = time.perf_counter() - start
        wav = wavs[0]
        if not torch.isfinite(wav).all():
            raise DataError(f"'{utt_id}': the model produced non-finite audio")
        if wav.abs().max() < 1e-4:
            silent.append(utt_id)
        save_audio(out_dir / f"{utt_id}.wav", wav, sr)
        durations[utt_id] = {"durations": model.last_durations[0].tolist(), "n_samples": wav.numel()}
        audio_s += wav.numel() / sr
        # a call that captured CUDA graphs is no measure of synthesis (a replay): left out where others exist
        for kind in ("all",) + (("replayed",) if model.synthesizer.captured == captured else ()):
            timed[kind][0] += elapsed
            timed[kind][1] += wav.numel() / sr
    write_json_atomic(out_dir / "durations.json", durations)
    seconds, measured_s = timed["replayed"] if timed["replayed"][1] > 0 else timed["all"]
    report = {"utterances": len(durations), "audio_seconds": round(audio_s, 2),
              "rtf": round(seconds / max(measured_s, 1e-9), 4), "silent": silent}
    write_json_atomic(out_dir / "report.json", report)
    return report


def scoring_embedder(model: SemTTS, ckpt: str | None = None, embed_dim: int | None = None,
                     allow_random_init: bool = False, cache_dir: str | Path = "~/.cache/semtts/campplus",
                     seed: int = 0, device: str = "cpu") -> SpeakerEmbedder:
    """CAM++ for speaker similarity: ``ckpt``, or the one the packed model records
    (a pretrained one: the model's own :attr:`~semtts.packed_model.PackedModel.embedder`).

    Arguments
    ---------
    model : SemTTS
        The packed model (its ``campplus`` record: ``ckpt``, ``embed_dim``, ``seed``, ``random_init``).
    ckpt : str, optional
        A CAM++ checkpoint (path or URL) instead of the model's.
    embed_dim : int, optional
        Its embedding size (default: the model's, else 192).
    allow_random_init : bool
        Accept random weights when there are none (meaningless scores: tests only).
    cache_dir : str or Path
        Where downloaded checkpoints are kept.
    seed : int
        Seed of a random initialisation when the model records none.
    device : str
        Where CAM++ runs.

    Returns
    -------
    SpeakerEmbedder
    """
    record = model.hparams.get("campplus") or {}
    if ckpt is None and record.get("ckpt") and not record.get("random_init"):
        # the model's own CAM++: found as the model finds it (a packed campplus.bin lies in the model
        # folder, not in the working directory) and checked against the sha256 its vectors were made with
        if embed_dim is not None and int(embed_dim) != int(record["embed_dim"]):
            raise ConfigError(f"--campplus-embed-dim {embed_dim}: the model's CAM++ ({model.folder}) is "
                              f"{record['embed_dim']}-d; give another CAM++ with --campplus-ckpt")
        return model.embedder
    dim = int(embed_dim or record.get("embed_dim") or 192)
    if ckpt is None and record.get("seed") is not None:
        seed = int(record["seed"])  # the model's random CAM++, when it had one
    return SpeakerEmbedder.from_checkpoint(ckpt, dim, allow_random_init, cache_dir, seed, device)


def evaluate_packed_model(model_dir: str | Path, manifest: str | Path, out_dir: str | Path,
                          data_root: str | Path | None = None, cache_root: str | Path | None = None,
                          asr_model: str = "large-v3", asr_language_code: str | None = None,
                          asr_cache_dir: str | Path | None = None, asr_random_dims: dict | None = None,
                          campplus_ckpt: str | None = None, campplus_embed_dim: int | None = None,
                          campplus_cache_dir: str | Path = "~/.cache/semtts/campplus", max_utterances: int = 0,
                          plot_utterances: int = 3, device: str = "cpu", seed: int = 0,
                          allow_random_init: bool = False) -> str:
    """Synthesize a manifest with a packed model and score it as stage 9 does.

    Arguments
    ---------
    model_dir : str or Path
        The packed model folder (stage 10).
    manifest : str or Path
        A stage-2 manifest (``tokens/<split>.json``); its name is the split's.
    out_dir : str or Path
        Where the outputs go (see the module's description).
    data_root, cache_root : str or Path, optional
        The ``{data_root}`` and ``{cache_root}`` folders (default cache root:
        ``<manifest's folder>/../data/audio_cache``, as in an experiment folder).
    asr_model : str
        A Whisper name or a local ``.pt``.
    asr_language_code : str, optional
        Whisper's language (default: from the model's frontend language).
    asr_cache_dir : str or Path, optional
        Where Whisper models are kept (whisper's default when None).
    asr_random_dims : dict, optional
        ModelDimensions fields of a random ASR (with ``allow_random_init``).
    campplus_ckpt : str, optional
        CAM++ for speaker similarity (default: the model's, see :func:`scoring_embedder`).
    campplus_embed_dim : int, optional
        Its embedding size.
    campplus_cache_dir : str or Path
        Where downloaded CAM++ checkpoints are kept.
    max_utterances : int
        Evaluate the first ``max_utterances`` by id (0: all).
    plot_utterances : int
        Mel and alignment plots for the first this many.
    device : str
        ``cpu`` or ``cuda:N``.
    seed : int
        Seed of the sampling and of random initialisations.
    allow_random_init : bool
        Random ASR / CAM++ weights when there are none (smoke tests: the scores mean nothing).

    Returns
    -------
    str
        The Markdown table (also in ``results.md``).
    """
    manifest, out_dir = Path(manifest), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():  # found before minutes of loading, not after
        raise DataError(f"{out_dir}: is a file, not a folder for the evaluation output")
    if plot_utterances < 0:
        raise ConfigError(f"--plot-utterances must be >= 0, got {plot_utterances}")
    items = select_utterances(read_manifest(manifest), max_utterances)
    if not items:
        raise DataError(f"{manifest}: no utterances")
    if cache_root is None:
        cache_root = manifest.resolve().parent.parent / "data" / "audio_cache"
    references = reference_paths(items, manifest, data_root, cache_root)
    model = SemTTS.from_hparams(source=model_dir, run_opts={"device": device})
    language = asr_language_code or asr_language(model.hparams["frontend"]["language"])
    try:
        asr = WhisperASR.load(asr_model, language, asr_cache_dir, allow_random_init, asr_random_dims, seed, device)
    except WeightsNotFound as err:
        raise WeightsNotFound(f"{err} [semtts eval: --asr-model, --allow-random-init]") from None
    try:
        embedder = scoring_embedder(model, campplus_ckpt, campplus_embed_dim, allow_random_init,
                                    campplus_cache_dir, seed, device)
    except WeightsNotFound as err:
        raise WeightsNotFound(f"{err} [semtts eval: --campplus-ckpt, --allow-random-init]") from None
    split, stage = manifest.stem, str(model.hparams["stage"])
    synth_dir = out_dir / "synth" / split
    synthesize_manifest(model, items, references, synth_dir, seed)
    utterances, summary = evaluate_split(synth_dir, items, data_root or "", cache_root, asr, embedder)
    write_json_atomic(out_dir / stage / f"{split}.json", utterances)
    table = write_report(out_dir, {stage: {split: summary}}, rtf_source=f"`semtts eval`'s synthesis on {device}")
    plot_synthesized_split(out_dir / "plots" / split, {stage: synth_dir}, items, data_root or "", cache_root,
                           plot_utterances, model.spectrogram)
    return table
