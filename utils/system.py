"""TensorFlow runtime settings: devices and strategy, threads, seeds, determinism, GPU memory growth."""

import os

import keras
import tensorflow as tf

from utils import distribution


def batch_shards(requested, half_batch):
    """How many slices of each batch train.py computes side by side (config.batch_shards).

    0 picks: 1 with a GPU; on a CPU with 2 or more cores, 2 when the half
    batch splits evenly. Two slices, each computed with half of the cores,
    keep both cores busier than one batch computed with all of them: measured
    here at +11% steps/s on 2 cores (README, "Performance").
    """
    if requested > 0:
        return requested
    if tf.config.list_physical_devices("GPU") or len(os.sched_getaffinity(0)) < 2:
        return 1
    return 2 if half_batch % 2 == 0 else 1


def configure(seed, deterministic=False, shards=1, cpu_devices=1, strategy="auto", threads=None):
    """Lets GPUs grow their memory; splits the CPU into cpu_devices logical devices; sets threads
    for the slices and replicas that run side by side; seeds Python, NumPy and TensorFlow; sets
    op determinism. Returns the tf.distribute strategy to train under (utils/distribution.py).

    threads: (inter-op, intra-op) thread counts to use instead (0: TensorFlow's
    default), for benchmarks. Devices, threads and memory growth must be set before TensorFlow first
    runs an op, so call this before building any model; if the runtime has
    already started (a second run in one process), its thread settings stay.
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # The GPU was already initialised by an earlier call in this process.
    distribution.split_cpu(cpu_devices)
    # Replicas on logical CPU devices run side by side, as slices do.
    shards *= 1 if gpus else cpu_devices
    if shards > 1 and not gpus and threads is None:
        # One slice per inter-op thread, each op of a slice on its share of the cores.
        threads = (shards, max(1, len(os.sched_getaffinity(0)) // shards))
    if threads is not None:
        try:
            tf.config.threading.set_inter_op_parallelism_threads(threads[0])
            tf.config.threading.set_intra_op_parallelism_threads(threads[1])
        except RuntimeError:
            pass  # The runtime has started: threads can no longer change.
    # Before any op runs: MultiWorkerMirroredStrategy configures the runtime's collectives.
    chosen = distribution.make_strategy(strategy)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return chosen


def configure_for(config, threads=None):
    """configure() with a Config's seed, determinism, batch shards, CPU devices and strategy."""
    return configure(config.seed, config.deterministic,
                     batch_shards(config.batch_shards, config.batch_size // 2),
                     config.cpu_devices, config.strategy, threads)
