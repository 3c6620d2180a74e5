"""The tf.distribute strategy a run trains under, and which of its workers writes files.

    strategy auto          one device: TensorFlow's default strategy; several
                           GPUs, or cpu_devices > 1: MirroredStrategy over them
    strategy mirrored      MirroredStrategy over the GPUs, else the logical CPU devices
    strategy multi_worker  MultiWorkerMirroredStrategy over the machines that
                           TF_CONFIG lists (TensorFlow's format: cluster and task)

cpu_devices splits the host CPU into that many logical devices
(tf.config.set_logical_device_configuration), so the mirrored path runs on a
machine without a GPU. Both must be set before TensorFlow's runtime starts:
utils/system.configure_for calls split_cpu and make_strategy before any model
is built.

As in TensorFlow's multi-worker guide, every worker saves checkpoints (a save
may need all workers), but only the chief's land in the run's folder; the
others save to a temporary folder of their own and delete it.
"""

import contextlib
import json
import os
import shutil

import tensorflow as tf




def split_cpu(cpu_devices):
    """Splits the first physical CPU into cpu_devices logical devices (1: leaves it whole).

    Once TensorFlow's runtime has started (a second run in one process), the
    devices can no longer change: an error, unless they are already split so.
    """
    if cpu_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
    except RuntimeError as error:
        if len(tf.config.list_logical_devices("CPU")) == cpu_devices:
            return
        raise DistributionError(f"cpu_devices {cpu_devices}: TensorFlow's runtime has already started "
                                "in this process, so its CPU can no longer be split. Set it in a "
                                "fresh process (python train.py --cpu_devices N).") from error


def make_strategy(name):
    """The tf.distribute.Strategy that `name` (Config.strategy) and the visible devices call for."""
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise DistributionError("strategy multi_worker reads its cluster from the environment "
                                    "variable TF_CONFIG, which is not set: see README, "
                                    "'More devices and machines'.")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise DistributionError(f"TF_CONFIG is not valid JSON: {error}.") from error
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
    if name == "mirrored" or len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def task(strategy):
    """(task type, task id) of this process in its cluster; (None, None) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """True for the one process that writes the run's files.

    The chief is the task of type "chief", or worker 0 when the cluster has
    no chief task (TensorFlow's convention); a process outside a cluster is its own chief.
    """
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


@contextlib.contextmanager
def checkpoint_folder(folder, strategy):
    """Inside it, the folder this worker saves a checkpoint in.

    The chief's is `folder` itself; another worker's is a temporary folder
    inside it, deleted on leaving, as TensorFlow's multi-worker guide does.
    """
    if is_chief(strategy):
        yield folder
        return
    temporary = os.path.join(folder, f"worker_temporary_{task(strategy)[1]}")
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
