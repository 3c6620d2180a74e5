"""NumPy batches for the baselines: drawn in Python each step, as seed-style loops do."""

import numpy as np


def numpy_batch(images, labels, count, rng, pixel_mean, is_mnist, binarize):
    """`count` random images normalized as utils.pipeline does: RGB, optional binarization, (x - mean) / 255.

    Returns float32 NHWC images and int32 labels.
    """
    indices = rng.integers(0, len(labels), count)
    batch = images[indices]
    if is_mnist:
        if binarize:
            batch = np.where(batch > 0, np.uint8(255), np.uint8(0))
        batch = np.repeat(batch[..., np.newaxis], 3, axis=-1)
    return (batch.astype(np.float32) - pixel_mean) / 255.0, labels[indices].astype(np.int32)
