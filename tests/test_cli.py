"""utils/cli.py: one parser for every script, with config.py's fields as flags and former spellings."""

import pytest

import create_mnistm
import evaluate
import plot_curves
import plot_tsne
import run_results
from utils import cli


@pytest.mark.parametrize("parse, former, flag, value", [
    (evaluate.parse_arguments, ["--mnistm-train"], "mnistm_train", True),
    (evaluate.parse_arguments, ["--mnistm-official", "DIR"], "mnistm_official", "DIR"),
    (evaluate.parse_arguments, ["--target-dir", "DIR"], "target_dir", "DIR"),
    (create_mnistm.parse_arguments, ["--export-folders", "DIR"], "export_folders", "DIR"),
    (plot_tsne.parse_arguments, ["--source-only", "RUN"], "source_only", "RUN"),
])
def test_a_former_spelling_still_sets_its_flag(parse, former, flag, value):
    assert getattr(parse(former), flag) == value


def test_a_former_spelling_is_a_setting_given_twice_with_the_new_one():
    with pytest.raises(cli.UsageError, match="--mnistm_train is given twice"):
        evaluate.parse_arguments(["--mnistm-train", "--mnistm_train"])


def test_the_former_setting_names_still_work_and_download_dir_is_a_setting():
    assert create_mnistm.parse_arguments(["--download-dir", "cache"]).settings.download_dir == "cache"
    assert cli.parse_overrides(["--colour_source", "true"]) == {"color_source": True}


def test_help_lists_the_former_spellings_as_deprecated_and_hides_them_from_the_flags():
    parser = cli.Parser("Tool.", settings=("color_source",), renamed={"--old-name": "--new_name"})
    parser.add_argument("--new_name", default="")
    text = parser.format_help()
    assert "Former spellings, accepted until the next release: --colour_source (now --color_source), " \
           "--old-name (now --new_name)." in text
    assert "\n  --old-name" not in text and "\n  --colour_source" not in text


def test_plot_curves_takes_mnist_as_every_command_does():
    assert plot_curves.parse_arguments(["logs/run", "--mnist", "m.npz"]).run_dir == "logs/run"


def test_an_own_flag_given_twice_is_refused():
    with pytest.raises(cli.UsageError, match="--out is given twice"):
        evaluate.parse_arguments(["--out", "a.json", "--out=b.json"])


@pytest.mark.parametrize("arguments, message", [
    (["--bogus"], "Unknown config key: 'bogus'"),
    (["--model"], "--model needs a value."),
    (["--mnist_path", "a", "--mnist", "b"], "--mnist_path is given twice"),
])
def test_evaluate_refuses_bad_input_with_one_error_line(capsys, arguments, message):
    assert evaluate.main(arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and len(error.splitlines()) == 1


def test_help_returns_0_without_an_error(capsys):
    assert evaluate.main(["--help"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Accuracy of a trained classifier") and captured.err == ""


def test_run_results_passes_the_settings_on_to_train_as_train_reads_them():
    _, train_arguments, config = run_results.parse_arguments(["--table_only", "--epochs", "2",
                                                              "--binarize_source", "false", "--mnist", "m.npz"])
    assert cli.parse_overrides(train_arguments) == {"mnist_path": "m.npz", "binarize_source": False, "epochs": 2.0}
    assert config.epochs == 2.0


def test_a_setting_comment_is_its_help():
    assert "Seed of the MNIST-M backgrounds and crops." in cli.field_comments()["mnistm_seed"]
    assert cli.field_comments()["color_source"].startswith("Augmentation:")
