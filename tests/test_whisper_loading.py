"""Loading Whisper checkpoints for the teacher (``whisper_model``) and the
evaluation ASR (``eval_asr_model``): foreign files, misspelt names and missing
paths are one clear line naming the flag and the file; a tiny valid
checkpoint loads. No network: names are never downloaded here."""

from dataclasses import asdict

import pytest
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from semtts.errors import ConfigError, DataError, WeightsNotFound
from semtts.evaluation.wer import WhisperASR
from semtts.extract.teacher import load_whisper_teacher
from semtts.extract.whisper_loading import random_whisper_dims, read_whisper_checkpoint, whisper_source

TINY = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
            n_vocab=51865, n_text_ctx=64, n_text_state=64, n_text_head=2, n_text_layer=1)


def _teacher(path, **kwargs):
    return load_whisper_teacher(str(path), **kwargs)


def _asr(path, **kwargs):
    return WhisperASR.load(str(path), "en", download=False, **kwargs)


LOADERS = [("whisper_model", _teacher), ("eval_asr_model", _asr)]


@pytest.fixture(scope="module")
def tiny_model() -> Whisper:
    torch.manual_seed(0)
    model = Whisper(ModelDimensions(**TINY)).eval()
    with torch.no_grad():  # whisper leaves it torch.empty (loaded from checkpoints)
        model.decoder.positional_embedding.normal_(0.0, 0.02)
    return model


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and len(message) < 600, message
    return message


def _bad_files(tmp_path, model: Whisper) -> dict:
    """``{name: (path, what the message must say)}`` of files that are not Whisper checkpoints."""
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/sh\n")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1),
                                    dtype=torch.uint8).numpy().tobytes())
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, other)
    partial = tmp_path / "partial.pt"
    state = dict(model.state_dict())
    state.pop("decoder.ln.weight")
    torch.save({"dims": asdict(model.dims), "model_state_dict": state}, partial)
    misfit = tmp_path / "misfit.pt"
    torch.save({"dims": {**asdict(model.dims), "n_audio_state": 128, "n_text_state": 128},
                "model_state_dict": model.state_dict()}, misfit)
    bad_dims = tmp_path / "bad-dims.pt"
    torch.save({"dims": {"width": 3}, "model_state_dict": model.state_dict()}, bad_dims)
    return {
        "text": (text, "not a readable torch file"),
        "noise": (noise, "not a readable torch file"),
        "other": (other, "need the keys 'dims' and 'model_state_dict', found ['epoch', 'state_dict']"),
        "partial": (partial, "missing ['decoder.ln.weight']"),
        "misfit": (misfit, "wrong shape"),
        "bad_dims": (bad_dims, "'dims' are not the ModelDimensions fields"),
    }


@pytest.mark.parametrize("flag,load", LOADERS)
@pytest.mark.parametrize("allow", [False, True])
def test_a_file_that_is_not_a_whisper_checkpoint_is_one_line(tmp_path, tiny_model, flag, load, allow):
    for name, (path, detail) in _bad_files(tmp_path, tiny_model).items():
        with pytest.raises(DataError) as err:
            load(path, allow_random_init=allow, random_dims=TINY)  # random init never hides a bad file
        message = _one_line(err)
        assert message.startswith(f"{flag} {path}: not a Whisper checkpoint (") and detail in message, (name, message)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, allow_random_init=allow)
    assert _one_line(err) == f"{flag} {tmp_path}: is a folder, not a Whisper .pt checkpoint"


@pytest.mark.parametrize("flag,load", LOADERS)
def test_an_unknown_name_lists_the_whisper_names(flag, load):
    for allow in (False, True):
        for dims in (None, TINY):
            with pytest.raises(ConfigError) as err:
                load("tinyy", allow_random_init=allow, random_dims=dims)
            message = _one_line(err)
            assert message.startswith(f"{flag} 'tinyy': not a Whisper model name (")
            assert ", ".join(whisper.available_models()) in message and "random_dims" not in message


@pytest.mark.parametrize("flag,load", LOADERS)
def test_a_missing_path_says_file_not_found(tmp_path, flag, load):
    missing = tmp_path / "nonexistent" / "x.pt"
    with pytest.raises(WeightsNotFound) as err:
        load(missing, allow_random_init=False)
    assert _one_line(err).startswith(f"{flag} {missing}: file not found; give the path of a Whisper .pt checkpoint")
    # With random init, a missing path stands for a random model, which needs every field.
    with pytest.raises(ConfigError) as err:
        load(missing, allow_random_init=True, random_dims={"n_audio_layer": 1})
    message = _one_line(err)
    assert message.startswith(f"{flag} {missing}: file not found (")
    assert "random_dims" in message and "'n_mels'" in message and "'n_audio_layer'" not in message
    loaded = load(missing, allow_random_init=True, random_dims=TINY)
    assert getattr(loaded, "sha256", "random-init") == "random-init" and getattr(loaded, "random_init", True)


def test_dims_messages_name_the_right_flag():
    with pytest.raises(ConfigError, match=r"^eval_asr_random_dims: unknown fields \['width'\]"):
        _asr("tiny", allow_random_init=True, random_dims={"width": 1})
    with pytest.raises(ConfigError, match=r"^whisper_random_dims: need n_mels 80 or 128"):
        _teacher("tiny", allow_random_init=True, random_dims={"n_mels": 64})
    with pytest.raises(ConfigError, match=r"^whisper_random_dims: 'whisper' is not a named Whisper size"):
        random_whisper_dims("whisper", {"n_audio_layer": 1})
    assert random_whisper_dims("tiny", {"n_audio_layer": 1}).n_audio_state == 384


def test_a_valid_tiny_checkpoint_loads(tmp_path, tiny_model):
    path = tmp_path / "tiny-random.pt"
    torch.save({"dims": asdict(tiny_model.dims), "model_state_dict": tiny_model.state_dict()}, path)
    assert whisper_source(str(path)) == "file"
    dims, state = read_whisper_checkpoint(path)
    assert dims == tiny_model.dims and set(state) == set(tiny_model.state_dict())
    teacher = _teacher(path, allow_random_init=False)
    assert teacher.name == "tiny-random.pt" and teacher.sha256 != "random-init" and teacher.dim == 64
    for key, value in tiny_model.encoder.state_dict().items():
        torch.testing.assert_close(teacher.encoder.state_dict()[key], value)
    asr = _asr(path, allow_random_init=False)
    assert not asr.random_init and asr.name == "tiny-random.pt"
    for key, value in tiny_model.state_dict().items():
        torch.testing.assert_close(asr.model.state_dict()[key], value)
    assert isinstance(asr.transcribe(torch.zeros(8000)), str)
