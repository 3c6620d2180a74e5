"""Config: defaults are valid, overrides are typed, bad values are refused before any work."""

import json

import pytest

from config import Config, parse_overrides


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
    ("batch_shards", -1), ("batch_shards", 3),
])
def test_invalid_values_are_refused(field, value):
    with pytest.raises(ValueError, match=f"Invalid config: .*{field}"):
        Config(**{field: value})


def test_config_round_trips_through_json():
    config = Config(seed=7, mode="target_only")
    assert Config(**json.loads(config.to_json())) == config
