"""Figures saved as PNG files.

matplotlib's Figure is used directly rather than pyplot, so plotting needs no
display and keeps no global state between calls.
"""

import numpy as np
from matplotlib.figure import Figure

TILE_GAP = 2  # Pixels between a digit and its MNIST-M version.
PAIR_GAP = 6  # Pixels between pairs, so each pair reads as one unit.


def save_mnistm_preview(path, mnist_images, mnistm_images, rows=8, columns=8):
    """Saves a PNG grid of rows x columns pairs: an MNIST digit (grey) beside its MNIST-M version.

    mnist_images: (N, 28, 28) uint8; mnistm_images: (N, 28, 28, 3) uint8,
    the same digits in the same order. Uses the first rows * columns pairs.
    """
    count = min(rows * columns, len(mnist_images))
    rows = -(-count // columns)  # Fewer rows when there are fewer images than the grid holds.
    grey_as_rgb = np.repeat(mnist_images[:count, :, :, None], 3, axis=3)
    spacer = np.full((count, 28, TILE_GAP, 3), 255, np.uint8)
    pairs = np.concatenate([grey_as_rgb, spacer, mnistm_images[:count]], axis=2)
    mosaic = _grid(pairs, rows, columns, gap=PAIR_GAP)

    inches_per_pixel = 3 / 100  # Three screen pixels per image pixel at dpi=100.
    image_width, image_height = mosaic.shape[1] * inches_per_pixel, mosaic.shape[0] * inches_per_pixel
    title_height = 0.4
    figure = Figure(figsize=(image_width, image_height + title_height), dpi=100)
    axes = figure.add_axes((0, 0, 1, image_height / (image_height + title_height)))
    axes.imshow(mosaic, interpolation="nearest")
    axes.set_axis_off()
    figure.suptitle("MNIST (left of each pair) and its MNIST-M version (right)", fontsize=10, y=0.99)
    figure.savefig(path, format="png")


def _grid(tiles, rows, columns, gap):
    """Lays (N, H, W, 3) tiles out row by row on a white canvas, with `gap` pixels around each."""
    _, height, width, _ = tiles.shape
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        top = gap + (index // columns) * (height + gap)
        left = gap + (index % columns) * (width + gap)
        canvas[top:top + height, left:left + width] = tile
    return canvas
