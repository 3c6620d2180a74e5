"""Reverse validation: judge a trained run without a single target label (docs/reverse_validation.md).

    python reverse_validation.py --model checkpoints/dann-seed0
    python reverse_validation.py --model pretrained/paper --mnist PATH/mnist.npz
    python reverse_validation.py --model checkpoints/RUN --epochs 10   # a longer reverse run
    python reverse_validation.py --model checkpoints/RUN --scores_only # the label-free scores alone, in seconds
    python reverse_validation.py --model checkpoints/RUN --variant fresh  # eta_r from new weights, fixed budget

The run's classifier eta labels the target training images with its own
predictions. A reverse run, with the run's own settings, then trains from
those self-labelled target images to the unlabelled source training images;
its accuracy on source images that neither run trained on is the reverse
validation accuracy (Ganin et al., JMLR 2016, section 5.1.2), higher the
better. The default variant, paper, runs it as the paper does: the reverse
run starts from eta's weights, holds a seeded tenth of the self-labelled
target images out (T_V), evaluates four times an epoch and stops early after
three evaluations without a better accuracy on T_V; its score is that of its
best evaluation on T_V. The variant fresh starts from new weights and trains
for --epochs (utils/selection/reverse_validation.py).

Those source images are the run's held-out part when it trained with
--source_validation_fraction (the paper holds out 0.1), else the source
test set. The reverse run is an ordinary run named <run>-reverse: its curves
are in TensorBoard and its checkpoints in checkpoints/, and --resume
continues it after Ctrl-C. The JSON (default
logs/<run>-reverse/reverse_validation.json, also printed) adds cheaper
label-free scores of eta: its source validation accuracy, the negative
entropy and the information maximization score of its target predictions,
and its domain classifier's accuracy when the folder holds a checkpoint.
Bad input prints one `error:` line, exits 2 and writes nothing. Ctrl-C or
SIGTERM before the reverse run starts prints one `Stopped by ...` line,
exits 130 or 143 and writes nothing; during the reverse run, it stops that
run with a checkpoint, as train.py does.
"""

import dataclasses
import json
import os
import shlex
import sys
import time


from config import Config
from utils import cli
from utils import scripts
from utils.errors import DataError, DistributionError, ModelError, TrainingError
from utils.files import check_writable, write_text_atomic
from utils.runtime import startup

# The default budget of the reverse run, in passes over its source (the
# forward target's 60,000 MNIST-M train images). docs/reverse_validation.md
# compares it with a longer budget; docs/measurements.md times it.
REVERSE_EPOCHS = 3.0
VARIANTS = ("paper", "fresh")
# The paper variant's early stopping: evaluations per pass over the reverse source, and how many
# in a row without a better accuracy on T_V stop it (three quarters of a pass).
EVALUATIONS_PER_EPOCH, PATIENCE = 4, 3


def parse_arguments(arguments):
    # As evaluate.py: this machine's files, not the paths recorded where the run trained; BSDS500
    # builds MNIST-M when it is missing.
    parser = cli.Parser(__doc__, settings=(*cli.TEST_DATA_SETTINGS, "bsds_path"), resume=True)
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="A run's checkpoint folder (checkpoints/<run>) or a folder like pretrained/paper, "
                             "holding classifier.keras.")
    parser.add_argument("--config", default="", metavar="PATH",
                        help="The run's config.json (default: beside the model or in logs/<run>/).")
    parser.add_argument("--epochs", type=float, default=REVERSE_EPOCHS,
                        help="Length of the reverse run, in passes over its source (default: %(default)g).")
    parser.add_argument("--variant", choices=VARIANTS, default="paper",
                        help="paper (default): eta_r starts from eta's weights and stops early on the self-"
                             "labelled T_V; fresh: new weights, --epochs of training.")
    parser.add_argument("--run_name", default="", help="The reverse run's name (default: <run>-reverse).")
    parser.add_argument("--out", default="", metavar="PATH",
                        help="JSON output (default: logs/<reverse run>/reverse_validation.json).")
    parser.add_argument("--scores_only", action="store_true",
                        help="Only the cheaper label-free scores, in seconds, without the reverse run "
                             "(default output: results/<run>/label_free_scores.json).")
    parsed, overrides = parser.parse(arguments)
    if not parsed.epochs > 0:
        raise cli.UsageError(f"--epochs must be > 0, got {parsed.epochs:g}")
    parsed.settings = Config(**overrides)
    return parsed


