"""Accuracy of a trained classifier on MNIST test and MNIST-M test, per digit and per domain;
accuracy on a labelled image folder, and predictions for any folder of images.

    python evaluate.py                                          # the shipped pretrained/paper weights
    python evaluate.py --model pretrained/long                  # the shipped weights of the long preset
    python evaluate.py --model checkpoints/dann-seed0           # a run's folder: adds the domain accuracy
    python evaluate.py --model checkpoints/dann-seed0/classifier.keras --out results/dann.json
    python evaluate.py --mnistm_official DIR                    # also Ganin's original MNIST-M test set
    python evaluate.py --model checkpoints/dann-seed0 --mnistm_train  # also the MNIST-M train labels
    python evaluate.py --mnist PATH/mnist.npz                  # a local mnist.npz instead of the download
    python evaluate.py --model RUN --target_dir DIR             # a labelled image folder (class subfolders)
    python evaluate.py --model RUN --predict DIR --out predictions.csv   # any folder of images

Prints a table and writes the same numbers as JSON (default
results/<run>/evaluation.json) with one confusion-matrix PNG per test set
beside it. The domain accuracy is that of the run's domain classifier on
source (MNIST) against target (MNIST-M) test images: near 0.5 the features
no longer tell the domains apart. It needs the run's checkpoint folder; the
.keras export holds only the label classifier. Bad input prints one
`error:` line, exits 2 and writes nothing; so do Ctrl-C and SIGTERM, with
one `Stopped by ...` line and exit 130 or 143.

A checkpoint folder that holds no classifier.keras yet (a run still
training, or stopped before it finished) is measured at its latest
checkpoint, with the weights' moving average when the run keeps one, as
the export would be; the table and the JSON's "checkpoint_step" say which
step (null for an export).

--target_dir measures a run on a folder laid out in subfolders named after
its classes (docs/folders.md); --predict writes one CSV row per image below
DIR: its path, the predicted class and each class's probability.

--mnistm_train also measures the MNIST-M train images' labels. dann and
source_only never train on them, so they can judge a change of recipe without
looking at the test labels; the test accuracy stays the number to report.
"""

import contextlib
import json
import os
import sys

from config import Config
from utils import cli
from utils import plots
from utils import scripts
from utils.data.official_mnistm import load_official_mnistm_test
from utils.errors import DataError, ModelError
from utils.files import atomic_path, check_writable
from utils.runtime import startup

# The default preset's seed-0 weights from run_results.py (its row in docs/results.md), so that
# `python evaluate.py` shows what `python train.py` gives; pretrained/long holds the long preset's.
PRETRAINED_MODEL = os.path.join("pretrained", "paper")
TEST_SET_TITLES = {"mnist": "MNIST test (source)", "mnistm": "MNIST-M test (target)",
                   "mnistm_official": "original MNIST-M test, center-cropped",
                   "mnistm_train": "MNIST-M train (labels unused by dann)"}
SHORT_TITLES = {"mnist": "MNIST", "mnistm": "MNIST-M", "mnistm_official": "original MNIST-M",
                "mnistm_train": "MNIST-M train"}
# JSON keys of the accuracies; only the train set's breaks the "<set>_test_accuracy" pattern.
ACCURACY_KEYS = {"mnist": "mnist_test_accuracy", "mnistm": "mnistm_test_accuracy",
                 "mnistm_official": "mnistm_official_test_accuracy", "mnistm_train": "mnistm_train_accuracy"}


def parse_arguments(arguments):
    """The options, with `settings`: the Config of --mnist and --mnistm."""
    parser = cli.Parser(__doc__, settings=cli.TEST_DATA_SETTINGS,
                        renamed={"--mnistm-official": "--mnistm_official", "--mnistm-train": "--mnistm_train",
                                 "--target-dir": "--target_dir"})
    parser.add_argument("--model", default="", metavar="PATH",
                        help=f"A .keras export, or a run's checkpoint folder: its classifier.keras, or "
                             f"its latest checkpoint before the run wrote one (default: {PRETRAINED_MODEL}).")
    parser.add_argument("--config", default="", metavar="PATH",
                        help="The run's config.json (default: found beside the model or in logs/<run>/).")
    parser.add_argument("--mnistm_official", default="", metavar="DIR",
                        help="Folder with Ganin's mnist_m_test/ and mnist_m_test_labels.txt.")
    parser.add_argument("--mnistm_train", action="store_true",
                        help="Also the MNIST-M train labels, unused by dann and source_only training "
                             "(target_only trains on them): for comparing recipes without the test set.")
    parser.add_argument("--target_dir", default="", metavar="DIR",
                        help="Measure on this image folder, in subfolders named after the run's classes.")
    parser.add_argument("--predict", default="", metavar="DIR",
                        help="Predict every image below DIR and write a CSV (--out, default "
                             "results/<run>/predictions.csv).")
    parser.add_argument("--out", default="", metavar="PATH",
                        help="JSON output (default: results/<run>/evaluation.json); PNGs go beside it.")
    options, overrides = parser.parse(arguments)
    options.settings = Config(**overrides)
    return options


