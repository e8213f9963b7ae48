"""What the packed-model runners and the `semtts` CLI write, and where: `synth --text-file` in batches with
each batch's files written as soon as it is done, atomic audio writes, outputs that would overwrite an input
refused, `eval -o` checked before any model loads, `--seed` range, the source speaker of `convert`, and
`from_hparams(savedir=)` replacing an earlier model as a whole (tiny CPU models from
hparams/model/vits_tiny.yaml, random CAM++; no training)."""

import logging
import os
from pathlib import Path

import pytest
import soundfile
import torch

from semtts import cli
from semtts.audio import load_audio, save_audio
from semtts.data.manifest import write_manifest
from semtts.errors import ConfigError, DataError
from semtts.pack import pack_model
from semtts.pretrained import SemTTS
from test_cli_robustness import SR, assert_one_line, main_status, model, packed  # noqa: F401 (fixtures)
from test_pack_cli import FRONTEND, tiny

LINES = ["hi.", "the fox.", "a lazy dog jumps over.", "hello there.", "quick test here, then the brown fox.", "ok",
         "the dog.", "short test, a quick one."]


@pytest.fixture(scope="module")
def sid_packed(tmp_path_factory) -> Path:
    hp, tokens = tiny("sid")
    return pack_model(tmp_path_factory.mktemp("sid") / "packed", hp["generator"], hp, "A", tokens, "sid", FRONTEND,
                      speakers=["x", "y"])


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    t = torch.arange(SR) / SR
    path = tmp_path_factory.mktemp("wavs") / "a.wav"
    save_audio(path, 0.3 * torch.sin(2 * torch.pi * 180 * t) + 0.02 * torch.randn_like(t), SR)
    return path


