"""The three training-curve figures of a run, read from its TensorBoard event files.

    python plot_curves.py logs/dann-seed0                  # PNGs into the run's log folder
    python plot_curves.py logs/dann-seed0 --out docs       # or into another folder

Writes curves_schedule.png (learning rate and GRL lambda), curves_accuracy.png
(label accuracy on source and target, domain accuracy) and curves_loss.png
(label, domain and total training losses), all against the training step.
Needs no TensorBoard. Bad input prints one `error:` line and exits 2.
"""

import os
import sys

from utils import cli
from utils import plots
from utils import scripts
from utils.files import atomic_path, check_writable
from utils.runtime import startup


def parse_arguments(arguments):
    # The test data settings too, unused: the curves come from the event files, and --mnist PATH
    # can go on every command of the README.
    parser = cli.Parser(__doc__, settings=cli.TEST_DATA_SETTINGS)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="A run's log folder, such as logs/dann-seed0.")
    parser.add_argument("--out", default="", metavar="DIR", help="Output folder (default: RUN_DIR).")
    return parser.parse(arguments)[0]


def figure_paths(out_dir):
    """{figure name: PNG path} for every figure in plots.CURVE_FIGURES."""
    return {name: os.path.join(out_dir, f"curves_{name}.png") for name in plots.CURVE_FIGURES}


@cli.reports_usage_errors
def main(arguments=None):
    arguments = parse_arguments(sys.argv[1:] if arguments is None else arguments)
    startup.set_up()
    import tensorflow as tf

    from utils.training.summaries import read_scalars

    run_dir = arguments.run_dir
    paths = figure_paths(arguments.out or run_dir)
    try:
        if not os.path.isdir(run_dir):
            raise FileNotFoundError(f"Run folder '{run_dir}' does not exist. Pass a run's log "
                                    "folder, such as logs/dann-seed0.")
        scalars = read_scalars(run_dir)
        if not scalars:
            raise FileNotFoundError(f"'{run_dir}' holds no TensorBoard scalars (events.out.tfevents.*). "
                                    "Pass the log folder of a run that train.py has written.")
        for name, path in paths.items():
            check_writable(path)
            with atomic_path(path) as temporary:
                plots.save_training_curves(temporary, scalars, name, os.path.basename(os.path.abspath(run_dir)))
    except (OSError, tf.errors.OpError) as error:
        message = error.message if isinstance(error, tf.errors.OpError) else str(error)
        print(cli.one_line(message), file=sys.stderr)
        return 2
    print("Wrote " + ", ".join(paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main))
