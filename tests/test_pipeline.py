"""utils/data/pipeline.py: per-batch conversion and the step-addressable training stream."""

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


def test_source_to_rgb_repeats_the_gray_channel_and_can_binarize():
    gray = np.array([[0, 1, 128, 255]], np.uint8).reshape(1, 1, 4)
    np.testing.assert_array_equal(pipeline.source_to_rgb(gray, binarize=False).numpy()[0, 0],
                                  [[0] * 3, [1] * 3, [128] * 3, [255] * 3])
    np.testing.assert_array_equal(pipeline.source_to_rgb(gray, binarize=True).numpy()[0, 0],
                                  [[0] * 3, [255] * 3, [255] * 3, [255] * 3])


def test_normalize_subtracts_the_pixel_mean_and_divides_by_255():
    images = np.full((1, 2, 2, 3), 200, np.uint8)
    expected = (200.0 - np.array(PIXEL_MEAN)) / 255.0
    np.testing.assert_allclose(pipeline.normalize(images, PIXEL_MEAN).numpy()[0, 0, 0], expected,
                               rtol=1e-6)


def test_training_batches_are_normalized_rgb_floats():
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


def test_random_colors_move_each_image_between_its_background_and_stroke_color():
    # Pixel 0 takes the background color, 255 the stroke color, 51 a fifth of the way.
    images = np.zeros((64, 28, 28, 3), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = 255, 51
    colored = pipeline.random_colors(images, tf.constant([5, 2], tf.int64)).numpy()
    background, stroke = colored[:, 1, 1], colored[:, 0, 0]
    np.testing.assert_allclose(colored[:, 5, 9], background)
    np.testing.assert_allclose(colored[:, 0, 1], background + 0.2 * (stroke - background),
                               atol=1e-3)
    for colors in (background, stroke):
        assert colors.min() >= 0 and colors.max() <= 255
        # Each image and each channel draws its own color.
        assert len(np.unique(colors)) == colors.size
    # About half the digits are darker than their background (binomial(64, 0.5): 20..44 is 99.8%).
    assert 20 <= np.sum(stroke.mean(axis=1) < background.mean(axis=1)) <= 44
    np.testing.assert_array_equal(
        pipeline.random_colors(images, tf.constant([5, 2], tf.int64)).numpy(), colored)


def colored_batches(start_step, steps, color_source=True):
    stream = pipeline.training_dataset(indexed_domain(24, True), indexed_domain(24, False), 6,
                                       PIXEL_MEAN, seed=1, start_step=start_step,
                                       color_source=color_source)
    return [[tensor.numpy() for tensor in batch] for batch in itertools.islice(stream, steps)]


def test_colored_source_batches_depend_on_the_step_alone_and_leave_the_target_alone():
    uninterrupted, resumed = colored_batches(0, 6), colored_batches(4, 2)
    gray = colored_batches(0, 6, color_source=False)
    for expected, batch in zip(uninterrupted[4:], resumed):
        for expected_tensor, tensor in zip(expected, batch):
            np.testing.assert_array_equal(tensor, expected_tensor)
    for colored, plain in zip(uninterrupted, gray):
        np.testing.assert_array_equal(colored[1], plain[1])  # Same source images...
        assert not np.allclose(colored[0], plain[0])  # ...in other colors,
        np.testing.assert_array_equal(colored[2], plain[2])  # and the same target batch.


def test_the_colors_change_from_one_step_to_the_next():
    # Every source image is the same digit, so two batches differ only by their colors.
    digits = np.zeros((24, 28, 28), np.uint8)
    digits[:, 10:18, 12:16] = 255
    source = pipeline.Domain(digits, np.zeros(24), is_mnist=True)
    stream = pipeline.training_dataset(source, indexed_domain(24, False), 6, PIXEL_MEAN, seed=1,
                                       color_source=True)
    first, second = [batch[0].numpy() for batch in itertools.islice(stream, 2)]
    assert not np.allclose(first, second)
