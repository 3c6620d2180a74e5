"""A run's Config as it trains: its classes read from the source folder, and `precision auto`
resolved to the policy it picks here, which config.json and TensorBoard then record."""

import dataclasses

from utils.data.training_data import folder_classes
from utils.runtime import precision


def resolve_config(config, log=print):
    """The Config with its classes and precision resolved; raises ValueError or a UserError when the
    settings cannot run (image size on MNIST, a precision this hardware lacks)."""
    if config.uses_folders:
        # The networks' number of classes comes from the source folder.
        config = dataclasses.replace(config, class_names=folder_classes(config))
    elif (config.image_size, config.image_channels) != (28, 3):
        raise ValueError("MNIST -> MNIST-M takes 28x28x3 images: --image_size and --image_channels "
                         "apply to image folders (--source_dir, --target_dir).")
    policy, reason = precision.resolve(config.precision)
    precision.check_fits_hardware(policy)
    log(f"precision: {policy} ({reason})")
    return dataclasses.replace(config, precision=policy, precision_reason=reason)
