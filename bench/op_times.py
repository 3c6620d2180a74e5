"""The profile of bench/profile_step.py: the training step under TensorFlow's profiler, and its trace's
op times summed per layer, op and direction (profile_step.py's docstring)."""

import collections
import dataclasses
import glob
import json
import os
import re
import time

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import machine
from utils.data import training_data
from utils.runtime import devices, precision
from utils.training.trainer import Trainer

# "while/body/_1/gradient_tape/while/feature_extractor_3/conv2_1/convolution/Conv2DBackpropFilter:
# _MklNativeConv2DBackpropFilterWithBias": the network, the layer and the kernel that ran.
LAYER = re.compile(r"(feature_extractor|label_classifier|domain_classifier)(?:_\d+)?/([a-z]+\d*)(?:_\d+)?/")
# Events that wrap the ops rather than being one.
WRAPPERS = ("ExecutorState::", "ExecutorDoneCallback", "ThreadpoolListener")
# Events inside an op's own event (Eigen's parallel loop of a concatenation), already in its time.
NESTED = ("ParallelFor",)


def op_key(event_name):
    """(where: 'network/layer' or 'other', kernel type, 'forward' or 'backward')."""
    name, _, kernel = event_name.partition(":")
    kernel = re.sub(r"^_Mkl(Native)?", "", kernel or name.rsplit("/", 1)[-1])
    layer = LAYER.search(name)
    where = f"{layer.group(1)}/{layer.group(2)}" if layer else "other"
    return where, kernel, "backward" if "gradient_tape/" in name else "forward"


def read_trace(trace_dir):
    """(op seconds by op_key, busy seconds of each compute thread, seconds on tf.data threads)."""
    space = xplane_pb2.XSpace()
    with open(sorted(glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.xplane.pb")))[-1], "rb") as stream:
        space.ParseFromString(stream.read())
    host = next(plane for plane in space.planes if plane.name == "/host:CPU")
    names = {key: metadata.name for key, metadata in host.event_metadata.items()}
    op_seconds, busy, data_seconds = collections.Counter(), [], 0.0
    for line in host.lines:
        if line.name.startswith("tf_Compute"):
            intervals, end, seconds = [], -1, 0
            for event in line.events:
                if names[event.metadata_id].startswith(WRAPPERS):
                    intervals.append((event.offset_ps, event.offset_ps + event.duration_ps))
                elif names[event.metadata_id] not in NESTED:
                    op_seconds[op_key(names[event.metadata_id])] += event.duration_ps / 1e12
            for start, stop in sorted(intervals):  # The union of the executor's busy intervals.
                seconds += max(0, stop - max(start, end))
                end = max(end, stop)
            busy.append(seconds / 1e12)
        elif line.name.startswith("tf_data_private_threadpool"):
            data_seconds += sum(event.duration_ps for event in line.events
                                if names[event.metadata_id] == "ExecutorState::Process") / 1e12
    return op_seconds, busy, data_seconds


def profile(config, steps, log_dir):
    """Traces about `steps` steps of train.py's step under the profiler; prints the tables and the JSON."""
    # As train.py resolves it: auto is mixed_bfloat16 where bfloat16 is native.
    config = dataclasses.replace(config, precision=precision.resolve(config.precision)[0])
    trainer = Trainer(config, training_data.mnist_data(config, *training_data.load_mnist_arrays(config)),
                      *devices.configure_for(config))
    calls = max(1, steps // config.steps_per_call)
    steps_per_call = tf.constant(config.steps_per_call)
    for _ in range(2):  # The first call traces the step; the second settles its memory.
        trainer.train_steps(steps_per_call)
    trace_dir = os.path.join(log_dir, time.strftime("%Y%m%d-%H%M%S"))
    tf.profiler.experimental.start(trace_dir)
    started = time.perf_counter()
    for _ in range(calls):
        trainer.train_steps(steps_per_call)
    wall = time.perf_counter() - started
    tf.profiler.experimental.stop()
    print_report(trainer, calls * config.steps_per_call, wall, trace_dir)


def print_report(trainer, steps, wall, trace_dir):
    op_seconds, busy, data_seconds = read_trace(trace_dir)
    print(f"{steps} steps in {wall:.2f} s under the profiler ({steps / wall:.1f} steps/s); "
          f"compute threads busy {', '.join(f'{seconds / wall:.0%}' for seconds in busy)}; "
          f"tf.data threads {data_seconds / wall:.0%} of one core.\n")
    rows = op_rows(trainer, op_seconds, steps)
    by_direction = collections.Counter()
    for row in rows:
        by_direction[row["direction"]] += row["share"]
    print(f"\nforward {by_direction['forward']:.0%}, backward {by_direction['backward']:.0%} of the op time.")
    print(json.dumps({"steps": steps, "wall_seconds": wall, "steps_per_s": steps / wall,
                      "compute_busy_fraction": [seconds / wall for seconds in busy],
                      "data_core_fraction": data_seconds / wall, "precision": trainer.config.precision,
                      "by_direction": dict(by_direction),
                      "ops": [row for row in rows if row["share"] >= 0.005], "trace": trace_dir}))


def op_rows(trainer, op_seconds, steps):
    """A row per op_key, the largest first; prints the markdown table of those of 0.5% or more."""
    # Forward flops of one image through each convolution (2 per multiply-add).
    flops = {f"feature_extractor/{name}": 2 * macs for name, macs in
             machine.layer_macs_per_image(trainer.networks.feature_extractor).items()}
    total = sum(op_seconds.values())
    rows = []
    print("| layer | op | direction | ms a step | share | GFLOP/s while it ran |\n|---|---|---|---|---|---|")
    for (where, kernel, direction), seconds in op_seconds.most_common():
        milliseconds = 1e3 * seconds / steps
        # Forward, filter gradient and input gradient each cost one forward's multiply-adds.
        is_conv = where in flops and "Conv2D" in kernel
        rate = flops[where] * trainer.config.batch_size / (milliseconds / 1e3) / 1e9 if is_conv else None
        rows.append({"layer": where, "op": kernel, "direction": direction, "ms_per_step": milliseconds,
                     "share": seconds / total, "gflop_per_s": rate})
        if seconds / total >= 0.005:
            print(f"| {where} | {kernel} | {direction} | {milliseconds:.2f} | {seconds / total:.1%} | "
                  f"{'' if rate is None else f'{rate:.1f}'} |")
    return rows