def confusion_path(out_path, test_set):
    """results/x/evaluation.json -> results/x/evaluation_confusion_<test_set>.png."""
    return f"{os.path.splitext(out_path)[0]}_confusion_{test_set}.png"


def load_test_sets(arguments, run):
    """{test set: (uint8 RGB images, labels)}, the source digits prepared as in the run's training."""
    from utils.data import training_data

    test_sets = training_data.load_test_sets(arguments.settings.mnist_path, arguments.settings.mnistm_path,
                                             run.config.binarize_source,
                                          mnistm_train=arguments.mnistm_train)
    if arguments.mnistm_official:
        test_sets["mnistm_official"] = load_official_mnistm_test(arguments.mnistm_official)
    return test_sets


def evaluate(run, test_sets):
    """The results dict written as JSON, and the confusion matrices by test set."""
    from utils.evaluation import metrics

    confusions = {name: metrics.confusion_matrix(run.classifier, images, labels)
                  for name, (images, labels) in test_sets.items()}
    results = {"model": run.name, "checkpoint_step": run.checkpoint_step,
               "config": os.path.relpath(run.config_path) if run.config_path else "Config() defaults",
               "binarize_source": run.config.binarize_source}
    results.update({ACCURACY_KEYS[name]: metrics.accuracy(confusion)
                    for name, confusion in confusions.items()})
    results["per_class_accuracy"] = {name: metrics.per_class_accuracy(confusion)
                                     for name, confusion in confusions.items()}
    results["test_images"] = {name: int(confusion.sum()) for name, confusion in confusions.items()}
    if run.domain_networks is not None:
        results["domain_accuracy"] = metrics.domain_accuracy(run, test_sets["mnist"][0], test_sets["mnistm"][0])
        results["domain_accuracy_note"] = ("domain classifier of the latest checkpoint on MNIST test (source) "
                                           "and MNIST-M test (target); 0.5 is chance")
    else:
        results["domain_accuracy"] = None
        results["domain_accuracy_note"] = run.domain_note
    results["confusion_matrices"] = {name: confusion.tolist() for name, confusion in confusions.items()}
    return results, confusions


def format_table(results):
    """A short plain-text table of the results."""
    from utils.evaluation import trained_run

    lines = [f"model {results['model']} (config: {results['config']})"]
    if results["checkpoint_step"] is not None:
        lines.append(f"its latest checkpoint, step {results['checkpoint_step']}: the folder holds no "
                     f"{trained_run.EXPORT_NAME} yet")
    lines += ["", f"{'data set':<40} {'images':>7} {'accuracy':>9}"]
    for name, title in TEST_SET_TITLES.items():
        if name in results["test_images"]:
            lines.append(f"{title:<40} {results['test_images'][name]:>7} {results[ACCURACY_KEYS[name]]:>9.4f}")
    domain = results["domain_accuracy"]
    lines.append("")
    lines.append(f"domain accuracy: {domain['overall']:.4f} (source {domain['source']:.4f}, target "
                 f"{domain['target']:.4f}; 0.5 is chance)" if domain else
                 f"domain accuracy: {results['domain_accuracy_note']}")
    lines.append("")
    lines.append("per-digit accuracy " + " ".join(f"{digit:>5}" for digit in range(10)))
    for name, values in results["per_class_accuracy"].items():
        cells = " ".join("    -" if value is None else f"{value:5.3f}" for value in values)
        lines.append(f"{SHORT_TITLES[name]:<18} {cells}")
    return "\n".join(lines)


def write_outputs(out_path, results, confusions):
    """Writes the JSON and the confusion-matrix PNGs, all or none of them."""
    with contextlib.ExitStack() as stack:
        for name, confusion in confusions.items():
            temporary = stack.enter_context(atomic_path(confusion_path(out_path, name)))
            plots.save_confusion_matrix(temporary, confusion, f"{results['model']}: {TEST_SET_TITLES[name]}")
        with open(stack.enter_context(atomic_path(out_path)), "w", encoding="utf-8") as stream:
            stream.write(json.dumps(results, indent=2) + "\n")


