"""Train DANN, or one of its baselines, on MNIST -> MNIST-M or on your own image folders.

    python train.py                          # DANN with the paper's settings (config.py)
    python train.py --mode source_only       # lower bound: no adaptation
    python train.py --mode target_only       # upper bound: trained on MNIST-M labels
    python train.py --seed 1 --epochs 5      # any config.py field, spelled as the field is
    python train.py --preset daipuwei        # a named preset of config.py (PRESETS)
    python train.py --resume                 # continue the run from its latest checkpoint
    python train.py --mnist PATH --bsds PATH # local copies of mnist.npz and BSR_bsds500.tgz
    python train.py --source_dir DIR --target_dir DIR   # image folders (docs/folders.md)

Ctrl-C or SIGTERM stops a run with a checkpoint at the step reached and
prints the command that continues it (exit code 130 or 143).

TensorBoard: tensorboard --logdir logs
"""

import json
import os
import shlex
import sys

from config import preset_config
from utils import cli
from utils.errors import UserError
from utils.runtime import startup
from utils.scripts import run_main


def parse_arguments(arguments):
    """(--resume given, the Config of the settings given); raises cli.UsageError or ValueError."""
    options, overrides = cli.Parser(__doc__, settings=cli.SETTINGS, resume=True).parse(arguments)
    return options.resume, preset_config(**overrides)


def restart_command(config, arguments, program):
    """How to go on after a multi-worker run lost a worker: all workers again, with --resume from
    the chief's last checkpoint, or from the start when there is none."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(config.checkpoint_dir, config.name))
    if latest is None:
        return ("No checkpoint was saved yet: start every worker again, each with its own TF_CONFIG: "
                + shlex.join(["python", program, *arguments]))
    return (f"The chief's last checkpoint is at step {latest.rsplit('-', 1)[-1]} in "
            f"'{os.path.dirname(latest)}'. Restart every worker, each with its own TF_CONFIG: "
            + resume_command(program, arguments))


def resume_command(program, arguments):
    """The command that continues the run of `python program arguments` from its latest checkpoint."""
    return shlex.join(["python", program, *arguments, *([] if "--resume" in arguments else ["--resume"])])


def main(arguments, program="train.py"):
    try:
        resume, config = parse_arguments(arguments)
        startup.set_up()
        from utils.training.run_config import resolve_config

        config = resolve_config(config)
    except cli.HelpPrinted:
        return 0
    except (ValueError, UserError) as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2
    from utils.data.training_data import training_data
    from utils.runtime import devices, distribution
    from utils.training.stopping import TrainingStopped, stop_on_signals
    from utils.training.trainer import Trainer

    try:
        strategy, slices = devices.configure_for(config)
        if config.uses_folders and config.binarize_source:
            print("binarize_source is on (the paper's MNIST recipe): every source pixel value > 0 "
                  "becomes 255. For photographs, add --binarize_source false.")
        # No name keeps the NumPy arrays alive: the trainer holds its own tensor
        # copies, and dropping the arrays saves about 220 MB of resident memory.
        trainer = Trainer(config, training_data(config), strategy, slices,
                          command=shlex.join(["python", program, *arguments]))
        with stop_on_signals(trainer):
            final = trainer.run(resume=resume)
    except (UserError, OSError) as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2
    except distribution.PEER_ERRORS as error:
        if config.strategy != "multi_worker":
            raise
        print(f"error: {distribution.peer_error_message(error, config.peer_timeout_seconds)} "
              f"{restart_command(config, arguments, program)}", file=sys.stderr)
        return 2
    except TrainingStopped as stopped:
        print(f"{stopped} Continue it with: {resume_command(program, arguments)}", file=sys.stderr)
        return stopped.exit_code
    print(json.dumps(final, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], program=sys.argv[0]))
