"""A trained classifier on image folders: accuracy on a labelled folder, predictions for any folder.

Images are decoded and resized as in training (utils/data/image_files.py), to
the export's own input size, and fed as raw pixels: the export normalizes
them itself. Both read the folder batch by batch, so a folder of any size
fits in memory (a size too large for even one batch of images is refused
before decoding), and both refuse the whole folder when one image cannot be
decoded, naming it.
"""

import csv
import os

import numpy as np
import tensorflow as tf

from utils.data import folders
from utils.data.image_files import check_all_decoded, check_decoding_fits, decoded_batches
from utils.errors import DataError
from utils.evaluation import metrics
from utils.evaluation import trained_run

# The export fixes the image size, so only the machine can change.
MEMORY_REMEDY = "the export takes images of this size; free memory, or evaluate on a machine with more."


def labelled_folder_confusion(run, folder):
    """The confusion matrix of `run` on a folder laid out in class subfolders named as the run's classes."""
    images = folders.scan_target(folder, run.class_names, "--target_dir", test=True)
    if not images.labelled:
        raise DataError(f"--target_dir '{folder}' has no class subfolders, so no labels to measure "
                        "accuracy with. Use --predict for a folder of unlabelled images.")
    check_decoding_fits(run.image_shape, MEMORY_REMEDY)
    classes = len(run.class_names)
    confusion = np.zeros((classes, classes), np.int64)
    decoded = np.zeros(len(images), bool)
    for indices, batch in decoded_batches(images.paths, run.image_shape):
        decoded[indices] = True
        confusion += metrics.confusion_matrix(run.classifier, batch, images.labels[indices])
    check_all_decoded(images.paths, decoded)
    return confusion


def predict_folder(run, folder):
    """(relative paths, predicted class names, probabilities (N, classes)) for every image below `folder`."""
    if not os.path.isdir(folder):
        raise DataError(f"--predict '{folder}' is not a folder. Check the path.")
    paths = folders.images_under(folder, "--predict")
    if not paths:
        raise DataError(f"--predict '{folder}' holds no images ({', '.join(folders.IMAGE_EXTENSIONS)}).")
    check_decoding_fits(run.image_shape, MEMORY_REMEDY)
    probabilities = np.zeros((len(paths), len(run.class_names)), np.float32)
    decoded = np.zeros(len(paths), bool)
    for indices, batch in decoded_batches(paths, run.image_shape):
        decoded[indices] = True
        logits = trained_run.predict_logits(run.classifier, batch.astype(np.float32))
        probabilities[indices] = tf.nn.softmax(logits).numpy()
    check_all_decoded(paths, decoded)
    names = [run.class_names[index] for index in probabilities.argmax(axis=1)]
    relative = [os.path.relpath(path, folder) for path in paths]
    return relative, names, probabilities


def write_predictions(path, relative_paths, names, probabilities, class_names):
    """Writes the CSV: path, predicted_class, then one probability column per class, in label order."""
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "predicted_class", *(f"probability_{name}" for name in class_names)])
        for relative, name, row in zip(relative_paths, names, probabilities):
            writer.writerow([relative, name, *(f"{value:.6f}" for value in row)])