def evaluate_folder(run, folder):
    """The results of a run on a labelled image folder, and its confusion matrix."""
    from utils.evaluation import folder_evaluation, metrics

    confusion = folder_evaluation.labelled_folder_confusion(run, folder)
    config = os.path.relpath(run.config_path) if run.config_path else "none found"
    results = {"model": run.name, "config": config,
               "target_dir": folder, "class_names": list(run.class_names),
               "accuracy": metrics.accuracy(confusion), "images": int(confusion.sum()),
               "per_class_accuracy": dict(zip(run.class_names, metrics.per_class_accuracy(confusion))),
               "confusion_matrix": confusion.tolist()}
    return results, confusion


def main_folders(arguments, model_path):
    """--target_dir or --predict: writes the JSON and confusion PNG, or the CSV; returns the summary to print."""
    from utils.evaluation import folder_evaluation, trained_run

    name = trained_run.run_name(model_path)
    if arguments.predict:
        out_path = arguments.out or os.path.join("results", name, "predictions.csv")
        check_writable(out_path)
        run = trained_run.load_run(model_path, arguments.config)
        predictions = folder_evaluation.predict_folder(run, arguments.predict)
        with atomic_path(out_path) as temporary:
            folder_evaluation.write_predictions(temporary, *predictions, run.class_names)
        counts = {class_name: predictions[1].count(class_name) for class_name in run.class_names}
        return (f"{len(predictions[0])} images predicted: "
                + ", ".join(f"{class_name} {count}" for class_name, count in counts.items() if count)
                + f"\nWrote {out_path}")
    out_path = arguments.out or os.path.join("results", name, "evaluation.json")
    png_path = confusion_path(out_path, "target_dir")
    check_writable(out_path)
    check_writable(png_path)
    run = trained_run.load_run(model_path, arguments.config)
    results, confusion = evaluate_folder(run, arguments.target_dir)
    with atomic_path(png_path) as png_temporary, atomic_path(out_path) as json_temporary:
        plots.save_confusion_matrix(png_temporary, confusion, f"{run.name}: {arguments.target_dir}",
                                    list(run.class_names))
        with open(json_temporary, "w", encoding="utf-8") as stream:
            stream.write(json.dumps(results, indent=2) + "\n")
    lines = [f"model {run.name}: accuracy {results['accuracy']:.4f} on {results['images']} images of "
             f"{arguments.target_dir}"]
    lines += [f"  {class_name:<20} {'-' if value is None else f'{value:.4f}'}"
              for class_name, value in results["per_class_accuracy"].items()]
    return "\n".join(lines + [f"Wrote {out_path} and {png_path}"])


def main_test_sets(arguments, model_path):
    """MNIST test, MNIST-M test and the sets asked for: writes the JSON and PNGs; returns the summary to print."""
    from utils.data import training_data
    from utils.evaluation import trained_run

    out_path = arguments.out or os.path.join("results", trained_run.run_name(model_path), "evaluation.json")
    test_set_names = (["mnist", "mnistm"] + (["mnistm_official"] if arguments.mnistm_official else [])
                      + (["mnistm_train"] if arguments.mnistm_train else []))
    # Checked first, so that a bad output path fails before minutes of loading and predicting.
    for path in [out_path] + [confusion_path(out_path, name) for name in test_set_names]:
        check_writable(path)
    run = trained_run.load_run(model_path, arguments.config, training_pixel_mean=lambda config: (
        training_data.mnist_pixel_mean_from_files(config, arguments.settings.mnist_path,
                                                  arguments.settings.mnistm_path)))
    if run.config.uses_folders:
        raise ModelError(f"'{model_path}' was trained on image folders, not MNIST: measure it with "
                         "--target_dir DIR, or predict with --predict DIR.")
    results, confusions = evaluate(run, load_test_sets(arguments, run))
    write_outputs(out_path, results, confusions)
    return format_table(results) + f"\n\nWrote {out_path} and {len(confusions)} confusion matrices beside it."


@cli.reports_usage_errors
def main(arguments=None):
    arguments = parse_arguments(sys.argv[1:] if arguments is None else arguments)
    startup.set_up()
    from utils.evaluation import trained_run

    model_path = arguments.model or PRETRAINED_MODEL
    if not arguments.model and not os.path.isfile(os.path.join(PRETRAINED_MODEL, trained_run.EXPORT_NAME)):
        print(f"error: no --model given and the pretrained weights '{PRETRAINED_MODEL}' are missing. "
              "Restore them from the repository, or pass --model checkpoints/<run> of a run "
              "trained with train.py.", file=sys.stderr)
        return 2
    try:
        # A signal in here ends the work before its outputs, written all or none, exist.
        with scripts.stop_signals_raised():
            summary = (main_folders(arguments, model_path) if arguments.target_dir or arguments.predict
                       else main_test_sets(arguments, model_path))
    except (DataError, ModelError, OSError) as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2
    except scripts.Stopped as stopped:
        print(f"{stopped}; nothing was written.", file=sys.stderr)
        return stopped.exit_code
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main))
