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

Under multi_worker, TensorFlow's coordination service bounds every wait for
a peer by peer_timeout_seconds: at start-up, for the workers that have not
joined; in training, for a worker that has stopped sending heartbeats. The
wait then ends with one of PEER_ERRORS, which peer_error_message names.
"""

import contextlib
import json
import os
import re
import shutil

import tensorflow as tf
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.distribute import multi_worker_util
from tensorflow.python.eager import context

from utils.errors import DistributionError
from utils.runtime import startup

# What TensorFlow raises when a peer has not joined, has gone, or has stopped answering.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError)
# A task as TensorFlow's errors name it: /job:worker/replica:0/task:1 or /job:worker/task:1.
TASK_NAME = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")
TF_CONFIG_FORMAT = ('{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}')




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


def make_strategy(name, peer_timeout_seconds=120.0):
    """The tf.distribute.Strategy that `name` (Config.strategy) and the visible devices call for.

    multi_worker waits at most peer_timeout_seconds for the other workers to
    join, then stops with a DistributionError naming those that did not.
    """
    if name == "multi_worker":
        cluster, own_task = read_tf_config()
        bound_peer_waits(cluster, peer_timeout_seconds)
        startup.filter_peer_loss_noise()
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except PEER_ERRORS as error:
            raise DistributionError(
                f"strategy multi_worker: {peers_named(str(error), cluster, own_task)} did not join "
                f"within {peer_timeout_seconds:g} s (peer_timeout_seconds). Start every worker that "
                "TF_CONFIG lists, each with its own task, or raise --peer_timeout_seconds.") from None
    gpus = tf.config.list_logical_devices("GPU")
    devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
    if name == "mirrored" or len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def read_tf_config():
    """(cluster, (task type, task index)) from the environment variable TF_CONFIG, checked.

    TensorFlow's own reader takes any JSON (a list trains as one worker) and
    stops with a traceback on a task beyond the cluster: here, one clear
    DistributionError before any work.
    """
    if not os.environ.get("TF_CONFIG"):
        raise DistributionError("strategy multi_worker reads its cluster from the environment "
                                "variable TF_CONFIG, which is not set: see README, "
                                "'More devices and machines'.")
    try:
        tf_config = json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as error:
        raise DistributionError(f"TF_CONFIG is not valid JSON: {error}.") from error
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    own_task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not (isinstance(cluster, dict) and cluster and isinstance(own_task, dict)
            and all(isinstance(addresses, list) and addresses for addresses in cluster.values())):
        raise DistributionError(f"TF_CONFIG must be a JSON object with a \"cluster\" of address lists "
                                f"and a \"task\", as in {TF_CONFIG_FORMAT}; got {os.environ['TF_CONFIG']}.")
    task_type, index = own_task.get("type"), own_task.get("index")
    if task_type not in cluster:
        raise DistributionError(f"TF_CONFIG's task type {task_type!r} is not a job of its cluster "
                                f"({', '.join(cluster)}): set \"task\": {{\"type\": ...}} to one of them.")
    if not (isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(cluster[task_type])):
        raise DistributionError(f"TF_CONFIG's task index {index!r} is not in its cluster: job '{task_type}' "
                                f"lists {len(cluster[task_type])} addresses, so the index must be 0 to "
                                f"{len(cluster[task_type]) - 1}.")
    return cluster, (task_type, index)


def bound_peer_waits(cluster, seconds):
    """Sets TensorFlow's coordination service, which MultiWorkerMirroredStrategy starts, to give up on
    a peer after `seconds`, at start-up and in training.

    The strategy configures the service itself only when nothing has
    (collective_all_reduce_strategy.py); this is the same configuration
    with its timeouts set, through the same call, as TensorFlow has no
    public one. Left to itself, a worker registers at once and then waits
    for the others' devices for up to an hour; with the registration
    barrier, registering waits for every task, bounded by
    cluster_register_timeout. A task that sends no heartbeat for
    heartbeat_timeout is reported to all, which aborts their collectives.
    """
    if context.context().coordination_service is not None:
        return  # Configured by an earlier run in this process; the runtime has started.
    spec = tf.train.ClusterSpec(cluster)
    milliseconds = round(seconds * 1000)
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(spec),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
                          for job in ("chief", "worker") if job in spec.jobs],
        cluster_register_timeout_in_ms=milliseconds, heartbeat_timeout_in_ms=milliseconds)
    context.context().coordination_service.cluster_register_with_barrier = True


def peers_named(message, cluster, own_task):
    """The tasks other than own_task that TensorFlow's error message names, with their addresses:
    "worker 1 (10.0.0.2:12345)". When it names none: every other task, as "one of ..."."""
    named = {(job, int(index)) for job, index in TASK_NAME.findall(message)}
    others = [(job, index) for job, addresses in cluster.items() for index in range(len(addresses))
              if (job, index) != tuple(own_task)]
    lost = [each for each in others if each in named]
    described = ", ".join(f"{job} {index} ({cluster[job][index]})" for job, index in lost or others)
    return described if lost or len(others) == 1 else f"one of {described}"


def peer_error_message(error, peer_timeout_seconds):
    """One line for a multi-worker run that lost a peer (one of PEER_ERRORS): which, and why."""
    cluster, own_task = read_tf_config()
    return (f"lost {peers_named(str(error), cluster, own_task)} of the multi_worker cluster: it stopped, "
            f"or sent no heartbeat for {peer_timeout_seconds:g} s (peer_timeout_seconds), and "
            f"TensorFlow aborted the step ({type(error).__name__}).")


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
