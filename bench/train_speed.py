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
import os
import sys

# A script in bench/ imports the project from the folder above, and the bench's own modules beside it.
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH_DIR))

from config import Config  # noqa: E402
from utils import cli  # noqa: E402
from utils import scripts  # noqa: E402
from utils.errors import DataError  # noqa: E402
from utils.runtime import startup  # noqa: E402

# The Config fields this benchmark sets; the rest keep config.py's defaults.
SETTINGS = ("mnist_path", "mnistm_path", "bsds_path", "batch_size", "steps_per_call", "batch_shards", "strategy",
            "cpu_devices")
THREADS_HELP = ("With either thread count set, both replace the project's settings (utils/runtime/devices.py); "
                "0 there: TensorFlow's default.")


def parse_arguments(arguments):
    """The options, with `config`: the Config of the settings given."""
    parser = cli.Parser(__doc__, settings=SETTINGS)
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="Timed seconds per measurement, after warm-up (default 15).")
    parser.add_argument("--intra_op_threads", type=int, default=0, help=THREADS_HELP)
    parser.add_argument("--inter_op_threads", type=int, default=0, help=THREADS_HELP)
    parser.add_argument("--measure", choices=("all", "baseline"), default="all",
                        help=argparse.SUPPRESS)  # 'baseline': the eager loop alone, for a subprocess.
    parser.add_argument("--skip_baseline", action="store_true", help="Time only the project's step.")
    parser.add_argument("--skip_torch", action="store_true", help="Do not run the PyTorch comparison.")
    parser.add_argument("--skip_bfloat16", action="store_true",
                        help="Do not time the bfloat16 steps (slow on CPUs without native bfloat16).")
    parser.add_argument("--torch_threads", type=int, default=0,
                        help="torch.set_num_threads for the PyTorch run; 0: torch's default (one per core).")
    options, overrides = parser.parse(arguments)
    try:
        options.config = Config(**overrides)  # Config refuses an odd --batch_size, among others.
    except ValueError as error:
        raise cli.UsageError(str(error)) from error
    if options.seconds <= 0:
        raise cli.UsageError(f"--seconds must be > 0, got {options.seconds:g}.")
    return options


@cli.reports_usage_errors
def main(arguments):
    arguments = parse_arguments(arguments)
    startup.set_up()
    import speed

    try:
        return speed.measure_all(arguments) if arguments.measure == "all" else speed.print_baseline(arguments)
    except DataError as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(scripts.run_main(main, sys.argv[1:]))
