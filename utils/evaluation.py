"""Measuring a trained run: loading it, confusion matrices, domain accuracy and features.

Counts are summed over batches and divided once at the end, so a short last
batch weighs exactly as much as its images (no mean of per-batch means).
Images go in as raw pixels 0..255, converted to float32 one batch at a
time: the exported classifier normalises them itself. Exports from before
image folders return the logits alone; newer ones a dict with "logits",
"probabilities" and "class_name" (model/networks.DANN.classifier).
"""

import dataclasses
import json
import os
import zipfile

import keras
import numpy as np
import tensorflow as tf

from config import Config
from model import DANN
from utils import pipeline, schedules
from utils.mnistm import load_mnistm, pixel_mean
from utils.sources import DataError, load_mnist

BATCH_SIZE = 1000
EXPORT_NAME = "classifier.keras"  # What train.py writes into checkpoints/<run>/.


class ModelError(ValueError):
    """A model path that cannot be evaluated: the message says what to do."""


@dataclasses.dataclass
class TrainedRun:
    """A run's exported classifier, its config and, from a checkpoint, its domain classifier."""

    name: str
    classifier: keras.Model
    config: Config
    config_path: str  # Empty when no config.json was found and Config() defaults apply.
    domain_networks: DANN = None  # None when only a .keras file was given.
    domain_note: str = ""  # Why domain_networks is None.
    # The step of the checkpoint the classifier was built from, when the folder holds no export yet.
    checkpoint_step: int = None

    @property
    def class_names(self):
        return class_names(self.classifier)

    @property
    def image_shape(self):
        return tuple(self.classifier.input_shape[1:])


def load_run(path, config_path="", training_pixel_mean=None):
    """Loads a .keras export, or a checkpoint folder holding classifier.keras and tf.train checkpoints.

    The run's config.json is `config_path` when given, else the first found
    of FOLDER/config.json and logs/<run>/config.json beside the checkpoints
    folder; without one, Config() defaults apply. A checkpoint folder also
    gives the domain classifier, restored from its latest checkpoint.

    A checkpoint folder without classifier.keras (a run still training, or
    stopped) gives the classifier of its latest checkpoint when
    `training_pixel_mean` is given: a function of the run's Config that
    returns the pixel mean the run normalised with, which checkpoints do not
    hold (mnist_training_pixel_mean). run.checkpoint_step then says which step it is.
    """
    if os.path.isdir(path):
        return load_checkpoint_folder(path, config_path, training_pixel_mean)
    if not os.path.isfile(path):
        raise ModelError(f"Model '{path}' does not exist. Pass a .keras file written by train.py, "
                         f"or a checkpoint folder such as checkpoints/<run> that holds {EXPORT_NAME}.")
    config_path = config_path or find_config(os.path.dirname(os.path.abspath(path)))
    config = read_config(config_path) if config_path else Config()
    return TrainedRun(run_name(path), load_classifier(path), config, config_path,
                      domain_note=("unavailable: the domain classifier is not in the .keras export; "
                                   "pass the run's checkpoint folder instead"))


def load_checkpoint_folder(folder, config_path, training_pixel_mean):
    """load_run for a checkpoint folder: its export, or the classifier of its latest checkpoint."""
    classifier_path = os.path.join(folder, EXPORT_NAME)
    checkpoint_path = tf.train.latest_checkpoint(folder)
    has_export = os.path.isfile(classifier_path)
    if not has_export and (checkpoint_path is None or training_pixel_mean is None):
        raise ModelError(f"'{folder}' holds no {EXPORT_NAME}: train.py writes it when a run "
                         "finishes. Finish the run, or pass the .keras file itself."
                         + ("" if checkpoint_path is None else
                            " evaluate.py measures its latest checkpoint on MNIST and MNIST-M."))
    config_path = config_path or find_config(os.path.abspath(folder))
    config = read_config(config_path) if config_path else Config()
    run = TrainedRun(run_name(folder), None, config, config_path)
    if checkpoint_path is None:
        run.domain_note = f"unavailable: no tf.train checkpoint in '{folder}'"
    else:
        run.domain_networks = restore_networks(checkpoint_path, config)
    if has_export:
        run.classifier = load_classifier(classifier_path)
    else:
        run.classifier = run.domain_networks.classifier(training_pixel_mean(config))
        run.checkpoint_step = checkpoint_step(checkpoint_path)
    return run


def checkpoint_step(checkpoint_path):
    """The step of a train.py checkpoint, which names its checkpoints ckpt-<step>."""
    return int(checkpoint_path.rsplit("-", 1)[-1])


def run_name(path):
    """checkpoints/<run> and checkpoints/<run>/classifier.keras -> <run>; other .keras files -> their stem."""
    absolute = os.path.abspath(path)
    if os.path.basename(absolute) == EXPORT_NAME:
        absolute = os.path.dirname(absolute)
    return os.path.basename(absolute).removesuffix(".keras")


