"""What synthesis refuses before it does harm: an edited packed
``hyperparams.yaml`` or ``campplus_meta.json`` (one-line errors, not
tracebacks), durations that would decode hours of audio, non-finite audio
(which saving would clip to a full-scale square wave), and a text that gives
no tokens, named by its file and line (tiny CPU model of
``tests/test_cli_robustness.py``)."""

import shutil

import pytest
import torch
import yaml

from semtts.errors import DataError
from semtts.graphed_inference import DurationsTooLong, GraphedSynthesizer
from semtts.pack import load_weights, save_weights, weights_file
from semtts.pretrained import SemTTS
from test_cli_robustness import ROOT, assert_one_line, main_status, model, packed, wavs  # noqa: F401 (fixtures)


def edited_copy(packed, tmp_path, edit) -> str:
    """A copy of the packed folder whose hyperparams.yaml ``edit`` changed in place."""
    folder = tmp_path / "edited"
    shutil.copytree(packed, folder)
    hparams = yaml.safe_load((folder / "hyperparams.yaml").read_text())
    edit(hparams)
    (folder / "hyperparams.yaml").write_text(yaml.safe_dump(hparams))
    return str(folder)


EDITS = {
    "generator_list": (lambda h: h.update(generator=[1, 2]), "'generator' must be a mapping"),
    "generator_extra_key": (lambda h: h["generator"].update(bogus=1), "the 'generator' section does not fit"),
    "generator_value": (lambda h: h["generator"].update(hidden_channels="32"), "cannot build the generator"),
    "frontend_key": (lambda h: h["frontend"].pop("token_type"), "the 'frontend' section lacks token_type"),
    "frontend_string": (lambda h: h.update(frontend="char"), "'frontend' must be a mapping"),
    "frontend_null": (lambda h: h.update(frontend=None), "'frontend' must be a mapping, got None"),
    "semantic_key": (lambda h: h.update(semantic={"foo": 1}), "the 'semantic' section does not fit"),
    "speakers_string": (lambda h: h.update(speakers="spk0"), "'speakers' must be a list"),
    "spectrogram_key": (lambda h: h["spectrogram"].update(bogus=1), "the 'spectrogram' section does not fit"),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_an_edited_packed_hparams_is_a_one_line_error(capsys, packed, tmp_path, name):
    edit, expected = EDITS[name]
    folder = edited_copy(packed, tmp_path, edit)
    for command in (["info", folder], ["synth", "--model", folder, "--text", "hi there", "-o", tmp_path / "x.wav"]):
        status, stderr = main_status(capsys, *command)
        assert_one_line(status, stderr, expected)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_corrupt_campplus_meta_is_a_one_line_error(capsys, packed, wavs, tmp_path, content):
    folder = tmp_path / "edited"
    shutil.copytree(packed, folder)
    (folder / "campplus_meta.json").write_text(content)
    status, stderr = main_status(capsys, "synth", "--model", folder, "--text", "hi there",
                                 "--speaker-wav", wavs["good"], "-o", tmp_path / "x.wav")
    assert_one_line(status, stderr, "campplus_meta.json")


def test_durations_past_the_limit_are_refused_before_decoding(model):
    fast = model.synthesizer
    assert isinstance(fast, GraphedSynthesizer) and fast.max_frames_per_token == 200
    tokens, lengths = model.token_batch(["hello there"])
    torch.manual_seed(0)
    with pytest.raises(DurationsTooLong, match="frames per token, more than max_frames_per_token 200"):
        fast(tokens, lengths, spk_embed=torch.zeros(1, 16), noise_scale_w=10.0, length_scale=10.0)
    with pytest.raises(DataError, match=r"^synthesize: text 0: the predicted durations are \d+ frames per token, "
                                        r"more than max_frames_per_token 200 \(length_scale 10.0, noise_scale_w "
                                        r"10.0\); lower noise_scale_w"):
        model.synthesize(["hello there"], length_scale=10.0, noise_scale_w=10.0)
    waveforms, _ = model.synthesize(["hello there"])  # usual settings stay far below the limit
    assert waveforms[0].numel() > 0


def out_of_memory_once(real_call, failures: list):
    """A ``GraphedSynthesizer.__call__`` out of device memory at its first call (recorded in ``failures``)."""
    def call(self, tokens, *args, **kwargs):
        if not failures:
            failures.append(tokens.shape)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_call(self, tokens, *args, **kwargs)

    return call


def test_out_of_memory_releases_the_graphs_and_retries_a_single_text(model, monkeypatch):
    # the graphs of earlier shapes hold their memory pools: released, a text that fits alone is retried once
    failures, released = [], []
    monkeypatch.setattr(GraphedSynthesizer, "__call__", out_of_memory_once(GraphedSynthesizer.__call__, failures))
    monkeypatch.setattr(GraphedSynthesizer, "release_graphs", lambda self: released.append(True))
    waveforms, _ = model.synthesize(["hello there"])
    assert len(failures) == 1 and released == [True] and waveforms[0].numel() > 0
    monkeypatch.setattr(GraphedSynthesizer, "__call__", lambda *a, **k: (_ for _ in ()).throw(
        torch.OutOfMemoryError("CUDA out of memory")))
    with pytest.raises(DataError, match=r"^synthesize: text 0: the predicted durations are too long to allocate"):
        model.synthesize(["hello there"])  # once more only
    assert released == [True] * 3


def test_the_limit_on_frames_per_token_is_a_cli_flag_and_a_run_option(capsys, packed, tmp_path):
    status, stderr = main_status(capsys, "synth", "--model", packed, "--text", "hello there",
                                 "--max-frames-per-token", "1", "-o", tmp_path / "x.wav")
    assert_one_line(status, stderr, "more than max_frames_per_token 1 (length_scale 1.0")
    assert not (tmp_path / "x.wav").exists()
    status, stderr = main_status(capsys, "synth", "--model", packed, "--text", "hi", "--max-frames-per-token", "0",
                                 "-o", tmp_path / "x.wav")
    assert status == 2 and "--max-frames-per-token" in stderr
    assert SemTTS.from_hparams(packed, run_opts={"max_frames_per_token": None}).synthesizer.max_frames_per_token is None


def test_clone_voice_refuses_runaway_durations(model, wavs):
    from semtts.inference import clone_voice

    ids = model.frontend.encode(["hello there"], drop_unknown=True)[0][0]
    with pytest.raises(DataError, match=r"^clone_voice: the predicted durations are \d+ frames per token"):
        clone_voice(model.generator, ids, wavs["good"], model.embedder, 22050, noise_scale_w=10.0, length_scale=10.0)
    assert clone_voice(model.generator, ids, wavs["good"], model.embedder, 22050).waveform.numel() > 0


def test_non_finite_audio_is_refused_not_written(capsys, packed, tmp_path):
    folder = tmp_path / "diverged"
    shutil.copytree(packed, folder)
    weights = load_weights(folder)
    key = next(k for k in weights if k.startswith("decoder.conv_post"))
    weights[key] = torch.full_like(weights[key], float("nan"))  # as from a checkpoint that diverged
    weights_file(folder).unlink()
    save_weights(weights, folder)
    status, stderr = main_status(capsys, "synth", "--model", folder, "--text", "hi there", "-o", tmp_path / "x.wav")
    assert_one_line(status, stderr, "non-finite audio for --text 1")
    assert not (tmp_path / "x.wav").exists()
    with pytest.raises(DataError, match="non-finite audio for text 0"):
        SemTTS.from_hparams(folder).synthesize(["hi there"])


def test_non_finite_durations_are_refused_with_or_without_the_limit(packed, tmp_path):
    folder = tmp_path / "diverged"
    shutil.copytree(packed, folder)
    weights = load_weights(folder)
    key = next(k for k in weights if k.startswith("duration_predictor.proj"))
    weights[key] = torch.full_like(weights[key], float("nan"))
    weights_file(folder).unlink()
    save_weights(weights, folder)
    with pytest.raises(DataError, match=r"the predicted durations are nan frames per token, more than"):
        SemTTS.from_hparams(folder).synthesize(["hi there"])
    with pytest.raises(DataError, match=r"the predicted durations are not finite \(length_scale"):
        SemTTS.from_hparams(folder, run_opts={"max_frames_per_token": None}).synthesize(["hi there"])


def test_a_text_without_tokens_is_named_by_its_file_and_line(capsys, packed, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("hello there.\nthe fox.\n...!?\nquick test.\n?!\n")
    status, stderr = main_status(capsys, "synth", "--model", packed, "--text", "hi", "--text-file", lines,
                                 "-o", tmp_path / "out")
    assert_one_line(status, stderr, f"synthesize: {lines} line 3 gives no tokens: '...!?' (also {lines} line 5)")
    status, stderr = main_status(capsys, "synth", "--model", packed, "--text", "?!", "-o", tmp_path / "x.wav")
    assert_one_line(status, stderr, "synthesize: --text 1 gives no tokens")


def test_cli_names_the_flags_and_lines_the_user_gave(capsys, packed, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"hello there.\nw\xffrld\n")
    status, stderr = main_status(capsys, "synth", "--model", packed, "--text-file", lines, "-o", tmp_path / "out")
    assert_one_line(status, stderr, f"{lines}: line 2 is not UTF-8 text (byte 14)")
    if not torch.cuda.is_available():
        status, stderr = main_status(capsys, "synth", "--model", packed, "--text", "hi", "--precision", "fp16",
                                     "-o", tmp_path / "x.wav")
        assert_one_line(status, stderr, "--precision: precision fp16 needs a CUDA device")


def test_stage_8_refuses_runaway_durations(tmp_path, monkeypatch):
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.dataset import DynamicItemDataset

    from semtts.stages.synthesize import synthesize_split

    with open(ROOT / "hparams/model/vits_tiny.yaml") as f:
        generator = load_hyperpyyaml(f, {"n_vocab": 20, "n_speakers": 2})["generator"].eval()
    torch.manual_seed(0)
    data = DynamicItemDataset({"u1": {"token_ids": torch.randint(1, 20, (9,)), "spk_id": 0},
                               "u2": {"token_ids": torch.randint(1, 20, (5,)), "spk_id": 1}})
    hp = {"sample_rate": 22050, "hop_length": generator.hop_length, "spk_embed_dim": 0, "synth_batch_size": 2,
          "n_speakers": 2, "noise_scale": 0.667, "noise_scale_w": 10.0, "length_scale": 10.0}
    with pytest.raises(DataError, match=r"^test: u[12]: the predicted durations are \d+ frames per token, "
                                        r"more than max_frames_per_token 200 \(noise_scale_w 10.0"):
        synthesize_split(hp, generator, data, tmp_path / "test", torch.device("cpu"))
    # the utterance that has them is named: only u2's run away here (the second item of the batch)
    synthesizer = GraphedSynthesizer(generator)
    tokens = torch.nn.utils.rnn.pad_sequence([data[0]["token_ids"], data[1]["token_ids"]], batch_first=True)
    lengths = torch.tensor([9, 5])
    real_predict = generator.predict_durations

    def u2_runs_away(*args, **kwargs):
        text, durations = real_predict(*args, **kwargs)
        durations[1, :5] = 1000.0
        return text, durations

    with monkeypatch.context() as patch:
        patch.setattr(generator, "predict_durations", u2_runs_away)
        with pytest.raises(DurationsTooLong) as err:
            synthesizer(tokens, lengths, sid=torch.tensor([0, 1]))
        assert err.value.row == 1
        with pytest.raises(DataError, match=r"^test: u2: the predicted durations are 1000 frames per token"):
            synthesize_split({**hp, "noise_scale_w": 0.8, "length_scale": 1.0}, generator, data, tmp_path / "test",
                             torch.device("cpu"))
    hp.update(noise_scale_w=0.8, length_scale=1.0)
    assert synthesize_split(hp, generator, data, tmp_path / "test", torch.device("cpu"))["utterances"] == 2


def test_stage_8_synthesizes_a_batch_out_of_device_memory_in_halves(tmp_path, monkeypatch):
    """A batch that runs out of device memory is synthesized in halves, down to single utterances (the same
    audio as a batch size of 1, without noise); an utterance that does not fit alone is named."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.dataset import DynamicItemDataset

    from semtts.audio import load_audio
    from semtts.stages import synthesize

    with open(ROOT / "hparams/model/vits_tiny.yaml") as f:
        generator = load_hyperpyyaml(f, {"n_vocab": 20, "n_speakers": 2})["generator"].eval()
    torch.manual_seed(0)
    data = DynamicItemDataset({f"u{i}": {"token_ids": torch.randint(1, 20, (4 + 2 * i,)), "spk_id": i % 2}
                               for i in range(3)})
    hp = {"sample_rate": 22050, "hop_length": generator.hop_length, "spk_embed_dim": 0, "synth_batch_size": 1,
          "n_speakers": 2, "noise_scale": 0.0, "noise_scale_w": 0.0, "length_scale": 1.0}
    alone = synthesize.synthesize_split(hp, generator, data, tmp_path / "alone", torch.device("cpu"))
    calls, real_call = [], GraphedSynthesizer.__call__

    def small_device(self, tokens, *args, **kwargs):
        calls.append(tokens.shape)
        if tokens.size(0) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real_call(self, tokens, *args, **kwargs)

    monkeypatch.setattr(GraphedSynthesizer, "__call__", small_device)
    logged = []
    monkeypatch.setattr(synthesize, "log", lambda stage, message: logged.append(message))
    report = synthesize.synthesize_split({**hp, "synth_batch_size": 3}, generator, data, tmp_path / "split",
                                         torch.device("cpu"))
    assert report["utterances"] == 3 and report["audio_seconds"] == alone["audio_seconds"]
    # the batch of 3, its halves of 1 and 2: the 2 are split without trying (more than fitted), each part
    # as wide as its longest item
    assert [tuple(shape) for shape in calls] == [(3, 8), (1, 4), (1, 6), (1, 8)]
    for i in range(3):
        torch.testing.assert_close(load_audio(tmp_path / "split" / f"u{i}.wav")[0],
                                   load_audio(tmp_path / "alone" / f"u{i}.wav")[0])
    assert logged == ["split: out of device memory 1x (first at u0): those batches were synthesized in halves, "
                      "and later ones of more than 1 utterance(s) split (synth_batch_size 1 may avoid the retries)"]
    # cuDNN's and cuBLAS's allocation failures are RuntimeErrors: out of memory too; other errors are not
    for error, caught in ((RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
                          (RuntimeError("CUDA error: an illegal memory access was encountered"), False)):
        def failing(self, tokens, *args, error=error, **kwargs):
            if tokens.size(0) > 1:
                raise error
            return real_call(self, tokens, *args, **kwargs)

        monkeypatch.setattr(GraphedSynthesizer, "__call__", failing)
        if caught:
            assert synthesize.synthesize_split({**hp, "synth_batch_size": 3}, generator, data, tmp_path / "cudnn",
                                               torch.device("cpu"))["utterances"] == 3
        else:
            with pytest.raises(RuntimeError, match="illegal memory access"):
                synthesize.synthesize_split({**hp, "synth_batch_size": 3}, generator, data, tmp_path / "other",
                                            torch.device("cpu"))
    monkeypatch.setattr(GraphedSynthesizer, "__call__", lambda *a, **k: (_ for _ in ()).throw(
        torch.OutOfMemoryError("CUDA out of memory")))
    released = []
    monkeypatch.setattr(GraphedSynthesizer, "release_graphs", lambda self: released.append(True))
    with pytest.raises(DataError, match=r"^u0: out of device memory synthesizing it alone \(4 tokens\); "):
        synthesize.synthesize_split(hp, generator, data, tmp_path / "none", torch.device("cpu"))
    assert released == [True]  # its graphs released, then tried once more
    # one utterance that fits once the graphs of earlier shapes are released
    failures = []
    monkeypatch.setattr(GraphedSynthesizer, "__call__", out_of_memory_once(real_call, failures))
    assert synthesize.synthesize_split(hp, generator, data, tmp_path / "retried", torch.device("cpu"))[
        "utterances"] == 3 and len(failures) == 1 and released == [True] * 2
