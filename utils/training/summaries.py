"""TensorBoard logging: namespaced scalars (train/..., val/..., schedule/...)."""

import glob
import os

import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.util import event_pb2

from utils.files import atomic_path

EVENT_FILES = "events.out.tfevents.*"
SCALAR_DTYPES = (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE)


class ScalarWriter:
    """Writes dicts of scalars as TensorBoard events under one folder (None: writes nothing)."""

    def __init__(self, log_dir):
        self.writer = (tf.summary.create_file_writer(log_dir) if log_dir is not None
                       else tf.summary.create_noop_writer())

    def write(self, scalars, step):
        with self.writer.as_default(step=int(step)):
            for tag, value in scalars.items():
                tf.summary.scalar(tag, float(value))
        self.writer.flush()

    def close(self):
        self.writer.close()


def discard_after(log_dir, step):
    """Removes from the event files in log_dir every event written for a step after `step`.

    A run resumed from its checkpoint at `step` trains and logs the steps
    after it again. Without this, TensorBoard would hold two points for each
    of those steps, the stopped run's and the resumed run's. Each file is
    rewritten atomically; a file left with no event is removed.
    """
    for path in glob.glob(os.path.join(log_dir, EVENT_FILES)):
        records = [record.numpy() for record in tf.data.TFRecordDataset(path)]
        kept = [record for record in records if event_pb2.Event.FromString(record).step <= step]
        if len(kept) == len(records):
            continue
        if not kept:
            os.remove(path)
            continue
        with atomic_path(path) as temporary:
            with tf.io.TFRecordWriter(temporary) as writer:
                for record in kept:
                    writer.write(record)


def summary_values(log_dir):
    """Every (event, summary value) in the event files under log_dir, file by file."""
    for path in sorted(glob.glob(os.path.join(log_dir, "**", EVENT_FILES), recursive=True)):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                yield event, value


def scalar_events(log_dir):
    """Every scalar event in the event files under log_dir, as (tag, step, wall_time, value).

    For plotting and tests without TensorBoard. TF2 writes scalars as tensors, 0-dimensional
    and floating point; images, text and HParams records (dashboards.py) are tensors of strings,
    and are skipped.
    """
    for event, value in summary_values(log_dir):
        if not value.HasField("tensor"):
            yield value.tag, event.step, event.wall_time, value.simple_value
        elif value.tensor.dtype in SCALAR_DTYPES and not value.tensor.tensor_shape.dim:
            yield value.tag, event.step, event.wall_time, float(tf.make_ndarray(value.tensor))


def read_scalars(log_dir):
    """Reads every scalar from the event files under log_dir: {tag: [(step, value), ...]}."""
    scalars = {}
    for tag, step, _, number in scalar_events(log_dir):
        scalars.setdefault(tag, []).append((step, number))
    return {tag: sorted(points) for tag, points in scalars.items()}


def first_reached(events, tag, thresholds):
    """For each threshold, the first logged (step, seconds) at which `tag` was >= it, or None.

    `events` are a run's scalar_events, read once by the caller. Seconds
    count from the run's first logged event (the first training window, a
    few seconds after the start), by the events' wall clock: they include
    evaluations, and a stopped and resumed run's pause.
    """
    start = min((wall_time for _, _, wall_time, _ in events), default=0.0)
    points = sorted((step, wall_time, value) for event_tag, step, wall_time, value in events
                    if event_tag == tag)
    return {threshold: next(((step, wall_time - start) for step, wall_time, value in points
                             if value >= threshold), None)
            for threshold in thresholds}