def read_run_config(arguments):
    """The run's Config, with --mnist, --mnistm and --bsds; refuses a run it cannot judge."""
    from utils.evaluation import trained_run

    folder = arguments.model if os.path.isdir(arguments.model) else os.path.dirname(arguments.model)
    # Checked by name here: loading the model would start TensorFlow before its threads are set.
    classifier = (arguments.model if os.path.isfile(arguments.model)
                  else os.path.join(folder, trained_run.EXPORT_NAME))
    if not os.path.isfile(classifier):
        raise ModelError(f"'{arguments.model}' holds no {trained_run.EXPORT_NAME}: train.py writes it when a "
                         "run finishes. Finish the run, or pass the folder of a finished one.")
    config_path = arguments.config or trained_run.find_config(os.path.abspath(folder))
    if not config_path:
        raise ModelError(f"No config.json beside '{arguments.model}' or in logs/<run>/: the reverse run "
                         "needs the run's own settings. Pass --config with the run's config.json.")
    config = trained_run.read_config(config_path)
    if config.mode == "target_only":
        raise ModelError(f"'{arguments.model}' was trained with --mode target_only, on target labels: "
                         "reverse validation judges runs that use none.")
    return dataclasses.replace(config, mnist_path=arguments.settings.mnist_path,
                               mnistm_path=arguments.settings.mnistm_path,
                               bsds_path=arguments.settings.bsds_path), config_path


def reverse_run_config(config, epochs, reverse_name):
    """The run's settings for the reverse run: the same algorithm, with its own length and name.

    It trains on this machine's devices (strategy auto: one device, or its
    GPUs) rather than the run's machines. Random colors are an augmentation
    of gray source digits: the reverse source, the target's images, is in
    color already, and recolored MNIST-M kept a long-preset reverse run at
    chance for 1,000 steps (docs/reverse_validation.md).
    """
    return dataclasses.replace(config, epochs=epochs, run_name=reverse_name, log_dir="logs",
                               checkpoint_dir="checkpoints", strategy="auto", cpu_devices=1,
                               color_source=False)


