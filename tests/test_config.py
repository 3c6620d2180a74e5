"""Config: defaults are valid, overrides are typed, bad values are refused before any work."""

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

import train
from conftest import make_trainer
from config import FLAG_ALIASES, PRESETS, Config, preset_config
from utils.cli import parse_overrides

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_follow_the_paper():
    config = Config()
    assert (config.learning_rate, config.lr_alpha, config.lr_beta) == (0.01, 10.0, 0.75)
    assert (config.momentum, config.lambda_gamma, config.batch_size) == (0.9, 10.0, 128)
    assert (config.conv1_filters, config.conv2_filters, config.kernel_size) == (32, 48, 5)
    assert config.mode == "dann"
    assert config.name == "dann-seed0"


def test_overrides_are_parsed_by_field_type():
    overrides = parse_overrides(["--mode", "source_only", "--epochs=2.5", "--seed", "3",
                                 "--binarize_source", "false", "--mnist", "m.npz"],
                                aliases={"mnist": "mnist_path"})
    assert overrides == {"mode": "source_only", "epochs": 2.5, "seed": 3,
                         "binarize_source": False, "mnist_path": "m.npz"}
    assert Config(**overrides).name == "source_only-seed3"


@pytest.mark.parametrize("arguments, message", [
    (["--learning_rat", "0.1"], "Unknown config key: 'learning_rat'"),
    (["--seed", "one"], "--seed expects a int"),
    (["--epochs", "many"], "--epochs expects a float"),
    (["--deterministic", "maybe"], "--deterministic expects a bool"),
    (["--seed"], "--seed needs a value"),
    (["seed", "3"], "Unexpected argument 'seed'"),
])
def test_bad_overrides_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        parse_overrides(arguments)


@pytest.mark.parametrize("field, value", [
    ("learning_rate", 0.0), ("learning_rate", -0.01), ("batch_size", 255), ("batch_size", 0),
    ("mode", "adversarial"), ("epochs", 0.0), ("epochs", -1.0), ("momentum", 1.0),
    ("log_every", 0), ("steps_per_call", 0), ("conv1_filters", 0), ("lambda_gamma", -1.0),
    ("batch_shards", -1), ("batch_shards", 3), ("lambda_max", -0.5), ("domain_loss_weight", -1.0),
    ("ema_momentum", 1.0), ("ema_momentum", -0.1), ("preset", "fast"),
    ("image_size", 15), ("image_channels", 2), ("held_out_fraction", 0.0), ("held_out_fraction", 1.0),
    ("in_memory_mb", -1), ("class_names", ("cat",)), ("class_names", ("cat", "cat")),
])
def test_invalid_values_are_refused(field, value):
    with pytest.raises(ValueError, match=f"Invalid config: .*{field}"):
        Config(**{field: value})


FLOAT_FIELDS = [field.name for field in dataclasses.fields(Config) if field.type is float]


def test_the_float_fields_are_found():
    assert {"learning_rate", "momentum", "ema_momentum", "epochs", "lambda_max"} <= set(FLOAT_FIELDS)


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("text", ["inf", "-inf", "nan"])
def test_non_finite_floats_are_refused(field, text):
    overrides = parse_overrides([f"--{field}", text])  # float() parses all three.
    with pytest.raises(ValueError, match=f"Invalid config: {field} must be a finite number, got {text}. "
                                         "Fix it in config.py or on the command line."):
        Config(**overrides)


def test_the_smallest_image_size_leaves_the_network_a_feature_map():
    assert Config(image_size=16).image_shape == (16, 16, 3)
    assert Config(kernel_size=3, image_size=10).image_size == 10
    with pytest.raises(ValueError, match="image_size 9 is too small .* at least 10 pixels"):
        Config(kernel_size=3, image_size=9)


def test_class_names_come_from_the_folder_not_the_command_line():
    with pytest.raises(ValueError, match="--class_names is not set on the command line"):
        parse_overrides(["--class_names", "cat,dog"])
    assert Config(class_names=["cat", "dog"]).class_names == ("cat", "dog")
    assert Config().classes == tuple("0123456789")


