"""A trained run as evaluation sees it: its exported classifier (or the classifier of its latest
checkpoint), its config, and from a checkpoint its domain classifier.

Exports return a dict with "logits", "probabilities" and "class_name"
(model/networks.Networks.classifier) and normalize raw pixels 0..255 themselves.
"""

import dataclasses
import json
import os
import zipfile

import keras
import numpy as np
import tensorflow as tf

from config import Config, from_saved
from model import Networks
from model.optimizer import moving_averages, paper_optimizer
from utils.errors import ModelError
from utils.runtime import precision

# Images per evaluation batch, in training's evaluations and in evaluate.py.
BATCH_SIZE = 1000
EXPORT_NAME = "classifier.keras"  # What train.py writes into checkpoints/<run>/.


@dataclasses.dataclass
class TrainedRun:
    """A run's exported classifier, its config and, from a checkpoint, its domain classifier."""

    name: str
    classifier: keras.Model
    config: Config
    config_path: str  # Empty when no config.json was found and Config() defaults apply.
    domain_networks: Networks = None  # None when only a .keras file was given.
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
    returns the pixel mean the run normalized with, which checkpoints do not
    hold (utils/data/training_data.mnist_pixel_mean). run.checkpoint_step then says which step it is.
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
            return from_saved(json.load(stream))
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
    """The networks of `config` with the weights of a training checkpoint.

    With config.ema_momentum > 0 these are the optimizer's moving averages,
    the weights training evaluates and exports; otherwise the optimizer is skipped.
    """
    policy = precision.resolve(config.precision)[0]
    networks = Networks(config, policy)
    optimizer = None
    if config.ema_momentum > 0:
        # The schedule's length does not matter here: only the averages are read.
        optimizer = paper_optimizer(config, total_steps=1, loss_scaling=policy == "mixed_float16")
        optimizer.build(networks.trainable_variables)
    try:
        networks.checkpoint(optimizer).restore(checkpoint_path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise ModelError(f"Cannot restore '{checkpoint_path}' into the networks of its config "
                         f"({str(error).splitlines()[0]}). Pass --config with the run's own config.json.") from error
    if optimizer is not None:
        for variable, average in zip(networks.trainable_variables, moving_averages(optimizer)):
            variable.assign(average)
    return networks


def float_batches(images, batch_size=BATCH_SIZE):
    """Yields (start, float32 batch) over uint8 images, converting one batch at a time."""
    for start in range(0, len(images), batch_size):
        yield start, np.asarray(images[start:start + batch_size], np.float32)
