"""Word and character error rates of synthesized speech, transcribed by a
Whisper ASR (openai-whisper's ``transcribe``).

Both the reference text and the transcript go through
:func:`normalize_text`: semtts's text cleaner for the language (English:
lower case, numbers and abbreviations spelled out as stage 2 writes them;
Mandarin: digits as characters), then dashes become spaces and every other
punctuation mark or symbol is removed. Words are the whitespace-separated
tokens (for Mandarin, every character is a word); characters are counted
without spaces. Rates are corpus-level: all errors over all reference units.

Example
-------
>>> normalize_text("Dr. Smith paid $5, twice!", "en")
'doctor smith paid five dollars twice'
>>> edit_distance("a b c d".split(), "a x c".split())
{'errors': 2, 'substitutions': 1, 'deletions': 1, 'insertions': 0, 'length': 4}
>>> utterance_errors("It costs 10 dollars.", "it costs ten dollar", "en")
{'word_errors': 1, 'words': 4, 'char_errors': 1, 'chars': 17}
"""

import functools
import logging
import unicodedata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import whisper
from whisper.model import Whisper

from semtts.errors import ConfigError
from semtts.extract.teacher import SAMPLE_RATE
from semtts.extract.whisper_loading import (download_whisper, load_whisper_checkpoint, model_url, random_whisper_dims,
                                            weights_not_found, whisper_cache_dir, whisper_source)
from semtts.random_init import cpu_seeded
from semtts.text.cleaners import clean_text

__all__ = ["ASR_SAMPLE_RATE", "CHARACTER_LANGUAGES", "normalize_text", "text_units", "edit_distance", "utterance_errors",
           "error_rates", "WhisperASR"]

logger = logging.getLogger(__name__)

ASR_SAMPLE_RATE = SAMPLE_RATE  # what WhisperASR.transcribe takes (16 kHz)
# Languages scored by characters (no spaces between words).
CHARACTER_LANGUAGES = ("zh", "ja", "yue")
INITIAL_PROMPTS = {"zh": "以下是普通话的句子。"}
"""A prompt in the script the references use: Whisper often writes Mandarin in
traditional characters, which would all count as errors against simplified
references (``normalize_text`` also converts with ``zhconv`` when it is installed)."""


def _base_language(language: str) -> str:
    return str(language).lower().replace("_", "-").split("-")[0]


@functools.lru_cache(maxsize=1)
def _simplified_converter() -> Any:
    """zhconv's converter when it is installed (optional), else None, said once."""
    try:
        import zhconv
    except ImportError:
        logger.warning("zhconv is not installed: traditional characters in Mandarin transcripts count as errors "
                       "(pip install zhconv)")
        return None
    return zhconv.convert


def _to_simplified(text: str) -> str:
    convert = _simplified_converter()
    return convert(text, "zh-cn") if convert is not None else text


def normalize_text(text: str, language: str = "en") -> str:
    """Normalise a text for scoring.

    Arguments
    ---------
    text : str
        A reference text or a transcript.
    language : str
        Whisper language code (``en``, ``zh``, ...); ``en`` uses the
        ``english`` cleaner, ``zh`` the ``mandarin`` one, others ``basic``.

    Returns
    -------
    str
        Lower case, single-spaced, without punctuation.

    Example
    -------
    >>> normalize_text("你好，世界。3", "zh")
    '你好世界三'
    """
    base = _base_language(language)
    cleaner = {"en": "english", "zh": "mandarin"}.get(base, "basic")
    text = clean_text(text, cleaner)
    if base == "zh":
        text = _to_simplified(text)
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Pd":
            out.append(" ")
        elif not category.startswith(("P", "S")):
            out.append(ch)
    words = "".join(out).lower().split()
    return ("" if base in CHARACTER_LANGUAGES else " ").join(words)


