"""Image folders: layouts, decoding, the held-out split, streaming, and bad input refused by train.py."""

import dataclasses
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from config import Config
from utils.data import training_data
from utils.training.trainer import Trainer
from utils.data import folders
from utils.data import image_files
from utils.data import pipeline
from utils.errors import DataError

CLASSES = ("cat", "dog", "emu")


def write_image(path, pixels, image_format="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=image_format)


def write_class_folder(folder, per_class=6, classes=CLASSES, size=(28, 28), seed=0):
    """Random color PNGs, per_class in each class subfolder; returns {path: (pixels, class index)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for label, name in enumerate(classes):
        for index in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            path = folder / name / f"{index:02d}.png"
            write_image(path, pixels)
            written[str(path)] = (pixels, label)
    return written


def test_the_source_layout_gives_sorted_classes_and_skips_hidden_and_other_files(tmp_path):
    write_class_folder(tmp_path / "source", per_class=2, classes=("dog", "cat"))
    write_image(tmp_path / "source" / "cat" / "nested" / "deep.png", np.zeros((28, 28), np.uint8))
    (tmp_path / "source" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "source" / "cat" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "source" / ".hidden").mkdir()
    images = folders.scan_source(str(tmp_path / "source"))
    assert images.class_names == ("cat", "dog")
    assert [path.split("source/")[1] for path in images.paths] == [
        "cat/00.png", "cat/01.png", "cat/nested/deep.png", "dog/00.png", "dog/01.png"]
    assert images.labels.tolist() == [0, 0, 0, 1, 1]


def test_a_target_folder_is_labelled_only_when_its_subfolders_are_source_classes(tmp_path):
    write_class_folder(tmp_path / "labelled", per_class=1, classes=("emu", "cat"))
    write_class_folder(tmp_path / "other", per_class=1, classes=("day", "night"))
    write_class_folder(tmp_path / "loose", per_class=2, classes=("",))
    labelled = folders.scan_target(str(tmp_path / "labelled"), CLASSES)
    assert labelled.labelled and labelled.labels.tolist() == [0, 2]  # cat, emu in the source's order.
    for name in ("other", "loose"):
        unlabelled = folders.scan_target(str(tmp_path / name), CLASSES)
        assert not unlabelled.labelled and len(unlabelled) == 2
        assert set(unlabelled.labels.tolist()) == {folders.UNLABELLED}


@pytest.mark.parametrize("image_format, mode", [
    ("PNG", "L"), ("PNG", "RGB"), ("JPEG", "L"), ("JPEG", "RGB"), ("BMP", "RGB"), ("GIF", "L"), ("GIF", "P")])
def test_each_format_decodes_to_the_configured_shape(tmp_path, image_format, mode):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / f"image.{image_format.lower()}"
    image.save(path, format=image_format)
    for shape in ((28, 28, 3), (32, 32, 1)):
        decoded = image_files.decode_file(tf.constant(str(path)), shape).numpy()
        assert decoded.shape == shape and decoded.dtype == np.uint8
    # Resized as image_dataset_from_directory resizes: bilinear, without keeping the aspect ratio.
    expected = tf.image.resize(np.asarray(image.convert("RGB")), [28, 28], method="bilinear").numpy()
    if image_format in ("PNG", "BMP"):  # Lossless: the same pixels in.
        np.testing.assert_array_equal(image_files.decode_file(tf.constant(str(path)), (28, 28, 3)).numpy(),
                                      np.round(expected).astype(np.uint8))


def test_an_image_of_the_configured_size_keeps_its_exact_pixels(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)
    write_image(tmp_path / "digit.png", pixels)
    decoded = image_files.decode_file(tf.constant(str(tmp_path / "digit.png")), (28, 28, 3)).numpy()
    np.testing.assert_array_equal(decoded, np.repeat(pixels[..., None], 3, axis=-1))


def test_the_held_out_split_is_seeded_disjoint_and_per_domain(tmp_path):
    images = folders.ImageList([f"{index}.png" for index in range(50)], np.arange(50) % 3, CLASSES)
    train_part, held_out = folders.held_out_split(images, 0.2, seed=0, stream=0)
    assert len(held_out) == 10 and len(train_part) == 40
    assert set(train_part.paths).isdisjoint(held_out.paths)
    assert sorted(train_part.paths + held_out.paths) == sorted(images.paths)
    assert folders.held_out_split(images, 0.2, seed=0, stream=0)[1].paths == held_out.paths
    assert folders.held_out_split(images, 0.2, seed=0, stream=1)[1].paths != held_out.paths
    assert folders.held_out_split(images, 0.2, seed=1, stream=0)[1].paths != held_out.paths
    with pytest.raises(DataError, match="too few"):
        folders.held_out_split(folders.ImageList(["a.png"], np.zeros(1), CLASSES), 0.1, 0, 0)


def folder_config(tmp_path, **overrides):
    settings = dict(source_dir=str(tmp_path / "source"), target_dir=str(tmp_path / "target"),
                    class_names=CLASSES, epochs=2.0, batch_size=8, log_every=2, eval_every=2,
                    checkpoint_every=4, steps_per_call=2, deterministic=True, held_out_fraction=0.25,
                    log_dir=str(tmp_path / "logs"), checkpoint_dir=str(tmp_path / "checkpoints"))
    return Config(**{**settings, **overrides})


def test_loaded_folders_hold_the_images_their_labels_and_the_mean_of_what_training_feeds(tmp_path):
    written = {**write_class_folder(tmp_path / "source", seed=3), **write_class_folder(tmp_path / "target", seed=4)}
    config = folder_config(tmp_path, binarize_source=False)
    parts, _ = training_data.scan_folders(config)
    data = training_data.folder_data(config, log=lambda line: None)
    for name in ("source", "target", "source_test", "target_test"):
        domain = getattr(data, name)
        expected = [written[path] for path in parts[name].paths]
        np.testing.assert_array_equal(domain.images.numpy(), np.stack([pixels for pixels, _ in expected]))
        assert domain.labels.numpy().tolist() == [label for _, label in expected]
    training = np.concatenate([data.source.images.numpy(), data.target.images.numpy()])
    np.testing.assert_allclose(data.pixel_mean, training.reshape(-1, 3).mean(axis=0), rtol=1e-6)
    binarized = training_data.folder_data(folder_config(tmp_path), log=lambda line: None)
    source_binarized = np.where(data.source.images.numpy() > 0, 255, 0)
    expected_mean = np.concatenate([source_binarized, data.target.images.numpy()]).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(binarized.pixel_mean, expected_mean, rtol=1e-6)


def test_streamed_folders_give_the_same_batches_and_evaluation_as_folders_in_memory(tmp_path):
    write_class_folder(tmp_path / "source", size=(36, 30), seed=5)
    write_class_folder(tmp_path / "target", size=(20, 28), seed=6)
    in_memory = training_data.folder_data(folder_config(tmp_path), log=lambda line: None)
    streamed = training_data.folder_data(folder_config(tmp_path, in_memory_mb=0), log=lambda line: None)
    assert isinstance(streamed.source, pipeline.FileDomain) and isinstance(streamed.target_test, pipeline.FileDomain)
    assert not isinstance(in_memory.source, pipeline.FileDomain)
    assert streamed.pixel_mean == pytest.approx(in_memory.pixel_mean)
    batches = [pipeline.training_dataset(data.source, data.target, 4, data.pixel_mean, seed=0, start_step=3)
               for data in (in_memory, streamed)]
    for first, second in zip(*(iter(batches_of) for batches_of in batches)):
        for part_a, part_b in zip(first, second):
            np.testing.assert_array_equal(part_a.numpy(), part_b.numpy())
        break
    for name in ("source_test", "target_test"):
        pairs = zip(*(pipeline.evaluation_dataset(getattr(data, name), 5, data.pixel_mean)
                      for data in (in_memory, streamed)))
        for (images_a, labels_a), (images_b, labels_b) in pairs:
            np.testing.assert_array_equal(images_a.numpy(), images_b.numpy())
            np.testing.assert_array_equal(labels_a.numpy(), labels_b.numpy())


def test_target_only_needs_target_labels(tmp_path):
    write_class_folder(tmp_path / "source")
    write_class_folder(tmp_path / "target", classes=("",))
    with pytest.raises(DataError, match="target_only trains on target labels"):
        training_data.folder_data(folder_config(tmp_path, mode="target_only"), log=lambda line: None)


def test_an_unlabelled_target_trains_and_reports_the_domain_accuracy_only(tmp_path):
    write_class_folder(tmp_path / "source")
    write_class_folder(tmp_path / "target", classes=("",))
    config = folder_config(tmp_path)
    trainer = Trainer(config, training_data.folder_data(config, log=lambda line: None))
    final = trainer.run()
    assert "val/source_acc" in final and "val/domain_acc" in final
    assert "val/target_acc" not in final and "val/target_loss" not in final


@pytest.mark.parametrize("kernel_size, side", [(5, 16), (3, 10), (7, 22)])
def test_the_smallest_image_size_builds_a_one_pixel_feature_map(kernel_size, side):
    from model import Networks

    networks = Networks(Config(kernel_size=kernel_size, image_size=side))
    assert networks.feature_extractor.output_shape == (None, 1 * 1 * 48)
    with pytest.raises(ValueError):
        Config(kernel_size=kernel_size, image_size=side - 1)


def link(path, target):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.mark.parametrize("scan, link_path, target", [
    ("source", "c", "."),  # A class folder that is the source folder itself.
    ("source", "cat/up", ".."),  # A folder inside a class, leading back to the source folder.
    ("source", "cat/deeper/again", ".."),  # Back to the class folder that holds it.
    ("target", "storage/up", "../.."),  # Above the target folder.
])
def test_a_link_into_a_folder_that_holds_it_is_refused_as_a_loop(tmp_path, scan, link_path, target):
    folder = tmp_path / scan
    write_class_folder(folder, per_class=1, classes=("cat", "dog") if scan == "source" else ("storage",))
    link(folder / link_path, target)
    with pytest.raises(DataError, match=f"'{folder / link_path}' is a link to .* reading it would loop"):
        folders.scan_source(str(folder)) if scan == "source" else folders.scan_target(str(folder), CLASSES)


@pytest.mark.parametrize("link_path, target, twice", [
    ("fox", "cat", "cat/00.png"),  # One image file in two classes.
    ("cat/more", "../dog", "dog/00.png"),  # A subfolder of one class that is another class.
    ("cat/again.png", "00.png", "cat/00.png"),  # Twice in one class.
])
def test_a_link_that_makes_one_image_file_count_twice_is_refused(tmp_path, link_path, target, twice):
    source = tmp_path / "source"
    write_class_folder(source, per_class=1, classes=("cat", "dog"))
    link(source / link_path, target)
    with pytest.raises(DataError, match=f"the link '{source / link_path}' makes the image file "
                                        f"'{source / twice}' count twice"):
        folders.scan_source(str(source))


def test_links_to_images_stored_elsewhere_are_followed(tmp_path):
    source, elsewhere = tmp_path / "source", tmp_path / "elsewhere"
    write_class_folder(source, per_class=1, classes=("cat", "dog"))
    write_class_folder(elsewhere, per_class=2, classes=("more cats", "emus", "pictures"))
    link(source / "cat" / "more", elsewhere / "more cats")  # A subfolder.
    link(source / "emu", elsewhere / "emus")  # A whole class.
    link(source / "dog" / "linked.png", elsewhere / "pictures" / "00.png")  # One file.
    images = folders.scan_source(str(source))
    assert images.class_names == ("cat", "dog", "emu")
    assert [path.split("source/")[1] for path in images.paths] == [
        "cat/00.png", "cat/more/00.png", "cat/more/01.png", "dog/00.png", "dog/linked.png",
        "emu/00.png", "emu/01.png"]
    assert images.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    link(tmp_path / "target" / "linked.png", elsewhere / "pictures" / "01.png")
    assert len(folders.scan_target(str(tmp_path / "target"), images.class_names)) == 1
    assert len(folders.images_under(str(source), "--predict")) == 7


@pytest.mark.parametrize("link_path", ["cat/gone.png", "cat/gone", "gone"])
def test_a_link_that_leads_nowhere_is_refused(tmp_path, link_path):
    source = tmp_path / "source"
    write_class_folder(source, per_class=1, classes=("cat", "dog"))
    link(source / link_path, tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"'{source / link_path}' is a link to .*, which does not exist"):
        folders.scan_source(str(source))


def refuse_decoding(*arguments):
    raise AssertionError("decoding started")


def test_a_run_that_cannot_fit_in_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    write_class_folder(tmp_path / "source")
    write_class_folder(tmp_path / "target", classes=("",))
    monkeypatch.setattr(image_files, "decoded_batches", refuse_decoding)
    # Memory for the networks and one batch, not for the pixels as well.
    small = folder_config(tmp_path, precision="float32", in_memory_mb=10**6, batch_size=64)
    batch = image_files.training_batch_bytes(small)
    assert batch > image_files.trained_dense_bytes(small)[1]
    monkeypatch.setattr(image_files, "available_memory", lambda: batch + 1000)
    for overrides, remedy in ((dict(image_size=1000), "lower --image_size."),
                              (dict(batch_size=128), "lower --batch_size or --image_size."),
                              ({}, "lower --in_memory_mb, to decode them from disk batch by batch")):
        with pytest.raises(DataError, match=f"would need .* MB of memory, and .* MB are available: {remedy}"):
            training_data.folder_data(dataclasses.replace(small, **overrides), log=lambda line: None)


def test_evaluation_refuses_images_that_cannot_fit_in_memory_before_decoding(tmp_path, monkeypatch):
    from utils.evaluation import folder_evaluation

    write_class_folder(tmp_path / "labelled", per_class=1)
    run = types.SimpleNamespace(image_shape=(32, 32, 3), class_names=CLASSES, classifier=None)
    monkeypatch.setattr(folder_evaluation, "decoded_batches", refuse_decoding)
    monkeypatch.setattr(image_files, "available_memory", lambda: 32 * 32 * 3)
    for evaluate in (folder_evaluation.labelled_folder_confusion, folder_evaluation.predict_folder):
        with pytest.raises(DataError, match="the export takes images of this size; free memory"):
            evaluate(run, str(tmp_path / "labelled"))


def test_the_available_memory_is_known_here():
    assert 0 < image_files.available_memory() <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
