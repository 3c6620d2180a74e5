"""The measurements of bench/train_speed.py: the project's compiled step, a seed-style eager loop, and
PyTorch in a subprocess, with the report that sets them side by side (train_speed.py's docstring)."""

import dataclasses
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import batches
import machine
from model import Networks, correct, cross_entropies
from utils.data import training_data
from utils.errors import DataError
from utils.runtime import devices, precision
from utils.training.trainer import Trainer

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


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
    """The command line's Config, writing into `scratch`, in `precision`."""
    return dataclasses.replace(arguments.config, log_dir=os.path.join(scratch, "logs"),
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
    config = arguments.config
    command = [sys.executable, os.path.join(BENCH_DIR, script), "--seconds", str(arguments.seconds),
               "--batch_size", str(config.batch_size), "--mnistm", config.mnistm_path, *options]
    if config.mnist_path:
        command += ["--mnist", config.mnist_path]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        print(f"{script} failed:\n{completed.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure_all(arguments):
    """Every measurement of train_speed.py's docstring; prints the report as the last line."""
    load_at_start = [round(value, 2) for value in os.getloadavg()]
    config, project, project_bfloat16, step = measure_project_steps(arguments)
    baseline = None if arguments.skip_baseline else measure_baseline(arguments)
    torch_result, torch_bfloat16 = (None, None) if arguments.skip_torch else measure_torch(arguments)
    report = {
        **comparison(project, project_bfloat16, baseline, torch_result, torch_bfloat16),
        **work(project, step["macs"], config.batch_size),
        "project": project,
        "project_bf16": project_bfloat16,
        "baseline": baseline,
        "torch": torch_result,
        "torch_bf16": torch_bfloat16,
        "settings": {**machine.settings(tf), "steps_per_call": config.steps_per_call,
                     "batch_shards": step["shards"], "strategy": config.strategy, "replicas": step["replicas"],
                     "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
                     "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                     "batch_size": config.batch_size, "seconds_per_measurement": arguments.seconds,
                     "load_average_at_start": load_at_start},
    }
    print(json.dumps(report))
    return 0


def measure_project_steps(arguments):
    """(the Config, the float32 rates, the mixed_bfloat16 rates or None, {macs, shards, replicas})."""
    with tempfile.TemporaryDirectory(prefix="dann-bench-") as scratch:
        config = bench_config(arguments, scratch)
        # Thread pools are fixed when TensorFlow first runs an op: the
        # project's own settings (utils/runtime/devices.py), or the overrides.
        overridden = arguments.inter_op_threads or arguments.intra_op_threads
        runtime = devices.configure_for(config, threads=(
            (arguments.inter_op_threads, arguments.intra_op_threads) if overridden else None))
        mnist, mnistm = load_data(config)
        print(f"project step: {config.steps_per_call} steps per call, {arguments.seconds:.0f} s ...", flush=True)
        project, macs, shards, replicas = measure_project(config, mnist, mnistm, arguments.seconds,
                                                          config.steps_per_call, runtime)
        print(f"  {project['steps_per_s']:.2f} steps/s", flush=True)
        project_bfloat16 = None
        if not arguments.skip_bfloat16:
            print(f"project step in mixed_bfloat16: {arguments.seconds:.0f} s ...", flush=True)
            project_bfloat16, *_ = measure_project(bench_config(arguments, scratch, "mixed_bfloat16"),
                                                   mnist, mnistm, arguments.seconds, config.steps_per_call,
                                                   runtime)
            print(f"  {project_bfloat16['steps_per_s']:.2f} steps/s", flush=True)
    return config, project, project_bfloat16, {"macs": macs, "shards": shards, "replicas": replicas}


def measure_baseline(arguments):
    print(f"seed-style eager baseline: {arguments.seconds:.0f} s ...", flush=True)
    baseline = measure_in_subprocess("train_speed.py", arguments, ["--measure", "baseline"])
    print("  failed: see above" if baseline is None else f"  {baseline['steps_per_s']:.2f} steps/s", flush=True)
    return baseline


def measure_torch(arguments):
    """(the PyTorch rates in float32, under bfloat16 autocast); None where torch is missing or skipped."""
    print(f"PyTorch baseline: {arguments.seconds:.0f} s ...", flush=True)
    torch_result = (measure_in_subprocess("torch_baseline.py", arguments, torch_options(arguments))
                    if importlib.util.find_spec("torch") else None)
    print("  torch not installed: skipped" if torch_result is None
          else f"  {torch_result['steps_per_s']:.2f} steps/s", flush=True)
    if torch_result is None or arguments.skip_bfloat16:
        return torch_result, None
    print(f"PyTorch baseline under bfloat16 autocast: {arguments.seconds:.0f} s ...", flush=True)
    torch_bfloat16 = measure_in_subprocess("torch_baseline.py", arguments, [*torch_options(arguments), "--bfloat16"])
    print("  failed: see above" if torch_bfloat16 is None
          else f"  {torch_bfloat16['steps_per_s']:.2f} steps/s", flush=True)
    return torch_result, torch_bfloat16


def comparison(project, project_bfloat16, baseline, torch_result, torch_bfloat16):
    """The report's rates and speedups; None where a measurement is missing."""
    return {
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
    }


def work(project, macs, batch_size):
    """The report's work per step, the flop/s achieved and their share of the machine's peak."""
    flop_per_step = 2 * 3 * macs * batch_size
    achieved = project["steps_per_s"] * flop_per_step
    cpu = machine.read_cpuinfo()
    peak, peak_assumption = machine.fp32_peak(cpu)
    return {
        "native_bfloat16": precision.native_bfloat16(cpu["flags"], precision.gpu_capabilities()),
        "peak_fraction": peak and achieved / peak,
        "achieved_gflop_per_s": achieved / 1e9,
        "peak_gflop_per_s": peak and peak / 1e9,
        "peak_assumption": peak_assumption,
        "work": {"forward_macs_per_image": macs, "gflop_per_step": flop_per_step / 1e9,
                 "rule": "flops = 2 x 3 (forward + backward) x forward MACs x batch"},
    }
