"""The pixel mean that training normalizes with, (x - pixel_mean) / 255 as in the reference code:
the per-channel mean of the source and target train images as training feeds them."""

import numpy as np

# random_colors (utils/data/pipeline.py) draws both colors uniform in 0..255:
# a colored image's mean on every channel.
COLORED_MEAN = 127.5


def fed_sums(images, channels, binarize=False, color=False):
    """(per-channel sums, pixels per channel) of uint8 images as training feeds them.

    binarize: x > 0 counts as 255. color: in random colors, whose mean is
    COLORED_MEAN whatever the image. Gray images without a channel axis
    (MNIST) are repeated over `channels`.
    """
    gray = images.ndim == 3
    count = images.size if gray else images.size // images.shape[-1]
    if color:
        return np.full(channels, COLORED_MEAN * count), count
    if gray:
        total = 255 * np.count_nonzero(images) if binarize else images.sum(dtype=np.int64)
        return np.full(channels, total), count
    if binarize:
        return np.count_nonzero(images.reshape(-1, images.shape[-1]), axis=0) * 255, count
    # Summing whole images first and their channels after is exact in int64
    # and ten times faster than numpy's reduction over axes (0, 1, 2).
    return images.reshape(len(images), -1).sum(axis=0, dtype=np.int64).reshape(-1, channels).sum(axis=0), count


def fed_pixel_mean(*sums_and_counts):
    """The per-channel mean, in 0..255, of the domains' fed_sums taken together."""
    total = sum(sums for sums, _ in sums_and_counts)
    count = sum(count for _, count in sums_and_counts)
    return [float(value) for value in (total / count).astype(np.float32)]
