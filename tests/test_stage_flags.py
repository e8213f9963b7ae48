"""Command-line overrides are checked before anything runs: unknown keys (with
the closest valid one), keys given twice, values that are not YAML, and values
of another type than the key's value in the recipe's files; the same checks
apply when a stage is called directly (``python -m semtts.stages.<stage>``)."""

import json
from pathlib import Path

import pytest

from semtts.errors import ConfigError
from semtts.stages.common import changed_settings, load_hparams, parse_stage_args
from semtts.stages.flags import check_overrides, check_value, recipe_defaults, split_overrides

ROOT = Path(__file__).resolve().parents[1]
MINI = "recipes/mini/hparams/corpus.yaml"
RECIPES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("recipes/*/hparams/corpus.yaml"))


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name their included files from the repository root


@pytest.mark.parametrize("raw, default, value", [
    ("3", 12, 3), ("-1", 0, -1), ("1", 0.5, 1), ("0.25", 0.5, 0.25), ("1e-3", 2.0e-4, 0.001),
    ("False", True, False), ("run2", "default", "run2"), ("2", "default", 2),
    ("[spk4]", ["spk5"], ["spk4"]), ("[]", ["spk5"], []), ("{speakers: [spk7]}", {}, {"speakers": ["spk7"]}),
    ("null", {"n_audio_state": 64}, None), ("anything", None, "anything"), ("[1, 2]", None, [1, 2]),
])
def test_values_of_the_right_type_pass(raw, default, value):
    assert check_value("--key", raw, default) == value


@pytest.mark.parametrize("raw, default, message", [
    ("abc", 12, "--key: expected an integer, got 'abc'"),
    ("16000.5", 22050, "--key: expected an integer, got '16000.5'"),
    ("True", 12, "--key: expected an integer, got 'True'"),
    ("abc", 0.5, "--key: expected a number, got 'abc'"),
    ("1", True, "--key: expected True or False, got '1'"),
    ("[a]", "default", "--key: expected a string, got '[a]'"),
    ("spk4", ["spk4", "spk5"], "--key: expected a list, e.g. [spk4], got 'spk4'"),
    ("null", ["spk4"], "--key: expected a list, e.g. [a, b], got 'null'"),
    ("x", {}, "--key: expected a mapping, e.g. {name: value}, got 'x'"),
    ("", 12, "--key: expected an integer, got no value"),
])
def test_values_of_another_type_fail_in_one_line(raw, default, message):
    with pytest.raises(ConfigError) as err:
        check_value("--key", raw, default)
    assert str(err.value) == message


@pytest.mark.parametrize("raw, fixed", [("{speakers:[spk7]}", "{speakers: [spk7]}"), ("{a:1,b:2}", "{a: 1, b: 2}")])
def test_a_mapping_without_spaces_shows_the_expected_form(raw, fixed):
    with pytest.raises(ConfigError) as err:
        check_value("--corpus_options", raw, {})
    message = str(err.value)
    assert message.startswith(f"--corpus_options: cannot read {raw!r}") and f"write it as {fixed} " in message
    assert "\n" not in message


def test_a_built_value_is_not_checked():
    defaults = recipe_defaults(MINI)
    assert defaults["batch_size"] == 8 and defaults["heldout_speakers"] == ["spk4", "spk5"]
    assert defaults["n_mels"] == 80  # from the included model file
    built = defaults["output_folder"]  # !ref
    assert defaults["spectrogram"] is not None and check_value("--output_folder", "/tmp/x", built) == "/tmp/x"


def test_split_overrides():
    assert split_overrides("n_valid: 3\nheldout_speakers: [spk4, spk5]\ntag:") == [
        ("n_valid", "3"), ("heldout_speakers", "[spk4, spk5]"), ("tag", "")]
    with pytest.raises(ConfigError, match="unexpected argument 'True'"):
        split_overrides("True\ntag: x")


def test_unknown_and_repeated_keys():
    with pytest.raises(ConfigError) as err:
        check_overrides(MINI, "n_vald: 3\ntokn_type: char")
    assert str(err.value).startswith(
        "unknown flag(s) --n_vald (did you mean --n_valid?) --tokn_type (did you mean --token_type?); valid: --force,")
    with pytest.raises(ConfigError, match=r"^--n_valid: given more than once$"):
        check_overrides(MINI, "n_valid: 3\nn_valid: 4")


