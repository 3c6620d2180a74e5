"""TensorFlow runtime settings: devices and strategy, threads, seeds, determinism, GPU memory growth."""

import os

import keras
import tensorflow as tf

from utils import distribution


def cpu_devices(requested, half_batch, strategy="auto"):
    """How many logical devices the CPU is split into (config.cpu_devices).

    0 picks 2 on a CPU with 2 or more cores and no GPU, when the half batch
    splits evenly, so that `python train.py` trains two replicas side by side
    under MirroredStrategy (measured faster than one device on 2 cores:
    docs/distributed.md); else 1. MultiWorkerMirroredStrategy trains one
    replica per CPU, so multi_worker picks 1 too.
    """
    if requested > 0:
        return requested
    if (strategy == "multi_worker" or tf.config.list_physical_devices("GPU")
            or len(os.sched_getaffinity(0)) < 2):
        return 1
    return 2 if half_batch % 2 == 0 else 1


def configure(seed, deterministic=False, cpu_devices=1, strategy="auto", threads=None,
              devices_required=True):
    """Lets GPUs grow their memory; splits the CPU into cpu_devices logical devices; seeds
    Python, NumPy and TensorFlow; sets op determinism. Returns the tf.distribute strategy to
    train under (utils/distribution.py).

    threads: (inter-op, intra-op) thread counts to use instead (0: TensorFlow's
    default), for benchmarks. devices_required: False when cpu_devices was
    picked automatically, so a second run in one process keeps the devices
    it finds instead of stopping. Devices, threads and memory growth must be set before TensorFlow first
    runs an op, so call this before building any model; if the runtime has
    already started (a second run in one process), its thread settings stay.
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # The GPU was already initialised by an earlier call in this process.
    distribution.split_cpu(cpu_devices, devices_required)
    # TensorFlow's own thread pools by default: the replicas on logical CPU
    # devices share them, and ran faster with them than with one inter-op
    # thread a replica (docs/distributed.md).
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
    """configure() with a Config's seed, determinism, CPU devices and strategy."""
    return configure(config.seed, config.deterministic,
                     cpu_devices(config.cpu_devices, config.batch_size // 2, config.strategy),
                     config.strategy, threads, devices_required=config.cpu_devices > 0)
