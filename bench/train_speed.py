"""Training speed of the project's DANN step, beside a seed-style eager loop and PyTorch.

    python bench/train_speed.py --mnist ../shared/data/mnist.npz     # about 1.5 minutes
    python bench/train_speed.py --mnist PATH --batch_size 256         # 128 source + 128 target
    python bench/train_speed.py --mnist PATH --seconds 60 --steps_per_call 100
    TF_ENABLE_ONEDNN_OPTS=0 python bench/train_speed.py --mnist PATH  # oneDNN off

Three measurements, each timed for --seconds after a warm-up, on the real
MNIST and MNIST-M data with the default Config and one batch size for all
three (default: config.py's, half source and half target):

- project: `train.Trainer.train_steps`, called as `Trainer.run` calls it
  (steps_per_call steps per compiled call, then the window's metrics read),
  in float32, then again with `precision mixed_bfloat16`;
- baseline: a seed-style eager loop written here, not in the library: eager
  GradientTape, the feature extractor run twice (source, then target),
  learning rate and GRL lambda computed as Python floats and set every step,
  NumPy batches, and TensorBoard scalars written every step; in a subprocess
  with TensorFlow's default thread pools, as such a loop would run;
- torch: bench/torch_baseline.py in a subprocess, only when torch is installed,
  in float32 and under PyTorch's CPU bfloat16 autocast.

Where the CPU has no native bfloat16 (AVX512_BF16 or AMX), both frameworks
emulate it, and the bfloat16 rates show what that costs.

The project's step runs with the project's own devices and thread settings
(utils/runtime/devices.py: batch_shards slices side by side on one device);
--batch_shards, --strategy, --cpu_devices and the thread counts change them.

Work per step is counted from the layer shapes: forward multiply-adds per
image (conv: out_h * out_w * out_c * k * k * in_c; dense: in * out) over the
three networks, x 3 for forward + backward, x 2 flops per multiply-add,
x the batch. peak_fraction = achieved flop/s / the peak of bench/machine.py.
The last line of output is one JSON object. Without MNIST-M at --mnistm it
is built first, from --mnist and --bsds; when that fails, one `error:` line
says what to pass and the exit code is 2.
"""

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH_DIR))

# Before anything imports TensorFlow: its settings, and a start without its start-up lines.
from utils.runtime import startup  # noqa: E402

startup.set_up()

from model import correct, cross_entropies  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import batches  # noqa: E402
import machine  # noqa: E402
from config import Config  # noqa: E402
from model import Networks  # noqa: E402
from utils.runtime import precision  # noqa: E402
from utils import scripts  # noqa: E402
from utils.runtime import devices  # noqa: E402
from utils.errors import DataError  # noqa: E402
from utils.data import training_data
from utils.training.trainer import Trainer


def rate_summary(steps, seconds, cpu_seconds, call_rates, batch_size):
    # On a shared machine wall-clock rates fall with the load; CPU time per step
    # and the share of the CPUs this process got show how much of a gap is load.
    return {"steps_per_s": steps / seconds, "images_per_s": steps * batch_size / seconds,
            "timed_steps": steps, "timed_seconds": seconds,
            "cpu_ms_per_step": 1e3 * cpu_seconds / steps,
            "cpu_share": cpu_seconds / seconds / len(os.sched_getaffinity(0)),
            "per_call_steps_per_s": {"min": min(call_rates), "median": statistics.median(call_rates),
                                     "max": max(call_rates)}}


def measure_project(config, mnist, mnistm, seconds, steps_per_call, runtime):
    """The compiled step of train.py: Trainer.train_steps, then the metrics read as run() reads them."""
    trainer = Trainer(config, training_data.mnist_data(config, mnist, mnistm), *runtime)
    num_steps = tf.constant(steps_per_call)

    def call():
        trainer.train_steps(num_steps)
        return {name: float(metric.result()) for name, metric in trainer.metrics.items()}

    started = time.perf_counter()
    call()  # The first call traces the step.
    first_call_seconds = time.perf_counter() - started
    call()
    call_rates, timed_steps = [], 0
    started, cpu_started = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds or len(call_rates) < 2:
        call_started = time.perf_counter()
        window = call()
        call_rates.append(steps_per_call / (time.perf_counter() - call_started))
        timed_steps += steps_per_call
        for metric in trainer.metrics.values():
            metric.reset_state()
    result = rate_summary(timed_steps, time.perf_counter() - started, time.process_time() - cpu_started,
                          call_rates, config.batch_size)
    result.update(first_call_seconds=first_call_seconds, last_total_loss=window["total_loss"])
    return result, machine.forward_macs_per_image(trainer.networks), trainer.dann_step.slices, trainer.strategy.num_replicas_in_sync