def test_every_bad_value_is_named_at_once():
    with pytest.raises(ConfigError) as err:
        check_overrides(MINI, "n_valid: abc\nlr: x\nheldout_speakers: spk4")
    assert str(err.value) == ("--n_valid: expected an integer, got 'abc'; --lr: expected a number, got 'x'; "
                              "--heldout_speakers: expected a list, e.g. [spk4], got 'spk4'")


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_accepts_its_own_values(recipe):
    defaults = recipe_defaults(recipe)
    plain = {k: v for k, v in defaults.items() if isinstance(v, (bool, int, float, str, list, dict))}
    assert len(plain) > 30
    overrides = "\n".join(f"{key}: {json.dumps(value)}" for key, value in plain.items())
    assert check_overrides(recipe, overrides) == plain


def test_a_stage_command_line_is_checked():
    args = parse_stage_args([MINI, "--n_valid", "3", "--heldout_speakers=[spk4]", "--device", "cpu", "--force"])
    assert args.force and args.run_opts.device == "cpu"
    with pytest.raises(ConfigError, match=r"^unknown flag\(s\) --n_vald \(did you mean --n_valid\?\); valid: --force,"):
        parse_stage_args([MINI, "--n_vald", "3"])
    with pytest.raises(ConfigError, match=r"valid: --stage --stop_stage --force --ngpu --help,"):
        parse_stage_args([MINI, "--n_vald", "3"], driver=True)
    with pytest.raises(ConfigError, match=r"^unknown flag\(s\) --ngpus \(did you mean --ngpu\?\)"):
        parse_stage_args([MINI, "--ngpus", "2"], driver=True)
    # --shard belongs to stages 3 and 4 run as modules: the driver says so rather than guess a key
    with pytest.raises(ConfigError, match=r"^unknown flag\(s\) --shard \(a flag of stages 3 and 4 run as modules: "
                                          r"python -m semtts.stages.speaker_embeddings HPARAMS --shard i/n; run.sh "
                                          r"takes --nj N\); valid:"):
        parse_stage_args([MINI, "--shard", "0/4"], driver=True)
    with pytest.raises(ConfigError, match=r"^--sample_rate: expected an integer, got 'abc'$"):
        parse_stage_args([MINI, "--sample_rate", "abc"])
    with pytest.raises(ConfigError, match=r"^bad command line \(argument --precision: invalid choice: 'bf17'"):
        parse_stage_args([MINI, "--precision", "bf17"])


@pytest.mark.parametrize("stage, argv, message", [
    ("prepare", ["--n_vald", "3", "--tag", "direct"], "error: unknown flag(s) --n_vald (did you mean --n_valid?)"),
    ("frontend", ["--tokn_type", "char"], "error: unknown flag(s) --tokn_type (did you mean --token_type?)"),
    ("prepare", ["--n_valid", "abc"], "error: --n_valid: expected an integer, got 'abc'"),
    ("check_corpus", ["--mini_speakers", "abc"], "error: --mini_speakers: expected an integer, got 'abc'"),
])
def test_a_stage_called_directly_checks_its_flags(stage, argv, message, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"semtts.stages.{stage}").main
    with pytest.raises(SystemExit) as exit_:
        main([MINI, "--exp_root", str(tmp_path / "exp"), "--data_folder", str(tmp_path / "mini"), *argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "exp").exists() and not (tmp_path / "mini").exists()  # nothing ran


def test_a_mapping_flag_over_a_null_default_is_one_line_and_the_recipes_default_to_empty_mappings(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("dims: null\nlr: 1\n")
    with pytest.raises(ConfigError, match=r"h.yaml: --dims gives a mapping where the file has another kind of value"):
        load_hparams(str(path), "dims: {a: 1}")
    for recipe in RECIPES:  # their mapping flags take mappings from the command line
        hp = load_hparams(recipe, "whisper_random_dims: {n_audio_state: 64}\neval_asr_random_dims: {n_text_ctx: 8}\n"
                                  "data_folder: /corpus")
        assert hp["whisper_random_dims"]["n_audio_state"] == 64 and hp["eval_asr_random_dims"]["n_text_ctx"] == 8
    # markers written when such a default was null still match (null, {} and a missing key: no value)
    assert changed_settings({"dims": None, "lr": 1}, {"dims": {}, "lr": 1, "new": {}}) == []
    assert changed_settings({"dims": None}, {"dims": {"a": 1}}) == ["dims"]
