"""What a run shows in TensorBoard beside its scalars (summaries.py): its settings in the HParams
and Text dashboards, pictures of the target test set at each evaluation in Images, and its
features in the Projector.

    HParams    the run's settings (HPARAMS) against its final metrics (METRICS): every run of
               a log folder in one table and in parallel coordinates
    Text       config, the settings as a Markdown table; command, the command line that started it
    Images     target/confusion_matrix and target/mistakes (misclassified target test images with
               their true and predicted labels) at each evaluation; inputs/training_batch, source
               and target training images as the networks see them, at the first evaluation
    Projector  at the end, the features of a seeded sample of source and target test images, with
               their domain, label and prediction as metadata

The target labels drawn here serve the display only: nothing reads them to choose anything.
The pictures are drawn with Pillow, a few milliseconds each, so that an evaluation stays cheap.
"""

import os

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api as hparams_api

from utils.files import write_text_atomic
from utils.training.summaries import summary_values

# The settings that tell runs apart, and the final metrics they are compared on.
HPARAMS = ("preset", "mode", "seed", "precision", "learning_rate", "lr_alpha", "lr_beta", "momentum",
           "lambda_gamma", "lambda_max", "domain_loss_weight", "batch_size", "epochs", "color_source",
           "ema_momentum")
METRICS = ("val/target_acc", "val/source_acc", "val/domain_acc", "final/steps", "final/minutes")
# Misclassified target test images drawn at each evaluation, and test images a domain in the projector.
MISTAKES_SHOWN, PROJECTED_PER_DOMAIN = 32, 1000
METADATA_FILE = "metadata.tsv"


def markdown_table(config):
    """The run's settings as a two-column Markdown table."""
    rows = [f"| {name} | {value} |" for name, value in sorted(vars(config).items())]
    return "\n".join(["| setting | value |", "|---|---|", *rows])


def write_settings(writer, config, command):
    """The HParams record and the Text entries, once, at step 0 (a resumed run keeps its own)."""
    values = {name: getattr(config, name) for name in HPARAMS}
    with writer.as_default(step=0):
        hparams_api.hparams_config(
            hparams=[hparams_api.HParam(name) for name in HPARAMS],
            metrics=[hparams_api.Metric(tag, group=None, display_name=tag) for tag in METRICS])
        hparams_api.hparams(values, trial_id=config.name)
        tf.summary.text("config", markdown_table(config))
        tf.summary.text("command", f"`{command}`" if command else "(not started from a command line)")
    writer.flush()


def write_final(writer, final):
    """The HParams metrics that only the end of the run knows."""
    with writer.as_default(step=int(final["steps"])):
        tf.summary.scalar("final/steps", float(final["steps"]))
        tf.summary.scalar("final/minutes", float(final["wall_seconds"]) / 60)
    writer.flush()


def confusion_picture(confusion, class_names, cell=22):
    """(H, W, 3) uint8: the confusion matrix, true classes down, predicted across; each cell's shade
    is its share of its row, and its count is written in it."""
    classes = len(confusion)
    margin = cell * 2
    picture = Image.new("RGB", (margin + classes * cell, margin + classes * cell), "white")
    draw = ImageDraw.Draw(picture)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    draw.text((margin, 2), "predicted", fill="black")
    draw.text((2, margin - 12), "true", fill="black")
    for index, name in enumerate(class_names):
        draw.text((margin + index * cell + 2, cell), str(name)[:3], fill="black")
        draw.text((2, margin + index * cell + 5), str(name)[:6], fill="black")
    for row in range(classes):
        for column in range(classes):
            shade = int(255 * (1 - shares[row, column]))
            box = (margin + column * cell, margin + row * cell, margin + (column + 1) * cell - 1,
                   margin + (row + 1) * cell - 1)
            draw.rectangle(box, fill=(shade, shade, 255))
            draw.text((box[0] + 2, box[1] + 5), str(int(confusion[row, column]))[:4],
                      fill="white" if shade < 128 else "black")
    return np.asarray(picture)