def with_early_stopping(reverse_config, source_images):
    """The paper variant's reverse run: early stopping, evaluated EVALUATIONS_PER_EPOCH times a
    pass over its `source_images`."""
    steps_per_epoch = -(-source_images // (reverse_config.batch_size // 2))
    return dataclasses.replace(reverse_config, early_stopping_patience=PATIENCE,
                               eval_every=max(1, steps_per_epoch // EVALUATIONS_PER_EPOCH))


def judge(arguments, config, reverse_config, runtime, config_path, out_path):
    """Scores eta and, unless --scores_only, trains the reverse run under `runtime` (the strategy
    and slices of devices.configure_for); returns the results dict.

    Raises TrainingStopped, with the signal's name, when Ctrl-C or SIGTERM stops the reverse run.
    """
    from utils.data import training_data
    from utils.evaluation import metrics, trained_run
    from utils.selection import reverse_validation as reverse
    from utils.selection import scoring
    from utils.training.stopping import stop_on_signals
    from utils.training.trainer import Trainer

    started = time.perf_counter()
    reverse_name = reverse_config.run_name
    run = trained_run.load_run(arguments.model, config_path)
    # Split as the run was (the same fraction and seed); the pixel mean is that of the reverse run's feed.
    data = training_data.training_data(reverse_config)
    validation = reverse.source_validation(data)
    validation_name = (f"{config.source_validation_fraction:g} of the source train images, held out "
                       f"(held_out_seed {config.held_out_seed})" if data.source_validation is not None
                       else "the source test set (the run held no validation part out)")
    scores, target_probabilities = scoring.label_free_scores(run.classifier, data.source, validation, data.target)
    results = {"model": arguments.model, "config": config_path, "mode": config.mode, "preset": config.preset,
               "source_validation": validation_name, "source_validation_images": len(validation),
               "source_validation_accuracy": metrics.accuracy(
                   metrics.confusion_matrix(run.classifier, validation, validation.labels.numpy())),
               **scores, "domain_accuracy": None}
    if run.domain_networks is not None:
        results["domain_accuracy"] = metrics.domain_accuracy(run, validation, data.target_test)["overall"]
    print(f"{run.name}: source validation accuracy {results['source_validation_accuracy']:.4f} on "
          f"{len(validation)} images ({validation_name}), information maximization "
          f"{results['information_maximization']:.4f}.")
    if arguments.scores_only:
        return {**results, "minutes": (time.perf_counter() - started) / 60, "out": out_path}

    paper = arguments.variant == "paper"
    print(f"Training the reverse run {reverse_name} ({arguments.variant} variant).")
    test_labels = reverse.self_labels(reverse.probabilities(run.classifier, data.target_test))
    swapped = reverse.reverse_data(data, reverse.self_labels(target_probabilities), test_labels,
                                   held_out_seed=config.held_out_seed if paper else None)
    if paper:
        reverse_config = with_early_stopping(reverse_config, len(swapped.source))
    trainer = Trainer(reverse_config, swapped, *runtime)
    # A resumed reverse run restores its own checkpoint over these weights.
    started_from = reverse.start_from(trainer.networks, trainer.optimizer, run) if paper else []
    with stop_on_signals(trainer):
        final = trainer.run(resume=arguments.resume)
    # The paper's eta_r is the early-stopped one: its best evaluation on T_V.
    scored = final["early_stopping"]["best"] if paper else final
    return {
        **results, "reverse_validation_accuracy": scored["val/target_acc"], "reverse_variant": arguments.variant,
        "reverse_run": reverse_name, "reverse_epochs": arguments.epochs, "reverse_steps": final["steps"],
        "reverse_started_from": started_from or "new weights",
        **({"reverse_source_images": len(swapped.source),
            "reverse_target_validation_images": len(swapped.source_validation),
            "reverse_patience_evaluations": PATIENCE, "reverse_eval_every": reverse_config.eval_every,
            "reverse_best_step": final["early_stopping"]["best_step"],
            "reverse_stopped_early": final["early_stopping"]["stopped_early"],
            "reverse_agreement_on_target_validation": scored["val/source_validation_acc"],
            "reverse_validation_accuracy_final_step": final["val/target_acc"]} if paper else {}),
        # How often eta_r agrees with eta's labels on the target test images.
        "reverse_agreement_on_target_test": scored["val/source_acc"],
        "reverse_training_minutes": final["training_seconds"] / 60,
        "minutes": (time.perf_counter() - started) / 60, "out": out_path,
    }


@cli.reports_usage_errors
def main(arguments, program="reverse_validation.py"):
    parsed = parse_arguments(arguments)
    startup.set_up()
    from utils.evaluation import trained_run
    from utils.runtime import devices, precision
    from utils.training.stopping import TrainingStopped

    try:
        # Until the reverse run starts (stop_on_signals takes over then), a
        # signal stops the script before it has written anything.
        with scripts.stop_signals_raised():
            config, config_path = read_run_config(parsed)
            reverse_name = parsed.run_name or f"{trained_run.run_name(parsed.model)}-reverse"
            out_path = parsed.out or (
                os.path.join("results", trained_run.run_name(parsed.model), "label_free_scores.json")
                if parsed.scores_only else os.path.join("logs", reverse_name, "reverse_validation.json"))
            check_writable(out_path)
            policy, reason = precision.resolve(config.precision)
            config = dataclasses.replace(config, precision=policy, precision_reason=reason)
            reverse_config = reverse_run_config(config, parsed.epochs, reverse_name)
            # Before any op runs: threads and devices cannot change afterwards.
            runtime = devices.configure_for(reverse_config)
            results = judge(parsed, config, reverse_config, runtime, config_path, out_path)
    except (ValueError, DataError, DistributionError, ModelError, OSError, TrainingError) as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2
    except TrainingStopped as stopped:
        resume = [] if parsed.resume else ["--resume"]
        print(f"{stopped} Continue it with: {shlex.join(['python', program, *arguments, *resume])}",
              file=sys.stderr)
        return stopped.exit_code
    except scripts.Stopped as stopped:
        print(f"{stopped}; nothing was written.", file=sys.stderr)
        return stopped.exit_code
    write_text_atomic(out_path, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main, sys.argv[1:], program=sys.argv[0]))
