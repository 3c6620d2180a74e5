"""TensorFlow runtime settings: devices and strategy, threads, seeds, determinism, GPU memory growth."""

import os

import keras
import tensorflow as tf

from utils.runtime import distribution


def batch_shards(requested, half_batch, one_replica=True):
    """How many slices of each replica's part of a batch the step computes side by side
    (config.batch_shards); half_batch is the part's number of source images.

    0 picks: 1 with a GPU or with several replicas; on a CPU with 2 or more
    cores, 2 when the half batch splits evenly. Two slices, each computed
    with half of the cores, keep both cores busier than one batch computed
    with all of them: +11% steps/s on 2 cores (docs/performance.md), and
    faster than two replicas on logical CPU devices (docs/distributed.md).
    """
    if requested > 0:
        return requested
    if (not one_replica or tf.config.list_physical_devices("GPU")
            or len(os.sched_getaffinity(0)) < 2):
        return 1
    return 2 if half_batch % 2 == 0 else 1


def configure(seed, deterministic=False, shards=1, cpu_devices=1, strategy="auto", threads=None,
              peer_timeout_seconds=120.0):
    """Lets GPUs grow their memory; splits the CPU into cpu_devices logical devices; sets threads
    for `shards` slices side by side; seeds Python, NumPy and TensorFlow; sets op determinism.
    Returns the tf.distribute strategy to train under (utils/runtime/distribution.py).

    threads: (inter-op, intra-op) thread counts to use instead (0: TensorFlow's
    default), for benchmarks. peer_timeout_seconds bounds a multi_worker wait
    for a peer (utils/runtime/distribution.py). Devices, threads and memory growth must be set
    before TensorFlow first runs an op, so call this before building any
    model; if the runtime has already started (a second run in one process),
    its thread settings stay.
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # The GPU was already initialized by an earlier call in this process.
    distribution.split_cpu(cpu_devices)
    # Replicas on logical CPU devices share TensorFlow's own thread pools,
    # which ran them faster than one inter-op thread a replica (docs/distributed.md).
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
    chosen = distribution.make_strategy(strategy, peer_timeout_seconds)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return chosen


def slices_for(config):
    """The slices each replica computes side by side under `config` (batch_shards picks them):
    picked for one replica unless cpu_devices > 1 or multi_worker make several."""
    one_replica = config.cpu_devices == 1 and config.strategy != "multi_worker"
    return batch_shards(config.batch_shards, config.batch_size // 2, one_replica)


def configure_for(config, threads=None):
    """configure() with a Config's seed, determinism, slices, CPU devices, strategy and peer timeout.

    Returns (the tf.distribute strategy, the slice count) that
    utils/training/trainer.Trainer takes.
    """
    slices = slices_for(config)
    strategy = configure(config.seed, config.deterministic, slices, config.cpu_devices, config.strategy,
                         threads, config.peer_timeout_seconds)
    return strategy, slices