def text_units(text: str, language: str = "en") -> tuple[list[str], list[str]]:
    """The words and characters of a normalised text.

    Arguments
    ---------
    text : str
        Output of :func:`normalize_text`.
    language : str
        Whisper language code.

    Returns
    -------
    words : list of str
        Whitespace tokens (characters for Mandarin, Japanese, Cantonese).
    chars : list of str
        Characters, spaces excluded.

    Example
    -------
    >>> text_units("ab cd")
    (['ab', 'cd'], ['a', 'b', 'c', 'd'])
    """
    chars = [c for c in text if not c.isspace()]
    words = chars if _base_language(language) in CHARACTER_LANGUAGES else text.split()
    return words, chars


def edit_distance(reference: Sequence, hypothesis: Sequence) -> dict[str, int]:
    """Levenshtein alignment of two token sequences, with the operation counts.

    Arguments
    ---------
    reference : sequence
        Reference tokens.
    hypothesis : sequence
        Hypothesis tokens.

    Returns
    -------
    dict
        ``errors`` (= substitutions + deletions + insertions, minimal),
        ``substitutions``, ``deletions``, ``insertions``, ``length`` (of the reference).

    Example
    -------
    >>> edit_distance("kitten", "sitting")["errors"]
    3
    >>> edit_distance([], ["a"])
    {'errors': 1, 'substitutions': 0, 'deletions': 0, 'insertions': 1, 'length': 0}
    """
    n, m = len(reference), len(hypothesis)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        ref = reference[i - 1]
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + (ref != hypothesis[j - 1]), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    counts = {"substitutions": 0, "deletions": 0, "insertions": 0}
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            counts["substitutions"] += int(reference[i - 1] != hypothesis[j - 1])
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            counts["deletions"] += 1
            i -= 1
        else:
            counts["insertions"] += 1
            j -= 1
    return {"errors": int(cost[n, m]), **counts, "length": n}


def utterance_errors(reference: str, hypothesis: str, language: str = "en") -> dict[str, int]:
    """Word and character errors of one utterance (texts normalised here).

    Arguments
    ---------
    reference : str
        The text that was synthesized.
    hypothesis : str
        The ASR transcript.
    language : str
        Whisper language code.

    Returns
    -------
    dict
        ``word_errors``, ``words``, ``char_errors``, ``chars``.
    """
    ref_words, ref_chars = text_units(normalize_text(reference, language), language)
    hyp_words, hyp_chars = text_units(normalize_text(hypothesis, language), language)
    return {"word_errors": edit_distance(ref_words, hyp_words)["errors"], "words": len(ref_words),
            "char_errors": edit_distance(ref_chars, hyp_chars)["errors"], "chars": len(ref_chars)}


def error_rates(references: list[str], hypotheses: list[str], language: str = "en") -> dict:
    """Corpus-level WER and CER.

    Arguments
    ---------
    references : list of str
        Reference texts.
    hypotheses : list of str
        The matching transcripts.
    language : str
        Whisper language code.

    Returns
    -------
    dict
        ``wer`` and ``cer`` (fractions; None without reference units),
        ``words`` and ``chars`` (reference counts).

    Example
    -------
    >>> error_rates(["one two", "three"], ["one two", "tree"])
    {'wer': 0.3333, 'cer': 0.0909, 'words': 3, 'chars': 11}
    """
    if len(references) != len(hypotheses):
        raise ConfigError(f"error_rates: {len(references)} references but {len(hypotheses)} hypotheses")
    totals = {"word_errors": 0, "words": 0, "char_errors": 0, "chars": 0}
    for ref, hyp in zip(references, hypotheses):
        for key, value in utterance_errors(ref, hyp, language).items():
            totals[key] += value
    wer = round(totals["word_errors"] / totals["words"], 4) if totals["words"] else None
    cer = round(totals["char_errors"] / totals["chars"], 4) if totals["chars"] else None
    return {"wer": wer, "cer": cer, "words": totals["words"], "chars": totals["chars"]}


