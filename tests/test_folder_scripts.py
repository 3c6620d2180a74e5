"""train.py, evaluate.py and create_mnistm.py on image folders: a whole run, predictions, and bad input."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import create_mnistm
import evaluate
import train
from conftest import write_fake_mnist, write_fake_mnistm
from test_folders import CLASSES, write_class_folder, write_image
from utils.data import image_files

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RUN = ["--epochs", "2", "--batch_size", "8", "--log_every", "2", "--eval_every", "2",
            "--checkpoint_every", "4", "--steps_per_call", "2", "--deterministic", "true", "--precision", "float32"]


def train_arguments(tmp_path, *extra):
    """The tiny run's train.py arguments; `extra` (--name value pairs) replaces the values it names,
    since train.py refuses a setting given twice."""
    tokens = ["--source_dir", str(tmp_path / "source"), "--target_dir", str(tmp_path / "target"),
              "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "checkpoints"),
              *TINY_RUN, *extra]
    settings = {}
    for index, token in enumerate(tokens):
        if token.startswith("--"):
            value = tokens[index + 1] if index + 1 < len(tokens) else None
            settings[token] = None if value is None or value.startswith("--") else value
    return [part for name, value in settings.items() for part in ([name] if value is None else [name, value])]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A finished run on 32x32 images of three classes, with labelled target test images."""
    tmp_path = tmp_path_factory.mktemp("folder_run")
    write_class_folder(tmp_path / "source", size=(40, 36), seed=7)
    write_class_folder(tmp_path / "target", size=(32, 32), seed=8)
    write_class_folder(tmp_path / "target_test", per_class=3, classes=("emu", "cat"), seed=9)
    assert train.main(train_arguments(tmp_path, "--target_test_dir", str(tmp_path / "target_test"),
                                      "--image_size", "32", "--run_name", "folders")) == 0
    return tmp_path


def test_a_run_saves_the_class_names_in_its_config_and_its_export(folder_run):
    config = json.loads((folder_run / "logs" / "folders" / "config.json").read_text())
    assert config["class_names"] == list(CLASSES) and config["image_size"] == 32
    # The three lines of the README: no code of this project is needed to use the export.
    model = keras.models.load_model(folder_run / "checkpoints" / "folders" / "classifier.keras")
    pixels = keras.utils.img_to_array(keras.utils.load_img(folder_run / "target" / "dog" / "00.png",
                                                            target_size=(32, 32)))
    outputs = model(pixels[None])
    assert model.get_layer("class_names").get_vocabulary() == list(CLASSES)
    assert model.input_shape == (None, 32, 32, 3)
    probabilities = outputs["probabilities"].numpy()[0]
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert outputs["class_name"].numpy()[0].decode() == CLASSES[int(np.argmax(probabilities))]


