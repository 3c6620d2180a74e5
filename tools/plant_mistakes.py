"""Plants one mistake at a time in a copy of the project and checks that the tests catch it.

    python tools/plant_mistakes.py                  # every mistake, one pytest run each
    python tools/plant_mistakes.py --list           # their names and what each breaks
    python tools/plant_mistakes.py --only swapped_domain_labels unset_lambda

Each mistake is a small text edit of one file, the kind a rewrite of the step,
the schedules, the pipeline or the export could make. The edit is applied to a
copy of the tracked files in a temporary folder, and the tests that guard that
part run there; a mistake is caught when they fail. The repository itself is
never edited. Exits 1 when any mistake passes its tests.
"""

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One mistake: the file it edits, (old, new) text replacements (each old text
# must occur exactly once), what it breaks, and the test files that should catch it.
Mistake = collections.namedtuple("Mistake", ["name", "path", "edits", "breaks", "tests"])
STEP_TESTS = ["tests/test_step.py"]
REVERSE_TESTS = ["tests/test_reverse_validation.py"]
VALIDATOR_TESTS = ["tests/test_validators.py"]
MISTAKES = [
    Mistake("swapped_domain_labels", "model/step.py",
            [("tf.zeros([half], tf.int32), tf.ones([half], tf.int32)",
              "tf.ones([half], tf.int32), tf.zeros([half], tf.int32)")],
            "domain labels swapped in training only (1 = source)", STEP_TESTS),
    Mistake("unset_lambda", "utils/training/step.py",
            [("        self.networks.gradient_reversal.set_lambda(lambda_)\n", "")],
            "the GRL's lambda never set inside the step (it stays 0)", STEP_TESTS),
    Mistake("labels_on_both_halves", "model/step.py",
            [("labels, labelled_logits = source_labels, label_logits[:half]",
              "labels, labelled_logits = tf.concat([source_labels, target_labels], 0), label_logits")],
            "the label loss also trained on the target half's labels", STEP_TESTS),
    Mistake("replica_batch_mean", "utils/training/step.py",
            [("batch_count=self.config.batch_size, scale_loss",
              "batch_count=self.config.batch_size // self.strategy.num_replicas_in_sync, scale_loss")],
            "each replica averages the domain loss over its own part, so replicas' gradients sum too large",
            ["tests/test_distributed.py::test_two_logical_cpu_devices_train_the_weights_of_one_device"]),
    Mistake("averaged_slices", "utils/training/step.py",
            [("gradients = [tf.add_n(list(parts))", "gradients = [tf.add_n(list(parts)) / self.slices")],
            "the slices' gradients averaged, though each is already scaled by the whole batch", STEP_TESTS),
    Mistake("domain_loss_weighted", "model/loss.py",
            [("return label_loss + domain_loss_weight * domain_loss,",
              "return label_loss + 0.5 * domain_loss_weight * domain_loss,")],
            "the domain loss halved, so the domain classifier learns at half the rate", STEP_TESTS),
    Mistake("grl_sign", "model/grl.py",
            [("return -tf.cast(lambda_, upstream.dtype) * upstream",
              "return tf.cast(lambda_, upstream.dtype) * upstream")],
            "the GRL passes the gradient on unreversed", STEP_TESTS),
    Mistake("lambda_schedule", "model/schedules.py",
            [("2.0 / (1.0 + tf.exp(-gamma *", "2.0 / (1.0 + tf.exp(-0.5 * gamma *")],
            "lambda rises at half the paper's rate", STEP_TESTS),
    Mistake("learning_rate_schedule", "model/schedules.py",
            [("return initial / (1.0 + alpha * progress) ** beta",
              "return initial / (1.0 + alpha * progress) ** (beta / 2)")],
            "the learning rate decays with half the paper's exponent", STEP_TESTS),
    Mistake("progress_off_by_one", "model/schedules.py",
            [("ratio = tf.cast(step, tf.float32) / tf.cast(total_steps, tf.float32)",
              "ratio = tf.cast(step + 1, tf.float32) / tf.cast(total_steps, tf.float32)")],
            "p runs one step ahead of the optimizer's step", STEP_TESTS),
    Mistake("momentum_dropped", "model/optimizer.py",
            [("momentum=config.momentum, use_ema", "momentum=0.0, use_ema")],
            "SGD without the configured momentum", STEP_TESTS),
    Mistake("binarize_threshold", "utils/data/pipeline.py",
            [("return tf.where(images > 0,", "return tf.where(images > 127,")],
            "source digits binarized at 128 instead of > 0", STEP_TESTS + ["tests/test_pipeline.py"]),
    Mistake("normalize_scale", "utils/data/pipeline.py",
            [("tf.constant(pixel_mean, tf.float32)) / 255.0", "tf.constant(pixel_mean, tf.float32)) / 127.5")],
            "training input scaled by 1/127.5 instead of 1/255", STEP_TESTS + ["tests/test_pipeline.py"]),
    Mistake("coupled_streams", "utils/data/pipeline.py",
            [("_index_batches(len(target), half_batch, seed, TARGET_STREAM, start_step)",
              "_index_batches(len(target), half_batch, seed + 1, SOURCE_STREAM, start_step)")],
            "the target order is the next seed's source order", ["tests/test_pipeline.py"]),
    Mistake("colored_target", "utils/data/pipeline.py",
            [("*target.gather(target_indices, pixel_mean))", "*target.gather(target_indices, pixel_mean, color_seed))")],
            "the random colors drawn on the target images too", ["tests/test_pipeline.py"]),
    Mistake("colors_fixed", "utils/data/pipeline.py",
            [("stateless_fold_in(color_stream, step)", "stateless_fold_in(color_stream, 0)")],
            "the same colors at every step", ["tests/test_pipeline.py"]),
    Mistake("color_mean_ignored", "utils/data/pixel_mean.py",
            [("    if color:\n        return", "    if False:\n        return")],
            "the pixel mean ignores the random colors", STEP_TESTS),
    Mistake("gray_pixel_mean", "utils/data/training_data.py",
            [("pixel_mean.fed_sums(training_digits, 3, config.binarize_source, config.color_source)",
              "pixel_mean.fed_sums(training_digits, 3, False, config.color_source)")],
            "the pixel mean taken over gray digits while training feeds binarized ones", STEP_TESTS),
    Mistake("export_variance", "model/networks.py",
            [("variance=[255.0 ** 2] * channels", "variance=[255.0] * channels")],
            "the export divides by sqrt(255) instead of 255", ["tests/test_train.py"]),
    Mistake("export_mean", "model/networks.py",
            [("mean=list(pixel_mean)", "mean=[0.0, 0.0, 0.0]")],
            "the export forgets the pixel mean", ["tests/test_train.py"]),
    Mistake("last_batch_only", "utils/training/trainer.py",
            [("confusion += metrics.confusion_of(labels, label_logits, classes)",
              "confusion = metrics.confusion_of(labels, label_logits, classes)")],
            "evaluation counts the last batch only, not every batch of the test set", STEP_TESTS),
    Mistake("resume_restarts_the_stream", "utils/training/trainer.py",
            [("\"with the run's own settings.\") from error\n            self.open_data_stream()\n",
              "\"with the run's own settings.\") from error\n")],
            "a resumed run draws the batches of step 0 again", ["tests/test_train.py"]),
    Mistake("resume_reads_the_log_settings_only", "utils/training/run_folder.py",
            [("saved = [path for path in (os.path.join(checkpoint_dir, \"config.json\"),",
              "saved = [path for path in (")],
            "--resume checks the settings beside the logs only, so a moved log folder skips the check",
            ["tests/test_train.py"]),
    Mistake("run_folder_not_held", "utils/training/run_folder.py",
            [("            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)\n", "            pass\n")],
            "two processes train the same run into one folder", ["tests/test_train.py"]),
    Mistake("late_stop_ignored", "utils/training/trainer.py",
            [("        if agreed_stop(self):\n            raise self.stop(\"after training, before the export\")\n", "")],
            "a stop during the final evaluation is ignored and the run ends as if none came",
            ["tests/test_train.py"]),
    Mistake("lambda_max_ignored", "utils/training/step.py",
            [("self.config.lambda_gamma,\n                              self.config.lambda_max)",
              "self.config.lambda_gamma)")],
            "the configured cap on lambda never applied", STEP_TESTS),
    Mistake("average_not_swapped_in", "utils/training/step.py",
            [("        if averages is None:\n            yield", "        if True:\n            yield")],
            "with ema_momentum, evaluation and export use the weights instead of their average", STEP_TESTS),
    Mistake("bad_weights_saved", "utils/training/trainer.py",
            [("if not math.isfinite(window[\"total_loss\"]) or not self.dann_step.weights_are_finite():",
              "if not math.isfinite(window[\"total_loss\"]):")],
            "a checkpoint saved after an update made the weights NaN", ["tests/test_train.py"]),
    Mistake("loss_not_scaled", "model/step.py",
            [("scaled_loss = scale_loss(total_loss) if scale_loss else total_loss", "scaled_loss = total_loss")],
            "under mixed_float16 the loss is not scaled, yet its gradients are divided by the scale",
            ["tests/test_precision.py"]),
    Mistake("mixed_precision_export", "model/networks.py",
            [("if self.dtype_policy != \"float32\":", "if False:")],
            "a bfloat16 run exports a classifier that computes in bfloat16", ["tests/test_precision.py"]),
    Mistake("damaged_image_skipped", "utils/data/image_files.py",
            [("    if decoded.all():\n        return", "    if True:\n        return")],
            "an image that cannot be decoded is skipped silently", ["tests/test_folder_scripts.py"]),
    Mistake("export_class_order", "model/networks.py",
            [("vocabulary=list(self.class_names)", "vocabulary=sorted(self.class_names, reverse=True)")],
            "the export names the classes in another order than its logits", ["tests/test_folder_scripts.py"]),
    Mistake("streamed_batch_order", "utils/data/pipeline.py",
            [("tf.map_fn(self.decode, tf.gather(self.paths, indices),",
              "tf.map_fn(self.decode, tf.gather(self.paths, tf.sort(indices)),")],
            "a batch decoded from files holds its images in another order than its labels",
            ["tests/test_folders.py"]),
    Mistake("unlabelled_target_scored", "utils/training/trainer.py",
            [("                if self.labelled_test_sets[domain]:", "                if True:")],
            "a target test set without labels reports an accuracy against made-up labels",
            ["tests/test_folders.py"]),
    Mistake("stale_points_kept", "utils/training/trainer.py",
            [("        discard_after(self.log_dir, self.step)\n", "")],
            "a resumed run's TensorBoard holds each step after the checkpoint twice", ["tests/test_train.py"]),
    Mistake("validation_overlaps_training", "utils/data/splits.py",
            [("return np.sort(order[held_out:]), np.sort(order[:held_out])",
              "return np.sort(order[held_out // 2:]), np.sort(order[:held_out])")],
            "half the source validation digits are also trained on", REVERSE_TESTS),
    Mistake("true_labels_for_self_labels", "utils/selection/reverse_validation.py",
            [("source, validation = data.target.with_labels(target_labels), None",
              "source, validation = data.target, None")],
            "the reverse run learns the target's true labels instead of the classifier's", REVERSE_TESTS),
    Mistake("reverse_judged_on_training_digits", "utils/selection/reverse_validation.py",
            [("return data.source_validation if data.source_validation is not None else data.source_test",
              "return data.source")],
            "reverse validation scored on the source digits the runs trained on", REVERSE_TESTS),
    Mistake("t_v_trained_on", "utils/selection/reverse_validation.py",
            [("source, validation = source.subset(kept), source.subset(held_out)",
              "source, validation = source, source.subset(held_out)")],
            "the paper variant's T_V is also in the reverse run's training images", REVERSE_TESTS),
    Mistake("domain_outputs_not_swapped", "utils/selection/reverse_validation.py",
            [("weights[-2], weights[-1] = weights[-2][:, ::-1], weights[-1][::-1]", "pass")],
            "the reverse run's domain classifier starts from eta's with source and target unswapped",
            REVERSE_TESTS),
    Mistake("early_stopping_not_replayed", "utils/training/trainer.py",
            [("            self.early_stopping.replay(read_scalars(self.log_dir), self.step)", "            pass")],
            "a resumed run forgets the evaluations before its checkpoint and stops later",
            ["tests/test_early_stopping.py"]),
    Mistake("early_stopping_ignored", "utils/training/trainer.py",
            [("while self.step < self.total_steps and not self.early_stopping.stopped:",
              "while self.step < self.total_steps:")],
            "a run trains on past the step early stopping chose", ["tests/test_early_stopping.py"]),
    Mistake("hparams_written_on_resume", "utils/training/trainer.py",
            [("if self.is_chief and not dashboards.has_settings(self.log_dir):", "if self.is_chief:")],
            "a resumed run writes a second HParams record", ["tests/test_dashboards.py"]),
    Mistake("auto_precision_recorded_unresolved", "utils/training/run_config.py",
            [("return dataclasses.replace(config, precision=policy, precision_reason=reason)",
              "return dataclasses.replace(config, precision_reason=reason)")],
            "config.json records `auto` instead of the precision the run computed in", ["tests/test_train.py"]),
    Mistake("judges_one_row_per_file", "bench/judges.py",
            [("run = os.path.basename(os.path.normpath(judged[\"model\"]))",
              "run = os.path.basename(path)")],
            "each JSON file of a run becomes its own row, so a run counts once per variant",
            ["tests/test_bench.py"]),
    Mistake("judges_picks_the_lowest", "bench/judges.py",
            [("picked = max(scored, key=lambda row: row[key]) if scored else None",
              "picked = min(scored, key=lambda row: row[key]) if scored else None")],
            "a judge picks the run it scores lowest", ["tests/test_bench.py"]),
    Mistake("notebook_grl_without_reversal", "model/grl.py",
            [("return -tf.cast(lambda_, upstream.dtype) * upstream", "return tf.cast(lambda_, upstream.dtype) * upstream")],
            "the GRL scales the gradient without reversing it", ["tests/test_notebook.py"]),
    Mistake("stale_ignores_new_commits", "utils/provenance.py",
            [("""            or recorded["commit"] != current["commit"])""", ")")],
            "a result stays fresh after its training code changed", ["tests/test_provenance.py"]),
    Mistake("results_population_spread", "utils/results.py",
            [("statistics.stdev(values)", "statistics.pstdev(values)")],
            "the table's spread over seeds is the population standard deviation", ["tests/test_run_results.py"]),
    Mistake("results_resume_loses_time", "run_results.py",
            [('progress.get("seconds", 0.0) + time.perf_counter()', "time.perf_counter()")],
            "a resumed run's wall time counts only its last part", ["tests/test_run_results.py"]),
    Mistake("results_ship_any_seed", "run_results.py",
            [('if mode == "dann" and seed == 0:', 'if mode == "dann" or seed == 0:')],
            "weights of a seed other than 0, or of source only, are shipped", ["tests/test_run_results.py"]),
]
# (name, old text, new text, what it breaks) in utils/selection/validators.py.
VALIDATOR_MISTAKES = [
    ("bnm_not_over_n", 'ord="nuc") / len(probabilities))', 'ord="nuc"))',
     "BNM's nuclear norm not divided by the number of images"),
    ("snd_counts_self", "        logits[rows, start + rows] = -np.inf  # An image is not its own neighbour.\n", "",
     "SND counts each image as its own nearest neighbour"),
    ("dev_control_variate_sign", "eta = 0.0 if variance == 0 else -np.cov(", "eta = 0.0 if variance == 0 else np.cov(",
     "DEV's control variate added with the wrong sign"),
    ("density_ratio_inverted", "np.clip(logits[:, 1] - logits[:, 0], -50, 50)",
     "np.clip(logits[:, 0] - logits[:, 1], -50, 50)",
     "DEV weights source images by how source-like, not target-like, they are"),
]
MISTAKES += [Mistake(name, "utils/selection/validators.py", [(old, new)], breaks, VALIDATOR_TESTS)
             for name, old, new, breaks in VALIDATOR_MISTAKES]


def copy_project(destination):
    """Copies the files git tracks (and untracked, unignored ones) into destination."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPOSITORY, capture_output=True, check=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = os.path.join(REPOSITORY, relative)
        if os.path.isfile(source):
            target = os.path.join(destination, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)


def planted(mistake, text):
    """The text of mistake.path with the mistake's edits; exits when an old text does not occur exactly once."""
    for old, new in mistake.edits:
        if text.count(old) != 1:
            raise SystemExit(f"error: '{mistake.name}': the text to replace occurs {text.count(old)} times "
                             f"in {mistake.path}, not once; update the mistake to the current code.")
        text = text.replace(old, new)
    return text


def plant(folder, mistake):
    path = os.path.join(folder, mistake.path)
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(planted(mistake, text))


def run_tests(folder, tests):
    """Runs pytest on `tests` in folder; returns (caught, the last summary line).

    Only pytest's exit code 1, tests that ran and failed, counts as caught: a
    planted edit that breaks the import or collection (exit code 2) is an
    error of the edit, not a test catching the mistake. The tests run in one process (`-n 0`):
    on pytest-xdist's workers, `-x` stops the run as interrupted, exit code 2 too.
    """
    completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider",
                                *tests],
                               cwd=folder, capture_output=True, text=True, check=False)
    lines = completed.stdout.strip().splitlines()
    return completed.returncode == 1, lines[-1] if lines else completed.stderr.strip()[-200:]


def main(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[mistake.name for mistake in MISTAKES],
                        help="Plant only these mistakes.")
    parser.add_argument("--list", action="store_true", help="List the mistakes and exit.")
    arguments = parser.parse_args(arguments)
    chosen = [mistake for mistake in MISTAKES if not arguments.only or mistake.name in arguments.only]
    if arguments.list:
        for mistake in chosen:
            print(f"{mistake.name:<28} {mistake.path:<20} {mistake.breaks}")
        return 0
    missed = []
    for mistake in chosen:
        with tempfile.TemporaryDirectory(prefix="dann-mistake-") as folder:
            copy_project(folder)
            plant(folder, mistake)
            started = time.perf_counter()
            caught, summary = run_tests(folder, mistake.tests)
        print(f"{'caught' if caught else 'MISSED':<7} {mistake.name:<28} {time.perf_counter() - started:5.0f} s  "
              f"{' '.join(mistake.tests)}: {summary}", flush=True)
        if not caught:
            missed.append(mistake.name)
    print(f"{len(chosen) - len(missed)} of {len(chosen)} planted mistakes caught"
          + (f"; missed: {', '.join(missed)}" if missed else "."))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
