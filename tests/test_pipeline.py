"""utils/pipeline.py: per-batch conversion and the step-addressable training stream."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from utils.data import pipeline

PIXEL_MEAN = [100.0, 110.0, 120.0]


def indexed_domain(size, is_mnist):
    """A domain whose labels are the image indices, so a batch shows which images it drew."""
    shape = (size, 28, 28) if is_mnist else (size, 28, 28, 3)
    images = np.random.default_rng(size).integers(0, 256, shape, dtype=np.uint8)
    return pipeline.Domain(images, np.arange(size), is_mnist=is_mnist)


def drawn_indices(size, half_batch, seed, start_step, steps):
    """The source and target indices of `steps` batches, from batch `start_step` on."""
    stream = pipeline.training_dataset(indexed_domain(size, True), indexed_domain(size, False),
                                       half_batch, PIXEL_MEAN, seed=seed, start_step=start_step)
    batches = [(source_y.numpy(), target_y.numpy())
               for _, source_y, _, target_y in itertools.islice(stream, steps)]
    return np.stack([source for source, _ in batches]), np.stack([target for _, target in batches])


def test_source_to_rgb_repeats_the_grey_channel_and_can_binarise():
    grey = np.array([[0, 1, 128, 255]], np.uint8).reshape(1, 1, 4)
    np.testing.assert_array_equal(pipeline.source_to_rgb(grey, binarize=False).numpy()[0, 0],
                                  [[0] * 3, [1] * 3, [128] * 3, [255] * 3])
    np.testing.assert_array_equal(pipeline.source_to_rgb(grey, binarize=True).numpy()[0, 0],
                                  [[0] * 3, [255] * 3, [255] * 3, [255] * 3])


def test_normalize_subtracts_the_pixel_mean_and_divides_by_255():
    images = np.full((1, 2, 2, 3), 200, np.uint8)
    expected = (200.0 - np.array(PIXEL_MEAN)) / 255.0
    np.testing.assert_allclose(pipeline.normalize(images, PIXEL_MEAN).numpy()[0, 0, 0], expected,
                               rtol=1e-6)


def test_training_batches_are_normalised_rgb_floats():
    stream = pipeline.training_dataset(indexed_domain(20, True), indexed_domain(20, False), 4,
                                       PIXEL_MEAN, seed=0)
    source_x, source_y, target_x, target_y = next(iter(stream))
    assert source_x.shape == target_x.shape == (4, 28, 28, 3)
    assert source_x.dtype == target_x.dtype == tf.float32
    assert source_y.dtype == target_y.dtype == tf.int32
    assert float(tf.reduce_max(tf.abs(source_x))) <= 1.0


def test_every_epoch_is_a_new_permutation_of_each_domain():
    # 24 images, 6 per half-batch: 4 batches an epoch; 12 batches = 3 epochs.
    source, target = drawn_indices(24, 6, seed=3, start_step=0, steps=12)
    for indices in (source, target):
        epochs = indices.reshape(3, 24)
        for epoch in epochs:
            assert sorted(epoch) == list(range(24))
        assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(source, target)


def test_a_stream_started_at_a_step_continues_the_uninterrupted_one():
    # 20 images, 6 per half-batch: batches straddle epoch boundaries.
    source, target = drawn_indices(20, 6, seed=5, start_step=0, steps=12)
    for start_step in (1, 3, 7):
        resumed_source, resumed_target = drawn_indices(20, 6, seed=5, start_step=start_step,
                                                       steps=12 - start_step)
        np.testing.assert_array_equal(resumed_source, source[start_step:])
        np.testing.assert_array_equal(resumed_target, target[start_step:])


@pytest.mark.parametrize("other_seed", [6, 7])
def test_the_seed_changes_the_order(other_seed):
    assert not np.array_equal(drawn_indices(20, 5, seed=5, start_step=0, steps=4)[0],
                              drawn_indices(20, 5, seed=other_seed, start_step=0, steps=4)[0])


def test_evaluation_covers_each_image_once_in_order():
    batches = list(pipeline.evaluation_dataset(indexed_domain(25, False), 10, PIXEL_MEAN))
    assert [int(labels.shape[0]) for _, labels in batches] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([labels for _, labels in batches]), np.arange(25))


def test_the_source_and_target_orders_are_independent_of_each_other_and_of_the_next_seed():
    # MNIST-M image i is made from MNIST digit i: were the target order of seed k
    # the source order of seed k + 1, two seeds would see the same digits in step.
    source, target = drawn_indices(24, 6, seed=5, start_step=0, steps=4)
    next_source, next_target = drawn_indices(24, 6, seed=6, start_step=0, steps=4)
    for first, second in ((target, next_source), (source, next_target), (source, target)):
        assert np.mean(first == second) < 0.5


def test_random_colours_move_each_image_between_its_background_and_stroke_colour():
    # Pixel 0 takes the background colour, 255 the stroke colour, 51 a fifth of the way.
    images = np.zeros((64, 28, 28, 3), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = 255, 51
    coloured = pipeline.random_colours(images, tf.constant([5, 2], tf.int64)).numpy()
    background, stroke = coloured[:, 1, 1], coloured[:, 0, 0]
    np.testing.assert_allclose(coloured[:, 5, 9], background)
    np.testing.assert_allclose(coloured[:, 0, 1], background + 0.2 * (stroke - background),
                               atol=1e-3)
    for colours in (background, stroke):
        assert colours.min() >= 0 and colours.max() <= 255
        # Each image and each channel draws its own colour.
        assert len(np.unique(colours)) == colours.size
    # About half the digits are darker than their background (binomial(64, 0.5): 20..44 is 99.8%).
    assert 20 <= np.sum(stroke.mean(axis=1) < background.mean(axis=1)) <= 44
    np.testing.assert_array_equal(
        pipeline.random_colours(images, tf.constant([5, 2], tf.int64)).numpy(), coloured)


def coloured_batches(start_step, steps, colour_source=True):
    stream = pipeline.training_dataset(indexed_domain(24, True), indexed_domain(24, False), 6,
                                       PIXEL_MEAN, seed=1, start_step=start_step,
                                       colour_source=colour_source)
    return [[tensor.numpy() for tensor in batch] for batch in itertools.islice(stream, steps)]


def test_coloured_source_batches_depend_on_the_step_alone_and_leave_the_target_alone():
    uninterrupted, resumed = coloured_batches(0, 6), coloured_batches(4, 2)
    grey = coloured_batches(0, 6, colour_source=False)
    for expected, batch in zip(uninterrupted[4:], resumed):
        for expected_tensor, tensor in zip(expected, batch):
            np.testing.assert_array_equal(tensor, expected_tensor)
    for coloured, plain in zip(uninterrupted, grey):
        np.testing.assert_array_equal(coloured[1], plain[1])  # Same source images...
        assert not np.allclose(coloured[0], plain[0])  # ...in other colours,
        np.testing.assert_array_equal(coloured[2], plain[2])  # and the same target batch.


def test_the_colours_change_from_one_step_to_the_next():
    # Every source image is the same digit, so two batches differ only by their colours.
    digits = np.zeros((24, 28, 28), np.uint8)
    digits[:, 10:18, 12:16] = 255
    source = pipeline.Domain(digits, np.zeros(24), is_mnist=True)
    stream = pipeline.training_dataset(source, indexed_domain(24, False), 6, PIXEL_MEAN, seed=1,
                                       colour_source=True)
    first, second = [batch[0].numpy() for batch in itertools.islice(stream, 2)]
    assert not np.allclose(first, second)
