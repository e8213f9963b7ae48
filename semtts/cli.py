"""The ``semtts`` console script: synthesis, voice conversion and model info
from a packed model folder (stage 10).

    semtts synth --model DIR --text "Hello." [--speaker ID | --speaker-wav ref.wav] -o out.wav
    semtts synth --model DIR --text-file lines.txt -o out_dir/     # one wav per line: out_dir/0001.wav ...
    semtts convert --model DIR --source in.wav (--target-wav ref.wav | --target-speaker ID) -o out.wav
    semtts export-onnx --model DIR [-o DIR/model.onnx]   # then semtts.onnx_runtime.OnnxSynthesizer
    semtts eval --model DIR --manifest tokens/test.json --data-root CORPUS -o OUT_DIR   # stage 9's metrics
    semtts info DIR

A mistake (missing folder, unreadable wav, unknown speaker, bad flag) is one
line on stderr and exit status 2.

Example
-------
>>> parser = build_parser()
>>> args = parser.parse_args(["synth", "--model", "m", "--text", "Hi.", "-o", "x.wav"])
>>> args.command, args.text, args.output
('synth', ['Hi.'], 'x.wav')
"""

import argparse
import json
import sys
from pathlib import Path

from semtts.errors import ConfigError, DataError, entry_point

__all__ = ["build_parser", "output_paths", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors raised as :class:`ConfigError` (one line, exit 2)."""

    def error(self, message: str) -> None:  # noqa: D102
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The ``semtts`` argument parser and its subcommands."""
    parser = _Parser(prog="semtts", description="Synthesis and voice conversion with a packed semtts model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    synth = sub.add_parser("synth", help="text to speech", description="Synthesize text with a packed model.")
    synth.add_argument("--model", required=True, help="the packed model folder (stage 10)")
    synth.add_argument("--text", action="append", default=[], help="a text to say (repeatable)")
    synth.add_argument("--text-file", help="a UTF-8 file with one text per line")
    voice = synth.add_mutually_exclusive_group()
    voice.add_argument("--speaker", help="a training speaker id (see `semtts info`)")
    voice.add_argument("--speaker-wav", help="a reference recording to clone (embedding models)")
    synth.add_argument("-o", "--output", required=True,
                       help="out.wav for one text; for several, a folder or a name.wav made into name_0001.wav ...")
    synth.add_argument("--length-scale", type=float, default=1.0, help="> 1 speaks slower")
    synth.add_argument("--noise-scale", type=float, default=0.667, help="prior noise")
    synth.add_argument("--noise-scale-w", type=float, default=0.8, help="duration noise")
    synth.add_argument("--seed", type=int, default=0, help="random seed of the sampling")
    synth.add_argument("--device", default="cpu", help="cpu or cuda:N")
    convert = sub.add_parser("convert", help="voice conversion",
                             description="Convert a recording into another voice (VITS voice conversion).")
    convert.add_argument("--model", required=True, help="the packed model folder (stage 10)")
    convert.add_argument("--source", required=True, help="the recording to convert")
    target = convert.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-wav", help="a recording of the target voice (embedding models)")
    target.add_argument("--target-speaker", help="a training speaker id")
    convert.add_argument("-o", "--output", required=True, help="the output wav")
    convert.add_argument("--device", default="cpu", help="cpu or cuda:N")
    onnx = sub.add_parser("export-onnx", help="export the synthesis graph to ONNX",
                          description="Export a packed model's synthesis graph (tokens and speaker to waveform) "
                                      "to ONNX, then compare it with PyTorch (noise scales 0).")
    onnx.add_argument("--model", required=True, help="the packed model folder (stage 10)")
    onnx.add_argument("-o", "--output", help="the .onnx file (default: MODEL/model.onnx)")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
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
    ev.add_argument("--seed", type=int, default=0, help="random seed of the sampling")
    ev.add_argument("--device", default="cpu", help="cpu or cuda:N")
    ev.add_argument("--allow-random-init", action="store_true",
                    help="random ASR/CAM++ weights when there are none (smoke tests: meaningless scores)")


def output_paths(output: str | Path, count: int) -> list[Path]:
    """Where ``count`` synthesized texts go.

    Arguments
    ---------
    output : str or Path
        ``x.wav`` (one text, or numbered ``x_0001.wav``... for several) or a
        folder (``0001.wav``...; an existing folder or a path without ``.wav``).
    count : int
        The number of texts.

    Returns
    -------
    list of Path

    Example
    -------
    >>> [p.name for p in output_paths("out.wav", 2)], output_paths("out.wav", 1)
    (['out_0001.wav', 'out_0002.wav'], [PosixPath('out.wav')])
    """
    output = Path(output)
    if output.suffix.lower() == ".wav" and not output.is_dir():
        if count == 1:
            return [output]
        return [output.with_name(f"{output.stem}_{i:04d}.wav") for i in range(1, count + 1)]
    return [output / f"{i:04d}.wav" for i in range(1, count + 1)]


def _texts(args: argparse.Namespace) -> list[str]:
    texts = [t for t in args.text]
    if args.text_file:
        path = Path(args.text_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: cannot read the text file ({err.__class__.__name__})") from None
        texts += [line.strip() for line in lines if line.strip()]
    if not texts or any(not t.strip() for t in texts):
        raise ConfigError("synth: give --text TEXT or --text-file FILE (non-empty)")
    return texts


def _write(path: Path, wav, sample_rate: int) -> None:
    """Save one output wav (an unwritable path is a one-line error) and print where."""
    from semtts.audio import save_audio

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_audio(path, wav, sample_rate)
    except (OSError, RuntimeError) as err:
        raise DataError(f"{path}: cannot write the output ({str(err).splitlines()[0][:150]})") from None
    print(f"{path}\t{wav.numel() / sample_rate:.2f} s")


def _load(model: str, device: str):
    from semtts.pretrained import SemTTS

    return SemTTS.from_hparams(source=model, run_opts={"device": device})


def _synth(args: argparse.Namespace) -> int:
    import torch

    texts = _texts(args)
    model = _load(args.model, args.device)
    torch.manual_seed(args.seed)
    wavs, sr = model.synthesize(texts, speaker=args.speaker, speaker_wav=args.speaker_wav,
                                length_scale=args.length_scale, noise_scale=args.noise_scale,
                                noise_scale_w=args.noise_scale_w)
    for path, wav in zip(output_paths(args.output, len(texts)), wavs):
        _write(path, wav, sr)
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from semtts.onnx_export import export_packed_model

    result = export_packed_model(args.model, args.output, opset=args.opset, check=not args.no_check)
    print(f"{result['path']}\tinputs: {', '.join(result['inputs'])}")
    if "max_abs_diff" in result:
        print(f"ONNX Runtime vs PyTorch, {result['runs']} runs with noise scales 0: max abs difference "
              f"{result['max_abs_diff']:.2e}, lengths {'equal' if result['lengths_equal'] else 'DIFFER'}")
        if not result["lengths_equal"] or result["max_abs_diff"] > 1e-3:
            raise DataError(f"{result['path']}: the ONNX graph does not match PyTorch")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from semtts.evaluation.packed_eval import evaluate_packed_model

    table = evaluate_packed_model(
        args.model, args.manifest, args.output, args.data_root, args.cache_root, args.asr_model, args.asr_language,
        args.asr_cache_dir, args.asr_random_dims, args.campplus_ckpt, args.campplus_embed_dim,
        args.campplus_cache_dir, args.max_utterances, args.plot_utterances, args.device, args.seed,
        args.allow_random_init)
    print(table)
    return 0


def _convert(args: argparse.Namespace) -> int:
    model = _load(args.model, args.device)
    wav, sr = model.convert_voice(args.source, target_wav=args.target_wav, target_speaker=args.target_speaker)
    _write(Path(args.output), wav, sr)
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
