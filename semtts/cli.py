"""The ``semtts`` console script: synthesis, voice conversion and model info
from a packed model folder (stage 10).

    semtts synth --model DIR --text "Hello." [--speaker ID | --speaker-wav ref.wav] -o out.wav
    semtts synth --model DIR --text-file lines.txt [--batch-size 8] -o out_dir/   # out_dir/0001.wav, 0003.wav ...
    semtts convert --model DIR --source in.wav (--target-wav ref.wav | --target-speaker ID) [--source-speaker ID]
        [--seed N] -o out.wav
    semtts export-onnx --model DIR [-o DIR/model.onnx] [--opset 17]   # then semtts.onnx_runtime.OnnxSynthesizer
    semtts eval --model DIR --manifest tokens/test.json --data-root CORPUS -o OUT_DIR   # stage 9's metrics
    semtts info DIR

A mistake (missing folder, unreadable or unusable wav, unknown speaker, bad
flag value such as ``--length-scale 0``, ``--seed`` out of range or an
unavailable ``--device``, an unwritable output, an output that is one of the
inputs) is one line on stderr and exit status 2. Outputs are written
atomically (:func:`semtts.audio.save_audio`), ``synth`` writes each batch's
files as soon as it is done.

Example
-------
>>> parser = build_parser()
>>> args = parser.parse_args(["synth", "--model", "m", "--text", "Hi.", "-o", "x.wav"])
>>> args.command, args.text, args.output
('synth', ['Hi.'], 'x.wav')
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from semtts.audio_formats import AUDIO_SUFFIXES
from semtts.errors import ConfigError, DataError, entry_point, first_line
from semtts.host_memory import keep_freed_memory

__all__ = ["build_parser", "output_paths", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors raised as :class:`ConfigError` (one line, exit 2)."""

    def error(self, message: str) -> None:  # noqa: D102
        raise ConfigError(f"{self.prog}: {message} (see --help)")


_MAX_OPSET_FALLBACK = 20