def labelled_grid(images, captions, columns=8, scale=2):
    """(H, W, 3) uint8: uint8 RGB images, each enlarged `scale` times with its caption under it."""
    height, width = images.shape[1] * scale, images.shape[2] * scale
    caption_height = 12
    rows = max(1, -(-len(images) // columns))
    picture = Image.new("RGB", (columns * width, rows * (height + caption_height)), "white")
    draw = ImageDraw.Draw(picture)
    for index, (image, caption) in enumerate(zip(images, captions)):
        left, top = (index % columns) * width, (index // columns) * (height + caption_height)
        picture.paste(Image.fromarray(image).resize((width, height), Image.NEAREST), (left, top))
        draw.text((left + 1, top + height), caption, fill="black")
    return np.asarray(picture)


def displayable(normalized):
    """Normalized float images as uint8 for display: each image stretched to 0..255."""
    images = np.asarray(normalized, np.float32)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return (255 * (images - low) / np.maximum(high - low, 1e-6)).astype(np.uint8)


def write_pictures(writer, step, confusion, class_names, mistakes):
    """The evaluation's pictures of the target test set: its confusion matrix, and its first
    misclassified images ((images uint8, true labels, predictions)), when it has labels."""
    with writer.as_default(step=int(step)):
        tf.summary.image("target/confusion_matrix", confusion_picture(confusion, class_names)[np.newaxis])
        images, labels, predictions = mistakes
        if len(images):
            captions = [f"{class_names[label]}->{class_names[prediction]}"[:12]
                        for label, prediction in zip(labels, predictions)]
            tf.summary.image("target/mistakes", labelled_grid(images, captions)[np.newaxis])
    writer.flush()


def write_inputs(writer, step, source_images, target_images, shown=16):
    """Source and target training images as the networks receive them (after binarizing, the random
    colors and the normalization), stretched for display: one row of each."""
    images = np.concatenate([displayable(source_images[:shown]), displayable(target_images[:shown])])
    captions = ["source"] * min(shown, len(source_images)) + ["target"] * min(shown, len(target_images))
    with writer.as_default(step=int(step)):
        tf.summary.image("inputs/training_batch", labelled_grid(images, captions, columns=shown)[np.newaxis])
    writer.flush()


def write_projector(log_dir, features, metadata):
    """The Projector's embedding, in the run's log folder, where TensorBoard's projector looks:
    the features (N, D) in a checkpoint (embedding.ckpt-1 and its `checkpoint` index, paths
    relative, so that the folder can move), metadata rows ({"domain", "label", "prediction"} each)
    in metadata.tsv, and projector_config.pbtxt."""
    columns = list(metadata[0])
    write_text_atomic(os.path.join(log_dir, METADATA_FILE), "\n".join(
        ["\t".join(columns), *("\t".join(str(row[column]) for column in columns) for row in metadata)]) + "\n")
    embedding = tf.Variable(np.asarray(features, np.float32), name="features")
    tf.train.Checkpoint(embedding=embedding).save(os.path.join(log_dir, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    entry.metadata_path = METADATA_FILE
    projector.visualize_embeddings(log_dir, config)


class Mistakes:
    """Collects the first MISTAKES_SHOWN misclassified images of an evaluation, as uint8 pixels."""

    def __init__(self, pixel_mean):
        self.pixel_mean = np.asarray(pixel_mean, np.float32)
        self.images, self.labels, self.predictions = [], [], []

    def add(self, normalized_images, labels, logits):
        needed = MISTAKES_SHOWN - sum(map(len, self.labels))
        if needed <= 0:
            return
        labels, predictions = np.asarray(labels), np.argmax(np.asarray(logits), axis=1)
        wrong = np.flatnonzero(labels != predictions)[:needed]
        if len(wrong):
            # The inverse of pipeline.normalize: (x - mean) / 255.
            pixels = np.asarray(normalized_images)[wrong] * 255.0 + self.pixel_mean
            self.images.append(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
            self.labels.append(labels[wrong])
            self.predictions.append(predictions[wrong])

    def arrays(self):
        """(images, true labels, predictions), empty arrays when there was no mistake."""
        if not self.labels:
            return np.zeros((0, 1, 1, 3), np.uint8), np.zeros(0, int), np.zeros(0, int)
        return tuple(np.concatenate(parts) for parts in (self.images, self.labels, self.predictions))


def has_settings(log_dir):
    """Whether the run's logs already hold its HParams record (a run started again at step 0)."""
    return any(value.tag == "_hparams_/session_start_info" for _, value in summary_values(log_dir))