def no_model_load(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(cli, "_load", fail)
    monkeypatch.setattr(SemTTS, "from_hparams", fail)


def spy_batches(monkeypatch, model: SemTTS, fail_when=None) -> list[list[int]]:
    """Record the token counts of every batch ``model`` synthesizes; ``fail_when(lengths)`` raises a size failure."""
    batches, synthesizer = [], model.synthesizer

    def spy(tokens, lengths, **kwargs):
        if fail_when is not None and fail_when(lengths.tolist()):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        batches.append(lengths.tolist())
        return synthesizer(tokens, lengths, **kwargs)

    spy.release_graphs = synthesizer.release_graphs  # what an out-of-memory retry calls
    monkeypatch.setattr(model, "synthesizer", spy)
    monkeypatch.setattr(cli, "_load", lambda *args: model)
    return batches


# 1. synth --text-file in batches -----------------------------------------------------------------------------------


def test_text_file_is_synthesized_in_batches_by_length(capsys, monkeypatch, model, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(LINES[:4] + [""] + LINES[4:]) + "\n")
    batches = spy_batches(monkeypatch, model)
    status = cli.main.__wrapped__(["synth", "--model", "m", "--text-file", str(lines), "--batch-size", "3",
                                   "--noise-scale", "0", "--noise-scale-w", "0", "-o", str(tmp_path / "out")])
    assert status == 0
    assert [len(b) for b in batches] == [3, 3, 2]
    flat = [n for b in batches for n in b]
    assert flat == sorted(flat, reverse=True)  # longest first: little padding
    numbers = [1, 2, 3, 4, 6, 7, 8, 9]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{n:04d}.wav" for n in numbers]
    alone, _ = model.synthesize(LINES, noise_scale=0.0, noise_scale_w=0.0, batch_size=1)
    for number, expected in zip(numbers, alone):  # every file holds its own line
        written, sr = load_audio(tmp_path / "out" / f"{number:04d}.wav")
        assert sr == SR and written.shape[-1] == expected.numel()
    assert len(capsys.readouterr().out.splitlines()) == len(LINES)


def test_a_batch_too_big_is_split_and_only_one_text_gets_the_durations_hint(monkeypatch, caplog, model):
    batches = spy_batches(monkeypatch, model, fail_when=lambda lengths: len(lengths) > 2)
    with caplog.at_level(logging.WARNING, logger="semtts.pretrained"):
        wavs, _ = model.synthesize(LINES, noise_scale=0.0, noise_scale_w=0.0)  # default batch size: 8
    assert [len(b) for b in batches] == [2, 2, 2, 2] and "splitting it" in caplog.text
    assert len(model.last_durations) == len(wavs) == len(LINES)
    hop = model.spectrogram.hop_length
    assert all(w.numel() == int(d.sum()) * hop for w, d in zip(wavs, model.last_durations))
    longest = max(len(x) for x in model.encode_texts(LINES))
    spy_batches(monkeypatch, model, fail_when=lambda lengths: longest in lengths)
    index = max(range(len(LINES)), key=lambda i: len(LINES[i]))
    with pytest.raises(DataError, match=rf"synthesize: text {index}: the predicted durations are too long to "
                                        "allocate .*lower noise_scale_w or length_scale"):
        model.synthesize(LINES)


def test_files_done_before_a_failure_are_kept(capsys, monkeypatch, model, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(LINES) + "\n")
    shortest = min(len(x) for x in model.encode_texts(LINES))
    spy_batches(monkeypatch, model, fail_when=lambda lengths: shortest in lengths)
    status, stderr = main_status(capsys, "synth", "--model", "m", "--text-file", lines, "--batch-size", "2",
                                 "-o", tmp_path / "out")
    line = 1 + min(range(len(LINES)), key=lambda i: len(LINES[i]))
    assert_one_line(status, stderr, f"lines.txt line {line}: the predicted durations are too long to allocate")
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(written) == len(LINES) - 1 and f"{line:04d}.wav" not in written


def test_batch_size_flag(capsys, model):
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        model.synthesize(["hi"], batch_size=0)
    for value in ("0", "x"):
        status, stderr = main_status(capsys, "synth", "--model", "m", "--text", "hi", "--batch-size", value,
                                     "-o", "x.wav")
        assert_one_line(status, stderr, "--batch-size")


# 2. atomic audio writes --------------------------------------------------------------------------------------------


def test_a_failed_write_leaves_the_old_file_as_it_was(monkeypatch, tmp_path):
    target = tmp_path / "out.wav"
    save_audio(target, 0.1 * torch.randn(SR), SR)
    before = target.read_bytes()
    write = soundfile.write

    def fail_midway(file, data, *args, **kwargs):  # a disk full after the header and some samples
        write(file, data[:100], *args, **kwargs)
        raise RuntimeError("Error writing to file: No space left on device")

    monkeypatch.setattr(soundfile, "write", fail_midway)
    with pytest.raises(RuntimeError, match="No space left"):
        save_audio(target, torch.zeros(SR), SR)
    with pytest.raises(DataError, match=r"out.wav: cannot write the output \(Error writing"):
        cli._write(target, torch.zeros(SR), SR)
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["out.wav"]
    monkeypatch.undo()
    save_audio(target, torch.zeros(SR // 2), SR // 2)
    assert load_audio(target)[1] == SR // 2 and os.listdir(tmp_path) == ["out.wav"]
    save_audio(tmp_path / "new.FLAC", torch.zeros(100), SR)  # the suffix picks the format, as before
    assert soundfile.info(str(tmp_path / "new.FLAC")).format == "FLAC"


# 3. outputs that are inputs ----------------------------------------------------------------------------------------


def test_an_output_that_is_an_input_is_refused(capsys, monkeypatch, packed, wav, tmp_path):
    source = tmp_path / "a.wav"
    source.write_bytes(wav.read_bytes())
    (tmp_path / "link.wav").symlink_to(source)
    (tmp_path / "sub").mkdir()
    text = tmp_path / "t.wav"
    text.write_text("hello there.\n")
    no_model_load(monkeypatch)
    for args, flag in [
        (("convert", "--source", source, "--target-speaker", "spk0", "-o", source), "--source"),
        (("convert", "--source", wav, "--target-wav", source, "-o", tmp_path / "sub" / ".." / "a.wav"),
         "--target-wav"),
        (("convert", "--source", tmp_path / "link.wav", "--target-speaker", "spk0", "-o", source), "--source"),
        (("synth", "--text", "hi", "--speaker-wav", source, "-o", tmp_path / "link.wav"), "--speaker-wav"),
        (("synth", "--text-file", text, "-o", text), "--text-file"),
    ]:
        status, stderr = main_status(capsys, *args, "--model", packed)
        assert_one_line(status, stderr, f"is the {flag} file; write the output elsewhere")
    assert source.read_bytes() == wav.read_bytes() and text.read_text() == "hello there.\n"


# 5. eval -o checked first; 6. --seed range -------------------------------------------------------------------------


def test_eval_output_is_checked_before_anything_loads(capsys, monkeypatch, packed, wav, tmp_path):
    manifest = tmp_path / "test.json"
    write_manifest(manifest, {"u1": {"wav": str(wav), "text": "hi there", "spk": "spk0", "duration": 1.0,
                                     "sr": SR}})
    (tmp_path / "afile").write_text("x")
    no_model_load(monkeypatch)
    unwritable = [(Path("/proc/semtts_eval"), "cannot write")] if Path("/proc").is_dir() else []
    for output, expected in [(tmp_path / "afile", "is a file, not a folder"),
                             (tmp_path / "afile" / "sub", "is not a folder"), *unwritable]:
        status, stderr = main_status(capsys, "eval", "--model", packed, "--manifest", manifest,
                                     "--allow-random-init", "-o", output)
        assert_one_line(status, stderr, f"{output}: ")
        assert expected in stderr
    assert (tmp_path / "afile").read_text() == "x"


def test_seed_range(capsys, monkeypatch, packed, wav, tmp_path):
    no_model_load(monkeypatch)
    for command in (("synth", "--text", "hi", "-o", tmp_path / "x.wav"),
                    ("convert", "--source", wav, "--target-speaker", "spk0", "-o", tmp_path / "x.wav"),
                    ("eval", "--manifest", tmp_path / "m.json", "-o", tmp_path / "ev")):
        for seed in ("99999999999999999999999", str(2**64), str(-2**63 - 1), "1.5"):
            status, stderr = main_status(capsys, *command, "--model", packed, f"--seed={seed}")
            assert_one_line(status, stderr, "--seed")
    parser = cli.build_parser()
    for seed in (-2**63, 2**64 - 1):
        args = parser.parse_args(["synth", "--model", "m", "--text", "hi", "-o", "x.wav", "--seed", str(seed)])
        torch.manual_seed(args.seed)  # what the CLI does with it


# 4. the source speaker of convert ----------------------------------------------------------------------------------


def test_sid_convert_needs_the_source_speaker(capsys, sid_packed, wav, tmp_path):
    model = SemTTS.from_hparams(sid_packed)
    with pytest.raises(ConfigError, match=r"give --source-speaker \(source_speaker=\), one of: x, y"):
        model.convert_voice(wav, target_speaker="y")
    with pytest.raises(ConfigError, match="unknown source speaker 'z'; this model knows: x, y"):
        model.convert_voice(wav, target_speaker="y", source_speaker="z")
    out = {}
    for source in ("x", "y"):
        torch.manual_seed(0)
        out[source], _ = model.convert_voice(wav, target_speaker="y", source_speaker=source)
    assert out["x"].shape == out["y"].shape and (out["x"] - out["y"]).abs().max() > 1e-4
    status, stderr = main_status(capsys, "convert", "--model", sid_packed, "--source", wav, "--target-speaker", "y",
                                 "-o", tmp_path / "c.wav")
    assert_one_line(status, stderr, "--source-speaker")
    status, _ = main_status(capsys, "convert", "--model", sid_packed, "--source", wav, "--target-speaker", "y",
                            "--source-speaker", "x", "--seed", "0", "-o", tmp_path / "c.wav")
    assert status == 0 and torch.allclose(load_audio(tmp_path / "c.wav")[0][0], out["x"], atol=1 / 16000)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["convert", "--help"])
    assert "--source-speaker" in capsys.readouterr().out


def test_embedding_convert_source_speaker_replaces_the_recordings_vector(monkeypatch, model, wav):
    torch.manual_seed(0)
    own, _ = model.convert_voice(wav, target_speaker="spk1")  # the source recording's own CAM++ vector
    torch.manual_seed(0)
    again, _ = model.convert_voice(wav, target_speaker="spk1")
    assert torch.equal(own, again)

    def no_embedding(*args, **kwargs):
        raise AssertionError("the source was embedded although a source speaker was given")

    monkeypatch.setattr(model, "embed_wav", no_embedding)
    out = {}
    for source in ("spk0", "spk1"):
        torch.manual_seed(0)
        out[source], _ = model.convert_voice(wav, target_speaker="spk1", source_speaker=source)
    assert (out["spk0"] - out["spk1"]).abs().max() > 1e-4 and (out["spk0"] - own).abs().max() > 1e-4


# 7. from_hparams(savedir=) -----------------------------------------------------------------------------------------


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"/"
            for p in sorted(folder.rglob("*"))}


def test_savedir_holds_exactly_the_new_model_and_the_users_files(packed, sid_packed, tmp_path):
    savedir = tmp_path / "saved"
    SemTTS.from_hparams(packed, savedir=savedir)
    assert {"spk_mean.npy", "campplus_meta.json"} <= set(os.listdir(savedir))
    (savedir / "model.onnx").write_bytes(b"an old graph")
    (savedir / "notes.txt").write_text("mine")
    (savedir / "mine").mkdir()
    (savedir / "mine" / "a.txt").write_text("also mine")
    model = SemTTS.from_hparams(sid_packed, savedir=savedir)
    assert model.folder == savedir
    assert set(os.listdir(savedir)) == set(os.listdir(sid_packed)) | {"notes.txt", "mine"}
    assert all((savedir / name).read_bytes() == (sid_packed / name).read_bytes() for name in os.listdir(sid_packed))
    assert (savedir / "mine" / "a.txt").read_text() == "also mine"
    with pytest.raises(ConfigError, match="must not contain the model folder"):
        SemTTS.from_hparams(sid_packed, savedir=sid_packed / "copy")
    with pytest.raises(ConfigError, match="must not contain the model folder"):
        SemTTS.from_hparams(sid_packed, savedir=sid_packed.parent)


@pytest.mark.parametrize("where", ["copy", "move"])
def test_a_failed_savedir_copy_leaves_it_as_it_was(monkeypatch, packed, sid_packed, tmp_path, where):
    import semtts.packed_model as packed_model

    savedir = tmp_path / "saved"
    SemTTS.from_hparams(packed, savedir=savedir)
    (savedir / "notes.txt").write_text("mine")
    before = listing(savedir)
    copytree, rename, moved_in = packed_model.shutil.copytree, packed_model.os.rename, []

    def failing_copytree(src, dst, **kwargs):
        copytree(src, dst, **kwargs)
        raise OSError(28, "No space left on device")

    def failing_rename(src, dst):
        if Path(src).parent.name.startswith(".semtts-new-"):
            if moved_in:  # the old files are out, one new file is in
                raise OSError(28, "No space left on device")
            moved_in.append(src)
        rename(src, dst)

    if where == "copy":
        monkeypatch.setattr(packed_model.shutil, "copytree", failing_copytree)
    else:
        monkeypatch.setattr(packed_model.os, "rename", failing_rename)
    with pytest.raises(DataError, match=r"savedir .*saved: cannot copy the model there \(.*No space left"):
        SemTTS.from_hparams(sid_packed, savedir=savedir)
    assert listing(savedir) == before
    monkeypatch.undo()
    monkeypatch.setattr(packed_model.shutil, "copytree", failing_copytree)
    with pytest.raises(DataError, match="cannot copy the model there"):
        SemTTS.from_hparams(sid_packed, savedir=tmp_path / "new" / "dir")
    assert not (tmp_path / "new" / "dir").exists()
