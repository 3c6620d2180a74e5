"""TensorBoard logging: namespaced scalars (train/..., val/..., schedule/...)."""

import glob
import os

import tensorflow as tf
from tensorflow.core.util import event_pb2


class ScalarWriter:
    """Writes dicts of scalars as TensorBoard events under one folder."""

    def __init__(self, log_dir):
        self.writer = tf.summary.create_file_writer(log_dir)

    def write(self, scalars, step):
        with self.writer.as_default(step=int(step)):
            for tag, value in scalars.items():
                tf.summary.scalar(tag, float(value))
        self.writer.flush()

    def close(self):
        self.writer.close()


def read_scalars(log_dir):
    """Reads every scalar from the event files under log_dir: {tag: [(step, value), ...]}.

    For plotting and tests without TensorBoard. TF2 writes scalars as tensors.
    """
    scalars = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True)):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, []).append((event.step, number))
    return {tag: sorted(points) for tag, points in scalars.items()}