def find_config(folder):
    """The run's config.json for an absolute model folder, or "" when there is none."""
    # train.py writes config.json to <log_dir>/<run>/, and by default log_dir
    # "logs" sits beside checkpoint_dir "checkpoints".
    candidates = (os.path.join(folder, "config.json"),
                  os.path.join(os.path.dirname(folder), os.pardir, "logs", os.path.basename(folder),
                               "config.json"))
    return next((os.path.normpath(path) for path in candidates if os.path.isfile(path)), "")


def read_config(path):
    """Config from a config.json that train.py wrote."""
    try:
        with open(path, encoding="utf-8") as stream:
            saved = json.load(stream)
        # Keys that config.py no longer has are dropped, so runs from older
        # versions still evaluate; values are still checked by Config itself.
        known = {field.name for field in dataclasses.fields(Config)}
        return Config(**{key: value for key, value in saved.items() if key in known})
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise ModelError(f"Cannot read the run's config '{path}' ({error}). Pass --config with the "
                         "config.json from the run's log folder.") from error


def load_classifier(path):
    """Loads a classifier exported by train.py, checking it maps (N, size, size, 1 or 3) pixels to logits."""
    try:
        classifier = keras.models.load_model(path)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as error:
        raise ModelError(f"Cannot load '{path}' as a Keras model ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}). Pass a .keras file "
                         "written by train.py.") from error
    input_shape = classifier.input_shape
    is_export = (isinstance(input_shape, tuple) and len(input_shape) == 4 and input_shape[1] == input_shape[2]
                 and input_shape[3] in (1, 3))
    try:
        is_export = is_export and len(class_names(classifier)) == class_count(classifier)
    except (KeyError, TypeError, ValueError, IndexError):
        is_export = False
    if not is_export:
        raise ModelError(f"'{path}' maps {classifier.input_shape} to {classifier.output_shape}, not "
                         "(N, size, size, 1 or 3) pixels to one logit per class. Pass a classifier "
                         "exported by train.py.")
    return classifier


def class_count(classifier):
    """The number of logits of the export's label classifier."""
    return int(classifier.get_layer("label_classifier").output.shape[-1])


def class_names(classifier):
    """The export's class names in label order; the ten digits for an export without them."""
    try:
        return tuple(str(name) for name in classifier.get_layer("class_names").get_vocabulary())
    except ValueError:
        return tuple(str(digit) for digit in range(10))


def predict_logits(classifier, batch):
    """The logits of a float32 pixel batch, from an export with or without the dict of outputs."""
    outputs = classifier(batch, training=False)
    return np.asarray(outputs["logits"] if isinstance(outputs, dict) else outputs)


