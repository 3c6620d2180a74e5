"""Where the training step's time goes: TensorFlow's profiler over a few hundred steps, summed per op.

    python bench/profile_step.py --mnist ../shared/data/mnist.npz              # float32, 200 steps
    python bench/profile_step.py --mnist PATH --precision mixed_bfloat16 --steps 100
    tensorboard --logdir logs/profile                                          # the same trace, drawn

Runs `train.Trainer.train_steps` as train.py does, after two warm-up calls,
under `tf.profiler.experimental`, which writes a trace that TensorBoard's
Profile tab shows (with the tensorboard-plugin-profile package). The trace's
op events on TensorFlow's compute threads are then summed per layer, op and
direction: forward, or backward (ops under the gradient tape). Times are
per training step and add up the replicas (utils/runtime/distribution.py), whose
ops run side by side; a convolution's GFLOP/s is its work over the time it
ran, so on one core it can be set against one core's peak. The last line of
output is one JSON object.
"""

import argparse
import collections
import glob
import json
import os
import re
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH_DIR))

# Before anything imports TensorFlow: its settings, and a start without its start-up lines.
from utils.runtime import startup  # noqa: E402

startup.set_up()

import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

import machine  # noqa: E402
from config import Config  # noqa: E402
from utils.runtime import devices  # noqa: E402
from utils.data import training_data
from utils.training.trainer import Trainer

# "while/body/_1/gradient_tape/while/feature_extractor_3/conv2_1/convolution/Conv2DBackpropFilter:
# _MklNativeConv2DBackpropFilterWithBias": the network, the layer and the kernel that ran.
LAYER = re.compile(r"(feature_extractor|label_classifier|domain_classifier)(?:_\d+)?/([a-z]+\d*)(?:_\d+)?/")
# Events that wrap the ops rather than being one.
WRAPPERS = ("ExecutorState::", "ExecutorDoneCallback", "ThreadpoolListener")


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
                else:
                    op_seconds[op_key(names[event.metadata_id])] += event.duration_ps / 1e12
            for start, stop in sorted(intervals):  # The union of the executor's busy intervals.
                seconds += max(0, stop - max(start, end))
                end = max(end, stop)
            busy.append(seconds / 1e12)
        elif line.name.startswith("tf_data_private_threadpool"):
            data_seconds += sum(event.duration_ps for event in line.events
                                if names[event.metadata_id] == "ExecutorState::Process") / 1e12
    return op_seconds, busy, data_seconds


def main(arguments):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default="", help="Keras-layout mnist.npz; empty downloads it.")
    parser.add_argument("--mnistm", default=Config().mnistm_path, help="MNIST-M npz built by create_mnistm.py.")
    parser.add_argument("--steps", type=int, default=200, help="Profiled steps (default 200).")
    parser.add_argument("--precision", default="float32", help="config.precision of the step (default float32).")
    parser.add_argument("--logdir", default=os.path.join("logs", "profile"), help="Where the trace is written.")
    arguments = parser.parse_args(arguments)

    config = Config(mnist_path=arguments.mnist, mnistm_path=arguments.mnistm, precision=arguments.precision,
                    log_dir=os.path.join(arguments.logdir, "run"), checkpoint_dir=os.path.join(arguments.logdir, "run"))
    runtime = devices.configure_for(config)
    trainer = Trainer(config, training_data.mnist_data(config, *training_data.load_mnist_arrays(config)), *runtime)
    calls = max(1, arguments.steps // config.steps_per_call)
    steps_per_call = tf.constant(config.steps_per_call)
    for _ in range(2):  # The first call traces the step; the second settles its memory.
        trainer.train_steps(steps_per_call)
    trace_dir = os.path.join(arguments.logdir, time.strftime("%Y%m%d-%H%M%S"))
    tf.profiler.experimental.start(trace_dir)
    started = time.perf_counter()
    for _ in range(calls):
        trainer.train_steps(steps_per_call)
    wall = time.perf_counter() - started
    tf.profiler.experimental.stop()

    steps = calls * config.steps_per_call
    op_seconds, busy, data_seconds = read_trace(trace_dir)
    # Forward flops of one image through each convolution (2 per multiply-add).
    flops = {f"feature_extractor/{name}": 2 * macs for name, macs in
             machine.layer_macs_per_image(trainer.networks.feature_extractor).items()}
    total = sum(op_seconds.values())
    rows = []
    print(f"{steps} steps in {wall:.2f} s under the profiler ({steps / wall:.1f} steps/s); "
          f"compute threads busy {', '.join(f'{seconds / wall:.0%}' for seconds in busy)}; "
          f"tf.data threads {data_seconds / wall:.0%} of one core.\n")
    print("| layer | op | direction | ms a step | share | GFLOP/s while it ran |\n|---|---|---|---|---|---|")
    for (where, kernel, direction), seconds in op_seconds.most_common():
        milliseconds = 1e3 * seconds / steps
        # Forward, filter gradient and input gradient each cost one forward's multiply-adds.
        is_conv = where in flops and "Conv2D" in kernel
        rate = flops[where] * config.batch_size / (milliseconds / 1e3) / 1e9 if is_conv else None
        rows.append({"layer": where, "op": kernel, "direction": direction, "ms_per_step": milliseconds,
                     "share": seconds / total, "gflop_per_s": rate})
        if seconds / total >= 0.005:
            print(f"| {where} | {kernel} | {direction} | {milliseconds:.2f} | {seconds / total:.1%} | "
                  f"{'' if rate is None else f'{rate:.1f}'} |")
    by_direction = collections.Counter()
    for row in rows:
        by_direction[row["direction"]] += row["share"]
    print(f"\nforward {by_direction['forward']:.0%}, backward {by_direction['backward']:.0%} of the op time.")
    print(json.dumps({"steps": steps, "wall_seconds": wall, "steps_per_s": steps / wall,
                      "compute_busy_fraction": [seconds / wall for seconds in busy],
                      "data_core_fraction": data_seconds / wall, "precision": arguments.precision,
                      "by_direction": dict(by_direction),
                      "ops": [row for row in rows if row["share"] >= 0.005], "trace": trace_dir}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
