"""The ``semtts`` console script: synthesis, voice conversion and model info
from a packed model folder (stage 10).

    semtts synth --model DIR --text "Hello." [--speaker ID | --speaker-wav ref.wav] -o out.wav
    semtts synth --model DIR --text-file lines.txt -o out_dir/     # one wav per line: out_dir/0001.wav ...
    semtts convert --model DIR --source in.wav (--target-wav ref.wav | --target-speaker ID) -o out.wav
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
import sys
from pathlib import Path

from semtts.errors import ConfigError, DataError, entry_point

__all__ = ["build_parser", "output_paths", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors raised as :class:`ConfigError` (one line, exit 2)."""

    def error(self, message: str) -> None:  # noqa: D102
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The ``semtts`` argument parser with its ``synth``, ``convert`` and ``info`` subcommands."""
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
    info = sub.add_parser("info", help="describe a packed model", description="Print a packed model's summary.")
    info.add_argument("model", help="the packed model folder")
    return parser


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
    print(_load(args.model, "cpu").summary())
    return 0


if __name__ == "__main__":
    main()