def measure_seed_style_baseline(config, mnist, mnistm, seconds, log_dir, warmup_steps=3):
    """An eager loop as DANN code ported from TF1 usually reads; see the module docstring."""
    networks = Networks(config)
    variables = networks.trainable_variables
    optimizer = keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum)
    writer = tf.summary.create_file_writer(log_dir)
    rng = np.random.default_rng(config.seed)
    pixel_mean = np.asarray(mnistm["pixel_mean"], np.float32)
    half = config.batch_size // 2
    total_steps = math.ceil(config.epochs * len(mnist["y_train"]) / half)
    source_domain, target_domain = tf.zeros([half], tf.int32), tf.ones([half], tf.int32)

    def step(number):
        progress = number / total_steps
        learning_rate = config.learning_rate / (1.0 + config.lr_alpha * progress) ** config.lr_beta
        lambda_ = 2.0 / (1.0 + math.exp(-config.lambda_gamma * progress)) - 1.0
        optimizer.learning_rate = learning_rate
        networks.gradient_reversal.set_lambda(lambda_)
        source_images, source_labels = batches.numpy_batch(
            mnist["x_train"], mnist["y_train"], half, rng, pixel_mean, True, config.binarize_source)
        target_images, _ = batches.numpy_batch(
            mnistm["x_train"], mnistm["y_train"], half, rng, pixel_mean, False, False)
        with tf.GradientTape() as tape:
            source_features = networks.feature_extractor(source_images, training=True)
            target_features = networks.feature_extractor(target_images, training=True)
            label_logits = networks.label_classifier(source_features, training=True)
            label_loss = tf.reduce_mean(cross_entropies(source_labels, label_logits))
            domain_loss = 0.5 * (
                tf.reduce_mean(cross_entropies(source_domain, networks.domain_classifier(source_features, training=True)))
                + tf.reduce_mean(cross_entropies(target_domain, networks.domain_classifier(target_features, training=True))))
            total_loss = label_loss + domain_loss
        gradients = tape.gradient(total_loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        with writer.as_default(step=number):
            for tag, value in (("label_loss", label_loss), ("domain_loss", domain_loss),
                               ("total_loss", total_loss), ("learning_rate", learning_rate),
                               ("lambda", lambda_),
                               ("source_acc", correct(source_labels, label_logits) / half)):
                tf.summary.scalar(tag, value)

    result = rate_summary(*machine.time_steps(step, warmup_steps, seconds), config.batch_size)
    writer.close()
    return result


def bench_config(arguments, scratch, precision="float32"):
    return Config(mnist_path=arguments.mnist, mnistm_path=arguments.mnistm, bsds_path=arguments.bsds,
                  batch_size=arguments.batch_size, steps_per_call=arguments.steps_per_call,
                  batch_shards=arguments.batch_shards, strategy=arguments.strategy,
                  cpu_devices=arguments.cpu_devices, log_dir=os.path.join(scratch, "logs"),
                  checkpoint_dir=os.path.join(scratch, "checkpoints"), precision=precision)


def load_data(config):
    """training_data.load_mnist_arrays, which builds MNIST-M when it is missing; a DataError then says what to pass."""
    mnistm_missing = not os.path.exists(config.mnistm_path)
    try:
        return training_data.load_mnist_arrays(config)
    except DataError as error:
        if not mnistm_missing:
            raise
        raise DataError(f"MNIST-M is not at '{config.mnistm_path}' and building it failed: {error} Pass "
                        "--mnistm PATH with an MNIST-M npz (python create_mnistm.py builds one), or --bsds "
                        "PATH with BSR_bsds500.tgz to build it.") from error


def print_baseline(arguments):
    """The eager baseline alone (its own process, so TensorFlow's default thread pools)."""
    with tempfile.TemporaryDirectory(prefix="dann-bench-baseline-") as scratch:
        config = bench_config(arguments, scratch)
        devices.configure(config.seed, config.deterministic)
        mnist, mnistm = load_data(config)
        print(json.dumps(measure_seed_style_baseline(config, mnist, mnistm, arguments.seconds,
                                                     os.path.join(scratch, "baseline"))))
    return 0


def torch_options(arguments):
    options = []
    if arguments.torch_threads:
        options += ["--threads", str(arguments.torch_threads)]
    return options


def measure_in_subprocess(script, arguments, options):
    """A baseline in its own process, so its thread pools do not share the project's settings.

    Returns the JSON object on the last line of its output, or None if it failed.
    """
    command = [sys.executable, os.path.join(BENCH_DIR, script), "--seconds", str(arguments.seconds),
               "--batch_size", str(arguments.batch_size), "--mnistm", arguments.mnistm, *options]
    if arguments.mnist:
        command += ["--mnist", arguments.mnist]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        print(f"{script} failed:\n{completed.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(completed.stdout.strip().splitlines()[-1])


def parse_arguments(arguments):
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=defaults.mnist_path,
                        help="Keras-layout mnist.npz; empty downloads it (as config mnist_path).")
    parser.add_argument("--mnistm", default=defaults.mnistm_path, help="MNIST-M npz built by create_mnistm.py.")
    parser.add_argument("--bsds", default=defaults.bsds_path,
                        help="BSR_bsds500.tgz, to build MNIST-M when --mnistm is missing; empty downloads it.")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="Timed seconds per measurement, after warm-up (default 15).")
    parser.add_argument("--batch_size", type=int, default=defaults.batch_size,
                        help="Images per step, half source and half target, for all three measurements "
                             "(default: config.py's).")
    parser.add_argument("--steps_per_call", type=int, default=defaults.steps_per_call,
                        help="Steps per compiled call of the project's step (default: config.py's).")
    parser.add_argument("--batch_shards", type=int, default=defaults.batch_shards,
                        help="Slices of each batch computed side by side (default: config.py's).")
    parser.add_argument("--strategy", default=defaults.strategy,
                        help="tf.distribute strategy, as config strategy (default: config.py's).")
    parser.add_argument("--cpu_devices", type=int, default=defaults.cpu_devices,
                        help="Logical CPU devices, as config cpu_devices (default: config.py's).")
    parser.add_argument("--intra_op_threads", type=int, default=0,
                        help="With either thread count set, both replace the project's settings "
                             "(utils/runtime/devices.py); 0 there: TensorFlow's default.")
    parser.add_argument("--inter_op_threads", type=int, default=0,
                        help="With either thread count set, both replace the project's settings "
                             "(utils/runtime/devices.py); 0 there: TensorFlow's default.")
    parser.add_argument("--measure", choices=("all", "baseline"), default="all",
                        help=argparse.SUPPRESS)  # 'baseline': the eager loop alone, for a subprocess.
    parser.add_argument("--skip_baseline", action="store_true", help="Time only the project's step.")
    parser.add_argument("--skip_torch", action="store_true", help="Do not run the PyTorch comparison.")
    parser.add_argument("--skip_bfloat16", action="store_true",
                        help="Do not time the bfloat16 steps (slow on CPUs without native bfloat16).")
    parser.add_argument("--torch_threads", type=int, default=0,
                        help="torch.set_num_threads for the PyTorch run; 0: torch's default (one per core).")
    parsed = parser.parse_args(arguments)
    if parsed.seconds <= 0 or parsed.steps_per_call <= 0:
        parser.error("--seconds and --steps_per_call must be > 0")
    if parsed.batch_size < 2 or parsed.batch_size % 2:
        parser.error("--batch_size must be even and >= 2 (half source, half target)")
    return parsed