def _scale(name: str):
    """An argparse type for a synthesis scale (:func:`semtts.inference.scale_problem`)."""

    def parse(text: str) -> float:
        from semtts.inference import scale_problem

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        problem = scale_problem(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


SEED_RANGE = (-2**63, 2**64 - 1)
"""The seeds ``torch.manual_seed`` accepts."""


def _seed(text: str) -> int:
    """An argparse type for ``--seed``: an integer ``torch.manual_seed`` accepts (:data:`SEED_RANGE`).

    Example
    -------
    >>> _seed("7"), _seed("-1")
    (7, -1)
    >>> _seed("99999999999999999999999")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be -9223372036854775808 to 18446744073709551615, got 99999999999999999999999
    """
    return _int_in(text, *SEED_RANGE)


def _positive_int(text: str) -> int:
    """An argparse type for a count >= 1 (``--batch-size``)."""
    return _int_in(text, 1)


def _int_in(text: str, low: int, high: int | None = None, why: str = "") -> int:
    """``text`` as an integer in ``[low, high]`` (no upper bound when ``high`` is None), else argparse's
    one-line error (``why`` says where the bounds come from)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"{low} to {high}{why}"
        raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
    return value


def _max_opset() -> int:
    """The newest ONNX opset torch's exporter writes."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):
        return _MAX_OPSET_FALLBACK


def _opset(text: str) -> int:
    """An argparse type for ``--opset``: from semtts' minimum to torch's maximum."""
    from semtts.onnx_export import DEFAULT_OPSET

    return _int_in(text, DEFAULT_OPSET, _max_opset(), " (what this torch exports)")


def build_parser() -> argparse.ArgumentParser:
    """The ``semtts`` argument parser and its subcommands."""
    parser = _Parser(prog="semtts", description="Synthesis and voice conversion with a packed semtts model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    synth = sub.add_parser("synth", help="text to speech", description="Synthesize text with a packed model.")
    synth.add_argument("--model", required=True, help="the packed model folder (stage 10)")
    synth.add_argument("--text", action="append", default=[], help="a text to say (repeatable)")
    synth.add_argument("--text-file", help="a UTF-8 file with one text per line; outputs are numbered by line "
                       "number (blank lines are skipped and their numbers left out; after N --text texts the "
                       "numbers start at N + 1)")
    voice = synth.add_mutually_exclusive_group()
    voice.add_argument("--speaker", help="a training speaker id (see `semtts info`)")
    voice.add_argument("--speaker-wav", help="a reference recording to clone (embedding models)")
    synth.add_argument("-o", "--output", required=True,
                       help="out.wav (or .flac, .ogg ...) for one text; for several, a folder (0001.wav ...) or "
                            "a name.wav made into name_0001.wav ...")
    synth.add_argument("--length-scale", type=_scale("length_scale"), default=1.0,
                       help="> 1 speaks slower (> 0 and <= 10)")
    synth.add_argument("--noise-scale", type=_scale("noise_scale"), default=0.667, help="prior noise (0 to 10)")
    synth.add_argument("--noise-scale-w", type=_scale("noise_scale_w"), default=0.8,
                       help="duration noise (0 to 10)")
    synth.add_argument("--batch-size", type=_positive_int, default=8,
                       help="texts synthesized together at most, those of similar length together (default 8); "
                            "each batch's files are written as soon as it is done")
    synth.add_argument("--seed", type=_seed, default=0, help="random seed of the sampling")
    synth.add_argument("--device", default="cpu", help="cpu or cuda:N")
    synth.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                       help="the flow and the decoder in this precision (fp16: CUDA only; bf16 also speeds up a "
                            "CPU; the durations stay fp32)")
    synth.add_argument("--max-frames-per-token", type=_positive_int, default=None,
                       help="refuse a text whose predicted durations average more frames per token, before "
                            "decoding it (default 200: 2.3 s per phoneme at 22.05 kHz)")
    convert = sub.add_parser("convert", help="voice conversion",
                             description="Convert a recording into another voice (VITS voice conversion).")
    convert.add_argument("--model", required=True, help="the packed model folder (stage 10)")
    convert.add_argument("--source", required=True, help="the recording to convert")
    target = convert.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-wav", help="a recording of the target voice (embedding models)")
    target.add_argument("--target-speaker", help="a training speaker id")
    convert.add_argument("--source-speaker",
                         help="the training speaker who speaks in --source: required by a speaker_mode sid model "
                              "with several speakers; for an embedding model it replaces the source recording's "
                              "own CAM++ vector with that speaker's mean vector")
    convert.add_argument("-o", "--output", required=True, help="the output wav (or .flac, .ogg ...)")
    convert.add_argument("--seed", type=_seed, default=0, help="random seed of the posterior sample")
    convert.add_argument("--device", default="cpu", help="cpu or cuda:N")
    onnx = sub.add_parser("export-onnx", help="export the synthesis graph to ONNX",
                          description="Export a packed model's synthesis graph (tokens and speaker to waveform) "
                                      "to ONNX, then compare it with PyTorch (noise scales 0).")
    onnx.add_argument("--model", required=True, help="the packed model folder (stage 10)")
    onnx.add_argument("-o", "--output", help="the .onnx file (default: MODEL/model.onnx)")
    onnx.add_argument("--opset", type=_opset, default=17, help="ONNX opset (17 to torch's newest)")
    onnx.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    _add_eval_parser(sub)
    info = sub.add_parser("info", help="describe a packed model", description="Print a packed model's summary.")
    info.add_argument("model", help="the packed model folder")
    return parser


def _json_object(text: str) -> dict:
    """A flag value that is a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def _add_eval_parser(sub) -> None:
    """The ``eval`` subcommand (:func:`semtts.evaluation.packed_eval.evaluate_packed_model`)."""
    ev = sub.add_parser("eval", help="evaluate a packed model on a test manifest",
                        description="Synthesize every utterance of a stage-2 manifest (zero-shot from its own "
                                    "recording, or its training speaker) and score it as stage 9 does: MCD, F0, "
                                    "CAM++ speaker similarity, Whisper WER/CER, real-time factor.")
    ev.add_argument("--model", required=True, help="the packed model folder (stage 10)")
    ev.add_argument("--manifest", required=True, help="a stage-2 manifest, e.g. exp/.../tokens/test.json")
    ev.add_argument("-o", "--output", required=True, help="the output folder (JSON, results.md, plots)")
    ev.add_argument("--data-root", help="the corpus folder ({data_root} in the manifest's wav paths)")
    ev.add_argument("--cache-root", help="{cache_root} (default: <manifest's folder>/../data/audio_cache)")
    ev.add_argument("--asr-model", default="large-v3", help="Whisper name or local .pt for WER/CER")
    ev.add_argument("--asr-language", help="Whisper language code (default: from the model's frontend)")
    ev.add_argument("--asr-cache-dir", help="where Whisper models are kept (default: whisper's)")
    ev.add_argument("--asr-random-dims", type=_json_object, help="JSON ModelDimensions of a random ASR (tests)")
    ev.add_argument("--campplus-ckpt", help="CAM++ for speaker similarity (default: the model's)")
    ev.add_argument("--campplus-embed-dim", type=int, help="its embedding size (default: the model's)")
    ev.add_argument("--campplus-cache-dir", default="~/.cache/semtts/campplus", help="where CAM++ is kept")
    ev.add_argument("--max-utterances", type=int, default=0, help="the first N by id (0: all)")
    ev.add_argument("--plot-utterances", type=int, default=3, help="mel/alignment plots for the first N")
    ev.add_argument("--seed", type=_seed, default=0, help="random seed of the sampling")
    ev.add_argument("--device", default="cpu", help="cpu or cuda:N")
    ev.add_argument("--allow-random-init", action="store_true",
                    help="random ASR/CAM++ weights when there are none (smoke tests: meaningless scores)")


def _audio_file(output: Path) -> bool:
    """Whether ``output`` names an audio file (else a folder); a format soundfile cannot write is a ConfigError."""
    suffix = output.suffix.lower()
    if suffix not in AUDIO_SUFFIXES or output.is_dir():
        return False
    import soundfile as sf

    fmt = suffix[1:].upper()
    if fmt not in sf.available_formats() or sf.default_subtype(fmt) is None:
        shown = ", ".join(s for s in (".wav", ".flac", ".ogg", ".mp3") if s[1:].upper() in sf.available_formats())
        raise ConfigError(f"-o {output}: cannot write {suffix} audio (soundfile writes {shown} ...)")
    return True


def output_paths(output: str | Path, count: int, numbers: list[int] | None = None) -> list[Path]:
    """Where ``count`` synthesized texts go.

    Arguments
    ---------
    output : str or Path
        An audio file name such as ``x.wav`` or ``x.flac`` (one text, or
        numbered ``x_0001.wav``... for several) or a folder (``0001.wav``...;
        an existing folder or a path without an audio suffix). A suffix of
        a format soundfile cannot write (``.m4a``) is a :class:`ConfigError`.
    count : int
        The number of texts.
    numbers : list of int, optional
        The numbers of the texts (default ``1 .. count``; ``synth`` passes
        the line numbers of ``--text-file``).

    Returns
    -------
    list of Path

    Example
    -------
    >>> [p.name for p in output_paths("out.wav", 2)], output_paths("out.flac", 1)
    (['out_0001.wav', 'out_0002.wav'], [PosixPath('out.flac')])
    >>> [str(p) for p in output_paths("out", 2, numbers=[1, 3])]
    ['out/0001.wav', 'out/0003.wav']
    """
    output = Path(output)
    numbers = list(range(1, count + 1)) if numbers is None else list(numbers)
    if len(numbers) != count:
        raise ValueError(f"output_paths: {len(numbers)} numbers for {count} texts")
    if _audio_file(output):
        if count == 1:
            return [output]
        return [output.with_name(f"{output.stem}_{i:04d}{output.suffix}") for i in numbers]
    return [output / f"{i:04d}.wav" for i in numbers]


def _texts(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """The texts to say and their numbers: ``--text`` ones 1..N, then the file's by line number (N + line)."""
    texts = list(args.text)
    if any(not t.strip() for t in texts):
        raise ConfigError("synth: a --text is empty")
    numbers = list(range(1, len(texts) + 1))
    if args.text_file:
        path = Path(args.text_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            line = path.read_bytes()[:err.start].count(b"\n") + 1
            raise DataError(f"{path}: line {line} is not UTF-8 text (byte {err.start})") from None
        except OSError as err:
            raise DataError(f"{path}: cannot read the text file ({err.__class__.__name__})") from None
        kept = [(len(texts) + number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]
        if not kept:
            raise DataError(f"{path}: the text file has no non-blank line")
        numbers += [number for number, _ in kept]
        texts += [line for _, line in kept]
    if not texts:
        raise ConfigError("synth: give --text TEXT or --text-file FILE (non-empty)")
    return numbers, texts


def _check_writable(path: Path, what: str = "output", folder: bool = False) -> None:
    """Fail early (one line) when ``path`` cannot be written: a file (``folder``: a folder) must fit
    there, and its nearest existing folder must take a file."""
    if folder and path.exists() and not path.is_dir():
        raise DataError(f"{path}: is a file, not a folder for the {what}")
    if not folder and path.is_dir():
        raise DataError(f"{path}: is a folder, not a file for the {what}")
    parent = path if folder else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"{path}: cannot write the {what} ({parent} is not a folder)")
    try:
        tempfile.TemporaryFile(dir=parent, prefix=".semtts-write-test-").close()  # a probe: deleted on close
    except OSError as err:
        raise DataError(f"{path}: cannot write the {what} in {parent} ({err.strerror or first_line(err, 150)})") \
            from None


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (``os.path.samefile`` when both exist, else equal resolved paths)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a loop of links: not ours to judge here
        return False


def _check_not_an_input(outputs: list[Path], inputs: dict[str, str | None]) -> None:
    """Refuse (one line) an output that is one of the input files ``{flag: path}``: it would be overwritten."""
    for flag, value in inputs.items():
        if value is None:
            continue
        for output in outputs:
            if _same_file(output, Path(value)):
                raise ConfigError(f"-o {output}: is the {flag} file; write the output elsewhere")


def _write(path: Path, wav, sample_rate: int) -> None:
    """Save one output wav (an unwritable path is a one-line error) and print where."""
    from semtts.audio import save_audio

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_audio(path, wav, sample_rate)
    except (OSError, RuntimeError, TypeError, ValueError) as err:  # soundfile: format/rate combinations too
        raise DataError(f"{path}: cannot write the output ({first_line(err, 150)})") from None
    print(f"{path}\t{wav.numel() / sample_rate:.2f} s")


def _load(model: str, device: str, precision: str = "fp32", max_frames_per_token: int | None = None):
    from semtts.graphed_inference import MAX_FRAMES_PER_TOKEN, check_precision
    from semtts.pretrained import SemTTS, resolve_device

    check_precision(precision, resolve_device(device, "--device"), "--precision")  # (the flag the user typed)
    return SemTTS.from_hparams(source=model, run_opts={
        "device": device, "precision": precision,
        "max_frames_per_token": max_frames_per_token or MAX_FRAMES_PER_TOKEN})


def _check_device(device: str) -> None:
    """``--device`` must name a device this machine has (one line otherwise)."""
    from semtts.pretrained import resolve_device

    resolve_device(device, "--device")


def _synth(args: argparse.Namespace) -> int:
    import torch

    numbers, texts = _texts(args)
    paths = output_paths(args.output, len(texts), numbers)
    _check_not_an_input(paths, {"--speaker-wav": args.speaker_wav, "--text-file": args.text_file})
    _check_writable(paths[0])
    n_given = len(args.text)
    labels = [f"--text {n}" if i < n_given else f"{args.text_file} line {n - n_given}"
              for i, n in enumerate(numbers)]
    model = _load(args.model, args.device, args.precision, args.max_frames_per_token)
    torch.manual_seed(args.seed)
    for batch in model.synthesize_batches(texts, speaker=args.speaker, speaker_wav=args.speaker_wav,
                                          length_scale=args.length_scale, noise_scale=args.noise_scale,
                                          noise_scale_w=args.noise_scale_w, batch_size=args.batch_size,
                                          labels=labels):
        for i, wav in zip(batch.indices, batch.waveforms):  # written now: a later failure keeps them
            _write(paths[i], wav, model.sample_rate)
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from semtts.onnx_export import export_packed_model

    if args.output is not None:
        if Path(args.output).suffix.lower() != ".onnx":
            raise ConfigError(f"export-onnx: -o takes a .onnx file, got {args.output}")
        _check_writable(Path(args.output), "ONNX model")
    try:
        result = export_packed_model(args.model, args.output, opset=args.opset, check=not args.no_check)
    except OSError as err:
        raise DataError(f"{args.output or args.model}: cannot write the ONNX model ({first_line(err, 150)})") from None
    print(f"{result['path']}\tinputs: {', '.join(result['inputs'])}")
    if "max_abs_diff" in result:
        print(f"ONNX Runtime vs PyTorch, {result['runs']} runs with noise scales 0: max abs difference "
              f"{result['max_abs_diff']:.2e}, lengths {'equal' if result['lengths_equal'] else 'DIFFER'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    _check_writable(Path(args.output), "evaluation output", folder=True)  # before minutes of model loading
    from semtts.evaluation.packed_eval import evaluate_packed_model

    table = evaluate_packed_model(
        args.model, args.manifest, args.output, args.data_root, args.cache_root, args.asr_model, args.asr_language,
        args.asr_cache_dir, args.asr_random_dims, args.campplus_ckpt, args.campplus_embed_dim,
        args.campplus_cache_dir, args.max_utterances, args.plot_utterances, args.device, args.seed,
        args.allow_random_init)
    print(table)
    return 0


def _convert(args: argparse.Namespace) -> int:
    import torch

    output = Path(args.output)
    if not _audio_file(output):
        raise ConfigError(f"convert: -o takes an audio file such as out.wav, got {output}")
    _check_not_an_input([output], {"--source": args.source, "--target-wav": args.target_wav})
    _check_writable(output)
    model = _load(args.model, args.device)
    torch.manual_seed(args.seed)
    wav, sr = model.convert_voice(args.source, target_wav=args.target_wav, target_speaker=args.target_speaker,
                                  source_speaker=args.source_speaker)
    _write(output, wav, sr)
    return 0


@entry_point
def main(argv: list[str] | None = None) -> int:
    """The ``semtts`` console script.

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status (the wrapper exits with it).
    """
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    if getattr(args, "device", None) is not None:
        _check_device(args.device)
    if args.command == "synth":
        return _synth(args)
    if args.command == "convert":
        return _convert(args)
    if args.command == "eval":
        return _eval(args)
    if args.command == "export-onnx":
        return _export_onnx(args)
    print(_load(args.model, "cpu").summary())
    return 0


if __name__ == "__main__":
    main()