def restore_networks(checkpoint_path, config):
    """DANN networks built from `config` with the weights of a train.py checkpoint.

    With config.ema_momentum > 0 the weights are the optimizer's moving
    averages, the ones train.py evaluates and exports; otherwise the
    optimizer is skipped.
    """
    networks = DANN(config)
    parts = dict(feature_extractor=networks.feature_extractor, label_classifier=networks.label_classifier,
                 domain_classifier=networks.domain_classifier)
    if config.ema_momentum > 0:
        # The schedule's length does not matter here: only the averages are read.
        parts["optimizer"] = schedules.paper_optimizer(config, total_steps=1)
        parts["optimizer"].build(networks.trainable_variables)
    try:
        tf.train.Checkpoint(**parts).restore(checkpoint_path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise ModelError(f"Cannot restore '{checkpoint_path}' into the networks of its config "
                         f"({str(error).splitlines()[0]}). Pass --config with the run's own config.json.") from error
    if "optimizer" in parts:
        parts["optimizer"].finalize_variable_values(networks.trainable_variables)
    return networks


def require_mnistm(mnistm_path):
    """Raises DataError, saying how to get the file, when MNIST-M is not at `mnistm_path`."""
    if not os.path.isfile(mnistm_path):
        raise DataError(f"MNIST-M not found at '{mnistm_path}'. Build it with "
                        "`python create_mnistm.py`, or point --mnistm at it.")


def mnist_training_pixel_mean(config, mnist_path, mnistm_path):
    """The pixel mean an MNIST -> MNIST-M run normalised with, as train.mnist_data computes it.

    It is the mean over the MNIST train digits the run trained on (without
    its source validation part), as the config fed them, and the MNIST-M
    train images. For load_run's training_pixel_mean; mnist_path "" downloads MNIST.
    """
    if config.uses_folders:
        raise ModelError("The run was trained on image folders and its checkpoint folder holds no "
                         f"{EXPORT_NAME} yet: finish the run, which writes it, then measure it.")
    require_mnistm(mnistm_path)
    mnist_images = load_mnist(mnist_path or None)[0]
    if config.source_validation_fraction:
        # Imported here: utils.reverse_validation imports this module.
        from utils.reverse_validation import validation_split

        training, _ = validation_split(len(mnist_images), config.source_validation_fraction,
                                       config.held_out_seed)
        mnist_images = mnist_images[training]
    mean = pixel_mean(mnist_images, load_mnistm(mnistm_path)["x_train"], binarize_source=config.binarize_source,
                      colour_source=config.colour_source)
    return [float(value) for value in mean]


def load_test_sets(mnist_path, mnistm_path, binarize_source, mnistm_train=False):
    """{"mnist": (images, labels), "mnistm": (images, labels)}: both test sets as uint8 RGB, as training saw them.

    The export normalises pixels itself, but the grey-to-RGB step (and the
    binarisation the run was trained with) happens outside it, so it is done here.
    mnistm_train adds "mnistm_train": the MNIST-M train images and labels.
    mnist_path "" downloads MNIST. Raises DataError when a file is missing or damaged.
    """
    require_mnistm(mnistm_path)
    _, _, mnist_images, mnist_labels = load_mnist(mnist_path or None)
    mnistm = load_mnistm(mnistm_path)
    test_sets = {"mnist": (pipeline.source_to_rgb(mnist_images, binarize=binarize_source).numpy(), mnist_labels),
                 "mnistm": (mnistm["x_test"], mnistm["y_test"])}
    if mnistm_train:
        test_sets["mnistm_train"] = (mnistm["x_train"], mnistm["y_train"])
    return test_sets


def float_batches(images, batch_size=BATCH_SIZE):
    """Yields (start, float32 batch) over uint8 images, converting one batch at a time."""
    for start in range(0, len(images), batch_size):
        yield start, np.asarray(images[start:start + batch_size], np.float32)


def confusion_matrix(classifier, images, labels, batch_size=BATCH_SIZE):
    """(classes, classes) int64 counts, rows the true class, columns the predicted one, summed over batches."""
    confusion = None
    for start, batch in float_batches(images, batch_size):
        logits = predict_logits(classifier, batch)
        classes = logits.shape[-1]
        if confusion is None:
            confusion = np.zeros((classes, classes), np.int64)
        truth = np.asarray(labels[start:start + len(batch)], np.int64)
        confusion += np.bincount(truth * classes + np.argmax(logits, axis=-1),
                                 minlength=classes ** 2).reshape(classes, classes)
    if confusion is None:  # No images: the export says how many classes.
        confusion = np.zeros((class_count(classifier),) * 2, np.int64)
    return confusion


def accuracy(confusion):
    """Correct over seen: the trace over the total of a confusion matrix."""
    return float(np.trace(confusion) / max(confusion.sum(), 1))


def per_class_accuracy(confusion):
    """Accuracy per true class; None for a class with no test images."""
    seen = confusion.sum(axis=1)
    return [float(confusion[digit, digit] / seen[digit]) if seen[digit] else None
            for digit in range(len(confusion))]


def domain_accuracy(run, source_images, target_images, batch_size=BATCH_SIZE):
    """The domain classifier's accuracy on source (domain 0) and target (domain 1) images.

    Returns {"source": ..., "target": ..., "overall": ...}; overall is correct
    over seen on both sets together, as train.py's val/domain_acc.
    """
    features = feature_function(run.classifier, run.domain_networks.feature_extractor)
    correct, seen = [], []
    for domain, images in enumerate((source_images, target_images)):
        hits = 0
        for _, batch in float_batches(images, batch_size):
            logits = run.domain_networks.domain_classifier(features(batch), training=False)
            hits += int(np.sum(np.argmax(np.asarray(logits), axis=-1) == domain))
        correct.append(hits)
        seen.append(len(images))
    return {"source": correct[0] / max(seen[0], 1), "target": correct[1] / max(seen[1], 1),
            "overall": sum(correct) / max(sum(seen), 1)}


def feature_function(classifier, feature_extractor=None):
    """pixels -> features: the export's own normalisation, then `feature_extractor` (default: the export's)."""
    try:
        normalise = classifier.get_layer("normalise")
        feature_extractor = feature_extractor or classifier.get_layer("feature_extractor")
    except ValueError as error:
        raise ModelError(f"'{classifier.name}' has no 'normalise' or 'feature_extractor' layer: "
                         "pass a classifier exported by train.py.") from error
    return lambda pixels: feature_extractor(normalise(pixels), training=False)


def extract_features(classifier, images, batch_size=BATCH_SIZE):
    """(N, feature size) float32 outputs of the export's feature extractor, the features DANN aligns."""
    features = feature_function(classifier)
    return np.concatenate([np.asarray(features(batch)) for _, batch in float_batches(images, batch_size)])


def tsne_embedding(features, seed=0, perplexity=30.0, threads=None):
    """2-D t-SNE of `features` (scikit-learn), after PCA to at most 50 dimensions.

    The PCA step is the usual one before t-SNE: it removes noise dimensions
    and makes the neighbour search several times faster. threads caps the
    OpenMP and BLAS threads (None: all cores); on a machine shared with
    other jobs, 1 avoids threads spinning while they wait for a core.
    """
    # Imported here: only the t-SNE figure needs scikit-learn.
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    # t-SNE needs perplexity < number of points; tiny samples get a smaller one.
    perplexity = min(perplexity, (len(features) - 1) / 3)
    with threadpool_limits(limits=threads):
        reduced = PCA(n_components=min(50, *features.shape), random_state=seed).fit_transform(features)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                    random_state=seed).fit_transform(reduced)