def main(arguments):
    arguments = parse_arguments(arguments)
    try:
        return measure_all(arguments) if arguments.measure == "all" else print_baseline(arguments)
    except DataError as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2


def measure_all(arguments):
    """Every measurement of the module docstring; prints the report as the last line."""
    load_at_start = [round(value, 2) for value in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="dann-bench-") as scratch:
        config = bench_config(arguments, scratch)
        # Thread pools are fixed when TensorFlow first runs an op: the
        # project's own settings (utils/runtime/devices.py), or the overrides.
        overridden = arguments.inter_op_threads or arguments.intra_op_threads
        runtime = devices.configure_for(config, threads=(
            (arguments.inter_op_threads, arguments.intra_op_threads) if overridden else None))
        mnist, mnistm = load_data(config)
        print(f"project step: {arguments.steps_per_call} steps per call, {arguments.seconds:.0f} s ...", flush=True)
        project, macs, shards, replicas = measure_project(config, mnist, mnistm, arguments.seconds,
                                                          arguments.steps_per_call, runtime)
        print(f"  {project['steps_per_s']:.2f} steps/s", flush=True)
        project_bfloat16 = None
        if not arguments.skip_bfloat16:
            print(f"project step in mixed_bfloat16: {arguments.seconds:.0f} s ...", flush=True)
            project_bfloat16, *_ = measure_project(bench_config(arguments, scratch, "mixed_bfloat16"),
                                                   mnist, mnistm, arguments.seconds, arguments.steps_per_call,
                                                   runtime)
            print(f"  {project_bfloat16['steps_per_s']:.2f} steps/s", flush=True)
    baseline = None
    if not arguments.skip_baseline:
        print(f"seed-style eager baseline: {arguments.seconds:.0f} s ...", flush=True)
        baseline = measure_in_subprocess("train_speed.py", arguments, ["--measure", "baseline"])
        print("  failed: see above" if baseline is None
              else f"  {baseline['steps_per_s']:.2f} steps/s", flush=True)
    torch_result = torch_bfloat16 = None
    if not arguments.skip_torch:
        print(f"PyTorch baseline: {arguments.seconds:.0f} s ...", flush=True)
        torch_result = (measure_in_subprocess("torch_baseline.py", arguments, torch_options(arguments))
                        if importlib.util.find_spec("torch") else None)
        print("  torch not installed: skipped" if torch_result is None
              else f"  {torch_result['steps_per_s']:.2f} steps/s", flush=True)
        if torch_result is not None and not arguments.skip_bfloat16:
            print(f"PyTorch baseline under bfloat16 autocast: {arguments.seconds:.0f} s ...", flush=True)
            torch_bfloat16 = measure_in_subprocess("torch_baseline.py", arguments,
                                                   [*torch_options(arguments), "--bfloat16"])
            print("  failed: see above" if torch_bfloat16 is None
                  else f"  {torch_bfloat16['steps_per_s']:.2f} steps/s", flush=True)

    flop_per_step = 2 * 3 * macs * config.batch_size
    achieved = project["steps_per_s"] * flop_per_step
    cpu = machine.read_cpuinfo()
    peak, peak_assumption = machine.fp32_peak(cpu)
    report = {
        "steps_per_s": project["steps_per_s"],
        "images_per_s": project["images_per_s"],
        "baseline_steps_per_s": baseline and baseline["steps_per_s"],
        "baseline_images_per_s": baseline and baseline["images_per_s"],
        "speedup": baseline and project["steps_per_s"] / baseline["steps_per_s"],
        "torch_steps_per_s": torch_result and torch_result["steps_per_s"],
        "torch_images_per_s": torch_result and torch_result["images_per_s"],
        "speedup_vs_torch": torch_result and project["steps_per_s"] / torch_result["steps_per_s"],
        "bf16_steps_per_s": project_bfloat16 and project_bfloat16["steps_per_s"],
        "bf16_speedup_vs_fp32": project_bfloat16 and project_bfloat16["steps_per_s"] / project["steps_per_s"],
        "torch_bf16_steps_per_s": torch_bfloat16 and torch_bfloat16["steps_per_s"],
        "bf16_speedup_vs_torch_bf16": (project_bfloat16 and torch_bfloat16
                                       and project_bfloat16["steps_per_s"] / torch_bfloat16["steps_per_s"]),
        "native_bfloat16": precision.native_bfloat16(cpu["flags"], tf.config.list_physical_devices("GPU")),
        "peak_fraction": peak and achieved / peak,
        "achieved_gflop_per_s": achieved / 1e9,
        "peak_gflop_per_s": peak and peak / 1e9,
        "peak_assumption": peak_assumption,
        "work": {"forward_macs_per_image": macs, "gflop_per_step": flop_per_step / 1e9,
                 "rule": "flops = 2 x 3 (forward + backward) x forward MACs x batch"},
        "project": project,
        "project_bf16": project_bfloat16,
        "baseline": baseline,
        "torch": torch_result,
        "torch_bf16": torch_bfloat16,
        "settings": {**machine.settings(tf), "steps_per_call": arguments.steps_per_call,
                     "batch_shards": shards, "strategy": config.strategy, "replicas": replicas,
                     "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
                     "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                     "batch_size": config.batch_size, "seconds_per_measurement": arguments.seconds,
                     "load_average_at_start": load_at_start},
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main, sys.argv[1:]))
