"""When finished runs first reached given MNIST-M test accuracies, read from their TensorBoard logs.

    python bench/first_reached.py logs/dann-seed0 logs/dann-seed1
    python bench/first_reached.py logs/* --thresholds 0.7666 0.8 0.85 0.9

Prints a markdown table: per run, the step and the minutes (wall clock since
the run's first logged event, evaluations included) of the first evaluation
(every eval_every steps) at or above each threshold, and the final step's
accuracy. A reading, not a choice: nothing is selected by these numbers.
"""

import os
import sys

# A script in bench/ imports the project from the folder above.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils import cli  # noqa: E402
from utils import scripts  # noqa: E402
from utils.runtime import startup  # noqa: E402

TAG = "val/target_acc"
PAPER_AND_REFERENCE = (0.7666, 0.80, 0.85)  # The paper's DANN; two steps towards the post's 0.871.


def table(log_dirs, thresholds):
    """The markdown table of the module docstring; a ValueError names a folder without the tag's events."""
    from utils.training import summaries

    header = ["run", "final step", f"final {TAG}"] + [f"first >= {value}" for value in thresholds]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for log_dir in log_dirs:
        # Read once: the final point and the thresholds come from the same events.
        events = list(summaries.scalar_events(log_dir))
        points = sorted((step, value) for tag, step, _, value in events if tag == TAG)
        if not points:
            raise ValueError(f"{log_dir} holds no '{TAG}' events; pass a run's folder under logs/.")
        reached = summaries.first_reached(events, TAG, thresholds)
        cells = [os.path.basename(os.path.normpath(log_dir)), f"{points[-1][0]:,}", f"{points[-1][1]:.4f}"]
        cells += [f"step {hit[0]:,}, {hit[1] / 60:.1f} min" if hit else "not reached"
                  for hit in (reached[value] for value in thresholds)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_arguments(arguments):
    parser = cli.Parser(__doc__)
    parser.add_argument("log_dirs", nargs="+", metavar="LOG_DIR", help="run folders under logs/")
    parser.add_argument("--thresholds", nargs="+", type=float, default=list(PAPER_AND_REFERENCE),
                        metavar="ACCURACY",
                        help=f"MNIST-M test accuracies (default: {' '.join(map(str, PAPER_AND_REFERENCE))}).")
    options, _ = parser.parse(arguments)
    return options


@cli.reports_usage_errors
def main(arguments):
    options = parse_arguments(arguments)
    startup.set_up()
    try:
        print(table(options.log_dirs, options.thresholds))
    except ValueError as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main, sys.argv[1:]))
