"""Figures saved as PNG files.

matplotlib's Figure is used directly rather than pyplot, so plotting needs no
display and keeps no global state between calls.
"""

import collections

import numpy as np
from matplotlib.figure import Figure

TILE_GAP = 2  # Pixels between a digit and its MNIST-M version.
PAIR_GAP = 6  # Pixels between pairs, so each pair reads as one unit.
DOMAIN_COLORS = ("tab:blue", "tab:red")  # Source (MNIST), target (MNIST-M), in every figure.

# One panel of a training-curve figure: the TensorBoard tags it draws, with their legend labels.
Panel = collections.namedtuple("Panel", ["title", "y_label", "lines", "chance"], defaults=[None])
CURVE_FIGURES = {
    "schedule": ("Schedules", [
        Panel("learning rate", "learning rate", [("schedule/learning_rate", "learning rate")]),
        Panel("GRL lambda", "lambda", [("schedule/lambda", "lambda")]),
    ]),
    "accuracy": ("Accuracy", [
        # Training logs the half its label loss uses: source, or target in target_only.
        Panel("label accuracy", "accuracy", [("train/source_acc", "train, source (MNIST)"),
                                             ("train/target_acc", "train, target (MNIST-M)"),
                                             ("val/source_acc", "test, source (MNIST)"),
                                             ("val/target_acc", "test, target (MNIST-M)")]),
        # At the adversarial equilibrium the domain classifier is at chance, 0.5.
        Panel("domain accuracy", "accuracy", [("train/domain_acc", "train"), ("val/domain_acc", "test")],
              chance=0.5),
    ]),
    "loss": ("Training losses", [
        Panel("losses", "cross-entropy", [("train/label_loss", "label"), ("train/domain_loss", "domain"),
                                          ("train/total_loss", "total")]),
    ]),
}


def save_mnistm_preview(path, mnist_images, mnistm_images, rows=8, columns=8):
    """Saves a PNG grid of rows x columns pairs: an MNIST digit (gray) beside its MNIST-M version.

    mnist_images: (N, 28, 28) uint8; mnistm_images: (N, 28, 28, 3) uint8,
    the same digits in the same order. Uses the first rows * columns pairs.
    """
    count = min(rows * columns, len(mnist_images))
    rows = -(-count // columns)  # Fewer rows when there are fewer images than the grid holds.
    gray_as_rgb = np.repeat(mnist_images[:count, :, :, None], 3, axis=3)
    spacer = np.full((count, 28, TILE_GAP, 3), 255, np.uint8)
    pairs = np.concatenate([gray_as_rgb, spacer, mnistm_images[:count]], axis=2)
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


def save_training_curves(path, scalars, figure_name, run_name):
    """Saves one figure of CURVE_FIGURES ("schedule", "accuracy" or "loss") against the step.

    scalars: {tag: [(step, value), ...]} as utils.summaries.read_scalars returns.
    A tag the run did not log is left out of its panel, with a note.
    """
    title, panels = CURVE_FIGURES[figure_name]
    figure = Figure(figsize=(5 * len(panels), 3.8), dpi=100, layout="constrained")
    for axes, panel in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        drawn = [(tag, label) for tag, label in panel.lines if scalars.get(tag)]
        for tag, label in drawn:
            steps, values = zip(*scalars[tag])
            axes.plot(steps, values, label=label, linewidth=1.5, marker="." if len(steps) < 30 else None)
        if panel.chance is not None:
            axes.axhline(panel.chance, color="gray", linestyle="--", linewidth=1, label="chance")
        if not drawn:
            axes.text(0.5, 0.5, "not logged", transform=axes.transAxes, ha="center", color="gray")
        axes.set(title=panel.title, xlabel="step", ylabel=panel.y_label)
        axes.grid(alpha=0.3)
        if (drawn and len(panel.lines) > 1) or panel.chance is not None:
            axes.legend(fontsize=8)
    figure.suptitle(f"{title}: {run_name}")
    figure.savefig(path, format="png")


def save_confusion_matrix(path, confusion, title, class_names=None):
    """Saves a confusion matrix: rows the true class, color the fraction of that row.

    class_names label the axes; without them, the rows are the digits 0-9.
    """
    seen = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fractions = confusion / seen
    size = max(5.0, 0.35 * len(confusion))
    figure = Figure(figsize=(size + 0.6, size), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(confusion):
        if count:
            axes.text(column, row, str(count), ha="center", va="center", fontsize=7,
                      color="white" if fractions[row, column] > 0.5 else "black")
    positions = range(len(confusion))
    kind = "class" if class_names else "digit"
    axes.set(xticks=positions, yticks=positions, xlabel=f"predicted {kind}", ylabel=f"true {kind}")
    if class_names:
        axes.set_xticklabels(class_names, rotation=90)
        axes.set_yticklabels(class_names)
    accuracy = np.trace(confusion) / max(confusion.sum(), 1)
    axes.set_title(f"{title}\naccuracy {accuracy:.4f} on {confusion.sum()} images", fontsize=10)
    figure.colorbar(image, ax=axes, label=f"fraction of the true {kind}'s images", shrink=0.8)
    figure.savefig(path, format="png")


def save_tsne(path, panels, domain_names=("MNIST", "MNIST-M")):
    """Saves side-by-side t-SNE scatter plots colored by domain.

    panels: [(title, embedding (N, 2), domain index (N,) with 0 = source, 1 = target)].
    """
    figure = Figure(figsize=(5 * len(panels), 5.2), dpi=100, layout="constrained")
    for axes, (title, embedding, domains) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for domain, (name, color) in enumerate(zip(domain_names, DOMAIN_COLORS)):
            points = embedding[domains == domain]
            axes.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5, color=color, linewidths=0,
                         label=f"{name} ({len(points)})")
        axes.set_title(title)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.legend(markerscale=3, fontsize=8, loc="upper right")
    figure.suptitle("t-SNE of the feature extractor's outputs on test images")
    figure.savefig(path, format="png")