class WhisperASR:
    """A Whisper speech recogniser for scoring (greedy decoding, no timestamps,
    each 30-s window decoded independently).

    Arguments
    ---------
    model : whisper.model.Whisper
        A full Whisper model (encoder and decoder).
    language : str
        The language to transcribe in (no language detection).
    name : str
        The model's name, for the report.
    random_init : bool
        Whether the weights are random (smoke tests).

    Example
    -------
    >>> dims = {"n_audio_state": 64, "n_audio_head": 2, "n_audio_layer": 1,
    ...         "n_text_ctx": 64, "n_text_state": 64, "n_text_head": 2, "n_text_layer": 1}
    >>> asr = WhisperASR.load("tiny", "en", cache_dir="/nonexistent/whisper", allow_random_init=True,
    ...                       random_dims=dims, download=False)
    >>> isinstance(asr.transcribe(torch.zeros(16000)), str), asr.random_init
    (True, True)
    """

    def __init__(self, model: Whisper, language: str, name: str, random_init: bool = False) -> None:
        self.model = model.eval()
        self.language = language
        self.name = name
        self.random_init = random_init

    @classmethod
    def load(cls, model: str, language: str = "en", cache_dir: str | Path | None = None,
             allow_random_init: bool = False, random_dims: dict | None = None, seed: int = 0,
             device: str | torch.device = "cpu", download: bool = True) -> "WhisperASR":
        """Load a Whisper model by name (downloaded into ``cache_dir`` when
        absent) or from a local ``.pt`` file.

        Arguments
        ---------
        model : str
            ``tiny``, ``base``, ``small``, ..., or a checkpoint path.
        language : str
            Whisper language code.
        cache_dir : str or Path, optional
            Where named models are kept (whisper's default when None).
        allow_random_init : bool
            Use random weights (with a warning) when the weights cannot be had.
        random_dims : dict, optional
            ModelDimensions fields of a random model, over the named size's.
        seed : int
            Seed of a random initialisation.
        device : str or torch.device
            Where the model runs.
        download : bool
            Try to download a named model missing from ``cache_dir``.

        Returns
        -------
        WhisperASR
            Random weights (with ``allow_random_init``) only when a released
            model cannot be had or the checkpoint path does not exist; an
            unknown name is a :class:`ConfigError` and an existing file that
            is not a Whisper checkpoint a :class:`DataError`, one line each.
        """
        model = str(model)
        source = whisper_source(model, "eval_asr_model")
        cache = whisper_cache_dir(cache_dir)
        if source == "file":
            path = Path(model).expanduser()
            return cls(load_whisper_checkpoint(path, "eval_asr_model", device), language, path.name)
        if source == "missing":
            reason = "file not found"
        elif download or (cache / Path(model_url(model)).name).is_file():
            full = download_whisper(model, cache, device)
            if not isinstance(full, str):
                return cls(full, language, model)
            reason = full
        else:
            reason = "not in the cache and download is off"
        if not allow_random_init:
            raise weights_not_found(model, cache, reason, "eval_asr_model")
        dims = random_whisper_dims(model, random_dims, "eval_asr_random_dims", "eval_asr_model")
        with cpu_seeded(seed):
            full = Whisper(dims)
        logger.warning("WARNING: the evaluation ASR %r is RANDOMLY INITIALISED (seed %d, %s; allow_random_init "
                       "is set): its WER and CER are meaningless", model, seed, reason)
        return cls(full.to(device), language, model, random_init=True)

    @torch.inference_mode()
    def transcribe(self, audio: torch.Tensor) -> str:
        """Transcribe one utterance.

        Arguments
        ---------
        audio : torch.Tensor
            ``[N]`` float samples at 16 kHz.

        Returns
        -------
        str
            The transcript (stripped).
        """
        device = next(self.model.parameters()).device
        audio = torch.as_tensor(audio).float().reshape(-1).to(device)
        result = whisper.transcribe(self.model, audio, language=self.language, temperature=0.0,
                                    fp16=device.type == "cuda", condition_on_previous_text=False,
                                    without_timestamps=True, verbose=None,
                                    initial_prompt=INITIAL_PROMPTS.get(_base_language(self.language)))
        return str(result["text"]).strip()