def test_evaluate_measures_a_labelled_folder(folder_run, capsys):
    out = folder_run / "results" / "evaluation.json"
    assert evaluate.main(["--model", str(folder_run / "checkpoints" / "folders"),
                          "--target_dir", str(folder_run / "target_test"), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    model = keras.models.load_model(folder_run / "checkpoints" / "folders" / "classifier.keras")
    paths = sorted((folder_run / "target_test").glob("*/*.png"))
    pixels = np.stack([image_files.decode_file(tf.constant(str(path)), (32, 32, 3)).numpy() for path in paths])
    predicted = np.argmax(model(pixels.astype(np.float32))["logits"], axis=-1)
    truth = np.array([CLASSES.index(path.parent.name) for path in paths])
    assert results["images"] == 6 and results["accuracy"] == pytest.approx(np.mean(predicted == truth))
    assert results["per_class_accuracy"]["dog"] is None  # No dog in the test folder.
    assert np.sum(results["confusion_matrix"]) == 6
    assert (folder_run / "results" / "evaluation_confusion_target_dir.png").stat().st_size > 1000


def test_predict_writes_one_row_per_image_with_the_class_probabilities(folder_run):
    unlabelled = folder_run / "unlabelled"
    rng = np.random.default_rng(10)
    for name in ("a.png", "b.jpg", "sub/c.bmp"):
        write_image(unlabelled / name, rng.integers(0, 256, (50, 20, 3), dtype=np.uint8),
                    {"png": "PNG", "jpg": "JPEG", "bmp": "BMP"}[name.rsplit(".", 1)[1]])
    out = folder_run / "predictions.csv"
    assert evaluate.main(["--model", str(folder_run / "checkpoints" / "folders"), "--predict", str(unlabelled),
                          "--out", str(out)]) == 0
    with open(out, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["path"] for row in rows] == ["a.png", "b.jpg", os.path.join("sub", "c.bmp")]
    model = keras.models.load_model(folder_run / "checkpoints" / "folders" / "classifier.keras")
    for row in rows:
        pixels = image_files.decode_file(tf.constant(str(unlabelled / row["path"])), (32, 32, 3)).numpy()
        expected = model(pixels[None].astype(np.float32))["probabilities"].numpy()[0]
        written = [float(row[f"probability_{name}"]) for name in CLASSES]
        np.testing.assert_allclose(written, expected, atol=2e-6)
        assert row["predicted_class"] == CLASSES[int(np.argmax(expected))]


def test_predict_refuses_a_folder_with_a_damaged_image_and_writes_nothing(folder_run, capsys):
    damaged = folder_run / "damaged"
    write_image(damaged / "good.png", np.zeros((32, 32, 3), np.uint8))
    (damaged / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = folder_run / "damaged.csv"
    assert evaluate.main(["--model", str(folder_run / "checkpoints" / "folders"), "--predict", str(damaged),
                          "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: Cannot decode the image ")
    assert str(damaged / "broken.png") in error and not out.exists()


def test_predict_with_an_export_from_before_class_names_names_the_digits(tmp_path):
    unlabelled = tmp_path / "digits"
    write_image(unlabelled / "one.png", np.zeros((28, 28), np.uint8))
    out = tmp_path / "predictions.csv"
    assert evaluate.main(["--model", "pretrained/paper", "--predict", str(unlabelled), "--out", str(out)]) == 0
    header = out.read_text().splitlines()[0]
    assert header == "path,predicted_class," + ",".join(f"probability_{digit}" for digit in range(10))


def bad_input(tmp_path, problem):
    """Folders with one problem each; returns (extra train.py arguments, text the error must hold)."""
    source, target = tmp_path / "source", tmp_path / "target"
    write_class_folder(source, per_class=2)
    write_class_folder(target, per_class=2, classes=("",))
    if problem == "missing source":
        return ["--source_dir", str(tmp_path / "nowhere")], f"--source_dir '{tmp_path / 'nowhere'}' is not a folder"
    if problem == "empty target":
        (tmp_path / "empty").mkdir()
        return ["--target_dir", str(tmp_path / "empty")], f"--target_dir '{tmp_path / 'empty'}' holds no images"
    if problem == "source without classes":
        return ["--source_dir", str(target)], f"--source_dir '{target}' has loose images (00.png"
    if problem == "source mixes classes and loose images":
        write_image(source / "stray.png", np.zeros((28, 28), np.uint8))
        return [], f"--source_dir '{source}' mixes class subfolders (cat, dog, emu) with loose images (stray.png)"
    if problem == "damaged image":
        (source / "dog" / "01.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
        return [], f"Cannot decode the image '{source / 'dog' / '01.png'}'"
    if problem == "class folder links to the source folder":
        (source / "c").symlink_to(".")
        return [], f"--source_dir: '{source / 'c'}' is a link to '{os.path.realpath(source)}', which holds it"
    if problem == "target test classes not in source":
        write_class_folder(tmp_path / "test", per_class=1, classes=("cat", "fox"))
        return (["--target_test_dir", str(tmp_path / "test")],
                f"--target_test_dir '{tmp_path / 'test'}' has classes that are not source classes: fox")
    if problem == "source test classes not in source":
        write_class_folder(tmp_path / "test", per_class=1, classes=("cow",))
        return (["--source_test_dir", str(tmp_path / "test")],
                f"--source_test_dir '{tmp_path / 'test'}' has classes that are not source classes: cow")
    if problem == "image size too small":
        return ["--image_size", "15"], "image_size 15 is too small for the paper network"
    if problem == "no target folder":
        return ["--target_dir", ""], "Image folders need both --source_dir"
    raise ValueError(problem)


@pytest.mark.parametrize("problem", [
    "missing source", "empty target", "source without classes", "source mixes classes and loose images",
    "damaged image", "class folder links to the source folder", "target test classes not in source",
    "source test classes not in source",
    "image size too small", "no target folder"])
def test_bad_folders_give_one_error_line_exit_2_and_write_nothing(tmp_path, capsys, problem):
    extra, expected = bad_input(tmp_path, problem)
    assert train.main(train_arguments(tmp_path, *extra)) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert expected in error
    assert not (tmp_path / "logs").exists() and not (tmp_path / "checkpoints").exists()


def run_script(*arguments):
    """A script run as the user runs it, in its own process: stderr holds TensorFlow's own lines too."""
    return subprocess.run([sys.executable, *arguments], cwd=REPOSITORY, capture_output=True, text=True,
                          timeout=300, check=False)


def one_epoch_of_train_py(tmp_path, image_size=32):
    """train.py for one epoch on tiny folders, source/ in class subfolders and target/ loose."""
    write_class_folder(tmp_path / "source", per_class=2, classes=("cat", "dog"), size=(32, 32))
    write_class_folder(tmp_path / "target", per_class=2, classes=("",), size=(32, 32))
    return ["train.py", "--source_dir", str(tmp_path / "source"), "--target_dir", str(tmp_path / "target"),
            "--image_size", str(image_size), "--binarize_source", "false", "--epochs", "1", "--batch_size", "16",
            "--run_name", "tiny", "--precision", "float32", "--log_dir", str(tmp_path / "logs"),
            "--checkpoint_dir", str(tmp_path / "checkpoints")]


def nothing_written(tmp_path):
    return not any((tmp_path / name).exists() for name in ("logs", "checkpoints", "predictions.csv"))


@pytest.mark.parametrize("where", ["source", "target", "predict"])
def test_an_undecodable_image_gives_one_error_line_that_names_it_and_nothing_else(tmp_path, where):
    arguments = one_epoch_of_train_py(tmp_path)
    garbage = {"source": tmp_path / "source" / "dog" / "garbage.png",
               "target": tmp_path / "target" / "garbage.jpg", "predict": tmp_path / "new" / "garbage.bmp"}[where]
    garbage.parent.mkdir(exist_ok=True)
    garbage.write_bytes(bytes(range(256)) * 4)
    if where == "predict":
        write_image(tmp_path / "new" / "good.png", np.zeros((28, 28), np.uint8))
        arguments = ["evaluate.py", "--model", "pretrained/paper", "--predict", str(tmp_path / "new"),
                     "--out", str(tmp_path / "predictions.csv")]
    completed = run_script(*arguments)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [
        f"error: Cannot decode the image '{garbage}': it is not a readable PNG/JPEG/BMP/GIF. Replace or "
        "remove it; no image is skipped silently."]
    assert nothing_written(tmp_path)


def test_an_image_size_too_large_for_memory_is_refused_before_decoding(tmp_path):
    completed = run_script(*one_epoch_of_train_py(tmp_path, image_size=100_000))
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("lower --image_size."), lines
    assert "MB of memory, and" in lines[0] and "Checking every image" not in completed.stdout
    assert nothing_written(tmp_path)


def test_export_folders_writes_mnist_and_mnistm_as_class_subfolders(tmp_path, capsys):
    mnist = write_fake_mnist(str(tmp_path / "mnist.npz"))
    write_fake_mnistm(str(tmp_path / "mnist_m.npz"), mnist)
    mnistm = np.load(tmp_path / "mnist_m.npz")
    out = tmp_path / "folders"
    arguments = ["--mnist", str(tmp_path / "mnist.npz"), "--out", str(tmp_path / "mnist_m.npz"),
                 "--export_folders", str(out)]
    assert create_mnistm.main(arguments) == 0
    for domain, arrays in (("mnist", mnist), ("mnistm", mnistm)):
        for split in ("train", "test"):
            images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
            for index in (0, len(labels) - 1):
                path = out / domain / split / str(labels[index]) / f"{index:0{len(str(len(labels)))}d}.png"
                decoded = image_files.decode_file(tf.constant(str(path)), (28, 28, 3)).numpy()
                expected = images[index] if images.ndim == 4 else np.repeat(images[index][..., None], 3, -1)
                np.testing.assert_array_equal(decoded, expected)
            assert len(list((out / domain / split).glob("*/*.png"))) == len(labels)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # No leftovers.
    capsys.readouterr()
    assert create_mnistm.main(arguments) == 2
    assert "already exists" in capsys.readouterr().err


def test_resuming_refuses_a_source_folder_whose_classes_changed(folder_run, capsys):
    arguments = train_arguments(folder_run, "--target_test_dir", str(folder_run / "target_test"),
                                "--image_size", "32", "--run_name", "folders", "--resume")
    write_class_folder(folder_run / "source", per_class=2, classes=("fox",), seed=11)
    try:
        assert train.main(arguments) == 2
    finally:
        for path in (folder_run / "source" / "fox").iterdir():
            path.unlink()
        (folder_run / "source" / "fox").rmdir()
    assert "these settings differ from the saved run: class_names" in capsys.readouterr().err


def test_evaluate_without_a_folder_refuses_a_run_trained_on_folders(folder_run, capsys):
    assert evaluate.main(["--model", str(folder_run / "checkpoints" / "folders"),
                          "--out", str(folder_run / "mnist.json")]) == 2
    assert "was trained on image folders" in capsys.readouterr().err


def test_the_digits_tool_writes_scikit_learns_digits_as_class_folders(tmp_path):
    from sklearn.datasets import load_digits

    from tools import digits_folders

    assert digits_folders.main([str(tmp_path / "digits")]) == 0
    digits = load_digits()
    assert len(list((tmp_path / "digits").glob("*/*.png"))) == len(digits.target) == 1797
    path = tmp_path / "digits" / str(digits.target[5]) / "0005.png"
    decoded = image_files.decode_file(tf.constant(str(path)), (16, 16, 1)).numpy()
    assert decoded.shape == (16, 16, 1)
    np.testing.assert_array_equal(np.asarray(Image.open(path)),
                                  np.round(digits.images[5] * 255 / 16).astype(np.uint8))


def test_cut_classes_keeps_a_seeded_fraction_of_the_named_classes_and_copies_the_rest(tmp_path, capsys):
    from tools import cut_classes

    for name, count in (("a", 20), ("b", 20), ("c", 7)):
        (tmp_path / "in" / name).mkdir(parents=True)
        for index in range(count):
            (tmp_path / "in" / name / f"{index:02d}.png").write_bytes(bytes([index]))
    arguments = [str(tmp_path / "in"), "--classes", "a", "c", "--keep", "0.1", "--seed", "3"]
    assert cut_classes.main([arguments[0], str(tmp_path / "out"), *arguments[1:]]) == 0
    kept = {name: sorted(os.listdir(tmp_path / "out" / name)) for name in "abc"}
    assert [len(kept[name]) for name in "abc"] == [2, 20, 1]  # a tenth of 20; at least one of 7
    assert all((tmp_path / "out" / "a" / name).read_bytes() == bytes([int(name[:2])]) for name in kept["a"])
    # The same seed draws the same files; the output is refused once it exists.
    assert cut_classes.main([arguments[0], str(tmp_path / "again"), *arguments[1:]]) == 0
    assert sorted(os.listdir(tmp_path / "again" / "a")) == kept["a"]
    capsys.readouterr()
    assert cut_classes.main([arguments[0], str(tmp_path / "out"), *arguments[1:]]) == 2
    assert cut_classes.main([arguments[0], str(tmp_path / "new"), "--classes", "z", "--keep", "0.5"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "already exists" in errors[0] and "--classes z: no such class" in errors[1]
    assert not (tmp_path / "new").exists() and sorted(os.listdir(tmp_path)) == ["again", "in", "out"]
