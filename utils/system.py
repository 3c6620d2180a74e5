"""TensorFlow runtime settings: seeds, determinism, GPU memory growth."""

import keras
import tensorflow as tf


def configure(seed, deterministic=False):
    """Seeds Python, NumPy and TensorFlow; sets op determinism; lets GPUs grow their memory.

    Memory growth must be set before a GPU is first used, so call this before
    building any model. On a CPU-only machine the GPU loop does nothing.
    """
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # The GPU was already initialised by an earlier call in this process.
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
