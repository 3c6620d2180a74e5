"""The same DANN step in PyTorch (CPU), for bench/train_speed.py. Needs torch; not a project requirement.

    python bench/torch_baseline.py --mnist ../shared/data/mnist.npz --seconds 15

The paper's MNIST model as in model/networks.py (conv 5x5x32, pool, conv
5x5x48, pool; FC100-FC100-10; GRL-FC100-2), SGD with momentum, the paper's
learning-rate and lambda schedules, and the same batch (half source, half
target) through one pass of the feature extractor, written as a PyTorch user
would write it well. Batches are drawn and normalized in NumPy as
utils.pipeline does. Prints one JSON object with steps/s and images/s.
"""

import argparse
import json
import math
import os
import statistics
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import batches  # noqa: E402
import machine  # noqa: E402
from config import Config  # noqa: E402
from utils.data.mnistm import load_mnistm  # noqa: E402
from utils.data.datasets import load_mnist  # noqa: E402


class ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(context, features, lambda_):
        context.lambda_ = lambda_
        return features.view_as(features)

    @staticmethod
    def backward(context, upstream):
        return -context.lambda_ * upstream, None


def build_networks(config):
    features = nn.Sequential(
        nn.Conv2d(3, config.conv1_filters, config.kernel_size), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(config.conv1_filters, config.conv2_filters, config.kernel_size), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten())
    feature_size = config.conv2_filters * 4 * 4
    labels = nn.Sequential(
        nn.Linear(feature_size, config.label_hidden_units), nn.ReLU(),
        nn.Linear(config.label_hidden_units, config.label_hidden_units), nn.ReLU(),
        nn.Linear(config.label_hidden_units, 10))
    domains = nn.Sequential(
        nn.Linear(feature_size, config.domain_hidden_units), nn.ReLU(),
        nn.Linear(config.domain_hidden_units, 2))
    return features, labels, domains


def draw(images, labels, count, rng, pixel_mean, is_mnist, binarize):
    """batches.numpy_batch as NCHW float32 and int64 torch tensors."""
    batch, batch_labels = batches.numpy_batch(images, labels, count, rng, pixel_mean, is_mnist, binarize)
    return (torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(batch_labels.astype(np.int64)))


def measure(config, mnist, mnistm, seconds, warmup_steps=5, bfloat16=False):
    torch.manual_seed(config.seed)
    features, labels, domains = build_networks(config)
    parameters = [*features.parameters(), *labels.parameters(), *domains.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=config.learning_rate, momentum=config.momentum)
    rng = np.random.default_rng(config.seed)
    pixel_mean = np.asarray(mnistm["pixel_mean"], np.float32)
    half = config.batch_size // 2
    total_steps = math.ceil(config.epochs * len(mnist["y_train"]) / half)
    domain_labels = torch.cat([torch.zeros(half, dtype=torch.int64), torch.ones(half, dtype=torch.int64)])
    cross_entropy = nn.CrossEntropyLoss()

    def step(number):
        progress = min(number / total_steps, 1.0)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate / (1.0 + config.lr_alpha * progress) ** config.lr_beta
        lambda_ = 2.0 / (1.0 + math.exp(-config.lambda_gamma * progress)) - 1.0
        source_images, source_labels = draw(mnist["x_train"], mnist["y_train"], half, rng, pixel_mean,
                                            True, config.binarize_source)
        target_images, _ = draw(mnistm["x_train"], mnistm["y_train"], half, rng, pixel_mean, False, False)
        # bfloat16: PyTorch's CPU autocast, which runs convolutions and matrix products in
        # bfloat16 and keeps the weights and the losses in float32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            encoded = features(torch.cat([source_images, target_images]))
            label_logits = labels(encoded[:half])
            domain_logits = domains(ReverseGradient.apply(encoded, lambda_))
        label_loss = cross_entropy(label_logits.float(), source_labels)
        domain_loss = cross_entropy(domain_logits.float(), domain_labels)
        optimizer.zero_grad(set_to_none=True)
        (label_loss + domain_loss).backward()
        optimizer.step()
        return (label_loss + domain_loss).item()

    steps, elapsed, cpu_seconds, rates = machine.time_steps(step, warmup_steps, seconds)
    return {"steps_per_s": steps / elapsed, "images_per_s": steps * config.batch_size / elapsed,
            "timed_steps": steps, "timed_seconds": elapsed, "cpu_ms_per_step": 1e3 * cpu_seconds / steps,
            "cpu_share": cpu_seconds / elapsed / len(os.sched_getaffinity(0)),
            "per_step_steps_per_s": {"min": min(rates), "median": statistics.median(rates),
                                     "max": max(rates)},
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "precision": "bfloat16 autocast" if bfloat16 else "float32"}


def main(arguments):
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=defaults.mnist_path, help="Keras-layout mnist.npz; empty downloads it.")
    parser.add_argument("--mnistm", default=defaults.mnistm_path)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--batch_size", type=int, default=defaults.batch_size,
                        help="Images per step, half source and half target.")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0: torch's default.")
    parser.add_argument("--bfloat16", action="store_true", help="Run the step under CPU bfloat16 autocast.")
    arguments = parser.parse_args(arguments)
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    mnist = dict(zip(("x_train", "y_train", "x_test", "y_test"), load_mnist(arguments.mnist or None)))
    config = Config(batch_size=arguments.batch_size)
    print(json.dumps(measure(config, mnist, load_mnistm(arguments.mnistm), arguments.seconds,
                             bfloat16=arguments.bfloat16)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