def test_train_refuses_an_infinite_learning_rate_with_one_error_line(capsys):
    assert train.main(["--learning_rate", "inf"]) == 2
    error = capsys.readouterr().err
    assert error == ("error: Invalid config: learning_rate must be a finite number, got inf. "
                     "Fix it in config.py or on the command line.\n")


def test_config_round_trips_through_json():
    config = Config(seed=7, mode="target_only")
    assert Config(**json.loads(config.to_json())) == config


def test_the_paper_preset_is_the_defaults_and_the_default_preset():
    assert PRESETS["paper"] == {}
    assert preset_config() == preset_config("paper") == Config()
    assert Config().preset == "paper"


def test_a_preset_sets_its_values_and_overrides_go_on_top():
    config = preset_config("daipuwei", epochs=3.0, seed=2)
    assert config.preset == "daipuwei"
    assert (config.batch_size, config.binarize_source, config.domain_loss_weight) == (256, False, 2.0)
    assert (config.epochs, config.seed) == (3.0, 2)
    assert Config(**json.loads(config.to_json())) == config  # The name and the values, in config.json.


def test_the_long_preset_keeps_the_papers_networks_and_mode():
    config = preset_config("long", seed=1)
    paper = Config()
    for name in ("conv1_filters", "conv2_filters", "kernel_size", "label_hidden_units",
                 "domain_hidden_units", "mode", "batch_size", "learning_rate", "momentum"):
        assert getattr(config, name) == getattr(paper, name), name
    assert (config.color_source, config.epochs, config.lr_alpha, config.lambda_gamma,
            config.ema_momentum, config.seed) == (True, 50.0, 2.5, 2.5, 0.999, 1)


def test_an_unknown_preset_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="Unknown preset 'fast'. Known presets: paper, daipuwei, long"):
        preset_config("fast")


def test_a_run_saves_the_preset_and_its_values_in_config_json(tmp_path):
    config = preset_config("daipuwei", epochs=2.0, batch_size=32, log_dir=str(tmp_path / "logs"),
                           checkpoint_dir=str(tmp_path / "checkpoints"))
    trainer = make_trainer(config)
    trainer.start(resume=False)
    saved = json.loads((tmp_path / "logs" / config.name / "config.json").read_text())
    assert saved["preset"] == "daipuwei" and saved["batch_size"] == 32
    assert (saved["binarize_source"], saved["domain_loss_weight"]) == (False, 2.0)


def test_train_refuses_an_unknown_preset_with_one_error_line(capsys):
    assert train.main(["--preset", "fast"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "Known presets: paper, daipuwei, long" in error
    assert len(error.strip().splitlines()) == 1


def test_help_lists_every_setting_and_exits_0(capsys):
    assert train.main(["--help"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Train DANN")
    listed = set(re.findall(r"^  --(\w+) ", printed, flags=re.MULTILINE))
    # Every listed flag is accepted; the fields train.py fills in (the class names, read from the
    # source folder, and why the precision was chosen) are neither.
    for field in dataclasses.fields(Config):
        assert (f"--{field.name} " in printed) == (field.name not in ("class_names", "precision_reason"))
    assert listed == ({field.name for field in dataclasses.fields(Config)} - {"class_names", "precision_reason"}
                      | set(FLAG_ALIASES) | {"resume"})
    assert "--mnist is short for --mnist_path" in printed


def test_help_piped_into_a_reader_that_stops_early_ends_quietly():
    # As `python train.py --help | head`, where head has gone before the text
    # is written: `true` closes the pipe without reading from it.
    completed = subprocess.run(f"{shlex.quote(sys.executable)} train.py --help | true", shell=True,
                               cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert completed.stderr == ""


@pytest.mark.parametrize("arguments, name", [
    (["--preset", "long", "--preset", "daipuwei"], "preset"),
    (["--seed=1", "--seed", "2"], "seed"),
    (["--mnist", "a.npz", "--mnist_path", "b.npz"], "mnist_path"),
])
def test_a_setting_given_twice_is_refused(arguments, name):
    with pytest.raises(ValueError, match=f"--{name} is given twice"):
        parse_overrides(arguments, aliases={"mnist": "mnist_path"})
